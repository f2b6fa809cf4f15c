#include "nn/layers.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "nn/init.h"
#include "ops/matmul.h"
#include "ops/nnops.h"
#include "ops/unary.h"

/* Hyperparameters of every built-in layer; each class reads its own fields. */
typedef struct {
    int64_t in, out; /* Linear in/out features; Embedding num/dim; norms: dim in `in` */
    bool bias, affine;
    float eps, p; /* norms' eps; Dropout's p, LeakyReLU's slope */
    gl_activation act;
} layer_cfg;

static layer_cfg *cfg(const gl_module *m) { return m->impl; }

static gl_module *new_layer(const gl_module_class *cls, layer_cfg c)
{
    layer_cfg *impl = malloc(sizeof *impl);
    if (!impl) return gl_error_null(GL_ENOMEM, "%s: out of memory", cls->name);
    *impl = c;
    return gl_module_new(cls, impl);
}

/* Adds a new f32 parameter of the given shape; NULL after releasing m on failure. */
static gl_tensor *add_param(gl_module *m, const char *name, int ndim, const int64_t *shape)
{
    gl_tensor *t = gl_tensor_new(GL_F32, ndim, shape);
    gl_status st = t ? gl_module_add_param(m, name, t) : gl_error_code();
    gl_tensor_release(t); /* the module holds its own reference */
    if (st != GL_OK) {
        gl_module_release(m);
        return NULL;
    }
    return t;
}

static gl_module *fail_init(gl_module *m, gl_status st)
{
    if (st == GL_OK) return m;
    gl_module_release(m);
    return NULL;
}

/* The last dim of x must be the layer's feature size. */
static bool last_dim_is(const gl_module *m, const gl_tensor *x, int64_t dim)
{
    if (x->ndim >= 1 && x->shape[x->ndim - 1] == dim) return true;
    char s[128];
    gl_error(GL_EINVAL, "%s: input %s does not end in the layer's size %lld", m->cls->name,
             gl_tensor_shape_str(x, s, sizeof s), (long long)dim);
    return false;
}

static const char *yes_no(bool b) { return b ? "true" : "false"; }

/* --- Linear ------------------------------------------------------------------ */

static gl_tensor *linear_forward(gl_module *m, gl_tensor *x)
{
    if (!last_dim_is(m, x, cfg(m)->in)) return NULL;
    return gl_linear(x, gl_module_param(m, "weight"), gl_module_param(m, "bias"));
}

static void linear_repr(const gl_module *m, char *buf, size_t n)
{
    snprintf(buf, n, "in_features=%lld, out_features=%lld, bias=%s", (long long)cfg(m)->in, (long long)cfg(m)->out,
             yes_no(cfg(m)->bias));
}

static const gl_module_class linear_class = {"Linear", linear_forward, linear_repr, NULL};

gl_module *gl_nn_linear_new(int64_t in_features, int64_t out_features, bool bias)
{
    if (in_features < 0 || out_features < 0)
        return gl_error_null(GL_EINVAL, "Linear: sizes must be >= 0 (got in_features=%lld, out_features=%lld)",
                             (long long)in_features, (long long)out_features);
    gl_module *m = new_layer(&linear_class, (layer_cfg){.in = in_features, .out = out_features, .bias = bias});
    if (!m) return NULL;
    gl_tensor *w = add_param(m, "weight", 2, (int64_t[]){out_features, in_features});
    if (!w) return NULL;
    gl_tensor *b = bias ? add_param(m, "bias", 1, (int64_t[]){out_features}) : NULL;
    if (bias && !b) return NULL;
    if (w->numel == 0) return m; /* nothing to draw; PyTorch skips init too */
    gl_status st = gl_init_kaiming_uniform(w, sqrt(5.0), GL_FAN_IN, "leaky_relu");
    double bound = 1.0 / sqrt((double)in_features);
    if (st == GL_OK && b) st = gl_init_uniform(b, -bound, bound);
    return fail_init(m, st);
}

/* --- Embedding --------------------------------------------------------------- */

static gl_tensor *embedding_forward(gl_module *m, gl_tensor *ids)
{
    return gl_embedding(gl_module_param(m, "weight"), ids);
}

