/* Errors are values: a status code plus a message in a per-thread buffer.
 * Library code never prints, exits or aborts on bad input. */
#ifndef GL_CORE_ERROR_H
#define GL_CORE_ERROR_H

typedef enum {
    GL_OK = 0,
    GL_EINVAL,   /* bad argument: shape, dtype, range */
    GL_ENOMEM,   /* allocation failed or size overflowed */
    GL_EIO,      /* file system error */
    GL_EFORMAT,  /* malformed file */
    GL_EINTR,    /* interrupted by the user (Ctrl-C) */
    GL_ESTATE    /* object used in the wrong state (freed, graph already freed) */
} gl_status;

/* Sets the thread's message (printf-style) and returns code, so callers can
 * write `return gl_error(GL_EINVAL, "add: ...")`. */
gl_status gl_error(gl_status code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Like gl_error but returns NULL, for functions that return pointers. */
void *gl_error_null(gl_status code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
const char *gl_error_message(void);
gl_status gl_error_code(void);
void gl_error_clear(void);

#endif
