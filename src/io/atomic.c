#include "io/atomic.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct gl_atomic_file {
    FILE *fp;
    char *path;
    char *tmp;
    int write_errno; /* first failed gl_atomic_write, 0 if none */
};

/* A hint for the errors people hit most, after strerror. */
static const char *hint(int err)
{
    switch (err) {
    case ENOENT: return " (does the directory exist?)";
    case ENOTDIR: return " (a component of the path is not a directory)";
    case EACCES:
    case EPERM: return " (is the directory writable?)";
    case EISDIR: return " (the target is a directory)";
    case ENOSPC:
    case EDQUOT: return " (the disk is full)";
    case EFBIG: return " (the file size limit was reached)";
    default: return "";
    }
}

static gl_status fail(const char *path, const char *what, int err)
{
    return gl_error(GL_EIO, "%s: %s: %s%s", path, what, strerror(err), hint(err));
}

static void discard(gl_atomic_file *f)
{
    if (f->fp) fclose(f->fp);
    unlink(f->tmp);
    free(f->path);
    free(f->tmp);
    free(f);
}

gl_status gl_atomic_open(gl_atomic_file **out, const char *path)
{
    static atomic_uint counter;
    *out = NULL;
    if (!path || !*path) return gl_error(GL_EINVAL, "atomic write: empty path");
    size_t len = strlen(path), cap = len + 48;
    gl_atomic_file *f = calloc(1, sizeof *f);
    if (f) f->path = strdup(path);
    if (f) f->tmp = malloc(cap);
    if (!f || !f->path || !f->tmp) {
        if (f) free(f->path);
        free(f);
        return gl_error(GL_ENOMEM, "%s: out of memory", path);
    }
    /* O_EXCL with a fresh name each try: no other writer's temp file is ever reused. */
    int fd = -1;
    for (int tries = 0; fd < 0 && tries < 100; tries++) {
        snprintf(f->tmp, cap, "%s.tmp-%ld-%u", path, (long)getpid(), atomic_fetch_add(&counter, 1));
        fd = open(f->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0 && errno != EEXIST) break;
    }
    if (fd < 0) {
        int err = errno;
        free(f->path);
        free(f->tmp);
        free(f);
        return fail(path, "cannot create a temporary file next to it", err);
    }
    f->fp = fdopen(fd, "wb");
    if (!f->fp) {
        int err = errno;
        close(fd);
        discard(f);
        return fail(path, "cannot open a stream", err);
    }
    *out = f;
    return GL_OK;
}

gl_status gl_atomic_write(gl_atomic_file *f, const void *data, size_t n)
{
    if (!f->write_errno && n && fwrite(data, 1, n, f->fp) != n) f->write_errno = errno ? errno : EIO;
    return f->write_errno ? fail(f->path, "write failed", f->write_errno) : GL_OK;
}

FILE *gl_atomic_stream(gl_atomic_file *f) { return f->fp; }

/* Makes the rename itself durable. Some file systems cannot sync a
 * directory (EINVAL); the data is safe there anyway. */
static gl_status sync_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    if (!dir) return gl_error(GL_ENOMEM, "%s: out of memory", path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int err = 0;
    if (fd < 0 || (fsync(fd) != 0 && errno != EINVAL)) err = errno;
    if (fd >= 0) close(fd);
    free(dir);
    return err ? fail(path, "written, but syncing its directory failed", err) : GL_OK;
}

gl_status gl_atomic_commit(gl_atomic_file *f)
{
    gl_status st = GL_OK;
    if (f->write_errno)
        st = fail(f->path, "write failed", f->write_errno);
    else if (fflush(f->fp) != 0)
        st = fail(f->path, "write failed", errno);
    else if (ferror(f->fp))
        st = fail(f->path, "write failed", EIO);
    else if (fsync(fileno(f->fp)) != 0)
        st = fail(f->path, "fsync failed", errno);
    if (st != GL_OK) {
        discard(f);
        return st;
    }
    int rc = fclose(f->fp);
    f->fp = NULL;
    if (rc != 0) st = fail(f->path, "close failed", errno);
    else if (rename(f->tmp, f->path) != 0) st = fail(f->path, "cannot replace it", errno);
    if (st != GL_OK) {
        discard(f);
        return st;
    }
    st = sync_dir(f->path);
    free(f->path);
    free(f->tmp);
    free(f);
    return st;
}

void gl_atomic_abort(gl_atomic_file *f)
{
    if (f) discard(f);
}

gl_status gl_atomic_write_file(const char *path, const void *data, size_t n)
{
    gl_atomic_file *f;
    gl_status st = gl_atomic_open(&f, path);
    if (st != GL_OK) return st;
    st = gl_atomic_write(f, data, n);
    if (st != GL_OK) {
        gl_atomic_abort(f);
        return st;
    }
    return gl_atomic_commit(f);
}
