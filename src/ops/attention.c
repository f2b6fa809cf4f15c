/* Fused attention, after llm.c's attention_forward / attention_backward
 * (train_gpt2.c), FlashAttention's recomputation and llama2.c's decode loop
 * (run.c). Per (b, h) head, with Q [T,HS], K and V [S,HS] of its kv head,
 * P [T,S], Pd = dropout(P):
 *   forward:  P = softmax(mask(Q K^T * scale)),  O = Pd V
 *   backward: dPd = dO V^T,  dV += Pd^T dO,  dP = dPd * keep / (1 - p),
 *             dZ = P * (dP - rowsum(P * dP)) * scale,
 *             dQ += dZ K,  dK += dZ^T Q
 * Masked entries of P (and dZ) are exact zeros, so products over them add
 * nothing.
 *
 * Nothing of size T x S outlives a call. Forward keeps, per query row, the
 * row maximum and 1/sum of its softmax; backward recomputes each block of P
 * from Q, K and those two numbers (one extra Q K^T product, bit for bit the
 * forward's P) and regenerates the dropout mask from the call's seed (a
 * counter-based stream, so any block can be drawn again, in any order, on
 * any thread).
 *
 * Two implementations of the per-head work, tested against each other and
 * against the composed ops: register tiles for short heads (T <=
 * TILES_MAX_T) and row blocks of GEMMs through gl_sgemm; each restricts a
 * block of rows to the key range they can see (so a causal head costs about
 * half a full product, a windowed one less). Heads run in parallel, one
 * thread per head from start to end: the result does not depend on the
 * thread count (gl_sgemm inside a parallel region is single-threaded). For
 * GQA the heads of a group write dK and dV into per-head scratch that is
 * summed in head order afterwards. */
#include "ops/attention.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/tape.h"
#include "core/interrupt.h"
#include "core/rng.h"
#include "core/threads.h"
#include "ops/matmul.h"
#include "ops/nnops.h"
#include "ops/simd.h"

enum {
    TILES_MAX_T = 64, /* up to this many queries the tile kernels (measured: they lose from T = 128, HS = 64) */
    ROW_BLOCK = 32,  /* query rows per GEMM block (16 and 64 measured slower for T = 64..512) */
    DECODE_CHUNK = 256 /* keys per online-softmax chunk in decode */
};

typedef struct {
    int64_t B, NH, KVH, T, S, HS;
    float scale;
    bool causal;
    int64_t window;
    bool drop;        /* dropout: masks come from seed (keep_row) */
    uint64_t seed;    /* this call's mask stream (gl_dropout_factors) */
    uint32_t cut;     /* an element is dropped when its 16-bit draw is below cut */
    float keep_scale; /* 1 / (1 - p) */
    /* Layout: row strides of q (and dq), k and v (and dk, dv), out (and
     * dout); offsets of head h of batch b: b * qbs + h * qhs for q, likewise
     * kbs, khs for k and v (h a kv head) and obs, ohs for out. */
    int64_t ldq, ldk, ldo, qbs, qhs, kbs, khs, obs, ohs;
    bool wq, wk, wv; /* backward WRITES dq, dk, dv (fresh buffers, tile kernels) rather than adding */
} attn_dims;

/* q [B,NH,T,HS], k, v [B,KVH,S,HS], out [B,NH,T,HS], each contiguous. */
static void layout_heads(attn_dims *d)
{
    d->ldq = d->ldk = d->ldo = d->HS;
    d->qhs = d->ohs = d->T * d->HS;
    d->qbs = d->obs = d->NH * d->qhs;
    d->khs = d->S * d->HS;
    d->kbs = d->KVH * d->khs;
}

/* q, k, v as the columns [0,C), [C,2C), [2C,3C) of one qkv [B,T,3C], out
 * [B,T,C], C = NH * HS (self-attention: S = T, KVH = NH). */
static void layout_fused(attn_dims *d)
{
    int64_t C = d->NH * d->HS;
    d->ldq = d->ldk = 3 * C;
    d->ldo = C;
    d->qhs = d->khs = d->ohs = d->HS;
    d->qbs = d->kbs = d->T * 3 * C;
    d->obs = d->T * C;
}

gl_attention_opts gl_attention_opts_default(int64_t HS)
{
    /* in double, as Python computes 1 / math.sqrt(HS) */
    gl_attention_opts o = {(float)(1.0 / sqrt((double)(HS > 0 ? HS : 1))), true, 0, 0.0f, false, NULL};
    return o;
}

/* The keys [*lo, *hi) that query row i (of T, absolute position i + S - T) sees. */
static inline void key_range(const attn_dims *d, int64_t i, int64_t *lo, int64_t *hi)
{
    int64_t ip = i + d->S - d->T;
    int64_t h = d->causal ? ip + 1 : d->S;
    int64_t l = d->window > 0 ? ip - d->window + 1 : 0;
    *lo = l < 0 ? 0 : l;
    *hi = h > d->S ? d->S : h;
}

/* Dot product with 16 independent partial sums: GCC keeps them in four
 * vector registers (a loop over an accumulator array would live in memory),
 * so the sum vectorizes and pipelines without fast-math. Fixed order. */
static inline float dot(const float *restrict a, const float *restrict b, int64_t n)
{
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
    float t0 = 0, t1 = 0, t2 = 0, t3 = 0, t4 = 0, t5 = 0, t6 = 0, t7 = 0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const float *x = a + i, *y = b + i;
        s0 += x[0] * y[0], s1 += x[1] * y[1], s2 += x[2] * y[2], s3 += x[3] * y[3];
        s4 += x[4] * y[4], s5 += x[5] * y[5], s6 += x[6] * y[6], s7 += x[7] * y[7];
        t0 += x[8] * y[8], t1 += x[9] * y[9], t2 += x[10] * y[10], t3 += x[11] * y[11];
        t4 += x[12] * y[12], t5 += x[13] * y[13], t6 += x[14] * y[14], t7 += x[15] * y[15];
    }
    float s = 0.0f;
    for (; i < n; i++) s += a[i] * b[i];
    return s + (((s0 + s4) + (s2 + s6)) + ((s1 + s5) + (s3 + s7))) +
           (((t0 + t4) + (t2 + t6)) + ((t1 + t5) + (t3 + t7)));
}

/* y += a * x */
static GL_ALWAYS_INLINE void axpy(float *restrict y, float a, const float *restrict x, int64_t n)
{
#pragma omp simd
    for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

/* max of p[lo, hi): eight independent chains (an `omp simd` max reduction
 * keeps its partial maxima in memory, a store-forward chain per vector). */
static GL_ALWAYS_INLINE float row_max(const float *p, int64_t lo, int64_t hi)
{
    float m[8];
    for (int k = 0; k < 8; k++) m[k] = -INFINITY;
    int64_t j = lo;
    for (; j + 8 <= hi; j += 8)
        for (int k = 0; k < 8; k++) m[k] = p[j + k] > m[k] ? p[j + k] : m[k];
    for (; j < hi; j++) m[0] = p[j] > m[0] ? p[j] : m[0];
    for (int k = 0; k < 4; k++) m[k] = m[k + 4] > m[k] ? m[k + 4] : m[k];
    m[0] = m[2] > m[0] ? m[2] : m[0];
    m[1] = m[3] > m[1] ? m[3] : m[1];
    return m[1] > m[0] ? m[1] : m[0];
}


/* In-place softmax of p[lo, hi). stats, when not NULL, receives the row's
 * maximum and 1/sum, from which probs_row recomputes the same numbers. */
static GL_ALWAYS_INLINE void softmax_row(float *p, int64_t lo, int64_t hi, float *stats)
{
    float m = row_max(p, lo, hi);
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = lo; j < hi; j++) {
        float e = gl_exp_le0(p[j] - m);
        p[j] = e;
        sum += e;
    }
    float inv = 1.0f / sum;
#pragma omp simd
    for (int64_t j = lo; j < hi; j++) p[j] *= inv;
    if (stats) stats[0] = m, stats[1] = inv;
}

