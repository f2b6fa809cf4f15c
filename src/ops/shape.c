/* Shape and indexing ops, forward and backward side by side.
 *
 * Vocabulary: an op along dim d sees x as [outer, n, inner] with n =
 * shape[d], outer the product of the dims before d and inner of those after.
 * reshape, and narrow/select when outer == 1 (the slice is contiguous), are
 * views; everything else copies. Backward formulas (g = dL/dout):
 *   reshape, clone:       gx += g (same element order)
 *   permute/transpose:    gx += permute(g, inverse)
 *   narrow/select:        gx[outer, start + j, inner] += g[outer, j, inner]
 *   index_select:         gx[outer, ids[j], inner] += g[outer, j, inner]
 *   cat:                  each input gets its slice of g
 *   expand:               gx += g summed over the broadcast dims
 *   gather:               gx[.., ids[e], ..] += g[e]
 *   scatter_add:          gx += g, gsrc[e] += g[.., ids[e], ..]
 *   masked_fill:          gx += g where the mask is 0
 *   where:                ga += g where cond, gb += g elsewhere (summed over broadcasts)
 *   tril/triu:            gx += g inside the kept triangle */
#include "ops/shape.h"

#include <stdlib.h>
#include <string.h>

#include "autograd/tape.h"
#include "core/interrupt.h"

#define PAR_MIN 32768 /* elements below which loops stay serial */

/* ---- helpers ------------------------------------------------------------ */

static void around(const gl_tensor *t, int dim, int64_t *outer, int64_t *inner)
{
    *outer = 1;
    *inner = 1;
    for (int k = 0; k < dim; k++) *outer *= t->shape[k];
    for (int k = dim + 1; k < t->ndim; k++) *inner *= t->shape[k];
}

static void strides_of(int nd, const int64_t *shape, int64_t *st)
{
    int64_t s = 1;
    for (int k = nd - 1; k >= 0; k--) {
        st[k] = s;
        s *= shape[k];
    }
}

static gl_status check_dim(const char *op, const gl_tensor *x, int dim)
{
    if (dim >= 0 && dim < x->ndim) return GL_OK;
    char s[128];
    return gl_error(GL_EINVAL, "%s: dim %d out of range for shape %s (0-based, %d dims)", op, dim,
                    gl_tensor_shape_str(x, s, sizeof s), x->ndim);
}

static inline int64_t id_at(const gl_tensor *ids, int64_t k)
{
    const void *d = gl_tensor_data(ids);
    return ids->dtype == GL_I64 ? ((const int64_t *)d)[k] : ((const int32_t *)d)[k];
}

/* ids must be i32/i64 with every value in [0, n). */
static gl_status check_ids(const char *op, const gl_tensor *ids, int64_t n)
{
    if (ids->dtype != GL_I64 && ids->dtype != GL_I32)
        return gl_error(GL_EINVAL, "%s: ids must be i64 or i32, got %s", op, gl_dtype_name(ids->dtype));
    for (int64_t k = 0; k < ids->numel; k++) {
        int64_t v = id_at(ids, k);
        if (v < 0 || v >= n)
            return gl_error(GL_EINVAL, "%s: id %lld out of range [0, %lld) (ids are 0-based)", op, (long long)v,
                            (long long)n);
    }
    return GL_OK;
}

static inline bool truthy(const gl_tensor *t, int64_t i) { return gl_tensor_get(t, i) != 0.0; }

/* Copies element si of src to element di of dst; both of element size esz. */
static inline void copy_elem(void *dst, int64_t di, const void *src, int64_t si, size_t esz)
{
    memcpy((char *)dst + (size_t)di * esz, (const char *)src + (size_t)si * esz, esz);
}

/* Records out's node; on failure releases out and sets it to NULL. */
static gl_node *record(gl_tensor **out, const char *op, gl_backward_fn bw, int n, gl_tensor *const *ins)
{
    gl_node *nd = NULL;
    if (*out && gl_autograd_record(&nd, *out, op, bw, n, ins) != GL_OK) {
        gl_tensor_release(*out);
        *out = NULL;
    }
    return nd;
}

/* Saves t in slot, or releases out and returns NULL. */
static gl_tensor *save_or_fail(gl_node *nd, int slot, const gl_tensor *t, gl_tensor *out)
{
    if (nd && gl_node_save(nd, slot, t) != GL_OK) {
        gl_tensor_release(out);
        return NULL;
    }
    return out;
}

/* ---- broadcast walk over up to three operands ---------------------------- */

/* The output shape and, per operand, its element stride for each output dim
 * (0 where broadcast). Work goes in rows of the last dim so that forward
 * loops can run in parallel. */
typedef struct {
    int nd, n;
    int64_t shape[GL_MAX_DIMS];
    int64_t numel, rows, last;
    int64_t st[3][GL_MAX_DIMS];
    int64_t lst[3]; /* stride along the last dim */
} walk;

/* With target NULL the output shape is the broadcast of all operands;
 * otherwise every operand must broadcast to exactly target. */
