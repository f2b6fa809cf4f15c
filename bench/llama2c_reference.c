/*
 * llama2.c reference for `genlab bench generate` (lua/genlab/bench.lua).
 *
 * The forward pass of karpathy/llama2.c's run.c, written again here: RMSNorm,
 * the plain OpenMP matrix-vector loop over output rows (run.c's kernel, kept
 * as it is: the compiler vectorizes it under -Ofast), RoPE, multi-head
 * attention over a key/value cache, the SwiGLU feed-forward block and the
 * classifier tied to the token embedding; then softmax and a plain draw at
 * temperature 1, as run.c samples with top-p off. Weights are random (no
 * checkpoint), laid out in one block in the order of run.c's checkpoint.
 *
 *   cc -Ofast -march=native -fopenmp -o llama2c_reference llama2c_reference.c -lm
 *   OMP_NUM_THREADS=N ./llama2c_reference DIM HIDDEN LAYERS HEADS VOCAB SEQ_LEN TOKENS MIN_SECONDS
 *
 * Timing is bench.lua's child_generate: one generation of TOKENS tokens from
 * the one-token prompt BOS (1) at position 0 (TOKENS forward passes and
 * draws), a warm-up generation first, then generations until MIN_SECONDS have
 * passed. It prints one JSON line {"threads": N, "results": [{"config",
 * "value" (tokens/s), "ms" (per generation), "cpu" (CPU seconds per wall
 * second from the warm-up on), "params", "rss_mib"}]}, or {"error": why}
 * with exit status 2 on bad arguments or no memory.
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* Shapes, in genlab's dimension letters: C dim, F hidden, L layers, NH
 * heads, V vocab, T the cache's length (seq_len). */
typedef struct {
    int C, F, L, NH, V, T;
} config;

typedef struct {
    float *embedding; /* [V, C], also the classifier */
    float *rms_att;   /* [L, C] */
    float *wq, *wk, *wv, *wo; /* [L, C, C] each */
    float *rms_ffn;   /* [L, C] */
    float *w1;        /* [L, F, C] gate */
    float *w2;        /* [L, C, F] down */
    float *w3;        /* [L, F, C] up */
    float *rms_final; /* [C] */
    float *block;     /* everything above, one allocation */
    int64_t params;
} weights;

typedef struct {
    float *x, *xb, *xb2; /* [C] */
    float *hb, *hb2;     /* [F] */
    float *q;            /* [C] */
    float *att;          /* [NH, T] */
    float *logits;       /* [V] */
    float *key_cache, *value_cache; /* [L, T, C] */
} run_state;

/* ---- random weights ---------------------------------------------------------------- */

static uint64_t rng_state;

/* xorshift64*, the generator run.c samples with. */
static uint32_t rng_u32(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545F4914F6CDD1Dull) >> 32);
}

/* Uniform in [0, 1). */
static float rng_f32(void) { return (float)(rng_u32() >> 8) / 16777216.0f; }

/* n entries uniform in [-a, a]: a = 0.02 * sqrt(3) gives the standard
 * deviation 0.02 of GPT-style initialisation. */
static void fill_uniform(float *p, int64_t n, float a)
{
    for (int64_t i = 0; i < n; i++) p[i] = (2.0f * rng_f32() - 1.0f) * a;
}

static void fill_ones(float *p, int64_t n)
{
    for (int64_t i = 0; i < n; i++) p[i] = 1.0f;
}

/* Carves the weights out of one block in run.c's checkpoint order and fills
 * them. Returns 0, or -1 when out of memory. */
static int weights_init(weights *w, const config *p)
{
    int64_t C = p->C, F = p->F, L = p->L, V = p->V;
    int64_t n = V * C + L * C + 4 * L * C * C + L * C + 3 * L * C * F + C;
    w->block = malloc((size_t)n * sizeof(float));
    if (!w->block) return -1;
    w->params = n;
    float *at = w->block;
    w->embedding = at, at += V * C;
    w->rms_att = at, at += L * C;
    w->wq = at, at += L * C * C;
    w->wk = at, at += L * C * C;
    w->wv = at, at += L * C * C;
    w->wo = at, at += L * C * C;
    w->rms_ffn = at, at += L * C;
    w->w1 = at, at += L * F * C;
    w->w2 = at, at += L * C * F;
    w->w3 = at, at += L * F * C;
    w->rms_final = at;
    const float a = 0.02f * sqrtf(3.0f);
    rng_state = 1337;
    fill_uniform(w->embedding, V * C, a);
    fill_ones(w->rms_att, L * C);
    fill_uniform(w->wq, 4 * L * C * C, a); /* wq, wk, wv, wo are adjacent */
    fill_ones(w->rms_ffn, L * C);
    fill_uniform(w->w1, 3 * L * C * F, a); /* so are w1, w2, w3 */
    fill_ones(w->rms_final, C);
    return 0;
}

