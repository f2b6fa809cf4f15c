/* Atomic file writes: the bytes go to a temporary file in the target's
 * directory, which is flushed, fsync'd and renamed over the target; the
 * directory is fsync'd last. Readers see either the old file or the whole
 * new one, never a torn write, and a failure at any point removes the
 * temporary file and leaves the target as it was.
 *
 *     gl_atomic_file *f;
 *     if ((st = gl_atomic_open(&f, path)) != GL_OK) return st;
 *     if ((st = gl_atomic_write(f, buf, n)) != GL_OK) { gl_atomic_abort(f); return st; }
 *     return gl_atomic_commit(f);     // consumes f, success or not
 *
 * Errors are GL_EIO (or GL_ENOMEM) with "path: what failed: strerror". A
 * target that is a symbolic link is replaced by a regular file. */
#ifndef GL_IO_ATOMIC_H
#define GL_IO_ATOMIC_H

#include <stddef.h>
#include <stdio.h>

#include "core/error.h"

typedef struct gl_atomic_file gl_atomic_file;

/* Creates the temporary file next to path. */
gl_status gl_atomic_open(gl_atomic_file **out, const char *path);
/* Appends n bytes. */
gl_status gl_atomic_write(gl_atomic_file *f, const void *data, size_t n);
/* The temporary file's stream, for writers such as libpng that want a FILE *.
 * Write errors on it are caught by gl_atomic_commit (ferror). */
FILE *gl_atomic_stream(gl_atomic_file *f);
/* Flushes, syncs and renames over the target; frees f whatever happens. */
gl_status gl_atomic_commit(gl_atomic_file *f);
/* Removes the temporary file and frees f; the target is untouched. NULL is a no-op. */
void gl_atomic_abort(gl_atomic_file *f);

/* The whole file at once: open, write, commit. */
gl_status gl_atomic_write_file(const char *path, const void *data, size_t n);

#endif