static gl_status walk_init(walk *w, const char *op, int n, gl_tensor *const *ts, int tnd, const int64_t *target)
{
    char s1[128], s2[128];
    memset(w, 0, sizeof *w);
    w->n = n;
    if (target) {
        w->nd = tnd;
        memcpy(w->shape, target, (size_t)tnd * sizeof *target);
        for (int i = 0; i < n; i++) {
            bool ok = ts[i]->ndim <= tnd;
            for (int k = 0; ok && k < ts[i]->ndim; k++) {
                int64_t d = ts[i]->shape[k], want = target[k + tnd - ts[i]->ndim];
                ok = d == want || d == 1;
            }
            if (!ok)
                return gl_error(GL_EINVAL, "%s: shape %s cannot be broadcast to %s", op,
                                gl_tensor_shape_str(ts[i], s1, sizeof s1), gl_shape_str(tnd, target, s2, sizeof s2));
        }
    } else {
        for (int i = 0; i < n; i++)
            if (ts[i]->ndim > w->nd) w->nd = ts[i]->ndim;
        for (int k = 0; k < w->nd; k++) {
            int64_t size = 1;
            for (int i = 0; i < n; i++) {
                int kt = k - (w->nd - ts[i]->ndim);
                int64_t d = kt >= 0 ? ts[i]->shape[kt] : 1;
                if (d == 1) continue;
                if (size != 1 && size != d)
                    return gl_error(GL_EINVAL, "%s: shapes %s and %s cannot broadcast", op,
                                    gl_tensor_shape_str(ts[0], s1, sizeof s1),
                                    gl_tensor_shape_str(ts[i], s2, sizeof s2));
                size = d;
            }
            w->shape[k] = size;
        }
    }
    for (int i = 0; i < n; i++) {
        int64_t s = 1;
        for (int k = ts[i]->ndim - 1; k >= 0; k--) {
            int ko = k + w->nd - ts[i]->ndim;
            w->st[i][ko] = ts[i]->shape[k] == 1 ? 0 : s;
            s *= ts[i]->shape[k];
        }
        w->lst[i] = w->nd ? w->st[i][w->nd - 1] : 0;
    }
    w->numel = gl_shape_numel(w->nd, w->shape);
    w->last = w->nd ? w->shape[w->nd - 1] : 1;
    w->rows = w->last ? w->numel / w->last : 0;
    return GL_OK;
}

/* Each operand's offset at the start of row r. */
static void walk_row(const walk *w, int64_t r, int64_t *off)
{
    for (int i = 0; i < w->n; i++) off[i] = 0;
    for (int k = w->nd - 2; k >= 0; k--) {
        int64_t ik = r % w->shape[k];
        r /= w->shape[k];
        for (int i = 0; i < w->n; i++) off[i] += ik * w->st[i][k];
    }
}

/* ---- reshape and clone: same elements, same order ------------------------ */

static gl_status identity_backward(gl_node *nd)
{
    float *gx;
    bool taken;
    gl_status st = gl_node_grad_take(nd, 0, &taken);
    if (st != GL_OK || taken || (st = gl_node_grad(nd, 0, &gx)) != GL_OK || !gx) return st;
    const float *g = gl_tensor_f32(nd->gout);
    int64_t n = nd->gout->numel;
#pragma omp parallel for if (n > PAR_MIN) schedule(static)
    for (int64_t j = 0; j < n; j++) gx[j] += g[j];
    return GL_OK;
}

gl_tensor *gl_reshape(gl_tensor *x, int ndim, const int64_t *shape)
{
    char s1[128], s2[128];
    if (gl_interrupt_poll("reshape")) return NULL;
    if (ndim < 0 || ndim > GL_MAX_DIMS)
        return gl_error_null(GL_EINVAL, "reshape: %d dims (at most %d are supported)", ndim, GL_MAX_DIMS);
    int64_t s[GL_MAX_DIMS];
    int infer = -1;
    for (int k = 0; k < ndim; k++) {
        s[k] = shape[k];
        if (shape[k] == -1) {
            if (infer >= 0) return gl_error_null(GL_EINVAL, "reshape: only one dim can be -1");
            infer = k;
            s[k] = 1;
        }
    }
    int64_t known = gl_shape_numel(ndim, s); /* -1 if some size is negative or the product overflows */
    bool ok = known >= 0;
    if (ok && infer >= 0) {
        ok = known > 0 && x->numel % known == 0;
        s[infer] = ok ? x->numel / known : 0;
    }
    if (!ok || gl_shape_numel(ndim, s) != x->numel)
        return gl_error_null(GL_EINVAL, "reshape: shape %s is invalid for a tensor of shape %s (%lld elements)",
                             gl_shape_str(ndim, shape, s1, sizeof s1), gl_tensor_shape_str(x, s2, sizeof s2),
                             (long long)x->numel);
    gl_tensor *out = gl_tensor_from_storage(x->storage, x->offset, x->dtype, ndim, s);
    record(&out, "reshape", identity_backward, 1, &x);
    return out;
}

gl_tensor *gl_clone(gl_tensor *x)
{
    if (gl_interrupt_poll("clone")) return NULL;
    gl_tensor *out = gl_tensor_clone_data(x);
    record(&out, "clone", identity_backward, 1, &x);
    return out;
}

/* ---- permute and transpose ----------------------------------------------- */

/* One row of a permute: d[j] = s[j * sl], or += for f32 when add. */
static inline void permute_row(char *d, const char *s, size_t esz, int64_t n, int64_t sl, bool add)
{
    if (add) {
        float *restrict df = (float *)d;
        const float *restrict sf = (const float *)s;
        if (sl == 1) {
#pragma omp simd
            for (int64_t j = 0; j < n; j++) df[j] += sf[j];
        } else {
            for (int64_t j = 0; j < n; j++) df[j] += sf[j * sl];
        }
    } else if (sl == 1) {
        memcpy(d, s, (size_t)n * esz);
    } else if (esz == 4) {
        uint32_t *restrict du = (uint32_t *)d;
        const uint32_t *restrict su = (const uint32_t *)s;
        for (int64_t j = 0; j < n; j++) du[j] = su[j * sl];
    } else {
        for (int64_t j = 0; j < n; j++) copy_elem(d, j, s, j * sl, esz);
    }
}

/* dst (dst dim k = src dim perm[k]) = src, or += src for f32 when add.
 * Dims of size 1 are dropped and dst neighbours that are also neighbours in
 * src are merged, so the walk runs over few, long rows. Rows go in chunks:
 * each chunk finds its first row's src offset by division and the rest by an
 * odometer (a division per dim per row cost more than a 32-float row copy). */
