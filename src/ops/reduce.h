/* Reductions over one dim (0-based, already normalized) or over all elements,
 * and softmax / log_softmax. keepdim keeps the reduced dim with size 1. */
#ifndef GL_OPS_REDUCE_H
#define GL_OPS_REDUCE_H

#include <stdbool.h>

#include "core/tensor.h"

gl_tensor *gl_sum_all(gl_tensor *x);
gl_tensor *gl_mean_all(gl_tensor *x);
gl_tensor *gl_sum(gl_tensor *x, int dim, bool keepdim);
gl_tensor *gl_mean(gl_tensor *x, int dim, bool keepdim);
/* correction 1 is the unbiased estimate (PyTorch's default), 0 the population one. */
gl_tensor *gl_var(gl_tensor *x, int dim, bool keepdim, int correction);
gl_tensor *gl_std(gl_tensor *x, int dim, bool keepdim, int correction);
gl_tensor *gl_var_all(gl_tensor *x, int correction);
gl_tensor *gl_std_all(gl_tensor *x, int correction);
/* Values and (optionally, when indices != NULL) 0-based i64 positions. */
gl_tensor *gl_max(gl_tensor *x, int dim, bool keepdim, gl_tensor **indices);
gl_tensor *gl_min(gl_tensor *x, int dim, bool keepdim, gl_tensor **indices);
gl_tensor *gl_max_all(gl_tensor *x);
gl_tensor *gl_min_all(gl_tensor *x);
gl_tensor *gl_logsumexp(gl_tensor *x, int dim, bool keepdim);
/* p-norm over dim (p = 2 for the Euclidean norm). */
gl_tensor *gl_norm(gl_tensor *x, float p, int dim, bool keepdim);
gl_tensor *gl_norm_all(gl_tensor *x, float p);
gl_tensor *gl_softmax(gl_tensor *x, int dim);
gl_tensor *gl_log_softmax(gl_tensor *x, int dim);
/* 0-based i64 positions of the maximum along dim; not differentiable. */
gl_tensor *gl_argmax(gl_tensor *x, int dim, bool keepdim);
gl_tensor *gl_argmin(gl_tensor *x, int dim, bool keepdim);
/* 0-dim i64 position in the flattened (row-major) tensor. */
gl_tensor *gl_argmax_all(gl_tensor *x);
gl_tensor *gl_argmin_all(gl_tensor *x);

#endif
