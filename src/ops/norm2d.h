/* Normalizations of feature maps laid out channels first, x [N, C, *]: N
 * samples, C channels, S = the product of the trailing dims (1 for [N, C]).
 * weight and bias are [C] or NULL (no scale / no shift). Each returns a new
 * tensor recorded for autograd (gradients for x, weight and bias), or NULL
 * with an error naming the op and the shapes.
 *
 *   batch_norm     statistics per channel over the N*S values. training:
 *                  the batch's mean and biased variance normalize, and
 *                  running_mean / running_var ([C] f32, both or neither) are
 *                  updated in place, outside autograd, as PyTorch does:
 *                    running = (1 - momentum) * running + momentum * batch
 *                  with the unbiased variance (N*S / (N*S - 1)) for running_var;
 *                  one value per channel is an error. Eval: the running
 *                  statistics normalize (they are required) and are constants
 *                  for backward.
 *   group_norm     statistics per sample over each group of C/groups channels;
 *                  groups == C is instance norm.
 *   group_norm_silu  silu(group_norm(...)) in one pass, with the same values,
 *                  keeping no intermediate for backward.
 *   layer_norm_2d  statistics per sample and position over the C channels
 *                  (a channels-first LayerNorm, as ConvNeXt's LayerNorm2d). */
#ifndef GL_OPS_NORM2D_H
#define GL_OPS_NORM2D_H

#include <stdbool.h>
#include <stdint.h>

#include "core/tensor.h"

gl_tensor *gl_batch_norm(gl_tensor *x, gl_tensor *running_mean, gl_tensor *running_var, gl_tensor *weight,
                         gl_tensor *bias, bool training, float momentum, float eps);
gl_tensor *gl_group_norm(gl_tensor *x, int64_t groups, gl_tensor *weight, gl_tensor *bias, float eps);
gl_tensor *gl_group_norm_silu(gl_tensor *x, int64_t groups, gl_tensor *weight, gl_tensor *bias, float eps);
gl_tensor *gl_layer_norm_2d(gl_tensor *x, gl_tensor *weight, gl_tensor *bias, float eps);

#endif
