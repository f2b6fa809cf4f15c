/* Tensor constructors and dtype conversion. Random ones draw from the
 * genlab RNG serially, so results depend only on the seed. */
#ifndef GL_OPS_CREATE_H
#define GL_OPS_CREATE_H

#include "core/tensor.h"

gl_tensor *gl_full(gl_dtype dt, int ndim, const int64_t *shape, double value);
gl_tensor *gl_arange(gl_dtype dt, double start, double stop, double step);
gl_tensor *gl_linspace(double start, double stop, int64_t n);
gl_tensor *gl_rand(int ndim, const int64_t *shape);  /* uniform [0, 1) */
gl_tensor *gl_randn(int ndim, const int64_t *shape); /* standard normal */
gl_tensor *gl_randint(int64_t low, int64_t high, int ndim, const int64_t *shape); /* i64 in [low, high) */
gl_tensor *gl_eye(int64_t n);
/* A copy converted to dt (float to int truncates toward zero). Differentiable f32->f32 only. */
gl_tensor *gl_to_dtype(gl_tensor *x, gl_dtype dt);
/* In place, no autograd: copies src (same numel, any dtype) into dst. */
gl_status gl_copy_(gl_tensor *dst, const gl_tensor *src);
gl_status gl_fill_(gl_tensor *dst, double value);

#endif
