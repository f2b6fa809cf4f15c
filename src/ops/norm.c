/* Normalizations over the last dim, fused as in llm.c's layernorm_forward /
 * layernorm_backward. x is seen as [R, C]: R rows of C channels.
 *   layer_norm: n = (x - mean) * rstd, rstd = 1/sqrt(var + eps), out = n * w + b
 *     dx = rstd * (dn - mean(dn) - n * mean(dn * n)), dn = dout * w
 *   rms_norm:   n = x * rstd, rstd = 1/sqrt(mean(x^2) + eps), out = n * w
 *     dx = rstd * (dn - n * mean(dn * n))
 *   dw += sum over rows of dout * n, db += sum over rows of dout.
 * Forward saves mean and rstd per row. The weight and bias gradients are
 * summed per fixed block of rows, then the blocks in order, so they do not
 * depend on the thread count. */
#include <math.h>
#include <stdlib.h>

#include "autograd/tape.h"
#include "core/interrupt.h"
#include "ops/nnops.h"
#include "ops/simd.h"

/* The row loops are built for AVX2 and SSE2 (ops/simd.h); the clones differ
 * only in the order of the row sums (vectors of 8 or 4 partial sums). */
typedef enum { NORM_LAYER, NORM_RMS } norm_kind;
static const char *const norm_names[] = {"layer_norm", "rms_norm"};

/* out [R,C], mean [R] (layer only), rstd [R] (both may be NULL); x [R,C]; w, b [C] or NULL.
 * `omp simd` lets the compiler vectorize the row loops (reductions included)
 * at -O2 without fast-math; the order of the sums is fixed at compile time. */
GL_SIMD_CLONES static void norm_forward(norm_kind kind, float *out, float *mean, float *rstd, const float *x,
                                     const float *w, const float *b, int64_t R, int64_t C, float eps)
{
#pragma omp parallel for if (R * C > 32768) schedule(static)
    for (int64_t r = 0; r < R; r++) {
        const float *xr = x + r * C;
        float *o = out + r * C;
        float m = 0.0f, v = 0.0f;
        if (kind == NORM_LAYER) {
#pragma omp simd reduction(+ : m)
            for (int64_t i = 0; i < C; i++) m += xr[i];
            m /= (float)C;
        }
#pragma omp simd reduction(+ : v)
        for (int64_t i = 0; i < C; i++) v += (xr[i] - m) * (xr[i] - m);
        float s = 1.0f / sqrtf(v / (float)C + eps);
#pragma omp simd
        for (int64_t i = 0; i < C; i++) o[i] = (xr[i] - m) * s;
        if (w) {
#pragma omp simd
            for (int64_t i = 0; i < C; i++) o[i] *= w[i];
        }
        if (b) {
#pragma omp simd
            for (int64_t i = 0; i < C; i++) o[i] += b[i];
        }
        if (mean) mean[r] = m;
        if (rstd) rstd[r] = s;
    }
}

/* dx [R,C] (may be NULL; written when fresh, else added into); part [nblk, 2, C] block sums of dout*n and dout
 * (NULL when neither dw nor db is wanted); dout, x [R,C]; mean, rstd [R]; w [C] (ones when absent). */
GL_SIMD_CLONES static void norm_backward_rows(norm_kind kind, float *dx, bool fresh, float *part, const float *dout,
                                           const float *x, const float *mean, const float *rstd, const float *w,
                                           int64_t R, int64_t C, int64_t rows_per_blk, int64_t nblk)
{
#pragma omp parallel for if (R * C > 32768) schedule(static)
    for (int64_t k = 0; k < nblk; k++) {
        float *pw = part ? part + k * 2 * C : NULL, *pb = pw ? pw + C : NULL;
        int64_t r1 = (k + 1) * rows_per_blk < R ? (k + 1) * rows_per_blk : R;
        for (int64_t r = k * rows_per_blk; r < r1; r++) {
            const float *xr = x + r * C, *g = dout + r * C;
            float m = kind == NORM_LAYER ? mean[r] : 0.0f, s = rstd[r];
            if (pw) {
#pragma omp simd
                for (int64_t i = 0; i < C; i++) {
                    pw[i] += g[i] * (xr[i] - m) * s;
                    pb[i] += g[i];
                }
            }
            if (!dx) continue;
            float dn_mean = 0.0f, dnn_mean = 0.0f;
#pragma omp simd reduction(+ : dn_mean, dnn_mean)
            for (int64_t i = 0; i < C; i++) {
                dn_mean += g[i] * w[i];
                dnn_mean += g[i] * w[i] * (xr[i] - m) * s;
            }
            dn_mean = kind == NORM_LAYER ? dn_mean / (float)C : 0.0f;
            dnn_mean /= (float)C;
            float *d = dx + r * C;
            if (fresh) { /* a new buffer: write */
#pragma omp simd
                for (int64_t i = 0; i < C; i++) d[i] = s * (g[i] * w[i] - dn_mean - (xr[i] - m) * s * dnn_mean);
            } else {
#pragma omp simd
                for (int64_t i = 0; i < C; i++) d[i] += s * (g[i] * w[i] - dn_mean - (xr[i] - m) * s * dnn_mean);
            }
        }
    }
}

