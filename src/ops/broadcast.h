/* NumPy broadcasting of two shapes. Each operand gets a stride per output
 * dim, 0 where it is broadcast, so kernels walk the output once. */
#ifndef GL_OPS_BROADCAST_H
#define GL_OPS_BROADCAST_H

#include "core/error.h"
#include "core/tensor.h"

typedef struct {
    int ndim;
    int64_t shape[GL_MAX_DIMS];
    int64_t stride_a[GL_MAX_DIMS];
    int64_t stride_b[GL_MAX_DIMS];
    int64_t numel;
} gl_broadcast;

gl_status gl_broadcast_shapes(const char *op, const gl_tensor *a, const gl_tensor *b, gl_broadcast *bc);

/* Calls fn(ctx, offset_a, offset_b, offset_out, n, stride_a_last, stride_b_last)
 * for each run of the last output dim. */
typedef void (*gl_broadcast_row_fn)(void *ctx, int64_t oa, int64_t ob, int64_t oo, int64_t n,
                                    int64_t sa, int64_t sb);
void gl_broadcast_rows(const gl_broadcast *bc, gl_broadcast_row_fn fn, void *ctx);

/* dst (shape of one operand, strides from bc) += src (output shape), summing
 * over broadcast dims: the backward of broadcasting. which = 0 for a, 1 for b. */
void gl_broadcast_reduce_add(const gl_broadcast *bc, int which, float *dst, const float *src);

#endif
