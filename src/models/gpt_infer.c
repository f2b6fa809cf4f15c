/* Incremental GPT inference with a KV cache, outside autograd.
 *
 * A session resolves the model's weights once (retaining them, so a module
 * that later swaps a parameter cannot leave it dangling), preallocates the
 * per-layer K/V caches ([KVH, capacity, HS] per layer, the layout of
 * gl_attention_decode) and the scratch of one chunk of CHUNK tokens, and
 * then runs raw float kernels: gl_sgemm for the projections of several
 * tokens, AVX2 matrix-vector products (threads over chunks of output rows)
 * for one: four far-apart rows at a time on weights streamed from DRAM
 * (which it asks to be backed by huge pages), four adjacent rows with
 * software prefetch on weights that stay in cache; inline norms and
 * activations, gl_rope_inplace and gl_attention_decode.
 * Appending a token costs the projections plus attention over the cached
 * positions; nothing else grows with the length, and nothing is allocated.
 *
 * The math is gl_gpt_forward's (gpt.c), in the same order, so logits agree
 * to float rounding; tests/lua/test_gpt.lua checks this for every arch.
 * A failed append (interrupt) leaves the length where it was.
 *
 * gl_gpt_session_slide serves a caller that refills a full cache with its
 * last keep tokens (gl.generate): the positions of those tokens change, so
 * they must run again, but instead of a prefill of keep tokens at refill
 * time each runs as it is appended, as a second row beside itself at its
 * position in the next window (forward_chunk's twin). With cached weights
 * the matrix-vector products are bound by the loads of W, so the twin
 * costs little; the refill's append then computes one token. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "core/interrupt.h"
#include "core/threads.h"
#include "models/gpt.h"
#include "ops/attention.h"
#include "ops/matmul.h"
#include "ops/rope.h"
#include "ops/unary.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_AVX2_PATH 1
#endif

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25 /* Linux 6.1; glibc 2.36's headers lack the name */
#endif

enum {
    CHUNK = 32,             /* tokens per forward_chunk */
    PAR_MIN_MACS = 1 << 17, /* smaller products run on one thread */
    PAR_CHUNK_FLOATS = 1 << 14, /* a thread's share of W at a time: at least 64 KB */
    CACHED_BYTES = 16 << 20, /* weights up to this size are taken to stay in cache between tokens */
    HUGE_PAGE = 2 << 20,
};

typedef struct {
    const float *w, *b; /* w [out, in] row-major, b [out] or NULL */
} lin_w;

/* y[4] = the 4 rows of W [4, I] times x [I] */
typedef void (*dot4_fn)(float *y, const float *W, const float *x, int64_t I);
/* y0[4], y1[4] = the 4 rows of W [4, I] times x0 [I] and x1 [I] */
typedef void (*dot4x2_fn)(float *y0, float *y1, const float *W, const float *x0, const float *x1, int64_t I);
/* y (+)= W x + b over nb blocks of 4 rows (rows_stream: over nb rows), see ROWS_FN */
typedef void (*rows_fn)(float *y, const float *W, const float *x, int64_t I, int64_t nb, const float *b, bool acc);
typedef void (*rows2_fn)(float *y0, float *y1, const float *W, const float *x0, const float *x1, int64_t I, int64_t nb,
                         const float *b, bool acc);

typedef struct {
    const float *ln1_w, *ln1_b, *ln2_w, *ln2_b;
    lin_w q, k, v, o, gate, up, down;
} layer_w;

struct gl_gpt_session {
    gl_module *m;
    gl_gpt_config c;
    int64_t cap, len;
    int64_t HS, KVD, QKVD; /* head size; K/V row width KVH*HS */
    layer_w *lw;
    const float *tok, *pos, *lnf_w, *lnf_b, *head;
    gl_tensor_list held; /* references on every weight read through the pointers above */
    float *kc, *vc;      /* [L, KVH, cap, HS] */
    /* The next window (gl_gpt_session_slide): the tokens sh_ids [sh_len] at
     * positions from + 0.. in the caches skc, svc (as kc, vc); from 0: off. */
    int64_t from, sh_len, *sh_ids;
    float *skc, *svc;
    float *x, *h, *q, *k, *v, *att, *ff, *ff2; /* chunk scratch */
    float *pad;                                /* [4, max(C, F)]: a last block of under 4 rows of W */
    dot4_fn dot4;                              /* the matrix-vector kernel (pick_kernels) */
    dot4x2_fn dot4x2;                          /* and its two-token form */
    rows_fn rows;                              /* their loops over blocks of rows */
    rows2_fn rows2;
    rows_fn rows_stream;                       /* one token on weights from DRAM, rows in any number */
    bool cached;                               /* weights of at most CACHED_BYTES (linear, slide) */
};

/* --- kernels -------------------------------------------------------------------- */

