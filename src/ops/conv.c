/* conv2d and conv_transpose2d as im2col / col2im + gl_sgemm.
 *
 * Per sample n and group g (Cg = C/g input channels, Og = O/g output
 * channels, K = Cg kh kw, L = OH OW, M = H W):
 *   conv2d forward     y[n,g] [Og, L]  = w[g] [Og, K] @ im2col(x[n,g]) [K, L] (+ b)
 *          backward    dw[g]  [Og, K] += gy[n,g] @ im2col(x[n,g])^T
 *                      dx[n,g]        += col2im(w[g]^T @ gy[n,g])
 *   conv_transpose2d   y[n,g]          = col2im(w[g]^T [Og kh kw, Cg] @ x[n,g] [Cg, M]) (+ b)
 *          backward    dx[n,g] [Cg, M] += w[g] @ im2col(gy[n,g])        (conv2d forward)
 *                      dw[g] [Cg, Og kh kw] += x[n,g] @ im2col(gy[n,g])^T
 * db sums gy over the batch and the pixels.
 *
 * Threads: with at least as many samples as threads, each thread takes whole
 * samples (its own column buffer, single-threaded GEMMs); otherwise samples
 * run in turn and the GEMMs (or the direct kernels' blocks of outputs) use
 * the threads. The weight gradient is summed over a fixed partition of the
 * samples, so no result depends on the thread count.
 *
 * Where im2col is the identity (a 1x1 stride-1 unpadded conv2d; a kernel
 * that covers the whole unpadded image, as in the first and last layers of
 * a DCGAN) the image is its own column matrix. A stride-1 conv2d takes dx as
 * gy convolved with the flipped, transposed kernel (padded by d (k - 1) - p):
 * an im2col and a GEMM that adds straight into dx, in place of a GEMM into a
 * zeroed [K, L] buffer that col2im folds back (9 passes over dx for 3x3).
 *
 * The column matrices are not kept from forward to backward: for the UNet
 * of bench images they would hold some 800 MB at batch 64, for an im2col
 * that costs a few percent of a training step. */
#include "ops/conv.h"

#include <omp.h>
#include <stdlib.h>

#include "autograd/tape.h"
#include "core/interrupt.h"
#include "core/threads.h"
#include "ops/matmul.h"

gl_conv2d_args gl_conv2d_args_default(void)
{
    return (gl_conv2d_args){.stride = {1, 1}, .dilation = {1, 1}, .groups = 1};
}

/* The copy and add loops of im2col / col2im vectorize wider with AVX2.
 * The copy and zeroing loops of im2col stay loops: as calls to memcpy and
 * memset (GCC's loop distribution makes them so) the rows of 7 or 14 pixels
 * cost more in calls than in copying. */
#if defined(__GNUC__) && !defined(__clang__)
#define SIMD_CLONES __attribute__((target_clones("avx2", "default"), optimize("no-tree-loop-distribute-patterns")))
#else
#define SIMD_CLONES __attribute__((target_clones("avx2", "default")))
#endif

/* An image of C channels [C, H, W] against a column matrix [C kh kw, OH OW]. */
typedef struct {
    int64_t C, H, W, kh, kw, OH, OW, sh, sw, ph, pw, dh, dw;
} geom;

/* The outputs o in [*lo, *hi) of [0, n) whose input off + o s lies in [0, size). */
static inline void valid_range(int64_t off, int64_t s, int64_t size, int64_t n, int64_t *lo, int64_t *hi)
{
    int64_t a, b;
    if (s == 1) { /* no division: im2col calls this per row, and rows may be 1 pixel long */
        a = off >= 0 ? 0 : -off;
        b = size - off;
    } else {
        a = off >= 0 ? 0 : (-off + s - 1) / s;
        b = off >= size ? 0 : (size - 1 - off) / s + 1;
    }
    if (b > n) b = n;
    if (b < 0) b = 0;
    if (a > b) a = b;
    *lo = a, *hi = b;
}

/* One row of im2col when the image and the columns are as wide (stride 1,
 * OW == W, as with 3x3 padding 1): the valid pixels lie at one offset d
 * from their columns, so the row is a single copy of [h0 OW + w0,
 * (h1 - 1) OW + w1) with the padding zeroed around it and in the w0 + OW -
 * w1 columns it wrapped into between rows, in place of a short copy per
 * row (7 to 28 pixels in the UNet). */
SIMD_CLONES static void im2col_flat(float *restrict row, const float *restrict plane, int64_t L, int64_t OW,
                                    int64_t h0, int64_t h1, int64_t w0, int64_t w1, int64_t d)
{
    int64_t a = 0, b = 0;
    if (h1 > h0 && w1 > w0) a = h0 * OW + w0, b = (h1 - 1) * OW + w1;
    for (int64_t j = 0; j < a; j++) row[j] = 0.0f;
#pragma omp simd
    for (int64_t j = a; j < b; j++) row[j] = plane[j + d];
    if (b > a && (w0 > 0 || w1 < OW))
        for (int64_t oh = h0; oh < h1 - 1; oh++)
            for (int64_t j = oh * OW + w1; j < (oh + 1) * OW + w0; j++) row[j] = 0.0f;
    for (int64_t j = b; j < L; j++) row[j] = 0.0f;
}

/* Each (channel, ki, kj) row is the image shifted by the kernel offset: the
 * rows and columns that fall into the padding are zeroed, the rest copied
 * without a bounds check per element (as one copy per row when im2col_flat
 * applies). */
