/* The token sampler: filters in the order documented in sampler.h, over a
 * candidate list that only ever shrinks. top_k is a quickselect (O(V)). top_p
 * first bins the candidates by log-probability (half-nat bins) to find the bin
 * where the cumulative mass crosses top_p, keeps the bins up to it, and sorts
 * only a growing prefix of those: over V = 50257 it sorts a few dozen entries,
 * not the vocabulary. */
#include "models/sampler.h"

#include <math.h>
#include <stdlib.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_AVX2_PATH 1
#endif

typedef struct {
    double w; /* logit, then unnormalized probability exp(logit - max) */
    int32_t id;
    int32_t bin; /* top_p: floor(2 (max - logit)), capped at N_BINS - 1 */
} cand;

#define N_BINS 64

struct gl_sampler {
    gl_sampler_config cfg;
    int64_t V;
    float *x;      /* [V] logits after the repetition penalty */
    cand *c;       /* [V] candidates */
    double *w;     /* [V] exp_neg's argument and result; plain sampling: its prefix sums */
    uint8_t *seen; /* [V] marks history ids so each is penalized once */
};

gl_sampler_config gl_sampler_config_default(void)
{
    return (gl_sampler_config){.temperature = 1.0, .top_k = 0, .top_p = 1.0, .min_p = 0.0,
                               .repetition_penalty = 1.0, .greedy = false};
}

gl_status gl_sampler_config_check(const gl_sampler_config *cfg)
{
    if (!(cfg->temperature >= 0.0) || isinf(cfg->temperature))
        return gl_error(GL_EINVAL, "sample: temperature must be finite and >= 0, got %g", cfg->temperature);
    if (cfg->top_k < 0) return gl_error(GL_EINVAL, "sample: top_k must be >= 0 (0 = off), got %lld", (long long)cfg->top_k);
    if (!(cfg->top_p > 0.0 && cfg->top_p <= 1.0))
        return gl_error(GL_EINVAL, "sample: top_p must be in (0, 1], got %g", cfg->top_p);
    if (!(cfg->min_p >= 0.0 && cfg->min_p <= 1.0))
        return gl_error(GL_EINVAL, "sample: min_p must be in [0, 1], got %g", cfg->min_p);
    if (!(cfg->repetition_penalty > 0.0) || isinf(cfg->repetition_penalty))
        return gl_error(GL_EINVAL, "sample: repetition_penalty must be finite and > 0, got %g",
                        cfg->repetition_penalty);
    return GL_OK;
}

gl_sampler *gl_sampler_new(const gl_sampler_config *cfg, int64_t vocab)
{
    if (gl_sampler_config_check(cfg) != GL_OK) return NULL;
    if (vocab < 1 || vocab > INT32_MAX) return gl_error_null(GL_EINVAL, "sample: vocabulary size %lld out of range", (long long)vocab);
    gl_sampler *s = calloc(1, sizeof *s);
    if (!s) return gl_error_null(GL_ENOMEM, "sample: out of memory");
    s->cfg = *cfg;
    s->V = vocab;
    s->x = malloc((size_t)vocab * sizeof *s->x);
    s->c = malloc((size_t)vocab * sizeof *s->c);
    s->w = malloc((size_t)vocab * sizeof *s->w);
    s->seen = calloc((size_t)vocab, 1);
    if (!s->x || !s->c || !s->w || !s->seen) {
        gl_sampler_free(s);
        return gl_error_null(GL_ENOMEM, "sample: out of memory for a vocabulary of %lld", (long long)vocab);
    }
    return s;
}

void gl_sampler_free(gl_sampler *s)
{
    if (!s) return;
    free(s->x);
    free(s->c);
    free(s->w);
    free(s->seen);
    free(s);
}

const gl_sampler_config *gl_sampler_config_of(const gl_sampler *s) { return &s->cfg; }
int64_t gl_sampler_vocab(const gl_sampler *s) { return s->V; }

/* a ranks before b: larger weight, then lower id (ids are unique, so this is a strict total order). */
static inline bool better(const cand *a, const cand *b) { return a->w > b->w || (a->w == b->w && a->id < b->id); }

