/* Rotary position embeddings (RoPE) in the Hugging Face LLaMA convention
 * ("rotate_half"): the HS features of a head split into halves, and feature
 * i is rotated with feature i + HS/2 by the angle pos * theta^(-2i/HS),
 * i < HS/2:
 *     out[i]        = x[i] cos - x[i + HS/2] sin
 *     out[i + HS/2] = x[i + HS/2] cos + x[i] sin
 * llama2.c checkpoints (and Meta's original code) rotate interleaved pairs
 * (2i, 2i + 1) instead. Only this convention is implemented: the llama2.c
 * loader permutes the q and k projection weights into it, as Hugging Face's
 * conversion script does.
 *
 * Angles are computed as torch does for HF models (inverse frequencies and
 * pos * inv_freq rounded to f32), so results match HF to f32 rounding. */
#ifndef GL_OPS_ROPE_H
#define GL_OPS_ROPE_H

#include <stdint.h>

#include "core/error.h"
#include "core/tensor.h"

/* x [..., T, HS] (e.g. [B,H,T,HS]; HS even, f32): row t along dim -2 sits at
 * position offset + t. Recorded for autograd; backward is the inverse
 * rotation. */
gl_tensor *gl_rope(gl_tensor *x, int64_t offset, float theta);

/* In place, for the decode path: n positions pos0 .. pos0 + n - 1 of H heads;
 * head h of position t at x[t * row_stride + h * HS]. No autograd. */
gl_status gl_rope_inplace(float *x, int64_t n, int64_t H, int64_t HS, int64_t row_stride, int64_t pos0,
                          float theta);

#endif
