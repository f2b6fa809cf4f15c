/* Fused attention, after llm.c's attention_forward / attention_backward
 * (train_gpt2.c) and llama2.c's decode loop (run.c). Per (b, h) head, with
 * Q [T,HS], K and V [S,HS] of its kv head, P [T,S], Pd = dropout(P):
 *   forward:  P = softmax(mask(Q K^T * scale)),  O = Pd V
 *   backward: dPd = dO V^T,  dV += Pd^T dO,  dP = dPd * keep / (1 - p),
 *             dZ = P * (dP - rowsum(P * dP)) * scale,
 *             dQ += dZ K,  dK += dZ^T Q
 * Masked entries of P (and dZ) are exact zeros, so products over them add
 * nothing.
 *
 * Two implementations of the per-head work, tested against each other and
 * against the composed ops: plain row loops (T < GEMM_MIN_T) and row blocks
 * of GEMMs through gl_sgemm, each block restricted to the key range its rows
 * can see (so a causal head costs about half a full product, a windowed one
 * less). Heads run in parallel, one thread per head from start to end: the
 * result does not depend on the thread count (gl_sgemm inside a parallel
 * region is single-threaded). For GQA the heads of a group write dK and dV
 * into per-head scratch that is summed in head order afterwards. */
#include "ops/attention.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/tape.h"
#include "core/interrupt.h"
#include "core/rng.h"
#include "ops/matmul.h"

enum {
    GEMM_MIN_T = 8,  /* shorter queries use the plain loops (measured: GEMMs win from T = 8) */
    ROW_BLOCK = 32,  /* query rows per GEMM block (16 and 64 measured slower for T = 64..512) */
    DECODE_CHUNK = 256 /* keys per online-softmax chunk in decode */
};

typedef struct {
    int64_t B, NH, KVH, T, S, HS;
    float scale;
    bool causal;
    int64_t window;
    const uint8_t *keep; /* [B,NH,T,S] dropout keep mask, or NULL */
    float keep_scale;    /* 1 / (1 - p) */
} attn_dims;

