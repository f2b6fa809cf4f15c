/* Ordering and sampling; results are not differentiable except topk/sort
 * values, which record a gather-style backward. Indices are 0-based i64. */
#ifndef GL_OPS_SORT_H
#define GL_OPS_SORT_H

#include <stdbool.h>

#include "core/tensor.h"

gl_tensor *gl_topk(gl_tensor *x, int64_t k, int dim, bool largest, gl_tensor **indices);
gl_tensor *gl_sort(gl_tensor *x, int dim, bool descending, gl_tensor **indices);
/* n draws per row of probs ([C] or [R, C], non-negative, need not sum to 1),
 * from the genlab RNG; i64 result [n] or [R, n]. */
gl_tensor *gl_multinomial(gl_tensor *probs, int64_t n, bool replacement);

#endif
