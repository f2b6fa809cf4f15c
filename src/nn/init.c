#include "nn/init.h"

#include <math.h>
#include <string.h>

#include "core/rng.h"

static gl_status writable(const gl_tensor *t, const char *op)
{
    if (t->dtype != GL_F32) return gl_error(GL_EINVAL, "%s: tensor must be f32 (got %s)", op, gl_dtype_name(t->dtype));
    if (t->storage->readonly) return gl_error(GL_EINVAL, "%s: tensor is read-only", op);
    return GL_OK;
}

static gl_status uniform(gl_tensor *t, double a, double b, const char *op)
{
    gl_status st = writable(t, op);
    if (st != GL_OK) return st;
    float *d = gl_tensor_f32(t);
    for (int64_t i = 0; i < t->numel; i++) d[i] = (float)(a + (b - a) * gl_rng_uniform());
    return GL_OK;
}

static gl_status normal(gl_tensor *t, double mean, double std, const char *op)
{
    gl_status st = writable(t, op);
    if (st != GL_OK) return st;
    if (!(std >= 0)) return gl_error(GL_EINVAL, "%s: std must be >= 0 (got %g)", op, std);
    float *d = gl_tensor_f32(t);
    for (int64_t i = 0; i < t->numel; i++) d[i] = (float)(mean + std * gl_rng_normal());
    return GL_OK;
}

gl_status gl_init_uniform(gl_tensor *t, double a, double b)
{
    if (!(a <= b)) return gl_error(GL_EINVAL, "uniform_: a must be <= b (got %g, %g)", a, b);
    return uniform(t, a, b, "uniform_");
}

gl_status gl_init_normal(gl_tensor *t, double mean, double std) { return normal(t, mean, std, "normal_"); }

gl_status gl_init_constant(gl_tensor *t, double value)
{
    gl_status st = writable(t, "constant_");
    if (st != GL_OK) return st;
    float *d = gl_tensor_f32(t), v = (float)value;
    for (int64_t i = 0; i < t->numel; i++) d[i] = v;
    return GL_OK;
}

gl_status gl_init_zeros(gl_tensor *t) { return gl_init_constant(t, 0.0); }
gl_status gl_init_ones(gl_tensor *t) { return gl_init_constant(t, 1.0); }

gl_status gl_init_fans(const gl_tensor *t, int64_t *fan_in, int64_t *fan_out)
{
    if (t->ndim < 2) {
        char s[128];
        return gl_error(GL_EINVAL, "init: fan in and fan out need a tensor of 2 or more dims (got %s)",
                        gl_tensor_shape_str(t, s, sizeof s));
    }
    int64_t receptive = 1;
    for (int d = 2; d < t->ndim; d++) receptive *= t->shape[d];
    *fan_in = t->shape[1] * receptive;
    *fan_out = t->shape[0] * receptive;
    return GL_OK;
}

gl_status gl_init_gain(const char *nl, double param, double *gain)
{
    static const char *const unit[] = {"linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
                                       "conv_transpose2d", "conv_transpose3d", "sigmoid", NULL};
    for (const char *const *u = unit; *u; u++)
        if (strcmp(nl, *u) == 0) return *gain = 1.0, GL_OK;
    if (strcmp(nl, "tanh") == 0) return *gain = 5.0 / 3.0, GL_OK;
    if (strcmp(nl, "relu") == 0) return *gain = sqrt(2.0), GL_OK;
    if (strcmp(nl, "selu") == 0) return *gain = 3.0 / 4.0, GL_OK;
    if (strcmp(nl, "leaky_relu") == 0) {
        double slope = param < 0 ? 0.01 : param;
        return *gain = sqrt(2.0 / (1.0 + slope * slope)), GL_OK;
    }
    return gl_error(GL_EINVAL,
                    "calculate_gain: unknown nonlinearity '%s' (use linear, conv1d..3d, sigmoid, tanh, relu, "
                    "leaky_relu or selu)", nl);
}

static gl_status xavier_std(const gl_tensor *t, double gain, double *std)
{
    int64_t fan_in, fan_out;
    gl_status st = gl_init_fans(t, &fan_in, &fan_out);
    if (st != GL_OK) return st;
    if (fan_in + fan_out == 0) return gl_error(GL_EINVAL, "xavier: tensor has no elements");
    *std = gain * sqrt(2.0 / (double)(fan_in + fan_out));
    return GL_OK;
}

gl_status gl_init_xavier_uniform(gl_tensor *t, double gain)
{
    double std = 0.0;
    gl_status st = xavier_std(t, gain, &std);
    return st != GL_OK ? st : uniform(t, -sqrt(3.0) * std, sqrt(3.0) * std, "xavier_uniform_");
}

gl_status gl_init_xavier_normal(gl_tensor *t, double gain)
{
    double std = 0.0;
    gl_status st = xavier_std(t, gain, &std);
    return st != GL_OK ? st : normal(t, 0.0, std, "xavier_normal_");
}

static gl_status kaiming_std(const gl_tensor *t, double a, gl_fan_mode mode, const char *nl, double *std)
{
    int64_t fan_in, fan_out;
    double gain = 1.0;
    gl_status st = gl_init_fans(t, &fan_in, &fan_out);
    if (st == GL_OK) st = gl_init_gain(nl, a, &gain);
    if (st != GL_OK) return st;
    int64_t fan = mode == GL_FAN_IN ? fan_in : fan_out;
    if (fan == 0) return gl_error(GL_EINVAL, "kaiming: fan is 0 for a tensor with no elements");
    *std = gain / sqrt((double)fan);
    return GL_OK;
}

gl_status gl_init_kaiming_uniform(gl_tensor *t, double a, gl_fan_mode mode, const char *nonlinearity)
{
    double std = 0.0;
    gl_status st = kaiming_std(t, a, mode, nonlinearity, &std);
    return st != GL_OK ? st : uniform(t, -sqrt(3.0) * std, sqrt(3.0) * std, "kaiming_uniform_");
}

gl_status gl_init_kaiming_normal(gl_tensor *t, double a, gl_fan_mode mode, const char *nonlinearity)
{
    double std = 0.0;
    gl_status st = kaiming_std(t, a, mode, nonlinearity, &std);
    return st != GL_OK ? st : normal(t, 0.0, std, "kaiming_normal_");
}