/* Backward's softmax: p[lo, hi) (logits) -> probabilities, from the saved
 * stats, in softmax_row's operations and order (so bit for bit its result). */
static GL_ALWAYS_INLINE void probs_row(float *p, int64_t lo, int64_t hi, const float *stats)
{
    float m = stats[0], inv = stats[1];
#pragma omp simd
    for (int64_t j = lo; j < hi; j++) p[j] = gl_exp_le0(p[j] - m) * inv;
}

static inline void zero(float *p, int64_t lo, int64_t hi)
{
    if (hi > lo) memset(p + lo, 0, (size_t)(hi - lo) * sizeof *p);
}

/* km[lo, hi) = the dropout factors of row r (of B*NH*T) of P, keep_scale
 * or 0: elements r * S + [lo, hi) of the call's mask stream. */
static void keep_row(const attn_dims *d, float *km, int64_t r, int64_t lo, int64_t hi)
{
    gl_dropout_factors(km + lo, d->seed, d->cut, d->keep_scale, r * d->S + lo, hi - lo);
}

/* One head's forward by row blocks of GEMMs (head_forward's arguments);
 * scratch pb [ROW_BLOCK,S], km [S]. */
static void head_forward_gemm(const attn_dims *d, int64_t bh, float *restrict o, const float *q, const float *k,
                              const float *v, float *stats, float *scratch)
{
    int64_t T = d->T, S = d->S, HS = d->HS, lq = d->ldq, lk = d->ldk, lo_ = d->ldo;
    float *pb = scratch, *km = pb + ROW_BLOCK * S;
    for (int64_t i0 = 0; i0 < T; i0 += ROW_BLOCK) {
        int64_t i1 = i0 + ROW_BLOCK < T ? i0 + ROW_BLOCK : T, lo, hi, l, h;
        key_range(d, i0, &lo, &h);
        key_range(d, i1 - 1, &l, &hi);
        gl_sgemm(false, true, i1 - i0, hi - lo, HS, d->scale, q + i0 * lq, lq, k + lo * lk, lk, 0.0f, pb + lo, S);
        for (int64_t i = i0; i < i1; i++) {
            float *p = pb + (i - i0) * S;
            key_range(d, i, &l, &h);
            zero(p, lo, l);
            softmax_row(p, l, h, stats ? stats + 2 * i : NULL);
            zero(p, h, hi);
            if (d->drop) {
                keep_row(d, km, bh * T + i, l, h);
#pragma omp simd
                for (int64_t j = l; j < h; j++) p[j] *= km[j];
            }
        }
        gl_sgemm(false, false, i1 - i0, HS, hi - lo, 1.0f, pb + lo, S, v + lo * lk, lk, 0.0f, o + i0 * lo_, lo_);
    }
}

/* One head's backward by row blocks of GEMMs (head_backward's arguments);
 * scratch pb, ds [ROW_BLOCK,S], km [S], pd [ROW_BLOCK,S] (with dropout). */
static void head_backward_gemm(const attn_dims *d, int64_t bh, float *dq, float *dk, float *dv, const float *dout,
                               const float *q, const float *k, const float *v, const float *stats, float *scratch)
{
    int64_t T = d->T, S = d->S, HS = d->HS, lq = d->ldq, lk = d->ldk, lo_ = d->ldo;
    float *pb = scratch, *ds = pb + ROW_BLOCK * S, *km = ds + ROW_BLOCK * S, *pd = d->drop ? km + S : NULL;
    for (int64_t i0 = 0; i0 < T; i0 += ROW_BLOCK) {
        int64_t i1 = i0 + ROW_BLOCK < T ? i0 + ROW_BLOCK : T, lo, hi, l, h;
        key_range(d, i0, &lo, &h);
        key_range(d, i1 - 1, &l, &hi);
        int64_t R = i1 - i0, W = hi - lo;
        /* the block's logits again, and dPd */
        gl_sgemm(false, true, R, W, HS, d->scale, q + i0 * lq, lq, k + lo * lk, lk, 0.0f, pb + lo, S);
        gl_sgemm(false, true, R, W, HS, 1.0f, dout + i0 * lo_, lo_, v + lo * lk, lk, 0.0f, ds + lo, S);
        for (int64_t i = i0; i < i1; i++) {
            float *p = pb + (i - i0) * S, *dz = ds + (i - i0) * S;
            key_range(d, i, &l, &h);
            zero(p, lo, l);
            probs_row(p, l, h, stats + 2 * i);
            zero(p, h, hi);
            if (d->drop) {
                float *pdr = pd + (i - i0) * S;
                keep_row(d, km, bh * T + i, l, h);
                zero(pdr, lo, l);
#pragma omp simd
                for (int64_t j = l; j < h; j++) {
                    pdr[j] = p[j] * km[j];
                    dz[j] *= km[j];
                }
                zero(pdr, h, hi);
            }
            float D = 0.0f;
            for (int64_t j = l; j < h; j++) D += p[j] * dz[j];
            zero(dz, lo, l);
#pragma omp simd
            for (int64_t j = l; j < h; j++) dz[j] = p[j] * (dz[j] - D) * d->scale;
            zero(dz, h, hi);
        }
        if (dv)
            gl_sgemm(true, false, W, HS, R, 1.0f, (d->drop ? pd : pb) + lo, S, dout + i0 * lo_, lo_, 1.0f,
                     dv + lo * lk, lk);
        if (dq) gl_sgemm(false, false, R, HS, W, 1.0f, ds + lo, S, k + lo * lk, lk, 1.0f, dq + i0 * lq, lq);
        if (dk) gl_sgemm(true, false, W, HS, R, 1.0f, ds + lo, S, q + i0 * lq, lq, 1.0f, dk + lo * lk, lk);
    }
}

/* --- short heads: register tiles ----------------------------------------------
 *
 * For short sequences the GEMMs above are mostly call overhead: a 64-token
 * head of 32 dims is products of 32 x 64 x 32, for each of which OpenBLAS
 * packs both operands and zero-fills the output. Here every product of a
 * head is one small kernel, out[4][16] = sum over k of W[r][k] * Y[k][16],
 * whose 4 x 16 accumulators GCC keeps in registers (eight vectors; no
 * FMA contraction, so a multiply and an add each). K and V are copied
 * transposed into scratch (the logits and dPd run over keys), the others are
 * read in place, or copied with rows padded to a multiple of 4 and columns
 * to a multiple of 16 (zeros) when their tiles would not be whole. Products
 * over keys cover, per tile, the keys its rows can see, and P and dZ hold
 * exact zeros outside each row's range. Measured: a training step of
 * nanoGPT's CPU configuration (T 64, HS 32) takes 2-4% less CPU time than
 * with the GEMM blocks (which also need dK and dV zeroed first). */

enum { TR = 4, TV = 16 }; /* a tile's rows and columns */

/* Eight floats at any float address. Written as vectors rather than `omp
 * simd` loops because GCC kept the loops' accumulators in memory and stored
 * each tile one float at a time (a third of the kernels' time). The
 * arithmetic is the loops' own, a multiply then an add in the same order,
 * so results are unchanged. */
typedef float v8f __attribute__((vector_size(32), aligned(4), may_alias));

static inline int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

