/* max_pool2d, avg_pool2d and upsample (nearest, bilinear). Every kernel
 * runs over the N C planes in parallel; backward of a plane only touches
 * that plane's gradient, so there are no races and no partial sums. */
#include "ops/pool.h"

#include <math.h>
#include <stdlib.h>

#include "autograd/tape.h"
#include "core/interrupt.h"

/* x must be 4-D f32. */
static bool check_input(const char *op, const gl_tensor *x)
{
    char s[128];
    if (x->dtype != GL_F32) {
        gl_error(GL_EINVAL, "%s: expected an f32 tensor, got %s", op, gl_dtype_name(x->dtype));
        return false;
    }
    if (x->ndim == 4) return true;
    gl_error(GL_EINVAL, "%s: input must be 4-D [N,C,H,W], got %s", op, gl_tensor_shape_str(x, s, sizeof s));
    return false;
}

/* --- pooling ------------------------------------------------------------------------ */

typedef struct {
    int64_t P, H, W, OH, OW, kh, kw, sh, sw, ph, pw; /* P = N C planes */
} pool_plan;

static gl_status make_pool_plan(const char *op, const gl_tensor *x, const gl_pool2d_args *a, pool_plan *p)
{
    char s[128];
    if (!check_input(op, x)) return gl_error_code();
    for (int k = 0; k < 2; k++)
        if (a->kernel[k] < 1 || a->stride[k] < 1 || a->padding[k] < 0 || 2 * a->padding[k] > a->kernel[k])
            return gl_error(GL_EINVAL,
                            "%s: need kernel >= 1, stride >= 1 and 0 <= padding <= kernel / 2 (got kernel %lldx%lld, "
                            "stride %lldx%lld, padding %lldx%lld)",
                            op, (long long)a->kernel[0], (long long)a->kernel[1], (long long)a->stride[0],
                            (long long)a->stride[1], (long long)a->padding[0], (long long)a->padding[1]);
    int64_t H = x->shape[2], W = x->shape[3];
    int64_t PH = H + 2 * a->padding[0], PW = W + 2 * a->padding[1];
    if (a->kernel[0] > PH || a->kernel[1] > PW)
        return gl_error(GL_EINVAL, "%s: kernel %lldx%lld is larger than the padded input %lldx%lld (input %s)", op,
                        (long long)a->kernel[0], (long long)a->kernel[1], (long long)PH, (long long)PW,
                        gl_tensor_shape_str(x, s, sizeof s));
    *p = (pool_plan){x->shape[0] * x->shape[1], H, W, (PH - a->kernel[0]) / a->stride[0] + 1,
                     (PW - a->kernel[1]) / a->stride[1] + 1, a->kernel[0], a->kernel[1], a->stride[0], a->stride[1],
                     a->padding[0], a->padding[1]};
    return GL_OK;
}

static void save_pool_plan(gl_node *nd, const pool_plan *p)
{
    int64_t v[11] = {p->P, p->H, p->W, p->OH, p->OW, p->kh, p->kw, p->sh, p->sw, p->ph, p->pw};
    for (int k = 0; k < 11; k++) nd->i[k] = v[k];
}

static pool_plan load_pool_plan(const gl_node *nd)
{
    const int64_t *v = nd->i;
    return (pool_plan){v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10]};
}

/* extra: int32 index within the plane of each output's maximum (-1: none). */
static gl_status max_pool_backward(gl_node *nd)
{
    pool_plan p = load_pool_plan(nd);
    float *dx;
    gl_status st = gl_node_grad(nd, 0, &dx);
    if (st != GL_OK || !dx) return st;
    const int32_t *idx = nd->extra;
    const float *g = gl_tensor_f32(nd->gout);
    int64_t L = p.OH * p.OW;
#pragma omp parallel for if (p.P * L > 32768) schedule(static)
    for (int64_t c = 0; c < p.P; c++)
        for (int64_t j = 0; j < L; j++)
            if (idx[c * L + j] >= 0) dx[c * p.H * p.W + idx[c * L + j]] += g[c * L + j];
    return GL_OK;
}