/* Returns 0, or -1 when out of memory. */
static int run_state_init(run_state *s, const config *p)
{
    size_t cache = (size_t)p->L * p->T * p->C;
    s->x = calloc(p->C, sizeof(float));
    s->xb = calloc(p->C, sizeof(float));
    s->xb2 = calloc(p->C, sizeof(float));
    s->hb = calloc(p->F, sizeof(float));
    s->hb2 = calloc(p->F, sizeof(float));
    s->q = calloc(p->C, sizeof(float));
    s->att = calloc((size_t)p->NH * p->T, sizeof(float));
    s->logits = calloc(p->V, sizeof(float));
    s->key_cache = calloc(cache, sizeof(float));
    s->value_cache = calloc(cache, sizeof(float));
    return s->x && s->xb && s->xb2 && s->hb && s->hb2 && s->q && s->att && s->logits && s->key_cache &&
                   s->value_cache ? 0 : -1;
}

static void run_state_free(run_state *s)
{
    float *bufs[] = { s->x, s->xb, s->xb2, s->hb, s->hb2, s->q, s->att, s->logits, s->key_cache, s->value_cache };
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
}

/* ---- the forward pass (run.c's) ------------------------------------------------------ */

/* out[n] = x[n] / rms(x) * weight[n]; out may be x. */
static void rmsnorm(float *out, const float *x, const float *weight, int n)
{
    float ss = 0.0f;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    ss = 1.0f / sqrtf(ss / n + 1e-5f);
    for (int i = 0; i < n; i++) out[i] = weight[i] * (ss * x[i]);
}

/* In place over x[n], from the maximum for range. */
static void softmax(float *x, int n)
{
    float max = x[0];
    for (int i = 1; i < n; i++)
        if (x[i] > max) max = x[i];
    float sum = 0.0f;
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - max);
        sum += x[i];
    }
    for (int i = 0; i < n; i++) x[i] /= sum;
}

/* out[d] = w[d, n] x[n]: one dot product per row, the rows shared among the
 * threads. This loop is the reference: run.c spends nearly all its time in
 * it and leaves its vectorization to the compiler. */
static void matvec(float *out, const float *x, const float *w, int n, int d)
{
    int i;
#pragma omp parallel for private(i)
    for (i = 0; i < d; i++) {
        float sum = 0.0f;
        for (int j = 0; j < n; j++) sum += w[(size_t)i * n + j] * x[j];
        out[i] = sum;
    }
}

/* Rotates the pairs (v[2i], v[2i+1]) of each head of v[C] by the angle
 * pos / 10000^(2i / HS), with the frequencies computed on the fly as run.c
 * does. */
static void rope(float *q, float *k, int pos, int C, int HS)
{
    for (int i = 0; i < C; i += 2) {
        float freq = 1.0f / powf(10000.0f, (float)(i % HS) / (float)HS);
        float angle = pos * freq, c = cosf(angle), s = sinf(angle);
        float q0 = q[i], q1 = q[i + 1], k0 = k[i], k1 = k[i + 1];
        q[i] = q0 * c - q1 * s;
        q[i + 1] = q0 * s + q1 * c;
        k[i] = k0 * c - k1 * s;
        k[i + 1] = k0 * s + k1 * c;
    }
}

/* Causal attention of the query s->q over the cached positions 0..pos of
 * one layer's cache (kc, vc: [T, C]), each head on its own, into s->xb. */
static void attention(run_state *s, const float *kc, const float *vc, int pos, const config *p)
{
    int C = p->C, HS = p->C / p->NH, h;
    float scale = 1.0f / sqrtf((float)HS);
#pragma omp parallel for private(h)
    for (h = 0; h < p->NH; h++) {
        const float *q = s->q + h * HS;
        float *att = s->att + (size_t)h * p->T;
        for (int t = 0; t <= pos; t++) {
            const float *k = kc + (size_t)t * C + h * HS;
            float score = 0.0f;
            for (int i = 0; i < HS; i++) score += q[i] * k[i];
            att[t] = score * scale;
        }
        softmax(att, pos + 1);
        float *out = s->xb + h * HS;
        memset(out, 0, HS * sizeof(float));
        for (int t = 0; t <= pos; t++) {
            const float *v = vc + (size_t)t * C + h * HS;
            for (int i = 0; i < HS; i++) out[i] += att[t] * v[i];
        }
    }
}

/* One position: token at pos, its keys and values into the cache, the next
 * token's logits into s->logits. */