static float dot_plain(const float *a, const float *b, int64_t n)
{
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

/* y[r] = t[r] + b[r] (b may be NULL), or y[r] += that when acc, r < k: how
 * linear_rows stores the sums of a block. */
static inline void put_sums(float *y, const float *t, const float *b, int64_t k, bool acc)
{
    for (int64_t r = 0; r < k; r++) {
        float v = t[r] + (b ? b[r] : 0.0f);
        y[r] = acc ? y[r] + v : v;
    }
}

static inline void put4_plain(float *y, const float *t, const float *b, bool acc) { put_sums(y, t, b, 4, acc); }

#ifdef HAVE_AVX2_PATH
/* The 4 sums of the vectors s[k] (hadd transposition), in the order dot4_avx2 uses. */
__attribute__((target("avx2,fma"))) static inline __m128 hsum4(const __m256 *s)
{
    __m256 a = _mm256_hadd_ps(s[0], s[1]), b = _mm256_hadd_ps(s[2], s[3]), c = _mm256_hadd_ps(a, b);
    return _mm_add_ps(_mm256_castps256_ps128(c), _mm256_extractf128_ps(c, 1));
}

/* The sums of rows far apart in W, 4 at a time, for weights streamed from
 * DRAM. One core here reads one sequential stream at 10.5-12.6 GB/s, and
 * four streams far apart at once at 15.7-18.7 (each stream keeps its own
 * hardware prefetcher busy; four rows next to each other count as one).
 * Every row has the same arithmetic whoever its partners are (two
 * accumulators over 16 columns at a time, then hsum4 and the scalar tail),
 * so a row's sum does not depend on the split between threads. */
__attribute__((target("avx2,fma"))) static void dot_rows4(float *y, const float *const w[4], const float *x,
                                                         int64_t I)
{
    __m256 a[4], b[4];
    for (int k = 0; k < 4; k++) a[k] = b[k] = _mm256_setzero_ps();
    int64_t i = 0, i0 = I - I % 8; /* the columns the vector loops cover */
    for (; i + 16 <= I; i += 16) {
        __m256 x0 = _mm256_loadu_ps(x + i), x1 = _mm256_loadu_ps(x + i + 8);
        for (int k = 0; k < 4; k++) {
            a[k] = _mm256_fmadd_ps(_mm256_loadu_ps(w[k] + i), x0, a[k]);
            b[k] = _mm256_fmadd_ps(_mm256_loadu_ps(w[k] + i + 8), x1, b[k]);
        }
    }
    if (i < i0)
        for (int k = 0; k < 4; k++) a[k] = _mm256_fmadd_ps(_mm256_loadu_ps(w[k] + i), _mm256_loadu_ps(x + i), a[k]);
    for (int k = 0; k < 4; k++) a[k] = _mm256_add_ps(a[k], b[k]);
    _mm_storeu_ps(y, hsum4(a));
    for (int k = 0; k < 4; k++)
        for (int64_t j = i0; j < I; j++) y[k] += w[k][j] * x[j];
}

/* rows_stream(y, W, x, I, m, b, acc): put_sums of the m rows of W [m, I]
 * times x into y [m] (b [m] or NULL), for weights streamed from DRAM: row j
 * of each quarter of W at once, then the m % 4 rows left one by one (a row
 * repeated four times). */
__attribute__((target("avx2,fma"))) static void rows_stream_avx2(float *y, const float *W, const float *x, int64_t I,
                                                                int64_t m, const float *b, bool acc)
{
    int64_t q = m / 4;
    for (int64_t j = 0; j < q; j++) {
        const float *w[4];
        float t[4];
        for (int k = 0; k < 4; k++) w[k] = W + (k * q + j) * I;
        dot_rows4(t, w, x, I);
        for (int k = 0; k < 4; k++) put_sums(y + k * q + j, t + k, b ? b + k * q + j : NULL, 1, acc);
    }
    for (int64_t r = 4 * q; r < m; r++) {
        const float *w[4] = {W + r * I, W + r * I, W + r * I, W + r * I};
        float t[4];
        dot_rows4(t, w, x, I);
        put_sums(y + r, t, b ? b + r : NULL, 1, acc);
    }
}

/* Prefetches the part of the next block of 4 rows (after W [4, I]) that
 * matches columns [i, i + 8) of this one: over a block, the whole next
 * block. From L3, four short row streams at once give the hardware
 * prefetcher too little to follow (char GPT: dot4_side 72-95 us a token of
 * weights without, 62-70 with; dot4x2 123-131 without, 74-95 with). A
 * prefetch past the last block reads whatever follows, and never faults. */
#define PREFETCH_NEXT_BLOCK(W, I, i)                                \
    do {                                                           \
        const char *p_ = (const char *)((W) + 4 * (I)) + 16 * (i); \
        _mm_prefetch(p_, _MM_HINT_T0);                             \
        _mm_prefetch(p_ + 64, _MM_HINT_T0);                        \
    } while (0)

/* The 4 sums W[k] . x of the rows k of W (stride I), the rows side by side:
 * x is loaded once for the four. For weights in cache (the char GPT: 3 MB
 * of weights); from DRAM, four rows next to each other are one stream to
 * the prefetcher (rows_stream_avx2). Inlined into its loops (rows_side),
 * whose stores then take the sums from a register: through memory, the
 * store-to-load forwarding took 5% of a char GPT token. */
__attribute__((target("avx2,fma"), always_inline)) static inline __m128 dot4_side_v(const float *W, const float *x,
                                                                                  int64_t I)
{
    const float *w0 = W, *w1 = W + I, *w2 = W + 2 * I, *w3 = W + 3 * I;
    __m256 s[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    int64_t i = 0;
    for (; i + 8 <= I; i += 8) {
        __m256 xv = _mm256_loadu_ps(x + i);
        PREFETCH_NEXT_BLOCK(W, I, i);
        s[0] = _mm256_fmadd_ps(_mm256_loadu_ps(w0 + i), xv, s[0]);
        s[1] = _mm256_fmadd_ps(_mm256_loadu_ps(w1 + i), xv, s[1]);
        s[2] = _mm256_fmadd_ps(_mm256_loadu_ps(w2 + i), xv, s[2]);
        s[3] = _mm256_fmadd_ps(_mm256_loadu_ps(w3 + i), xv, s[3]);
    }
    __m128 r = hsum4(s);
    if (i == I) return r;
    float t[4];
    _mm_storeu_ps(t, r);
    for (int k = 0; k < 4; k++)
        for (int64_t j = i; j < I; j++) t[k] += W[k * I + j] * x[j];
    return _mm_loadu_ps(t);
}

/* The sums W[k] . x0 and W[k] . x1 (in *r1) for the 4 rows k of W (stride
 * I): two tokens (a token and its twin, forward_chunk) share each load of
 * W. Each sum is dot4_side_v's, in its order. */
__attribute__((target("avx2,fma"), always_inline)) static inline __m128 dot4x2_v(__m128 *r1, const float *W,
                                                                               const float *x0, const float *x1,
                                                                               int64_t I)
{
    const float *w0 = W, *w1 = W + I, *w2 = W + 2 * I, *w3 = W + 3 * I;
    __m256 s[4], t[4];
    for (int k = 0; k < 4; k++) s[k] = t[k] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= I; i += 8) {
        __m256 a = _mm256_loadu_ps(x0 + i), b = _mm256_loadu_ps(x1 + i), w;
        PREFETCH_NEXT_BLOCK(W, I, i);
        w = _mm256_loadu_ps(w0 + i), s[0] = _mm256_fmadd_ps(w, a, s[0]), t[0] = _mm256_fmadd_ps(w, b, t[0]);
        w = _mm256_loadu_ps(w1 + i), s[1] = _mm256_fmadd_ps(w, a, s[1]), t[1] = _mm256_fmadd_ps(w, b, t[1]);
        w = _mm256_loadu_ps(w2 + i), s[2] = _mm256_fmadd_ps(w, a, s[2]), t[2] = _mm256_fmadd_ps(w, b, t[2]);
        w = _mm256_loadu_ps(w3 + i), s[3] = _mm256_fmadd_ps(w, a, s[3]), t[3] = _mm256_fmadd_ps(w, b, t[3]);
    }
    __m128 r0 = hsum4(s);
    *r1 = hsum4(t);
    if (i == I) return r0;
    float y0[4], y1[4];
    _mm_storeu_ps(y0, r0);
    _mm_storeu_ps(y1, *r1);
    for (int k = 0; k < 4; k++)
        for (int64_t j = i; j < I; j++) {
            y0[k] += W[k * I + j] * x0[j];
            y1[k] += W[k * I + j] * x1[j];
        }
    *r1 = _mm_loadu_ps(y1);
    return _mm_loadu_ps(y0);
}

__attribute__((target("avx2,fma"))) static void dot4_side(float *y, const float *W, const float *x, int64_t I)
{
    _mm_storeu_ps(y, dot4_side_v(W, x, I));
}

__attribute__((target("avx2,fma"))) static void dot4x2_avx2(float *y0, float *y1, const float *W, const float *x0,
                                                           const float *x1, int64_t I)
{
    __m128 r1, r0 = dot4x2_v(&r1, W, x0, x1, I);
    _mm_storeu_ps(y0, r0);
    _mm_storeu_ps(y1, r1);
}

/* put_sums of 4 from a register: the same additions (a missing bias adds 0, as there). */
__attribute__((target("avx2,fma"), always_inline)) static inline void put4_avx2(float *y, __m128 t, const float *b,
                                                                              bool acc)
{
    __m128 v = _mm_add_ps(t, b ? _mm_loadu_ps(b) : _mm_setzero_ps());
    _mm_storeu_ps(y, acc ? _mm_add_ps(_mm_loadu_ps(y), v) : v);
}

/* rows and rows2 (see rows_plain) of the kernels above. */
__attribute__((target("avx2,fma"))) static void rows_side(float *y, const float *W, const float *x, int64_t I,
                                                         int64_t nb, const float *b, bool acc)
{
    for (int64_t j = 0; j < nb; j++) put4_avx2(y + 4 * j, dot4_side_v(W + 4 * j * I, x, I), b ? b + 4 * j : NULL, acc);
}

__attribute__((target("avx2,fma"))) static void rows2_avx2(float *y0, float *y1, const float *W, const float *x0,
                                                          const float *x1, int64_t I, int64_t nb, const float *b,
                                                          bool acc)
{
    for (int64_t j = 0; j < nb; j++) {
        __m128 r1, r0 = dot4x2_v(&r1, W + 4 * j * I, x0, x1, I);
        put4_avx2(y0 + 4 * j, r0, b ? b + 4 * j : NULL, acc);
        put4_avx2(y1 + 4 * j, r1, b ? b + 4 * j : NULL, acc);
    }
}
#endif

static void dot4_plain(float *y, const float *W, const float *x, int64_t I)
{
    for (int k = 0; k < 4; k++) y[k] = dot_plain(W + k * I, x, I);
}

static void dot4x2_plain(float *y0, float *y1, const float *W, const float *x0, const float *x1, int64_t I)
{
    dot4_plain(y0, W, x0, I);
    dot4_plain(y1, W, x1, I);
}

/* rows(y, W, x, I, nb, b, acc): put_sums of the nb blocks of 4 rows of W
 * [4 nb, I] times x into y [4 nb] (b [4 nb] or NULL); rows2 likewise for
 * two tokens x0, x1 into y0, y1. The loop over blocks lives in each
 * kernel's own function, where dot4 inlines: through a pointer per block,
 * the call and the stores took 7% of a char GPT token. */
static void rows_plain(float *y, const float *W, const float *x, int64_t I, int64_t nb, const float *b, bool acc)
{
    for (int64_t j = 0; j < nb; j++) {
        float t[4];
        dot4_plain(t, W + 4 * j * I, x, I);
        put4_plain(y + 4 * j, t, b ? b + 4 * j : NULL, acc);
    }
}

static void rows2_plain(float *y0, float *y1, const float *W, const float *x0, const float *x1, int64_t I, int64_t nb,
                        const float *b, bool acc)
{
    for (int64_t j = 0; j < nb; j++) {
        float t[8];
        dot4x2_plain(t, t + 4, W + 4 * j * I, x0, x1, I);
        put4_plain(y0 + 4 * j, t, b ? b + 4 * j : NULL, acc);
        put4_plain(y1 + 4 * j, t + 4, b ? b + 4 * j : NULL, acc);
    }
}

static void rows_stream_plain(float *y, const float *W, const float *x, int64_t I, int64_t m, const float *b, bool acc)
{
    for (int64_t r = 0; r < m; r++) {
        float t = dot_plain(W + r * I, x, I);
        put_sums(y + r, &t, b ? b + r : NULL, 1, acc);
    }
}

/* Weights that stream from DRAM on every token are read faster from huge
 * pages: the hardware prefetcher stops at page boundaries, and one core
 * here reads ~10 GB/s from 4 KB pages against ~16 from 2 MB ones. Tensors
 * of 4 MB and more are mapped for huge pages already (core/storage.c); the
 * smaller ones (all the layer weights of stories15M) sit in malloc's heap.
 * MADV_COLLAPSE remaps the 2 MB regions around a weight as huge pages in
 * place: data and addresses stay, only the page tables change (once: ~1 ms
 * per MB the first time, nothing after). A hint; errors are ignored (older
 * kernels, file mappings, a region past the end of the heap). */
static void collapse_pages(const gl_tensor_list *held)
{
    for (int64_t i = 0; i < held->n; i++) {
        const gl_tensor *t = held->items[i].t;
        uintptr_t a = (uintptr_t)gl_tensor_data(t), e = a + (uintptr_t)t->numel * sizeof(float);
        a &= ~(uintptr_t)(HUGE_PAGE - 1);
        e = (e + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1);
        madvise((void *)a, e - a, MADV_COLLAPSE);
    }
}

/* The kernels: rows_stream for one token on weights streamed from DRAM,
 * dot4_side and its loop rows_side (and dot4x2, rows2 for two tokens) on
 * weights of at most CACHED_BYTES. CACHED_BYTES is a constant, not
 * sysconf(_SC_LEVEL3_CACHE_SIZE): in this machine's VM that reports 256 MB
 * for an L3 of 32 MB shared with other guests. */
static void pick_kernels(gl_gpt_session *s, int64_t weight_bytes)
{
    s->cached = weight_bytes <= CACHED_BYTES;
#ifdef HAVE_AVX2_PATH
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        s->dot4 = dot4_side;
        s->dot4x2 = dot4x2_avx2;
        s->rows = rows_side;
        s->rows2 = rows2_avx2;
        s->rows_stream = rows_stream_avx2;
        return;
    }
#endif
    s->dot4 = dot4_plain;
    s->dot4x2 = dot4x2_plain;
    s->rows = rows_plain;
    s->rows2 = rows2_plain;
    s->rows_stream = rows_stream_plain;
}