gl_attention_opts gl_attention_opts_default(int64_t HS)
{
    /* in double, as Python computes 1 / math.sqrt(HS) */
    gl_attention_opts o = {(float)(1.0 / sqrt((double)(HS > 0 ? HS : 1))), true, 0, 0.0f, false};
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
static inline void axpy(float *restrict y, float a, const float *restrict x, int64_t n)
{
#pragma omp simd
    for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

/* e^x for x <= 0 (the softmax's x - max), in a form `omp simd` vectorizes:
 * Cephes' expf (x = n ln2 + r, |r| <= ln2/2, degree-6 polynomial for e^r,
 * times 2^n built from the exponent bits); relative error below 1e-7.
 * glibc's expf is a call per element without fast-math. Below -87 (where
 * e^x < 2^-125) it returns 2^-126 instead of a subnormal or 0, which no
 * softmax sum can notice; NaN stays NaN. */
static inline float exp_le0(float x)
{
    /* max(x, -87) as a bit blend: a float select lets GCC thread the constant
     * branch into control flow that blocks vectorization */
    union { float f; int32_t i; } ux = {.f = x}, lim = {.f = -87.0f};
    int32_t below = -(int32_t)(x < -87.0f);
    ux.i = (ux.i & ~below) | (lim.i & below);
    x = ux.f;
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f; /* round to nearest */
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float y = 1.9875691500e-4f;
    y = y * r + 1.3981999507e-3f;
    y = y * r + 8.3334519073e-3f;
    y = y * r + 4.1665795894e-2f;
    y = y * r + 1.6666665459e-1f;
    y = y * r + 5.0000001201e-1f;
    y = y * (r * r) + r + 1.0f;
    union { int32_t i; float f; } two_n = {.i = ((int32_t)n + 127) << 23};
    return y * two_n.f;
}

/* max of p[lo, hi): eight independent chains (an `omp simd` max reduction
 * keeps its partial maxima in memory, a store-forward chain per vector). */
static inline float row_max(const float *p, int64_t lo, int64_t hi)
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

/* In-place softmax of p[lo, hi) of a row of S; the rest of the row becomes 0. */
static void softmax_row(float *p, int64_t lo, int64_t hi, int64_t S)
{
    float m = row_max(p, lo, hi);
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = lo; j < hi; j++) {
        float e = exp_le0(p[j] - m);
        p[j] = e;
        sum += e;
    }
    float inv = 1.0f / sum;
    for (int64_t j = 0; j < lo; j++) p[j] = 0.0f;
#pragma omp simd
    for (int64_t j = lo; j < hi; j++) p[j] *= inv;
    for (int64_t j = hi; j < S; j++) p[j] = 0.0f;
}

/* pd[lo, hi) = p[lo, hi) * keep / (1 - p), the rest 0. */
static void dropout_row(float *restrict pd, const float *restrict p, const uint8_t *restrict keep, float ks,
                        int64_t lo, int64_t hi, int64_t S)
{
    for (int64_t j = 0; j < lo; j++) pd[j] = 0.0f;
#pragma omp simd
    for (int64_t j = lo; j < hi; j++) pd[j] = p[j] * ((float)keep[j] * ks);
    for (int64_t j = hi; j < S; j++) pd[j] = 0.0f;
}

/* One head's forward. o, q [T,HS]; k, v [S,HS]; p [T,S] receives P; pd [T,S]
 * scratch for dropped-out probabilities (used only with keep [T,S]). */
static void head_forward(const attn_dims *d, float *restrict o, const float *q, const float *k, const float *v,
                         float *p, float *pd, const uint8_t *keep)
{
    int64_t T = d->T, S = d->S, HS = d->HS;
    if (T < GEMM_MIN_T) {
        for (int64_t i = 0; i < T; i++) {
            int64_t lo, hi;
            key_range(d, i, &lo, &hi);
            float *pr = p + i * S;
            for (int64_t j = lo; j < hi; j++) pr[j] = d->scale * dot(q + i * HS, k + j * HS, HS);
            softmax_row(pr, lo, hi, S);
            const float *w = pr;
            if (keep) {
                dropout_row(pd + i * S, pr, keep + i * S, d->keep_scale, lo, hi, S);
                w = pd + i * S;
            }
            float *orow = o + i * HS;
            memset(orow, 0, (size_t)HS * sizeof *orow);
            for (int64_t j = lo; j < hi; j++) axpy(orow, w[j], v + j * HS, HS);
        }
        return;
    }
    for (int64_t i0 = 0; i0 < T; i0 += ROW_BLOCK) {
        int64_t i1 = i0 + ROW_BLOCK < T ? i0 + ROW_BLOCK : T, lo, hi, l, h;
        key_range(d, i0, &lo, &h);
        key_range(d, i1 - 1, &l, &hi);
        gl_sgemm(false, true, i1 - i0, hi - lo, HS, d->scale, q + i0 * HS, HS, k + lo * HS, HS, 0.0f,
                 p + i0 * S + lo, S);
        for (int64_t i = i0; i < i1; i++) {
            key_range(d, i, &l, &h);
            softmax_row(p + i * S, l, h, S);
            if (keep) dropout_row(pd + i * S, p + i * S, keep + i * S, d->keep_scale, l, h, S);
        }
        const float *w = keep ? pd : p;
        gl_sgemm(false, false, i1 - i0, HS, hi - lo, 1.0f, w + i0 * S + lo, S, v + lo * HS, HS, 0.0f,
                 o + i0 * HS, HS);
    }
}

/* One head's backward, ADDING into dq [T,HS], dk and dv [S,HS] (each NULL
 * when not wanted). p [T,S] saved probabilities; ds and pd [T,S] scratch
 * (pd only used with keep). */
static void head_backward(const attn_dims *d, float *dq, float *dk, float *dv, const float *dout, const float *q,
                          const float *k, const float *v, const float *p, const uint8_t *keep, float *ds, float *pd)
{
    int64_t T = d->T, S = d->S, HS = d->HS;
    float ks = d->keep_scale;
    if (T < GEMM_MIN_T) {
        for (int64_t i = 0; i < T; i++) {
            int64_t lo, hi;
            key_range(d, i, &lo, &hi);
            const float *pr = p + i * S, *go = dout + i * HS;
            const uint8_t *kr = keep ? keep + i * S : NULL;
            float *dz = ds + i * S, D = 0.0f;
            for (int64_t j = lo; j < hi; j++) {
                float g = dot(go, v + j * HS, HS); /* dPd */
                float w = pr[j];
                if (kr) {
                    w *= (float)kr[j] * ks; /* Pd */
                    g *= (float)kr[j] * ks; /* dP */
                }
                if (dv) axpy(dv + j * HS, w, go, HS);
                dz[j] = g;
                D += pr[j] * g;
            }
            for (int64_t j = lo; j < hi; j++) {
                float z = pr[j] * (dz[j] - D) * d->scale;
                if (dq) axpy(dq + i * HS, z, k + j * HS, HS);
                if (dk) axpy(dk + j * HS, z, q + i * HS, HS);
            }
        }
        return;
    }
    for (int64_t i0 = 0; i0 < T; i0 += ROW_BLOCK) {
        int64_t i1 = i0 + ROW_BLOCK < T ? i0 + ROW_BLOCK : T, lo, hi, l, h;
        key_range(d, i0, &lo, &h);
        key_range(d, i1 - 1, &l, &hi);
        int64_t R = i1 - i0, W = hi - lo;
        /* dPd for the block, into ds */
        gl_sgemm(false, true, R, W, HS, 1.0f, dout + i0 * HS, HS, v + lo * HS, HS, 0.0f, ds + i0 * S + lo, S);
        if (dv) {
            const float *w = p;
            if (keep) {
                for (int64_t i = i0; i < i1; i++) {
                    key_range(d, i, &l, &h);
                    dropout_row(pd + i * S, p + i * S, keep + i * S, ks, l, h, S);
                }
                w = pd;
            }
            gl_sgemm(true, false, W, HS, R, 1.0f, w + i0 * S + lo, S, dout + i0 * HS, HS, 1.0f, dv + lo * HS, HS);
        }
        for (int64_t i = i0; i < i1; i++) {
            key_range(d, i, &l, &h);
            const float *pr = p + i * S;
            float *dz = ds + i * S, D = 0.0f;
            if (keep) {
                const uint8_t *kr = keep + i * S;
#pragma omp simd
                for (int64_t j = l; j < h; j++) dz[j] *= (float)kr[j] * ks;
            }
            for (int64_t j = l; j < h; j++) D += pr[j] * dz[j];
            for (int64_t j = lo; j < l; j++) dz[j] = 0.0f;
#pragma omp simd
            for (int64_t j = l; j < h; j++) dz[j] = pr[j] * (dz[j] - D) * d->scale;
            for (int64_t j = h; j < hi; j++) dz[j] = 0.0f;
        }
        if (dq) gl_sgemm(false, false, R, HS, W, 1.0f, ds + i0 * S + lo, S, k + lo * HS, HS, 1.0f, dq + i0 * HS, HS);
        if (dk) gl_sgemm(true, false, W, HS, R, 1.0f, ds + i0 * S + lo, S, q + i0 * HS, HS, 1.0f, dk + lo * HS, HS);
    }
}

/* Draws the keep mask serially, row by row of P [B,NH,T,S] and only over
 * the keys each row sees (positions outside are never read): 16 bits per
 * element, four per 64-bit draw, dropped when the draw is below p * 2^16.
 * For a causal mask that is an eighth of the draws of 32 bits for every
 * element of P; the serial draw is what dropout costs. */
static void draw_keep(const attn_dims *d, uint8_t *keep, float p)
{
    uint32_t cut = (uint32_t)lround((double)p * 65536.0);
    uint64_t u = 0;
    int left = 0; /* unused 16-bit lanes of u */
    for (int64_t r = 0; r < d->B * d->NH * d->T; r++) {
        int64_t lo, hi;
        key_range(d, r % d->T, &lo, &hi);
        uint8_t *kr = keep + r * d->S;
        for (int64_t j = lo; j < hi; j++) {
            if (left == 0) {
                u = gl_rng_u64();
                left = 4;
            }
            kr[j] = (uint32_t)(u & 0xffff) >= cut;
            u >>= 16;
            left--;
        }
    }
}

/* Runs the forward of every head. p: [B,NH,T,S] when saved, else NULL
 * (per-thread scratch). Returns false when scratch could not be allocated. */
static bool forward_all(const attn_dims *d, float *o, const float *q, const float *k, const float *v, float *p)
{
    int64_t BH = d->B * d->NH, TS = d->T * d->S, G = d->NH / d->KVH;
    int64_t per_head = TS * d->HS;
    bool ok = true;
#pragma omp parallel if (BH > 1 && BH * per_head > 32768)
    {
        size_t need = (size_t)((p ? 0 : TS) + (d->keep ? TS : 0));
        float *scratch = need ? malloc(need * sizeof *scratch) : NULL;
        if (need && !scratch) {
#pragma omp atomic write
            ok = false;
        }
#pragma omp for schedule(static)
        for (int64_t bh = 0; bh < BH; bh++) {
            if (need && !scratch) continue;
            int64_t b = bh / d->NH, kvh = (bh % d->NH) / G;
            const float *kb = k + (b * d->KVH + kvh) * d->S * d->HS;
            const float *vb = v + (b * d->KVH + kvh) * d->S * d->HS;
            float *ph = p ? p + bh * TS : scratch;
            float *pd = d->keep ? (p ? scratch : scratch + TS) : NULL;
            head_forward(d, o + bh * d->T * d->HS, q + bh * d->T * d->HS, kb, vb, ph, pd,
                         d->keep ? d->keep + bh * TS : NULL);
        }
        free(scratch);
    }
    return ok;
}

/* Saved: q, k, v, P [B,NH,T,S]. extra: keep mask or NULL.
 * f[0] = scale, f[1] = 1/(1-p); i[0] = causal, i[1] = window. */
static gl_status attention_backward(gl_node *nd)
{
    float *dq, *dk, *dv;
    gl_status st;
    if ((st = gl_node_grad(nd, 0, &dq)) != GL_OK || (st = gl_node_grad(nd, 1, &dk)) != GL_OK ||
        (st = gl_node_grad(nd, 2, &dv)) != GL_OK)
        return st;
    if ((!dq && !dk && !dv) || nd->out->numel == 0) return GL_OK;
    if (gl_interrupt_poll("attention backward")) return GL_EINTR;
    const gl_tensor *tq = nd->saved[0], *tk = nd->saved[1];
    attn_dims d = {tq->shape[0], tq->shape[1], tk->shape[1], tq->shape[2], tk->shape[2], tq->shape[3],
                   (float)nd->f[0], nd->i[0] != 0, nd->i[1], nd->extra, (float)nd->f[1]};
    const float *q = gl_tensor_f32(nd->saved[0]), *k = gl_tensor_f32(nd->saved[1]);
    const float *v = gl_tensor_f32(nd->saved[2]), *p = gl_tensor_f32(nd->saved[3]);
    const float *dout = gl_tensor_f32(nd->gout);
    int64_t BH = d.B * d.NH, TS = d.T * d.S, G = d.NH / d.KVH, SHS = d.S * d.HS;
    /* GQA: per-query-head dK, dV, summed over each group afterwards */
    float *gk = NULL;
    if ((dk || dv) && G > 1) {
        gk = calloc((size_t)(2 * BH * SHS), sizeof *gk);
        if (!gk) return gl_error(GL_ENOMEM, "attention backward: out of memory for GQA gradients");
    }
    bool ok = true;
#pragma omp parallel if (BH > 1 && BH * TS * d.HS > 32768)
    {
        float *scratch = malloc((size_t)(d.keep ? 2 : 1) * (size_t)TS * sizeof *scratch);
        if (!scratch) {
#pragma omp atomic write
            ok = false;
        }
#pragma omp for schedule(static)
        for (int64_t bh = 0; bh < BH; bh++) {
            if (!scratch) continue;
            int64_t b = bh / d.NH, kv = b * d.KVH + (bh % d.NH) / G;
            float *hk = !dk ? NULL : gk ? gk + bh * SHS : dk + kv * SHS;
            float *hv = !dv ? NULL : gk ? gk + (BH + bh) * SHS : dv + kv * SHS;
            head_backward(&d, dq ? dq + bh * d.T * d.HS : NULL, hk, hv, dout + bh * d.T * d.HS,
                          q + bh * d.T * d.HS, k + kv * SHS, v + kv * SHS, p + bh * TS,
                          d.keep ? d.keep + bh * TS : NULL, scratch, scratch + TS);
        }
        free(scratch);
    }
    if (gk && ok) {
        int64_t BKV = d.B * d.KVH;
#pragma omp parallel for if (BKV * G * SHS > 32768) schedule(static)
        for (int64_t kv = 0; kv < BKV; kv++) {
            int64_t b = kv / d.KVH, h0 = b * d.NH + (kv % d.KVH) * G;
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
                   opts->scale, opts->causal, opts->window, NULL, 1.0f};
    if (k->shape[0] != d.B || k->shape[3] != d.HS)
        return gl_error_null(GL_EINVAL, "attention: q %s and k %s differ in batch or head size", sq, sk);
    if (d.KVH == 0 || d.NH % d.KVH != 0)
        return gl_error_null(GL_EINVAL, "attention: query heads (%lld) must be a multiple of kv heads (%lld)",
                             (long long)d.NH, (long long)d.KVH);
    if (d.causal && d.S < d.T)
        return gl_error_null(GL_EINVAL,
                             "attention: causal attention needs at least as many keys as queries (q %s, k %s)", sq, sk);
    if (d.S == 0 && d.T > 0) return gl_error_null(GL_EINVAL, "attention: no keys (k %s)", sk);
    if (!isfinite(opts->scale)) return gl_error_null(GL_EINVAL, "attention: scale must be finite");
    if (opts->window < 0)
        return gl_error_null(GL_EINVAL, "attention: window must be >= 0, got %lld", (long long)opts->window);
    if (!(opts->dropout >= 0.0f && opts->dropout < 1.0f))
        return gl_error_null(GL_EINVAL, "attention: dropout must be in [0, 1), got %g", (double)opts->dropout);

    bool drop = opts->training && opts->dropout > 0.0f;
    gl_tensor *ins[3] = {q, k, v};
    bool record = gl_autograd_needed(3, ins);
    int64_t np = d.B * d.NH * d.T * d.S;
    gl_tensor *out = gl_tensor_empty(GL_F32, 4, q->shape);
    gl_tensor *p = NULL;
    uint8_t *keep = NULL;
    if (!out) return NULL;
    if (record) {
        int64_t pshape[4] = {d.B, d.NH, d.T, d.S};
        if (!(p = gl_tensor_empty(GL_F32, 4, pshape))) goto fail;
    }
    if (drop) {
        if (!(keep = malloc((size_t)np + 1))) {
            gl_error(GL_ENOMEM, "attention: out of memory for a dropout mask of %lld elements", (long long)np);
            goto fail;
        }
        draw_keep(&d, keep, opts->dropout);
        d.keep = keep;
        d.keep_scale = 1.0f / (1.0f - opts->dropout);
    }
    if (out->numel > 0 &&
        !forward_all(&d, gl_tensor_f32(out), gl_tensor_f32(q), gl_tensor_f32(k), gl_tensor_f32(v),
                     p ? gl_tensor_f32(p) : NULL)) {
        gl_error(GL_ENOMEM, "attention: out of memory for scratch");
        goto fail;
    }
    gl_node *nd;
    if (gl_autograd_record(&nd, out, "attention", attention_backward, 3, ins) != GL_OK) goto fail;
    if (nd) {
        nd->f[0] = d.scale;
        nd->f[1] = d.keep_scale;
        nd->i[0] = d.causal;
        nd->i[1] = d.window;
        nd->extra = keep;
        keep = NULL;
        if (gl_node_save(nd, 0, q) != GL_OK || gl_node_save(nd, 1, k) != GL_OK || gl_node_save(nd, 2, v) != GL_OK ||
            gl_node_save(nd, 3, p) != GL_OK)
            goto fail;
    }
    free(keep);
    gl_tensor_release(p);
    return out;
fail:
    free(keep);
    gl_tensor_release(p);
    gl_tensor_release(out);
    return NULL;
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
            float r = exp_le0(m - cm);
            l *= r;
#pragma omp simd
            for (int64_t i = 0; i < HS; i++) o[i] *= r;
            m = cm;
        }
#pragma omp simd reduction(+ : l)
        for (int64_t j = 0; j < n; j++) {
            sc[j] = exp_le0(sc[j] - m);
            l += sc[j];
        }
        for (int64_t j = 0; j < n; j++) axpy(o, sc[j], v + (c0 + j) * HS, HS);
    }
    float inv = 1.0f / l;
#pragma omp simd
    for (int64_t i = 0; i < HS; i++) o[i] *= inv;
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
    attn_dims d = {1, NH, KVH, n, S, HS, opts->scale, true, opts->window, NULL, 1.0f};
    int64_t G = NH / KVH, tasks = n * NH;
#pragma omp parallel for if (tasks > 1 && tasks * S * HS > (1 << 18)) schedule(static)
    for (int64_t th = 0; th < tasks; th++) {
        int64_t t = th / NH, h = th % NH, lo, hi;
        key_range(&d, t, &lo, &hi);
        const float *kb = k_cache + (h / G) * capacity * HS, *vb = v_cache + (h / G) * capacity * HS;
        decode_row(out + t * out_stride + h * HS, q + t * q_stride + h * HS, kb, vb, lo, hi, HS, opts->scale);
    }
    return GL_OK;
}