static int cmp_cand(const void *pa, const void *pb)
{
    const cand *a = pa, *b = pb;
    return better(a, b) ? -1 : better(b, a) ? 1 : 0;
}

static inline void swap_cand(cand *a, cand *b)
{
    cand t = *a;
    *a = *b;
    *b = t;
}

/* Quickselect: afterwards c[0..k) hold the k best of c[0..n), in no order. */
static void select_best(cand *c, int64_t n, int64_t k)
{
    int64_t lo = 0, hi = n - 1, want = k - 1;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (better(&c[mid], &c[lo])) swap_cand(&c[mid], &c[lo]);
        if (better(&c[hi], &c[lo])) swap_cand(&c[hi], &c[lo]);
        if (better(&c[hi], &c[mid])) swap_cand(&c[hi], &c[mid]);
        cand pivot = c[mid];
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (better(&c[i], &pivot)) i++;
            while (better(&pivot, &c[j])) j--;
            if (i <= j) swap_cand(&c[i++], &c[j--]);
        }
        if (want <= j) hi = j;
        else if (want >= i) lo = i;
        else break;
    }
}

/* Sorts the k best of c[0..n) to the front, best first. */
static void sort_best(cand *c, int64_t n, int64_t k)
{
    if (k < n) select_best(c, n, k);
    qsort(c, (size_t)k, sizeof *c, cmp_cand);
}

/* Candidates kept by top_p: the shortest best-first prefix whose weight
 * reaches need (top_p of the total), moved to the front. */
static int64_t top_p_cut(cand *c, int64_t n, double need)
{
    /* Every candidate of a bin below the crossing bin is kept, none above it. */
    double mass[N_BINS] = {0}, cum = 0.0;
    for (int64_t i = 0; i < n; i++) mass[c[i].bin] += c[i].w;
    int last = 0;
    while (last < N_BINS - 1 && (cum += mass[last]) < need) last++;
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++)
        if (c[i].bin <= last) c[m++] = c[i];
    n = m;
    /* Sort a prefix that grows 8x until its mass reaches need. */
    for (int64_t k = n < 32 ? n : 32;; k = k * 8 < n ? k * 8 : n) {
        sort_best(c, n, k);
        double prefix = 0.0;
        for (int64_t i = 0; i < k; i++) {
            prefix += c[i].w;
            if (prefix >= need) return i + 1;
        }
        if (k == n) return n; /* rounding: the whole set is needed */
    }
}

/* --- exp(-d) over an array ------------------------------------------------------ */

#ifdef HAVE_AVX2_PATH
#define AVX2 __attribute__((target("avx2,fma")))

/* exp(-d) for d in [0, +inf]: 2^k e^r with k = round(-d / ln 2) and e^r
 * (|r| <= ln 2 / 2) a degree-13 Taylor polynomial (truncation error below
 * 1e-17: within an ulp or two of libm's exp), and 0 from d > 708 on (libm
 * gives subnormals there, which no draw can reach). libm's scalar exp took
 * 2/3 of a plain draw over V = 32000. */