/* Columns [o0, o1) of y[n, O] (+)= x[n, I] W[O, I]^T + b for n = 1 or 2
 * tokens, in blocks of 4 rows of W (o0 is a multiple of 4). A last block of
 * under 4 rows is copied into pad ([4, I] at least), whose other rows give
 * sums nobody reads. */
static void linear_rows(const gl_gpt_session *s, float *y, const float *x, lin_w L, int64_t n, int64_t I, int64_t O,
                        bool accumulate, int64_t o0, int64_t o1)
{
    int64_t nb = (o1 - o0) / 4, o = o0 + 4 * nb, k = o1 - o;
    const float *b = L.b ? L.b + o0 : NULL;
    if (n == 1 && !s->cached) {
        s->rows_stream(y + o0, L.w + o0 * I, x, I, o1 - o0, b, accumulate);
        return;
    }
    if (n == 1)
        s->rows(y + o0, L.w + o0 * I, x, I, nb, b, accumulate);
    else
        s->rows2(y + o0, y + O + o0, L.w + o0 * I, x, x + I, I, nb, b, accumulate);
    if (k == 0) return;
    memcpy(s->pad, L.w + o * I, (size_t)(k * I) * sizeof(float));
    float t8[8];
    if (n == 1)
        s->dot4(t8, s->pad, x, I);
    else
        s->dot4x2(t8, t8 + 4, s->pad, x, x + I, I);
    for (int64_t u = 0; u < n; u++) put_sums(y + u * O + o, t8 + 4 * u, L.b ? L.b + o : NULL, k, accumulate);
}