static void embedding_repr(const gl_module *m, char *buf, size_t n)
{
    snprintf(buf, n, "num=%lld, dim=%lld", (long long)cfg(m)->in, (long long)cfg(m)->out);
}

static const gl_module_class embedding_class = {"Embedding", embedding_forward, embedding_repr, NULL};

gl_module *gl_nn_embedding_new(int64_t num, int64_t dim)
{
    if (num < 1 || dim < 0)
        return gl_error_null(GL_EINVAL, "Embedding: num must be >= 1 and dim >= 0 (got num=%lld, dim=%lld)",
                             (long long)num, (long long)dim);
    gl_module *m = new_layer(&embedding_class, (layer_cfg){.in = num, .out = dim});
    if (!m) return NULL;
    gl_tensor *w = add_param(m, "weight", 2, (int64_t[]){num, dim});
    return w ? fail_init(m, gl_init_normal(w, 0.0, 1.0)) : NULL;
}

/* --- LayerNorm, RMSNorm ------------------------------------------------------- */

static gl_tensor *layer_norm_forward(gl_module *m, gl_tensor *x)
{
    if (!last_dim_is(m, x, cfg(m)->in)) return NULL;
    return gl_layer_norm(x, gl_module_param(m, "weight"), gl_module_param(m, "bias"), cfg(m)->eps);
}

static void layer_norm_repr(const gl_module *m, char *buf, size_t n)
{
    const layer_cfg *c = cfg(m);
    int k = snprintf(buf, n, "dim=%lld, eps=%g", (long long)c->in, (double)c->eps);
    if (!c->affine && k >= 0 && (size_t)k < n) snprintf(buf + k, n - (size_t)k, ", affine=false");
    else if (!c->bias && k >= 0 && (size_t)k < n) snprintf(buf + k, n - (size_t)k, ", bias=false");
}

static const gl_module_class layer_norm_class = {"LayerNorm", layer_norm_forward, layer_norm_repr, NULL};

static bool check_norm_args(const char *name, int64_t dim, float eps)
{
    if (dim >= 1 && eps >= 0) return true;
    gl_error(GL_EINVAL, "%s: dim must be >= 1 and eps >= 0 (got dim=%lld, eps=%g)", name, (long long)dim,
             (double)eps);
    return false;
}

gl_module *gl_nn_layer_norm_new(int64_t dim, float eps, bool affine, bool bias)
{
    if (!check_norm_args("LayerNorm", dim, eps)) return NULL;
    gl_module *m = new_layer(&layer_norm_class, (layer_cfg){.in = dim, .eps = eps, .affine = affine, .bias = bias});
    if (!m || !affine) return m;
    gl_tensor *w = add_param(m, "weight", 1, &dim);
    if (!w) return NULL;
    if (bias && !add_param(m, "bias", 1, &dim)) return NULL;
    return fail_init(m, gl_init_ones(w)); /* the bias stays zero */
}

static gl_tensor *rms_norm_forward(gl_module *m, gl_tensor *x)
{
    if (!last_dim_is(m, x, cfg(m)->in)) return NULL;
    return gl_rms_norm(x, gl_module_param(m, "weight"), cfg(m)->eps);
}

static void rms_norm_repr(const gl_module *m, char *buf, size_t n)
{
    snprintf(buf, n, "dim=%lld, eps=%g", (long long)cfg(m)->in, (double)cfg(m)->eps);
}

static const gl_module_class rms_norm_class = {"RMSNorm", rms_norm_forward, rms_norm_repr, NULL};

gl_module *gl_nn_rms_norm_new(int64_t dim, float eps)
{
    if (!check_norm_args("RMSNorm", dim, eps)) return NULL;
    gl_module *m = new_layer(&rms_norm_class, (layer_cfg){.in = dim, .eps = eps, .affine = true});
    if (!m) return NULL;
    gl_tensor *w = add_param(m, "weight", 1, &dim);
    return w ? fail_init(m, gl_init_ones(w)) : NULL;
}

/* --- Dropout ------------------------------------------------------------------ */

