#include "nn/norm_layers.h"

#include <stdio.h>
#include <stdlib.h>

#include "nn/init.h"
#include "ops/norm2d.h"

typedef enum { BN1D, BN2D, GROUP, INSTANCE, LN2D } norm_kind;

typedef struct {
    norm_kind kind;
    int64_t C, groups;
    float momentum, eps;
    bool affine;
} norm_cfg;

static const norm_cfg *cfg(const gl_module *m) { return m->impl; }

/* The input must have an allowed rank and the layer's channel count in dim 1. */
static bool check_input(const gl_module *m, const gl_tensor *x)
{
    const norm_cfg *c = cfg(m);
    const char *want = c->kind == BN1D ? "[N, C] or [N, C, L]" : c->kind == BN2D || c->kind == INSTANCE
                                                                      ? "[N, C, H, W]"
                                                                      : "[N, C, ...]";
    bool rank_ok = c->kind == BN1D ? x->ndim == 2 || x->ndim == 3
                   : c->kind == BN2D || c->kind == INSTANCE ? x->ndim == 4
                                                            : x->ndim >= 2;
    char s[128];
    if (!rank_ok) {
        gl_error(GL_EINVAL, "%s: expected x %s, got %s", m->cls->name, want, gl_tensor_shape_str(x, s, sizeof s));
        return false;
    }
    if (x->shape[1] != c->C) {
        gl_error(GL_EINVAL, "%s: x %s has %lld channels, the layer %lld", m->cls->name,
                 gl_tensor_shape_str(x, s, sizeof s), (long long)x->shape[1], (long long)c->C);
        return false;
    }
    return true;
}

static gl_tensor *norm_forward(gl_module *m, gl_tensor *x)
{
    const norm_cfg *c = cfg(m);
    if (!check_input(m, x)) return NULL;
    gl_tensor *w = gl_module_param(m, "weight"), *b = gl_module_param(m, "bias");
    switch (c->kind) {
    case BN1D:
    case BN2D: {
        gl_tensor *y = gl_batch_norm(x, gl_module_buffer(m, "running_mean"), gl_module_buffer(m, "running_var"), w, b,
                                     m->training, c->momentum, c->eps);
        gl_tensor *count = gl_module_buffer(m, "num_batches_tracked");
        if (y && m->training) gl_tensor_set(count, 0, gl_tensor_get(count, 0) + 1);
        return y;
    }
    case GROUP: return gl_group_norm(x, c->groups, w, b, c->eps);
    case INSTANCE: return gl_group_norm(x, c->C, w, b, c->eps);
    case LN2D: return gl_layer_norm_2d(x, w, b, c->eps);
    }
    return gl_error_null(GL_EINVAL, "%s: unknown kind", m->cls->name);
}

static void norm_repr(const gl_module *m, char *buf, size_t n)
{
    const norm_cfg *c = cfg(m);
    const char *affine = c->affine ? "true" : "false";
    if (c->kind == BN1D || c->kind == BN2D)
        snprintf(buf, n, "%lld, eps=%g, momentum=%g, affine=%s", (long long)c->C, (double)c->eps,
                 (double)c->momentum, affine);
    else if (c->kind == GROUP)
        snprintf(buf, n, "%lld, %lld, eps=%g, affine=%s", (long long)c->groups, (long long)c->C, (double)c->eps,
                 affine);
    else
        snprintf(buf, n, "%lld, eps=%g, affine=%s", (long long)c->C, (double)c->eps, affine);
}

static const gl_module_class classes[] = {
    [BN1D] = {"BatchNorm1d", norm_forward, norm_repr, NULL},
    [BN2D] = {"BatchNorm2d", norm_forward, norm_repr, NULL},
    [GROUP] = {"GroupNorm", norm_forward, norm_repr, NULL},
    [INSTANCE] = {"InstanceNorm2d", norm_forward, norm_repr, NULL},
    [LN2D] = {"LayerNorm2d", norm_forward, norm_repr, NULL},
};

/* Registers a new tensor of shape [C] (or [] when C < 0) filled with value,
 * as a parameter or buffer. */
static gl_status add_tensor(gl_module *m, const char *name, gl_dtype dt, int64_t C, double value, bool param)
{
    gl_tensor *t = C < 0 ? gl_tensor_new(dt, 0, NULL) : gl_tensor_new(dt, 1, &C);
    if (!t) return gl_error_code();
    gl_status st = value != 0.0 ? gl_init_constant(t, value) : GL_OK;
    if (st == GL_OK) st = param ? gl_module_add_param(m, name, t) : gl_module_add_buffer(m, name, t);
    gl_tensor_release(t); /* the module holds its own reference */
    return st;
}

static gl_module *new_norm(norm_cfg c)
{
    const char *name = classes[c.kind].name;
    if (c.C < 1 || !(c.eps >= 0))
        return gl_error_null(GL_EINVAL, "%s: channels must be >= 1 and eps >= 0 (got channels=%lld, eps=%g)", name,
                             (long long)c.C, (double)c.eps);
    if (c.kind == GROUP && (c.groups < 1 || c.C % c.groups != 0))
        return gl_error_null(GL_EINVAL, "GroupNorm: %lld groups do not divide %lld channels", (long long)c.groups,
                             (long long)c.C);
    norm_cfg *impl = malloc(sizeof *impl);
    if (!impl) return gl_error_null(GL_ENOMEM, "%s: out of memory", name);
    *impl = c;
    gl_module *m = gl_module_new(&classes[c.kind], impl);
    if (!m) return NULL;
    gl_status st = GL_OK;
    if (c.affine) {
        st = add_tensor(m, "weight", GL_F32, c.C, 1.0, true);
        if (st == GL_OK) st = add_tensor(m, "bias", GL_F32, c.C, 0.0, true);
    }
    if (st == GL_OK && (c.kind == BN1D || c.kind == BN2D)) {
        st = add_tensor(m, "running_mean", GL_F32, c.C, 0.0, false);
        if (st == GL_OK) st = add_tensor(m, "running_var", GL_F32, c.C, 1.0, false);
        if (st == GL_OK) st = add_tensor(m, "num_batches_tracked", GL_I64, -1, 0.0, false);
    }
    if (st == GL_OK) return m;
    gl_module_release(m);
    return NULL;
}

gl_module *gl_nn_batch_norm1d_new(int64_t channels, float momentum, float eps, bool affine)
{
    return new_norm((norm_cfg){BN1D, channels, 0, momentum, eps, affine});
}

gl_module *gl_nn_batch_norm2d_new(int64_t channels, float momentum, float eps, bool affine)
{
    return new_norm((norm_cfg){BN2D, channels, 0, momentum, eps, affine});
}

gl_module *gl_nn_group_norm_new(int64_t groups, int64_t channels, float eps, bool affine)
{
    return new_norm((norm_cfg){GROUP, channels, groups, 0.0f, eps, affine});
}

gl_module *gl_nn_instance_norm2d_new(int64_t channels, float eps, bool affine)
{
    return new_norm((norm_cfg){INSTANCE, channels, 0, 0.0f, eps, affine});
}

gl_module *gl_nn_layer_norm2d_new(int64_t channels, float eps, bool affine)
{
    return new_norm((norm_cfg){LN2D, channels, 0, 0.0f, eps, affine});
}