/* out[r][v] = (out[r][v] +, when add) the sum over k in [k0, k1) of
 * W[r * wr + k * wk] * Y[k * ly + v], for r < TR, v < TV; out's rows lo apart. */
static GL_ALWAYS_INLINE void tile(float *restrict out, int64_t lo, const float *restrict W, int64_t wr, int64_t wk,
                               const float *restrict Y, int64_t ly, int64_t k0, int64_t k1, bool add)
{
    _Static_assert(TR == 4 && TV == 16, "tile() is written out for 4 x 16 tiles");
    /* named accumulators: as an array, GCC kept them in memory */
    v8f a00 = {0}, a01 = {0}, a10 = {0}, a11 = {0}, a20 = {0}, a21 = {0}, a30 = {0}, a31 = {0};
    for (int64_t k = k0; k < k1; k++) {
        const v8f y0 = *(const v8f *)(Y + k * ly), y1 = *(const v8f *)(Y + k * ly + 8);
        const float *w = W + k * wk;
        a00 += w[0] * y0, a01 += w[0] * y1;
        a10 += w[wr] * y0, a11 += w[wr] * y1;
        a20 += w[2 * wr] * y0, a21 += w[2 * wr] * y1;
        a30 += w[3 * wr] * y0, a31 += w[3 * wr] * y1;
    }
    v8f *o0 = (v8f *)out, *o1 = (v8f *)(out + lo), *o2 = (v8f *)(out + 2 * lo), *o3 = (v8f *)(out + 3 * lo);
    if (add) {
        o0[0] += a00, o0[1] += a01, o1[0] += a10, o1[1] += a11;
        o2[0] += a20, o2[1] += a21, o3[0] += a30, o3[1] += a31;
    } else {
        o0[0] = a00, o0[1] = a01, o1[0] = a10, o1[1] = a11;
        o2[0] = a20, o2[1] = a21, o3[0] = a30, o3[1] = a31;
    }
}

/* dst [R, C] (rows ld apart) = src (rows ls apart), or += when add. */
static GL_ALWAYS_INLINE void put_rows(float *restrict dst, int64_t ld, const float *restrict src, int64_t ls, int64_t R,
                                   int64_t C, bool add)
{
    for (int64_t r = 0; r < R; r++)
#pragma omp simd
        for (int64_t c = 0; c < C; c++) dst[r * ld + c] = add ? dst[r * ld + c] + src[r * ls + c] : src[r * ls + c];
}

/* dst [R4, C16] = src [R, C] (rows ls apart), zero in the rows and columns beyond. */
static GL_ALWAYS_INLINE void copy_padded(float *restrict dst, int64_t R4, int64_t C16, const float *restrict src,
                                      int64_t ls, int64_t R, int64_t C)
{
    for (int64_t r = 0; r < R4; r++)
        for (int64_t c = 0; c < C16; c++) dst[r * C16 + c] = r < R && c < C ? src[r * ls + c] : 0.0f;
}

/* The 8 x 8 block at x (rows ls apart) transposed into xt (rows ld apart):
 * three rounds of two-vector shuffles (unpack, pair, swap halves), where
 * scalar copies, in either loop order, took a fifth of the kernels' time. */
static GL_ALWAYS_INLINE void transpose8(float *restrict xt, int64_t ld, const float *restrict x, int64_t ls)
{
#if defined(__clang__) || __GNUC__ >= 12
#define SHUF(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else /* GCC before 12 has only __builtin_shuffle, with the indices as a vector */
#define SHUF(a, b, ...) __builtin_shuffle(a, b, (v8i){__VA_ARGS__})
    typedef int v8i __attribute__((vector_size(32)));
#endif
    v8f r[8], t[8], u[8];
    for (int i = 0; i < 8; i++) r[i] = *(const v8f *)(x + i * ls);
    for (int i = 0; i < 8; i += 2) {
        t[i] = SHUF(r[i], r[i + 1], 0, 8, 1, 9, 4, 12, 5, 13);
        t[i + 1] = SHUF(r[i], r[i + 1], 2, 10, 3, 11, 6, 14, 7, 15);
    }
    for (int i = 0; i < 8; i += 4)
        for (int j = 0; j < 2; j++) {
            u[i + j] = SHUF(t[i + j], t[i + j + 2], 0, 1, 8, 9, 4, 5, 12, 13);
            u[i + j + 2] = SHUF(t[i + j], t[i + j + 2], 2, 3, 10, 11, 6, 7, 14, 15);
        }
    for (int i = 0; i < 4; i++) {
        int k = (i & 1) * 2 + (i >> 1); /* u's order: rows 0, 2, 1, 3 of each half */
        *(v8f *)(xt + i * ld) = SHUF(u[k], u[k + 4], 0, 1, 2, 3, 8, 9, 10, 11);
        *(v8f *)(xt + (i + 4) * ld) = SHUF(u[k], u[k + 4], 4, 5, 6, 7, 12, 13, 14, 15);
    }
#undef SHUF
}

/* xt [C, ld] = x [R, C] (rows ls apart) transposed, zero in columns [R, ld). */
static GL_ALWAYS_INLINE void copy_transposed(float *restrict xt, int64_t ld, const float *restrict x, int64_t ls,
                                          int64_t R, int64_t C)
{
    int64_t R8 = R / 8 * 8, C8 = C / 8 * 8;
    for (int64_t r = 0; r < R8; r += 8)
        for (int64_t c = 0; c < C8; c += 8) transpose8(xt + c * ld + r, ld, x + r * ls + c, ls);
    for (int64_t c = 0; c < C; c++) {
        for (int64_t r = c < C8 ? R8 : 0; r < R; r++) xt[c * ld + r] = x[r * ls + c];
        for (int64_t r = R; r < ld; r++) xt[c * ld + r] = 0.0f;
    }
}

/* A head operand as the tiles read it: x itself (rows ld apart) when its
 * rows are a multiple of TR and its columns of TV, else a padded copy in
 * buf [R4, C16]. Returns the rows' stride in *ls. */
static GL_ALWAYS_INLINE const float *operand(float *buf, const float *x, int64_t ld, int64_t R, int64_t C, int64_t *ls)
{
    if (R % TR == 0 && C % TV == 0) {
        *ls = ld;
        return x;
    }
    *ls = round_up(C, TV);
    copy_padded(buf, round_up(R, TR), *ls, x, ld, R, C);
    return buf;
}

/* The query rows [*lo, *hi) that see key j (key_range inverted). */
static inline void query_range(const attn_dims *d, int64_t j, int64_t *lo, int64_t *hi)
{
    int64_t off = d->S - d->T; /* query row i sits at position i + off */
    int64_t l = d->causal ? j - off : 0, h = d->window > 0 ? j - off + d->window : d->T;
    *lo = l < 0 ? 0 : l;
    *hi = h > d->T ? d->T : h;
}

/* The keys the query rows [i0, i0 + TR) see together, [*lo, *hi), and that
 * range widened to whole tiles of columns, [*lo16, *hi16). */
static inline void tile_keys(const attn_dims *d, int64_t i0, int64_t *lo, int64_t *hi, int64_t *lo16, int64_t *hi16)
{
    int64_t l, h, last = i0 + TR - 1 < d->T ? i0 + TR - 1 : d->T - 1;
    key_range(d, i0, lo, &h);
    key_range(d, last, &l, hi);
    *lo16 = *lo / TV * TV;
    *hi16 = round_up(*hi, TV);
}

/* The queries the keys [j0, j0 + TR) are seen by together. */
static inline void tile_queries(const attn_dims *d, int64_t j0, int64_t *lo, int64_t *hi)
{
    int64_t l, h, last = j0 + TR - 1 < d->S ? j0 + TR - 1 : d->S - 1;
    query_range(d, j0, lo, &h);
    query_range(d, last, &l, hi);
}

