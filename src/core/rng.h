/* The process-wide random generator (xoshiro256**). Numbers are drawn
 * serially, never inside parallel loops, so one seed gives the same
 * parameters, dropout masks and samples whatever the thread count. The one
 * exception, data-parallel replicas (src/models/gpt_parallel.c), gives each
 * thread a stream of its own (gl_rng_use). */
#ifndef GL_CORE_RNG_H
#define GL_CORE_RNG_H

#include <stdint.h>

typedef struct gl_rng_state {
    uint64_t s[4];
    uint64_t has_spare; /* Box-Muller keeps its second normal */
    double spare;
} gl_rng_state;

void gl_rng_seed(uint64_t seed);
uint64_t gl_rng_u64(void);
/* Uniform in [0, 1). */
double gl_rng_uniform(void);
/* Standard normal. */
double gl_rng_normal(void);
/* Uniform integer in [0, n), n > 0, without modulo bias. */
uint64_t gl_rng_below(uint64_t n);
void gl_rng_get(gl_rng_state *out);
void gl_rng_set(const gl_rng_state *in);
/* Seeds *st as gl_rng_seed seeds the current state. */
void gl_rng_state_seed(gl_rng_state *st, uint64_t seed);
/* Makes the calling thread draw from *st (NULL: the process-wide state
 * again) and returns the state it drew from before (NULL: process-wide). */
gl_rng_state *gl_rng_use(gl_rng_state *st);

#endif
