/* Elementwise arithmetic on f32 tensors with NumPy broadcasting. */
#ifndef GL_OPS_BINARY_H
#define GL_OPS_BINARY_H

#include "core/tensor.h"

gl_tensor *gl_add(gl_tensor *a, gl_tensor *b);
gl_tensor *gl_sub(gl_tensor *a, gl_tensor *b);
gl_tensor *gl_mul(gl_tensor *a, gl_tensor *b);
gl_tensor *gl_div(gl_tensor *a, gl_tensor *b);
gl_tensor *gl_pow(gl_tensor *a, gl_tensor *b);
gl_tensor *gl_maximum(gl_tensor *a, gl_tensor *b);
gl_tensor *gl_minimum(gl_tensor *a, gl_tensor *b);

#endif
