/* Losses, each fused forward with its backward next to it. Per-item losses
 * (rows of cross_entropy / nll_loss, elements of the pointwise losses) land
 * in a tensor that is the output for reduction "none"; otherwise they are
 * summed in double over fixed chunks, then the chunks in order, so the
 * result does not depend on the thread count. Backward of a reduced loss
 * uses g = dout / divisor for every item (divisor 1 for sum).
 *
 * cross_entropy, row z = logits[r] of C classes, lse = log(sum(exp(z))),
 * e = label_smoothing (llm.c's crossentropy_softmax_backward, without
 * keeping probs: they are recomputed from lse, kept as m = max(z) and
 * log(sum(exp(z - m))) so that z - lse loses no bits when z is large):
 *   class id y:     loss = (1-e)(lse - z[y]) + e (lse - mean(z))
 *                   dz   = g (softmax(z) - (1-e) onehot(y) - e/C)
 *   probabilities t, t' = (1-e) t + e/C:
 *                   loss = lse sum(t') - sum(t' z)
 *                   dz   = g (softmax(z) sum(t') - t'),   dt = g (1-e)(lse - z)
 * nll_loss: loss = -logp[y], dlogp[y] -= g. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/tape.h"
#include "core/interrupt.h"
#include "ops/nnops.h"
#include "ops/simd.h"

static gl_status check_reduction(const char *op, gl_reduction red, bool batchmean_ok)
{
    if (red == GL_REDUCE_MEAN || red == GL_REDUCE_SUM || red == GL_REDUCE_NONE ||
        (batchmean_ok && red == GL_REDUCE_BATCHMEAN))
        return GL_OK;
    if (red == GL_REDUCE_BATCHMEAN)
        return gl_error(GL_EINVAL, "%s: reduction 'batchmean' is only for kl_div (use mean, sum or none)", op);
    return gl_error(GL_EINVAL, "%s: unknown reduction %d", op, (int)red);
}

enum { SUM_CHUNK = 4096 };

static double chunk_sum(const float *v, int64_t n, int64_t k)
{
    double acc = 0.0;
    int64_t i1 = (k + 1) * SUM_CHUNK < n ? (k + 1) * SUM_CHUNK : n;
    for (int64_t i = k * SUM_CHUNK; i < i1; i++) acc += v[i];
    return acc;
}

/* sum(v[0..n)) in double: chunks of a fixed size (in parallel when there is
 * scratch for their sums), then the chunks in order. */
static double sum_chunks(const float *v, int64_t n)
{
    int64_t nch = (n + SUM_CHUNK - 1) / SUM_CHUNK;
    double *part = malloc((size_t)(nch + 1) * sizeof *part), s = 0.0;
    if (part) {
#pragma omp parallel for if (n > 65536) schedule(static)
        for (int64_t k = 0; k < nch; k++) part[k] = chunk_sum(v, n, k);
    }
    for (int64_t k = 0; k < nch; k++) s += part ? part[k] : chunk_sum(v, n, k);
    free(part);
    return s;
}

/* The output from per-item losses (taking the items' reference). */
static gl_tensor *reduce_items(gl_tensor *items, gl_reduction red, double divisor)
{
    if (red == GL_REDUCE_NONE) return items;
    double s = sum_chunks(gl_tensor_f32(items), items->numel);
    gl_tensor_release(items);
    return gl_tensor_scalar((float)(red == GL_REDUCE_SUM ? s : s / divisor));
}

/* The gradient reaching item i. f[1] holds the divisor, i[1] the reduction. */
static inline float item_grad(const gl_node *nd, const float *g, int64_t i)
{
    if (nd->i[1] == GL_REDUCE_NONE) return g[i];
    return nd->i[1] == GL_REDUCE_SUM ? g[0] : (float)(g[0] / nd->f[1]);
}

