/* The fused building blocks of networks and the losses. Normalizations act
 * over the last dim. Reductions of losses: */
#ifndef GL_OPS_NNOPS_H
#define GL_OPS_NNOPS_H

#include <stdbool.h>

#include "core/tensor.h"

typedef enum { GL_REDUCE_MEAN = 0, GL_REDUCE_SUM, GL_REDUCE_NONE } gl_reduction;

/* w, b: [C] or NULL. */
gl_tensor *gl_layer_norm(gl_tensor *x, gl_tensor *w, gl_tensor *b, float eps);
gl_tensor *gl_rms_norm(gl_tensor *x, gl_tensor *w, float eps);
/* weight [V, C], ids (i32/i64, any shape, values in [0, V)) -> [..., C]. */
gl_tensor *gl_embedding(gl_tensor *weight, gl_tensor *ids);
/* Inverted dropout; identity when !training or p == 0. */
gl_tensor *gl_dropout(gl_tensor *x, float p, bool training);

/* logits [N, C] (or [C]), targets i64 [N] of class ids; ignore_index < 0 of
 * PyTorch's -100 convention is honoured as given. Mean is over non-ignored. */
gl_tensor *gl_cross_entropy(gl_tensor *logits, gl_tensor *targets, int64_t ignore_index, float label_smoothing,
                            gl_reduction red);
gl_tensor *gl_nll_loss(gl_tensor *logp, gl_tensor *targets, int64_t ignore_index, gl_reduction red);
gl_tensor *gl_mse_loss(gl_tensor *x, gl_tensor *y, gl_reduction red);
gl_tensor *gl_l1_loss(gl_tensor *x, gl_tensor *y, gl_reduction red);
gl_tensor *gl_bce_loss(gl_tensor *p, gl_tensor *y, gl_reduction red);
gl_tensor *gl_bce_with_logits(gl_tensor *x, gl_tensor *y, gl_reduction red);
/* input is log-probabilities; target probabilities (or log-probabilities when
 * log_target). GL_REDUCE_MEAN here means PyTorch's "batchmean" is NOT used:
 * mean over all elements, as torch's reduction='mean'. */
gl_tensor *gl_kl_div(gl_tensor *input, gl_tensor *target, bool log_target, gl_reduction red);

#endif