SIMD_CLONES static void im2col(const geom *q, const float *restrict img, float *restrict col)
{
    int64_t OH = q->OH, OW = q->OW, L = OH * OW;
    bool flat = q->sh == 1 && q->sw == 1 && OW == q->W;
    for (int64_t c = 0; c < q->C; c++)
        for (int64_t ki = 0; ki < q->kh; ki++) {
            int64_t h0, h1, ioff = ki * q->dh - q->ph;
            valid_range(ioff, q->sh, q->H, OH, &h0, &h1);
            for (int64_t kj = 0; kj < q->kw; kj++) {
                float *row = col + ((c * q->kh + ki) * q->kw + kj) * L;
                const float *plane = img + c * q->H * q->W;
                int64_t w0, w1, joff = kj * q->dw - q->pw;
                valid_range(joff, q->sw, q->W, OW, &w0, &w1);
                if (flat) {
                    im2col_flat(row, plane, L, OW, h0, h1, w0, w1, ioff * q->W + joff);
                    continue;
                }
                for (int64_t j = 0; j < h0 * OW; j++) row[j] = 0.0f;
                for (int64_t oh = h0; oh < h1; oh++) {
                    float *r = row + oh * OW;
                    const float *src = plane + (oh * q->sh + ioff) * q->W;
                    for (int64_t ow = 0; ow < w0; ow++) r[ow] = 0.0f;
                    if (q->sw == 1) {
#pragma omp simd
                        for (int64_t ow = w0; ow < w1; ow++) r[ow] = src[joff + ow];
                    } else {
                        for (int64_t ow = w0; ow < w1; ow++) r[ow] = src[joff + ow * q->sw];
                    }
                    for (int64_t ow = w1; ow < OW; ow++) r[ow] = 0.0f;
                }
                for (int64_t j = h1 * OW; j < L; j++) row[j] = 0.0f;
            }
        }
}

/* img += the columns folded back onto their pixels (im2col's adjoint). */
SIMD_CLONES static void col2im(const geom *q, const float *restrict col, float *restrict img)
{
    int64_t OH = q->OH, OW = q->OW, L = OH * OW;
    for (int64_t c = 0; c < q->C; c++)
        for (int64_t ki = 0; ki < q->kh; ki++) {
            int64_t h0, h1, ioff = ki * q->dh - q->ph;
            valid_range(ioff, q->sh, q->H, OH, &h0, &h1);
            for (int64_t kj = 0; kj < q->kw; kj++) {
                const float *row = col + ((c * q->kh + ki) * q->kw + kj) * L;
                float *plane = img + c * q->H * q->W;
                int64_t w0, w1, joff = kj * q->dw - q->pw;
                valid_range(joff, q->sw, q->W, OW, &w0, &w1);
                for (int64_t oh = h0; oh < h1; oh++) {
                    const float *r = row + oh * OW;
                    float *dst = plane + (oh * q->sh + ioff) * q->W;
                    if (q->sw == 1) {
#pragma omp simd
                        for (int64_t ow = w0; ow < w1; ow++) dst[joff + ow] += r[ow];
                    } else {
                        for (int64_t ow = w0; ow < w1; ow++) dst[joff + ow * q->sw] += r[ow];
                    }
                }
            }
        }
}

/* --- convolutions without a column matrix --------------------------------------- */

/* With AVX2 and FMA, a stride-1 conv2d (and the dx of one, a stride-1
 * convolution with the flipped kernel) reads a zero-padded copy xp of the
 * image directly. Each plane of xp is pw zeros, then Hp = H + 2 ph rows of
 * Wp >= W + pw floats (the top and bottom ph rows zero, the others the
 * image's row and Wp - W zeros): the zeros after a row are also the left
 * padding of the next one. Output grid position q = oh Wp + ow then takes tap
 * (ki, kj) of channel c from xp[c][q + ki dh Wp + kj dw], one offset per tap
 * for every position. All OH x Wp grid positions are computed (the Wp - OW
 * junk ones of each row are dropped when the grid is added into y), in tiles
 * of 4 output channels by up to 24 positions that live in 12 AVX registers,
 * with the weights packed [O/4][C][taps][4] so that each tap broadcasts 4
 * contiguous floats. That saves im2col's kh kw copies of the image and BLAS's
 * packing of them, which cost as much as a third of the products of the
 * UNet's 7x7 to 28x28 convolutions. The weight gradient (direct_dw) reads
 * the same padded image against gy laid on the grid, for images whose grid
 * is large enough.
 * A strided conv2d's forward splits the padded image into sh sw phase
 * planes of Hq rows of Wp floats, phase (a, b) holding its pixels (sh u + a,
 * sw v + b) at (u, v): tap (ki, kj) of output (oh, ow) is then pixel (oh +
 * ki dh / sh, ow + kj dw / sw) of phase (ki dh % sh, kj dw % sw), again one
 * offset per tap (the stride-2 convolutions of the UNet ran at a third of
 * the direct kernel's speed through im2col and BLAS). */
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_DIRECT 1
#endif

#define DIRECT_MAX_TAPS 64

static bool direct_available(void)
{
#ifdef HAVE_DIRECT
    static int have = -1;
    if (have < 0) have = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    return have;
#else
    return false;
#endif
}

/* The layout of xp and of the grid for image geometry q. */
typedef struct {
    int64_t Wp, plane, nxp, ld; /* row stride, plane and whole xp in floats, grid row (OH Wp, whole vectors) */
    int64_t phase;              /* floats of a phase plane when strided, else 0 */
} dlayout;

static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

static dlayout direct_layout(const geom *q)
{
    dlayout l;
    if (q->sh == 1 && q->sw == 1) {
        l.Wp = max64(q->W + q->pw, q->OW);
        l.plane = q->pw + (q->H + 2 * q->ph) * l.Wp;
        l.phase = 0;
    } else { /* rows and columns for every pixel of the padded image and every tap of the grid */
        int64_t Hq = max64((q->H + 2 * q->ph + q->sh - 1) / q->sh, q->OH + (q->kh - 1) * q->dh / q->sh);
        l.Wp = max64((q->W + 2 * q->pw + q->sw - 1) / q->sw, q->OW + (q->kw - 1) * q->dw / q->sw);
        l.phase = Hq * l.Wp;
        l.plane = q->sh * q->sw * l.phase;
    }
    l.ld = (q->OH * l.Wp + 7) / 8 * 8;
    /* The junk positions of the last tile read up to ld - OH Wp past the last
     * plane, and with phases up to a row more (a tap's phase and row offsets add). */
    l.nxp = q->C * l.plane + l.ld - q->OH * l.Wp + (l.phase ? l.Wp : 0);
    return l;
}

/* Floats of one call's buffer: xp and the grid of O outputs. */
static int64_t direct_buf_size(const geom *q, int64_t O)
{
    dlayout l = direct_layout(q);
    return l.nxp + (O + 3) / 4 * 4 * l.ld;
}

static int64_t direct_pack_size(int64_t O, int64_t C, int64_t taps) { return (O + 3) / 4 * 4 * C * taps; }

/* off[ki kw + kj]: where tap (ki, kj) reads in a channel's plane of xp,
 * relative to the grid position. */