static void permute_walk(void *dst, const void *src, size_t esz, int nd, const int64_t *sshape, const int *perm,
                         bool add)
{
    enum { CHUNK = 64 }; /* rows */
    int64_t sst[GL_MAX_DIMS], dsh[GL_MAX_DIMS], st[GL_MAX_DIMS], numel = 1;
    strides_of(nd, sshape, sst);
    int m = 0;
    for (int k = 0; k < nd; k++) {
        int64_t n = sshape[perm[k]], s = sst[perm[k]];
        numel *= n;
        if (n == 1) continue;
        if (m > 0 && st[m - 1] == s * n) { /* dims m-1 and k are adjacent in src too */
            dsh[m - 1] *= n;
            st[m - 1] = s;
            continue;
        }
        dsh[m] = n;
        st[m++] = s;
    }
    if (numel == 0) return;
    if (m == 0) { /* one element */
        dsh[0] = st[0] = 1;
        m = 1;
    }
    int64_t last = dsh[m - 1], sl = st[m - 1], rows = numel / last, nchunks = (rows + CHUNK - 1) / CHUNK;
#pragma omp parallel for if (numel > PAR_MIN) schedule(static)
    for (int64_t c = 0; c < nchunks; c++) {
        int64_t idx[GL_MAX_DIMS], base = 0, rem = c * CHUNK, r1 = (c + 1) * CHUNK < rows ? (c + 1) * CHUNK : rows;
        for (int k = m - 2; k >= 0; k--) {
            idx[k] = rem % dsh[k];
            rem /= dsh[k];
            base += idx[k] * st[k];
        }
        for (int64_t r = c * CHUNK; r < r1; r++) {
            permute_row((char *)dst + (size_t)(r * last) * esz, (const char *)src + (size_t)base * esz, esz, last, sl,
                        add);
            for (int k = m - 2; k >= 0; k--) { /* next row: odometer over dims 0..m-2 */
                base += st[k];
                if (++idx[k] < dsh[k]) break;
                base -= st[k] * dsh[k];
                idx[k] = 0;
            }
        }
    }
}

static gl_status permute_backward(gl_node *nd)
{
    float *gx;
    bool fresh;
    gl_status st = gl_node_grad_init(nd, 0, &gx, &fresh);
    if (st != GL_OK || !gx) return st;
    int n = nd->inputs[0]->ndim, inv[GL_MAX_DIMS];
    for (int k = 0; k < n; k++) inv[nd->i[k]] = k;
    permute_walk(gx, gl_tensor_f32(nd->gout), sizeof(float), n, nd->gout->shape, inv, !fresh);
    return GL_OK;
}

static gl_tensor *permute_op(const char *op, gl_tensor *x, const int *perm)
{
    if (gl_interrupt_poll(op)) return NULL;
    int n = x->ndim;
    bool seen[GL_MAX_DIMS] = {false};
    int64_t shape[GL_MAX_DIMS];
    for (int k = 0; k < n; k++) {
        if (perm[k] < 0 || perm[k] >= n || seen[perm[k]]) {
            char s[128];
            return gl_error_null(GL_EINVAL, "%s: dims are not a permutation of the %d dims of shape %s", op, n,
                                 gl_tensor_shape_str(x, s, sizeof s));
        }
        seen[perm[k]] = true;
        shape[k] = x->shape[perm[k]];
    }
    gl_tensor *out = gl_tensor_new(x->dtype, n, shape);
    if (!out) return NULL;
    permute_walk(gl_tensor_data(out), gl_tensor_data(x), gl_dtype_size(x->dtype), n, x->shape, perm, false);
    gl_node *nd = record(&out, op, permute_backward, 1, &x);
    if (nd)
        for (int k = 0; k < n; k++) nd->i[k] = perm[k];
    return out;
}

gl_tensor *gl_permute(gl_tensor *x, const int *perm) { return permute_op("permute", x, perm); }

gl_tensor *gl_transpose(gl_tensor *x, int d0, int d1)
{
    int nd = x->ndim ? x->ndim : 1; /* a 0-dim tensor transposes its one "dim" with itself */
    if (d0 < 0 || d0 >= nd || d1 < 0 || d1 >= nd) {
        char s[128];
        return gl_error_null(GL_EINVAL, "transpose: dims %d and %d out of range for shape %s (0-based)", d0, d1,
                             gl_tensor_shape_str(x, s, sizeof s));
    }
    int perm[GL_MAX_DIMS];
    for (int k = 0; k < x->ndim; k++) perm[k] = k;
    if (x->ndim) {
        perm[d0] = d1;
        perm[d1] = d0;
    }
    return permute_op("transpose", x, perm);
}

/* ---- narrow and select ------------------------------------------------------ */

static gl_status slice_backward(gl_node *nd)
{
    float *gx;
    bool fresh;
    gl_status st = gl_node_grad_init(nd, 0, &gx, &fresh);
    if (st != GL_OK || !gx) return st;
    gl_tensor *x = nd->inputs[0];
    int dim = (int)nd->i[0];
    int64_t start = nd->i[1], len = nd->i[2], outer, inner, n = x->shape[dim];
    around(x, dim, &outer, &inner);
    const float *g = gl_tensor_f32(nd->gout);
    int64_t block = len * inner;
#pragma omp parallel for if (outer * n * inner > PAR_MIN) schedule(static)
    for (int64_t o = 0; o < outer; o++) {
        float *restrict d = gx + (o * n + start) * inner;
        const float *restrict s = g + o * block;
        if (fresh) { /* a new buffer: zeros outside the slice, g inside */
            memset(gx + o * n * inner, 0, (size_t)(start * inner) * sizeof *gx);
            memcpy(d, s, (size_t)block * sizeof *d);
            memset(d + block, 0, (size_t)((n - start - len) * inner) * sizeof *gx);
        } else {
#pragma omp simd
            for (int64_t j = 0; j < block; j++) d[j] += s[j];
        }
    }
    return GL_OK;
}