/* y[n, O] (+)= x[n, I] @ W[O, I]^T + b. Several tokens go to gl_sgemm (the
 * bias written first, then beta = 1: one pass over y less), except two on
 * cached weights (a token and its twin): those share the loads of W in
 * linear_rows. One token is a matrix-vector product, bandwidth-bound.
 * Threads split the rows between whole blocks of 4, so every sum is the
 * same for any thread count and schedule, and one thread never enters
 * a parallel region (libgomp's team start and end cost a futex call each,
 * ~2% of a char GPT token). */
static void linear(const gl_gpt_session *s, float *y, const float *x, lin_w L, int64_t n, int64_t I, int64_t O,
                   bool accumulate)
{
    if (n > 2 || (n > 1 && !s->cached)) {
        if (L.b)
            for (int64_t t = 0; t < n; t++) {
                float *yr = y + t * O;
                if (accumulate)
                    for (int64_t o = 0; o < O; o++) yr[o] += L.b[o];
                else
                    memcpy(yr, L.b, (size_t)O * sizeof(float));
            }
        gl_sgemm(false, true, n, O, I, 1.0f, x, I, L.w, I, accumulate || L.b ? 1.0f : 0.0f, y, O);
        return;
    }
    int nt = gl_threads_get();
    if (nt > 1 && O * I >= PAR_MIN_MACS) {
        /* Threads take chunks of rows as they come: the second core here is
         * shared, and a fixed split waits for its slower half. */
        int64_t rows = PAR_CHUNK_FLOATS / I / 4 * 4 + 4, chunks = (O + rows - 1) / rows;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
        for (int64_t c = 0; c < chunks; c++)
            linear_rows(s, y, x, L, n, I, O, accumulate, c * rows, (c + 1) * rows < O ? (c + 1) * rows : O);
        return;
    }
    linear_rows(s, y, x, L, n, I, O, accumulate, 0, O);
}