static void direct_offsets(const geom *q, const dlayout *l, int64_t *off)
{
    for (int64_t ki = 0; ki < q->kh; ki++)
        for (int64_t kj = 0; kj < q->kw; kj++) {
            int64_t i = ki * q->dh, j = kj * q->dw;
            off[ki * q->kw + kj] = (i % q->sh * q->sw + j % q->sw) * l->phase + i / q->sh * l->Wp + j / q->sw;
        }
}

/* wp [ceil(O/4)][C][taps][4] from w, whose element (o, c, tap t) lies at
 * w[o so + c si + t st]; the rows past O are zeros. */
static void direct_pack(int64_t O, int64_t C, int64_t taps, const float *w, int64_t so, int64_t si, int64_t st,
                        float *wp)
{
#pragma omp parallel for if (O * C * taps > 65536) schedule(static)
    for (int64_t ob = 0; ob < (O + 3) / 4; ob++) {
        float *dst = wp + ob * C * taps * 4;
        for (int64_t c = 0; c < C; c++)
            for (int64_t t = 0; t < taps; t++)
                for (int64_t r = 0; r < 4; r++) {
                    int64_t o = ob * 4 + r;
                    *dst++ = o < O ? w[o * so + c * si + t * st] : 0.0f;
                }
    }
}

#ifdef HAVE_DIRECT
#define DIRECT_TARGET __attribute__((target("avx2,fma")))

/* out[r][0 .. 8 NV) (rows ld apart) for the 4 output channels of wb and the
 * NV vectors of grid positions at x: the sum over channels c and taps t of
 * wb[c][t][r] x[c plane + off[t] + ...]. */
DIRECT_TARGET __attribute__((always_inline)) static inline void direct_tile(const float *x, int64_t plane, int64_t C,
                                                                           const int64_t *off, int64_t taps,
                                                                           const float *wb, float *out, int64_t ld,
                                                                           int NV)
{
    __m256 acc[4][3];
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++)
#pragma GCC unroll 3
        for (int v = 0; v < NV; v++) acc[r][v] = _mm256_setzero_ps();
    for (int64_t c = 0; c < C; c++, x += plane)
        for (int64_t t = 0; t < taps; t++, wb += 4) {
            const float *xs = x + off[t];
            /* The next channel's row, a plane on (a hint, harmless past the
             * last): the tiles of a block read C planes at once, more streams
             * than the hardware prefetcher follows (3-11% on the UNet's 28x28
             * convolutions). */
            _mm_prefetch((const char *)(xs + plane + 8 * NV), _MM_HINT_T0);
            __m256 xv[3];
#pragma GCC unroll 3
            for (int v = 0; v < NV; v++) xv[v] = _mm256_loadu_ps(xs + 8 * v);
#pragma GCC unroll 4
            for (int r = 0; r < 4; r++) {
                __m256 w = _mm256_broadcast_ss(wb + r);
#pragma GCC unroll 3
                for (int v = 0; v < NV; v++) acc[r][v] = _mm256_fmadd_ps(w, xv[v], acc[r][v]);
            }
        }
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++)
#pragma GCC unroll 3
        for (int v = 0; v < NV; v++) _mm256_storeu_ps(out + r * ld + 8 * v, acc[r][v]);
}

/* The grid [ceil(O/4) 4, l->ld] of the packed kernel wp over xp, the
 * blocks of outputs split among the threads when split. Blocks of outputs
 * outside, tiles inside: the block's weights stay in L1 while the image
 * streams through from L2 (the other way round, a tile's rows of 64
 * channels and a block's weights overflow L1). */
DIRECT_TARGET static void direct_grid_fill(const geom *q, const dlayout *l, int64_t O, const float *xp,
                                           const float *wp, float *grid, bool split)
{
    int64_t taps = q->kh * q->kw, P = q->OH * l->Wp, wstride = q->C * taps * 4, off[DIRECT_MAX_TAPS];
    direct_offsets(q, l, off);
#pragma omp parallel for if (split) schedule(static)
    for (int64_t ob = 0; ob < (O + 3) / 4; ob++) {
        const float *wb = wp + ob * wstride;
        for (int64_t p = 0; p < P;) {
            int64_t left = (P - p + 7) / 8;
            int nv = left == 4 ? 2 : left >= 3 ? 3 : (int)left; /* 2 + 2, not 3 + 1: a lone vector is load-bound */
            float *out = grid + ob * 4 * l->ld + p;
            if (nv == 3)
                direct_tile(xp + p, l->plane, q->C, off, taps, wb, out, l->ld, 3);
            else if (nv == 2)
                direct_tile(xp + p, l->plane, q->C, off, taps, wb, out, l->ld, 2);
            else
                direct_tile(xp + p, l->plane, q->C, off, taps, wb, out, l->ld, 1);
            p += 8 * nv;
        }
    }
}

/* dst [n] = src[0], src[s], src[2 s], ...; stride 2 (the common one) as a
 * loop of its own, which vectorizes with permutes. */
DIRECT_TARGET static inline void gather_row(float *restrict dst, const float *restrict src, int64_t n, int64_t s)
{
    if (s == 2) {
#pragma omp simd
        for (int64_t v = 0; v < n; v++) dst[v] = src[2 * v];
    } else {
        for (int64_t v = 0; v < n; v++) dst[v] = src[v * s];
    }
}

/* xp's phase planes (a strided layout) from img [C, H, W]. */
DIRECT_TARGET static void direct_pad_phases(const geom *q, const dlayout *l, const float *img, float *xp)
{
    int64_t Hq = l->phase / l->Wp;
    for (int64_t c = 0; c < q->C; c++)
        for (int64_t a = 0; a < q->sh; a++)
            for (int64_t b = 0; b < q->sw; b++) {
                float *dst = xp + c * l->plane + (a * q->sw + b) * l->phase;
                int64_t u0, u1, v0, v1; /* the rows and columns that hold pixels of the image */
                valid_range(a - q->ph, q->sh, q->H, Hq, &u0, &u1);
                valid_range(b - q->pw, q->sw, q->W, l->Wp, &v0, &v1);
                for (int64_t j = 0; j < l->phase; j++) dst[j] = 0.0f;
                for (int64_t u = u0; u < u1; u++) {
                    const float *src = img + (c * q->H + u * q->sh + a - q->ph) * q->W + b - q->pw;
                    gather_row(dst + u * l->Wp + v0, src + v0 * q->sw, v1 - v0, q->sw);
                }
            }
    for (int64_t j = q->C * l->plane; j < l->nxp; j++) xp[j] = 0.0f;
}

