/* 2-D convolutions, torch.nn.functional's conv2d and conv_transpose2d, as
 * im2col / col2im around gl_sgemm, recorded for autograd (gradients for
 * x, weight and bias).
 *
 * Shapes (N batch, C input channels, O output channels, g groups):
 *   conv2d            x [N, C, H, W], w [O, C/g, kh, kw], b [O] or NULL -> [N, O, OH, OW]
 *                     OH = (H + 2 ph - dh (kh - 1) - 1) / sh + 1
 *   conv_transpose2d  x [N, C, H, W], w [C, O/g, kh, kw], b [O] or NULL -> [N, O, OH, OW]
 *                     OH = (H - 1) sh - 2 ph + dh (kh - 1) + oph + 1
 * Each pair is (h, w). Beyond torch, b may also be [N, O], a bias per sample
 * and channel (the UNet adds its time embedding so, saving a broadcast add
 * over the whole output). */
#ifndef GL_OPS_CONV_H
#define GL_OPS_CONV_H

#include <stdint.h>

#include "core/tensor.h"

typedef struct gl_conv2d_args {
    int64_t stride[2];         /* >= 1 */
    int64_t padding[2];        /* >= 0, on both sides */
    int64_t dilation[2];       /* >= 1 */
    int64_t output_padding[2]; /* conv_transpose2d only: < stride or < dilation */
    int64_t groups;            /* >= 1, divides C and O */
} gl_conv2d_args;

/* The defaults: stride 1, padding 0, dilation 1, output_padding 0, groups 1. */
gl_conv2d_args gl_conv2d_args_default(void);

gl_tensor *gl_conv2d(gl_tensor *x, gl_tensor *w, gl_tensor *b, const gl_conv2d_args *a);
gl_tensor *gl_conv_transpose2d(gl_tensor *x, gl_tensor *w, gl_tensor *b, const gl_conv2d_args *a);

#endif
