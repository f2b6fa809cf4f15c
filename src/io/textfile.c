#include "io/textfile.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

gl_status gl_read_file(const char *path, char **data, size_t *len)
{
    *data = NULL;
    *len = 0;
    gzFile f = gzopen(path, "rb"); /* zlib passes plain files through unchanged */
    if (!f) return gl_error(GL_EIO, "read_file: %s: %s", path, errno ? strerror(errno) : "cannot open");
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    gl_status st = buf ? GL_OK : gl_error(GL_ENOMEM, "read_file: %s: out of memory", path);
    while (st == GL_OK) {
        if (n == cap) {
            char *grown = cap <= ((size_t)-1) / 2 - 1 ? realloc(buf, 2 * cap + 1) : NULL;
            if (!grown) {
                st = gl_error(GL_ENOMEM, "read_file: %s: out of memory after %zu bytes", path, n);
                break;
            }
            buf = grown;
            cap *= 2;
        }
        unsigned chunk = cap - n > (1u << 30) ? (1u << 30) : (unsigned)(cap - n);
        int got = gzread(f, buf + n, chunk);
        if (got < 0) {
            int zerr;
            const char *msg = gzerror(f, &zerr);
            st = gl_error(GL_EFORMAT, "read_file: %s: %s (corrupt or truncated gzip data?)", path,
                          zerr == Z_ERRNO ? strerror(errno) : msg);
        } else if (got == 0) {
            int zerr;
            gzerror(f, &zerr);
            if (zerr == Z_BUF_ERROR) /* the gzip stream ended early */
                st = gl_error(GL_EFORMAT, "read_file: %s: truncated gzip data", path);
            else if (!gzeof(f))
                st = gl_error(GL_EIO, "read_file: %s: read failed", path);
            break;
        } else {
            n += (size_t)got;
        }
    }
    gzclose(f);
    if (st != GL_OK) {
        free(buf);
        return st;
    }
    buf[n] = '\0';
    *data = buf;
    *len = n;
    return GL_OK;
}