/* xp [l->nxp] = img [C, H, W] in the padded layout. */
DIRECT_TARGET static void direct_pad(const geom *q, const dlayout *l, const float *img, float *xp)
{
    int64_t W = q->W, Wp = l->Wp;
    if (l->phase) {
        direct_pad_phases(q, l, img, xp);
        return;
    }
    for (int64_t c = 0; c < q->C; c++) {
        float *dst = xp + c * l->plane;
        const float *src = img + c * q->H * W;
        int64_t top = q->pw + q->ph * Wp, bottom = top + q->H * Wp;
        for (int64_t j = 0; j < top; j++) dst[j] = 0.0f;
        for (int64_t h = 0; h < q->H; h++) {
            float *row = dst + top + h * Wp;
#pragma omp simd
            for (int64_t j = 0; j < W; j++) row[j] = src[h * W + j];
            for (int64_t j = W; j < Wp; j++) row[j] = 0.0f;
        }
        for (int64_t j = bottom; j < l->plane; j++) dst[j] = 0.0f;
    }
    for (int64_t j = q->C * l->plane; j < l->nxp; j++) xp[j] = 0.0f;
}

/* y [O, OH, OW] = bias (per channel; zeros when NULL) + the convolution of
 * img [C, H, W] (geometry q) with the packed kernel wp, or
 * y += that convolution when add; buf holds direct_buf_size(q, O) floats;
 * split: the threads share the products. */
DIRECT_TARGET static void direct_conv(const geom *q, int64_t O, const float *img, const float *wp, const float *bias,
                                      bool add, float *y, float *buf, bool split)
{
    dlayout l = direct_layout(q);
    float *xp = buf, *grid = buf + l.nxp;
    int64_t Wp = l.Wp;
    direct_pad(q, &l, img, xp);
    direct_grid_fill(q, &l, O, xp, wp, grid, split);
    for (int64_t o = 0; o < O; o++)
        for (int64_t oh = 0; oh < q->OH; oh++) {
            float *dst = y + (o * q->OH + oh) * q->OW, b = bias ? bias[o] : 0.0f;
            const float *src = grid + o * l.ld + oh * Wp;
            if (add) {
#pragma omp simd
                for (int64_t ow = 0; ow < q->OW; ow++) dst[ow] += src[ow];
            } else {
#pragma omp simd
                for (int64_t ow = 0; ow < q->OW; ow++) dst[ow] = src[ow] + b;
            }
        }
}

DIRECT_TARGET static inline float hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

/* dw[r][j] (rows K apart, r < rows) += the sum over the ld grid positions q
 * of g[r][q] x[q + off[j]], for the 4 rows of g (ld apart) and NT taps. */
DIRECT_TARGET __attribute__((always_inline)) static inline void direct_dw_tile(const float *g, int64_t ld,
                                                                              const float *x, const int64_t *off,
                                                                              float *dw, int64_t K, int64_t rows,
                                                                              int NT)
{
    __m256 acc[4][3];
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++)
#pragma GCC unroll 3
        for (int j = 0; j < NT; j++) acc[r][j] = _mm256_setzero_ps();
    for (int64_t q = 0; q < ld; q += 8) {
        __m256 xv[3];
#pragma GCC unroll 3
        for (int j = 0; j < NT; j++) xv[j] = _mm256_loadu_ps(x + q + off[j]);
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++) {
            __m256 gv = _mm256_loadu_ps(g + r * ld + q);
#pragma GCC unroll 3
            for (int j = 0; j < NT; j++) acc[r][j] = _mm256_fmadd_ps(gv, xv[j], acc[r][j]);
        }
    }
    for (int64_t r = 0; r < rows; r++)
#pragma GCC unroll 3
        for (int j = 0; j < NT; j++) dw[r * K + j] += hsum(acc[r][j]);
}

/* dw [O, C taps] += the weight gradient of the stride-1 convolution of img
 * [C, H, W] (geometry q) that gave gy [O, OH, OW]: dw[o][c][t] = the sum over
 * grid positions q of gy[o][q] xp[c][q + off[t]], with gy laid on the grid
 * (zeros at the junk positions); buf holds direct_buf_size(q, O) floats;
 * split: the threads share the blocks of outputs. */
DIRECT_TARGET static void direct_dw(const geom *q, int64_t O, const float *img, const float *gy, float *dw,
                                    float *buf, bool split)
{
    dlayout l = direct_layout(q);
    float *xp = buf, *gg = buf + l.nxp;
    int64_t taps = q->kh * q->kw, K = q->C * taps, OB = (O + 3) / 4, off[DIRECT_MAX_TAPS];
    direct_pad(q, &l, img, xp);
    for (int64_t o = 0; o < OB * 4; o++) {
        float *row = gg + o * l.ld;
        int64_t j = 0;
        for (int64_t oh = 0; o < O && oh < q->OH; oh++) {
            const float *src = gy + (o * q->OH + oh) * q->OW;
#pragma omp simd
            for (int64_t ow = 0; ow < q->OW; ow++) row[j + ow] = src[ow];
            for (j += q->OW; j < (oh + 1) * l.Wp; j++) row[j] = 0.0f;
        }
        for (; j < l.ld; j++) row[j] = 0.0f;
    }
    direct_offsets(q, &l, off);
#pragma omp parallel for if (split) schedule(static)
    for (int64_t ob = 0; ob < OB; ob++) {
        const float *g = gg + ob * 4 * l.ld;
        int64_t rows = O - ob * 4 < 4 ? O - ob * 4 : 4;
        for (int64_t c = 0; c < q->C; c++)
            for (int64_t t = 0; t < taps; t += 3) {
                float *d = dw + ob * 4 * K + c * taps + t;
                const float *x = xp + c * l.plane;
                if (taps - t >= 3)
                    direct_dw_tile(g, l.ld, x, off + t, d, K, rows, 3);
                else if (taps - t == 2)
                    direct_dw_tile(g, l.ld, x, off + t, d, K, rows, 2);
                else
                    direct_dw_tile(g, l.ld, x, off + t, d, K, rows, 1);
            }
    }
}
#else
/* Never called: direct_available() is false without the AVX2 kernels. */
static void direct_conv(const geom *q, int64_t O, const float *img, const float *wp, const float *bias, bool add,
                        float *y, float *buf, bool split)
{
    (void)q, (void)O, (void)img, (void)wp, (void)bias, (void)add, (void)y, (void)buf, (void)split;
}

