#include "ops/broadcast.h"

#include <string.h>

gl_status gl_broadcast_shapes(const char *op, const gl_tensor *a, const gl_tensor *b, gl_broadcast *bc)
{
    int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
    memset(bc, 0, sizeof *bc);
    bc->ndim = nd;
    int64_t sa = 1, sb = 1;
    for (int k = nd - 1; k >= 0; k--) {
        int ka = k - (nd - a->ndim), kb = k - (nd - b->ndim);
        int64_t da = ka >= 0 ? a->shape[ka] : 1;
        int64_t db = kb >= 0 ? b->shape[kb] : 1;
        if (da != db && da != 1 && db != 1) {
            char s1[128], s2[128];
            return gl_error(GL_EINVAL, "%s: shapes %s and %s cannot broadcast (dim %d: %lld vs %lld)", op,
                            gl_tensor_shape_str(a, s1, sizeof s1), gl_tensor_shape_str(b, s2, sizeof s2),
                            k - nd, (long long)da, (long long)db);
        }
        bc->shape[k] = da > db ? da : db;
        if (da == 0 || db == 0) bc->shape[k] = 0;
        bc->stride_a[k] = da == 1 ? 0 : sa;
        bc->stride_b[k] = db == 1 ? 0 : sb;
        sa *= da;
        sb *= db;
    }
    bc->numel = gl_shape_numel(nd, bc->shape);
    return GL_OK;
}

void gl_broadcast_rows(const gl_broadcast *bc, gl_broadcast_row_fn fn, void *ctx)
{
    if (bc->numel == 0) return;
    int nd = bc->ndim;
    if (nd == 0) {
        fn(ctx, 0, 0, 0, 1, 0, 0);
        return;
    }
    int64_t n = bc->shape[nd - 1];
    int64_t rows = bc->numel / n;
    int64_t idx[GL_MAX_DIMS] = {0};
    int64_t oa = 0, ob = 0;
    for (int64_t r = 0; r < rows; r++) {
        fn(ctx, oa, ob, r * n, n, bc->stride_a[nd - 1], bc->stride_b[nd - 1]);
        /* odometer over the leading dims */
        for (int k = nd - 2; k >= 0; k--) {
            idx[k]++;
            oa += bc->stride_a[k];
            ob += bc->stride_b[k];
            if (idx[k] < bc->shape[k]) break;
            oa -= bc->stride_a[k] * idx[k];
            ob -= bc->stride_b[k] * idx[k];
            idx[k] = 0;
        }
    }
}

typedef struct {
    float *dst;
    const float *src;
    int which;
} reduce_ctx;

static void reduce_row(void *p, int64_t oa, int64_t ob, int64_t oo, int64_t n, int64_t sa, int64_t sb)
{
    reduce_ctx *c = p;
    int64_t od = c->which ? ob : oa, sd = c->which ? sb : sa;
    float *d = c->dst + od;
    const float *s = c->src + oo;
    if (sd == 0) {
        float acc = 0.0f;
        for (int64_t j = 0; j < n; j++) acc += s[j];
        d[0] += acc;
    } else {
        for (int64_t j = 0; j < n; j++) d[j] += s[j];
    }
}

void gl_broadcast_reduce_add(const gl_broadcast *bc, int which, float *dst, const float *src)
{
    reduce_ctx c = {dst, src, which};
    gl_broadcast_rows(bc, reduce_row, &c);
}
