/* Ordering (topk, sort) and sampling (multinomial).
 *
 * topk and sort share one kernel: each line along dim is ordered by a total
 * order (NaN above every number, as in PyTorch; ties by position, which makes
 * sort stable), the k first are selected with a bounded heap and then sorted.
 * Backward of the values (g = dL/dvalues): gx[.., idx[j], ..] += g[.., j, ..].
 *
 * multinomial draws serially from the genlab RNG, one row after the other,
 * so samples depend only on the seed. */
#include "ops/sort.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/tape.h"
#include "core/interrupt.h"
#include "core/rng.h"

typedef struct {
    double v;
    int64_t i;
} entry;

static inline int cmp_values(double a, double b)
{
    bool na = a != a, nb = b != b;
    if (na || nb) return (int)na - (int)nb;
    return (a > b) - (a < b);
}

/* qsort orders: negative when *pa comes first. */
static int order_desc(const void *pa, const void *pb)
{
    const entry *a = pa, *b = pb;
    int c = cmp_values(b->v, a->v);
    return c ? c : (a->i > b->i) - (a->i < b->i);
}

static int order_asc(const void *pa, const void *pb)
{
    const entry *a = pa, *b = pb;
    int c = cmp_values(a->v, b->v);
    return c ? c : (a->i > b->i) - (a->i < b->i);
}

typedef int (*order_fn)(const void *, const void *);