/* Zero p[lo16, lo) and p[hi, hi16): a row of P or dZ outside its keys. */
static GL_ALWAYS_INLINE void clear_outside(float *p, int64_t lo16, int64_t lo, int64_t hi, int64_t hi16)
{
    for (int64_t j = lo16; j < lo; j++) p[j] = 0.0f;
    for (int64_t j = hi; j < hi16; j++) p[j] = 0.0f;
}

/* dst [rows, C] (rows ld apart) = (dst +, when add) W Y, W [rows, k1 - k0]
 * and Y [k1 - k0, C] addressed as tile's: by whole tiles straight into dst
 * when they fit it, else through tmp [TR, C16]. */
static GL_ALWAYS_INLINE void put_product(float *restrict dst, int64_t ld, int64_t rows, int64_t C, bool add,
                                      float *restrict tmp, const float *W, int64_t wr, int64_t wk, const float *Y,
                                      int64_t ly, int64_t k0, int64_t k1)
{
    if (rows == TR && C % TV == 0) {
        for (int64_t c0 = 0; c0 < C; c0 += TV) tile(dst + c0, ld, W, wr, wk, Y + c0, ly, k0, k1, add);
        return;
    }
    int64_t C16 = round_up(C, TV);
    for (int64_t c0 = 0; c0 < C16; c0 += TV) tile(tmp + c0, C16, W, wr, wk, Y + c0, ly, k0, k1, false);
    put_rows(dst, ld, tmp, C16, rows, C, add);
}

/* One head's forward by tiles (head_forward's arguments); scratch of
 * scratch_floats: q and v padded [T4,HS16], [S,HS16] (when not whole
 * tiles), kt [HS,S16], p [TR,S16], os [TR,HS16], km [S16]. */
GL_SIMD_CLONES static void head_forward_tiles(const attn_dims *d, int64_t bh, float *restrict o, const float *q,
                                           const float *k, const float *v, float *stats, float *scratch)
{
    int64_t T = d->T, S = d->S, HS = d->HS, T4 = round_up(T, TR), S16 = round_up(S, TV), HS16 = round_up(HS, TV);
    int64_t S4 = round_up(S, TR), lq, lv;
    float *qbuf = scratch, *vbuf = qbuf + T4 * HS16, *kt = vbuf + S4 * HS16, *p = kt + HS * S16, *os = p + TR * S16,
          *km = os + TR * HS16;
    const float *qs = operand(qbuf, q, d->ldq, T, HS, &lq), *vs = operand(vbuf, v, d->ldk, S, HS, &lv);
    copy_transposed(kt, S16, k, d->ldk, S, HS);
    for (int64_t i0 = 0; i0 < T; i0 += TR) {
        int64_t ulo, uhi, lo16, hi16, rows = T - i0 < TR ? T - i0 : TR;
        tile_keys(d, i0, &ulo, &uhi, &lo16, &hi16);
        for (int64_t j0 = lo16; j0 < hi16; j0 += TV)
            tile(p + j0, S16, qs + i0 * lq, lq, 1, kt + j0, S16, 0, HS, false);
        for (int64_t r = 0; r < TR; r++) {
            float *pr = p + r * S16;
            int64_t lo = ulo, hi = ulo; /* padding rows: all zero */
            if (r < rows) key_range(d, i0 + r, &lo, &hi);
#pragma omp simd
            for (int64_t j = lo; j < hi; j++) pr[j] *= d->scale;
            if (r < rows) softmax_row(pr, lo, hi, stats ? stats + 2 * (i0 + r) : NULL);
            if (d->drop && r < rows) {
                keep_row(d, km, bh * T + i0 + r, lo, hi);
#pragma omp simd
                for (int64_t j = lo; j < hi; j++) pr[j] *= km[j];
            }
            clear_outside(pr, ulo, lo, hi, uhi);
        }
        put_product(o + i0 * d->ldo, d->ldo, rows, HS, false, os, p, S16, 1, vs, lv, ulo, uhi); /* P V */
    }
}

/* One head's backward by tiles (head_backward's arguments); scratch of
 * scratch_floats: q, dout [T4,HS16] and k [S4,HS16] padded (when not whole
 * tiles), kt, vt [HS,S16], P (Pd with dropout) and dZ [T4,S16], tmp
 * [TR,HS16], km [S16]. */
GL_SIMD_CLONES static void head_backward_tiles(const attn_dims *d, int64_t bh, float *dq, float *dk, float *dv,
                                            const float *dout, const float *q, const float *k, const float *v,
                                            const float *stats, float *scratch)
{
    int64_t T = d->T, S = d->S, HS = d->HS, T4 = round_up(T, TR), S4 = round_up(S, TR), S16 = round_up(S, TV),
            HS16 = round_up(HS, TV), lq, lg, lk;
    float *qbuf = scratch, *gbuf = qbuf + T4 * HS16, *kbuf = gbuf + T4 * HS16, *kt = kbuf + S4 * HS16,
          *vt = kt + HS * S16, *P = vt + HS * S16, *dZ = P + T4 * S16, *tmp = dZ + T4 * S16, *km = tmp + TR * HS16;
    const float *qs = operand(qbuf, q, d->ldq, T, HS, &lq), *gs = operand(gbuf, dout, d->ldo, T, HS, &lg),
                *ks = operand(kbuf, k, d->ldk, S, HS, &lk);
    copy_transposed(kt, S16, k, d->ldk, S, HS);
    copy_transposed(vt, S16, v, d->ldk, S, HS);
    memset(P, 0, (size_t)(2 * T4 * S16) * sizeof *P); /* P and dZ */
    for (int64_t i0 = 0; i0 < T; i0 += TR) {
        int64_t ulo, uhi, lo16, hi16, rows = T - i0 < TR ? T - i0 : TR;
        tile_keys(d, i0, &ulo, &uhi, &lo16, &hi16);
        for (int64_t j0 = lo16; j0 < hi16; j0 += TV) {
            tile(P + i0 * S16 + j0, S16, qs + i0 * lq, lq, 1, kt + j0, S16, 0, HS, false); /* the logits again */
            tile(dZ + i0 * S16 + j0, S16, gs + i0 * lg, lg, 1, vt + j0, S16, 0, HS, false); /* dPd */
        }
        for (int64_t i = i0; i < i0 + TR; i++) {
            float *p = P + i * S16, *z = dZ + i * S16;
            int64_t lo = ulo, hi = ulo; /* padding rows: all zero */
            if (i < T) key_range(d, i, &lo, &hi);
#pragma omp simd
            for (int64_t j = lo; j < hi; j++) p[j] *= d->scale;
            if (i < T) probs_row(p, lo, hi, stats + 2 * i);
            if (d->drop && i < T) {
                keep_row(d, km, bh * T + i, lo, hi);
#pragma omp simd
                for (int64_t j = lo; j < hi; j++) z[j] *= km[j]; /* dP */
            }
            float D = 0.0f;
#pragma omp simd reduction(+ : D)
            for (int64_t j = lo; j < hi; j++) D += p[j] * z[j];
#pragma omp simd
            for (int64_t j = lo; j < hi; j++) z[j] = p[j] * (z[j] - D) * d->scale;
            if (d->drop && i < T) {
#pragma omp simd
                for (int64_t j = lo; j < hi; j++) p[j] *= km[j]; /* Pd, for dV */
            }
            clear_outside(p, lo16, lo, hi, hi16);
            clear_outside(z, lo16, lo, hi, hi16);
        }
        if (dq) put_product(dq + i0 * d->ldq, d->ldq, rows, HS, !d->wq, tmp, dZ + i0 * S16, S16, 1, ks, lk, ulo, uhi);
    }
    for (int64_t j0 = 0; j0 < S && (dk || dv); j0 += TR) {
        int64_t lo, hi, rows = S - j0 < TR ? S - j0 : TR;
        tile_queries(d, j0, &lo, &hi);
        if (dv) /* Pd^T dO */
            put_product(dv + j0 * d->ldk, d->ldk, rows, HS, !d->wv, tmp, P + j0, 1, S16, gs, lg, lo, hi);
        if (dk) /* dZ^T Q */
            put_product(dk + j0 * d->ldk, d->ldk, rows, HS, !d->wk, tmp, dZ + j0, 1, S16, qs, lq, lo, hi);
    }
}