/* Row-wise LayerNorm (b may be NULL) or, when is_rms, RMSNorm. y, x [n, C].
 * The sums are simd reductions: vectorized in an order fixed at build time. */
static void norm(float *y, const float *x, const float *w, const float *b, int64_t n, int64_t C, float eps,
                 bool is_rms)
{
    for (int64_t t = 0; t < n; t++) {
        const float *xr = x + t * C;
        float *yr = y + t * C;
        if (is_rms) {
            float ss = 0.0f;
#pragma omp simd reduction(+ : ss)
            for (int64_t i = 0; i < C; i++) ss += xr[i] * xr[i];
            float r = 1.0f / sqrtf(ss / (float)C + eps);
#pragma omp simd
            for (int64_t i = 0; i < C; i++) yr[i] = xr[i] * r * w[i];
            continue;
        }
        float mean = 0.0f, var = 0.0f;
#pragma omp simd reduction(+ : mean)
        for (int64_t i = 0; i < C; i++) mean += xr[i];
        mean /= (float)C;
#pragma omp simd reduction(+ : var)
        for (int64_t i = 0; i < C; i++) var += (xr[i] - mean) * (xr[i] - mean);
        float r = 1.0f / sqrtf(var / (float)C + eps);
        /* two loops (with the test of b inside, the loop stayed scalar), each
         * `omp simd`: -O2 does not vectorize loops that need alias checks */
        if (b) {
#pragma omp simd
            for (int64_t i = 0; i < C; i++) yr[i] = (xr[i] - mean) * r * w[i] + b[i];
        } else {
#pragma omp simd
            for (int64_t i = 0; i < C; i++) yr[i] = (xr[i] - mean) * r * w[i] + 0.0f;
        }
    }
}

