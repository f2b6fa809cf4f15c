/* The fused building blocks of networks and the losses. Normalizations act
 * over the last dim. Reductions of losses: */
#ifndef GL_OPS_NNOPS_H
#define GL_OPS_NNOPS_H

#include <stdbool.h>
#include <stdint.h>

#include "core/tensor.h"

/* BATCHMEAN (sum / size of dim 0) is kl_div's, as in PyTorch; the other losses reject it. */
typedef enum { GL_REDUCE_MEAN = 0, GL_REDUCE_SUM, GL_REDUCE_NONE, GL_REDUCE_BATCHMEAN } gl_reduction;

/* w, b: [C] or NULL. */
gl_tensor *gl_layer_norm(gl_tensor *x, gl_tensor *w, gl_tensor *b, float eps);
gl_tensor *gl_rms_norm(gl_tensor *x, gl_tensor *w, float eps);
/* weight [V, C], ids (i32/i64, any shape, values in [0, V)) -> [..., C]. */
gl_tensor *gl_embedding(gl_tensor *weight, gl_tensor *ids);
/* Inverted dropout; identity when !training or p == 0. */
gl_tensor *gl_dropout(gl_tensor *x, float p, bool training);
/* x + dropout(f) (same shapes): a residual connection that keeps nothing
 * for backward (the mask is regenerated), where gl_add(x, gl_dropout(f))
 * would keep the dropped-out f. Identity dropout when !training or p == 0. */
gl_tensor *gl_dropout_add(gl_tensor *x, gl_tensor *f, float p, bool training);
/* The counter-based mask stream of dropout (shared with attention): km[i] =
 * scale or 0 for element e0 + i of the stream seeded by seed, i in [0, n).
 * Element e is dropped when 16-bit lane e % 4 of SplitMix64's draw e / 4 is
 * below cut = gl_dropout_cut(p) = round(p * 2^16). */
uint32_t gl_dropout_cut(float p);
void gl_dropout_factors(float *km, uint64_t seed, uint32_t cut, float scale, int64_t e0, int64_t n);
/* dst[i] = base[i] + a[i] * km[i], or a[i] * km[i] when base is NULL, for
 * i in [0, n), with km[i] the factor of element e0 + i of that stream
 * (parallel, in chunks); base may be dst. Fused ops that drop out build on this. */
void gl_dropout_apply(float *dst, const float *base, const float *a, int64_t e0, int64_t n, uint64_t seed,
                      uint32_t cut, float scale);

/* logits [..., C] (flattened to [N, C]; [C] alone is one row), targets i64
 * or i32 [...] of 0-based class ids (ignore_index, e.g. PyTorch's -100, is
 * skipped; mean is over the rest), or f32 class probabilities shaped like
 * logits (soft targets, as torch; ignore_index does not apply). Label
 * smoothing mixes the target with the uniform distribution, as torch. */
gl_tensor *gl_cross_entropy(gl_tensor *logits, gl_tensor *targets, int64_t ignore_index, float label_smoothing,
                            gl_reduction red);
/* logp [..., C], targets [...] as cross_entropy's class ids. */
gl_tensor *gl_nll_loss(gl_tensor *logp, gl_tensor *targets, int64_t ignore_index, gl_reduction red);
/* The pointwise losses take input and target of the same shape. bce_loss's
 * input holds probabilities in [0, 1] (logs clamped at -100, as torch);
 * bce_with_logits takes logits (stable for any magnitude). */
gl_tensor *gl_mse_loss(gl_tensor *x, gl_tensor *y, gl_reduction red);
gl_tensor *gl_l1_loss(gl_tensor *x, gl_tensor *y, gl_reduction red);
gl_tensor *gl_bce_loss(gl_tensor *p, gl_tensor *y, gl_reduction red);
gl_tensor *gl_bce_with_logits(gl_tensor *x, gl_tensor *y, gl_reduction red);
/* input is log-probabilities; target probabilities (or log-probabilities when
 * log_target). GL_REDUCE_MEAN is the mean over all elements, as torch's
 * reduction='mean'; GL_REDUCE_BATCHMEAN divides the sum by the size of dim 0,
 * the true KL divergence per sample. */
gl_tensor *gl_kl_div(gl_tensor *input, gl_tensor *target, bool log_target, gl_reduction red);

#endif
