/* Inverted dropout: out = x * mask / (1 - p), mask[i] = 0 with probability p.
 * The mask is drawn serially from the genlab RNG (32 bits per element, two
 * per draw) before the parallel multiply, so one seed gives the same mask
 * whatever the thread count. Backward: dx += dout * mask / (1 - p). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/tape.h"
#include "core/interrupt.h"
#include "core/rng.h"
#include "ops/nnops.h"

/* x passes unchanged (eval mode, p == 0). */
static gl_status identity_backward(gl_node *nd)
{
    float *dx;
    gl_status st = gl_node_grad(nd, 0, &dx);
    if (st != GL_OK || !dx) return st;
    const float *g = gl_tensor_f32(nd->gout);
    int64_t n = nd->out->numel;
#pragma omp parallel for simd if (n > 32768) schedule(static)
    for (int64_t i = 0; i < n; i++) dx[i] += g[i];
    return GL_OK;
}

/* extra: the keep mask, one byte per element. f[0] = 1 / (1 - p). */
static gl_status dropout_backward(gl_node *nd)
{
    float *dx;
    gl_status st = gl_node_grad(nd, 0, &dx);
    if (st != GL_OK || !dx) return st;
    const float *g = gl_tensor_f32(nd->gout);
    const uint8_t *keep = nd->extra;
    float scale = (float)nd->f[0];
    int64_t n = nd->out->numel;
#pragma omp parallel for simd if (n > 32768) schedule(static)
    for (int64_t i = 0; i < n; i++) dx[i] += g[i] * ((float)keep[i] * scale);
    return GL_OK;
}

gl_tensor *gl_dropout(gl_tensor *x, float p, bool training)
{
    if (gl_interrupt_poll("dropout")) return NULL;
    if (x->dtype != GL_F32)
        return gl_error_null(GL_EINVAL, "dropout: expected an f32 tensor, got %s", gl_dtype_name(x->dtype));
    if (!(p >= 0.0f && p < 1.0f))
        return gl_error_null(GL_EINVAL, "dropout: p must be in [0, 1), got %g", (double)p);
    /* A copy even as identity: every op returns a fresh tensor. */
    gl_tensor *out = gl_tensor_new_like(x);
    if (!out) return NULL;
    int64_t n = x->numel;
    const float *xs = gl_tensor_f32(x);
    float *o = gl_tensor_f32(out);
    gl_node *nd;
    if (!training || p == 0.0f) {
        memcpy(o, xs, gl_tensor_nbytes(x));
        if (gl_autograd_record(&nd, out, "dropout", identity_backward, 1, &x) != GL_OK) goto fail;
        return out;
    }
    uint8_t *keep = malloc((size_t)n + 1);
    if (!keep) {
        gl_error(GL_ENOMEM, "dropout: out of memory for a mask of %lld elements", (long long)n);
        goto fail;
    }
    /* drop when the 32-bit draw is below p * 2^32 */
    uint32_t cut = (uint32_t)((double)p * 4294967296.0);
    for (int64_t i = 0; i < n; i += 2) {
        uint64_t u = gl_rng_u64();
        keep[i] = (uint32_t)u >= cut;
        if (i + 1 < n) keep[i + 1] = (uint32_t)(u >> 32) >= cut;
    }
    float scale = 1.0f / (1.0f - p);
#pragma omp parallel for simd if (n > 32768) schedule(static)
    for (int64_t i = 0; i < n; i++) o[i] = xs[i] * ((float)keep[i] * scale); /* x * mask, as torch: NaN stays NaN */
    if (gl_autograd_record(&nd, out, "dropout", dropout_backward, 1, &x) != GL_OK) {
        free(keep);
        goto fail;
    }
    if (nd) {
        nd->extra = keep;
        nd->f[0] = scale;
    } else {
        free(keep);
    }
    return out;
fail:
    gl_tensor_release(out);
    return NULL;
}