/* Heap whose root is the entry that comes last in the order. */
static void sift_down(entry *h, int64_t n, int64_t i, order_fn cmp)
{
    for (;;) {
        int64_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && cmp(&h[l], &h[m]) > 0) m = l;
        if (r < n && cmp(&h[r], &h[m]) > 0) m = r;
        if (m == i) return;
        entry t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

/* Leaves the k first of buf[0..n) in order in buf[0..k). */
static void select_first(entry *buf, int64_t n, int64_t k, order_fn cmp)
{
    if (k == 0) return;
    for (int64_t i = k / 2; i-- > 0;) sift_down(buf, k, i, cmp);
    for (int64_t j = k; j < n; j++)
        if (cmp(&buf[j], &buf[0]) < 0) {
            buf[0] = buf[j];
            sift_down(buf, k, 0, cmp);
        }
    qsort(buf, (size_t)k, sizeof *buf, cmp);
}

static gl_status ordered_backward(gl_node *nd)
{
    float *gx;
    gl_status st = gl_node_grad(nd, 0, &gx);
    if (st != GL_OK || !gx) return st;
    gl_tensor *idx = nd->saved[0];
    int dim = (int)nd->i[0];
    int64_t n = nd->inputs[0]->shape[dim], k = idx->shape[dim], inner = 1, total = idx->numel;
    for (int d = dim + 1; d < idx->ndim; d++) inner *= idx->shape[d];
    const float *g = gl_tensor_f32(nd->gout);
    const int64_t *id = gl_tensor_data(idx);
    /* the ids of one line are distinct, so elements never collide */
#pragma omp parallel for if (total > 32768) schedule(static)
    for (int64_t e = 0; e < total; e++) {
        int64_t in = e % inner, o = e / (inner * k);
        gx[(o * n + id[e]) * inner + in] += g[e];
    }
    return GL_OK;
}

static gl_tensor *ordered(const char *op, gl_tensor *x, int64_t k, int dim, bool largest, gl_tensor **indices)
{
    char s[128];
    if (indices) *indices = NULL;
    if (gl_interrupt_poll(op)) return NULL;
    if (dim < 0 || dim >= x->ndim)
        return gl_error_null(GL_EINVAL, "%s: dim %d out of range for shape %s (0-based, %d dims)", op, dim,
                             gl_tensor_shape_str(x, s, sizeof s), x->ndim);
    int64_t n = x->shape[dim], outer = 1, inner = 1;
    if (k < 0 || k > n)
        return gl_error_null(GL_EINVAL, "%s: k = %lld out of range for a dim of size %lld (shape %s)", op,
                             (long long)k, (long long)n, gl_tensor_shape_str(x, s, sizeof s));
    for (int d = 0; d < dim; d++) outer *= x->shape[d];
    for (int d = dim + 1; d < x->ndim; d++) inner *= x->shape[d];
    int64_t shape[GL_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[dim] = k;
    gl_tensor *vals = gl_tensor_new(x->dtype, x->ndim, shape), *idx = gl_tensor_new(GL_I64, x->ndim, shape);
    if (!vals || !idx) goto fail;
    size_t esz = gl_dtype_size(x->dtype);
    const char *src = gl_tensor_data(x);
    char *dv = gl_tensor_data(vals);
    int64_t *di = gl_tensor_data(idx), lines = outer * inner;
    order_fn cmp = largest ? order_desc : order_asc;
    bool nomem = false;
#pragma omp parallel if (lines > 1 && n * lines > 32768)
    {
        entry *buf = malloc((size_t)(n ? n : 1) * sizeof *buf);
        if (!buf) {
#pragma omp atomic write
            nomem = true;
        }
#pragma omp for schedule(dynamic, 8)
        for (int64_t line = 0; line < lines; line++) {
            if (!buf) continue;
            int64_t o = line / inner, in = line % inner, base = o * n * inner + in, obase = o * k * inner + in;
            for (int64_t j = 0; j < n; j++) buf[j] = (entry){gl_tensor_get(x, base + j * inner), j};
            select_first(buf, n, k, cmp);
            for (int64_t j = 0; j < k; j++) {
                int64_t at = obase + j * inner;
                memcpy(dv + (size_t)at * esz, src + (size_t)(base + buf[j].i * inner) * esz, esz);
                di[at] = buf[j].i;
            }
        }
        free(buf);
    }
    if (nomem) {
        gl_error(GL_ENOMEM, "%s: out of memory", op);
        goto fail;
    }
    gl_node *nd;
    if (gl_autograd_record(&nd, vals, op, ordered_backward, 1, &x) != GL_OK) goto fail;
    if (nd) {
        nd->i[0] = dim;
        if (gl_node_save(nd, 0, idx) != GL_OK) goto fail;
    }
    if (indices)
        *indices = idx;
    else
        gl_tensor_release(idx);
    return vals;
fail:
    gl_tensor_release(vals);
    gl_tensor_release(idx);
    return NULL;
}

gl_tensor *gl_topk(gl_tensor *x, int64_t k, int dim, bool largest, gl_tensor **indices)
{
    return ordered("topk", x, k, dim, largest, indices);
}

gl_tensor *gl_sort(gl_tensor *x, int dim, bool descending, gl_tensor **indices)
{
    if (dim < 0 || dim >= x->ndim) return ordered("sort", x, 0, dim, descending, indices); /* reports the dim */
    return ordered("sort", x, x->shape[dim], dim, descending, indices);
}

/* ---- multinomial ---------------------------------------------------------------- */

/* Checks every row: finite non-negative weights, a positive sum, and enough
 * nonzero categories to draw n without replacement. */
static gl_status check_rows(const gl_tensor *p, int64_t R, int64_t C, int64_t n, bool replacement)
{
    char s[128];
    gl_tensor_shape_str(p, s, sizeof s);
    if (!replacement && n > C)
        return gl_error(GL_EINVAL, "multinomial: cannot draw %lld samples without replacement from %lld categories",
                        (long long)n, (long long)C);
    for (int64_t r = 0; r < R; r++) {
        double sum = 0;
        int64_t nonzero = 0;
        for (int64_t c = 0; c < C; c++) {
            double w = gl_tensor_get(p, r * C + c);
            if (!isfinite(w) || w < 0)
                return gl_error(GL_EINVAL,
                                "multinomial: row %lld of probs %s has weight %g at category %lld (0-based); "
                                "weights must be finite and non-negative",
                                (long long)r + 1, s, w, (long long)c);
            sum += w;
            nonzero += w > 0;
        }
        if (sum <= 0) return gl_error(GL_EINVAL, "multinomial: row %lld of probs %s sums to 0", (long long)r + 1, s);
        if (!replacement && nonzero < n)
            return gl_error(GL_EINVAL,
                            "multinomial: row %lld of probs %s has only %lld categories with nonzero weight, "
                            "cannot draw %lld without replacement",
                            (long long)r + 1, s, (long long)nonzero, (long long)n);
    }
    return GL_OK;
}

/* The category whose cumulative weight first exceeds u (cdf ascending, u <
 * cdf[C-1] in exact arithmetic); rounding past the end picks the last
 * category with weight. */
static int64_t search_cdf(const double *cdf, int64_t C, double u)
{
    int64_t lo = 0, hi = C;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (cdf[mid] > u)
            hi = mid;
        else
            lo = mid + 1;
    }
    if (lo < C) return lo;
    while (lo > 1 && cdf[lo - 1] == cdf[lo - 2]) lo--;
    return lo - 1;
}

gl_tensor *gl_multinomial(gl_tensor *probs, int64_t n, bool replacement)
{
    char s[128];
    if (gl_interrupt_poll("multinomial")) return NULL;
    if (probs->ndim != 1 && probs->ndim != 2)
        return gl_error_null(GL_EINVAL, "multinomial: probs must be [C] or [R, C], got shape %s",
                             gl_tensor_shape_str(probs, s, sizeof s));
    if (n < 0) return gl_error_null(GL_EINVAL, "multinomial: cannot draw %lld samples", (long long)n);
    int64_t C = probs->shape[probs->ndim - 1], R = probs->ndim == 2 ? probs->shape[0] : 1;
    if (C == 0) return gl_error_null(GL_EINVAL, "multinomial: probs has no categories (shape %s)",
                                     gl_tensor_shape_str(probs, s, sizeof s));
    if (check_rows(probs, R, C, n, replacement) != GL_OK) return NULL;
    int64_t shape[2] = {R, n};
    gl_tensor *out = probs->ndim == 2 ? gl_tensor_new(GL_I64, 2, shape) : gl_tensor_new(GL_I64, 1, &n);
    double *w = malloc((size_t)C * sizeof *w);
    if (!out || !w) {
        if (out) gl_error(GL_ENOMEM, "multinomial: out of memory");
        gl_tensor_release(out);
        free(w);
        return NULL;
    }
    int64_t *d = gl_tensor_data(out);
    for (int64_t r = 0; r < R; r++) {
        if (replacement) { /* w holds the cumulative weights */
            double acc = 0;
            for (int64_t c = 0; c < C; c++) w[c] = acc += gl_tensor_get(probs, r * C + c);
            for (int64_t j = 0; j < n; j++) d[r * n + j] = search_cdf(w, C, gl_rng_uniform() * acc);
        } else { /* draw, then zero the drawn category's weight */
            for (int64_t c = 0; c < C; c++) w[c] = gl_tensor_get(probs, r * C + c);
            for (int64_t j = 0; j < n; j++) {
                double total = 0, acc = 0;
                for (int64_t c = 0; c < C; c++) total += w[c];
                double u = gl_rng_uniform() * total;
                int64_t pick = -1;
                for (int64_t c = 0; c < C; c++) {
                    if (w[c] <= 0) continue;
                    pick = c;
                    if ((acc += w[c]) > u) break;
                }
                d[r * n + j] = pick;
                w[pick] = 0;
            }
        }
        if (gl_interrupt_poll("multinomial")) {
            gl_tensor_release(out);
            free(w);
            return NULL;
        }
    }
    free(w);
    return out;
}