/* Positions start..start+len-1 of dim; keep = false drops the dim (len 1). */
static gl_tensor *slice(const char *op, gl_tensor *x, int dim, int64_t start, int64_t len, bool keep)
{
    char s[128];
    if (gl_interrupt_poll(op) || check_dim(op, x, dim) != GL_OK) return NULL;
    int64_t n = x->shape[dim], outer, inner;
    if (start < 0 || len < 0 || start > n || len > n - start)
        return gl_error_null(GL_EINVAL, "%s: positions %lld..%lld (0-based) out of range for dim %d of shape %s", op,
                             (long long)start, (long long)(start + len - 1), dim, gl_tensor_shape_str(x, s, sizeof s));
    around(x, dim, &outer, &inner);
    int64_t shape[GL_MAX_DIMS];
    int ond = 0;
    for (int k = 0; k < x->ndim; k++)
        if (k != dim || keep) shape[ond++] = k == dim ? len : x->shape[k];
    size_t esz = gl_dtype_size(x->dtype);
    gl_tensor *out;
    if (outer == 1) {
        out = gl_tensor_from_storage(x->storage, x->offset + (size_t)(start * inner) * esz, x->dtype, ond, shape);
    } else {
        out = gl_tensor_new(x->dtype, ond, shape);
        if (!out) return NULL;
        char *d = gl_tensor_data(out);
        const char *src = gl_tensor_data(x);
        size_t block = (size_t)(len * inner) * esz;
#pragma omp parallel for if (out->numel > PAR_MIN) schedule(static)
        for (int64_t o = 0; o < (block ? outer : 0); o++)
            memcpy(d + (size_t)o * block, src + (size_t)((o * n + start) * inner) * esz, block);
    }
    gl_node *nd = record(&out, op, slice_backward, 1, &x);
    if (nd) {
        nd->i[0] = dim;
        nd->i[1] = start;
        nd->i[2] = len;
    }
    return out;
}

gl_tensor *gl_narrow(gl_tensor *x, int dim, int64_t start, int64_t length)
{
    return slice("narrow", x, dim, start, length, true);
}

gl_tensor *gl_select(gl_tensor *x, int dim, int64_t i)
{
    if (check_dim("select", x, dim) != GL_OK) return NULL;
    if (i < 0 || i >= x->shape[dim]) {
        char s[128];
        return gl_error_null(GL_EINVAL, "select: position %lld (0-based) out of range for dim %d of shape %s",
                             (long long)i, dim, gl_tensor_shape_str(x, s, sizeof s));
    }
    return slice("select", x, dim, i, 1, false);
}

/* ---- index_select ---------------------------------------------------------- */

static gl_status index_select_backward(gl_node *nd)
{
    float *gx;
    gl_status st = gl_node_grad(nd, 0, &gx);
    if (st != GL_OK || !gx) return st;
    gl_tensor *x = nd->inputs[0], *ids = nd->saved[0];
    int dim = (int)nd->i[0];
    int64_t outer, inner, n = x->shape[dim], m = ids->numel;
    around(x, dim, &outer, &inner);
    const float *g = gl_tensor_f32(nd->gout);
    /* rows of different o never collide; repeated ids within one o are summed serially */
#pragma omp parallel for if (outer * m * inner > PAR_MIN) schedule(static)
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < m; j++) {
            float *d = gx + (o * n + id_at(ids, j)) * inner;
            const float *s = g + (o * m + j) * inner;
            for (int64_t e = 0; e < inner; e++) d[e] += s[e];
        }
    return GL_OK;
}

gl_tensor *gl_index_select(gl_tensor *x, int dim, gl_tensor *ids)
{
    char s[128];
    if (gl_interrupt_poll("index") || check_dim("index", x, dim) != GL_OK) return NULL;
    if (ids->ndim > 1)
        return gl_error_null(GL_EINVAL, "index: ids must be 1-D, got shape %s", gl_tensor_shape_str(ids, s, sizeof s));
    if (check_ids("index", ids, x->shape[dim]) != GL_OK) return NULL;
    int64_t outer, inner, n = x->shape[dim], m = ids->numel, shape[GL_MAX_DIMS];
    around(x, dim, &outer, &inner);
    memcpy(shape, x->shape, sizeof shape);
    shape[dim] = m;
    gl_tensor *out = gl_tensor_new(x->dtype, x->ndim, shape);
    if (!out) return NULL;
    size_t esz = gl_dtype_size(x->dtype), row = (size_t)inner * esz;
    char *d = gl_tensor_data(out);
    const char *src = gl_tensor_data(x);
#pragma omp parallel for if (out->numel > PAR_MIN) schedule(static)
    for (int64_t o = 0; o < (row ? outer : 0); o++)
        for (int64_t j = 0; j < m; j++)
            memcpy(d + (size_t)(o * m + j) * row, src + (size_t)(o * n + id_at(ids, j)) * row, row);
    gl_node *nd = record(&out, "index", index_select_backward, 1, &x);
    if (nd) nd->i[0] = dim;
    return save_or_fail(nd, 0, ids, out);
}

/* ---- cat and stack ------------------------------------------------------------ */

static gl_status cat_backward(gl_node *nd)
{
    int dim = (int)nd->i[0];
    int64_t outer, inner, total = nd->gout->shape[dim], at = 0;
    around(nd->gout, dim, &outer, &inner);
    const float *g = gl_tensor_f32(nd->gout);
    for (int k = 0; k < nd->n_inputs; k++) {
        float *gx;
        gl_status st = gl_node_grad(nd, k, &gx);
        if (st != GL_OK) return st;
        int64_t len = nd->inputs[k]->shape[dim], block = len * inner;
        if (gx)
            for (int64_t o = 0; o < outer; o++) {
                const float *s = g + (o * total + at) * inner;
                for (int64_t j = 0; j < block; j++) gx[o * block + j] += s[j];
            }
        at += len;
    }
    return GL_OK;
}

/* Concatenates validated inputs in one node (n <= GL_NODE_MAX_INPUTS when recording). */
static gl_tensor *cat_direct(int n, gl_tensor *const *xs, int dim)
{
    int64_t shape[GL_MAX_DIMS], outer, inner;
    memcpy(shape, xs[0]->shape, sizeof shape);
    shape[dim] = 0;
    for (int k = 0; k < n; k++) shape[dim] += xs[k]->shape[dim];
    gl_tensor *out = gl_tensor_new(xs[0]->dtype, xs[0]->ndim, shape);
    if (!out) return NULL;
    around(out, dim, &outer, &inner);
    size_t esz = gl_dtype_size(out->dtype), orow = (size_t)(shape[dim] * inner) * esz;
    char *d = gl_tensor_data(out);
#pragma omp parallel for if (out->numel > PAR_MIN) schedule(static)
    for (int64_t o = 0; o < (out->numel ? outer : 0); o++) {
        size_t at = (size_t)o * orow;
        for (int k = 0; k < n; k++) {
            size_t block = (size_t)(xs[k]->shape[dim] * inner) * esz;
            if (block) memcpy(d + at, (const char *)gl_tensor_data(xs[k]) + (size_t)o * block, block);
            at += block;
        }
    }
    gl_node *nd = record(&out, "cat", cat_backward, n, xs);
    if (nd) nd->i[0] = dim;
    return out;
}

