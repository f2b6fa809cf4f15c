/* Convolution, pooling and upsampling layers for channels-first feature maps
 * (ops/conv.h, ops/pool.h), with torch.nn's names, initializations and
 * state-dict entries. Each constructor returns a gl_module holding one
 * reference, or NULL with an error set. Kernel sizes are (h, w).
 *
 *   Conv2d           weight [cout, cin/groups, kh, kw], bias [cout]
 *   ConvTranspose2d  weight [cin, cout/groups, kh, kw], bias [cout]
 *                    both: weight ~ kaiming_uniform(a = sqrt 5), bias ~ U(+-1/sqrt fan_in)
 *                    with fan_in = weight dim 1 x kh x kw, as torch computes it
 *                    (for ConvTranspose2d that is cout/groups x kh x kw).
 *                    a: stride, padding, dilation, groups (and output_padding for
 *                    ConvTranspose2d; Conv2d requires it 0); NULL means the defaults.
 *   MaxPool2d, AvgPool2d, Upsample  no parameters. */
#ifndef GL_NN_CONV_LAYERS_H
#define GL_NN_CONV_LAYERS_H

#include <stdbool.h>
#include <stdint.h>

#include "nn/module.h"
#include "ops/conv.h"
#include "ops/pool.h"

gl_module *gl_nn_conv2d_new(int64_t cin, int64_t cout, const int64_t kernel[2], const gl_conv2d_args *a, bool bias);
gl_module *gl_nn_conv_transpose2d_new(int64_t cin, int64_t cout, const int64_t kernel[2], const gl_conv2d_args *a,
                                      bool bias);
gl_module *gl_nn_max_pool2d_new(const gl_pool2d_args *a);
gl_module *gl_nn_avg_pool2d_new(const gl_pool2d_args *a);
gl_module *gl_nn_upsample_new(const gl_upsample_args *a);

#endif