gl_tensor *gl_max_pool2d(gl_tensor *x, const gl_pool2d_args *a)
{
    if (gl_interrupt_poll("max_pool2d")) return NULL;
    pool_plan p;
    if (make_pool_plan("max_pool2d", x, a, &p) != GL_OK) return NULL;
    gl_tensor *y = gl_tensor_empty(GL_F32, 4, (int64_t[]){x->shape[0], x->shape[1], p.OH, p.OW});
    if (!y) return NULL;
    int64_t L = p.OH * p.OW;
    int32_t *idx = malloc((size_t)(p.P * L > 0 ? p.P * L : 1) * sizeof *idx);
    if (!idx) {
        gl_tensor_release(y);
        return gl_error_null(GL_ENOMEM, "max_pool2d: out of memory");
    }
    const float *X = gl_tensor_f32(x);
    float *Y = gl_tensor_f32(y);
#pragma omp parallel for if (p.P * L * p.kh * p.kw > 65536) schedule(static)
    for (int64_t c = 0; c < p.P; c++) {
        const float *plane = X + c * p.H * p.W;
        for (int64_t oh = 0; oh < p.OH; oh++)
            for (int64_t ow = 0; ow < p.OW; ow++) {
                float best = -INFINITY;
                int32_t bi = -1;
                for (int64_t i = oh * p.sh - p.ph, ie = i + p.kh; i < ie; i++) {
                    if (i < 0 || i >= p.H) continue;
                    for (int64_t j = ow * p.sw - p.pw, je = j + p.kw; j < je; j++) {
                        if (j < 0 || j >= p.W) continue;
                        float v = plane[i * p.W + j];
                        if (bi < 0 || v > best || isnan(v)) { /* NaN propagates, as in torch */
                            best = v;
                            bi = (int32_t)(i * p.W + j);
                        }
                        if (isnan(v)) goto found;
                    }
                }
            found:
                Y[c * L + oh * p.OW + ow] = best;
                idx[c * L + oh * p.OW + ow] = bi;
            }
    }
    gl_node *nd;
    if (gl_autograd_record(&nd, y, "max_pool2d", max_pool_backward, 1, &x) != GL_OK) {
        free(idx);
        gl_tensor_release(y);
        return NULL;
    }
    if (nd) {
        save_pool_plan(nd, &p);
        nd->extra = idx;
    } else {
        free(idx);
    }
    return y;
}

static gl_status avg_pool_backward(gl_node *nd)
{
    pool_plan p = load_pool_plan(nd);
    float *dx;
    gl_status st = gl_node_grad(nd, 0, &dx);
    if (st != GL_OK || !dx) return st;
    const float *g = gl_tensor_f32(nd->gout);
    float inv = 1.0f / (float)(p.kh * p.kw);
    int64_t L = p.OH * p.OW;
#pragma omp parallel for if (p.P * L * p.kh * p.kw > 65536) schedule(static)
    for (int64_t c = 0; c < p.P; c++) {
        float *plane = dx + c * p.H * p.W;
        for (int64_t oh = 0; oh < p.OH; oh++)
            for (int64_t ow = 0; ow < p.OW; ow++) {
                float v = g[c * L + oh * p.OW + ow] * inv;
                for (int64_t i = oh * p.sh - p.ph, ie = i + p.kh; i < ie; i++) {
                    if (i < 0 || i >= p.H) continue;
                    for (int64_t j = ow * p.sw - p.pw, je = j + p.kw; j < je; j++)
                        if (j >= 0 && j < p.W) plane[i * p.W + j] += v;
                }
            }
    }
    return GL_OK;
}

gl_tensor *gl_avg_pool2d(gl_tensor *x, const gl_pool2d_args *a)
{
    if (gl_interrupt_poll("avg_pool2d")) return NULL;
    pool_plan p;
    if (make_pool_plan("avg_pool2d", x, a, &p) != GL_OK) return NULL;
    gl_tensor *y = gl_tensor_empty(GL_F32, 4, (int64_t[]){x->shape[0], x->shape[1], p.OH, p.OW});
    if (!y) return NULL;
    const float *X = gl_tensor_f32(x);
    float *Y = gl_tensor_f32(y);
    float inv = 1.0f / (float)(p.kh * p.kw);
    int64_t L = p.OH * p.OW;
#pragma omp parallel for if (p.P * L * p.kh * p.kw > 65536) schedule(static)
    for (int64_t c = 0; c < p.P; c++) {
        const float *plane = X + c * p.H * p.W;
        for (int64_t oh = 0; oh < p.OH; oh++)
            for (int64_t ow = 0; ow < p.OW; ow++) {
                float s = 0.0f;
                for (int64_t i = oh * p.sh - p.ph, ie = i + p.kh; i < ie; i++) {
                    if (i < 0 || i >= p.H) continue;
                    for (int64_t j = ow * p.sw - p.pw, je = j + p.kw; j < je; j++)
                        if (j >= 0 && j < p.W) s += plane[i * p.W + j];
                }
                Y[c * L + oh * p.OW + ow] = s * inv;
            }
    }
    gl_node *nd;
    if (gl_autograd_record(&nd, y, "avg_pool2d", avg_pool_backward, 1, &x) != GL_OK) {
        gl_tensor_release(y);
        return NULL;
    }
    if (nd) save_pool_plan(nd, &p);
    return y;
}