/* Records the node of a loss whose output is out; the caller fills it. */
static gl_node *record(gl_tensor *out, const char *op, gl_backward_fn fn, gl_tensor *a, gl_tensor *b,
                       gl_reduction red, double divisor, bool *failed)
{
    gl_tensor *ins[2] = {a, b};
    gl_node *nd;
    *failed = gl_autograd_record(&nd, out, op, fn, 2, ins) != GL_OK;
    if (nd) {
        nd->i[1] = red;
        nd->f[1] = divisor;
        if (gl_node_save(nd, 0, a) != GL_OK || gl_node_save(nd, 1, b) != GL_OK) *failed = true;
    }
    return nd;
}

/* ---- class-index losses: cross_entropy and nll_loss ---------------------- */

/* The row loops below are `omp simd` so that -O2 vectorizes them without
 * -ffast-math, with gl_exp_le0 (ops/simd.h) for their exps. Under
 * -ftrapping-math GCC does not if-convert float comparisons, so the max
 * compares bit patterns as integers. */

/* max(z[0..C)) through int32 keys ordered like the floats (negative floats
 * flip their magnitude bits). A NaN either wins or is left to the sum of
 * exps. Explicit lanes: GCC keeps an `omp simd reduction(max)` in memory. */
static inline int32_t float_key(const float *x)
{
    int32_t v;
    memcpy(&v, x, 4);
    return v ^ ((v >> 31) & 0x7FFFFFFF);
}

static float row_max(const float *z, int64_t C)
{
    enum { LANES = 16 };
    int32_t k[LANES];
    for (int l = 0; l < LANES; l++) k[l] = INT32_MIN;
    int64_t c = 0;
    for (; c + LANES <= C; c += LANES) {
#pragma omp simd
        for (int l = 0; l < LANES; l++) {
            int32_t v = float_key(&z[c + l]);
            k[l] = v > k[l] ? v : k[l];
        }
    }
    for (; c < C; c++) {
        int32_t v = float_key(&z[c]);
        k[0] = v > k[0] ? v : k[0];
    }
    for (int l = 1; l < LANES; l++) k[0] = k[l] > k[0] ? k[l] : k[0];
    float m;
    int32_t bits = k[0] ^ ((k[0] >> 31) & 0x7FFFFFFF);
    memcpy(&m, &bits, 4);
    return m;
}

static inline int64_t id_at(const gl_tensor *t, int64_t i)
{
    return t->dtype == GL_I64 ? ((const int64_t *)gl_tensor_data(t))[i] : ((const int32_t *)gl_tensor_data(t))[i];
}

/* Checks logits [..., C] against targets: class ids [...] (*soft false;
 * *count is the number of rows not ignored) or, when soft_ok, f32
 * probabilities shaped like logits. Sets R and C. */
static gl_status check_targets(const char *op, const gl_tensor *x, const gl_tensor *t, int64_t ignore, bool soft_ok,
                               bool *soft, int64_t *R, int64_t *C, int64_t *count)
{
    char s1[128], s2[128], s3[128];
    if (x->dtype != GL_F32) return gl_error(GL_EINVAL, "%s: expected f32 input, got %s", op, gl_dtype_name(x->dtype));
    if (x->ndim == 0 || x->shape[x->ndim - 1] == 0)
        return gl_error(GL_EINVAL, "%s: input of shape %s has no class dim", op, gl_tensor_shape_str(x, s1, sizeof s1));
    *C = x->shape[x->ndim - 1];
    *R = x->numel / *C;
    *soft = t->dtype == GL_F32 && soft_ok;
    if (*soft) {
        if (!gl_shape_equal(x->ndim, x->shape, t->ndim, t->shape))
            return gl_error(GL_EINVAL, "%s: probability targets of shape %s do not match input %s%s", op,
                            gl_tensor_shape_str(t, s1, sizeof s1), gl_tensor_shape_str(x, s2, sizeof s2),
                            t->ndim == x->ndim - 1 ? " (class ids must be i64 or i32: convert with :long())" : "");
        *count = *R;
        return GL_OK;
    }
    if (t->dtype != GL_I64 && t->dtype != GL_I32)
        return gl_error(GL_EINVAL, "%s: targets must be i64 or i32 class ids%s, got %s", op,
                        soft_ok ? " or f32 probabilities" : "", gl_dtype_name(t->dtype));
    if (!gl_shape_equal(x->ndim - 1, x->shape, t->ndim, t->shape))
        return gl_error(GL_EINVAL, "%s: targets of shape %s do not match input %s (expected %s)", op,
                        gl_tensor_shape_str(t, s1, sizeof s1), gl_tensor_shape_str(x, s2, sizeof s2),
                        gl_shape_str(x->ndim - 1, x->shape, s3, sizeof s3));
    *count = 0;
    for (int64_t r = 0; r < *R; r++) {
        int64_t y = id_at(t, r);
        if (y == ignore) continue;
        if (y < 0 || y >= *C)
            return gl_error(GL_EINVAL, "%s: target %lld (at position %lld) is out of range for %lld classes", op,
                            (long long)y, (long long)r + 1, (long long)*C);
        (*count)++;
    }
    return GL_OK;
}