AVX2 static inline __m256d exp_neg4(__m256d d)
{
    static const double inv_fact[14] = {1.0,
                                        1.0,
                                        1.0 / 2,
                                        1.0 / 6,
                                        1.0 / 24,
                                        1.0 / 120,
                                        1.0 / 720,
                                        1.0 / 5040,
                                        1.0 / 40320,
                                        1.0 / 362880,
                                        1.0 / 3628800,
                                        1.0 / 39916800,
                                        1.0 / 479001600,
                                        1.0 / 6227020800};
    const __m256d magic = _mm256_set1_pd(0x1.8p52), lim = _mm256_set1_pd(708.0);
    __m256d big = _mm256_cmp_pd(d, lim, _CMP_GT_OQ);
    __m256d x = _mm256_sub_pd(_mm256_setzero_pd(), _mm256_min_pd(d, lim));
    __m256d t = _mm256_fmadd_pd(x, _mm256_set1_pd(0x1.71547652b82fep0), magic), k = _mm256_sub_pd(t, magic);
    __m256d r = _mm256_fnmadd_pd(k, _mm256_set1_pd(0x1.62e42fee00000p-1), x); /* ln 2, high part: k * it is exact */
    r = _mm256_fnmadd_pd(k, _mm256_set1_pd(0x1.a39ef35793c76p-33), r);       /* and the rest */
    /* Estrin's scheme: a dependency chain of 5 operations instead of Horner's 13 */
    __m256d c[7], r2 = _mm256_mul_pd(r, r);
    for (int j = 0; j < 7; j++)
        c[j] = _mm256_fmadd_pd(_mm256_set1_pd(inv_fact[2 * j + 1]), r, _mm256_set1_pd(inv_fact[2 * j]));
    __m256d r4 = _mm256_mul_pd(r2, r2);
    __m256d q0 = _mm256_fmadd_pd(c[1], r2, c[0]), q1 = _mm256_fmadd_pd(c[3], r2, c[2]),
            q2 = _mm256_fmadd_pd(c[5], r2, c[4]);
    __m256d s0 = _mm256_fmadd_pd(q1, r4, q0), s1 = _mm256_fmadd_pd(c[6], r4, q2);
    __m256d p = _mm256_fmadd_pd(s1, _mm256_mul_pd(r4, r4), s0);
    /* t's low mantissa bits hold k (two's complement): 2^k has the bits (k + 1023) << 52 */
    __m256i e = _mm256_slli_epi64(_mm256_add_epi64(_mm256_castpd_si256(t), _mm256_set1_epi64x(1023)), 52);
    return _mm256_andnot_pd(big, _mm256_mul_pd(p, _mm256_castsi256_pd(e)));
}

/* w[i] = exp(-w[i]); a last partial vector goes through a zero-padded copy. */
AVX2 static void exp_neg_avx2(double *w, int64_t n)
{
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) _mm256_storeu_pd(w + i, exp_neg4(_mm256_loadu_pd(w + i)));
    if (i == n) return;
    double tail[4] = {0, 0, 0, 0};
    for (int64_t j = i; j < n; j++) tail[j - i] = w[j];
    _mm256_storeu_pd(tail, exp_neg4(_mm256_loadu_pd(tail)));
    for (int64_t j = i; j < n; j++) w[j] = tail[j - i];
}

/* The largest x[i] * inv_t, i < n (x holds no NaN or +inf). */
AVX2 static double max_scaled_avx2(const float *x, int64_t n, double inv_t)
{
    __m256d m = _mm256_set1_pd(-INFINITY), it = _mm256_set1_pd(inv_t);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) m = _mm256_max_pd(m, _mm256_mul_pd(_mm256_cvtps_pd(_mm_loadu_ps(x + i)), it));
    double t[4], mx = -INFINITY;
    _mm256_storeu_pd(t, m);
    for (int k = 0; k < 4; k++) mx = t[k] > mx ? t[k] : mx;
    for (; i < n; i++) mx = x[i] * inv_t > mx ? x[i] * inv_t : mx;
    return mx;
}

/* w[i] = mx - x[i] * inv_t (the general path's d, bit for bit: a product
 * rounded to double, then the difference), 4 at a time. */
AVX2 static void neg_log_weights_avx2(double *w, const float *x, int64_t n, double inv_t, double mx)
{
    __m256d it = _mm256_set1_pd(inv_t), m = _mm256_set1_pd(mx);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4)
        _mm256_storeu_pd(w + i, _mm256_sub_pd(m, _mm256_mul_pd(_mm256_cvtps_pd(_mm_loadu_ps(x + i)), it)));
    for (; i < n; i++) w[i] = mx - x[i] * inv_t;
}

static bool have_avx2(void) { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }
#endif

/* w[i] = exp(-w[i]), w[i] >= 0: one function for both sampling paths, so
 * that they compute the same weights bit for bit. */
static void exp_neg(double *w, int64_t n)
{
#ifdef HAVE_AVX2_PATH
    if (have_avx2()) {
        exp_neg_avx2(w, n);
        return;
    }
#endif
    for (int64_t i = 0; i < n; i++) w[i] = exp(-w[i]);
}

