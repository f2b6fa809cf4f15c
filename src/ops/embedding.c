/* Embedding lookup: out[..., C] = weight[ids[...], :], weight [V, C].
 * Backward scatter-adds each row of dout into dweight at its id (llm.c's
 * encoder_backward). Each thread owns a range of columns and visits the
 * rows in order, so repeated ids never race and every sum has the same
 * order whatever the thread count. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/tape.h"
#include "core/interrupt.h"
#include "ops/nnops.h"

static inline int64_t id_at(const gl_tensor *ids, int64_t i)
{
    return ids->dtype == GL_I64 ? ((const int64_t *)gl_tensor_data(ids))[i]
                                : ((const int32_t *)gl_tensor_data(ids))[i];
}

/* Saved: ids. dweight [V, C] += rows of dout [R, C]. */
static gl_status embedding_backward(gl_node *nd)
{
    float *dw;
    gl_status st = gl_node_grad(nd, 0, &dw);
    if (st != GL_OK || !dw) return st;
    const gl_tensor *ids = nd->saved[0];
    int64_t C = nd->inputs[0]->shape[1], R = ids->numel;
    const float *g = gl_tensor_f32(nd->gout);
#pragma omp parallel if (R * C > 32768)
    {
        int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
        int64_t per = ((C + nt - 1) / nt + 15) / 16 * 16, j0 = t * per, j1 = j0 + per < C ? j0 + per : C;
        for (int64_t r = 0; r < R && j0 < j1; r++) {
            float *d = dw + id_at(ids, r) * C;
            const float *gr = g + r * C;
#pragma omp simd
            for (int64_t j = j0; j < j1; j++) d[j] += gr[j];
        }
    }
    return GL_OK;
}

gl_tensor *gl_embedding(gl_tensor *weight, gl_tensor *ids)
{
    char s1[128], s2[128];
    if (gl_interrupt_poll("embedding")) return NULL;
    if (weight->dtype != GL_F32 || weight->ndim != 2)
        return gl_error_null(GL_EINVAL, "embedding: weight must be a 2-D f32 tensor [V, C], got %s %s",
                             gl_dtype_name(weight->dtype), gl_tensor_shape_str(weight, s1, sizeof s1));
    if (ids->dtype != GL_I64 && ids->dtype != GL_I32)
        return gl_error_null(GL_EINVAL, "embedding: ids must be i64 or i32, got %s (convert with :long())",
                             gl_dtype_name(ids->dtype));
    if (ids->ndim >= GL_MAX_DIMS)
        return gl_error_null(GL_EINVAL, "embedding: ids of shape %s have too many dims (at most %d)",
                             gl_tensor_shape_str(ids, s1, sizeof s1), GL_MAX_DIMS - 1);
    int64_t V = weight->shape[0], C = weight->shape[1], R = ids->numel;
    for (int64_t r = 0; r < R; r++) {
        int64_t id = id_at(ids, r);
        if (id < 0 || id >= V)
            return gl_error_null(GL_EINVAL, "embedding: id %lld (at position %lld of ids %s) is out of range for %lld rows of weight %s",
                                 (long long)id, (long long)r + 1, gl_tensor_shape_str(ids, s1, sizeof s1),
                                 (long long)V, gl_tensor_shape_str(weight, s2, sizeof s2));
    }
    int64_t shape[GL_MAX_DIMS];
    for (int k = 0; k < ids->ndim; k++) shape[k] = ids->shape[k];
    shape[ids->ndim] = C;
    gl_tensor *out = gl_tensor_empty(GL_F32, ids->ndim + 1, shape);
    if (!out) return NULL;
    const float *w = gl_tensor_f32(weight);
    float *o = gl_tensor_f32(out);
#pragma omp parallel for if (R * C > 32768) schedule(static)
    for (int64_t r = 0; r < R; r++) memcpy(o + r * C, w + id_at(ids, r) * C, (size_t)C * sizeof *o);
    gl_node *nd;
    if (gl_autograd_record(&nd, out, "embedding", embedding_backward, 1, &weight) != GL_OK) goto fail;
    if (nd && gl_node_save(nd, 0, ids) != GL_OK) goto fail;
    return out;
fail:
    gl_tensor_release(out);
    return NULL;
}
