#include "core/interrupt.h"

#include <omp.h>
#include <pthread.h>
#include <signal.h>
#include <time.h>

#include "core/error.h"

static volatile sig_atomic_t pending;

static struct {
    void (*fn)(void *);
    void *arg;
    double interval, next;
    pthread_t thread;
    bool active; /* guards against the hook polling itself */
} hook;
static _Thread_local bool allowed_in_region; /* gl_interrupt_allow_hook */

void gl_interrupt_request(void) { pending = 1; }
void gl_interrupt_clear(void) { pending = 0; }
bool gl_interrupt_pending(void) { return pending != 0; }

void gl_interrupt_set_hook(void (*fn)(void *arg), void *arg, double interval)
{
    hook.fn = fn;
    hook.arg = arg;
    hook.interval = interval;
    hook.next = 0;
    hook.thread = pthread_self();
}

static double monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void maybe_call_hook(void)
{
    if (!hook.fn || hook.active || (omp_in_parallel() && !allowed_in_region) ||
        !pthread_equal(hook.thread, pthread_self()))
        return;
    double t = monotonic();
    if (t < hook.next) return;
    hook.next = t + hook.interval;
    hook.active = true;
    hook.fn(hook.arg);
    hook.active = false;
}

void gl_interrupt_tick(void) { maybe_call_hook(); }

bool gl_interrupt_allow_hook(bool on)
{
    bool was = allowed_in_region;
    allowed_in_region = on;
    return was;
}

bool gl_interrupt_poll(const char *op)
{
    maybe_call_hook();
    if (!pending) return false;
    pending = 0;
    gl_error(GL_EINTR, "%s: interrupted", op);
    return true;
}