/* Which kernel runs the heads, and the floats of scratch a thread needs. */
static bool use_tiles(const attn_dims *d) { return d->T <= TILES_MAX_T; }

static size_t scratch_floats(const attn_dims *d, bool backward)
{
    size_t S = (size_t)d->S, HS = (size_t)d->HS, T4 = (size_t)round_up(d->T, TR), S16 = (size_t)round_up(d->S, TV),
           HS16 = (size_t)round_up(d->HS, TV);
    size_t S4 = (size_t)round_up(d->S, TR);
    if (use_tiles(d) && backward) return (2 * T4 + S4) * HS16 + 2 * HS * S16 + 2 * T4 * S16 + TR * HS16 + S16;
    if (use_tiles(d)) return (T4 + S4) * HS16 + HS * S16 + TR * S16 + TR * HS16 + S16;
    return backward ? (d->drop ? 3 : 2) * ROW_BLOCK * S + S : (ROW_BLOCK + 1) * S;
}

/* One head's forward. o, q [T,HS]; k, v [S,HS] (rows d->ldo, d->ldq, d->ldk
 * apart); stats [T,2] or NULL; scratch of scratch_floats(d, false). bh: the
 * head's index in [B*NH]. */
static void head_forward(const attn_dims *d, int64_t bh, float *restrict o, const float *q, const float *k,
                         const float *v, float *stats, float *scratch)
{
    (use_tiles(d) ? head_forward_tiles : head_forward_gemm)(d, bh, o, q, k, v, stats, scratch);
}

/* One head's backward, ADDING into dq [T,HS], dk and dv [S,HS] (each NULL
 * when not wanted; strides as q, k, v; dout as out's). stats [T,2] from the
 * forward; scratch of scratch_floats(d, true). */
static void head_backward(const attn_dims *d, int64_t bh, float *dq, float *dk, float *dv, const float *dout,
                          const float *q, const float *k, const float *v, const float *stats, float *scratch)
{
    (use_tiles(d) ? head_backward_tiles : head_backward_gemm)(d, bh, dq, dk, dv, dout, q, k, v, stats, scratch);
}

/* Runs the forward of every head; stats [B,NH,T,2] or NULL. Returns false
 * when scratch could not be allocated. */
static bool forward_all(const attn_dims *d, float *o, const float *q, const float *k, const float *v, float *stats)
{
    int64_t BH = d->B * d->NH, G = d->NH / d->KVH;
    bool ok = true;
#pragma omp parallel if (BH > 1 && BH * d->T * d->S * d->HS > 32768)
    {
        float *scratch = malloc(scratch_floats(d, false) * sizeof *scratch);
        if (!scratch) {
#pragma omp atomic write
            ok = false;
        }
#pragma omp for schedule(static)
        for (int64_t bh = 0; bh < BH; bh++) {
            if (!scratch) continue;
            int64_t b = bh / d->NH, h = bh % d->NH, ko = b * d->kbs + h / G * d->khs;
            head_forward(d, bh, o + b * d->obs + h * d->ohs, q + b * d->qbs + h * d->qhs, k + ko, v + ko,
                         stats ? stats + bh * d->T * 2 : NULL, scratch);
        }
        free(scratch);
    }
    return ok;
}

/* Runs the backward of every head, ADDING into dq, dk, dv (each NULL when
 * not wanted; laid out as q, k, v). */
static gl_status backward_all(const attn_dims *d, float *dq, float *dk, float *dv, const float *dout, const float *q,
                              const float *k, const float *v, const float *stats)
{
    int64_t BH = d->B * d->NH, G = d->NH / d->KVH, SHS = d->S * d->HS;
    /* GQA (heads layout only): per-query-head dK, dV [S,HS], summed over each group afterwards */
    float *gk = NULL;
    if ((dk || dv) && G > 1) {
        gk = calloc((size_t)(2 * BH * SHS), sizeof *gk);
        if (!gk) return gl_error(GL_ENOMEM, "attention backward: out of memory for GQA gradients");
    }
    bool ok = true;
#pragma omp parallel if (BH > 1 && BH * d->T * d->S * d->HS > 32768)
    {
        float *scratch = malloc(scratch_floats(d, true) * sizeof *scratch);
        if (!scratch) {
#pragma omp atomic write
            ok = false;
        }
#pragma omp for schedule(static)
        for (int64_t bh = 0; bh < BH; bh++) {
            if (!scratch) continue;
            int64_t b = bh / d->NH, h = bh % d->NH, qo = b * d->qbs + h * d->qhs, ko = b * d->kbs + h / G * d->khs;
            float *hk = !dk ? NULL : gk ? gk + bh * SHS : dk + ko;
            float *hv = !dv ? NULL : gk ? gk + (BH + bh) * SHS : dv + ko;
            head_backward(d, bh, dq ? dq + qo : NULL, hk, hv, dout + b * d->obs + h * d->ohs, q + qo, k + ko, v + ko,
                          stats + bh * d->T * 2, scratch);
        }
        free(scratch);
    }
    if (gk && ok) {
        int64_t BKV = d->B * d->KVH;
#pragma omp parallel for if (BKV * G * SHS > 32768) schedule(static)
        for (int64_t kv = 0; kv < BKV; kv++) {
            int64_t b = kv / d->KVH, h0 = b * d->NH + (kv % d->KVH) * G;
            for (int64_t g = 0; g < G; g++) {
                if (dk) axpy(dk + kv * SHS, 1.0f, gk + (h0 + g) * SHS, SHS);
                if (dv) axpy(dv + kv * SHS, 1.0f, gk + (BH + h0 + g) * SHS, SHS);
            }
        }
    }
    free(gk);
    if (!ok) return gl_error(GL_ENOMEM, "attention backward: out of memory for scratch");
    return GL_OK;
}

/* What a node keeps besides its tensors: f[0] = scale, f[1] = 1/(1-p);
 * i[0] = causal, i[1] = window, i[2] = dropout, i[3] = its seed, i[4] = its
 * cut; extra: the softmax stats [B,NH,T,2]. */
static void node_keep(gl_node *nd, const attn_dims *d, float *stats)
{
    nd->f[0] = d->scale;
    nd->f[1] = d->keep_scale;
    nd->i[0] = d->causal;
    nd->i[1] = d->window;
    nd->i[2] = d->drop;
    nd->i[3] = (int64_t)d->seed;
    nd->i[4] = d->cut;
    nd->extra = stats;
}

static attn_dims node_dims(const gl_node *nd, int64_t B, int64_t NH, int64_t KVH, int64_t T, int64_t S, int64_t HS)
{
    attn_dims d = {B, NH, KVH, T, S, HS, (float)nd->f[0], nd->i[0] != 0, nd->i[1], nd->i[2] != 0,
                   (uint64_t)nd->i[3], (uint32_t)nd->i[4], (float)nd->f[1], 0, 0, 0, 0, 0, 0, 0, 0, 0,
                   false, false, false};
    return d;
}

