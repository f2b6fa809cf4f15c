/* llama2.c checkpoints (github.com/karpathy/llama2.c, `export.py --version 0`,
 * the format run.c reads):
 *
 *   7 x int32   dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len
 *               (vocab_size < 0: the classifier is stored separately, not shared)
 *   float32     token_embedding_table [V, dim]
 *               rms_att_weight [L, dim]
 *               wq [L, dim, dim]  wk [L, KVD, dim]  wv [L, KVD, dim]  wo [L, dim, dim]
 *               rms_ffn_weight [L, dim]
 *               w1 [L, F, dim]  w2 [L, dim, F]  w3 [L, F, dim]
 *               rms_final_weight [dim]
 *               freq_cis_real, freq_cis_imag [seq_len, HS/2] each (skipped)
 *               wcls [V, dim]   only when vocab_size < 0
 *
 * (KVD = n_kv_heads * dim / n_heads, F = hidden_dim.) Weights are [out, in]
 * like torch.nn.Linear; q/k rows keep Meta's interleaved RoPE pairs. Every
 * size is overflow-checked and the total must equal the file size. */
#ifndef GL_IO_LLAMA2C_H
#define GL_IO_LLAMA2C_H

#include <stdbool.h>
#include <stdint.h>

#include "core/error.h"
#include "nn/module.h"

typedef struct {
    int64_t dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
    bool shared_classifier;
} gl_llama2c_config;

/* Reads path into *cfg and appends the tensors to out under the names above
 * ("wcls" only when not shared). On error out is left empty. */
gl_status gl_llama2c_load(const char *path, gl_llama2c_config *cfg, gl_tensor_list *out);

#endif
