#include "core/interrupt.h"

#include <signal.h>

#include "core/error.h"

static volatile sig_atomic_t pending;

void gl_interrupt_request(void) { pending = 1; }
void gl_interrupt_clear(void) { pending = 0; }
bool gl_interrupt_pending(void) { return pending != 0; }

bool gl_interrupt_poll(const char *op)
{
    if (!pending) return false;
    pending = 0;
    gl_error(GL_EINTR, "%s: interrupted", op);
    return true;
}