/* Saved: x. extra: mean [R] then rstd [R]. i[0] = kind. */
static gl_status norm_backward(gl_node *nd)
{
    norm_kind kind = (norm_kind)nd->i[0];
    gl_tensor *x = nd->saved[0], *w = nd->inputs[1];
    int64_t C = x->shape[x->ndim - 1], R = C ? x->numel / C : 0;
    float *dx, *dw, *db;
    bool fresh;
    gl_status st;
    if ((st = gl_node_grad_init(nd, 0, &dx, &fresh)) != GL_OK || (st = gl_node_grad(nd, 1, &dw)) != GL_OK ||
        (st = gl_node_grad(nd, 2, &db)) != GL_OK)
        return st;
    /* at most 128 blocks of at least 16 rows: fixed by R alone */
    int64_t rows_per_blk = (R + 127) / 128 > 16 ? (R + 127) / 128 : 16;
    int64_t nblk = (R + rows_per_blk - 1) / rows_per_blk;
    float *part = (dw || db) ? calloc((size_t)(nblk * 2 * C + 1), sizeof *part) : NULL;
    float *ones = w ? NULL : malloc((size_t)C * sizeof *ones + 1);
    if (((dw || db) && !part) || (!w && !ones)) {
        free(part);
        free(ones);
        return gl_error(GL_ENOMEM, "%s backward: out of memory", nd->op);
    }
    for (int64_t i = 0; ones && i < C; i++) ones[i] = 1.0f;
    const float *mean = nd->extra, *rstd = mean + R;
    norm_backward_rows(kind, dx, fresh, part, gl_tensor_f32(nd->gout), gl_tensor_f32(x), mean, rstd,
                       w ? gl_tensor_f32(nd->saved[1]) : ones, R, C, rows_per_blk, nblk);
    free(ones);
    if (part) {
#pragma omp parallel for if (nblk * C > 32768) schedule(static)
        for (int64_t i = 0; i < C; i++) {
            float sw = 0.0f, sb = 0.0f;
            for (int64_t k = 0; k < nblk; k++) {
                sw += part[k * 2 * C + i];
                sb += part[k * 2 * C + C + i];
            }
            if (dw) dw[i] += sw;
            if (db) db[i] += sb;
        }
    }
    free(part);
    return GL_OK;
}

static gl_tensor *norm(norm_kind kind, gl_tensor *x, gl_tensor *w, gl_tensor *b, float eps)
{
    const char *name = norm_names[kind];
    char s1[128], s2[128];
    if (gl_interrupt_poll(name)) return NULL;
    if (x->dtype != GL_F32 || (w && w->dtype != GL_F32) || (b && b->dtype != GL_F32))
        return gl_error_null(GL_EINVAL, "%s: expected f32 tensors (convert with :float())", name);
    if (x->ndim == 0) return gl_error_null(GL_EINVAL, "%s: x must have at least 1 dim, got shape []", name);
    int64_t C = x->shape[x->ndim - 1], R = C ? x->numel / C : 0;
    gl_tensor *params[2] = {w, b};
    const char *pnames[2] = {"weight", "bias"};
    for (int k = 0; k < 2; k++)
        if (params[k] && (params[k]->ndim != 1 || params[k]->shape[0] != C))
            return gl_error_null(GL_EINVAL, "%s: %s of shape %s does not match the last dim of x %s (expected [%lld])",
                                 name, pnames[k], gl_tensor_shape_str(params[k], s1, sizeof s1),
                                 gl_tensor_shape_str(x, s2, sizeof s2), (long long)C);
    if (!(eps >= 0.0f)) return gl_error_null(GL_EINVAL, "%s: eps must be >= 0, got %g", name, (double)eps);
    gl_tensor *out = gl_tensor_empty(GL_F32, x->ndim, x->shape);
    if (!out) return NULL;
    gl_tensor *ins[3] = {x, w, b};
    gl_node *nd;
    float *stats = NULL;
    if (gl_autograd_record(&nd, out, name, norm_backward, kind == NORM_LAYER ? 3 : 2, ins) != GL_OK) goto fail;
    if (nd) {
        nd->i[0] = kind;
        if (gl_node_save(nd, 0, x) != GL_OK || (w && gl_node_save(nd, 1, w) != GL_OK)) goto fail;
        if (!(nd->extra = stats = malloc((size_t)(2 * R + 1) * sizeof *stats))) {
            gl_error(GL_ENOMEM, "%s: out of memory", name);
            goto fail;
        }
    }
    norm_forward(kind, gl_tensor_f32(out), stats, stats ? stats + R : NULL, gl_tensor_f32(x),
                 w ? gl_tensor_f32(w) : NULL, b ? gl_tensor_f32(b) : NULL, R, C, eps);
    return out;
fail:
    gl_tensor_release(out);
    return NULL;
}

gl_tensor *gl_layer_norm(gl_tensor *x, gl_tensor *w, gl_tensor *b, float eps)
{
    return norm(NORM_LAYER, x, w, b, eps);
}

gl_tensor *gl_rms_norm(gl_tensor *x, gl_tensor *w, float eps) { return norm(NORM_RMS, x, w, NULL, eps); }