static gl_tensor *dropout_forward(gl_module *m, gl_tensor *x) { return gl_dropout(x, cfg(m)->p, m->training); }

static void dropout_repr(const gl_module *m, char *buf, size_t n) { snprintf(buf, n, "p=%g", (double)cfg(m)->p); }

static const gl_module_class dropout_class = {"Dropout", dropout_forward, dropout_repr, NULL};

gl_module *gl_nn_dropout_new(float p)
{
    if (!(p >= 0 && p < 1)) return gl_error_null(GL_EINVAL, "Dropout: p must be in [0, 1) (got %g)", (double)p);
    return new_layer(&dropout_class, (layer_cfg){.p = p});
}

/* --- containers ------------------------------------------------------------------ */

static gl_tensor *sequential_forward(gl_module *m, gl_tensor *x)
{
    gl_tensor_retain(x);
    for (int64_t k = 0; k < m->n_children && x; k++) {
        gl_tensor *y = gl_module_forward(m->children[k].m, x);
        gl_tensor_release(x);
        x = y;
    }
    return x;
}

static const gl_module_class sequential_class = {"Sequential", sequential_forward, NULL, NULL};
static const gl_module_class module_list_class = {"ModuleList", NULL, NULL, NULL};

gl_module *gl_nn_sequential_new(void) { return gl_module_new(&sequential_class, NULL); }
gl_module *gl_nn_module_list_new(void) { return gl_module_new(&module_list_class, NULL); }

gl_status gl_nn_append(gl_module *container, gl_module *child)
{
    char name[32];
    snprintf(name, sizeof name, "%lld", (long long)container->n_children);
    return gl_module_add_child(container, name, child);
}

/* --- activations -------------------------------------------------------------- */

gl_tensor *gl_activation_apply(gl_activation kind, float param, gl_tensor *x)
{
    switch (kind) {
    case GL_ACT_RELU: return gl_relu(x);
    case GL_ACT_GELU: return gl_gelu(x);
    case GL_ACT_GELU_TANH: return gl_gelu_tanh(x);
    case GL_ACT_SILU: return gl_silu(x);
    case GL_ACT_TANH: return gl_tanh(x);
    case GL_ACT_SIGMOID: return gl_sigmoid(x);
    case GL_ACT_LEAKY_RELU: return gl_leaky_relu(x, param);
    default: return gl_error_null(GL_EINVAL, "activation: unknown kind %d", (int)kind);
    }
}

static gl_tensor *activation_forward(gl_module *m, gl_tensor *x)
{
    return gl_activation_apply(cfg(m)->act, cfg(m)->p, x);
}

static void activation_repr(const gl_module *m, char *buf, size_t n)
{
    if (cfg(m)->act == GL_ACT_GELU_TANH) snprintf(buf, n, "approximate=tanh");
    else if (cfg(m)->act == GL_ACT_LEAKY_RELU) snprintf(buf, n, "slope=%g", (double)cfg(m)->p);
}

static const gl_module_class activation_classes[GL_ACT_COUNT] = {
    [GL_ACT_RELU] = {"ReLU", activation_forward, activation_repr, NULL},
    [GL_ACT_GELU] = {"GELU", activation_forward, activation_repr, NULL},
    [GL_ACT_GELU_TANH] = {"GELU", activation_forward, activation_repr, NULL},
    [GL_ACT_SILU] = {"SiLU", activation_forward, activation_repr, NULL},
    [GL_ACT_TANH] = {"Tanh", activation_forward, activation_repr, NULL},
    [GL_ACT_SIGMOID] = {"Sigmoid", activation_forward, activation_repr, NULL},
    [GL_ACT_LEAKY_RELU] = {"LeakyReLU", activation_forward, activation_repr, NULL},
};

gl_module *gl_nn_activation_new(gl_activation kind, float param)
{
    if ((int)kind < 0 || kind >= GL_ACT_COUNT)
        return gl_error_null(GL_EINVAL, "activation: unknown kind %d", (int)kind);
    return new_layer(&activation_classes[kind], (layer_cfg){.act = kind, .p = param});
}
