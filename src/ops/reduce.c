/* Reductions and softmax. Reducing dim d views x as [outer, n, inner]
 * (outer = product of the dims before d, inner = product of those after);
 * the output has outer*inner elements, one per "lane". Lanes are processed
 * in blocks of up to BLK neighbouring inner positions, so every step along n
 * reads BLK contiguous floats; when inner = 1 a lane is a contiguous row.
 * Whole-tensor reductions are the same kernels with outer = inner = 1 and
 * split long rows into fixed chunks, so all threads help and the result does
 * not depend on the thread count. Sums accumulate in double.
 *
 * Backward (g = dL/dout, broadcast back over the reduced dim):
 *   sum: gx += g                mean: gx += g / n
 *   var: gx += g * 2 (x - mean) / (n - correction)
 *   std: gx += g * (x - mean) / ((n - correction) * std)   (0 where std = 0)
 *   max/min over a dim: g goes to the returned index (first extreme);
 *   max_all/min_all: g is shared evenly by all elements equal to the result
 *   logsumexp: gx += g * exp(x - out)
 *   norm p: gx += g * sign(x) |x|^(p-1) / out^(p-1)   (0 where out = 0);
 *           p = inf / -inf shares g evenly among the extreme |x|
 *   softmax: gx += y * (g - sum(g * y))       log_softmax: gx += g - exp(y) * sum(g) */
#include "ops/reduce.h"

#include <math.h>
#include <stdlib.h>

#include "autograd/tape.h"
#include "core/interrupt.h"

#define PARALLEL_MIN 32768 /* elements below which loops stay on one thread */
#define BLK 32             /* inner positions per lane block */
#define CHUNK 65536        /* elements per chunk of a long whole-tensor row */
#define MAX_CHUNKS 256

typedef struct {
    int64_t outer, n, inner;
    int ndim; /* of the output */
    int64_t shape[GL_MAX_DIMS];
} span;

static gl_status check_f32(const char *op, const gl_tensor *x)
{
    if (x->dtype == GL_F32) return GL_OK;
    return gl_error(GL_EINVAL, "%s: expected an f32 tensor, got %s (convert with :float())", op,
                    gl_dtype_name(x->dtype));
}

static gl_status span_dim(const char *op, const gl_tensor *x, int dim, bool keepdim, span *sp)
{
    if (gl_interrupt_poll(op)) return GL_EINTR;
    if (check_f32(op, x) != GL_OK) return GL_EINVAL;
    int d = gl_tensor_dim_index(x, dim);
    if (d < 0) {
        char s[128];
        return gl_error(GL_EINVAL, "%s: dim %d out of range for shape %s", op, dim, gl_tensor_shape_str(x, s, sizeof s));
    }
    *sp = (span){1, 1, 1, 0, {0}};
    if (x->ndim == 0) return GL_OK;
    for (int k = 0; k < d; k++) sp->outer *= x->shape[k];
    sp->n = x->shape[d];
    for (int k = d + 1; k < x->ndim; k++) sp->inner *= x->shape[k];
    for (int k = 0; k < x->ndim; k++) {
        if (k == d && !keepdim) continue;
        sp->shape[sp->ndim++] = k == d ? 1 : x->shape[k];
    }
    return GL_OK;
}

static gl_status span_all(const char *op, const gl_tensor *x, span *sp)
{
    if (gl_interrupt_poll(op)) return GL_EINTR;
    if (check_f32(op, x) != GL_OK) return GL_EINVAL;
    *sp = (span){1, x->numel, 1, 0, {0}};
    return GL_OK;
}

static gl_status need_nonempty(const char *op, const gl_tensor *x, const span *sp)
{
    if (sp->n > 0) return GL_OK;
    char s[128];
    return gl_error(GL_EINVAL, "%s: cannot reduce an empty dim (shape %s)", op, gl_tensor_shape_str(x, s, sizeof s));
}

static int64_t lane_count(const span *sp) { return sp->outer * ((sp->inner + BLK - 1) / BLK); }
static bool big(const span *sp) { return sp->outer * sp->n * sp->inner > PARALLEL_MIN; }

/* Lane block l starts at x + *xo (stride sp->inner along n) and writes out + *oo, w wide. */
static void lane_at(const span *sp, int64_t l, int64_t *xo, int64_t *oo, int *w)
{
    int64_t nb = (sp->inner + BLK - 1) / BLK, o = l / nb, i0 = (l % nb) * BLK;
    *xo = o * sp->n * sp->inner + i0;
    *oo = o * sp->inner + i0;
    *w = (int)(sp->inner - i0 < BLK ? sp->inner - i0 : BLK);
}

/* Chunks of a long contiguous row (outer = inner = 1), fixed by n alone. */
static int64_t chunk_size(int64_t n)
{
    int64_t cs = CHUNK;
    if ((n + cs - 1) / cs > MAX_CHUNKS) cs = (n + MAX_CHUNKS - 1) / MAX_CHUNKS;
    return cs;
}

