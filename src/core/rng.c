#include "core/rng.h"

#include <math.h>

static gl_rng_state process_rng = {{0x9e3779b97f4a7c15ull, 0xbf58476d1ce4e5b9ull, 0x94d049bb133111ebull,
                                    0x2545f4914f6cdd1dull},
                                   0, 0.0};
/* The state this thread draws from: its own while it is a replica (gl_rng_use). */
static _Thread_local gl_rng_state *own;

static gl_rng_state *state(void) { return own ? own : &process_rng; }

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void gl_rng_state_seed(gl_rng_state *st, uint64_t seed)
{
    for (int i = 0; i < 4; i++) st->s[i] = splitmix64(&seed);
    st->has_spare = 0;
    st->spare = 0.0;
}

void gl_rng_seed(uint64_t seed) { gl_rng_state_seed(state(), seed); }

gl_rng_state *gl_rng_use(gl_rng_state *st)
{
    gl_rng_state *was = own;
    own = st;
    return was;
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t gl_rng_u64(void)
{
    uint64_t *s = state()->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double gl_rng_uniform(void) { return (double)(gl_rng_u64() >> 11) * 0x1.0p-53; }

double gl_rng_normal(void)
{
    gl_rng_state *rng = state();
    if (rng->has_spare) {
        rng->has_spare = 0;
        return rng->spare;
    }
    double u1, u2;
    do u1 = gl_rng_uniform();
    while (u1 <= 0.0);
    u2 = gl_rng_uniform();
    double r = sqrt(-2.0 * log(u1));
    rng->spare = r * sin(2.0 * M_PI * u2);
    rng->has_spare = 1;
    return r * cos(2.0 * M_PI * u2);
}

uint64_t gl_rng_below(uint64_t n)
{
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do x = gl_rng_u64();
    while (x >= limit);
    return x % n;
}

void gl_rng_get(gl_rng_state *out) { *out = *state(); }
void gl_rng_set(const gl_rng_state *in) { *state() = *in; }
