#include "core/threads.h"

#include <omp.h>
#include <stdlib.h>

static int thread_count;

int gl_threads_set(int n)
{
    if (n <= 0) n = omp_get_num_procs();
    thread_count = n;
    omp_set_num_threads(n);
    return n;
}

int gl_threads_get(void)
{
    if (thread_count == 0) thread_count = omp_get_max_threads();
    return thread_count;
}

void gl_threads_init_from_env(void)
{
    const char *env = getenv("GENLAB_THREADS");
    if (env && *env) gl_threads_set(atoi(env));
}
