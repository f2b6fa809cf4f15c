/* Parameter initializers, torch.nn.init's formulas. Each one writes into an
 * f32 tensor in place (no autograd), drawing serially from the genlab RNG,
 * so one seed gives the same parameters whatever the thread count.
 *
 * Fans follow PyTorch: for a weight [out, in, k...], fan_in = in * prod(k)
 * and fan_out = out * prod(k); tensors of fewer than 2 dims have no fans. */
#ifndef GL_NN_INIT_H
#define GL_NN_INIT_H

#include "core/error.h"
#include "core/tensor.h"

typedef enum { GL_FAN_IN = 0, GL_FAN_OUT } gl_fan_mode;

gl_status gl_init_uniform(gl_tensor *t, double a, double b);  /* U(a, b) */
gl_status gl_init_normal(gl_tensor *t, double mean, double std);
gl_status gl_init_constant(gl_tensor *t, double value);
gl_status gl_init_zeros(gl_tensor *t);
gl_status gl_init_ones(gl_tensor *t);

gl_status gl_init_fans(const gl_tensor *t, int64_t *fan_in, int64_t *fan_out);
/* torch.nn.init.calculate_gain: linear, conv1d..3d, sigmoid -> 1, tanh -> 5/3,
 * relu -> sqrt(2), leaky_relu -> sqrt(2 / (1 + param^2)) (param < 0 means
 * PyTorch's default slope 0.01), selu -> 3/4. */
gl_status gl_init_gain(const char *nonlinearity, double param, double *gain);

/* U(-b, b) with b = gain * sqrt(6 / (fan_in + fan_out)); N(0, gain * sqrt(2 / (fan_in + fan_out))). */
gl_status gl_init_xavier_uniform(gl_tensor *t, double gain);
gl_status gl_init_xavier_normal(gl_tensor *t, double gain);
/* std = gain(nonlinearity, a) / sqrt(fan); uniform on +-sqrt(3) std, or normal.
 * PyTorch's defaults are a = 0, GL_FAN_IN, "leaky_relu". */
gl_status gl_init_kaiming_uniform(gl_tensor *t, double a, gl_fan_mode mode, const char *nonlinearity);
gl_status gl_init_kaiming_normal(gl_tensor *t, double a, gl_fan_mode mode, const char *nonlinearity);

#endif