static void direct_dw(const geom *q, int64_t O, const float *img, const float *gy, float *dw, float *buf, bool split)
{
    (void)q, (void)O, (void)img, (void)gy, (void)dw, (void)buf, (void)split;
}
#endif

/* Everything one call needs, forward or backward. For conv2d the image of
 * the columns is x (C = Cg channels); for conv_transpose2d it is y / gy. */
typedef struct {
    bool transpose;
    int64_t N, C, H, W, O, OH, OW, groups, Cg, Og;
    geom q;      /* one group's image against its columns */
    bool direct; /* im2col is the identity: the image is its own column matrix */
    bool flip;   /* conv2d stride 1 (not direct): dx is gy convolved with the flipped kernel, ... */
    geom qf;     /* ... gy [Og, OH, OW] against the columns [Og kh kw, H W] of that convolution */
    bool dk;     /* conv2d forward by direct_conv */
    bool dkf;    /* dx of the flip case by direct_conv */
    bool dkw;    /* dw by direct_dw */
    bool split;  /* samples in turn on several threads: the direct kernels share each one */
} plan;

static const char *op_name(bool transpose) { return transpose ? "conv_transpose2d" : "conv2d"; }

static gl_status make_plan(bool transpose, const gl_tensor *x, const gl_tensor *w, const gl_tensor *b,
                           const gl_conv2d_args *a, plan *p)
{
    const char *op = op_name(transpose);
    char s1[128], s2[128];
    if (x->dtype != GL_F32 || w->dtype != GL_F32 || (b && b->dtype != GL_F32))
        return gl_error(GL_EINVAL, "%s: expected f32 tensors, got input %s, weight %s%s%s", op,
                        gl_dtype_name(x->dtype), gl_dtype_name(w->dtype), b ? ", bias " : "",
                        b ? gl_dtype_name(b->dtype) : "");
    if (x->ndim != 4)
        return gl_error(GL_EINVAL, "%s: input must be 4-D [N,C,H,W], got %s", op,
                        gl_tensor_shape_str(x, s1, sizeof s1));
    if (w->ndim != 4)
        return gl_error(GL_EINVAL, "%s: weight must be 4-D %s, got %s", op,
                        transpose ? "[Cin,Cout/groups,kh,kw]" : "[Cout,Cin/groups,kh,kw]",
                        gl_tensor_shape_str(w, s1, sizeof s1));
    for (int k = 0; k < 2; k++)
        if (a->stride[k] < 1 || a->dilation[k] < 1 || a->padding[k] < 0 || a->output_padding[k] < 0)
            return gl_error(GL_EINVAL,
                            "%s: stride and dilation must be >= 1, padding and output_padding >= 0 (got stride "
                            "%lldx%lld, padding %lldx%lld, dilation %lldx%lld, output_padding %lldx%lld)",
                            op, (long long)a->stride[0], (long long)a->stride[1], (long long)a->padding[0],
                            (long long)a->padding[1], (long long)a->dilation[0], (long long)a->dilation[1],
                            (long long)a->output_padding[0], (long long)a->output_padding[1]);
    int64_t G = a->groups;
    if (G < 1) return gl_error(GL_EINVAL, "%s: groups must be >= 1 (got %lld)", op, (long long)G);
    gl_tensor_shape_str(x, s1, sizeof s1);
    gl_tensor_shape_str(w, s2, sizeof s2);
    int64_t C = x->shape[1], O, Cg;
    if (!transpose) {
        O = w->shape[0], Cg = w->shape[1];
        if (C != Cg * G)
            return gl_error(GL_EINVAL, "%s: input %s has %lld channels, weight %s expects %lld x groups %lld", op, s1,
                            (long long)C, s2, (long long)Cg, (long long)G);
        if (O % G)
            return gl_error(GL_EINVAL, "%s: groups %lld does not divide the %lld output channels of weight %s", op,
                            (long long)G, (long long)O, s2);
    } else {
        if (C != w->shape[0])
            return gl_error(GL_EINVAL, "%s: input %s has %lld channels, weight %s expects %lld", op, s1, (long long)C,
                            s2, (long long)w->shape[0]);
        if (C % G)
            return gl_error(GL_EINVAL, "%s: groups %lld does not divide the %lld input channels of %s", op,
                            (long long)G, (long long)C, s1);
        O = w->shape[1] * G, Cg = C / G;
        for (int k = 0; k < 2; k++)
            if (a->output_padding[k] >= a->stride[k] && a->output_padding[k] >= a->dilation[k])
                return gl_error(GL_EINVAL,
                                "%s: output_padding %lldx%lld must be smaller than stride %lldx%lld or dilation "
                                "%lldx%lld",
                                op, (long long)a->output_padding[0], (long long)a->output_padding[1],
                                (long long)a->stride[0], (long long)a->stride[1], (long long)a->dilation[0],
                                (long long)a->dilation[1]);
    }
    if (b && !(b->ndim == 1 && b->shape[0] == O) && !(b->ndim == 2 && b->shape[0] == x->shape[0] && b->shape[1] == O))
        return gl_error(GL_EINVAL, "%s: bias %s does not match the %lld output channels of weight %s", op,
                        gl_tensor_shape_str(b, s1, sizeof s1), (long long)O, s2);
    int64_t H = x->shape[2], W = x->shape[3], kh = w->shape[2], kw = w->shape[3], OH, OW;
    int64_t ext_h = a->dilation[0] * (kh - 1) + 1, ext_w = a->dilation[1] * (kw - 1) + 1;
    if (!transpose) {
        int64_t PH = H + 2 * a->padding[0], PW = W + 2 * a->padding[1];
        if (kh < 1 || kw < 1 || ext_h > PH || ext_w > PW)
            return gl_error(GL_EINVAL,
                            "%s: kernel %lldx%lld (dilation %lldx%lld) does not fit the padded input %lldx%lld "
                            "(input %s, padding %lldx%lld)",
                            op, (long long)kh, (long long)kw, (long long)a->dilation[0], (long long)a->dilation[1],
                            (long long)PH, (long long)PW, s1, (long long)a->padding[0], (long long)a->padding[1]);
        OH = (PH - ext_h) / a->stride[0] + 1;
        OW = (PW - ext_w) / a->stride[1] + 1;
    } else {
        OH = (H - 1) * a->stride[0] - 2 * a->padding[0] + ext_h + a->output_padding[0];
        OW = (W - 1) * a->stride[1] - 2 * a->padding[1] + ext_w + a->output_padding[1];
        if (kh < 1 || kw < 1 || H < 1 || W < 1 || OH < 1 || OW < 1)
            return gl_error(GL_EINVAL,
                            "%s: input %s with weight %s, stride %lldx%lld and padding %lldx%lld gives an empty "
                            "output %lldx%lld",
                            op, s1, s2, (long long)a->stride[0], (long long)a->stride[1], (long long)a->padding[0],
                            (long long)a->padding[1], (long long)OH, (long long)OW);
    }
    *p = (plan){.transpose = transpose, .N = x->shape[0], .C = C, .H = H, .W = W, .O = O, .OH = OH, .OW = OW,
                .groups = G, .Cg = Cg, .Og = O / G};
    /* The columns' image: x for conv2d, one group of y for conv_transpose2d. */
    p->q = transpose ? (geom){p->Og, OH, OW, kh, kw, H, W, 0, 0, 0, 0, 0, 0}
                     : (geom){Cg, H, W, kh, kw, OH, OW, 0, 0, 0, 0, 0, 0};
    p->q.sh = a->stride[0], p->q.sw = a->stride[1], p->q.ph = a->padding[0], p->q.pw = a->padding[1];
    p->q.dh = a->dilation[0], p->q.dw = a->dilation[1];
    const geom *q = &p->q;
    bool unpadded = q->ph == 0 && q->pw == 0;
    p->direct = unpadded && ((kh == 1 && kw == 1 && q->sh == 1 && q->sw == 1 && q->OH == q->H && q->OW == q->W) ||
                             (q->OH == 1 && q->OW == 1 && kh == q->H && kw == q->W && q->dh == 1 && q->dw == 1));
    int64_t fph = a->dilation[0] * (kh - 1) - a->padding[0], fpw = a->dilation[1] * (kw - 1) - a->padding[1];
    p->flip = !transpose && !p->direct && p->q.sh == 1 && p->q.sw == 1 && fph >= 0 && fpw >= 0;
    p->qf = (geom){p->Og, OH, OW, kh, kw, H, W, 1, 1, fph, fpw, a->dilation[0], a->dilation[1]};
    /* The direct kernels run whatever the thread count (on whole samples, or
     * on one sample's blocks of outputs when the samples are fewer than the
     * threads), so that the count does not change the results. */
    bool dk = kh * kw <= DIRECT_MAX_TAPS && direct_available();
    p->split = gl_threads_get() > 1 && !(p->N > 1 && p->N >= gl_threads_get());
    p->dk = dk && !transpose && !p->direct;
    p->dkf = dk && p->flip;
    /* direct_dw's 12 horizontal sums per 4 outputs, channel and 3 taps cost
     * more than BLAS's packing below some 256 grid positions (14x14 and
     * smaller images: measured 0.76-0.94x the GEMM, 28x28: 1.09-1.26x). */
    p->dkw = p->dk && p->q.sh == 1 && p->q.sw == 1 && direct_layout(&p->q).ld >= 256;
    return GL_OK;
}