gl_tensor *gl_cat(int n, gl_tensor *const *xs, int dim)
{
    char s1[128], s2[128];
    if (gl_interrupt_poll("cat")) return NULL;
    if (n < 1) return gl_error_null(GL_EINVAL, "cat: needs at least one tensor");
    if (check_dim("cat", xs[0], dim) != GL_OK) return NULL;
    for (int k = 1; k < n; k++) {
        bool same = xs[k]->ndim == xs[0]->ndim;
        for (int d = 0; same && d < xs[0]->ndim; d++) same = d == dim || xs[k]->shape[d] == xs[0]->shape[d];
        if (!same)
            return gl_error_null(GL_EINVAL,
                                 "cat: tensor %d has shape %s but tensor 1 has %s; shapes must match except in the "
                                 "concatenated dim",
                                 k + 1, gl_tensor_shape_str(xs[k], s1, sizeof s1),
                                 gl_tensor_shape_str(xs[0], s2, sizeof s2));
        if (xs[k]->dtype != xs[0]->dtype)
            return gl_error_null(GL_EINVAL, "cat: tensor %d is %s but tensor 1 is %s", k + 1,
                                 gl_dtype_name(xs[k]->dtype), gl_dtype_name(xs[0]->dtype));
    }
    if (n <= GL_NODE_MAX_INPUTS || !gl_autograd_needed(n, xs)) return cat_direct(n, xs, dim);
    /* A node holds at most GL_NODE_MAX_INPUTS inputs: concatenate groups, then the groups. */
    int groups = (n + GL_NODE_MAX_INPUTS - 1) / GL_NODE_MAX_INPUTS;
    gl_tensor **parts = calloc((size_t)groups, sizeof *parts);
    if (!parts) return gl_error_null(GL_ENOMEM, "cat: out of memory");
    gl_tensor *out = NULL;
    int made = 0;
    for (; made < groups; made++) {
        int first = made * GL_NODE_MAX_INPUTS, m = n - first < GL_NODE_MAX_INPUTS ? n - first : GL_NODE_MAX_INPUTS;
        if (!(parts[made] = cat_direct(m, xs + first, dim))) break;
    }
    if (made == groups) out = gl_cat(groups, parts, dim);
    for (int k = 0; k < made; k++) gl_tensor_release(parts[k]);
    free(parts);
    return out;
}

gl_tensor *gl_stack(int n, gl_tensor *const *xs, int dim)
{
    char s1[128], s2[128];
    if (gl_interrupt_poll("stack")) return NULL;
    if (n < 1) return gl_error_null(GL_EINVAL, "stack: needs at least one tensor");
    int nd = xs[0]->ndim;
    if (dim < 0 || dim > nd)
        return gl_error_null(GL_EINVAL, "stack: dim %d out of range for tensors of shape %s (0..%d)", dim,
                             gl_tensor_shape_str(xs[0], s1, sizeof s1), nd);
    if (nd + 1 > GL_MAX_DIMS)
        return gl_error_null(GL_EINVAL, "stack: result would have %d dims (at most %d)", nd + 1, GL_MAX_DIMS);
    for (int k = 1; k < n; k++)
        if (!gl_shape_equal(xs[k]->ndim, xs[k]->shape, nd, xs[0]->shape))
            return gl_error_null(GL_EINVAL, "stack: tensor %d has shape %s but tensor 1 has %s; shapes must be equal",
                                 k + 1, gl_tensor_shape_str(xs[k], s1, sizeof s1),
                                 gl_tensor_shape_str(xs[0], s2, sizeof s2));
    /* stack = cat of views with a size-1 dim inserted */
    int64_t shape[GL_MAX_DIMS];
    for (int k = 0, j = 0; k <= nd; k++) shape[k] = k == dim ? 1 : xs[0]->shape[j++];
    gl_tensor **views = calloc((size_t)n, sizeof *views);
    if (!views) return gl_error_null(GL_ENOMEM, "stack: out of memory");
    gl_tensor *out = NULL;
    int made = 0;
    for (; made < n; made++)
        if (!(views[made] = gl_reshape(xs[made], nd + 1, shape))) break;
    if (made == n) out = gl_cat(n, views, dim);
    for (int k = 0; k < made; k++) gl_tensor_release(views[k]);
    free(views);
    return out;
}

/* ---- expand ------------------------------------------------------------------- */

static gl_status expand_backward(gl_node *nd)
{
    float *gx;
    gl_status st = gl_node_grad(nd, 0, &gx);
    if (st != GL_OK || !gx) return st;
    walk w;
    gl_tensor *x = nd->inputs[0];
    if ((st = walk_init(&w, "expand", 1, &x, nd->gout->ndim, nd->gout->shape)) != GL_OK) return st;
    const float *g = gl_tensor_f32(nd->gout);
    for (int64_t r = 0; r < w.rows; r++) { /* serial: broadcast dims collide */
        int64_t off;
        walk_row(&w, r, &off);
        for (int64_t j = 0; j < w.last; j++) gx[off + j * w.lst[0]] += g[r * w.last + j];
    }
    return GL_OK;
}