/* --- upsample ---------------------------------------------------------------------- */

/* For each output position along one axis: the two source positions and the
 * weight of the second (nearest: both the same, weight 0). torch's
 * area_pixel_compute_source_index and nearest_idx, in float as torch. */
typedef struct {
    int64_t *i0, *i1;
    float *w1;
} axis_map;

static bool axis_map_make(axis_map *m, int64_t in, int64_t out, double scale, bool have_scale,
                          gl_upsample_mode mode, bool align)
{
    m->i0 = malloc((size_t)out * sizeof *m->i0);
    m->i1 = malloc((size_t)out * sizeof *m->i1);
    m->w1 = malloc((size_t)out * sizeof *m->w1);
    if (!m->i0 || !m->i1 || !m->w1) return false;
    float s;
    if (align) s = out > 1 ? (float)(in - 1) / (float)(out - 1) : 0.0f;
    else s = have_scale ? (float)(1.0 / scale) : (float)in / (float)out;
    for (int64_t d = 0; d < out; d++) {
        if (mode == GL_UPSAMPLE_NEAREST) {
            int64_t src = out == in ? d : out == 2 * in ? d >> 1 : (int64_t)floorf((float)d * s);
            m->i0[d] = m->i1[d] = src < in - 1 ? src : in - 1;
            m->w1[d] = 0.0f;
            continue;
        }
        float r = align ? s * (float)d : s * ((float)d + 0.5f) - 0.5f;
        if (r < 0) r = 0;
        int64_t i = (int64_t)r < in - 1 ? (int64_t)r : in - 1;
        float w1 = r - (float)i;
        m->i0[d] = i;
        m->i1[d] = i < in - 1 ? i + 1 : i;
        m->w1[d] = w1 < 0 ? 0 : w1 > 1 ? 1 : w1;
    }
    return true;
}

static void axis_map_free(axis_map *m)
{
    free(m->i0);
    free(m->i1);
    free(m->w1);
}

/* Both axes' maps; freed with the node. */
typedef struct {
    int64_t P, H, W, OH, OW;
    bool nearest; /* copies: no weights, so no 0 * inf */
    axis_map h, w;
} up_plan;

static void up_plan_free(void *p)
{
    up_plan *u = p;
    if (!u) return;
    axis_map_free(&u->h);
    axis_map_free(&u->w);
    free(u);
}

static gl_status upsample_backward(gl_node *nd)
{
    const up_plan *u = nd->extra;
    float *dx;
    gl_status st = gl_node_grad(nd, 0, &dx);
    if (st != GL_OK || !dx) return st;
    const float *g = gl_tensor_f32(nd->gout);
    int64_t L = u->OH * u->OW;
#pragma omp parallel for if (u->P * L > 32768) schedule(static)
    for (int64_t c = 0; c < u->P; c++) {
        float *plane = dx + c * u->H * u->W;
        for (int64_t oh = 0; oh < u->OH; oh++) {
            int64_t h0 = u->h.i0[oh] * u->W, h1 = u->h.i1[oh] * u->W;
            float b1 = u->h.w1[oh], b0 = 1.0f - b1;
            const float *gr = g + c * L + oh * u->OW;
            if (u->nearest) {
                for (int64_t ow = 0; ow < u->OW; ow++) plane[h0 + u->w.i0[ow]] += gr[ow];
                continue;
            }
            for (int64_t ow = 0; ow < u->OW; ow++) {
                int64_t w0 = u->w.i0[ow], w1 = u->w.i1[ow];
                float a1 = u->w.w1[ow], a0 = 1.0f - a1, v = gr[ow];
                plane[h0 + w0] += b0 * a0 * v;
                plane[h0 + w1] += b0 * a1 * v;
                plane[h1 + w0] += b1 * a0 * v;
                plane[h1 + w1] += b1 * a1 * v;
            }
        }
    }
    return GL_OK;
}