/* Rows and columns of one group's column matrix. */
static int64_t col_rows(const plan *p) { return p->q.C * p->q.kh * p->q.kw; }
static int64_t col_cols(const plan *p) { return p->q.OH * p->q.OW; }

/* Whether whole samples go to threads (else the GEMMs take the threads). */
static bool by_sample(const plan *p) { return p->N > 1 && p->N >= gl_threads_get(); }

/* Blocks of samples whose weight gradients are summed separately (see conv_backward). */
#define DW_BLOCKS 8

/* --- forward --------------------------------------------------------------------- */

/* y[n] for one sample; col is this thread's [K, L] buffer, or direct_conv's
 * with the packed kernel wpk when p->dk. y holds the bias or zeros, except
 * for direct_conv, which writes the bias b itself. */
static void forward_sample(const plan *p, const float *x, const float *w, const float *wpk, const float *b, float *y,
                           float *col)
{
    int64_t K = col_rows(p), L = col_cols(p), HWin = p->H * p->W, HWout = p->OH * p->OW;
    for (int64_t g = 0; g < p->groups; g++) {
        if (p->dk) {
            direct_conv(&p->q, p->Og, x + g * p->Cg * HWin, wpk + g * direct_pack_size(p->Og, p->Cg, p->q.kh * p->q.kw),
                        b ? b + g * p->Og : NULL, false, y + g * p->Og * HWout, col, p->split);
        } else if (!p->transpose) {
            const float *xg = x + g * p->Cg * HWin, *cols = xg;
            if (!p->direct) {
                im2col(&p->q, xg, col);
                cols = col;
            }
            gl_sgemm(false, false, p->Og, L, K, 1.0f, w + g * p->Og * K, K, cols, L, 1.0f, y + g * p->Og * HWout, L);
        } else { /* col [Og kh kw, H W] = w[g]^T @ x[n,g], folded onto y[n,g] */
            const float *wg = w + g * p->Cg * K, *xg = x + g * p->Cg * HWin;
            float *yg = y + g * p->Og * HWout;
            if (p->direct) {
                gl_sgemm(true, false, K, L, p->Cg, 1.0f, wg, K, xg, HWin, 1.0f, yg, L);
                continue;
            }
            gl_sgemm(true, false, K, L, p->Cg, 1.0f, wg, K, xg, HWin, 0.0f, col, L);
            col2im(&p->q, col, yg);
        }
    }
}

static gl_status conv_backward(gl_node *nd);