gl_tensor *gl_expand(gl_tensor *x, int ndim, const int64_t *shape)
{
    if (gl_interrupt_poll("expand")) return NULL;
    char s[128];
    if (ndim < x->ndim || ndim > GL_MAX_DIMS)
        return gl_error_null(GL_EINVAL, "expand: shape %s cannot be expanded to %d dims",
                             gl_tensor_shape_str(x, s, sizeof s), ndim);
    int64_t target[GL_MAX_DIMS];
    for (int k = 0; k < ndim; k++) {
        int kx = k - (ndim - x->ndim);
        target[k] = shape[k] == -1 && kx >= 0 ? x->shape[kx] : shape[k];
        if (target[k] < 0)
            return gl_error_null(GL_EINVAL, "expand: invalid size %lld at dim %d", (long long)shape[k], k);
    }
    walk w;
    if (walk_init(&w, "expand", 1, &x, ndim, target) != GL_OK) return NULL;
    gl_tensor *out = gl_tensor_new(x->dtype, ndim, target);
    if (!out) return NULL;
    size_t esz = gl_dtype_size(x->dtype);
    void *d = gl_tensor_data(out);
    const void *src = gl_tensor_data(x);
#pragma omp parallel for if (w.numel > PAR_MIN) schedule(static)
    for (int64_t r = 0; r < w.rows; r++) {
        int64_t off;
        walk_row(&w, r, &off);
        for (int64_t j = 0; j < w.last; j++) copy_elem(d, r * w.last + j, src, off + j * w.lst[0], esz);
    }
    record(&out, "expand", expand_backward, 1, &x);
    return out;
}

/* ---- gather and scatter_add --------------------------------------------------- */

/* Offset, in a tensor of strides st, of element e of ids with its
 * coordinate along dim replaced by the id (dim < 0: not replaced). */
static int64_t id_offset(const gl_tensor *ids, const int64_t *st, int dim, int64_t e)
{
    int64_t off = 0, rem = e;
    for (int k = ids->ndim - 1; k >= 0; k--) {
        int64_t ik = rem % ids->shape[k];
        rem /= ids->shape[k];
        off += (k == dim ? id_at(ids, e) : ik) * st[k];
    }
    return off;
}

/* ids must have x's ndim and fit inside x (every dim but dim) and inside
 * src (every dim) when src is given. */
static gl_status check_index_shape(const char *op, const gl_tensor *x, int dim, const gl_tensor *ids,
                                   const gl_tensor *src)
{
    char s1[128], s2[128], s3[128];
    if (check_dim(op, x, dim) != GL_OK) return gl_error_code();
    bool ok = ids->ndim == x->ndim && (!src || src->ndim == x->ndim);
    for (int k = 0; ok && k < x->ndim; k++)
        ok = (k == dim || ids->shape[k] <= x->shape[k]) && (!src || ids->shape[k] <= src->shape[k]);
    if (ok) return check_ids(op, ids, x->shape[dim]);
    if (src)
        return gl_error(GL_EINVAL, "%s: ids of shape %s do not fit x %s and src %s (same dims; ids no larger)", op,
                        gl_tensor_shape_str(ids, s1, sizeof s1), gl_tensor_shape_str(x, s2, sizeof s2),
                        gl_tensor_shape_str(src, s3, sizeof s3));
    return gl_error(GL_EINVAL, "%s: ids of shape %s do not fit x of shape %s (same dims; ids no larger outside dim)",
                    op, gl_tensor_shape_str(ids, s1, sizeof s1), gl_tensor_shape_str(x, s2, sizeof s2));
}

static gl_status gather_backward(gl_node *nd)
{
    float *gx;
    gl_status st = gl_node_grad(nd, 0, &gx);
    if (st != GL_OK || !gx) return st;
    gl_tensor *x = nd->inputs[0], *ids = nd->saved[0];
    int64_t xst[GL_MAX_DIMS];
    strides_of(x->ndim, x->shape, xst);
    const float *g = gl_tensor_f32(nd->gout);
    for (int64_t e = 0; e < ids->numel; e++) gx[id_offset(ids, xst, (int)nd->i[0], e)] += g[e];
    return GL_OK;
}

gl_tensor *gl_gather(gl_tensor *x, int dim, gl_tensor *ids)
{
    if (gl_interrupt_poll("gather") || check_index_shape("gather", x, dim, ids, NULL) != GL_OK) return NULL;
    gl_tensor *out = gl_tensor_new(x->dtype, ids->ndim, ids->shape);
    if (!out) return NULL;
    int64_t xst[GL_MAX_DIMS], n = ids->numel;
    strides_of(x->ndim, x->shape, xst);
    size_t esz = gl_dtype_size(x->dtype);
    void *d = gl_tensor_data(out);
    const void *src = gl_tensor_data(x);
#pragma omp parallel for if (n > PAR_MIN) schedule(static)
    for (int64_t e = 0; e < n; e++) copy_elem(d, e, src, id_offset(ids, xst, dim, e), esz);
    gl_node *nd = record(&out, "gather", gather_backward, 1, &x);
    if (nd) nd->i[0] = dim;
    return save_or_fail(nd, 0, ids, out);
}

static gl_status scatter_add_backward(gl_node *nd)
{
    float *gx, *gsrc;
    gl_status st;
    if ((st = gl_node_grad(nd, 0, &gx)) != GL_OK || (st = gl_node_grad(nd, 1, &gsrc)) != GL_OK) return st;
    const float *g = gl_tensor_f32(nd->gout);
    if (gx)
        for (int64_t j = 0; j < nd->gout->numel; j++) gx[j] += g[j];
    if (gsrc) {
        gl_tensor *x = nd->inputs[0], *src = nd->inputs[1], *ids = nd->saved[0];
        int64_t xst[GL_MAX_DIMS], sst[GL_MAX_DIMS];
        strides_of(x->ndim, x->shape, xst);
        strides_of(src->ndim, src->shape, sst);
        int dim = (int)nd->i[0];
        for (int64_t e = 0; e < ids->numel; e++) gsrc[id_offset(ids, sst, -1, e)] += g[id_offset(ids, xst, dim, e)];
    }
    return GL_OK;
}

#define SCATTER_ADD(T)                                                                                           \
    for (int64_t e = 0; e < ids->numel; e++)                                                                     \
        ((T *)d)[id_offset(ids, xst, dim, e)] += ((const T *)s)[id_offset(ids, sst, -1, e)];

