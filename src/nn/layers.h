/* The built-in layers, torch.nn's names and initializations. Each constructor
 * returns a gl_module (nn/module.h) holding one reference, or NULL with an
 * error set; gl_module_forward runs it on one tensor.
 *
 *   Linear       weight [out, in] ~ kaiming_uniform(a = sqrt 5), i.e. U(+-1/sqrt in);
 *                bias [out] ~ U(+-1/sqrt in)       y = x @ weight^T + bias
 *   Embedding    weight [num, dim] ~ N(0, 1)       ids (i32/i64, 0-based) -> [..., dim]
 *   LayerNorm    weight = 1, bias = 0, over the last dim
 *   RMSNorm      weight = 1, over the last dim
 *   Dropout      inverted dropout while training, identity in eval mode
 *   activations  no parameters */
#ifndef GL_NN_LAYERS_H
#define GL_NN_LAYERS_H

#include <stdbool.h>
#include <stdint.h>

#include "nn/module.h"

typedef enum {
    GL_ACT_RELU = 0,
    GL_ACT_GELU,      /* exact: x * Phi(x) */
    GL_ACT_GELU_TANH, /* tanh approximation (GPT-2) */
    GL_ACT_SILU,
    GL_ACT_TANH,
    GL_ACT_SIGMOID,
    GL_ACT_LEAKY_RELU, /* param: negative slope */
    GL_ACT_COUNT
} gl_activation;

gl_module *gl_nn_linear_new(int64_t in_features, int64_t out_features, bool bias);
gl_module *gl_nn_embedding_new(int64_t num, int64_t dim);
/* affine: learnable weight (and bias when bias); PyTorch's defaults are eps 1e-5, both true. */
gl_module *gl_nn_layer_norm_new(int64_t dim, float eps, bool affine, bool bias);
gl_module *gl_nn_rms_norm_new(int64_t dim, float eps);
gl_module *gl_nn_dropout_new(float p);
/* param is LeakyReLU's slope and ignored by the others. */
gl_module *gl_nn_activation_new(gl_activation kind, float param);

/* Containers for models composed in C (Lua has its own, lua/genlab/nn.lua):
 * children named "0", "1", ... by gl_nn_append, as PyTorch names them.
 * A Sequential's forward runs its children in order; a ModuleList has none. */
gl_module *gl_nn_sequential_new(void);
gl_module *gl_nn_module_list_new(void);
/* Adds child (taking a new reference) under the next number. */
gl_status gl_nn_append(gl_module *container, gl_module *child);

/* The activation as a function, for models that pick one by configuration. */
gl_tensor *gl_activation_apply(gl_activation kind, float param, gl_tensor *x);

#endif