/* g = silu(g) * u. */
static void swiglu(float *g, const float *u, int64_t n)
{
    for (int64_t i = 0; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

/* --- session ---------------------------------------------------------------------- */

void gl_gpt_session_free(gl_gpt_session *s)
{
    if (!s) return;
    gl_tensor_list_clear(&s->held);
    gl_module_release(s->m);
    free(s->lw);
    free(s->kc);
    free(s->vc);
    free(s->x);
    free(s->h);
    free(s->q);
    free(s->att);
    free(s->ff);
    free(s->ff2);
    free(s->k);
    free(s->v);
    free(s->pad);
    free(s->sh_ids);
    free(s->skc);
    free(s->svc);
    free(s);
}

/* The f32 data of the tensor named name (printf-style), retained in s->held;
 * NULL (error set) when absent and required. */
static const float *weight(gl_gpt_session *s, bool required, const char *fmt, const char *prefix, long long layer)
{
    char name[160];
    snprintf(name, sizeof name, fmt, prefix, layer);
    gl_tensor *t = gl_module_find_tensor(s->m, name);
    if (!t) return required ? gl_error_null(GL_EINVAL, "session: the model has no '%s'", name) : NULL;
    if (t->dtype != GL_F32) return gl_error_null(GL_EINVAL, "session: '%s' is not f32", name);
    if (gl_tensor_list_add(&s->held, NULL, t) != GL_OK) return NULL;
    return gl_tensor_f32(t);
}

static bool resolve(gl_gpt_session *s)
{
    const gl_gpt_config *c = &s->c;
    bool llama = c->arch == GL_GPT_LLAMA;
    int64_t C = c->n_embd;
    const char *tr = llama ? "model" : "transformer";
#define GET(dst, req, pat, l)                                                                 \
    do {                                                                                      \
        if (!((dst) = weight(s, req, "%s." pat, tr, (long long)(l))) && (req)) return false;  \
    } while (0)
    if (llama)
        GET(s->tok, true, "embed_tokens.weight", 0);
    else
        GET(s->tok, true, "wte.weight", 0);
    if (!llama) GET(s->pos, true, "wpe.weight", 0);
    for (int64_t l = 0; l < c->n_layer; l++) {
        layer_w *w = &s->lw[l];
        if (llama) {
            GET(w->ln1_w, true, "layers.%lld.input_layernorm.weight", l);
            GET(w->ln2_w, true, "layers.%lld.post_attention_layernorm.weight", l);
            GET(w->q.w, true, "layers.%lld.self_attn.q_proj.weight", l);
            GET(w->k.w, true, "layers.%lld.self_attn.k_proj.weight", l);
            GET(w->v.w, true, "layers.%lld.self_attn.v_proj.weight", l);
            GET(w->o.w, true, "layers.%lld.self_attn.o_proj.weight", l);
            GET(w->gate.w, true, "layers.%lld.mlp.gate_proj.weight", l);
            GET(w->up.w, true, "layers.%lld.mlp.up_proj.weight", l);
            GET(w->down.w, true, "layers.%lld.mlp.down_proj.weight", l);
            continue;
        }
        GET(w->ln1_w, true, "h.%lld.ln_1.weight", l);
        GET(w->ln1_b, false, "h.%lld.ln_1.bias", l);
        GET(w->ln2_w, true, "h.%lld.ln_2.weight", l);
        GET(w->ln2_b, false, "h.%lld.ln_2.bias", l);
        const float *qkv, *qkv_b;
        GET(qkv, true, "h.%lld.attn.c_attn.weight", l);
        GET(qkv_b, false, "h.%lld.attn.c_attn.bias", l);
        w->q = (lin_w){qkv, qkv_b};
        w->k = (lin_w){qkv + C * C, qkv_b ? qkv_b + C : NULL};
        w->v = (lin_w){qkv + 2 * C * C, qkv_b ? qkv_b + 2 * C : NULL};
        GET(w->o.w, true, "h.%lld.attn.c_proj.weight", l);
        GET(w->o.b, false, "h.%lld.attn.c_proj.bias", l);
        GET(w->up.w, true, "h.%lld.mlp.c_fc.weight", l);
        GET(w->up.b, false, "h.%lld.mlp.c_fc.bias", l);
        GET(w->down.w, true, "h.%lld.mlp.c_proj.weight", l);
        GET(w->down.b, false, "h.%lld.mlp.c_proj.bias", l);
    }
    if (llama) {
        GET(s->lnf_w, true, "norm.weight", 0);
    } else {
        GET(s->lnf_w, true, "ln_f.weight", 0);
        GET(s->lnf_b, false, "ln_f.bias", 0);
    }
    if (!(s->head = weight(s, true, "%slm_head.weight", "", 0))) return false;
#undef GET
    return true;
}

static float *falloc(int64_t n, bool *ok)
{
    float *p = n > 0 && (uint64_t)n < SIZE_MAX / sizeof(float) ? malloc((size_t)n * sizeof(float)) : NULL;
    if (!p) *ok = false;
    return p;
}

gl_gpt_session *gl_gpt_session_new(gl_module *m, int64_t capacity)
{
    const gl_gpt_config *cfg = gl_gpt_config_of(m);
    if (!cfg) return gl_error_null(GL_EINVAL, "session: not a GPT module");
    if (capacity == 0) capacity = cfg->block_size;
    if (capacity < 1 || capacity > cfg->block_size)
        return gl_error_null(GL_EINVAL, "session: capacity %lld is outside 1..block_size %lld", (long long)capacity,
                             (long long)cfg->block_size);
    gl_gpt_session *s = calloc(1, sizeof *s);
    if (!s) return gl_error_null(GL_ENOMEM, "session: out of memory");
    s->m = m;
    gl_module_retain(m);
    s->c = *cfg;
    s->cap = capacity;
    s->held = (gl_tensor_list)GL_TENSOR_LIST_INIT;
    const gl_gpt_config *c = &s->c;
    int64_t C = c->n_embd, L = c->n_layer;
    s->HS = C / c->n_head;
    s->KVD = c->n_kv_head * s->HS;
    int64_t chunk = capacity < CHUNK ? capacity : CHUNK;
    bool ok = true;
    s->lw = calloc((size_t)L, sizeof *s->lw);
    if (!s->lw) ok = false;
    s->kc = falloc(L * capacity * s->KVD, &ok);
    s->vc = falloc(L * capacity * s->KVD, &ok);
    s->x = falloc(chunk * C, &ok);
    s->h = falloc(chunk * C, &ok);
    s->q = falloc(chunk * C, &ok);
    s->att = falloc(chunk * C, &ok);
    s->ff = falloc(chunk * c->n_hidden, &ok);
    s->ff2 = falloc(chunk * c->n_hidden, &ok);
    s->k = falloc(chunk * s->KVD, &ok);
    s->v = falloc(chunk * s->KVD, &ok);
    s->pad = calloc((size_t)(4 * (C > c->n_hidden ? C : c->n_hidden)), sizeof(float));
    if (!s->pad) ok = false;
    if (!ok) {
        gl_gpt_session_free(s);
        return gl_error_null(GL_ENOMEM, "session: out of memory for a cache of %lld positions", (long long)capacity);
    }
    if (!resolve(s)) {
        gl_gpt_session_free(s);
        return NULL;
    }
    int64_t bytes = 0;
    for (int64_t i = 0; i < s->held.n; i++) bytes += s->held.items[i].t->numel * (int64_t)sizeof(float);
    pick_kernels(s, bytes);
    if (!s->cached) collapse_pages(&s->held);
    return s;
}

void gl_gpt_session_reset(gl_gpt_session *s) { s->len = 0; }
int64_t gl_gpt_session_length(const gl_gpt_session *s) { return s->len; }
int64_t gl_gpt_session_capacity(const gl_gpt_session *s) { return s->cap; }

/* Writes n rows [n, KVH*HS] into a [KVH, cap, HS] cache at positions p... */
static void cache_store(float *cache, const float *rows, int64_t n, int64_t p, int64_t KVH, int64_t HS, int64_t cap)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t h = 0; h < KVH; h++)
            memcpy(cache + (h * cap + p + i) * HS, rows + i * KVH * HS + h * HS, (size_t)HS * sizeof(float));
}

