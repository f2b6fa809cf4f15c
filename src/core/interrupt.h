/* Ctrl-C stops the computation, not the session. A signal handler calls
 * gl_interrupt_request; ops poll gl_interrupt_poll between chunks of work and
 * fail with GL_EINTR, leaving their inputs untouched.
 *
 * The same polls give an interactive front end a way in while a long
 * computation runs: a hook set with gl_interrupt_set_hook is called from
 * gl_interrupt_poll at most every interval seconds, only on the thread that
 * set it and outside OpenMP parallel regions (but see gl_interrupt_allow_hook).
 * The workbench echoes keystrokes from it during a training step. The hook
 * must not run Lua or ops. */
#ifndef GL_CORE_INTERRUPT_H
#define GL_CORE_INTERRUPT_H

#include <stdbool.h>

void gl_interrupt_request(void); /* async-signal-safe */
void gl_interrupt_clear(void);
bool gl_interrupt_pending(void);
/* If an interrupt is pending: clears it, sets the error "OP: interrupted" and returns true. */
bool gl_interrupt_poll(const char *op);

/* Runs the hook (when due) without looking at interrupts: for loops that
 * must not stop midway, such as a backward pass. */
void gl_interrupt_tick(void);
/* Sets (fn) or removes (NULL) the poll hook for the calling thread. */
void gl_interrupt_set_hook(void (*fn)(void *arg), void *arg, double interval);
/* Lets the hook run inside parallel regions on the calling thread (when it
 * set the hook): for a thread that runs whole computations of its own in a
 * region, such as the first share of a data-parallel step. Returns the
 * previous setting. */
bool gl_interrupt_allow_hook(bool on);

#endif
