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
 * samples (its own column buffer, single-threaded GEMMs, its own dw partial
 * added in thread order afterwards); otherwise samples run in turn and the
 * GEMMs use the threads. A 1x1 stride-1 unpadded conv2d needs no im2col:
 * x[n,g] is its own column matrix. */
#include "ops/conv.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/tape.h"
#include "core/interrupt.h"
#include "core/threads.h"
#include "ops/matmul.h"

gl_conv2d_args gl_conv2d_args_default(void)
{
    return (gl_conv2d_args){.stride = {1, 1}, .dilation = {1, 1}, .groups = 1};
}

/* An image of C channels [C, H, W] against a column matrix [C kh kw, OH OW]. */
typedef struct {
    int64_t C, H, W, kh, kw, OH, OW, sh, sw, ph, pw, dh, dw;
} geom;

static void im2col(const geom *q, const float *restrict img, float *restrict col)
{
    int64_t L = q->OH * q->OW;
    for (int64_t c = 0; c < q->C; c++)
        for (int64_t ki = 0; ki < q->kh; ki++)
            for (int64_t kj = 0; kj < q->kw; kj++) {
                float *row = col + ((c * q->kh + ki) * q->kw + kj) * L;
                const float *plane = img + c * q->H * q->W;
                for (int64_t oh = 0; oh < q->OH; oh++) {
                    int64_t ih = oh * q->sh - q->ph + ki * q->dh;
                    float *r = row + oh * q->OW;
                    if (ih < 0 || ih >= q->H) {
                        memset(r, 0, (size_t)q->OW * sizeof *r);
                        continue;
                    }
                    const float *src = plane + ih * q->W;
                    int64_t iw0 = kj * q->dw - q->pw;
                    if (q->sw == 1 && iw0 >= 0 && iw0 + q->OW <= q->W) {
                        memcpy(r, src + iw0, (size_t)q->OW * sizeof *r);
                        continue;
                    }
                    for (int64_t ow = 0; ow < q->OW; ow++) {
                        int64_t iw = iw0 + ow * q->sw;
                        r[ow] = (iw >= 0 && iw < q->W) ? src[iw] : 0.0f;
                    }
                }
            }
}

/* img += the columns folded back onto their pixels (im2col's adjoint). */
static void col2im(const geom *q, const float *restrict col, float *restrict img)
{
    int64_t L = q->OH * q->OW;
    for (int64_t c = 0; c < q->C; c++)
        for (int64_t ki = 0; ki < q->kh; ki++)
            for (int64_t kj = 0; kj < q->kw; kj++) {
                const float *row = col + ((c * q->kh + ki) * q->kw + kj) * L;
                float *plane = img + c * q->H * q->W;
                for (int64_t oh = 0; oh < q->OH; oh++) {
                    int64_t ih = oh * q->sh - q->ph + ki * q->dh;
                    if (ih < 0 || ih >= q->H) continue;
                    const float *r = row + oh * q->OW;
                    float *dst = plane + ih * q->W;
                    int64_t iw0 = kj * q->dw - q->pw;
                    for (int64_t ow = 0; ow < q->OW; ow++) {
                        int64_t iw = iw0 + ow * q->sw;
                        if (iw >= 0 && iw < q->W) dst[iw] += r[ow];
                    }
                }
            }
}

/* Everything one call needs, forward or backward. For conv2d the image of
 * the columns is x (C = Cg channels); for conv_transpose2d it is y / gy. */
typedef struct {
    bool transpose;
    int64_t N, C, H, W, O, OH, OW, groups, Cg, Og;
    geom q;   /* one group's image against its columns */
    bool direct; /* conv2d 1x1, stride 1, no padding: the image is its own column matrix */
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
    if (b && (b->ndim != 1 || b->shape[0] != O))
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
    p->direct = !transpose && kh == 1 && kw == 1 && p->q.sh == 1 && p->q.sw == 1 && p->q.ph == 0 && p->q.pw == 0;
    return GL_OK;
}

/* Rows and columns of one group's column matrix. */
static int64_t col_rows(const plan *p) { return p->q.C * p->q.kh * p->q.kw; }
static int64_t col_cols(const plan *p) { return p->q.OH * p->q.OW; }

/* Whether whole samples go to threads (else the GEMMs take the threads). */
static bool by_sample(const plan *p) { return p->N > 1 && p->N >= gl_threads_get(); }

/* --- forward --------------------------------------------------------------------- */

