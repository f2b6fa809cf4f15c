#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>

static _Thread_local char message[1024];
static _Thread_local gl_status last_code;

static void set_message(gl_status code, const char *fmt, va_list ap)
{
    vsnprintf(message, sizeof message, fmt, ap);
    last_code = code;
}

gl_status gl_error(gl_status code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_message(code, fmt, ap);
    va_end(ap);
    return code;
}

void *gl_error_null(gl_status code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_message(code, fmt, ap);
    va_end(ap);
    return NULL;
}

const char *gl_error_message(void) { return message[0] ? message : "unknown error"; }
gl_status gl_error_code(void) { return last_code; }

void gl_error_clear(void)
{
    message[0] = '\0';
    last_code = GL_OK;
}