gl_tensor *gl_upsample(gl_tensor *x, const gl_upsample_args *a)
{
    char s[128];
    if (gl_interrupt_poll("upsample")) return NULL;
    if (!check_input("upsample", x)) return NULL;
    if (a->mode != GL_UPSAMPLE_NEAREST && a->mode != GL_UPSAMPLE_BILINEAR)
        return gl_error_null(GL_EINVAL, "upsample: unknown mode %d", (int)a->mode);
    if (a->align_corners && a->mode == GL_UPSAMPLE_NEAREST)
        return gl_error_null(GL_EINVAL, "upsample: align_corners applies to mode bilinear only, not nearest");
    int64_t H = x->shape[2], W = x->shape[3], OH, OW;
    bool have_scale = a->size[0] <= 0;
    if (!have_scale) {
        OH = a->size[0], OW = a->size[1];
    } else {
        if (!(a->scale[0] > 0 && a->scale[1] > 0))
            return gl_error_null(GL_EINVAL, "upsample: scale must be > 0 (got %gx%g)", a->scale[0], a->scale[1]);
        OH = (int64_t)floor((double)H * a->scale[0]);
        OW = (int64_t)floor((double)W * a->scale[1]);
    }
    if (OH < 1 || OW < 1 || H < 1 || W < 1)
        return gl_error_null(GL_EINVAL, "upsample: input %s gives an empty output %lldx%lld",
                             gl_tensor_shape_str(x, s, sizeof s), (long long)OH, (long long)OW);
    up_plan *u = calloc(1, sizeof *u);
    if (!u) return gl_error_null(GL_ENOMEM, "upsample: out of memory");
    *u = (up_plan){.P = x->shape[0] * x->shape[1], .H = H, .W = W, .OH = OH, .OW = OW,
                   .nearest = a->mode == GL_UPSAMPLE_NEAREST};
    if (!axis_map_make(&u->h, H, OH, a->scale[0], have_scale, a->mode, a->align_corners) ||
        !axis_map_make(&u->w, W, OW, a->scale[1], have_scale, a->mode, a->align_corners)) {
        up_plan_free(u);
        return gl_error_null(GL_ENOMEM, "upsample: out of memory");
    }
    gl_tensor *y = gl_tensor_empty(GL_F32, 4, (int64_t[]){x->shape[0], x->shape[1], OH, OW});
    if (!y) {
        up_plan_free(u);
        return NULL;
    }
    const float *X = gl_tensor_f32(x);
    float *Y = gl_tensor_f32(y);
    int64_t L = OH * OW;
#pragma omp parallel for if (u->P * L > 32768) schedule(static)
    for (int64_t c = 0; c < u->P; c++) {
        const float *plane = X + c * H * W;
        for (int64_t oh = 0; oh < OH; oh++) {
            const float *r0 = plane + u->h.i0[oh] * W, *r1 = plane + u->h.i1[oh] * W;
            float b1 = u->h.w1[oh], b0 = 1.0f - b1;
            float *yr = Y + c * L + oh * OW;
            if (u->nearest) {
                for (int64_t ow = 0; ow < OW; ow++) yr[ow] = r0[u->w.i0[ow]];
                continue;
            }
            for (int64_t ow = 0; ow < OW; ow++) {
                int64_t w0 = u->w.i0[ow], w1 = u->w.i1[ow];
                float a1 = u->w.w1[ow], a0 = 1.0f - a1;
                yr[ow] = b0 * (a0 * r0[w0] + a1 * r0[w1]) + b1 * (a0 * r1[w0] + a1 * r1[w1]);
            }
        }
    }
    gl_node *nd;
    if (gl_autograd_record(&nd, y, "upsample", upsample_backward, 1, &x) != GL_OK) {
        up_plan_free(u);
        gl_tensor_release(y);
        return NULL;
    }
    if (nd) {
        nd->extra = u;
        nd->extra_free = up_plan_free;
    } else {
        up_plan_free(u);
    }
    return y;
}