static double draw_uniform(gl_rng_state *rng)
{
    if (!rng) return gl_rng_uniform();
    gl_rng_state saved;
    gl_rng_get(&saved);
    gl_rng_set(rng);
    double u = gl_rng_uniform();
    gl_rng_get(rng);
    gl_rng_set(&saved);
    return u;
}

void gl_sampler_rng_seed(gl_rng_state *rng, uint64_t seed)
{
    gl_rng_state saved;
    gl_rng_get(&saved);
    gl_rng_seed(seed);
    gl_rng_get(rng);
    gl_rng_set(&saved);
}

static gl_status load_logits(gl_sampler *s, const float *logits, const int64_t *history, int64_t n_history)
{
    int64_t V = s->V;
    for (int64_t i = 0; i < V; i++) {
        if (isnan(logits[i]) || logits[i] == INFINITY)
            return gl_error(GL_EINVAL, "sample: logit %lld is %s", (long long)i, isnan(logits[i]) ? "NaN" : "+inf");
        s->x[i] = logits[i];
    }
    double pen = s->cfg.repetition_penalty;
    if (pen == 1.0 || n_history <= 0) return GL_OK;
    for (int64_t h = 0; h < n_history; h++)
        if (history[h] < 0 || history[h] >= V)
            return gl_error(GL_EINVAL, "sample: history id %lld at %lld is outside the vocabulary [0, %lld)",
                            (long long)history[h], (long long)h, (long long)V);
    for (int64_t h = 0; h < n_history; h++) {
        int64_t t = history[h];
        if (s->seen[t]) continue;
        s->seen[t] = 1;
        s->x[t] = (float)(s->x[t] > 0 ? s->x[t] / pen : s->x[t] * pen);
    }
    for (int64_t h = 0; h < n_history; h++) s->seen[history[h]] = 0;
    return GL_OK;
}

/* Temperature and the draw alone (no filter): the arithmetic of the general
 * path below, term for term, so the same draw picks the same id, without its
 * candidate list and bins. A token at -inf has weight exp(-inf) = 0, which
 * no prefix sum can cross. The running total is kept as the prefix sums, so
 * the draw is a binary search for the first one above u (they do not
 * decrease) instead of a second pass over the vocabulary. */
static gl_status sample_plain(gl_sampler *s, gl_rng_state *rng, int64_t *id)
{
    int64_t V = s->V, last = V - 1;
    double inv_t = 1.0 / s->cfg.temperature, mx = -INFINITY, total = 0.0;
    while (last >= 0 && s->x[last] == -INFINITY) last--;
    if (last < 0) return gl_error(GL_EINVAL, "sample: every logit is -inf");
    double *w = s->w;
#ifdef HAVE_AVX2_PATH
    if (have_avx2()) {
        mx = max_scaled_avx2(s->x, last + 1, inv_t);
        neg_log_weights_avx2(w, s->x, last + 1, inv_t, mx);
    } else
#endif
    {
        for (int64_t i = 0; i <= last; i++) mx = s->x[i] * inv_t > mx ? s->x[i] * inv_t : mx;
        for (int64_t i = 0; i <= last; i++) w[i] = mx - s->x[i] * inv_t;
    }
    exp_neg(w, last + 1);
    for (int64_t i = 0; i <= last; i++) w[i] = total += w[i];
    double u = draw_uniform(rng) * total;
    if (!(u < total)) { /* u rounded up to the total */
        *id = last;
        return GL_OK;
    }
    int64_t lo = 0, hi = last; /* the first i with u < w[i] is in [lo, hi] */
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (u < w[mid]) hi = mid;
        else lo = mid + 1;
    }
    *id = lo;
    return GL_OK;
}