static gl_tensor *conv(bool transpose, gl_tensor *x, gl_tensor *w, gl_tensor *b, const gl_conv2d_args *a)
{
    const char *op = op_name(transpose);
    if (gl_interrupt_poll(op)) return NULL;
    plan p;
    if (make_plan(transpose, x, w, b, a, &p) != GL_OK) return NULL;
    int64_t HWout = p.OH * p.OW, shape[4] = {p.N, p.O, p.OH, p.OW};
    /* Start from the bias or zeros, then add the products (direct_conv writes both at once). */
    gl_tensor *y = b || p.dk ? gl_tensor_empty(GL_F32, 4, shape) : gl_tensor_new(GL_F32, 4, shape);
    if (!y) return NULL;
    const float *X = gl_tensor_f32(x), *Wt = gl_tensor_f32(w), *B = b ? gl_tensor_f32(b) : NULL;
    float *Y = gl_tensor_f32(y);
    int64_t bstride = b && b->ndim == 2 ? p.O : 0; /* per-sample bias [N, O] */
    if (B && !p.dk) {
#pragma omp parallel for if (p.N * p.O * HWout > 65536) schedule(static)
        for (int64_t r = 0; r < p.N * p.O; r++) {
            float v = B[bstride ? r : r % p.O]; /* read per element, it kept the loop scalar (2% of DDIM) */
#pragma omp simd
            for (int64_t j = 0; j < HWout; j++) Y[r * HWout + j] = v;
        }
    }
    size_t ncol = p.direct ? 1 : (size_t)(col_rows(&p) * col_cols(&p));
    float *wpk = NULL;
    if (p.dk) {
        int64_t taps = p.q.kh * p.q.kw, np = direct_pack_size(p.Og, p.Cg, taps);
        ncol = (size_t)direct_buf_size(&p.q, p.Og);
        if (!(wpk = malloc((size_t)(p.groups * np) * sizeof *wpk))) {
            gl_tensor_release(y);
            return gl_error_null(GL_ENOMEM, "%s: out of memory for the packed kernel", op);
        }
        for (int64_t g = 0; g < p.groups; g++)
            direct_pack(p.Og, p.Cg, taps, Wt + g * p.Og * p.Cg * taps, p.Cg * taps, taps, 1, wpk + g * np);
    }
    bool par = by_sample(&p), oom = false;
#pragma omp parallel if (par)
    {
        float *col = malloc(ncol * sizeof *col);
        if (!col) {
#pragma omp atomic write
            oom = true;
        }
#pragma omp for schedule(static)
        for (int64_t n = 0; n < p.N; n++)
            if (col)
                forward_sample(&p, X + n * p.C * p.H * p.W, Wt, wpk, B ? B + n * bstride : NULL, Y + n * p.O * HWout,
                               col);
        free(col);
    }
    free(wpk);
    if (oom) {
        gl_tensor_release(y);
        return gl_error_null(GL_ENOMEM, "%s: out of memory for the column buffer", op);
    }
    gl_tensor *ins[3] = {x, w, b};
    gl_node *nd;
    if (gl_autograd_record(&nd, y, op, conv_backward, 3, ins) != GL_OK) goto fail;
    if (nd) {
        nd->i[0] = transpose;
        nd->i[1] = a->stride[0], nd->i[2] = a->stride[1], nd->i[3] = a->padding[0], nd->i[4] = a->padding[1];
        nd->i[5] = a->dilation[0], nd->i[6] = a->dilation[1], nd->i[7] = a->output_padding[0];
        nd->i[8] = a->output_padding[1], nd->i[9] = a->groups, nd->i[10] = bstride > 0;
        if (gl_node_save(nd, 0, x) != GL_OK || gl_node_save(nd, 1, w) != GL_OK) goto fail;
    }
    return y;
fail:
    gl_tensor_release(y);
    return NULL;
}

gl_tensor *gl_conv2d(gl_tensor *x, gl_tensor *w, gl_tensor *b, const gl_conv2d_args *a)
{
    return conv(false, x, w, b, a);
}

gl_tensor *gl_conv_transpose2d(gl_tensor *x, gl_tensor *w, gl_tensor *b, const gl_conv2d_args *a)
{
    return conv(true, x, w, b, a);
}

/* --- backward -------------------------------------------------------------------- */

/* wf [G, Cg, Og kh kw]: the kernel w [G Og, Cg, kh, kw] flipped in both
 * axes with its channels swapped, for dx of a stride-1 conv2d. */
static void flip_kernel(const plan *p, const float *w, float *wf)
{
    int64_t kh = p->q.kh, kw = p->q.kw, KK = kh * kw;
    for (int64_t g = 0; g < p->groups; g++)
        for (int64_t o = 0; o < p->Og; o++)
            for (int64_t c = 0; c < p->Cg; c++)
                for (int64_t k = 0; k < KK; k++)
                    wf[((g * p->Cg + c) * p->Og + o) * KK + k] = w[((g * p->Og + o) * p->Cg + c) * KK + KK - 1 - k];
}

/* Adds one sample's dx (when dx) and dw (into dwp, when dwp). col and dcol
 * are this thread's buffers: [K, L] (direct_dw's when p->dkw) and the larger
 * of [K, L] and (flip) [Og kh kw, H W] or direct_conv's; wf is the flipped
 * kernel when p->flip, packed for direct_conv when p->dkf. */
static void backward_sample(const plan *p, const float *x, const float *w, const float *wf, const float *gy,
                            float *dx, float *dwp, float *col, float *dcol)
{
    int64_t K = col_rows(p), L = col_cols(p), HWin = p->H * p->W, HWout = p->OH * p->OW;
    for (int64_t g = 0; g < p->groups; g++) {
        const float *xg = x + g * p->Cg * HWin, *gyg = gy + g * p->Og * HWout;
        float *dxg = dx ? dx + g * p->Cg * HWin : NULL;
        if (!p->transpose) {
            const float *wg = w + g * p->Og * K;
            if (dwp && p->dkw) {
                direct_dw(&p->q, p->Og, xg, gyg, dwp + g * p->Og * K, col, p->split);
            } else if (dwp) {
                const float *cols = xg;
                if (!p->direct) {
                    im2col(&p->q, xg, col);
                    cols = col;
                }
                gl_sgemm(false, true, p->Og, K, L, 1.0f, gyg, L, cols, L, 1.0f, dwp + g * p->Og * K, K);
            }
            if (!dxg) continue;
            if (p->direct) {
                gl_sgemm(true, false, K, L, p->Og, 1.0f, wg, K, gyg, L, 1.0f, dxg, L);
            } else if (p->dkf) {
                direct_conv(&p->qf, p->Cg, gyg, wf + g * direct_pack_size(p->Cg, p->Og, p->q.kh * p->q.kw), NULL, true,
                            dxg, dcol, p->split);
            } else if (p->flip) { /* dx[n,g] [Cg, H W] += wf[g] [Cg, KF] @ im2col(gy[n,g]) [KF, H W] */
                int64_t KF = p->Og * p->q.kh * p->q.kw;
                im2col(&p->qf, gyg, dcol);
                gl_sgemm(false, false, p->Cg, HWin, KF, 1.0f, wf + g * p->Cg * KF, KF, dcol, HWin, 1.0f, dxg, HWin);
            } else {
                gl_sgemm(true, false, K, L, p->Og, 1.0f, wg, K, gyg, L, 0.0f, dcol, L);
                col2im(&p->q, dcol, dxg);
            }
        } else {
            const float *wg = w + g * p->Cg * K, *cols = gyg; /* [Og kh kw, H W] */
            if (!p->direct) {
                im2col(&p->q, gyg, col);
                cols = col;
            }
            if (dxg) gl_sgemm(false, false, p->Cg, L, K, 1.0f, wg, K, cols, L, 1.0f, dxg, L);
            if (dwp) gl_sgemm(false, true, p->Cg, K, L, 1.0f, xg, HWin, cols, L, 1.0f, dwp + g * p->Cg * K, K);
        }
    }
}