/* Saved: logits, targets. extra: m [R] then log(sum(exp(z - m))) [R].
 * f[0] = label smoothing, i[0] = ignore_index, i[2] = soft. */
static gl_status cross_entropy_backward(gl_node *nd)
{
    const gl_tensor *x = nd->saved[0], *t = nd->saved[1];
    int64_t C = x->shape[x->ndim - 1], R = x->numel / C, ignore = nd->i[0];
    bool soft = nd->i[2];
    float e = (float)nd->f[0], off = e / (float)C;
    float *dz, *dt;
    gl_status st;
    if ((st = gl_node_grad(nd, 0, &dz)) != GL_OK || (st = gl_node_grad(nd, 1, &dt)) != GL_OK) return st;
    const float *z = gl_tensor_f32(x), *mx = nd->extra, *ls = mx + R, *g = gl_tensor_f32(nd->gout);
    const float *ts = soft ? gl_tensor_f32(t) : NULL;
#pragma omp parallel for if (R * C > 32768) schedule(static)
    for (int64_t r = 0; r < R; r++) {
        const float *zr = z + r * C;
        float gr = item_grad(nd, g, r), m = mx[r], l = ls[r];
        if (!soft) {
            int64_t y = id_at(t, r);
            if (y == ignore || !dz) continue;
            float *d = dz + r * C;
#pragma omp simd
            for (int64_t c = 0; c < C; c++) d[c] += gr * (gl_exp_le0((zr[c] - m) - l) - off);
            d[y] -= gr * (1.0f - e);
            continue;
        }
        const float *tr = ts + r * C;
        float tsum = 0.0f;
#pragma omp simd reduction(+ : tsum)
        for (int64_t c = 0; c < C; c++) tsum += (1.0f - e) * tr[c] + off;
        if (dz) {
#pragma omp simd
            for (int64_t c = 0; c < C; c++)
                dz[r * C + c] += gr * (gl_exp_le0((zr[c] - m) - l) * tsum - ((1.0f - e) * tr[c] + off));
        }
        if (dt) {
#pragma omp simd
            for (int64_t c = 0; c < C; c++) dt[r * C + c] += gr * (1.0f - e) * (l - (zr[c] - m));
        }
    }
    return GL_OK;
}