/* Input i's gradient buffer. A fresh one is left for the kernels to WRITE
 * when they can (*write: the tile kernels write every element once),
 * zeroed otherwise, for adding into. */
static gl_status grad_buffer(gl_node *nd, int i, bool can_write, float **buf, bool *write)
{
    bool fresh;
    gl_status st = gl_node_grad_init(nd, i, buf, &fresh);
    *write = false;
    if (st != GL_OK || !*buf || !fresh) return st;
    if (can_write)
        *write = true;
    else
        memset(*buf, 0, (size_t)nd->inputs[i]->numel * sizeof **buf);
    return GL_OK;
}

/* gl_attention's node. Saved: q, k, v. */
static gl_status attention_backward(gl_node *nd)
{
    if (gl_interrupt_poll("attention backward")) return GL_EINTR;
    const gl_tensor *tq = nd->saved[0], *tk = nd->saved[1];
    attn_dims d = node_dims(nd, tq->shape[0], tq->shape[1], tk->shape[1], tq->shape[2], tk->shape[2], tq->shape[3]);
    layout_heads(&d);
    bool tiles = use_tiles(&d) && nd->out->numel > 0, kv_direct = tiles && d.NH == d.KVH; /* not via GQA scratch */
    float *dq, *dk, *dv;
    gl_status st;
    if ((st = grad_buffer(nd, 0, tiles, &dq, &d.wq)) != GL_OK ||
        (st = grad_buffer(nd, 1, kv_direct, &dk, &d.wk)) != GL_OK ||
        (st = grad_buffer(nd, 2, kv_direct, &dv, &d.wv)) != GL_OK)
        return st;
    if ((!dq && !dk && !dv) || nd->out->numel == 0) return GL_OK;
    return backward_all(&d, dq, dk, dv, gl_tensor_f32(nd->gout), gl_tensor_f32(nd->saved[0]),
                        gl_tensor_f32(nd->saved[1]), gl_tensor_f32(nd->saved[2]), nd->extra);
}

/* gl_attention_qkv's node. Saved: qkv; i[5] = NH. */
static gl_status attention_qkv_backward(gl_node *nd)
{
    if (gl_interrupt_poll("attention backward")) return GL_EINTR;
    const gl_tensor *t = nd->saved[0];
    int64_t NH = nd->i[5], C = t->shape[2] / 3;
    attn_dims d = node_dims(nd, t->shape[0], NH, NH, t->shape[1], t->shape[1], C / NH);
    layout_fused(&d);
    float *dqkv;
    bool write;
    gl_status st = grad_buffer(nd, 0, use_tiles(&d) && nd->out->numel > 0, &dqkv, &write);
    if (st != GL_OK || !dqkv || nd->out->numel == 0) return st;
    d.wq = d.wk = d.wv = write;
    const float *qkv = gl_tensor_f32(t);
    return backward_all(&d, dqkv, dqkv + C, dqkv + 2 * C, gl_tensor_f32(nd->gout), qkv, qkv + C, qkv + 2 * C,
                        nd->extra);
}

/* Checks the options; for dropout in training draws the call's seed. */
static gl_tensor *check_opts(attn_dims *d, const gl_attention_opts *opts, gl_tensor *ok)
{
    if (!isfinite(opts->scale)) return gl_error_null(GL_EINVAL, "attention: scale must be finite");
    if (opts->window < 0)
        return gl_error_null(GL_EINVAL, "attention: window must be >= 0, got %lld", (long long)opts->window);
    if (!(opts->dropout >= 0.0f && opts->dropout < 1.0f))
        return gl_error_null(GL_EINVAL, "attention: dropout must be in [0, 1), got %g", (double)opts->dropout);
    if (opts->training && opts->dropout > 0.0f) {
        d->drop = true;
        d->seed = opts->seed ? *opts->seed : gl_rng_u64(); /* the call's one draw: the masks follow from it */
        d->cut = gl_dropout_cut(opts->dropout);
        d->keep_scale = 1.0f / (1.0f - opts->dropout);
    }
    return ok;
}

/* Runs the forward into out (of the layout d describes) and records the
 * node (backward fn, n inputs, saved = inputs). Consumes out on failure. */
static gl_tensor *run_attention(const attn_dims *d, gl_tensor *out, const float *q, const float *k, const float *v,
                                gl_backward_fn backward, int n, gl_tensor *const *ins)
{
    float *stats = NULL;
    if (gl_autograd_needed(n, ins) &&
        !(stats = malloc((size_t)(d->B * d->NH * d->T * 2 + 1) * sizeof *stats))) {
        gl_error(GL_ENOMEM, "attention: out of memory for softmax statistics");
        goto fail;
    }
    if (out->numel > 0 && !forward_all(d, gl_tensor_f32(out), q, k, v, stats)) {
        gl_error(GL_ENOMEM, "attention: out of memory for scratch");
        goto fail;
    }
    gl_node *nd;
    if (gl_autograd_record(&nd, out, "attention", backward, n, ins) != GL_OK) goto fail;
    if (nd) {
        node_keep(nd, d, stats);
        stats = NULL;
        for (int i = 0; i < n; i++)
            if (gl_node_save(nd, i, ins[i]) != GL_OK) goto fail;
    }
    free(stats);
    return out;
fail:
    free(stats);
    gl_tensor_release(out);
    return NULL;
}

gl_tensor *gl_attention(gl_tensor *q, gl_tensor *k, gl_tensor *v, const gl_attention_opts *opts)
{
    char sq[96], sk[96], sv[96];
    if (gl_interrupt_poll("attention")) return NULL;
    if (q->dtype != GL_F32 || k->dtype != GL_F32 || v->dtype != GL_F32)
        return gl_error_null(GL_EINVAL, "attention: expected f32 q, k, v, got %s, %s, %s", gl_dtype_name(q->dtype),
                             gl_dtype_name(k->dtype), gl_dtype_name(v->dtype));
    gl_tensor_shape_str(q, sq, sizeof sq);
    gl_tensor_shape_str(k, sk, sizeof sk);
    gl_tensor_shape_str(v, sv, sizeof sv);
    if (q->ndim != 4 || k->ndim != 4 || v->ndim != 4)
        return gl_error_null(GL_EINVAL, "attention: expected q [B,NH,T,HS], k and v [B,KVH,S,HS], got %s, %s, %s",
                             sq, sk, sv);
    if (!gl_shape_equal(k->ndim, k->shape, v->ndim, v->shape))
        return gl_error_null(GL_EINVAL, "attention: k %s and v %s must have the same shape", sk, sv);
    attn_dims d = {q->shape[0], q->shape[1], k->shape[1], q->shape[2], k->shape[2], q->shape[3],
                   opts->scale, opts->causal, opts->window, false, 0, 0, 1.0f, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                   false, false, false};
    if (k->shape[0] != d.B || k->shape[3] != d.HS)
        return gl_error_null(GL_EINVAL, "attention: q %s and k %s differ in batch or head size", sq, sk);
    if (d.KVH == 0 || d.NH % d.KVH != 0)
        return gl_error_null(GL_EINVAL, "attention: query heads (%lld) must be a multiple of kv heads (%lld)",
                             (long long)d.NH, (long long)d.KVH);
    if (d.causal && d.S < d.T)
        return gl_error_null(GL_EINVAL,
                             "attention: causal attention needs at least as many keys as queries (q %s, k %s)", sq, sk);
    if (d.S == 0 && d.T > 0) return gl_error_null(GL_EINVAL, "attention: no keys (k %s)", sk);
    if (!check_opts(&d, opts, q)) return NULL;
    layout_heads(&d);
    gl_tensor *ins[3] = {q, k, v};
    gl_tensor *out = gl_tensor_empty(GL_F32, 4, q->shape);
    if (!out) return NULL;
    return run_attention(&d, out, gl_tensor_f32(q), gl_tensor_f32(k), gl_tensor_f32(v), attention_backward, 3, ins);
}