gl_status gl_sampler_sample(gl_sampler *s, const float *logits, const int64_t *history, int64_t n_history,
                            gl_rng_state *rng, int64_t *id)
{
    gl_status st = load_logits(s, logits, history, n_history);
    if (st != GL_OK) return st;
    const gl_sampler_config *cfg = &s->cfg;
    int64_t V = s->V;
    if (cfg->greedy || cfg->temperature == 0.0) {
        int64_t best = 0;
        for (int64_t i = 1; i < V; i++)
            if (s->x[i] > s->x[best]) best = i;
        if (s->x[best] == -INFINITY) return gl_error(GL_EINVAL, "sample: every logit is -inf");
        *id = best;
        return GL_OK;
    }
    if (cfg->top_k == 0 && cfg->top_p >= 1.0 && cfg->min_p == 0.0) return sample_plain(s, rng, id);
    /* Temperature; tokens at -inf can never be drawn and do not become candidates. */
    cand *c = s->c;
    int64_t n = 0;
    double inv_t = 1.0 / cfg->temperature, mx = -INFINITY;
    for (int64_t i = 0; i < V; i++) {
        if (s->x[i] == -INFINITY) continue;
        double v = s->x[i] * inv_t;
        c[n++] = (cand){v, (int32_t)i, 0};
        if (v > mx) mx = v;
    }
    if (n == 0) return gl_error(GL_EINVAL, "sample: every logit is -inf");
    if (cfg->top_k > 0 && cfg->top_k < n) {
        select_best(c, n, cfg->top_k);
        n = cfg->top_k;
    }
    /* The maximum always survives top_k, so weights are in (0, 1] with the best at 1. */
    double total = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = mx - c[i].w;
        c[i].bin = d < 0.5 * (N_BINS - 1) ? (int32_t)(2.0 * d) : N_BINS - 1;
        s->w[i] = d;
    }
    exp_neg(s->w, n);
    for (int64_t i = 0; i < n; i++) {
        c[i].w = s->w[i];
        total += c[i].w;
    }
    if (cfg->top_p < 1.0 && n > 1) {
        n = top_p_cut(c, n, cfg->top_p * total);
        total = 0.0;
        for (int64_t i = 0; i < n; i++) total += c[i].w;
    }
    if (cfg->min_p > 0.0) {
        int64_t m = 0;
        total = 0.0;
        for (int64_t i = 0; i < n; i++)
            if (c[i].w >= cfg->min_p) { /* p_i / p_max = w_i / 1 */
                c[m++] = c[i];
                total += c[i].w;
            }
        n = m; /* m >= 1: the best has w = 1 >= min_p */
    }
    double u = draw_uniform(rng) * total, acc = 0.0;
    for (int64_t i = 0; i < n; i++) {
        acc += c[i].w;
        if (u < acc) {
            *id = c[i].id;
            return GL_OK;
        }
    }
    *id = c[n - 1].id; /* u rounded up to the total */
    return GL_OK;
}

void gl_log_softmax_row(float *out, const float *logits, int64_t V)
{
    double mx = -INFINITY, sum = 0.0;
    for (int64_t i = 0; i < V; i++)
        if (logits[i] > mx) mx = logits[i];
    for (int64_t i = 0; i < V; i++) sum += exp(logits[i] - mx);
    double lse = mx + log(sum);
    for (int64_t i = 0; i < V; i++) out[i] = (float)(logits[i] - lse);
}

gl_status gl_softmax_topk_row(const float *logits, int64_t V, int64_t k, int64_t *ids, float *probs)
{
    if (k < 1 || k > V) return gl_error(GL_EINVAL, "topk: k = %lld out of range 1..%lld", (long long)k, (long long)V);
    cand *c = malloc((size_t)V * sizeof *c);
    if (!c) return gl_error(GL_ENOMEM, "topk: out of memory");
    double mx = -INFINITY, sum = 0.0;
    for (int64_t i = 0; i < V; i++) {
        if (isnan(logits[i])) {
            free(c);
            return gl_error(GL_EINVAL, "topk: logit %lld is NaN", (long long)i);
        }
        c[i] = (cand){logits[i], (int32_t)i, 0};
        if (logits[i] > mx) mx = logits[i];
    }
    for (int64_t i = 0; i < V; i++) sum += exp(c[i].w - mx);
    sort_best(c, V, k);
    for (int64_t i = 0; i < k; i++) {
        ids[i] = c[i].id;
        probs[i] = (float)(exp(c[i].w - mx) / sum);
    }
    free(c);
    return GL_OK;
}