/* y[n] for one sample; col is this thread's [K, L] buffer. */
static void forward_sample(const plan *p, const float *x, const float *w, float *y, float *col, bool has_bias)
{
    int64_t K = col_rows(p), L = col_cols(p), HWin = p->H * p->W, HWout = p->OH * p->OW;
    for (int64_t g = 0; g < p->groups; g++) {
        if (!p->transpose) {
            const float *xg = x + g * p->Cg * HWin, *cols = xg;
            if (!p->direct) {
                im2col(&p->q, xg, col);
                cols = col;
            }
            gl_sgemm(false, false, p->Og, L, K, 1.0f, w + g * p->Og * K, K, cols, L, has_bias ? 1.0f : 0.0f,
                     y + g * p->Og * HWout, L);
        } else { /* col [Og kh kw, H W] = w[g]^T @ x[n,g], folded onto y[n,g] */
            gl_sgemm(true, false, K, L, p->Cg, 1.0f, w + g * p->Cg * K, K, x + g * p->Cg * HWin, HWin, 0.0f, col, L);
            col2im(&p->q, col, y + g * p->Og * HWout);
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
    int64_t HWout = p.OH * p.OW;
    gl_tensor *y = gl_tensor_empty(GL_F32, 4, (int64_t[]){p.N, p.O, p.OH, p.OW});
    if (!y) return NULL;
    const float *X = gl_tensor_f32(x), *Wt = gl_tensor_f32(w), *B = b ? gl_tensor_f32(b) : NULL;
    float *Y = gl_tensor_f32(y);
    /* Start from the bias (or zero where col2im adds), then add the products. */
    if (B || transpose) {
#pragma omp parallel for if (p.N * p.O * HWout > 65536) schedule(static)
        for (int64_t r = 0; r < p.N * p.O; r++) {
            float v = B ? B[r % p.O] : 0.0f;
            for (int64_t j = 0; j < HWout; j++) Y[r * HWout + j] = v;
        }
    }
    size_t ncol = p.direct ? 1 : (size_t)(col_rows(&p) * col_cols(&p));
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
            if (col) forward_sample(&p, X + n * p.C * p.H * p.W, Wt, Y + n * p.O * HWout, col, B != NULL);
        free(col);
    }
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
        nd->i[8] = a->output_padding[1], nd->i[9] = a->groups;
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

/* Adds one sample's dx (when dx) and dw (into dwp, when dwp). col and dcol
 * are this thread's [K, L] buffers. */
static void backward_sample(const plan *p, const float *x, const float *w, const float *gy, float *dx, float *dwp,
                            float *col, float *dcol)
{
    int64_t K = col_rows(p), L = col_cols(p), HWin = p->H * p->W, HWout = p->OH * p->OW;
    for (int64_t g = 0; g < p->groups; g++) {
        const float *xg = x + g * p->Cg * HWin, *gyg = gy + g * p->Og * HWout;
        if (!p->transpose) {
            const float *wg = w + g * p->Og * K;
            if (dwp) {
                const float *cols = xg;
                if (!p->direct) {
                    im2col(&p->q, xg, col);
                    cols = col;
                }
                gl_sgemm(false, true, p->Og, K, L, 1.0f, gyg, L, cols, L, 1.0f, dwp + g * p->Og * K, K);
            }
            if (dx && p->direct) {
                gl_sgemm(true, false, K, L, p->Og, 1.0f, wg, K, gyg, L, 1.0f, dx + g * p->Cg * HWin, L);
            } else if (dx) {
                gl_sgemm(true, false, K, L, p->Og, 1.0f, wg, K, gyg, L, 0.0f, dcol, L);
                col2im(&p->q, dcol, dx + g * p->Cg * HWin);
            }
        } else {
            const float *wg = w + g * p->Cg * K;
            im2col(&p->q, gyg, col); /* [Og kh kw, H W] */
            if (dx) gl_sgemm(false, false, p->Cg, L, K, 1.0f, wg, K, col, L, 1.0f, dx + g * p->Cg * HWin, L);
            if (dwp) gl_sgemm(false, true, p->Cg, K, L, 1.0f, xg, HWin, col, L, 1.0f, dwp + g * p->Cg * K, K);
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
    if (db) {
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
    size_t ncol = p.direct ? 1 : (size_t)(col_rows(&p) * col_cols(&p)), nw = (size_t)w->numel;
    bool par = by_sample(&p), oom = false;
    int nthreads = par ? gl_threads_get() : 1;
    /* dw partials of threads 1.. (thread 0 adds straight into dw) */
    float **parts = calloc((size_t)nthreads, sizeof *parts);
    if (!parts) return gl_error(GL_ENOMEM, "%s: out of memory", op);
#pragma omp parallel if (par) num_threads(nthreads)
    {
        int t = omp_get_thread_num();
        float *col = malloc(ncol * sizeof *col), *dcol = dx && !p.transpose ? malloc(ncol * sizeof *dcol) : NULL;
        float *dwp = dw && t > 0 ? calloc(nw, sizeof *dwp) : dw;
        if (!col || (dx && !p.transpose && !dcol) || (dw && !dwp)) {
#pragma omp atomic write
            oom = true;
        }
        if (t > 0) parts[t] = dwp;
#pragma omp barrier
#pragma omp for schedule(static)
        for (int64_t n = 0; n < p.N; n++)
            if (!oom)
                backward_sample(&p, X + n * p.C * HWin, Wt, GY + n * p.O * HWout, dx ? dx + n * p.C * HWin : NULL,
                                dwp, col, dcol);
        free(col);
        free(dcol);
    }
    for (int t = 1; t < nthreads; t++) {
        if (parts[t] && !oom)
            for (size_t k = 0; k < nw; k++) dw[k] += parts[t][k];
        free(parts[t]);
    }
    free(parts);
    return oom ? gl_error(GL_ENOMEM, "%s: out of memory for the column buffers", op) : GL_OK;
}
