/* Rotary position embeddings (HF rotate_half convention, see rope.h).
 * Forward rotates each (i, i + HS/2) pair by +angle; backward rotates the
 * gradient by -angle (a rotation's inverse is its transpose). The cos/sin
 * table of the T positions is computed once per call. */
#include "ops/rope.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>

#include "autograd/tape.h"
#include "core/interrupt.h"

/* theta^(-2i/HS) as torch computes it: the power rounded to f32, then its f32 reciprocal. */
static inline float inv_freq(int64_t i, int64_t HS, float theta)
{
    float e = (float)(2 * i) / (float)HS;
    return 1.0f / (float)pow((double)theta, (double)e);
}

/* cos and sin [n, HS/2] of the angles of positions pos0 .. pos0 + n - 1,
 * rounded like torch's f32 computation in HF's LlamaRotaryEmbedding. */
static void rope_table(float *cs, float *sn, int64_t pos0, int64_t n, int64_t HS, float theta)
{
    int64_t half = HS / 2;
    for (int64_t i = 0; i < half; i++) {
        float inv = inv_freq(i, HS, theta);
        for (int64_t t = 0; t < n; t++) {
            float a = (float)(pos0 + t) * inv;
            cs[t * half + i] = (float)cos((double)a);
            sn[t * half + i] = (float)sin((double)a);
        }
    }
}

/* One head row: out = rotate(x, angle). */
static inline void rotate_row(float *restrict out, const float *restrict x, const float *cs, const float *sn,
                              int64_t half)
{
#pragma omp simd
    for (int64_t i = 0; i < half; i++) {
        float a = x[i], b = x[i + half];
        out[i] = a * cs[i] - b * sn[i];
        out[i + half] = b * cs[i] + a * sn[i];
    }
}

/* Backward of one row: dx += rotate(g, -angle). */
static inline void unrotate_add_row(float *restrict dx, const float *restrict g, const float *cs, const float *sn,
                                    int64_t half)
{
#pragma omp simd
    for (int64_t i = 0; i < half; i++) {
        float a = g[i], b = g[i + half];
        dx[i] += a * cs[i] + b * sn[i];
        dx[i + half] += b * cs[i] - a * sn[i];
    }
}

gl_status gl_rope_inplace(float *x, int64_t n, int64_t H, int64_t HS, int64_t row_stride, int64_t pos0,
                          float theta)
{
    if (HS <= 0 || HS % 2 != 0 || n < 0 || H < 0 || row_stride < H * HS || pos0 < 0 || !(theta > 0.0f))
        return gl_error(GL_EINVAL, "rope: bad sizes (n %lld, H %lld, HS %lld, row_stride %lld, pos0 %lld, theta %g)",
                        (long long)n, (long long)H, (long long)HS, (long long)row_stride, (long long)pos0,
                        (double)theta);
    int64_t half = HS / 2;
    for (int64_t i = 0; i < half; i++) {
        float inv = inv_freq(i, HS, theta);
        for (int64_t t = 0; t < n; t++) {
            float a = (float)(pos0 + t) * inv;
            float c = (float)cos((double)a), s = (float)sin((double)a);
            for (int64_t h = 0; h < H; h++) {
                float *r = x + t * row_stride + h * HS;
                float x0 = r[i], x1 = r[i + half];
                r[i] = x0 * c - x1 * s;
                r[i + half] = x1 * c + x0 * s;
            }
        }
    }
    return GL_OK;
}

/* Rotates every row of src [rows, HS] (row r at position pos0 + r % T) into
 * dst; backward rotates back and ADDS into dst. */
static gl_status rope_apply(float *dst, const float *src, int64_t rows, int64_t T, int64_t HS, int64_t pos0,
                            float theta, bool backward)
{
    int64_t half = HS / 2;
    float *cs = malloc((size_t)(T * half * 2 + 1) * sizeof *cs);
    if (!cs) return gl_error(GL_ENOMEM, "rope: out of memory for a [%lld,%lld] table", (long long)T, (long long)HS);
    float *sn = cs + T * half;
    rope_table(cs, sn, pos0, T, HS, theta);
#pragma omp parallel for if (rows * HS > 32768) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *c = cs + (r % T) * half, *s = sn + (r % T) * half;
        if (backward)
            unrotate_add_row(dst + r * HS, src + r * HS, c, s, half);
        else
            rotate_row(dst + r * HS, src + r * HS, c, s, half);
    }
    free(cs);
    return GL_OK;
}

/* i[0] = offset, f[0] = theta. */
static gl_status rope_backward(gl_node *nd)
{
    float *dx;
    gl_status st = gl_node_grad(nd, 0, &dx);
    if (st != GL_OK || !dx) return st;
    const gl_tensor *o = nd->out;
    int64_t HS = o->shape[o->ndim - 1], T = o->shape[o->ndim - 2];
    return rope_apply(dx, gl_tensor_f32(nd->gout), o->numel / HS, T, HS, nd->i[0], (float)nd->f[0], true);
}

gl_tensor *gl_rope(gl_tensor *x, int64_t offset, float theta)
{
    char s[96];
    if (gl_interrupt_poll("rope")) return NULL;
    if (x->dtype != GL_F32)
        return gl_error_null(GL_EINVAL, "rope: expected an f32 tensor, got %s", gl_dtype_name(x->dtype));
    if (x->ndim < 2)
        return gl_error_null(GL_EINVAL, "rope: expected [..., T, HS], got %s", gl_tensor_shape_str(x, s, sizeof s));
    int64_t HS = x->shape[x->ndim - 1], T = x->shape[x->ndim - 2];
    if (HS <= 0 || HS % 2 != 0)
        return gl_error_null(GL_EINVAL, "rope: head size (last dim) must be even, got shape %s",
                             gl_tensor_shape_str(x, s, sizeof s));
    if (offset < 0) return gl_error_null(GL_EINVAL, "rope: offset must be >= 0, got %lld", (long long)offset);
    if (!(theta > 0.0f)) return gl_error_null(GL_EINVAL, "rope: theta must be > 0, got %g", (double)theta);
    gl_tensor *out = gl_tensor_empty(GL_F32, x->ndim, x->shape);
    if (!out) return NULL;
    gl_node *nd;
    if (x->numel > 0 &&
        rope_apply(gl_tensor_f32(out), gl_tensor_f32(x), x->numel / HS, T, HS, offset, theta, false) != GL_OK)
        goto fail;
    if (gl_autograd_record(&nd, out, "rope", rope_backward, 1, &x) != GL_OK) goto fail;
    if (nd) {
        nd->i[0] = offset;
        nd->f[0] = theta;
    }
    return out;
fail:
    gl_tensor_release(out);
    return NULL;
}
