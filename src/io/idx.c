#include "io/idx.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#define IDX_U8 0x08
/* deflate never expands data more than 1032:1; a header that claims more
 * than this times the file's size is refused before anything is allocated */
#define MAX_INFLATE 1032

static const char *type_name(int code)
{
    switch (code) {
    case 0x08: return "unsigned byte";
    case 0x09: return "signed byte";
    case 0x0B: return "short";
    case 0x0C: return "int";
    case 0x0D: return "float";
    case 0x0E: return "double";
    default: return "unknown type";
    }
}

/* Reads up to n bytes; returns the count, or -1 with the error set. A gzip
 * stream that ends early is an error, as is any read failure. */
static int64_t read_bytes(gzFile f, const char *path, void *buf, size_t n)
{
    size_t done = 0;
    while (done < n) {
        unsigned chunk = n - done > (1u << 30) ? (1u << 30) : (unsigned)(n - done);
        int got = gzread(f, (char *)buf + done, chunk);
        int zerr;
        const char *msg = gzerror(f, &zerr);
        if (got < 0 || (got == 0 && zerr != Z_OK)) {
            if (zerr == Z_BUF_ERROR) return gl_error(GL_EFORMAT, "idx: %s: truncated gzip data", path), -1;
            if (zerr == Z_ERRNO) return gl_error(GL_EIO, "idx: %s: %s", path, strerror(errno)), -1;
            return gl_error(GL_EFORMAT, "idx: %s: %s (corrupt gzip data)", path, msg), -1;
        }
        if (got == 0) break;
        done += (size_t)got;
    }
    return (int64_t)done;
}

/* The header's shape, checked. Returns the number of dims or -1. */
static int read_header(gzFile f, const char *path, int64_t *shape)
{
    unsigned char p[4 + 4 * GL_MAX_DIMS];
    int64_t got = read_bytes(f, path, p, 4);
    if (got < 0) return -1;
    if (got < 4)
        return gl_error(GL_EFORMAT, "idx: %s: %lld bytes is too short for the 4-byte magic", path, (long long)got), -1;
    if (p[0] != 0 || p[1] != 0)
        return gl_error(GL_EFORMAT,
                        "idx: %s: bad magic %02x %02x %02x %02x (an IDX file starts with two zero bytes; "
                        "not an MNIST-format file?)",
                        path, p[0], p[1], p[2], p[3]), -1;
    if (p[2] != IDX_U8)
        return gl_error(GL_EFORMAT, "idx: %s: element type 0x%02x (%s) is not supported, only 0x08 (unsigned byte)",
                        path, p[2], type_name(p[2])), -1;
    int ndim = p[3];
    if (ndim < 1 || ndim > GL_MAX_DIMS)
        return gl_error(GL_EFORMAT, "idx: %s: %d dimensions in the header (1 to %d supported)", path, ndim,
                        GL_MAX_DIMS), -1;
    got = read_bytes(f, path, p + 4, 4 * (size_t)ndim);
    if (got < 0) return -1;
    if (got < 4 * ndim)
        return gl_error(GL_EFORMAT, "idx: %s: truncated header (%lld of the %d size bytes for %d dimensions)", path,
                        (long long)got, 4 * ndim, ndim), -1;
    for (int d = 0; d < ndim; d++) {
        const unsigned char *q = p + 4 + 4 * d;
        shape[d] = (int64_t)((uint32_t)q[0] << 24 | (uint32_t)q[1] << 16 | (uint32_t)q[2] << 8 | q[3]);
    }
    return ndim;
}

gl_tensor *gl_idx_read(const char *path)
{
    errno = 0;
    gzFile f = gzopen(path, "rb"); /* zlib passes plain files through unchanged */
    if (!f) return gl_error_null(GL_EIO, "idx: %s: %s", path, errno ? strerror(errno) : "cannot open");
    gzbuffer(f, 1 << 20);
    int64_t shape[GL_MAX_DIMS];
    gl_tensor *t = NULL;
    int ndim = read_header(f, path, shape);
    if (ndim > 0) {
        char s[128];
        int64_t numel = gl_shape_numel(ndim, shape);
        struct stat sb;
        uint64_t file = stat(path, &sb) == 0 ? (uint64_t)sb.st_size : 0, header = 4 + 4 * (uint64_t)ndim;
        uint64_t most = gzdirect(f) ? file - header : file * MAX_INFLATE;
        if (numel < 0 || (uint64_t)numel > (uint64_t)SIZE_MAX / 2) {
            gl_error(GL_EFORMAT, "idx: %s: sizes %s overflow", path, gl_shape_str(ndim, shape, s, sizeof s));
        } else if ((uint64_t)numel > most) {
            gl_error(GL_EFORMAT, "idx: %s: truncated: sizes %s need %lld data bytes, a %s file of %llu bytes holds %s%llu",
                     path, gl_shape_str(ndim, shape, s, sizeof s), (long long)numel,
                     gzdirect(f) ? "plain" : "gzip", (unsigned long long)file, gzdirect(f) ? "" : "at most ",
                     (unsigned long long)most);
        } else if ((t = gl_tensor_empty(GL_U8, ndim, shape))) {
            unsigned char extra;
            int64_t got = read_bytes(f, path, gl_tensor_data(t), (size_t)numel);
            int64_t more = got == numel ? read_bytes(f, path, &extra, 1) : 0;
            if (got < 0 || more < 0) {
                gl_tensor_release(t), t = NULL;
            } else if (got < numel || more > 0) {
                gl_error(GL_EFORMAT, "idx: %s: %s: sizes %s need %lld data bytes after the header, the file has %s%lld",
                         path, got < numel ? "truncated" : "trailing bytes", gl_shape_str(ndim, shape, s, sizeof s),
                         (long long)numel, got < numel ? "" : "more than ", (long long)got);
                gl_tensor_release(t), t = NULL;
            }
        }
    }
    gzclose(f);
    return t;
}
