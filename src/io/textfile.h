/* Whole files into memory, gunzipped on the way when they are gzip (or
 * dictzip, like Debian's dictionary corpora) and read as-is otherwise. */
#ifndef GL_IO_TEXTFILE_H
#define GL_IO_TEXTFILE_H

#include <stddef.h>

#include "core/error.h"

/* *data (malloc'd, NUL-terminated for convenience) and *len receive the
 * bytes; errors name the path and the reason. */
gl_status gl_read_file(const char *path, char **data, size_t *len);

#endif