static void forward(run_state *s, const weights *w, const config *p, int token, int pos)
{
    int C = p->C, F = p->F, HS = p->C / p->NH;
    size_t CC = (size_t)C * C, CF = (size_t)C * F;
    float *x = s->x;
    memcpy(x, w->embedding + (size_t)token * C, C * sizeof(float));
    for (int l = 0; l < p->L; l++) {
        float *kc = s->key_cache + (size_t)l * p->T * C, *vc = s->value_cache + (size_t)l * p->T * C;
        float *k = kc + (size_t)pos * C, *v = vc + (size_t)pos * C;
        rmsnorm(s->xb, x, w->rms_att + (size_t)l * C, C);
        matvec(s->q, s->xb, w->wq + l * CC, C, C);
        matvec(k, s->xb, w->wk + l * CC, C, C);
        matvec(v, s->xb, w->wv + l * CC, C, C);
        rope(s->q, k, pos, C, HS);
        attention(s, kc, vc, pos, p);
        matvec(s->xb2, s->xb, w->wo + l * CC, C, C);
        for (int i = 0; i < C; i++) x[i] += s->xb2[i];

        rmsnorm(s->xb, x, w->rms_ffn + (size_t)l * C, C);
        matvec(s->hb, s->xb, w->w1 + l * CF, C, F);
        matvec(s->hb2, s->xb, w->w3 + l * CF, C, F);
        for (int i = 0; i < F; i++) s->hb[i] = s->hb[i] / (1.0f + expf(-s->hb[i])) * s->hb2[i]; /* SwiGLU */
        matvec(s->xb, s->hb, w->w2 + l * CF, F, C);
        for (int i = 0; i < C; i++) x[i] += s->xb[i];
    }
    rmsnorm(x, x, w->rms_final, C);
    matvec(s->logits, x, w->embedding, C, p->V);
}

/* A token drawn from probs[n] (summing to 1). */
static int sample(const float *probs, int n)
{
    float r = rng_f32(), cdf = 0.0f;
    for (int i = 0; i < n; i++) {
        cdf += probs[i];
        if (r < cdf) return i;
    }
    return n - 1; /* rounding left r above the last sum */
}

/* One generation as bench.lua times it: BOS at position 0, then `tokens`
 * forwards and draws at temperature 1 from a fixed seed. */
static void generate(run_state *s, const weights *w, const config *p, int tokens)
{
    int token = 1;
    rng_state = 1;
    for (int pos = 0; pos < tokens; pos++) {
        forward(s, w, p, token, pos);
        softmax(s->logits, p->V);
        token = sample(s->logits, p->V);
    }
}

/* ---- the program ------------------------------------------------------------------- */

static double seconds(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int fail(const char *why)
{
    printf("{\"error\": \"llama2c_reference: %s\"}\n", why);
    return 2;
}

/* A positive int from s, or 0. */
static int positive(const char *s)
{
    char *end;
    long v = strtol(s, &end, 10);
    return *s && !*end && v > 0 && v <= 1L << 30 ? (int)v : 0;
}

int main(int argc, char **argv)
{
    if (argc != 9) return fail("usage: DIM HIDDEN LAYERS HEADS VOCAB SEQ_LEN TOKENS MIN_SECONDS");
    config p = { positive(argv[1]), positive(argv[2]), positive(argv[3]), positive(argv[4]), positive(argv[5]),
                 positive(argv[6]) };
    int tokens = positive(argv[7]);
    double min_time = strtod(argv[8], NULL);
    if (!p.C || !p.F || !p.L || !p.NH || !p.V || !p.T || !tokens || !(min_time >= 0))
        return fail("the sizes must be positive integers and MIN_SECONDS a number >= 0");
    if (p.C % p.NH || (p.C / p.NH) % 2) return fail("DIM must be HEADS times an even head size");
    if (tokens > p.T) return fail("TOKENS must not exceed SEQ_LEN");

    weights w;
    run_state s;
    int ok = weights_init(&w, &p) == 0 && run_state_init(&s, &p) == 0;
    if (!ok) return fail("out of memory");

    double w0 = seconds(CLOCK_MONOTONIC), c0 = seconds(CLOCK_PROCESS_CPUTIME_ID);
    generate(&s, &w, &p, tokens);
    int reps = 0;
    double t0 = seconds(CLOCK_MONOTONIC), elapsed;
    do {
        generate(&s, &w, &p, tokens);
        reps++;
        elapsed = seconds(CLOCK_MONOTONIC) - t0;
    } while (elapsed < min_time);
    double cpu = (seconds(CLOCK_PROCESS_CPUTIME_ID) - c0) / (seconds(CLOCK_MONOTONIC) - w0);

    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    printf("{\"threads\": %d, \"results\": [{\"config\": \"llama2.c run.c L%d NH%d C%d F%d T%d "
           "V%d, %d tokens\", \"value\": %.3f, \"ms\": %.3f, \"cpu\": %.3f, \"params\": %lld, \"rss_mib\": %.1f}]}\n",
           threads, p.L, p.NH, p.C, p.F, p.T, p.V, tokens, tokens / (elapsed / reps), elapsed / reps * 1e3, cpu,
           (long long)w.params, ru.ru_maxrss / 1024.0);
    run_state_free(&s);
    free(w.block);
    return 0;
}