gl_tensor *gl_cross_entropy(gl_tensor *logits, gl_tensor *targets, int64_t ignore_index, float label_smoothing,
                            gl_reduction red)
{
    const char *op = "cross_entropy";
    bool soft;
    int64_t R, C, count;
    if (gl_interrupt_poll(op) || check_reduction(op, red, false) != GL_OK ||
        check_targets(op, logits, targets, ignore_index, true, &soft, &R, &C, &count) != GL_OK)
        return NULL;
    if (!(label_smoothing >= 0.0f && label_smoothing <= 1.0f))
        return gl_error_null(GL_EINVAL, "%s: label_smoothing must be in [0, 1], got %g", op, (double)label_smoothing);
    gl_tensor *items = gl_tensor_new(GL_F32, logits->ndim - 1, logits->shape);
    float *mx = malloc((size_t)(2 * R) * sizeof *mx + 1), *ls = mx + R;
    if (!items || !mx) {
        gl_tensor_release(items);
        free(mx);
        return gl_error_null(GL_ENOMEM, "%s: out of memory", op);
    }
    const float *z = gl_tensor_f32(logits), *ts = soft ? gl_tensor_f32(targets) : NULL;
    float *loss = gl_tensor_f32(items), e = label_smoothing, off = e / (float)C;
#pragma omp parallel for if (R * C > 32768) schedule(static)
    for (int64_t r = 0; r < R; r++) {
        const float *zr = z + r * C;
        int64_t y = soft ? 0 : id_at(targets, r);
        if (!soft && y == ignore_index) {
            loss[r] = mx[r] = ls[r] = 0.0f;
            continue;
        }
        float m = row_max(zr, C), s = 0.0f, zsum = 0.0f; /* zsum: of z - m */
#pragma omp simd reduction(+ : s)
        for (int64_t c = 0; c < C; c++) s += gl_exp_le0(zr[c] - m);
        if (e > 0.0f && !soft) {
#pragma omp simd reduction(+ : zsum)
            for (int64_t c = 0; c < C; c++) zsum += zr[c] - m;
        }
        float l = logf(s); /* lse - m */
        mx[r] = m;
        ls[r] = l;
        if (soft) {
            const float *tr = ts + r * C;
            float tsum = 0.0f, tz = 0.0f;
#pragma omp simd reduction(+ : tsum, tz)
            for (int64_t c = 0; c < C; c++) {
                float tp = (1.0f - e) * tr[c] + off;
                tsum += tp;
                tz += tp * (zr[c] - m);
            }
            loss[r] = l * tsum - tz;
        } else {
            loss[r] = (1.0f - e) * (l - (zr[y] - m)) + (e > 0.0f ? e * (l - zsum / (float)C) : 0.0f);
        }
    }
    gl_tensor *out = reduce_items(items, red, (double)count);
    if (!out) {
        free(mx);
        return NULL;
    }
    bool failed;
    gl_node *nd = record(out, op, cross_entropy_backward, logits, targets, red, (double)count, &failed);
    if (nd) {
        nd->extra = mx;
        nd->f[0] = e;
        nd->i[0] = ignore_index;
        nd->i[2] = soft;
    } else {
        free(mx);
    }
    if (failed) {
        gl_tensor_release(out);
        return NULL;
    }
    return out;
}

/* Saved: logp, targets. i[0] = ignore_index. */
static gl_status nll_loss_backward(gl_node *nd)
{
    const gl_tensor *x = nd->saved[0], *t = nd->saved[1];
    int64_t C = x->shape[x->ndim - 1], R = x->numel / C;
    float *dx;
    gl_status st = gl_node_grad(nd, 0, &dx);
    if (st != GL_OK || !dx) return st;
    const float *g = gl_tensor_f32(nd->gout);
    for (int64_t r = 0; r < R; r++) {
        int64_t y = id_at(t, r);
        if (y != nd->i[0]) dx[r * C + y] -= item_grad(nd, g, r);
    }
    return GL_OK;
}

