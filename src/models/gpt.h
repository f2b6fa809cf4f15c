/* The decoder-only transformer family in one model: minGPT / nanoGPT /
 * GPT-2, GPT-Neo and LLaMA, selected by gl_gpt_config.
 *
 * Dimension letters: B batch, T time, C channels (n_embd), V vocab,
 * NH query heads, KVH key/value heads, HS head size (C / NH), L layers,
 * F MLP hidden size.
 *
 * A GPT is a gl_module (src/nn/module.h): parameters, state_dict, train/eval
 * and the optimizers work on it like on any module. Its parameter names are
 * documented in gpt.c; src/models/gpt_io.c maps them to and from the
 * Hugging Face layouts and llama2.c checkpoints. */
#ifndef GL_MODELS_GPT_H
#define GL_MODELS_GPT_H

#include <stdbool.h>
#include <stdint.h>

#include "core/tensor.h"
#include "nn/module.h"

typedef enum {
    GL_GPT_GPT2 = 0, /* learned positions, pre-LayerNorm, GELU MLP, biases (minGPT, nanoGPT, GPT-2) */
    GL_GPT_NEO,      /* GPT-2 plus alternating global / local (windowed) attention, no 1/sqrt(HS) scaling */
    GL_GPT_LLAMA     /* RMSNorm, rotary positions, SwiGLU MLP, no biases, grouped-query attention */
} gl_gpt_arch;

typedef struct {
    gl_gpt_arch arch;
    int64_t vocab_size;
    int64_t block_size; /* longest context (learned positions / cache size) */
    int64_t n_layer;
    int64_t n_head;
    int64_t n_kv_head;  /* 0 means n_head */
    int64_t n_embd;
    int64_t n_hidden;   /* MLP hidden size F; 0 means the architecture's default */
    float dropout;      /* embeddings, attention probabilities and residual branches */
    float norm_eps;     /* LayerNorm / RMSNorm epsilon; 0 means the default (1e-5) */
    float rope_theta;   /* LLaMA; 0 means 10000 */
    bool bias;          /* linear layers and LayerNorms have biases (GPT-2 family) */
    bool tie_head;      /* output head shares the token embedding */
    bool gelu_tanh;     /* GPT-2's tanh GELU instead of the exact one (nanoGPT) */
    int64_t window;     /* GPT-Neo local attention window */
    uint64_t local_layers; /* GPT-Neo: bit i set when layer i uses local attention */
} gl_gpt_config;

/* Fills the defaults that 0 stands for and checks the rest; errors name the field. */
gl_status gl_gpt_config_finish(gl_gpt_config *cfg);
/* A GPT with freshly initialized parameters (GPT-2's scheme: N(0, 0.02),
 * residual projections scaled by 1/sqrt(2 L), zero biases, unit norms),
 * drawn from the genlab RNG. */
gl_module *gl_gpt_new(const gl_gpt_config *cfg);
/* The config of a GPT module, or NULL when m is not one. */
const gl_gpt_config *gl_gpt_config_of(const gl_module *m);
/* "gpt2", "neo" or "llama". */
const char *gl_gpt_arch_name(gl_gpt_arch arch);
/* The MLP hidden size that n_hidden = 0 stands for: 4 C, or for LLaMA
 * llama2.c's rule (2/3 of 4 C rounded up to a multiple of 256). */
int64_t gl_gpt_default_hidden(const gl_gpt_config *cfg);

/* ids [B,T] (i32/i64, T <= block_size) -> logits [B,T,V], recorded for
 * autograd. When targets [B,T] is given, *loss is the mean cross-entropy
 * over positions whose target is not -1. */
gl_tensor *gl_gpt_forward(gl_module *m, gl_tensor *ids, gl_tensor *targets, gl_tensor **loss);

/* Training and evaluation steps that split the rows of the batch between
 * the threads (gl_threads_get), each running the model single-threaded on
 * its share (src/models/gpt_parallel.c); one thread, one row, or a batch of
 * more than 2^20 activations a layer (B T C) runs whole. ids and targets
 * are [B,T] as for gl_gpt_forward. It records whether or not recording is
 * on (gl_grad_enabled).
 * forward_backward: *loss is the mean cross-entropy over the targets that
 * are not -1, and scale times its gradient is added into the parameters'
 * grad. The numbers are gl_gpt_forward's and gl_backward's up to float
 * rounding (sums over rows add in another order); with dropout, each share
 * draws its masks from a stream seeded from the genlab RNG. After a failure
 * the gradients hold a partial sum, as after a failed gl_backward. A share
 * whose targets are all -1 adds nothing to the mean.
 * loss: the same mean, forward only, nothing recorded (evaluation). */
gl_status gl_gpt_forward_backward(gl_module *m, gl_tensor *ids, gl_tensor *targets, float scale, double *loss);
gl_status gl_gpt_loss(gl_module *m, gl_tensor *ids, gl_tensor *targets, double *loss);

/* Incremental inference with a KV cache; no autograd, no allocation per token. */
typedef struct gl_gpt_session gl_gpt_session;
/* capacity: positions the cache holds, at most block_size. */
gl_gpt_session *gl_gpt_session_new(gl_module *m, int64_t capacity);
void gl_gpt_session_free(gl_gpt_session *s);
void gl_gpt_session_reset(gl_gpt_session *s);
int64_t gl_gpt_session_length(const gl_gpt_session *s);
int64_t gl_gpt_session_capacity(const gl_gpt_session *s);
/* Appends n tokens. logits receives [n, V] when all_positions, else the
 * last position's [V]. Fails (and appends nothing) when the cache would overflow. */
gl_status gl_gpt_session_append(gl_gpt_session *s, const int64_t *ids, int64_t n, float *logits,
                                bool all_positions);
/* Announces that the caller refills the cache, when full, with its last
 * keep tokens (after a reset): the session then computes those tokens'
 * entries for the next window as they are appended one at a time, and the
 * refill's append reuses them (same results, up to float rounding). Only
 * takes effect on models whose weights stay in cache; keep 0 turns it off. */
gl_status gl_gpt_session_slide(gl_gpt_session *s, int64_t keep);

#endif
