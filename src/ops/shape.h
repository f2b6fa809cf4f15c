/* Shape and indexing ops. Dims and positions are 0-based here (the binding
 * converts from Lua's 1-based numbers); index tensors are i64 or i32 with
 * 0-based values. reshape, and narrow/select when the slice is contiguous
 * (dim 0, or every dim before it has size 1), return views sharing storage;
 * the others copy. All record autograd where differentiable. */
#ifndef GL_OPS_SHAPE_H
#define GL_OPS_SHAPE_H

#include <stdbool.h>

#include "core/tensor.h"

/* One entry of shape may be -1 (inferred). */
gl_tensor *gl_reshape(gl_tensor *x, int ndim, const int64_t *shape);
gl_tensor *gl_transpose(gl_tensor *x, int d0, int d1);
gl_tensor *gl_permute(gl_tensor *x, const int *perm);
gl_tensor *gl_narrow(gl_tensor *x, int dim, int64_t start, int64_t length);
/* Removes dim, keeping position i of it. */
gl_tensor *gl_select(gl_tensor *x, int dim, int64_t i);
/* Positions ids (1-D) along dim. */
gl_tensor *gl_index_select(gl_tensor *x, int dim, gl_tensor *ids);
gl_tensor *gl_cat(int n, gl_tensor *const *xs, int dim);
gl_tensor *gl_stack(int n, gl_tensor *const *xs, int dim);
/* Broadcasts x to shape (repeating size-1 dims), copying. */
gl_tensor *gl_expand(gl_tensor *x, int ndim, const int64_t *shape);
/* out[i][j] = x[i][ids[i][j]] (for dim 1), ids has x's ndim. */
gl_tensor *gl_gather(gl_tensor *x, int dim, gl_tensor *ids);
/* A copy of x with src added at ids along dim. */
gl_tensor *gl_scatter_add(gl_tensor *x, int dim, gl_tensor *ids, gl_tensor *src);
/* A copy of x with value where mask (u8 or any dtype, nonzero = true; broadcast) is set. */
gl_tensor *gl_masked_fill(gl_tensor *x, gl_tensor *mask, float value);
/* cond ? a : b elementwise with broadcasting. */
gl_tensor *gl_where(gl_tensor *cond, gl_tensor *a, gl_tensor *b);
/* Lower / upper triangle of the last two dims, relative to diagonal k. */
gl_tensor *gl_tril(gl_tensor *x, int64_t k);
gl_tensor *gl_triu(gl_tensor *x, int64_t k);
/* i64 or i32 ids -> f32 one-hot with a trailing dim of n classes. */
gl_tensor *gl_one_hot(gl_tensor *ids, int64_t n);
/* A differentiable copy. */
gl_tensor *gl_clone(gl_tensor *x);
/* Elementwise comparisons with broadcasting -> u8 0/1 tensors (not differentiable). */
gl_tensor *gl_eq(gl_tensor *a, gl_tensor *b);
gl_tensor *gl_lt(gl_tensor *a, gl_tensor *b);
gl_tensor *gl_gt(gl_tensor *a, gl_tensor *b);
gl_tensor *gl_ne(gl_tensor *a, gl_tensor *b);
gl_tensor *gl_le(gl_tensor *a, gl_tensor *b);
gl_tensor *gl_ge(gl_tensor *a, gl_tensor *b);

#endif