gl_tensor *gl_nll_loss(gl_tensor *logp, gl_tensor *targets, int64_t ignore_index, gl_reduction red)
{
    const char *op = "nll_loss";
    bool soft;
    int64_t R, C, count;
    if (gl_interrupt_poll(op) || check_reduction(op, red, false) != GL_OK ||
        check_targets(op, logp, targets, ignore_index, false, &soft, &R, &C, &count) != GL_OK)
        return NULL;
    gl_tensor *items = gl_tensor_new(GL_F32, logp->ndim - 1, logp->shape);
    if (!items) return NULL;
    const float *x = gl_tensor_f32(logp);
    float *loss = gl_tensor_f32(items);
    for (int64_t r = 0; r < R; r++) {
        int64_t y = id_at(targets, r);
        loss[r] = y == ignore_index ? 0.0f : -x[r * C + y];
    }
    gl_tensor *out = reduce_items(items, red, (double)count);
    if (!out) return NULL;
    bool failed;
    gl_node *nd = record(out, op, nll_loss_backward, logp, targets, red, (double)count, &failed);
    if (nd) nd->i[0] = ignore_index;
    if (failed) {
        gl_tensor_release(out);
        return NULL;
    }
    return out;
}

/* ---- pointwise losses of input x and target y -------------------------------
 *   mse:    (x-y)^2                          dx = 2(x-y),              dy = -dx
 *   l1:     |x-y|                            dx = sign(x-y),           dy = -dx
 *   bce:    -(y log x + (1-y) log(1-x)), logs clamped at -100 (torch)
 *                                            dx = (x-y) / max(x(1-x), 1e-12),  dy = log(1-x) - log x
 *   bce_with_logits: max(x,0) - x y + log(1 + exp(-|x|))
 *                                            dx = sigmoid(x) - y,      dy = -x
 *   kl_div: y (log y - x), 0 where y = 0     dx = -y,                  dy = log y + 1 - x (0 where y = 0)
 *   kl_div, log target: exp(y) (y - x)       dx = -exp(y),             dy = exp(y)(y - x + 1) */

typedef enum { PW_MSE, PW_L1, PW_BCE, PW_BCE_LOGITS, PW_KL, PW_KL_LOGT } pw_kind;
static const char *const pw_names[] = {"mse_loss", "l1_loss", "binary_cross_entropy",
                                       "binary_cross_entropy_with_logits", "kl_div", "kl_div"};

static inline float clamped_log(float v)
{
    float l = logf(v);
    return l > -100.0f ? l : -100.0f;
}

static inline float pw_loss(pw_kind k, float x, float y)
{
    switch (k) {
    case PW_MSE: return (x - y) * (x - y);
    case PW_L1: return fabsf(x - y);
    case PW_BCE: return -(y * clamped_log(x) + (1.0f - y) * clamped_log(1.0f - x));
    case PW_BCE_LOGITS: return (x > 0.0f ? x : 0.0f) - x * y + log1pf(expf(-fabsf(x)));
    case PW_KL: return (y == 0.0f ? 0.0f : y * logf(y)) - y * x;
    case PW_KL_LOGT: return expf(y) * (y - x);
    }
    return 0.0f;
}

static inline void pw_grad(pw_kind k, float x, float y, float g, float *dx, float *dy)
{
    switch (k) {
    case PW_MSE: *dx = 2.0f * (x - y) * g; *dy = -*dx; break;
    case PW_L1: *dx = (float)((x > y) - (x < y)) * g; *dy = -*dx; break;
    case PW_BCE: {
        float d = x * (1.0f - x);
        *dx = g * (x - y) / (d > 1e-12f ? d : 1e-12f);
        *dy = g * (clamped_log(1.0f - x) - clamped_log(x));
        break;
    }
    case PW_BCE_LOGITS: {
        float s = x >= 0.0f ? 1.0f / (1.0f + expf(-x)) : expf(x) / (1.0f + expf(x));
        *dx = g * (s - y);
        *dy = -g * x;
        break;
    }
    case PW_KL: *dx = -g * y; *dy = y > 0.0f ? g * (logf(y) + 1.0f - x) : 0.0f; break;
    case PW_KL_LOGT: {
        float ey = expf(y);
        *dx = -g * ey;
        *dy = g * ey * (y - x + 1.0f);
        break;
    }
    }
}

