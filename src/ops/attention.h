/* Fused scaled dot-product attention, for training (recorded for autograd)
 * and for decoding with a KV cache (raw floats, no autograd).
 *
 * Dimension letters: B batch, NH query heads, KVH key/value heads (NH is a
 * multiple of KVH: grouped-query attention, query head h reads kv head
 * h / (NH / KVH)), T query positions, S key positions, HS head size.
 *
 * Masking. Query i sits at absolute position i' = i + (S - T): the keys may
 * carry a prefix of S - T earlier positions (a KV cache). Query i attends to
 * key j when
 *     (!causal || j <= i')  and  (window == 0 || i' - j < window)
 * so a window keeps the last `window` positions, itself included (GPT-Neo's
 * local attention). The allowed keys of a row are always one contiguous range.
 *
 * Memory: nothing of size T x S outlives a call. A recorded call keeps q,
 * k, v and two floats per query row (its softmax maximum and 1/sum, 8 *
 * B*NH*T bytes); backward recomputes the probabilities block by block from
 * them (FlashAttention's trade: one more Q K^T product for no B*NH*T*S
 * tensor, 100 MB per layer for B=64, NH=6, T=S=256). Forward and backward
 * work in per-thread scratch of a few rows of S. */
#ifndef GL_OPS_ATTENTION_H
#define GL_OPS_ATTENTION_H

#include <stdbool.h>
#include <stdint.h>

#include "core/error.h"
#include "core/tensor.h"

typedef struct {
    float scale;    /* multiplies q.k: 1/sqrt(HS) normally, 1 for GPT-Neo */
    bool causal;    /* mask future keys (see above) */
    int64_t window; /* 0: no window; else attend to the last `window` positions */
    float dropout;  /* probability of zeroing an attention probability, in [0, 1) */
    bool training;  /* dropout only applies when training */
    const uint64_t *seed; /* NULL: dropout draws its seed from the genlab RNG; else this seed
                             (to compute a call again, as a model's backward may) */
} gl_attention_opts;

/* Causal attention with scale 1/sqrt(HS), no window, no dropout. */
gl_attention_opts gl_attention_opts_default(int64_t HS);

/* q [B,NH,T,HS], k and v [B,KVH,S,HS] (f32) -> out [B,NH,T,HS]:
 * softmax(mask(q k^T * scale)) (dropped out) @ v. Causal attention needs
 * S >= T. Dropout takes one 64-bit draw from the genlab RNG per call and
 * derives every mask element from it and the element's position (a
 * counter-based stream: 16 bits per element, dropped when below p * 2^16),
 * so one seed gives the same result whatever the thread count, and
 * backward regenerates the mask instead of storing it. Backward gives dq,
 * dk, dv; for GQA dk and dv sum over the query heads that share a kv head. */
gl_tensor *gl_attention(gl_tensor *q, gl_tensor *k, gl_tensor *v, const gl_attention_opts *opts);

/* Self-attention straight from a fused projection, as GPT-2's c_attn makes
 * it: qkv [B,T,3C] holds each position's q, k and v (in that order, C =
 * n_head * HS each, heads side by side) -> out [B,T,C], heads side by side
 * as the output projection reads them. The numbers of splitting into heads,
 * gl_attention and merging, without those copies (and without keeping them
 * for backward: the node keeps qkv, which its producer made anyway). */
gl_tensor *gl_attention_qkv(gl_tensor *qkv, int64_t n_head, const gl_attention_opts *opts);

/* Decoding with a KV cache. The cache of one layer keeps keys and values
 * head-major, [KVH, capacity, HS] each: the positions of one head are one
 * contiguous stream, which is what the bandwidth-bound dot products of a
 * decode step read; appending a position writes KVH rows of HS floats.
 *
 * The n new query positions are the last n of the S cached ones (already
 * written into the cache): query t sits at absolute position S - n + t and
 * sees keys per the mask above (causal is implied; opts->causal, dropout and
 * training are ignored). n = 1 is a decode step, n > 1 a prefill.
 * q: query t, head h at q[t * q_stride + h * HS] (q_stride >= NH * HS, so q
 * may be the first NH*HS columns of a fused qkv row); out likewise with
 * out_stride. Softmax is computed online in chunks: no allocation, no
 * scratch. Parallel over (t, h) when the work is large enough. Fails only on
 * bad sizes or an interrupt. */
gl_status gl_attention_decode(float *out, int64_t out_stride, const float *q, int64_t q_stride, int64_t n,
                              const float *k_cache, const float *v_cache, int64_t capacity, int64_t S, int64_t NH,
                              int64_t KVH, int64_t HS, const gl_attention_opts *opts);

#endif