gl_tensor *gl_scatter_add(gl_tensor *x, int dim, gl_tensor *ids, gl_tensor *src)
{
    if (gl_interrupt_poll("scatter_add")) return NULL;
    if (src->dtype != x->dtype)
        return gl_error_null(GL_EINVAL, "scatter_add: src is %s but x is %s", gl_dtype_name(src->dtype),
                             gl_dtype_name(x->dtype));
    if (check_index_shape("scatter_add", x, dim, ids, src) != GL_OK) return NULL;
    gl_tensor *out = gl_tensor_clone_data(x);
    if (!out) return NULL;
    int64_t xst[GL_MAX_DIMS], sst[GL_MAX_DIMS];
    strides_of(x->ndim, x->shape, xst);
    strides_of(src->ndim, src->shape, sst);
    void *d = gl_tensor_data(out);
    const void *s = gl_tensor_data(src);
    switch (x->dtype) { /* serial: ids may repeat */
    case GL_F32: SCATTER_ADD(float) break;
    case GL_I32: SCATTER_ADD(int32_t) break;
    case GL_I64: SCATTER_ADD(int64_t) break;
    case GL_U8: SCATTER_ADD(uint8_t) break;
    default: break;
    }
    gl_tensor *ins[2] = {x, src};
    gl_node *nd = record(&out, "scatter_add", scatter_add_backward, 2, ins);
    if (nd) nd->i[0] = dim;
    return save_or_fail(nd, 0, ids, out);
}

/* ---- masked_fill and where ---------------------------------------------------- */

static gl_status masked_fill_backward(gl_node *nd)
{
    float *gx;
    gl_status st = gl_node_grad(nd, 0, &gx);
    if (st != GL_OK || !gx) return st;
    gl_tensor *ts[2] = {nd->inputs[0], nd->saved[0]};
    walk w;
    if ((st = walk_init(&w, "masked_fill", 2, ts, ts[0]->ndim, ts[0]->shape)) != GL_OK) return st;
    const float *g = gl_tensor_f32(nd->gout);
#pragma omp parallel for if (w.numel > PAR_MIN) schedule(static)
    for (int64_t r = 0; r < w.rows; r++) {
        int64_t off[2];
        walk_row(&w, r, off);
        for (int64_t j = 0; j < w.last; j++)
            if (!truthy(ts[1], off[1] + j * w.lst[1])) gx[r * w.last + j] += g[r * w.last + j];
    }
    return GL_OK;
}

gl_tensor *gl_masked_fill(gl_tensor *x, gl_tensor *mask, float value)
{
    if (gl_interrupt_poll("masked_fill")) return NULL;
    gl_tensor *ts[2] = {x, mask};
    walk w;
    if (walk_init(&w, "masked_fill", 2, ts, x->ndim, x->shape) != GL_OK) return NULL;
    gl_tensor *out = gl_tensor_clone_data(x);
    if (!out) return NULL;
#pragma omp parallel for if (w.numel > PAR_MIN) schedule(static)
    for (int64_t r = 0; r < w.rows; r++) {
        int64_t off[2];
        walk_row(&w, r, off);
        for (int64_t j = 0; j < w.last; j++)
            if (truthy(mask, off[1] + j * w.lst[1])) gl_tensor_set(out, r * w.last + j, value);
    }
    gl_node *nd = record(&out, "masked_fill", masked_fill_backward, 1, &x);
    return save_or_fail(nd, 0, mask, out);
}

static gl_status where_backward(gl_node *nd)
{
    float *ga, *gb;
    gl_status st;
    if ((st = gl_node_grad(nd, 0, &ga)) != GL_OK || (st = gl_node_grad(nd, 1, &gb)) != GL_OK) return st;
    gl_tensor *ts[3] = {nd->saved[0], nd->inputs[0], nd->inputs[1]};
    walk w;
    if ((st = walk_init(&w, "where", 3, ts, 0, NULL)) != GL_OK) return st;
    const float *g = gl_tensor_f32(nd->gout);
    for (int64_t r = 0; r < w.rows; r++) { /* serial: broadcast operands collide */
        int64_t off[3];
        walk_row(&w, r, off);
        for (int64_t j = 0; j < w.last; j++) {
            float gj = g[r * w.last + j];
            if (truthy(ts[0], off[0] + j * w.lst[0])) {
                if (ga) ga[off[1] + j * w.lst[1]] += gj;
            } else if (gb) {
                gb[off[2] + j * w.lst[2]] += gj;
            }
        }
    }
    return GL_OK;
}

gl_tensor *gl_where(gl_tensor *cond, gl_tensor *a, gl_tensor *b)
{
    if (gl_interrupt_poll("where")) return NULL;
    if (a->dtype != b->dtype)
        return gl_error_null(GL_EINVAL, "where: a is %s but b is %s; they must have the same dtype",
                             gl_dtype_name(a->dtype), gl_dtype_name(b->dtype));
    gl_tensor *ts[3] = {cond, a, b};
    walk w;
    if (walk_init(&w, "where", 3, ts, 0, NULL) != GL_OK) return NULL;
    gl_tensor *out = gl_tensor_new(a->dtype, w.nd, w.shape);
    if (!out) return NULL;
    size_t esz = gl_dtype_size(a->dtype);
    void *d = gl_tensor_data(out);
    const void *pa = gl_tensor_data(a), *pb = gl_tensor_data(b);
#pragma omp parallel for if (w.numel > PAR_MIN) schedule(static)
    for (int64_t r = 0; r < w.rows; r++) {
        int64_t off[3];
        walk_row(&w, r, off);
        for (int64_t j = 0; j < w.last; j++) {
            if (truthy(cond, off[0] + j * w.lst[0]))
                copy_elem(d, r * w.last + j, pa, off[1] + j * w.lst[1], esz);
            else
                copy_elem(d, r * w.last + j, pb, off[2] + j * w.lst[2], esz);
        }
    }
    gl_tensor *ins[2] = {a, b};
    gl_node *nd = record(&out, "where", where_backward, 2, ins);
    return save_or_fail(nd, 0, cond, out);
}

/* ---- tril and triu -------------------------------------------------------------- */

