/* One thread pool: OpenMP. gl_threads_set sizes it; the BLAS call site reads
 * gl_threads_get so OpenBLAS (OpenMP build) uses the same count. */
#ifndef GL_CORE_THREADS_H
#define GL_CORE_THREADS_H

/* n <= 0 means "all cores". Returns the count in effect. */
int gl_threads_set(int n);
int gl_threads_get(void);
/* Applies GENLAB_THREADS from the environment, if set. */
void gl_threads_init_from_env(void);

#endif