/* Saved: x, y. i[0] = kind. */
static gl_status pointwise_backward(gl_node *nd)
{
    pw_kind k = (pw_kind)nd->i[0];
    float *dx, *dy;
    gl_status st;
    if ((st = gl_node_grad(nd, 0, &dx)) != GL_OK || (st = gl_node_grad(nd, 1, &dy)) != GL_OK) return st;
    const float *x = gl_tensor_f32(nd->saved[0]), *y = gl_tensor_f32(nd->saved[1]), *g = gl_tensor_f32(nd->gout);
    int64_t n = nd->saved[0]->numel;
#pragma omp parallel for if (n > 32768) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float a = 0.0f, b = 0.0f;
        pw_grad(k, x[i], y[i], item_grad(nd, g, i), &a, &b);
        if (dx) dx[i] += a;
        if (dy) dy[i] += b;
    }
    return GL_OK;
}

static gl_tensor *pointwise(pw_kind k, gl_tensor *x, gl_tensor *y, gl_reduction red)
{
    const char *op = pw_names[k];
    char s1[128], s2[128];
    if (gl_interrupt_poll(op) || check_reduction(op, red, k == PW_KL || k == PW_KL_LOGT) != GL_OK) return NULL;
    if (x->dtype != GL_F32 || y->dtype != GL_F32)
        return gl_error_null(GL_EINVAL, "%s: expected f32 input and target, got %s and %s", op,
                             gl_dtype_name(x->dtype), gl_dtype_name(y->dtype));
    if (!gl_shape_equal(x->ndim, x->shape, y->ndim, y->shape))
        return gl_error_null(GL_EINVAL, "%s: input of shape %s and target of shape %s differ", op,
                             gl_tensor_shape_str(x, s1, sizeof s1), gl_tensor_shape_str(y, s2, sizeof s2));
    int64_t n = x->numel;
    const float *xs = gl_tensor_f32(x), *ys = gl_tensor_f32(y);
    if (k == PW_BCE)
        for (int64_t i = 0; i < n; i++)
            if (!(xs[i] >= 0.0f && xs[i] <= 1.0f))
                return gl_error_null(GL_EINVAL, "%s: input values must be probabilities in [0, 1], got %g at position %lld (use binary_cross_entropy_with_logits for logits)",
                                     op, (double)xs[i], (long long)i + 1);
    gl_tensor *items = gl_tensor_new_like(x);
    if (!items) return NULL;
    float *l = gl_tensor_f32(items);
#pragma omp parallel for if (n > 32768) schedule(static)
    for (int64_t i = 0; i < n; i++) l[i] = pw_loss(k, xs[i], ys[i]);
    double divisor = red == GL_REDUCE_BATCHMEAN ? (double)(x->ndim ? x->shape[0] : 1) : (double)n;
    gl_tensor *out = reduce_items(items, red, divisor);
    if (!out) return NULL;
    bool failed;
    /* batchmean's backward is mean's with the batch divisor */
    gl_node *nd = record(out, op, pointwise_backward, x, y, red == GL_REDUCE_BATCHMEAN ? GL_REDUCE_MEAN : red, divisor,
                         &failed);
    if (nd) nd->i[0] = k;
    if (failed) {
        gl_tensor_release(out);
        return NULL;
    }
    return out;
}

gl_tensor *gl_mse_loss(gl_tensor *x, gl_tensor *y, gl_reduction red) { return pointwise(PW_MSE, x, y, red); }
gl_tensor *gl_l1_loss(gl_tensor *x, gl_tensor *y, gl_reduction red) { return pointwise(PW_L1, x, y, red); }
gl_tensor *gl_bce_loss(gl_tensor *p, gl_tensor *y, gl_reduction red) { return pointwise(PW_BCE, p, y, red); }
gl_tensor *gl_bce_with_logits(gl_tensor *x, gl_tensor *y, gl_reduction red)
{
    return pointwise(PW_BCE_LOGITS, x, y, red);
}
gl_tensor *gl_kl_div(gl_tensor *input, gl_tensor *target, bool log_target, gl_reduction red)
{
    return pointwise(log_target ? PW_KL_LOGT : PW_KL, input, target, red);
}
