#include "nn/conv_layers.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "nn/init.h"

/* --- Conv2d, ConvTranspose2d ----------------------------------------------------- */

typedef struct {
    int64_t cin, cout, k[2];
    gl_conv2d_args a;
    bool bias;
} conv_cfg;

static gl_tensor *conv2d_forward(gl_module *m, gl_tensor *x)
{
    const conv_cfg *c = m->impl;
    return gl_conv2d(x, gl_module_param(m, "weight"), gl_module_param(m, "bias"), &c->a);
}

static gl_tensor *conv_transpose2d_forward(gl_module *m, gl_tensor *x)
{
    const conv_cfg *c = m->impl;
    return gl_conv_transpose2d(x, gl_module_param(m, "weight"), gl_module_param(m, "bias"), &c->a);
}

/* Appends "name=(h, w)" to buf at *k (or "name=v" when both are v and not
 * tuple), after ", " unless buf is empty. */
static void put_pair(char *buf, size_t n, int *k, const char *name, const int64_t v[2], bool tuple)
{
    if (*k < 0 || (size_t)*k >= n) return;
    const char *sep = *k ? ", " : "";
    int r = v[0] == v[1] && !tuple ? snprintf(buf + *k, n - (size_t)*k, "%s%s=%lld", sep, name, (long long)v[0])
                         : snprintf(buf + *k, n - (size_t)*k, "%s%s=(%lld, %lld)", sep, name, (long long)v[0],
                                    (long long)v[1]);
    *k = r < 0 ? -1 : *k + r;
}

/* torch's Conv2d.extra_repr: stride always; padding, dilation, output_padding,
 * groups and bias only when not the default. */
static void conv_repr(const gl_module *m, char *buf, size_t n)
{
    const conv_cfg *c = m->impl;
    int k = snprintf(buf, n, "%lld, %lld", (long long)c->cin, (long long)c->cout);
    put_pair(buf, n, &k, "kernel_size", c->k, true);
    put_pair(buf, n, &k, "stride", c->a.stride, true);
    if (c->a.padding[0] || c->a.padding[1]) put_pair(buf, n, &k, "padding", c->a.padding, true);
    if (c->a.dilation[0] != 1 || c->a.dilation[1] != 1) put_pair(buf, n, &k, "dilation", c->a.dilation, true);
    if (c->a.output_padding[0] || c->a.output_padding[1])
        put_pair(buf, n, &k, "output_padding", c->a.output_padding, true);
    if (c->a.groups != 1 && k >= 0 && (size_t)k < n) {
        int r = snprintf(buf + k, n - (size_t)k, ", groups=%lld", (long long)c->a.groups);
        k = r < 0 ? -1 : k + r;
    }
    if (!c->bias && k >= 0 && (size_t)k < n) snprintf(buf + k, n - (size_t)k, ", bias=false");
}

static const gl_module_class conv2d_class = {"Conv2d", conv2d_forward, conv_repr, NULL};
static const gl_module_class conv_transpose2d_class = {"ConvTranspose2d", conv_transpose2d_forward, conv_repr, NULL};

static gl_module *conv_new(bool transpose, int64_t cin, int64_t cout, const int64_t kernel[2],
                           const gl_conv2d_args *args, bool bias)
{
    const char *name = transpose ? "ConvTranspose2d" : "Conv2d";
    gl_conv2d_args a = args ? *args : gl_conv2d_args_default();
    if (cin < 1 || cout < 1 || kernel[0] < 1 || kernel[1] < 1)
        return gl_error_null(GL_EINVAL, "%s: channels and kernel size must be >= 1 (got %lld, %lld, kernel %lldx%lld)",
                             name, (long long)cin, (long long)cout, (long long)kernel[0], (long long)kernel[1]);
    if (a.groups < 1 || cin % a.groups || cout % a.groups)
        return gl_error_null(GL_EINVAL, "%s: groups %lld must divide in_channels %lld and out_channels %lld", name,
                             (long long)a.groups, (long long)cin, (long long)cout);
    for (int k = 0; k < 2; k++) {
        if (a.stride[k] < 1 || a.dilation[k] < 1 || a.padding[k] < 0 || a.output_padding[k] < 0)
            return gl_error_null(GL_EINVAL, "%s: stride and dilation must be >= 1, padding and output_padding >= 0",
                                 name);
        if (!transpose && a.output_padding[k])
            return gl_error_null(GL_EINVAL, "%s: output_padding applies to ConvTranspose2d only", name);
        if (transpose && a.output_padding[k] >= a.stride[k] && a.output_padding[k] >= a.dilation[k])
            return gl_error_null(GL_EINVAL, "%s: output_padding %lld must be smaller than stride %lld or dilation %lld",
                                 name, (long long)a.output_padding[k], (long long)a.stride[k],
                                 (long long)a.dilation[k]);
    }
    conv_cfg *c = malloc(sizeof *c);
    if (!c) return gl_error_null(GL_ENOMEM, "%s: out of memory", name);
    *c = (conv_cfg){cin, cout, {kernel[0], kernel[1]}, a, bias};
    gl_module *m = gl_module_new(transpose ? &conv_transpose2d_class : &conv2d_class, c);
    if (!m) return NULL;
    int64_t wshape[4] = {transpose ? cin : cout, (transpose ? cout : cin) / a.groups, kernel[0], kernel[1]};
    gl_tensor *w = gl_tensor_new(GL_F32, 4, wshape);
    gl_tensor *b = bias ? gl_tensor_new(GL_F32, 1, &cout) : NULL;
    gl_status st = (!w || (bias && !b)) ? gl_error_code() : gl_module_add_param(m, "weight", w);
    if (st == GL_OK && b) st = gl_module_add_param(m, "bias", b);
    if (st == GL_OK) st = gl_init_kaiming_uniform(w, sqrt(5.0), GL_FAN_IN, "leaky_relu");
    double bound = 1.0 / sqrt((double)(wshape[1] * kernel[0] * kernel[1]));
    if (st == GL_OK && b) st = gl_init_uniform(b, -bound, bound);
    gl_tensor_release(w); /* the module holds its own references */
    gl_tensor_release(b);
    if (st != GL_OK) {
        gl_module_release(m);
        return NULL;
    }
    return m;
}