gl_tensor *gl_attention_qkv(gl_tensor *qkv, int64_t n_head, const gl_attention_opts *opts)
{
    char sq[96];
    if (gl_interrupt_poll("attention")) return NULL;
    gl_tensor_shape_str(qkv, sq, sizeof sq);
    if (qkv->dtype != GL_F32 || qkv->ndim != 3)
        return gl_error_null(GL_EINVAL, "attention: expected an f32 qkv [B,T,3C], got %s %s",
                             gl_dtype_name(qkv->dtype), sq);
    int64_t B = qkv->shape[0], T = qkv->shape[1], C = qkv->shape[2] / 3;
    if (n_head <= 0 || qkv->shape[2] % 3 || C % n_head)
        return gl_error_null(GL_EINVAL, "attention: qkv %s does not split into 3 x %lld heads", sq, (long long)n_head);
    attn_dims d = {B, n_head, n_head, T, T, C / n_head, opts->scale, opts->causal, opts->window, false, 0, 0, 1.0f,
                   0, 0, 0, 0, 0, 0, 0, 0, 0, false, false, false};
    if (!check_opts(&d, opts, qkv)) return NULL;
    layout_fused(&d);
    int64_t shape[3] = {B, T, C};
    gl_tensor *out = gl_tensor_empty(GL_F32, 3, shape);
    if (!out) return NULL;
    const float *p = gl_tensor_f32(qkv);
    gl_tensor *out2 = run_attention(&d, out, p, p + C, p + 2 * C, attention_qkv_backward, 1, &qkv);
    if (out2) {
        gl_node *nd = out2->grad_fn;
        if (nd) nd->i[5] = n_head;
    }
    return out2;
}

/* One query row of decode: online softmax over keys [lo, hi) of one kv head,
 * in chunks, accumulating into o [HS]. */
static void decode_row(float *restrict o, const float *restrict q, const float *k, const float *v, int64_t lo,
                       int64_t hi, int64_t HS, float scale)
{
    float sc[DECODE_CHUNK];
    float m = -INFINITY, l = 0.0f;
    memset(o, 0, (size_t)HS * sizeof *o);
    for (int64_t c0 = lo; c0 < hi; c0 += DECODE_CHUNK) {
        int64_t n = hi - c0 < DECODE_CHUNK ? hi - c0 : DECODE_CHUNK;
        float cm = -INFINITY;
        for (int64_t j = 0; j < n; j++) {
            sc[j] = scale * dot(q, k + (c0 + j) * HS, HS);
            cm = sc[j] > cm ? sc[j] : cm;
        }
        if (cm > m) { /* rescale what was accumulated under the old max */
            float r = gl_exp_le0(m - cm);
            l *= r;
#pragma omp simd
            for (int64_t i = 0; i < HS; i++) o[i] *= r;
            m = cm;
        }
#pragma omp simd reduction(+ : l)
        for (int64_t j = 0; j < n; j++) {
            sc[j] = gl_exp_le0(sc[j] - m);
            l += sc[j];
        }
        for (int64_t j = 0; j < n; j++) axpy(o, sc[j], v + (c0 + j) * HS, HS);
    }
    float inv = 1.0f / l;
#pragma omp simd
    for (int64_t i = 0; i < HS; i++) o[i] *= inv;
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define DECODE_AVX2 1

/* The sums of lanes [0, 4) and [4, 8) of s and of t: [s0+s4, s1+s5, s2+s6, s3+s7 | the same of t]. */
__attribute__((target("avx2"))) static inline __m256 fold_halves(__m256 s, __m256 t)
{
    return _mm256_add_ps(_mm256_permute2f128_ps(s, t, 0x20), _mm256_permute2f128_ps(s, t, 0x31));
}

/* scale * dot(q, k_r, HS) for the 4 keys k0..k3 (HS % 16 == 0), each sum in
 * dot()'s operations and order: lanes s0..s7 and t0..t7 as two vectors of
 * products added in turn, then ((s0+s4)+(s2+s6))+((s1+s5)+(s3+s7)), the
 * same over t, and (0 + that) + the t sum; the four keys' final sums run
 * side by side, after an in-lane 4x4 transposition. The accumulators are
 * named variables: as arrays, GCC kept them in memory. */
__attribute__((target("avx2"))) static inline __m128 decode_scores4(const float *q, const float *k0, const float *k1,
                                                                    const float *k2, const float *k3, int64_t HS,
                                                                    float scale)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0, t0 = s0, t1 = s0, t2 = s0, t3 = s0;
    for (int64_t i = 0; i < HS; i += 16) {
        __m256 qa = _mm256_loadu_ps(q + i), qb = _mm256_loadu_ps(q + i + 8);
        s0 = _mm256_add_ps(s0, _mm256_mul_ps(qa, _mm256_loadu_ps(k0 + i)));
        t0 = _mm256_add_ps(t0, _mm256_mul_ps(qb, _mm256_loadu_ps(k0 + i + 8)));
        s1 = _mm256_add_ps(s1, _mm256_mul_ps(qa, _mm256_loadu_ps(k1 + i)));
        t1 = _mm256_add_ps(t1, _mm256_mul_ps(qb, _mm256_loadu_ps(k1 + i + 8)));
        s2 = _mm256_add_ps(s2, _mm256_mul_ps(qa, _mm256_loadu_ps(k2 + i)));
        t2 = _mm256_add_ps(t2, _mm256_mul_ps(qb, _mm256_loadu_ps(k2 + i + 8)));
        s3 = _mm256_add_ps(s3, _mm256_mul_ps(qa, _mm256_loadu_ps(k3 + i)));
        t3 = _mm256_add_ps(t3, _mm256_mul_ps(qb, _mm256_loadu_ps(k3 + i + 8)));
    }
    __m256 u0 = fold_halves(s0, t0), u1 = fold_halves(s1, t1), u2 = fold_halves(s2, t2), u3 = fold_halves(s3, t3);
    __m256 a0 = _mm256_unpacklo_ps(u0, u1), a1 = _mm256_unpackhi_ps(u0, u1);
    __m256 a2 = _mm256_unpacklo_ps(u2, u3), a3 = _mm256_unpackhi_ps(u2, u3);
    __m256 c0 = _mm256_shuffle_ps(a0, a2, 0x44), c1 = _mm256_shuffle_ps(a0, a2, 0xEE);
    __m256 c2 = _mm256_shuffle_ps(a1, a3, 0x44), c3 = _mm256_shuffle_ps(a1, a3, 0xEE);
    __m256 ab = _mm256_add_ps(_mm256_add_ps(c0, c2), _mm256_add_ps(c1, c3)); /* [s sums | t sums] of the 4 keys */
    __m128 d = _mm_add_ps(_mm_add_ps(_mm_setzero_ps(), _mm256_castps256_ps128(ab)), _mm256_extractf128_ps(ab, 1));
    return _mm_mul_ps(_mm_set1_ps(scale), d);
}

