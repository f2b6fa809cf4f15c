/* Optimizers over parameter groups: SGD, Adam and AdamW, bit for bit as
 * torch.optim 1.13 (Debian's python3-torch, which makes the project's
 * fixtures) computes them on the CPU: the same float32 operations in the same
 * order, a * b + c rounded once where ATen's kernels use FMA, and the bias
 * corrections in double as Python computes them:
 *
 *   SGD    d = g + wd p;  b = d on the first step, else b = momentum b + (1 - dampening) d;
 *          d = nesterov ? d + momentum b : b (when momentum != 0);  p = p - lr d
 *   Adam   t += 1;  d = g + wd p;  m = beta1 m + (1 - beta1) d;  v = beta2 v + (1 - beta2) d d;
 *          p = p + (-lr / (1 - beta1^t)) m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
 *   AdamW  as Adam with d = g, after the decoupled decay p = p (1 - lr wd)
 * (torch 2.1 and later update m with lerp_, which rounds differently in the
 * last bit now and then.)
 *
 * A step skips parameters that have no gradient or do not require one
 * (frozen), like torch.optim skips p.grad == None. Each group has its own
 * hyperparameters (a learning-rate schedule sets lr on every group; a
 * no-decay group for biases and norms sets weight_decay 0). A tensor may
 * appear in one group only; repeats within a group are stepped once.
 *
 * The optimizer keeps a reference on each parameter and owns its state
 * (exp_avg, exp_avg_sq, momentum_buffer, step per parameter), which
 * gl_optim_state_dict exports for checkpoints under these names, with i
 * counting parameters across groups in order from 0 and g counting groups:
 *   tensors  state.<i>.exp_avg, state.<i>.exp_avg_sq, state.<i>.momentum_buffer
 *   scalars  state.<i>.step, group.<g>.params (count), group.<g>.lr, group.<g>.weight_decay,
 *            and per kind group.<g>.momentum / dampening / nesterov (0 or 1) or beta1 / beta2 / eps */
#ifndef GL_OPTIM_OPTIM_H
#define GL_OPTIM_OPTIM_H

#include <stdbool.h>
#include <stdint.h>

#include "core/error.h"
#include "core/tensor.h"
#include "nn/module.h"

typedef enum { GL_OPTIM_SGD = 0, GL_OPTIM_ADAM, GL_OPTIM_ADAMW } gl_optim_kind;

typedef struct gl_optim_hparams {
    double lr, weight_decay;
    double momentum, dampening; /* SGD */
    bool nesterov;              /* SGD */
    double beta1, beta2, eps;   /* Adam, AdamW */
} gl_optim_hparams;

typedef struct gl_optim_param_state {
    gl_tensor *exp_avg, *exp_avg_sq, *momentum_buffer; /* NULL until the first step that needs them */
    int64_t step;                                      /* steps taken by this parameter */
} gl_optim_param_state;

typedef struct gl_param_group {
    gl_tensor_list params;
    gl_optim_hparams h;
    gl_optim_param_state *state; /* params.n entries */
} gl_param_group;

typedef struct gl_optim {
    gl_optim_kind kind;
    int64_t n_groups, cap_groups;
    gl_param_group *groups;
} gl_optim;

/* Lists of (name, number) for the scalar half of a state dict. */
typedef struct gl_named_scalar {
    char *name;
    double v;
} gl_named_scalar;

typedef struct gl_scalar_list {
    int64_t n, cap;
    gl_named_scalar *items;
} gl_scalar_list;

#define GL_SCALAR_LIST_INIT {0, 0, NULL}

gl_status gl_scalar_list_add(gl_scalar_list *l, const char *name, double v);
/* Whether name is in l; its value into *v. */
bool gl_scalar_list_find(const gl_scalar_list *l, const char *name, double *v);
void gl_scalar_list_clear(gl_scalar_list *l);

/* "SGD", "Adam", "AdamW". */
const char *gl_optim_kind_name(gl_optim_kind kind);
/* torch.optim's defaults: lr 1e-3; SGD momentum 0, dampening 0; Adam(W) betas
 * (0.9, 0.999), eps 1e-8; weight_decay 0, or 1e-2 for AdamW. */
gl_optim_hparams gl_optim_defaults(gl_optim_kind kind);
/* torch.optim's range checks, e.g. "adam: beta2 must be in [0, 1) (got 1)". */
gl_status gl_optim_check_hparams(gl_optim_kind kind, const gl_optim_hparams *h);

/* An optimizer with no groups; NULL when out of memory. */
gl_optim *gl_optim_new(gl_optim_kind kind);
void gl_optim_free(gl_optim *o);
/* Adds a group of f32 leaf tensors (names are kept but not needed). */
gl_status gl_optim_add_group(gl_optim *o, const gl_tensor_list *params, const gl_optim_hparams *h);

gl_status gl_optim_step(gl_optim *o);
/* Drops every parameter's gradient (PyTorch's set_to_none). */
void gl_optim_zero_grad(gl_optim *o);
/* Sets lr on every group. */
void gl_optim_set_lr(gl_optim *o, double lr);

/* Appends the state, sharing the state tensors (no copy), to the two lists. */
gl_status gl_optim_state_dict(const gl_optim *o, gl_tensor_list *tensors, gl_scalar_list *scalars);
/* Replaces the state and group hyperparameters by copies of those given,
 * after checking every name, count and shape; on error nothing changes. */
gl_status gl_optim_load_state_dict(gl_optim *o, const gl_tensor_list *tensors, const gl_scalar_list *scalars);

/* torch.nn.utils.clip_grad_norm_: the norm_type norm (INFINITY for max-abs)
 * of all gradients together into *total_norm, then every gradient scaled by
 * min(1, max_norm / (total_norm + 1e-6)). Parameters without a gradient or
 * frozen are left out. */
gl_status gl_clip_grad_norm(const gl_tensor_list *params, double max_norm, double norm_type, double *total_norm);

#endif