gl_module *gl_nn_conv2d_new(int64_t cin, int64_t cout, const int64_t kernel[2], const gl_conv2d_args *a, bool bias)
{
    return conv_new(false, cin, cout, kernel, a, bias);
}

gl_module *gl_nn_conv_transpose2d_new(int64_t cin, int64_t cout, const int64_t kernel[2], const gl_conv2d_args *a,
                                      bool bias)
{
    return conv_new(true, cin, cout, kernel, a, bias);
}

/* --- MaxPool2d, AvgPool2d ----------------------------------------------------------- */

static gl_tensor *max_pool2d_forward(gl_module *m, gl_tensor *x) { return gl_max_pool2d(x, m->impl); }
static gl_tensor *avg_pool2d_forward(gl_module *m, gl_tensor *x) { return gl_avg_pool2d(x, m->impl); }

static void pool_repr(const gl_module *m, char *buf, size_t n)
{
    const gl_pool2d_args *a = m->impl;
    int k = 0;
    put_pair(buf, n, &k, "kernel_size", a->kernel, false);
    put_pair(buf, n, &k, "stride", a->stride, false);
    put_pair(buf, n, &k, "padding", a->padding, false);
}

static const gl_module_class max_pool2d_class = {"MaxPool2d", max_pool2d_forward, pool_repr, NULL};
static const gl_module_class avg_pool2d_class = {"AvgPool2d", avg_pool2d_forward, pool_repr, NULL};

static gl_module *pool_new(const gl_module_class *cls, const gl_pool2d_args *a)
{
    for (int k = 0; k < 2; k++)
        if (a->kernel[k] < 1 || a->stride[k] < 1 || a->padding[k] < 0 || 2 * a->padding[k] > a->kernel[k])
            return gl_error_null(GL_EINVAL,
                                 "%s: need kernel >= 1, stride >= 1 and 0 <= padding <= kernel / 2 (got kernel "
                                 "%lldx%lld, stride %lldx%lld, padding %lldx%lld)",
                                 cls->name, (long long)a->kernel[0], (long long)a->kernel[1], (long long)a->stride[0],
                                 (long long)a->stride[1], (long long)a->padding[0], (long long)a->padding[1]);
    gl_pool2d_args *c = malloc(sizeof *c);
    if (!c) return gl_error_null(GL_ENOMEM, "%s: out of memory", cls->name);
    *c = *a;
    return gl_module_new(cls, c);
}

gl_module *gl_nn_max_pool2d_new(const gl_pool2d_args *a) { return pool_new(&max_pool2d_class, a); }
gl_module *gl_nn_avg_pool2d_new(const gl_pool2d_args *a) { return pool_new(&avg_pool2d_class, a); }

/* --- Upsample ----------------------------------------------------------------------- */

static gl_tensor *upsample_forward(gl_module *m, gl_tensor *x) { return gl_upsample(x, m->impl); }

static void upsample_repr(const gl_module *m, char *buf, size_t n)
{
    const gl_upsample_args *a = m->impl;
    int k;
    if (a->size[0] > 0) k = snprintf(buf, n, "size=(%lld, %lld)", (long long)a->size[0], (long long)a->size[1]);
    else if (a->scale[0] == a->scale[1]) k = snprintf(buf, n, "scale_factor=%g", a->scale[0]);
    else k = snprintf(buf, n, "scale_factor=(%g, %g)", a->scale[0], a->scale[1]);
    if (k < 0 || (size_t)k >= n) return;
    k += snprintf(buf + k, n - (size_t)k, ", mode=%s", a->mode == GL_UPSAMPLE_NEAREST ? "nearest" : "bilinear");
    if (a->align_corners && k >= 0 && (size_t)k < n) snprintf(buf + k, n - (size_t)k, ", align_corners=true");
}

static const gl_module_class upsample_class = {"Upsample", upsample_forward, upsample_repr, NULL};

gl_module *gl_nn_upsample_new(const gl_upsample_args *a)
{
    if (a->mode != GL_UPSAMPLE_NEAREST && a->mode != GL_UPSAMPLE_BILINEAR)
        return gl_error_null(GL_EINVAL, "Upsample: unknown mode %d", (int)a->mode);
    if (a->size[0] > 0 ? a->size[1] < 1 : !(a->scale[0] > 0 && a->scale[1] > 0))
        return gl_error_null(GL_EINVAL, "Upsample: needs a size >= 1 or a scale > 0");
    if (a->align_corners && a->mode == GL_UPSAMPLE_NEAREST)
        return gl_error_null(GL_EINVAL, "Upsample: align_corners applies to mode bilinear only, not nearest");
    gl_upsample_args *c = malloc(sizeof *c);
    if (!c) return gl_error_null(GL_ENOMEM, "Upsample: out of memory");
    *c = *a;
    return gl_module_new(&upsample_class, c);
}