/* Rows [row, row + n) of the k, v scratch, at positions p.. of caches kc, vc
 * (one layer's): RoPE, then the cache store. */
static gl_status store_kv(gl_gpt_session *s, int64_t row, int64_t n, int64_t p, float *kc, float *vc)
{
    const gl_gpt_config *c = &s->c;
    int64_t KVD = s->KVD, HS = s->HS, KVH = c->n_kv_head;
    float *k = s->k + row * KVD, *v = s->v + row * KVD;
    gl_status st;
    if (c->arch == GL_GPT_LLAMA && (st = gl_rope_inplace(k, n, KVH, HS, KVD, p, c->rope_theta)) != GL_OK) return st;
    cache_store(kc, k, n, p, KVH, HS, s->cap);
    cache_store(vc, v, n, p, KVH, HS, s->cap);
    return GL_OK;
}

/* Rows [row, row + n) of the q scratch, at positions p..: RoPE, then
 * attention over positions [0, p + n) of caches kc, vc into s->att. */
static gl_status attend(gl_gpt_session *s, int64_t l, int64_t row, int64_t n, int64_t p, const float *kc,
                        const float *vc)
{
    const gl_gpt_config *c = &s->c;
    int64_t C = c->n_embd, HS = s->HS;
    float *q = s->q + row * C;
    gl_status st;
    if (c->arch == GL_GPT_LLAMA && (st = gl_rope_inplace(q, n, c->n_head, HS, C, p, c->rope_theta)) != GL_OK)
        return st;
    gl_attention_opts o = {
        .scale = c->arch == GL_GPT_NEO ? 1.0f : 1.0f / sqrtf((float)HS),
        .causal = true,
        .window = (c->arch == GL_GPT_NEO && l < 64 && (c->local_layers >> l & 1)) ? c->window : 0,
    };
    return gl_attention_decode(s->att + row * C, C, q, C, n, kc, vc, s->cap, p + n, c->n_head, c->n_kv_head, HS, &o);
}

/* Runs n (<= chunk) tokens at positions len.. through the layers, leaving
 * the final hidden states (before ln_f) of rows [out, n) in s->x: the last
 * layer gives the other rows only their K/V entries (nothing reads the rest
 * of a row whose logits are not wanted). With twin (n == 1 only), the same
 * token also runs as row 1 at position sh_len of the next window (skc, svc),
 * which needs only K/V entries too: the projections load each block of W
 * once for both rows. */
static gl_status forward_chunk(gl_gpt_session *s, const int64_t *ids, int64_t n, bool twin, int64_t out)
{
    const gl_gpt_config *c = &s->c;
    int64_t C = c->n_embd, F = c->n_hidden, p = s->len, KVD = s->KVD, rows = n + twin;
    bool llama = c->arch == GL_GPT_LLAMA;
    for (int64_t i = 0; i < rows; i++) {
        int64_t id = ids[i < n ? i : 0], pi = i < n ? p + i : s->sh_len;
        memcpy(s->x + i * C, s->tok + id * C, (size_t)C * sizeof(float));
        if (!llama)
            for (int64_t j = 0; j < C; j++) s->x[i * C + j] += s->pos[pi * C + j];
    }
    for (int64_t l = 0; l < c->n_layer; l++) {
        const layer_w *w = &s->lw[l];
        int64_t off = l * s->cap * KVD;
        /* rows [r0, r0 + m) go on past the K/V projections */
        bool last = l == c->n_layer - 1;
        int64_t r0 = last ? out : 0, m = last ? n - out : rows;
        float *x = s->x + r0 * C, *h = s->h + r0 * C, *ff = s->ff + r0 * F, *ff2 = s->ff2 + r0 * F;
        norm(s->h, s->x, w->ln1_w, w->ln1_b, rows, C, c->norm_eps, llama);
        linear(s, s->k, s->h, w->k, rows, C, KVD, false);
        linear(s, s->v, s->h, w->v, rows, C, KVD, false);
        gl_status st = store_kv(s, 0, n, p, s->kc + off, s->vc + off);
        if (st == GL_OK && twin) st = store_kv(s, 1, 1, s->sh_len, s->skc + off, s->svc + off);
        if (st != GL_OK) return st;
        if (m == 0) continue;
        linear(s, s->q + r0 * C, h, w->q, m, C, C, false);
        st = attend(s, l, r0, n - r0, p + r0, s->kc + off, s->vc + off);
        if (st == GL_OK && twin && !last) st = attend(s, l, 1, 1, s->sh_len, s->skc + off, s->svc + off);
        if (st != GL_OK) return st;
        linear(s, x, s->att + r0 * C, w->o, m, C, C, true);
        norm(h, x, w->ln2_w, w->ln2_b, m, C, c->norm_eps, llama);
        if (llama) {
            linear(s, ff, h, w->gate, m, C, F, false);
            linear(s, ff2, h, w->up, m, C, F, false);
            swiglu(ff, ff2, m * F);
        } else {
            linear(s, ff, h, w->up, m, C, F, false);
            gl_gelu_inplace(ff, m * F, c->gelu_tanh); /* as the training forward computes it */
        }
        linear(s, x, ff, w->down, m, F, C, true);
    }
    return GL_OK;
}

