#include "core/tensor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

int64_t gl_shape_numel(int ndim, const int64_t *shape)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return -1;
        if (shape[i] != 0 && n > INT64_MAX / shape[i]) return -1;
        n *= shape[i];
    }
    return n;
}

char *gl_shape_str(int ndim, const int64_t *shape, char *buf, size_t n)
{
    size_t used = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, i ? ",%lld" : "%lld", (long long)shape[i]);
    if (used < n) snprintf(buf + used, n - used, "]");
    return buf;
}

bool gl_shape_equal(int ndim_a, const int64_t *a, int ndim_b, const int64_t *b)
{
    if (ndim_a != ndim_b) return false;
    for (int i = 0; i < ndim_a; i++)
        if (a[i] != b[i]) return false;
    return true;
}

static gl_tensor *tensor_shell(gl_dtype dt, int ndim, const int64_t *shape, int64_t *numel)
{
    if (ndim < 0 || ndim > GL_MAX_DIMS)
        return gl_error_null(GL_EINVAL, "tensor: %d dims (at most %d are supported)", ndim,
                             GL_MAX_DIMS);
    *numel = gl_shape_numel(ndim, shape);
    if (*numel < 0) {
        char s[128];
        return gl_error_null(GL_EINVAL, "tensor: invalid shape %s", gl_shape_str(ndim, shape, s, sizeof s));
    }
    if ((uint64_t)*numel > SIZE_MAX / gl_dtype_size(dt))
        return gl_error_null(GL_ENOMEM, "tensor: %lld elements overflow the address space",
                             (long long)*numel);
    gl_tensor *t = calloc(1, sizeof *t);
    if (!t) return gl_error_null(GL_ENOMEM, "out of memory");
    t->refs = 1;
    t->dtype = dt;
    t->ndim = ndim;
    if (ndim) memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    t->numel = *numel;
    return t;
}

static gl_tensor *tensor_alloc(gl_dtype dt, int ndim, const int64_t *shape, bool zero)
{
    int64_t numel;
    gl_tensor *t = tensor_shell(dt, ndim, shape, &numel);
    if (!t) return NULL;
    size_t nbytes = (size_t)numel * gl_dtype_size(dt);
    t->storage = zero ? gl_storage_new(nbytes) : gl_storage_new_uninit(nbytes);
    if (!t->storage) {
        free(t);
        return NULL;
    }
    return t;
}

gl_tensor *gl_tensor_new(gl_dtype dt, int ndim, const int64_t *shape) { return tensor_alloc(dt, ndim, shape, true); }
gl_tensor *gl_tensor_empty(gl_dtype dt, int ndim, const int64_t *shape) { return tensor_alloc(dt, ndim, shape, false); }

gl_tensor *gl_tensor_new_like(const gl_tensor *t) { return gl_tensor_new(t->dtype, t->ndim, t->shape); }

gl_tensor *gl_tensor_scalar(float v)
{
    gl_tensor *t = gl_tensor_new(GL_F32, 0, NULL);
    if (t) gl_tensor_f32(t)[0] = v;
    return t;
}

gl_tensor *gl_tensor_from_storage(gl_storage *s, size_t offset, gl_dtype dt, int ndim,
                                  const int64_t *shape)
{
    int64_t numel;
    gl_tensor *t = tensor_shell(dt, ndim, shape, &numel);
    if (!t) return NULL;
    size_t need = (size_t)numel * gl_dtype_size(dt);
    if (offset > s->nbytes || need > s->nbytes - offset) {
        free(t);
        return gl_error_null(GL_EINVAL, "tensor: view of %zu bytes at offset %zu exceeds storage of %zu bytes",
                             need, offset, s->nbytes);
    }
    gl_storage_retain(s);
    t->storage = s;
    t->offset = offset;
    return t;
}

gl_tensor *gl_tensor_alias(const gl_tensor *t, int ndim, const int64_t *shape)
{
    if (gl_shape_numel(ndim, shape) != t->numel) {
        char a[128], b[128];
        return gl_error_null(GL_EINVAL, "view: shape %s is invalid for a tensor of shape %s (%lld elements)",
                             gl_shape_str(ndim, shape, a, sizeof a), gl_tensor_shape_str(t, b, sizeof b),
                             (long long)t->numel);
    }
    return gl_tensor_from_storage(t->storage, t->offset, t->dtype, ndim, shape);
}

gl_tensor *gl_tensor_clone_data(const gl_tensor *t)
{
    gl_tensor *c = gl_tensor_new_like(t);
    if (c && t->numel) memcpy(gl_tensor_data(c), gl_tensor_data(t), gl_tensor_nbytes(t));
    return c;
}

void gl_tensor_retain(gl_tensor *t) { atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed); }

void gl_tensor_release(gl_tensor *t)
{
    if (!t || atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) > 1) return;
    if (t->grad_fn) ((gl_node_header *)t->grad_fn)->destroy(t->grad_fn);
    gl_tensor_release(t->grad);
    gl_storage_release(t->storage);
    free(t);
}

double gl_tensor_get(const gl_tensor *t, int64_t i)
{
    const void *d = gl_tensor_data(t);
    switch (t->dtype) {
    case GL_F32: return ((const float *)d)[i];
    case GL_I32: return ((const int32_t *)d)[i];
    case GL_I64: return (double)((const int64_t *)d)[i];
    case GL_U8: return ((const uint8_t *)d)[i];
    default: return 0;
    }
}

void gl_tensor_set(gl_tensor *t, int64_t i, double v)
{
    void *d = gl_tensor_data(t);
    switch (t->dtype) {
    case GL_F32: ((float *)d)[i] = (float)v; break;
    case GL_I32: ((int32_t *)d)[i] = (int32_t)v; break;
    case GL_I64: ((int64_t *)d)[i] = (int64_t)v; break;
    case GL_U8: ((uint8_t *)d)[i] = (uint8_t)v; break;
    default: break;
    }
}

char *gl_tensor_shape_str(const gl_tensor *t, char *buf, size_t n)
{
    return gl_shape_str(t->ndim, t->shape, buf, n);
}

int gl_tensor_dim_index(const gl_tensor *t, int d)
{
    int nd = t->ndim == 0 ? 1 : t->ndim;
    if (d < 0) d += nd;
    return (d < 0 || d >= nd) ? -1 : d;
}