/* Columns [lo, hi) of row i that the triangle keeps in an R x C matrix. */
static void kept_columns(int64_t i, int64_t C, int64_t k, bool upper, int64_t *lo, int64_t *hi)
{
    if (upper) { /* j - i >= k */
        *lo = i + k < 0 ? 0 : (i + k > C ? C : i + k);
        *hi = C;
    } else { /* j - i <= k */
        *lo = 0;
        *hi = i + k + 1 < 0 ? 0 : (i + k + 1 > C ? C : i + k + 1);
    }
}

static gl_status triangle_backward(gl_node *nd)
{
    float *gx;
    gl_status st = gl_node_grad(nd, 0, &gx);
    if (st != GL_OK || !gx) return st;
    const gl_tensor *x = nd->inputs[0];
    int64_t R = x->shape[x->ndim - 2], C = x->shape[x->ndim - 1], rows = R && C ? x->numel / C : 0;
    const float *g = gl_tensor_f32(nd->gout);
    for (int64_t r = 0; r < rows; r++) {
        int64_t lo, hi;
        kept_columns(r % R, C, nd->i[0], nd->i[1], &lo, &hi);
        for (int64_t j = lo; j < hi; j++) gx[r * C + j] += g[r * C + j];
    }
    return GL_OK;
}

static gl_tensor *triangle(const char *op, gl_tensor *x, int64_t k, bool upper)
{
    if (gl_interrupt_poll(op)) return NULL;
    if (x->ndim < 2) {
        char s[128];
        return gl_error_null(GL_EINVAL, "%s: needs at least 2 dims, got shape %s", op,
                             gl_tensor_shape_str(x, s, sizeof s));
    }
    gl_tensor *out = gl_tensor_new_like(x);
    if (!out) return NULL;
    int64_t R = x->shape[x->ndim - 2], C = x->shape[x->ndim - 1], rows = R && C ? x->numel / C : 0;
    size_t esz = gl_dtype_size(x->dtype);
    char *d = gl_tensor_data(out);
    const char *src = gl_tensor_data(x);
#pragma omp parallel for if (x->numel > PAR_MIN) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        int64_t lo, hi;
        kept_columns(r % R, C, k, upper, &lo, &hi);
        size_t at = (size_t)(r * C + lo) * esz;
        if (hi > lo) memcpy(d + at, src + at, (size_t)(hi - lo) * esz);
    }
    gl_node *nd = record(&out, op, triangle_backward, 1, &x);
    if (nd) {
        nd->i[0] = k;
        nd->i[1] = upper;
    }
    return out;
}

gl_tensor *gl_tril(gl_tensor *x, int64_t k) { return triangle("tril", x, k, false); }
gl_tensor *gl_triu(gl_tensor *x, int64_t k) { return triangle("triu", x, k, true); }

/* ---- one_hot -------------------------------------------------------------------- */

gl_tensor *gl_one_hot(gl_tensor *ids, int64_t n)
{
    if (gl_interrupt_poll("one_hot")) return NULL;
    if (n < 1)
        return gl_error_null(GL_EINVAL, "one_hot: the number of classes must be positive, got %lld", (long long)n);
    if (ids->ndim + 1 > GL_MAX_DIMS)
        return gl_error_null(GL_EINVAL, "one_hot: result would have %d dims (at most %d)", ids->ndim + 1, GL_MAX_DIMS);
    if (check_ids("one_hot", ids, n) != GL_OK) return NULL;
    int64_t shape[GL_MAX_DIMS];
    memcpy(shape, ids->shape, (size_t)ids->ndim * sizeof *shape);
    shape[ids->ndim] = n;
    gl_tensor *out = gl_tensor_new(GL_F32, ids->ndim + 1, shape);
    if (!out) return NULL;
    float *d = gl_tensor_f32(out);
    for (int64_t e = 0; e < ids->numel; e++) d[e * n + id_at(ids, e)] = 1.0f;
    return out;
}

/* ---- comparisons -------------------------------------------------------------- */

typedef enum { CMP_EQ, CMP_NE, CMP_LT, CMP_LE, CMP_GT, CMP_GE } cmp_op;

static inline bool holds(cmp_op op, double x, double y)
{
    switch (op) {
    case CMP_EQ: return x == y;
    case CMP_NE: return x != y;
    case CMP_LT: return x < y;
    case CMP_LE: return x <= y;
    case CMP_GT: return x > y;
    case CMP_GE: return x >= y;
    }
    return false;
}

static gl_tensor *compare(const char *op, cmp_op which, gl_tensor *a, gl_tensor *b)
{
    if (gl_interrupt_poll(op)) return NULL;
    gl_tensor *ts[2] = {a, b};
    walk w;
    if (walk_init(&w, op, 2, ts, 0, NULL) != GL_OK) return NULL;
    gl_tensor *out = gl_tensor_new(GL_U8, w.nd, w.shape);
    if (!out) return NULL;
    uint8_t *d = gl_tensor_data(out);
#pragma omp parallel for if (w.numel > PAR_MIN) schedule(static)
    for (int64_t r = 0; r < w.rows; r++) {
        int64_t off[2];
        walk_row(&w, r, off);
        for (int64_t j = 0; j < w.last; j++) {
            double x = gl_tensor_get(a, off[0] + j * w.lst[0]), y = gl_tensor_get(b, off[1] + j * w.lst[1]);
            d[r * w.last + j] = holds(which, x, y);
        }
    }
    return out;
}

gl_tensor *gl_eq(gl_tensor *a, gl_tensor *b) { return compare("eq", CMP_EQ, a, b); }
gl_tensor *gl_lt(gl_tensor *a, gl_tensor *b) { return compare("lt", CMP_LT, a, b); }
gl_tensor *gl_gt(gl_tensor *a, gl_tensor *b) { return compare("gt", CMP_GT, a, b); }
gl_tensor *gl_ne(gl_tensor *a, gl_tensor *b) { return compare("ne", CMP_NE, a, b); }
gl_tensor *gl_le(gl_tensor *a, gl_tensor *b) { return compare("le", CMP_LE, a, b); }
gl_tensor *gl_ge(gl_tensor *a, gl_tensor *b) { return compare("ge", CMP_GE, a, b); }