gl_status gl_gpt_session_slide(gl_gpt_session *s, int64_t keep)
{
    if (keep < 0 || keep >= s->cap)
        return gl_error(GL_EINVAL, "session: slide keeps %lld of a capacity of %lld (want 0..%lld)", (long long)keep,
                        (long long)s->cap, (long long)(s->cap - 1));
    s->from = s->sh_len = 0;
    /* only cached weights: from DRAM, the twin's products are not hidden behind the loads of W */
    if (keep < 2 || !s->cached || s->cap < 3) return GL_OK;
    int64_t n = s->c.n_layer * s->cap * s->KVD;
    if (!s->skc) {
        bool ok = true;
        s->skc = falloc(n, &ok);
        s->svc = falloc(n, &ok);
        s->sh_ids = ok ? malloc((size_t)s->cap * sizeof *s->sh_ids) : NULL;
        if (!s->sh_ids) {
            free(s->skc), free(s->svc);
            s->skc = s->svc = NULL;
            return gl_error(GL_ENOMEM, "session: out of memory for the next window's cache");
        }
    }
    s->from = s->cap - keep + 1;
    return GL_OK;
}

/* An append at length 0 whose ids start with the next window's tokens
 * takes that window's caches (swapped with the current ones) and returns
 * how many of the ids they hold; any other append at length 0 drops them. */
static int64_t take_window(gl_gpt_session *s, const int64_t *ids, int64_t n, bool all_positions)
{
    int64_t m = s->sh_len;
    s->sh_len = 0;
    if (s->len != 0 || m == 0 || n <= m || all_positions || memcmp(ids, s->sh_ids, (size_t)m * sizeof *ids) != 0)
        return 0;
    float *t = s->kc;
    s->kc = s->skc, s->skc = t;
    t = s->vc;
    s->vc = s->svc, s->svc = t;
    s->len = m;
    return m;
}

gl_status gl_gpt_session_append(gl_gpt_session *s, const int64_t *ids, int64_t n, float *logits, bool all_positions)
{
    const gl_gpt_config *c = &s->c;
    if (n < 1) return gl_error(GL_EINVAL, "session: append needs at least one token");
    if (n > s->cap - s->len)
        return gl_error(GL_EINVAL, "session: appending %lld tokens to %lld exceeds the capacity %lld", (long long)n,
                        (long long)s->len, (long long)s->cap);
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= c->vocab_size)
            return gl_error(GL_EINVAL, "session: token id %lld is outside the vocabulary [0, %lld)", (long long)ids[i],
                            (long long)c->vocab_size);
    int64_t C = c->n_embd, V = c->vocab_size, chunk = s->cap < CHUNK ? s->cap : CHUNK, start = s->len;
    bool llama = c->arch == GL_GPT_LLAMA;
    int64_t done = 0;
    if (s->len == 0 && s->sh_len > 0) done = take_window(s, ids, n, all_positions);
    /* the token's twin in the next window, while that window is contiguous */
    bool twin = s->from > 0 && n == 1 && s->len >= s->from && s->sh_len == s->len - s->from;
    while (done < n) {
        if (gl_interrupt_poll("session")) {
            s->len = start; /* appends nothing */
            return GL_EINTR;
        }
        int64_t k = n - done < chunk ? n - done : chunk;
        /* the rows whose hidden states are read below */
        int64_t out = all_positions ? 0 : done + k == n ? k - 1 : k;
        gl_status st = forward_chunk(s, ids + done, k, twin, out);
        if (st != GL_OK) {
            s->len = start;
            return st;
        }
        if (twin) s->sh_ids[s->sh_len++] = ids[0];
        s->len += k;
        done += k;
        if (all_positions) {
            norm(s->h, s->x, s->lnf_w, s->lnf_b, k, C, c->norm_eps, llama);
            linear(s, logits + (done - k) * V, s->h, (lin_w){s->head, NULL}, k, C, V, false);
        } else if (done == n) {
            norm(s->h, s->x + (k - 1) * C, s->lnf_w, s->lnf_b, 1, C, c->norm_eps, llama);
            linear(s, logits, s->h, (lin_w){s->head, NULL}, 1, C, V, false);
        }
    }
    return GL_OK;
}