static gl_tensor *new_out(const span *sp, gl_dtype dt) { return gl_tensor_new(dt, sp->ndim, sp->shape); }

static void node_set_span(gl_node *nd, const span *sp)
{
    nd->i[0] = sp->outer;
    nd->i[1] = sp->n;
    nd->i[2] = sp->inner;
}

static span node_span(const gl_node *nd) { return (span){nd->i[0], nd->i[1], nd->i[2], 0, {0}}; }

/* ---- sum, mean ---------------------------------------------------------- */

/* Contiguous row: eight independent accumulators. */
static double row_sum(const float *x, int64_t n)
{
    double acc[8] = {0};
    int64_t k = 0;
    for (; k + 8 <= n; k += 8)
        for (int j = 0; j < 8; j++) acc[j] += x[k + j];
    for (; k < n; k++) acc[0] += x[k];
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

/* acc[0..w) = sums over n of the lane block at x (stride st). */
static void lane_sum(const float *x, int64_t n, int64_t st, int w, double *acc)
{
    if (st == 1) {
        acc[0] = row_sum(x, n);
        return;
    }
    for (int j = 0; j < w; j++) acc[j] = 0.0;
    for (int64_t k = 0; k < n; k++) {
        const float *r = x + k * st;
        for (int j = 0; j < w; j++) acc[j] += r[j];
    }
}

static double long_row_sum(const float *x, int64_t n)
{
    int64_t cs = chunk_size(n), nc = (n + cs - 1) / cs;
    double part[MAX_CHUNKS];
#pragma omp parallel for if (n > PARALLEL_MIN) schedule(static)
    for (int64_t c = 0; c < nc; c++) part[c] = row_sum(x + c * cs, c == nc - 1 ? n - c * cs : cs);
    double s = 0.0;
    for (int64_t c = 0; c < nc; c++) s += part[c];
    return s;
}

static void sum_forward(const span *sp, const float *x, float *out, double scale)
{
    int64_t lanes = lane_count(sp);
    if (lanes == 1 && sp->inner == 1) {
        out[0] = (float)(long_row_sum(x, sp->n) * scale);
        return;
    }
#pragma omp parallel for if (big(sp)) schedule(static)
    for (int64_t l = 0; l < lanes; l++) {
        int64_t xo, oo;
        int w;
        double acc[BLK];
        lane_at(sp, l, &xo, &oo, &w);
        lane_sum(x + xo, sp->n, sp->inner, w, acc);
        for (int j = 0; j < w; j++) out[oo + j] = (float)(acc[j] * scale);
    }
}

/* gx[o,k,i] += g[o,i] * scale */
static void spread_add(const span *sp, float *gx, const float *g, float scale)
{
    int64_t outer = sp->outer, n = sp->n, inner = sp->inner;
#pragma omp parallel for collapse(2) if (big(sp)) schedule(static)
    for (int64_t o = 0; o < outer; o++)
        for (int64_t k = 0; k < n; k++) {
            float *r = gx + (o * n + k) * inner;
            const float *gr = g + o * inner;
            for (int64_t i = 0; i < inner; i++) r[i] += gr[i] * scale;
        }
}

/* f[0] = scale */
static gl_status sum_backward(gl_node *nd)
{
    float *gx;
    gl_status st = gl_node_grad(nd, 0, &gx);
    if (st != GL_OK || !gx) return st;
    span sp = node_span(nd);
    spread_add(&sp, gx, gl_tensor_f32(nd->gout), (float)nd->f[0]);
    return GL_OK;
}

static gl_tensor *sum_like(const char *op, gl_tensor *x, const span *sp, double scale)
{
    gl_tensor *out = new_out(sp, GL_F32);
    if (!out) return NULL;
    sum_forward(sp, gl_tensor_f32(x), gl_tensor_f32(out), scale);
    gl_node *nd;
    if (gl_autograd_record(&nd, out, op, sum_backward, 1, &x) != GL_OK) {
        gl_tensor_release(out);
        return NULL;
    }
    if (nd) {
        node_set_span(nd, sp);
        nd->f[0] = scale;
    }
    return out;
}

gl_tensor *gl_sum_all(gl_tensor *x)
{
    span sp;
    return span_all("sum", x, &sp) == GL_OK ? sum_like("sum", x, &sp, 1.0) : NULL;
}

gl_tensor *gl_mean_all(gl_tensor *x)
{
    span sp;
    return span_all("mean", x, &sp) == GL_OK ? sum_like("mean", x, &sp, 1.0 / (double)sp.n) : NULL;
}

gl_tensor *gl_sum(gl_tensor *x, int dim, bool keepdim)
{
    span sp;
    return span_dim("sum", x, dim, keepdim, &sp) == GL_OK ? sum_like("sum", x, &sp, 1.0) : NULL;
}

gl_tensor *gl_mean(gl_tensor *x, int dim, bool keepdim)
{
    span sp;
    return span_dim("mean", x, dim, keepdim, &sp) == GL_OK ? sum_like("mean", x, &sp, 1.0 / (double)sp.n) : NULL;
}

/* ---- var, std ------------------------------------------------------------- */

/* Two passes: the mean, then the sum of squared deviations (stable). */
static void lane_moments(const float *x, int64_t n, int64_t st, int w, double *mean, double *ss)
{
    lane_sum(x, n, st, w, mean);
    for (int j = 0; j < w; j++) {
        mean[j] /= (double)n;
        ss[j] = 0.0;
    }
    for (int64_t k = 0; k < n; k++) {
        const float *r = x + k * st;
        for (int j = 0; j < w; j++) {
            double d = r[j] - mean[j];
            ss[j] += d * d;
        }
    }
}

/* saved: x, mean, out. f[0] = n - correction; i[3] = 1 for std. */
static gl_status var_backward(gl_node *nd)
{
    float *gx;
    gl_status st = gl_node_grad(nd, 0, &gx);
    if (st != GL_OK || !gx) return st;
    span sp = node_span(nd);
    const float *x = gl_tensor_f32(nd->saved[0]), *mean = gl_tensor_f32(nd->saved[1]);
    const float *out = gl_tensor_f32(nd->saved[2]), *g = gl_tensor_f32(nd->gout);
    int64_t lanes = sp.outer * sp.inner, n = sp.n, inner = sp.inner;
    float *coef = malloc((size_t)(lanes ? lanes : 1) * sizeof *coef);
    if (!coef) return gl_error(GL_ENOMEM, "%s backward: out of memory", nd->op);
    double dof = nd->f[0];
    for (int64_t l = 0; l < lanes; l++)
        coef[l] = nd->i[3] ? (out[l] == 0.0f ? 0.0f : (float)(g[l] / (dof * out[l]))) : (float)(2.0 * g[l] / dof);
#pragma omp parallel for collapse(2) if (big(&sp)) schedule(static)
    for (int64_t o = 0; o < sp.outer; o++)
        for (int64_t k = 0; k < n; k++) {
            int64_t base = (o * n + k) * inner;
            const float *c = coef + o * inner, *m = mean + o * inner;
            for (int64_t i = 0; i < inner; i++) gx[base + i] += c[i] * (x[base + i] - m[i]);
        }
    free(coef);
    return GL_OK;
}

static gl_tensor *var_like(const char *op, gl_tensor *x, const span *sp, int correction, bool take_sqrt)
{
    gl_tensor *out = new_out(sp, GL_F32), *mean = new_out(sp, GL_F32);
    if (!out || !mean) goto fail;
    double dof = (double)sp->n - correction;
    if (dof < 0) dof = 0; /* as PyTorch: the result is then inf or nan */
    const float *px = gl_tensor_f32(x);
    float *po = gl_tensor_f32(out), *pm = gl_tensor_f32(mean);
    int64_t lanes = lane_count(sp);
#pragma omp parallel for if (big(sp)) schedule(static)
    for (int64_t l = 0; l < lanes; l++) {
        int64_t xo, oo;
        int w;
        double mu[BLK], ss[BLK];
        lane_at(sp, l, &xo, &oo, &w);
        lane_moments(px + xo, sp->n, sp->inner, w, mu, ss);
        for (int j = 0; j < w; j++) {
            double v = ss[j] / dof;
            po[oo + j] = (float)(take_sqrt ? sqrt(v) : v);
            pm[oo + j] = (float)mu[j];
        }
    }
    gl_node *nd;
    if (gl_autograd_record(&nd, out, op, var_backward, 1, &x) != GL_OK) goto fail;
    if (nd) {
        node_set_span(nd, sp);
        nd->f[0] = dof;
        nd->i[3] = take_sqrt;
        if (gl_node_save(nd, 0, x) != GL_OK || gl_node_save(nd, 1, mean) != GL_OK || gl_node_save(nd, 2, out) != GL_OK)
            goto fail;
    }
    gl_tensor_release(mean);
    return out;
fail:
    gl_tensor_release(mean);
    gl_tensor_release(out);
    return NULL;
}

gl_tensor *gl_var(gl_tensor *x, int dim, bool keepdim, int correction)
{
    span sp;
    return span_dim("var", x, dim, keepdim, &sp) == GL_OK ? var_like("var", x, &sp, correction, false) : NULL;
}

gl_tensor *gl_std(gl_tensor *x, int dim, bool keepdim, int correction)
{
    span sp;
    return span_dim("std", x, dim, keepdim, &sp) == GL_OK ? var_like("std", x, &sp, correction, true) : NULL;
}

gl_tensor *gl_var_all(gl_tensor *x, int correction)
{
    span sp;
    return span_all("var", x, &sp) == GL_OK ? var_like("var", x, &sp, correction, false) : NULL;
}

gl_tensor *gl_std_all(gl_tensor *x, int correction)
{
    span sp;
    return span_all("std", x, &sp) == GL_OK ? var_like("std", x, &sp, correction, true) : NULL;
}

/* ---- max, min, argmax, argmin ---------------------------------------------- */

/* Whether v replaces the current extreme b: strictly better (so the first
 * extreme wins ties), or the first NaN (NaN propagates, as in PyTorch). */
static inline bool better(float v, float b, bool want_max)
{
    return (want_max ? v > b : v < b) || (v != v && b == b);
}

static void lane_extreme(const float *x, int64_t n, int64_t st, int w, bool want_max, float *best, int64_t *pos)
{
    for (int j = 0; j < w; j++) {
        best[j] = x[j];
        pos[j] = 0;
    }
    for (int64_t k = 1; k < n; k++) {
        const float *r = x + k * st;
        for (int j = 0; j < w; j++)
            if (better(r[j], best[j], want_max)) {
                best[j] = r[j];
                pos[j] = k;
            }
    }
}

/* vals (may be NULL) and pos get one entry per lane; sp->n > 0. */
static void extreme_forward(const span *sp, const float *x, bool want_max, float *vals, int64_t *pos)
{
    int64_t lanes = lane_count(sp);
    if (lanes == 1 && sp->inner == 1) {
        int64_t n = sp->n, cs = chunk_size(n), nc = (n + cs - 1) / cs;
        float cb[MAX_CHUNKS];
        int64_t cp[MAX_CHUNKS];
#pragma omp parallel for if (n > PARALLEL_MIN) schedule(static)
        for (int64_t c = 0; c < nc; c++) {
            lane_extreme(x + c * cs, c == nc - 1 ? n - c * cs : cs, 1, 1, want_max, &cb[c], &cp[c]);
            cp[c] += c * cs;
        }
        for (int64_t c = 1; c < nc; c++)
            if (better(cb[c], cb[0], want_max)) {
                cb[0] = cb[c];
                cp[0] = cp[c];
            }
        if (vals) vals[0] = cb[0];
        pos[0] = cp[0];
        return;
    }
#pragma omp parallel for if (big(sp)) schedule(static)
    for (int64_t l = 0; l < lanes; l++) {
        int64_t xo, oo, p[BLK];
        int w;
        float b[BLK];
        lane_at(sp, l, &xo, &oo, &w);
        lane_extreme(x + xo, sp->n, sp->inner, w, want_max, b, p);
        for (int j = 0; j < w; j++) {
            if (vals) vals[oo + j] = b[j];
            pos[oo + j] = p[j];
        }
    }
}

/* saved[0] = indices (i64, one per lane). */
static gl_status extreme_backward(gl_node *nd)
{
    float *gx;
    gl_status st = gl_node_grad(nd, 0, &gx);
    if (st != GL_OK || !gx) return st;
    span sp = node_span(nd);
    const int64_t *pos = gl_tensor_data(nd->saved[0]);
    const float *g = gl_tensor_f32(nd->gout);
    for (int64_t o = 0; o < sp.outer; o++)
        for (int64_t i = 0; i < sp.inner; i++) {
            int64_t l = o * sp.inner + i;
            gx[(o * sp.n + pos[l]) * sp.inner + i] += g[l];
        }
    return GL_OK;
}

static gl_tensor *extreme_dim(const char *op, bool want_max, gl_tensor *x, int dim, bool keepdim,
                              gl_tensor **indices)
{
    span sp;
    if (indices) *indices = NULL;
    if (span_dim(op, x, dim, keepdim, &sp) != GL_OK || need_nonempty(op, x, &sp) != GL_OK) return NULL;
    gl_tensor *out = new_out(&sp, GL_F32), *pos = new_out(&sp, GL_I64);
    if (!out || !pos) goto fail;
    extreme_forward(&sp, gl_tensor_f32(x), want_max, gl_tensor_f32(out), gl_tensor_data(pos));
    gl_node *nd;
    if (gl_autograd_record(&nd, out, op, extreme_backward, 1, &x) != GL_OK) goto fail;
    if (nd) {
        node_set_span(nd, &sp);
        if (gl_node_save(nd, 0, pos) != GL_OK) goto fail;
    }
    if (indices)
        *indices = pos;
    else
        gl_tensor_release(pos);
    return out;
fail:
    gl_tensor_release(pos);
    gl_tensor_release(out);
    return NULL;
}

gl_tensor *gl_max(gl_tensor *x, int dim, bool keepdim, gl_tensor **indices)
{
    return extreme_dim("max", true, x, dim, keepdim, indices);
}

gl_tensor *gl_min(gl_tensor *x, int dim, bool keepdim, gl_tensor **indices)
{
    return extreme_dim("min", false, x, dim, keepdim, indices);
}

/* saved[0] = x, saved[1] = out (0-dim). */
static gl_status extreme_all_backward(gl_node *nd)
{
    float *gx;
    gl_status st = gl_node_grad(nd, 0, &gx);
    if (st != GL_OK || !gx) return st;
    const float *x = gl_tensor_f32(nd->saved[0]);
    float v = gl_tensor_f32(nd->saved[1])[0];
    int64_t n = nd->saved[0]->numel, count = 0;
    bool nan = v != v;
#pragma omp parallel for reduction(+ : count) if (n > PARALLEL_MIN) schedule(static)
    for (int64_t k = 0; k < n; k++) count += x[k] == v || (nan && x[k] != x[k]);
    float share = gl_tensor_f32(nd->gout)[0] / (float)count;
#pragma omp parallel for if (n > PARALLEL_MIN) schedule(static)
    for (int64_t k = 0; k < n; k++)
        if (x[k] == v || (nan && x[k] != x[k])) gx[k] += share;
    return GL_OK;
}

static gl_tensor *extreme_all(const char *op, bool want_max, gl_tensor *x)
{
    span sp;
    if (span_all(op, x, &sp) != GL_OK || need_nonempty(op, x, &sp) != GL_OK) return NULL;
    gl_tensor *out = new_out(&sp, GL_F32);
    if (!out) return NULL;
    int64_t pos;
    extreme_forward(&sp, gl_tensor_f32(x), want_max, gl_tensor_f32(out), &pos);
    gl_node *nd;
    if (gl_autograd_record(&nd, out, op, extreme_all_backward, 1, &x) != GL_OK) goto fail;
    if (nd && (gl_node_save(nd, 0, x) != GL_OK || gl_node_save(nd, 1, out) != GL_OK)) goto fail;
    return out;
fail:
    gl_tensor_release(out);
    return NULL;
}

gl_tensor *gl_max_all(gl_tensor *x) { return extreme_all("max", true, x); }
gl_tensor *gl_min_all(gl_tensor *x) { return extreme_all("min", false, x); }

static gl_tensor *arg_extreme(const char *op, bool want_max, gl_tensor *x, const span *sp)
{
    if (need_nonempty(op, x, sp) != GL_OK) return NULL;
    gl_tensor *pos = new_out(sp, GL_I64);
    if (pos) extreme_forward(sp, gl_tensor_f32(x), want_max, NULL, gl_tensor_data(pos));
    return pos;
}

gl_tensor *gl_argmax(gl_tensor *x, int dim, bool keepdim)
{
    span sp;
    return span_dim("argmax", x, dim, keepdim, &sp) == GL_OK ? arg_extreme("argmax", true, x, &sp) : NULL;
}

gl_tensor *gl_argmin(gl_tensor *x, int dim, bool keepdim)
{
    span sp;
    return span_dim("argmin", x, dim, keepdim, &sp) == GL_OK ? arg_extreme("argmin", false, x, &sp) : NULL;
}

gl_tensor *gl_argmax_all(gl_tensor *x)
{
    span sp;
    return span_all("argmax", x, &sp) == GL_OK ? arg_extreme("argmax", true, x, &sp) : NULL;
}

gl_tensor *gl_argmin_all(gl_tensor *x)
{
    span sp;
    return span_all("argmin", x, &sp) == GL_OK ? arg_extreme("argmin", false, x, &sp) : NULL;
}

/* ---- logsumexp ---------------------------------------------------------------- */

/* Max of a contiguous row with eight running maxima (vectorizable); NaN
 * entries are skipped here and come back through the exp that follows. */
static float row_max(const float *x, int64_t n)
{
    float m[8];
    for (int j = 0; j < 8; j++) m[j] = -INFINITY;
    int64_t k = 0;
    for (; k + 8 <= n; k += 8)
        for (int j = 0; j < 8; j++) m[j] = x[k + j] > m[j] ? x[k + j] : m[j];
    for (; k < n; k++) m[0] = x[k] > m[0] ? x[k] : m[0];
    for (int j = 1; j < 8; j++) m[0] = m[j] > m[0] ? m[j] : m[0];
    return m[0];
}

/* The shift used before exponentiating: the max, or 0 when it is infinite. */
static inline float finite_shift(float m) { return isinf(m) ? 0.0f : m; }

/* The max of each of the w strided columns of a lane. */
static void lane_max(const float *x, int64_t n, int64_t st, int w, float *m)
{
    for (int j = 0; j < w; j++) m[j] = -INFINITY;
    for (int64_t k = 0; k < n; k++) {
        const float *r = x + k * st;
        for (int j = 0; j < w; j++)
            if (r[j] > m[j]) m[j] = r[j];
    }
}

/* s[j] = sum over the column of exp(x - m[j]), accumulated in double. */
static void lane_expsum(const float *x, int64_t n, int64_t st, int w, const float *m, double *s)
{
    for (int j = 0; j < w; j++) s[j] = 0.0;
    for (int64_t k = 0; k < n; k++) {
        const float *r = x + k * st;
        for (int j = 0; j < w; j++) s[j] += expf(r[j] - m[j]);
    }
}

/* max + log(sum(exp(x - max))); an infinite max is not subtracted, so all
 * -inf gives -inf and any +inf gives +inf. */
static void lane_logsumexp(const float *x, int64_t n, int64_t st, int w, float *out)
{
    if (st == 1) {
        float m = finite_shift(row_max(x, n));
        double s = 0.0;
        for (int64_t k = 0; k < n; k++) s += expf(x[k] - m);
        out[0] = m + (float)log(s);
        return;
    }
    float m[BLK];
    double s[BLK];
    lane_max(x, n, st, w, m);
    for (int j = 0; j < w; j++)
        m[j] = finite_shift(m[j]);
    lane_expsum(x, n, st, w, m, s);
    for (int j = 0; j < w; j++) out[j] = m[j] + (float)log(s[j]);
}

/* saved: x, out. */
static gl_status logsumexp_backward(gl_node *nd)
{
    float *gx;
    gl_status st = gl_node_grad(nd, 0, &gx);
    if (st != GL_OK || !gx) return st;
    span sp = node_span(nd);
    const float *x = gl_tensor_f32(nd->saved[0]), *out = gl_tensor_f32(nd->saved[1]), *g = gl_tensor_f32(nd->gout);
    int64_t n = sp.n, inner = sp.inner;
#pragma omp parallel for collapse(2) if (big(&sp)) schedule(static)
    for (int64_t o = 0; o < sp.outer; o++)
        for (int64_t k = 0; k < n; k++) {
            int64_t base = (o * n + k) * inner;
            const float *gr = g + o * inner, *orow = out + o * inner;
            for (int64_t i = 0; i < inner; i++)
                if (orow[i] != -INFINITY) gx[base + i] += gr[i] * expf(x[base + i] - orow[i]);
        }
    return GL_OK;
}

gl_tensor *gl_logsumexp(gl_tensor *x, int dim, bool keepdim)
{
    span sp;
    if (span_dim("logsumexp", x, dim, keepdim, &sp) != GL_OK) return NULL;
    gl_tensor *out = new_out(&sp, GL_F32);
    if (!out) return NULL;
    const float *px = gl_tensor_f32(x);
    float *po = gl_tensor_f32(out);
    int64_t lanes = lane_count(&sp);
#pragma omp parallel for if (big(&sp)) schedule(static)
    for (int64_t l = 0; l < lanes; l++) {
        int64_t xo, oo;
        int w;
        lane_at(&sp, l, &xo, &oo, &w);
        lane_logsumexp(px + xo, sp.n, sp.inner, w, po + oo);
    }
    gl_node *nd;
    if (gl_autograd_record(&nd, out, "logsumexp", logsumexp_backward, 1, &x) != GL_OK) goto fail;
    if (nd) {
        node_set_span(nd, &sp);
        if (gl_node_save(nd, 0, x) != GL_OK || gl_node_save(nd, 1, out) != GL_OK) goto fail;
    }
    return out;
fail:
    gl_tensor_release(out);
    return NULL;
}

/* ---- norm ----------------------------------------------------------------------- */

typedef enum { NORM_P, NORM_1, NORM_2, NORM_INF, NORM_NEG_INF, NORM_0 } norm_kind;

static norm_kind norm_kind_of(float p)
{
    if (p == 2.0f) return NORM_2;
    if (p == 1.0f) return NORM_1;
    if (p == 0.0f) return NORM_0;
    if (isinf(p)) return p > 0 ? NORM_INF : NORM_NEG_INF;
    return NORM_P;
}

static void lane_norm(const float *x, int64_t n, int64_t st, int w, norm_kind kind, float p, float *out)
{
    double acc[BLK];
    for (int j = 0; j < w; j++) acc[j] = kind == NORM_NEG_INF ? INFINITY : 0.0;
    for (int64_t k = 0; k < n; k++) {
        const float *r = x + k * st;
        for (int j = 0; j < w; j++) {
            double a = fabsf(r[j]);
            switch (kind) {
            case NORM_2: acc[j] += a * a; break;
            case NORM_1: acc[j] += a; break;
            case NORM_0: acc[j] += a != 0.0; break;
            case NORM_P: acc[j] += pow(a, p); break;
            case NORM_INF: if (a > acc[j] || a != a) acc[j] = a; break;
            case NORM_NEG_INF: if (a < acc[j] || a != a) acc[j] = a; break;
            }
        }
    }
    for (int j = 0; j < w; j++)
        out[j] = (float)(kind == NORM_2 ? sqrt(acc[j]) : kind == NORM_P ? pow(acc[j], 1.0 / p) : acc[j]);
}

/* saved: x, out. f[0] = p. */
static gl_status norm_backward(gl_node *nd)
{
    float *gx;
    gl_status st = gl_node_grad(nd, 0, &gx);
    if (st != GL_OK || !gx) return st;
    span sp = node_span(nd);
    float p = (float)nd->f[0];
    norm_kind kind = norm_kind_of(p);
    if (kind == NORM_0) return GL_OK;
    const float *x = gl_tensor_f32(nd->saved[0]), *out = gl_tensor_f32(nd->saved[1]), *g = gl_tensor_f32(nd->gout);
    int64_t n = sp.n, inner = sp.inner, lanes = sp.outer * inner;
    /* per lane: the factor that multiplies the elementwise term */
    float *coef = malloc((size_t)(lanes ? lanes : 1) * sizeof *coef);
    if (!coef) return gl_error(GL_ENOMEM, "norm backward: out of memory");
    for (int64_t l = 0; l < lanes; l++) {
        float v = out[l];
        coef[l] = kind == NORM_1 ? g[l] : v == 0.0f ? 0.0f : kind == NORM_P ? g[l] / powf(v, p - 1.0f) : g[l] / v;
    }
    if (kind == NORM_INF || kind == NORM_NEG_INF) { /* share among the ties */
        for (int64_t o = 0; o < sp.outer; o++)
            for (int64_t i = 0; i < inner; i++) {
                int64_t count = 0;
                for (int64_t k = 0; k < n; k++) count += fabsf(x[(o * n + k) * inner + i]) == out[o * inner + i];
                coef[o * inner + i] = count ? g[o * inner + i] / (float)count : 0.0f;
            }
    }
#pragma omp parallel for collapse(2) if (big(&sp)) schedule(static)
    for (int64_t o = 0; o < sp.outer; o++)
        for (int64_t k = 0; k < n; k++) {
            int64_t base = (o * n + k) * inner;
            for (int64_t i = 0; i < inner; i++) {
                float xv = x[base + i], c = coef[o * inner + i], v = out[o * inner + i];
                float sgn = xv > 0 ? 1.0f : xv < 0 ? -1.0f : 0.0f, term;
                switch (kind) {
                case NORM_2: term = xv; break;
                case NORM_P: term = sgn * powf(fabsf(xv), p - 1.0f); break;
                case NORM_INF:
                case NORM_NEG_INF: term = fabsf(xv) == v ? sgn : 0.0f; break;
                default: term = sgn; break;
                }
                gx[base + i] += c * term;
            }
        }
    free(coef);
    return GL_OK;
}

static gl_tensor *norm_like(gl_tensor *x, const span *sp, float p)
{
    gl_tensor *out = new_out(sp, GL_F32);
    if (!out) return NULL;
    const float *px = gl_tensor_f32(x);
    float *po = gl_tensor_f32(out);
    norm_kind kind = norm_kind_of(p);
    int64_t lanes = lane_count(sp);
#pragma omp parallel for if (big(sp)) schedule(static)
    for (int64_t l = 0; l < lanes; l++) {
        int64_t xo, oo;
        int w;
        lane_at(sp, l, &xo, &oo, &w);
        lane_norm(px + xo, sp->n, sp->inner, w, kind, p, po + oo);
    }
    gl_node *nd;
    if (gl_autograd_record(&nd, out, "norm", norm_backward, 1, &x) != GL_OK) goto fail;
    if (nd) {
        node_set_span(nd, sp);
        nd->f[0] = p;
        if (gl_node_save(nd, 0, x) != GL_OK || gl_node_save(nd, 1, out) != GL_OK) goto fail;
    }
    return out;
fail:
    gl_tensor_release(out);
    return NULL;
}

gl_tensor *gl_norm(gl_tensor *x, float p, int dim, bool keepdim)
{
    span sp;
    return span_dim("norm", x, dim, keepdim, &sp) == GL_OK ? norm_like(x, &sp, p) : NULL;
}

gl_tensor *gl_norm_all(gl_tensor *x, float p)
{
    span sp;
    return span_all("norm", x, &sp) == GL_OK ? norm_like(x, &sp, p) : NULL;
}

/* ---- softmax, log_softmax ------------------------------------------------------------ */

/* Contiguous row: max, then exponentials and their sum, then scale. */
static void row_softmax(const float *x, float *y, int64_t n, bool log_space)
{
    float m = row_max(x, n);
    double s = 0.0;
    if (log_space) {
        for (int64_t k = 0; k < n; k++) s += expf(x[k] - m);
        float c = (float)log(s);
        for (int64_t k = 0; k < n; k++) y[k] = (x[k] - m) - c;
    } else {
        for (int64_t k = 0; k < n; k++) {
            y[k] = expf(x[k] - m);
            s += y[k];
        }
        float c = (float)(1.0 / s);
        for (int64_t k = 0; k < n; k++) y[k] *= c;
    }
}

/* One pass for the max, one for the sum of exponentials, one to write y. */
static void lane_softmax(const float *x, float *y, int64_t n, int64_t st, int w, bool log_space)
{
    if (st == 1) {
        row_softmax(x, y, n, log_space);
        return;
    }
    float m[BLK], c[BLK];
    double s[BLK] = {0};
    lane_max(x, n, st, w, m);
    if (log_space) {
        lane_expsum(x, n, st, w, m, s);
        for (int j = 0; j < w; j++) c[j] = (float)log(s[j]);
        for (int64_t k = 0; k < n; k++) {
            const float *r = x + k * st;
            float *yr = y + k * st;
            for (int j = 0; j < w; j++) yr[j] = (r[j] - m[j]) - c[j];
        }
    } else {
        for (int64_t k = 0; k < n; k++) {
            const float *r = x + k * st;
            float *yr = y + k * st;
            for (int j = 0; j < w; j++) {
                yr[j] = expf(r[j] - m[j]);
                s[j] += yr[j];
            }
        }
        for (int j = 0; j < w; j++) c[j] = (float)(1.0 / s[j]);
        for (int64_t k = 0; k < n; k++) {
            float *yr = y + k * st;
            for (int j = 0; j < w; j++) yr[j] *= c[j];
        }
    }
}

static void row_softmax_backward(float *gx, const float *y, const float *g, int64_t n, bool log_space)
{
    double s = 0.0;
    if (log_space) {
        for (int64_t k = 0; k < n; k++) s += g[k];
        float c = (float)s;
        for (int64_t k = 0; k < n; k++) gx[k] += g[k] - expf(y[k]) * c;
    } else {
        for (int64_t k = 0; k < n; k++) s += g[k] * y[k];
        float c = (float)s;
        for (int64_t k = 0; k < n; k++) gx[k] += y[k] * (g[k] - c);
    }
}

static void lane_softmax_backward(float *gx, const float *y, const float *g, int64_t n, int64_t st, int w,
                                  bool log_space)
{
    if (st == 1) {
        row_softmax_backward(gx, y, g, n, log_space);
        return;
    }
    double s[BLK];
    for (int j = 0; j < w; j++) s[j] = 0.0;
    for (int64_t k = 0; k < n; k++) {
        const float *gr = g + k * st, *yr = y + k * st;
        for (int j = 0; j < w; j++) s[j] += log_space ? gr[j] : gr[j] * yr[j];
    }
    for (int64_t k = 0; k < n; k++) {
        const float *gr = g + k * st, *yr = y + k * st;
        float *dr = gx + k * st;
        for (int j = 0; j < w; j++)
            dr[j] += log_space ? gr[j] - expf(yr[j]) * (float)s[j] : yr[j] * (gr[j] - (float)s[j]);
    }
}

/* saved[0] = out; i[3] = 1 for log_softmax. */
static gl_status softmax_backward(gl_node *nd)
{
    float *gx;
    gl_status st = gl_node_grad(nd, 0, &gx);
    if (st != GL_OK || !gx) return st;
    span sp = node_span(nd);
    const float *y = gl_tensor_f32(nd->saved[0]), *g = gl_tensor_f32(nd->gout);
    int64_t lanes = lane_count(&sp);
#pragma omp parallel for if (big(&sp)) schedule(static)
    for (int64_t l = 0; l < lanes; l++) {
        int64_t xo, oo;
        int w;
        lane_at(&sp, l, &xo, &oo, &w);
        lane_softmax_backward(gx + xo, y + xo, g + xo, sp.n, sp.inner, w, nd->i[3]);
    }
    return GL_OK;
}

static gl_tensor *softmax_like(const char *op, gl_tensor *x, int dim, bool log_space)
{
    span sp;
    if (span_dim(op, x, dim, true, &sp) != GL_OK) return NULL;
    gl_tensor *out = gl_tensor_empty(GL_F32, x->ndim, x->shape);
    if (!out) return NULL;
    const float *px = gl_tensor_f32(x);
    float *po = gl_tensor_f32(out);
    int64_t lanes = lane_count(&sp);
#pragma omp parallel for if (big(&sp)) schedule(static)
    for (int64_t l = 0; l < lanes; l++) {
        int64_t xo, oo;
        int w;
        lane_at(&sp, l, &xo, &oo, &w);
        lane_softmax(px + xo, po + xo, sp.n, sp.inner, w, log_space);
    }
    gl_node *nd;
    if (gl_autograd_record(&nd, out, op, softmax_backward, 1, &x) != GL_OK) goto fail;
    if (nd) {
        node_set_span(nd, &sp);
        nd->i[3] = log_space;
        if (gl_node_save(nd, 0, out) != GL_OK) goto fail;
    }
    return out;
fail:
    gl_tensor_release(out);
    return NULL;
}

gl_tensor *gl_softmax(gl_tensor *x, int dim) { return softmax_like("softmax", x, dim, false); }
gl_tensor *gl_log_softmax(gl_tensor *x, int dim) { return softmax_like("log_softmax", x, dim, true); }
