/* Elementwise functions of one f32 tensor, each with its backward. */
#ifndef GL_OPS_UNARY_H
#define GL_OPS_UNARY_H

#include <stdbool.h>
#include <stdint.h>

#include "core/tensor.h"

gl_tensor *gl_neg(gl_tensor *x);
gl_tensor *gl_exp(gl_tensor *x);
gl_tensor *gl_log(gl_tensor *x);
gl_tensor *gl_sqrt(gl_tensor *x);
gl_tensor *gl_rsqrt(gl_tensor *x);
gl_tensor *gl_abs(gl_tensor *x);
gl_tensor *gl_sin(gl_tensor *x);
gl_tensor *gl_cos(gl_tensor *x);
gl_tensor *gl_tanh(gl_tensor *x);
gl_tensor *gl_sigmoid(gl_tensor *x);
gl_tensor *gl_relu(gl_tensor *x);
gl_tensor *gl_leaky_relu(gl_tensor *x, float slope);
gl_tensor *gl_gelu(gl_tensor *x);      /* exact: x * Phi(x) */
gl_tensor *gl_gelu_tanh(gl_tensor *x); /* tanh approximation (GPT-2) */
/* The same GELUs on a raw buffer in place, for inference kernels that work
 * without tensors (src/models/gpt_infer.c): identical values to gl_gelu. */
void gl_gelu_inplace(float *x, int64_t n, bool tanh_approx);
gl_tensor *gl_silu(gl_tensor *x);
gl_tensor *gl_softplus(gl_tensor *x, float beta, float threshold);
gl_tensor *gl_clamp(gl_tensor *x, float lo, float hi); /* use +-INFINITY for no bound */
/* x * s + b with scalars s, b: the cheap path for tensor-number arithmetic. */
gl_tensor *gl_affine(gl_tensor *x, float s, float b);
/* x ^ p for a scalar p. */
gl_tensor *gl_pow_scalar(gl_tensor *x, float p);

#endif
