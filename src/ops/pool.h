/* 2-D pooling and upsampling over x [N, C, H, W], torch.nn.functional's
 * max_pool2d, avg_pool2d and interpolate (nearest, bilinear), recorded for
 * autograd. Pairs are (h, w).
 *
 *   max_pool2d / avg_pool2d  -> [N, C, OH, OW], OH = (H + 2 ph - kh) / sh + 1
 *       (ceil_mode false, dilation 1; padding at most half the kernel).
 *       max_pool2d ignores the padding; backward sends each output gradient
 *       to the first maximum of its window (saved as indices).
 *       avg_pool2d counts the padding (count_include_pad, torch's default):
 *       every window divides by kh kw.
 *   upsample -> [N, C, size] or [N, C, floor(H sh), floor(W sw)] for scale s. */
#ifndef GL_OPS_POOL_H
#define GL_OPS_POOL_H

#include <stdbool.h>
#include <stdint.h>

#include "core/tensor.h"

typedef struct gl_pool2d_args {
    int64_t kernel[2];  /* >= 1 */
    int64_t stride[2];  /* >= 1 (torch's default is the kernel) */
    int64_t padding[2]; /* 0 .. kernel / 2 */
} gl_pool2d_args;

gl_tensor *gl_max_pool2d(gl_tensor *x, const gl_pool2d_args *a);
gl_tensor *gl_avg_pool2d(gl_tensor *x, const gl_pool2d_args *a);

typedef enum { GL_UPSAMPLE_NEAREST = 0, GL_UPSAMPLE_BILINEAR } gl_upsample_mode;

typedef struct gl_upsample_args {
    int64_t size[2];    /* output H, W when size[0] > 0 ... */
    double scale[2];    /* ... else these scale factors (> 0) */
    gl_upsample_mode mode;
    bool align_corners; /* bilinear only: corners of input and output pixels coincide */
} gl_upsample_args;

gl_tensor *gl_upsample(gl_tensor *x, const gl_upsample_args *a);

#endif
