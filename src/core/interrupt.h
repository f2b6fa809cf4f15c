/* Ctrl-C stops the computation, not the session. A signal handler calls
 * gl_interrupt_request; ops poll gl_interrupt_poll between chunks of work and
 * fail with GL_EINTR, leaving their inputs untouched. */
#ifndef GL_CORE_INTERRUPT_H
#define GL_CORE_INTERRUPT_H

#include <stdbool.h>

void gl_interrupt_request(void); /* async-signal-safe */
void gl_interrupt_clear(void);
bool gl_interrupt_pending(void);
/* If an interrupt is pending: clears it, sets the error "OP: interrupted" and returns true. */
bool gl_interrupt_poll(const char *op);

#endif
