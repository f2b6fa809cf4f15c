/* GPT checkpoints in and out:
 *
 *  - Hugging Face: a directory (or its config.json / model.safetensors)
 *    of GPT2LMHeadModel, GPTNeoForCausalLM or LlamaForCausalLM. Every
 *    tensor's shape is checked against config.json; names may carry or
 *    lack the "transformer." / "model." prefix; GPT-2's Conv1D weights
 *    ([in, out]) are transposed, GPT-Neo's q/k/v are fused into c_attn, and
 *    a missing lm_head.weight means a tied head.
 *  - llama2.c `.bin` files (io/llama2c.h), q/k rows permuted from its
 *    interleaved RoPE pairs to HF's rotate_half halves.
 *  - genlab's own checkpoint: a safetensors file whose metadata holds the
 *    config ("genlab.gpt", JSON) and optionally a tokenizer ("genlab.tokenizer"),
 *    with the tensors under the model's own names (gpt.c).
 *
 * Export writes HF GPT-2 (arch gpt2) or LLaMA (arch llama) layouts:
 * config.json + model.safetensors in a directory. */
#ifndef GL_MODELS_GPT_IO_H
#define GL_MODELS_GPT_IO_H

#include "core/error.h"
#include "models/gpt.h"
#include "nn/module.h"

typedef struct {
    char format[16]; /* "hf", "llama2c" or "genlab" */
    char *tokenizer; /* malloc'd tokenizer text stored with a genlab checkpoint, or NULL */
    char *dir;       /* malloc'd directory the weights came from (to find tokenizer files) */
} gl_gpt_load_info;

/* Any of the formats above, detected from path. info may be NULL; else
 * release it with gl_gpt_load_info_free. */
gl_module *gl_gpt_load(const char *path, gl_gpt_load_info *info);
void gl_gpt_load_info_free(gl_gpt_load_info *info);

gl_module *gl_gpt_load_hf(const char *path);
gl_module *gl_gpt_load_llama2c(const char *path);

/* genlab checkpoint: config + tensors (+ tokenizer text, may be NULL), atomically. */
gl_status gl_gpt_save(gl_module *m, const char *path, const char *tokenizer);

/* HF layout in dir (created if missing): config.json + model.safetensors. */
gl_status gl_gpt_export_hf(gl_module *m, const char *dir);

/* The config as a JSON object text (malloc'd), genlab's field names. */
char *gl_gpt_config_to_json(const gl_gpt_config *cfg);
/* Parses gl_gpt_config_to_json's text; errors name the field. */
gl_status gl_gpt_config_from_json(const char *text, gl_gpt_config *cfg);

#endif