static gl_status conv_backward(gl_node *nd)
{
    bool transpose = nd->i[0];
    const char *op = transpose ? "conv_transpose2d backward" : "conv2d backward";
    if (gl_interrupt_poll(op)) return GL_EINTR;
    gl_tensor *x = nd->saved[0], *w = nd->saved[1];
    gl_conv2d_args a = {{nd->i[1], nd->i[2]}, {nd->i[3], nd->i[4]}, {nd->i[5], nd->i[6]}, {nd->i[7], nd->i[8]},
                        nd->i[9]};
    plan p;
    gl_status st = make_plan(transpose, x, w, NULL, &a, &p);
    if (st != GL_OK) return st;
    float *dx, *dw, *db;
    if ((st = gl_node_grad(nd, 0, &dx)) != GL_OK || (st = gl_node_grad(nd, 1, &dw)) != GL_OK ||
        (st = gl_node_grad(nd, 2, &db)) != GL_OK)
        return st;
    const float *X = gl_tensor_f32(x), *Wt = gl_tensor_f32(w), *GY = gl_tensor_f32(nd->gout);
    int64_t HWout = p.OH * p.OW, HWin = p.H * p.W;
    if (db && nd->i[10]) { /* per-sample bias [N, O] */
#pragma omp parallel for if (p.N * p.O * HWout > 65536) schedule(static)
        for (int64_t r = 0; r < p.N * p.O; r++) {
            float t = 0;
            for (int64_t j = 0; j < HWout; j++) t += GY[r * HWout + j];
            db[r] += t;
        }
    } else if (db) {
#pragma omp parallel for if (p.N * p.O * HWout > 65536) schedule(static)
        for (int64_t o = 0; o < p.O; o++) {
            double s = 0;
            for (int64_t n = 0; n < p.N; n++) {
                const float *r = GY + (n * p.O + o) * HWout;
                float t = 0;
                for (int64_t j = 0; j < HWout; j++) t += r[j];
                s += t;
            }
            db[o] += (float)s;
        }
    }
    if (!dx && !dw) return GL_OK;
    size_t nkl = p.direct ? 1 : (size_t)(col_rows(&p) * col_cols(&p)), nw = (size_t)w->numel;
    size_t ncol = p.dkw ? (size_t)direct_buf_size(&p.q, p.Og) : nkl;
    size_t ndcol = !dx || p.transpose || p.direct ? 1
                   : p.dkf                        ? (size_t)direct_buf_size(&p.qf, p.Cg)
                   : p.flip                       ? (size_t)(p.Og * p.q.kh * p.q.kw * HWin)
                                                  : nkl;
    int64_t taps = p.q.kh * p.q.kw, nfp = direct_pack_size(p.Cg, p.Og, taps);
    size_t nwf = p.dkf ? (size_t)(p.groups * nfp) : nw;
    float *wf = dx && p.flip ? malloc(nwf * sizeof *wf) : NULL;
    if (dx && p.flip && !wf) return gl_error(GL_ENOMEM, "%s: out of memory", op);
    if (wf && p.dkf) { /* output c, input o, tap t of the flipped kernel: w[g Og + o][c][taps - 1 - t] */
        for (int64_t g = 0; g < p.groups; g++)
            direct_pack(p.Cg, p.Og, taps, Wt + g * p.Og * p.Cg * taps + taps - 1, taps, p.Cg * taps, -1,
                        wf + g * nfp);
    } else if (wf) {
        flip_kernel(&p, Wt, wf);
    }
    bool par = by_sample(&p), oom = false;
    /* dw sums over fixed blocks of samples, block 0 into dw itself and the
     * others into partials added in block order: the same additions in the
     * same order whatever the thread count, so dw does not depend on it. */
    int64_t nblocks = p.N < DW_BLOCKS ? p.N : DW_BLOCKS;
    float **parts = calloc((size_t)nblocks, sizeof *parts);
    if (!parts) {
        free(wf);
        return gl_error(GL_ENOMEM, "%s: out of memory", op);
    }
#pragma omp parallel if (par)
    {
        float *col = malloc(ncol * sizeof *col), *dcol = malloc(ndcol * sizeof *dcol);
        if (!col || !dcol) {
#pragma omp atomic write
            oom = true;
        }
#pragma omp for schedule(static)
        for (int64_t b = 0; b < nblocks; b++) {
            float *dwp = dw && b > 0 ? calloc(nw, sizeof *dwp) : dw;
            if (dw && !dwp) {
#pragma omp atomic write
                oom = true;
            }
            if (b > 0) parts[b] = dwp;
            for (int64_t n = b * p.N / nblocks; n < (b + 1) * p.N / nblocks; n++)
                if (!oom)
                    backward_sample(&p, X + n * p.C * HWin, Wt, wf, GY + n * p.O * HWout,
                                    dx ? dx + n * p.C * HWin : NULL, dwp, col, dcol);
        }
        free(col);
        free(dcol);
    }
    for (int64_t b = 1; b < nblocks; b++) {
        if (parts[b] && !oom)
            for (size_t k = 0; k < nw; k++) dw[k] += parts[b][k];
        free(parts[b]);
    }
    free(parts);
    free(wf);
    return oom ? gl_error(GL_ENOMEM, "%s: out of memory for the column buffers", op) : GL_OK;
}