/* decode_row for keys [lo, hi) in one chunk (0 < hi - lo <= DECODE_CHUNK)
 * and HS % 16 == 0, with AVX2 and the same numbers: the scores as dot(), the
 * exponentials elementwise, their sum l in the order GCC gives decode_row's
 * `omp simd` reduction on the x86-64 baseline (lane k of 4 adds the keys
 * j = k mod 4 of the whole groups of 4, lane 0 then the rest, then l = 0 +
 * lane 0 + lane 1 + lane 2 + lane 3), and o[i] = (0 + p_lo v_lo[i] +
 * p_lo+1 v_lo+1[i] + ...) / l, key by key. A char GPT head (48 keys, HS 32)
 * takes 0.30 us here against the plain loop's 0.73. */
__attribute__((target("avx2"))) static void decode_row_avx2(float *restrict o, const float *restrict q,
                                                            const float *k, const float *v, int64_t lo, int64_t hi,
                                                            int64_t HS, float scale)
{
    float sc[DECODE_CHUNK] __attribute__((aligned(32)));
    int64_t n = hi - lo;
    __m128 m4 = _mm_set1_ps(-INFINITY);
    for (int64_t j = 0; j < n; j += 4) { /* a last group of under 4 repeats its last key */
        const float *kr = k + (lo + j) * HS, *kl = k + (hi - 1) * HS;
        __m128 s4 = decode_scores4(q, kr, j + 1 < n ? kr + HS : kl, j + 2 < n ? kr + 2 * HS : kl,
                                   j + 3 < n ? kr + 3 * HS : kl, HS, scale);
        m4 = _mm_max_ps(s4, m4); /* s4 > m4 ? s4 : m4, as the plain loop's test (a repeated key changes nothing) */
        if (j + 4 <= n) {
            _mm_store_ps(sc + j, s4);
        } else {
            float t[4];
            _mm_storeu_ps(t, s4);
            for (int64_t r = 0; j + r < n; r++) sc[j + r] = t[r];
        }
    }
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    float m = _mm_cvtss_f32(_mm_max_ss(m4, _mm_shuffle_ps(m4, m4, 1)));
#pragma omp simd
    for (int64_t j = 0; j < n; j++) sc[j] = gl_exp_le0(sc[j] - m);
    int64_t n4 = n - n % 4;
    __m128 lanes = _mm_setzero_ps();
    for (int64_t j = 0; j < n4; j += 4) lanes = _mm_add_ps(lanes, _mm_load_ps(sc + j));
    float ls[4];
    _mm_storeu_ps(ls, lanes);
    for (int64_t j = n4; j < n; j++) ls[0] += sc[j];
    float l = (((0.0f + ls[0]) + ls[1]) + ls[2]) + ls[3];
    __m256 inv = _mm256_set1_ps(1.0f / l);
    /* each element's sum is a chain of adds over the keys: 32 columns at a
     * time keep four chains in flight */
    int64_t i = 0;
    for (; i + 32 <= HS; i += 32) {
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        const float *vr = v + lo * HS + i;
        for (int64_t j = 0; j < n; j++, vr += HS) {
            __m256 p = _mm256_set1_ps(sc[j]);
            a0 = _mm256_add_ps(a0, _mm256_mul_ps(p, _mm256_loadu_ps(vr)));
            a1 = _mm256_add_ps(a1, _mm256_mul_ps(p, _mm256_loadu_ps(vr + 8)));
            a2 = _mm256_add_ps(a2, _mm256_mul_ps(p, _mm256_loadu_ps(vr + 16)));
            a3 = _mm256_add_ps(a3, _mm256_mul_ps(p, _mm256_loadu_ps(vr + 24)));
        }
        _mm256_storeu_ps(o + i, _mm256_mul_ps(a0, inv));
        _mm256_storeu_ps(o + i + 8, _mm256_mul_ps(a1, inv));
        _mm256_storeu_ps(o + i + 16, _mm256_mul_ps(a2, inv));
        _mm256_storeu_ps(o + i + 24, _mm256_mul_ps(a3, inv));
    }
    if (i < HS) { /* the last 16 */
        __m256 a0 = _mm256_setzero_ps(), a1 = a0;
        const float *vr = v + lo * HS + i;
        for (int64_t j = 0; j < n; j++, vr += HS) {
            __m256 p = _mm256_set1_ps(sc[j]);
            a0 = _mm256_add_ps(a0, _mm256_mul_ps(p, _mm256_loadu_ps(vr)));
            a1 = _mm256_add_ps(a1, _mm256_mul_ps(p, _mm256_loadu_ps(vr + 8)));
        }
        _mm256_storeu_ps(o + i, _mm256_mul_ps(a0, inv));
        _mm256_storeu_ps(o + i + 8, _mm256_mul_ps(a1, inv));
    }
}
#endif

/* Task th of gl_attention_decode: query row th / NH, head th % NH; fast:
 * decode_row_avx2 may serve it. */
static inline void decode_task(const attn_dims *d, int64_t th, float *out, int64_t out_stride, const float *q,
                               int64_t q_stride, const float *k_cache, const float *v_cache, int64_t capacity,
                               int64_t G, bool fast)
{
    int64_t NH = d->NH, HS = d->HS, t = th / NH, h = th % NH, lo, hi;
    key_range(d, t, &lo, &hi);
    const float *kb = k_cache + (h / G) * capacity * HS, *vb = v_cache + (h / G) * capacity * HS;
    float *o = out + t * out_stride + h * HS;
    const float *qr = q + t * q_stride + h * HS;
#ifdef DECODE_AVX2
    if (fast && hi > lo && hi - lo <= DECODE_CHUNK) {
        decode_row_avx2(o, qr, kb, vb, lo, hi, HS, d->scale);
        return;
    }
#else
    (void)fast;
#endif
    decode_row(o, qr, kb, vb, lo, hi, HS, d->scale);
}

gl_status gl_attention_decode(float *out, int64_t out_stride, const float *q, int64_t q_stride, int64_t n,
                              const float *k_cache, const float *v_cache, int64_t capacity, int64_t S, int64_t NH,
                              int64_t KVH, int64_t HS, const gl_attention_opts *opts)
{
    if (n < 0 || S < n || S > capacity || HS <= 0 || KVH <= 0 || NH % KVH != 0 || q_stride < NH * HS ||
        out_stride < NH * HS || opts->window < 0 || (S == 0 && n > 0))
        return gl_error(GL_EINVAL,
                        "attention_decode: bad sizes (n %lld, S %lld, capacity %lld, NH %lld, KVH %lld, HS %lld, "
                        "window %lld)",
                        (long long)n, (long long)S, (long long)capacity, (long long)NH, (long long)KVH,
                        (long long)HS, (long long)opts->window);
    if (gl_interrupt_poll("attention_decode")) return GL_EINTR;
    attn_dims d = {1, NH, KVH, n, S, HS, opts->scale, true, opts->window, false, 0, 0, 1.0f, 0, 0, 0, 0, 0, 0, 0,
                   0, 0, false, false, false};
    int64_t G = NH / KVH, tasks = n * NH;
    bool fast = false;
#ifdef DECODE_AVX2
    fast = HS % 16 == 0 && __builtin_cpu_supports("avx2");
#endif
    /* A small call (a decoded token of a small model) never enters a parallel
     * region: even an if(0) one costs libgomp a team start and end. */
    if (tasks < 2 || tasks * S * HS <= (1 << 18) || gl_threads_get() < 2) {
        for (int64_t th = 0; th < tasks; th++)
            decode_task(&d, th, out, out_stride, q, q_stride, k_cache, v_cache, capacity, G, fast);
        return GL_OK;
    }
#pragma omp parallel for schedule(static)
    for (int64_t th = 0; th < tasks; th++)
        decode_task(&d, th, out, out_stride, q, q_stride, k_cache, v_cache, capacity, G, fast);
    return GL_OK;
}
