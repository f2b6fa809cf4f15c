/* Normalization layers for channels-first feature maps (ops/norm2d.h), with
 * torch.nn's names, defaults and state-dict entries. Each constructor returns
 * a gl_module holding one reference, or NULL with an error set.
 *
 *   BatchNorm1d    x [N, C] or [N, C, L]    weight = 1, bias = 0 (affine);
 *   BatchNorm2d    x [N, C, H, W]           buffers running_mean = 0, running_var = 1,
 *                                           num_batches_tracked (i64, shape []) = 0.
 *                  The module's training flag picks batch statistics (and
 *                  updates the buffers, counting the batch) or the running ones.
 *   GroupNorm      x [N, C, ...]            groups must divide C; weight = 1, bias = 0 (affine)
 *   InstanceNorm2d x [N, C, H, W]           per sample and channel, in training and eval
 *                                           (no running statistics); PyTorch's default is affine = false
 *   LayerNorm2d    x [N, C, ...]            over the C channels at each position; weight = 1, bias = 0 */
#ifndef GL_NN_NORM_LAYERS_H
#define GL_NN_NORM_LAYERS_H

#include <stdbool.h>
#include <stdint.h>

#include "nn/module.h"

/* PyTorch's defaults: momentum 0.1, eps 1e-5, affine true. */
gl_module *gl_nn_batch_norm1d_new(int64_t channels, float momentum, float eps, bool affine);
gl_module *gl_nn_batch_norm2d_new(int64_t channels, float momentum, float eps, bool affine);
gl_module *gl_nn_group_norm_new(int64_t groups, int64_t channels, float eps, bool affine);
gl_module *gl_nn_instance_norm2d_new(int64_t channels, float eps, bool affine);
gl_module *gl_nn_layer_norm2d_new(int64_t channels, float eps, bool affine);

#endif
