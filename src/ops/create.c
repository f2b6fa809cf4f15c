#include "ops/create.h"

#include <math.h>
#include <string.h>

#include "autograd/tape.h"
#include "core/error.h"
#include "core/rng.h"

gl_tensor *gl_full(gl_dtype dt, int ndim, const int64_t *shape, double value)
{
    gl_tensor *t = gl_tensor_new(dt, ndim, shape);
    if (t && value != 0.0) gl_fill_(t, value);
    return t;
}

gl_tensor *gl_arange(gl_dtype dt, double start, double stop, double step)
{
    if (step == 0.0 || !isfinite(start) || !isfinite(stop) || !isfinite(step))
        return gl_error_null(GL_EINVAL, "arange: step must be nonzero and bounds finite (start=%g, stop=%g, step=%g)",
                             start, stop, step);
    double count = ceil((stop - start) / step);
    int64_t n = count > 0 ? (int64_t)count : 0;
    gl_tensor *t = gl_tensor_new(dt, 1, &n);
    if (!t) return NULL;
    for (int64_t i = 0; i < n; i++) gl_tensor_set(t, i, start + (double)i * step);
    return t;
}

gl_tensor *gl_linspace(double start, double stop, int64_t n)
{
    if (n < 0) return gl_error_null(GL_EINVAL, "linspace: number of steps must be >= 0 (got %lld)", (long long)n);
    gl_tensor *t = gl_tensor_new(GL_F32, 1, &n);
    if (!t) return NULL;
    float *p = gl_tensor_f32(t);
    double step = n > 1 ? (stop - start) / (double)(n - 1) : 0.0;
    for (int64_t i = 0; i < n; i++) p[i] = (float)(start + (double)i * step);
    if (n > 1) p[n - 1] = (float)stop;
    return t;
}

gl_tensor *gl_rand(int ndim, const int64_t *shape)
{
    gl_tensor *t = gl_tensor_new(GL_F32, ndim, shape);
    if (!t) return NULL;
    float *p = gl_tensor_f32(t);
    for (int64_t i = 0; i < t->numel; i++) p[i] = (float)gl_rng_uniform();
    return t;
}

gl_tensor *gl_randn(int ndim, const int64_t *shape)
{
    gl_tensor *t = gl_tensor_new(GL_F32, ndim, shape);
    if (!t) return NULL;
    float *p = gl_tensor_f32(t);
    for (int64_t i = 0; i < t->numel; i++) p[i] = (float)gl_rng_normal();
    return t;
}

gl_tensor *gl_randint(int64_t low, int64_t high, int ndim, const int64_t *shape)
{
    if (high <= low)
        return gl_error_null(GL_EINVAL, "randint: empty range [%lld, %lld)", (long long)low, (long long)high);
    gl_tensor *t = gl_tensor_new(GL_I64, ndim, shape);
    if (!t) return NULL;
    int64_t *p = gl_tensor_data(t);
    for (int64_t i = 0; i < t->numel; i++) p[i] = low + (int64_t)gl_rng_below((uint64_t)(high - low));
    return t;
}

gl_tensor *gl_eye(int64_t n)
{
    int64_t shape[2] = {n, n};
    gl_tensor *t = gl_tensor_new(GL_F32, 2, shape);
    if (!t) return NULL;
    float *p = gl_tensor_f32(t);
    for (int64_t i = 0; i < n; i++) p[i * n + i] = 1.0f;
    return t;
}

static gl_status to_dtype_backward(gl_node *nd)
{
    float *dx;
    gl_status st = gl_node_grad(nd, 0, &dx);
    if (st != GL_OK || !dx) return st;
    const float *g = gl_tensor_f32(nd->gout);
    for (int64_t i = 0; i < nd->gout->numel; i++) dx[i] += g[i];
    return GL_OK;
}

gl_tensor *gl_to_dtype(gl_tensor *x, gl_dtype dt)
{
    gl_tensor *t = gl_tensor_new(dt, x->ndim, x->shape);
    if (!t) return NULL;
    gl_copy_(t, x);
    if (dt == GL_F32 && x->dtype == GL_F32) {
        gl_node *nd;
        if (gl_autograd_record(&nd, t, "to", to_dtype_backward, 1, &x) != GL_OK) {
            gl_tensor_release(t);
            return NULL;
        }
    }
    return t;
}

gl_status gl_copy_(gl_tensor *dst, const gl_tensor *src)
{
    if (dst->numel != src->numel) {
        char a[128], b[128];
        return gl_error(GL_EINVAL, "copy: source %s has %lld elements, destination %s has %lld",
                        gl_tensor_shape_str(src, a, sizeof a), (long long)src->numel,
                        gl_tensor_shape_str(dst, b, sizeof b), (long long)dst->numel);
    }
    if (dst->storage->readonly) return gl_error(GL_EINVAL, "copy: destination is read-only");
    if (dst->dtype == src->dtype) {
        if (src->numel) memmove(gl_tensor_data(dst), gl_tensor_data(src), gl_tensor_nbytes(src));
        return GL_OK;
    }
    if (dst->dtype == GL_F32) {
        float *d = gl_tensor_f32(dst);
        for (int64_t i = 0; i < src->numel; i++) d[i] = (float)gl_tensor_get(src, i);
    } else {
        for (int64_t i = 0; i < src->numel; i++) gl_tensor_set(dst, i, gl_tensor_get(src, i));
    }
    return GL_OK;
}

gl_status gl_fill_(gl_tensor *dst, double value)
{
    if (dst->storage->readonly) return gl_error(GL_EINVAL, "fill: destination is read-only");
    if (dst->dtype == GL_F32) {
        float *d = gl_tensor_f32(dst), v = (float)value;
        for (int64_t i = 0; i < dst->numel; i++) d[i] = v;
    } else {
        for (int64_t i = 0; i < dst->numel; i++) gl_tensor_set(dst, i, value);
    }
    return GL_OK;
}
