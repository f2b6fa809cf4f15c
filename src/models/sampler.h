/* Choosing the next token from one row of logits [V] (raw floats, no autograd).
 *
 * The filters run in this fixed order:
 *   1. repetition penalty  (CTRL / Hugging Face: each distinct token of the
 *      history has a positive logit divided by the penalty, a negative one
 *      multiplied by it)
 *   2. temperature         (logits / T; T = 0 means greedy)
 *   3. top_k               (keep the k largest logits)
 *   4. top_p               (keep the smallest set of most probable tokens
 *      whose probability sums to at least p; probabilities of what survived 3)
 *   5. min_p               (keep tokens with probability >= min_p times the
 *      largest probability)
 *   6. sample              (one uniform draw over what is left, renormalized)
 * Greedy is the plain argmax of the logits after step 1 (which is off by
 * default): no temperature, filter or draw; ties go to the lowest id.
 * Defaults: temperature 1, top_k 0 (off), top_p 1 (off), min_p 0 (off),
 * repetition_penalty 1 (off), greedy false.
 *
 * Dimension letters: V vocabulary size, K candidates kept. */
#ifndef GL_MODELS_SAMPLER_H
#define GL_MODELS_SAMPLER_H

#include <stdbool.h>
#include <stdint.h>

#include "core/error.h"
#include "core/rng.h"

typedef struct {
    double temperature;
    int64_t top_k;
    double top_p;
    double min_p;
    double repetition_penalty;
    bool greedy;
} gl_sampler_config;

/* The defaults listed above. */
gl_sampler_config gl_sampler_config_default(void);
/* Checks ranges; the error names the field (e.g. "sample: top_p must be in (0, 1], got 1.5"). */
gl_status gl_sampler_config_check(const gl_sampler_config *cfg);

/* A sampler owns scratch space for one vocabulary size, so drawing
 * allocates nothing. Not thread-safe: one per thread. */
typedef struct gl_sampler gl_sampler;
gl_sampler *gl_sampler_new(const gl_sampler_config *cfg, int64_t vocab);
void gl_sampler_free(gl_sampler *s);
const gl_sampler_config *gl_sampler_config_of(const gl_sampler *s);
int64_t gl_sampler_vocab(const gl_sampler *s);

/* logits [V] -> *id in [0, V). history [n_history] holds the ids the
 * repetition penalty applies to (ignored when the penalty is 1; ids outside
 * [0, V) are an error). Draws one uniform number, from rng when given (a
 * private stream: the genlab stream is left untouched and rng advances) or
 * from the genlab stream otherwise; greedy draws nothing. Fails on NaN or +inf logits
 * or when every logit is -inf. */
gl_status gl_sampler_sample(gl_sampler *s, const float *logits, const int64_t *history, int64_t n_history,
                            gl_rng_state *rng, int64_t *id);

/* A private stream seeded like gl_rng_seed(seed), without touching the genlab stream. */
void gl_sampler_rng_seed(gl_rng_state *rng, uint64_t seed);

/* out [V] = log softmax of logits [V] (in double precision internally). */
void gl_log_softmax_row(float *out, const float *logits, int64_t V);

/* The k most probable tokens of softmax(logits) [V], most probable first
 * (ties: lower id first): ids [k], probs [k]. Requires 1 <= k <= V. */
gl_status gl_softmax_topk_row(const float *logits, int64_t V, int64_t k, int64_t *ids, float *probs);

#endif
