/* Normalizations of x [N, C, S] (S = the trailing dims flattened), fused.
 * With xhat = (x - mean) * rstd, out = xhat * w[c] + b[c], and dn = dout * w[c]:
 *   dx = rstd * (dn - mean(dn) - xhat * mean(dn * xhat))
 * with the means over the values the statistics came from, or dx = rstd * dn
 * for batch_norm in eval mode, whose statistics are constants. Both forms are
 * applied as dx = k1 * dout + k2 * x + k3 per channel and statistic.
 *   dw[c] += sum dout * xhat,  db[c] += sum dout.
 * Long sums run in float per contiguous row (vectorized) and in double
 * across rows. Each output element, statistic and weight/bias gradient is
 * computed by one fixed sequence of operations, so results do not depend on
 * the thread count. The kernels take and return raw pointers; the shapes in
 * their comments use N, C, S as above and G groups of CG = C / G channels.
 * group_norm_silu applies SiLU to out in the same pass (a = out, y = a
 * sigmoid(a)); its backward recomputes a from x and the statistics and
 * takes dout * silu'(a) for dout, so neither a nor y is kept. */
#include "ops/norm2d.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>

#include "autograd/tape.h"
#include "core/interrupt.h"
#include "ops/simd.h"

#define PAR_MIN 32768 /* elements below which a loop runs on one thread */

typedef struct {
    int64_t N, C, S;
} ncs;

static ncs dims_of(const gl_tensor *x)
{
    ncs d = {x->shape[0], x->shape[1], 1};
    for (int k = 2; k < x->ndim; k++) d.S *= x->shape[k];
    return d;
}

/* The checks every op shares: f32 x [N, C, ...], weight/bias [C] or NULL, eps >= 0. */
static bool check_args(const char *op, const gl_tensor *x, const gl_tensor *w, const gl_tensor *b, float eps)
{
    char s1[128], s2[128];
    if (x->dtype != GL_F32 || (w && w->dtype != GL_F32) || (b && b->dtype != GL_F32)) {
        gl_error(GL_EINVAL, "%s: expected f32 tensors (convert with :float())", op);
        return false;
    }
    if (x->ndim < 2) {
        gl_error(GL_EINVAL, "%s: x must be [N, C, ...], got %s", op, gl_tensor_shape_str(x, s1, sizeof s1));
        return false;
    }
    const gl_tensor *params[2] = {w, b};
    const char *names[2] = {"weight", "bias"};
    for (int k = 0; k < 2; k++)
        if (params[k] && (params[k]->ndim != 1 || params[k]->shape[0] != x->shape[1])) {
            gl_error(GL_EINVAL, "%s: %s %s does not match the %lld channels of x %s", op, names[k],
                     gl_tensor_shape_str(params[k], s1, sizeof s1), (long long)x->shape[1],
                     gl_tensor_shape_str(x, s2, sizeof s2));
            return false;
        }
    if (!(eps >= 0.0f)) {
        gl_error(GL_EINVAL, "%s: eps must be >= 0, got %g", op, (double)eps);
        return false;
    }
    return true;
}

static const float *f32_or_null(const gl_tensor *t) { return t ? gl_tensor_f32(t) : NULL; }

/* Gradient buffers of the node's three inputs (x, weight, bias); NULL when not wanted. */
typedef struct {
    float *dx, *dw, *db;
    bool fresh; /* dx is new: write it instead of adding */
} grads;

static gl_status node_grads(gl_node *nd, grads *g)
{
    gl_status st;
    if ((st = gl_node_grad_init(nd, 0, &g->dx, &g->fresh)) != GL_OK) return st;
    if ((st = gl_node_grad(nd, 1, &g->dw)) != GL_OK) return st;
    return gl_node_grad(nd, 2, &g->db);
}

/* dx [n] = k1 * dout + k2 * x + k3, written when fresh, else added. */
static inline void dx_row(float *dx, bool fresh, const float *dout, const float *x, int64_t n, float k1, float k2,
                          float k3)
{
    if (fresh) {
#pragma omp simd
        for (int64_t i = 0; i < n; i++) dx[i] = k1 * dout[i] + k2 * x[i] + k3;
    } else {
#pragma omp simd
        for (int64_t i = 0; i < n; i++) dx[i] += k1 * dout[i] + k2 * x[i] + k3;
    }
}

/* out [n] = x * scale + shift */
static inline void affine_row(float *out, const float *x, int64_t n, float scale, float shift)
{
#pragma omp simd
    for (int64_t i = 0; i < n; i++) out[i] = x[i] * scale + shift;
}

/* out [n] = silu(a) with a = x * scale + shift (affine_row's a) */
GL_SIMD_CLONES static void affine_silu_row(float *restrict out, const float *restrict x, int64_t n, float scale,
                                           float shift)
{
#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        float a = x[i] * scale + shift;
        out[i] = a * gl_sigmoidf(a);
    }
}

/* da [n] = dout * silu'(a) with a as affine_silu_row's (gl_silu's backward) */
GL_SIMD_CLONES static void silu_grad_row(float *restrict da, const float *restrict dout, const float *restrict x,
                                         int64_t n, float scale, float shift)
{
#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        da[i] = dout[i] * gl_silu_gradf(x[i] * scale + shift);
    }
}

/* The row reductions sum four quarters of the row side by side, so that the
 * vectorized adds run on four independent registers instead of waiting on
 * one; the order of the sums is fixed by n alone. */
static inline float row_sum(const float *x, int64_t n)
{
    int64_t q = n / 4;
    float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
#pragma omp simd reduction(+ : s0, s1, s2, s3)
    for (int64_t i = 0; i < q; i++) {
        s0 += x[i];
        s1 += x[q + i];
        s2 += x[2 * q + i];
        s3 += x[3 * q + i];
    }
    for (int64_t i = 4 * q; i < n; i++) s0 += x[i];
    return (s0 + s1) + (s2 + s3);
}

static inline float row_sq_dev(const float *x, int64_t n, float m)
{
    int64_t q = n / 4;
    float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
#pragma omp simd reduction(+ : s0, s1, s2, s3)
    for (int64_t i = 0; i < q; i++) {
        s0 += (x[i] - m) * (x[i] - m);
        s1 += (x[q + i] - m) * (x[q + i] - m);
        s2 += (x[2 * q + i] - m) * (x[2 * q + i] - m);
        s3 += (x[3 * q + i] - m) * (x[3 * q + i] - m);
    }
    for (int64_t i = 4 * q; i < n; i++) s0 += (x[i] - m) * (x[i] - m);
    return (s0 + s1) + (s2 + s3);
}

/* sums of dout and of dout * (x - m) over a row, in two halves side by side */
static inline void row_dsums(const float *dout, const float *x, int64_t n, float m, float *sdy, float *sdyx)
{
    int64_t h = n / 2;
    float a0 = 0.0f, a1 = 0.0f, b0 = 0.0f, b1 = 0.0f;
#pragma omp simd reduction(+ : a0, a1, b0, b1)
    for (int64_t i = 0; i < h; i++) {
        a0 += dout[i];
        b0 += dout[i] * (x[i] - m);
        a1 += dout[h + i];
        b1 += dout[h + i] * (x[h + i] - m);
    }
    for (int64_t i = 2 * h; i < n; i++) {
        a0 += dout[i];
        b0 += dout[i] * (x[i] - m);
    }
    *sdy = a0 + a1;
    *sdyx = b0 + b1;
}

/* Records the node: inputs x, w, b; saves x and w (and b when silu, for
 * group_norm_silu's backward); takes stats (as extra), arg (as i[0]) and
 * silu (as i[1]). */
static gl_tensor *finish(gl_tensor *out, const char *op, gl_backward_fn backward, gl_tensor *x, gl_tensor *w,
                         gl_tensor *b, float *stats, int64_t arg, bool silu)
{
    gl_tensor *ins[3] = {x, w, b};
    gl_node *nd;
    if (gl_autograd_record(&nd, out, op, backward, 3, ins) != GL_OK) goto fail;
    if (!nd) {
        free(stats);
        return out;
    }
    nd->extra = stats;
    stats = NULL;
    nd->i[0] = arg;
    nd->i[1] = silu;
    if (gl_node_save(nd, 0, x) != GL_OK || (w && gl_node_save(nd, 1, w) != GL_OK) ||
        (silu && b && gl_node_save(nd, 2, b) != GL_OK))
        goto fail;
    return out;
fail:
    free(stats);
    gl_tensor_release(out);
    return NULL;
}

/* A new output like x and a stats buffer of 2 * n floats; false (both NULL) when out of memory. */
static bool alloc_out(const char *op, const gl_tensor *x, int64_t n, gl_tensor **out, float **stats)
{
    *stats = malloc((size_t)(2 * n + 1) * sizeof **stats);
    *out = *stats ? gl_tensor_empty(GL_F32, x->ndim, x->shape) : NULL;
    if (*out) return true;
    if (!*stats) gl_error(GL_ENOMEM, "%s: out of memory", op);
    free(*stats);
    *stats = NULL;
    return false;
}

/* --- batch_norm ------------------------------------------------------------------- */

/* mean, var [C] (biased) of x [N, C, S] per channel. */
static void bn_stats(float *mean, float *var, const float *x, ncs d)
{
#pragma omp parallel for if (d.N * d.C * d.S > PAR_MIN) schedule(static)
    for (int64_t c = 0; c < d.C; c++) {
        double s = 0.0, q = 0.0, M = (double)(d.N * d.S);
        for (int64_t n = 0; n < d.N; n++) s += row_sum(x + (n * d.C + c) * d.S, d.S);
        float m = (float)(s / M);
        for (int64_t n = 0; n < d.N; n++) q += row_sq_dev(x + (n * d.C + c) * d.S, d.S, m);
        mean[c] = m;
        var[c] = (float)(q / M);
    }
}

/* out [N, C, S] = (x - mean[c]) * rstd[c] * w[c] + b[c]; w, b may be NULL. */
static void bn_apply(float *out, const float *x, const float *mean, const float *rstd, const float *w,
                     const float *b, ncs d)
{
#pragma omp parallel for if (d.N * d.C * d.S > PAR_MIN) schedule(static)
    for (int64_t r = 0; r < d.N * d.C; r++) {
        int64_t c = r % d.C;
        float scale = rstd[c] * (w ? w[c] : 1.0f);
        affine_row(out + r * d.S, x + r * d.S, d.S, scale, (b ? b[c] : 0.0f) - mean[c] * scale);
    }
}

/* Adds the gradients of x [N, C, S], w [C], b [C] (each may be NULL) given
 * dout [N, C, S] and the mean, rstd [C] the forward used. */
static void bn_backward_kernel(grads g, const float *dout, const float *x, const float *mean, const float *rstd,
                               const float *w, bool training, ncs d)
{
#pragma omp parallel for if (d.N * d.C * d.S > PAR_MIN) schedule(static)
    for (int64_t c = 0; c < d.C; c++) {
        double sdy = 0.0, sdyx = 0.0;
        float m = mean[c], s = rstd[c], wc = w ? w[c] : 1.0f;
        if (g.dw || g.db || training)
            for (int64_t n = 0; n < d.N; n++) {
                float a, b;
                row_dsums(dout + (n * d.C + c) * d.S, x + (n * d.C + c) * d.S, d.S, m, &a, &b);
                sdy += a;
                sdyx += b;
            }
        if (g.dw) g.dw[c] += (float)(sdyx * s);
        if (g.db) g.db[c] += (float)sdy;
        if (!g.dx) continue;
        float k1 = wc * s, k2 = 0.0f, k3 = 0.0f;
        if (training) {
            double M = (double)(d.N * d.S);
            k2 = (float)(-(double)wc * s * s * s * sdyx / M);
            k3 = (float)(-(double)wc * s * sdy / M) - k2 * m;
        }
        for (int64_t n = 0; n < d.N; n++) {
            int64_t o = (n * d.C + c) * d.S;
            dx_row(g.dx + o, g.fresh, dout + o, x + o, d.S, k1, k2, k3);
        }
    }
}

/* Saved: x, weight. extra: mean [C] then rstd [C]. i[0]: training. */
static gl_status bn_backward(gl_node *nd)
{
    grads g;
    gl_status st = node_grads(nd, &g);
    if (st != GL_OK) return st;
    const gl_tensor *x = nd->saved[0];
    ncs d = dims_of(x);
    const float *mean = nd->extra;
    bn_backward_kernel(g, gl_tensor_f32(nd->gout), gl_tensor_f32(x), mean, mean + d.C, f32_or_null(nd->saved[1]),
                       nd->i[0] != 0, d);
    return GL_OK;
}

static bool check_running(const gl_tensor *t, const char *name, const gl_tensor *x)
{
    char s1[128], s2[128];
    if (t->dtype != GL_F32 || t->ndim != 1 || t->shape[0] != x->shape[1]) {
        gl_error(GL_EINVAL, "batch_norm: %s %s %s does not match the %lld channels of x %s (expected f32 [%lld])",
                 name, gl_dtype_name(t->dtype), gl_tensor_shape_str(t, s1, sizeof s1), (long long)x->shape[1],
                 gl_tensor_shape_str(x, s2, sizeof s2), (long long)x->shape[1]);
        return false;
    }
    if (t->storage->readonly) {
        gl_error(GL_EINVAL, "batch_norm: %s is read-only and cannot be updated", name);
        return false;
    }
    return true;
}

gl_tensor *gl_batch_norm(gl_tensor *x, gl_tensor *running_mean, gl_tensor *running_var, gl_tensor *weight,
                         gl_tensor *bias, bool training, float momentum, float eps)
{
    static const char *op = "batch_norm";
    char s[128];
    if (gl_interrupt_poll(op)) return NULL;
    if (!check_args(op, x, weight, bias, eps)) return NULL;
    if (!running_mean != !running_var)
        return gl_error_null(GL_EINVAL, "batch_norm: give both running_mean and running_var, or neither");
    if (running_mean && (!check_running(running_mean, "running_mean", x) ||
                         !check_running(running_var, "running_var", x)))
        return NULL;
    if (!training && !running_mean)
        return gl_error_null(GL_EINVAL, "batch_norm: eval mode (training=false) needs running_mean and running_var");
    ncs d = dims_of(x);
    int64_t M = d.N * d.S;
    if (training && M <= 1)
        return gl_error_null(GL_EINVAL, "batch_norm: expected more than 1 value per channel when training, got x %s",
                             gl_tensor_shape_str(x, s, sizeof s));
    gl_tensor *out;
    float *stats; /* mean [C], then rstd [C] */
    if (!alloc_out(op, x, d.C, &out, &stats)) return NULL;
    float *mean = stats, *rstd = stats + d.C;
    if (training) {
        bn_stats(mean, rstd, gl_tensor_f32(x), d); /* rstd holds the biased variance for now */
        if (running_mean) {
            float *rm = gl_tensor_f32(running_mean), *rv = gl_tensor_f32(running_var);
            double unbias = (double)M / (double)(M - 1);
            for (int64_t c = 0; c < d.C; c++) {
                rm[c] = (1.0f - momentum) * rm[c] + momentum * mean[c];
                rv[c] = (1.0f - momentum) * rv[c] + momentum * (float)(rstd[c] * unbias);
            }
        }
        for (int64_t c = 0; c < d.C; c++) rstd[c] = 1.0f / sqrtf(rstd[c] + eps);
    } else {
        const float *rm = gl_tensor_f32(running_mean), *rv = gl_tensor_f32(running_var);
        for (int64_t c = 0; c < d.C; c++) {
            mean[c] = rm[c];
            rstd[c] = 1.0f / sqrtf(rv[c] + eps);
        }
    }
    bn_apply(gl_tensor_f32(out), gl_tensor_f32(x), mean, rstd, f32_or_null(weight), f32_or_null(bias), d);
    return finish(out, op, bn_backward, x, weight, bias, stats, training, false);
}

/* --- group_norm --------------------------------------------------------------------- */

/* x [N, G, CG, S] seen as N*G rows of CG*S contiguous values. mean, rstd [N*G];
 * out [N, C, S], through SiLU when silu; w, b [C] or NULL. */
static void gn_forward_kernel(float *out, float *mean, float *rstd, const float *x, const float *w, const float *b,
                              ncs d, int64_t G, float eps, bool silu)
{
    int64_t CG = d.C / G;
#pragma omp parallel for if (d.N * d.C * d.S > PAR_MIN) schedule(static)
    for (int64_t r = 0; r < d.N * G; r++) {
        const float *xr = x + r * CG * d.S;
        double s = 0.0, q = 0.0, L = (double)(CG * d.S);
        for (int64_t k = 0; k < CG; k++) s += row_sum(xr + k * d.S, d.S);
        float m = (float)(s / L);
        for (int64_t k = 0; k < CG; k++) q += row_sq_dev(xr + k * d.S, d.S, m);
        float rs = 1.0f / sqrtf((float)(q / L) + eps);
        mean[r] = m;
        rstd[r] = rs;
        for (int64_t k = 0; k < CG; k++) {
            int64_t c = (r % G) * CG + k;
            float scale = rs * (w ? w[c] : 1.0f), shift = (b ? b[c] : 0.0f) - m * scale;
            if (silu)
                affine_silu_row(out + (r * CG + k) * d.S, xr + k * d.S, d.S, scale, shift);
            else
                affine_row(out + (r * CG + k) * d.S, xr + k * d.S, d.S, scale, shift);
        }
    }
}

/* part [N, C, 2]: per sample, channel: sum dout * xhat and sum dout (NULL when
 * neither dw nor db is wanted); dx as grads; the rest as gn_forward_kernel.
 * With SiLU, da [threads][CG S] holds each thread's group of dout * silu'. */
static void gn_backward_kernel(grads g, float *part, const float *dout, const float *x, const float *mean,
                               const float *rstd, const float *w, const float *bias, float *da, ncs d, int64_t G)
{
    int64_t CG = d.C / G;
#pragma omp parallel for if (d.N * d.C * d.S > PAR_MIN) schedule(static)
    for (int64_t r = 0; r < d.N * G; r++) {
        int64_t o = r * CG * d.S, c0 = (r % G) * CG;
        float m = mean[r], s = rstd[r];
        const float *dy = dout + o; /* the group's dL/d(normalized values) */
        if (da) {
            float *dr = da + omp_get_thread_num() * CG * d.S;
            for (int64_t k = 0; k < CG; k++) {
                float scale = s * (w ? w[c0 + k] : 1.0f), shift = (bias ? bias[c0 + k] : 0.0f) - m * scale;
                silu_grad_row(dr + k * d.S, dout + o + k * d.S, x + o + k * d.S, d.S, scale, shift);
            }
            dy = dr;
        }
        double sdn = 0.0, sdnx = 0.0; /* sums of dn and dn * (x - m) over the group */
        for (int64_t k = 0; k < CG; k++) {
            float a, b, wc = w ? w[c0 + k] : 1.0f;
            row_dsums(dy + k * d.S, x + o + k * d.S, d.S, m, &a, &b);
            sdn += (double)wc * a;
            sdnx += (double)wc * b;
            if (part) {
                part[(r * CG + k) * 2] = b * s;
                part[(r * CG + k) * 2 + 1] = a;
            }
        }
        if (!g.dx) continue;
        double L = (double)(CG * d.S);
        float k2 = (float)(-(double)s * s * s * sdnx / L);
        float k3 = (float)(-(double)s * sdn / L) - k2 * m;
        for (int64_t k = 0; k < CG; k++) {
            int64_t ok = o + k * d.S;
            dx_row(g.dx + ok, g.fresh, dy + k * d.S, x + ok, d.S, s * (w ? w[c0 + k] : 1.0f), k2, k3);
        }
    }
}

/* dw[c] += sum over n of part[n, c, 0], db[c] likewise with part[n, c, 1]; part [R, C, 2]. */
static void reduce_parts(float *dw, float *db, const float *part, int64_t R, int64_t C)
{
    for (int64_t c = 0; c < C; c++) {
        double sw = 0.0, sb = 0.0;
        for (int64_t r = 0; r < R; r++) {
            sw += part[(r * C + c) * 2];
            sb += part[(r * C + c) * 2 + 1];
        }
        if (dw) dw[c] += (float)sw;
        if (db) db[c] += (float)sb;
    }
}

/* Saved: x, weight, bias (with SiLU). extra: mean [N*G] then rstd [N*G]. i[0]: G; i[1]: SiLU. */
static gl_status gn_backward(gl_node *nd)
{
    grads g;
    gl_status st = node_grads(nd, &g);
    if (st != GL_OK) return st;
    const gl_tensor *x = nd->saved[0];
    ncs d = dims_of(x);
    int64_t G = nd->i[0];
    bool silu = nd->i[1];
    float *part = NULL, *da = NULL;
    if ((g.dw || g.db) && !(part = malloc((size_t)(d.N * d.C * 2 + 1) * sizeof *part)))
        return gl_error(GL_ENOMEM, "group_norm backward: out of memory");
    if (silu && !(da = malloc((size_t)(omp_get_max_threads() * d.C / G * d.S) * sizeof *da))) {
        free(part);
        return gl_error(GL_ENOMEM, "group_norm backward: out of memory");
    }
    const float *mean = nd->extra;
    gn_backward_kernel(g, part, gl_tensor_f32(nd->gout), gl_tensor_f32(x), mean, mean + d.N * G,
                       f32_or_null(nd->saved[1]), f32_or_null(nd->saved[2]), da, d, G);
    if (part) reduce_parts(g.dw, g.db, part, d.N, d.C);
    free(part);
    free(da);
    return GL_OK;
}

static gl_tensor *group_norm(gl_tensor *x, int64_t groups, gl_tensor *weight, gl_tensor *bias, float eps, bool silu)
{
    static const char *op = "group_norm";
    char s[128];
    if (gl_interrupt_poll(op)) return NULL;
    if (!check_args(op, x, weight, bias, eps)) return NULL;
    ncs d = dims_of(x);
    if (groups < 1 || d.C % groups != 0)
        return gl_error_null(GL_EINVAL, "group_norm: %lld groups do not divide the %lld channels of x %s",
                             (long long)groups, (long long)d.C, gl_tensor_shape_str(x, s, sizeof s));
    gl_tensor *out;
    float *stats;
    if (!alloc_out(op, x, d.N * groups, &out, &stats)) return NULL;
    gn_forward_kernel(gl_tensor_f32(out), stats, stats + d.N * groups, gl_tensor_f32(x), f32_or_null(weight),
                      f32_or_null(bias), d, groups, eps, silu);
    return finish(out, op, gn_backward, x, weight, bias, stats, groups, silu);
}

gl_tensor *gl_group_norm(gl_tensor *x, int64_t groups, gl_tensor *weight, gl_tensor *bias, float eps)
{
    return group_norm(x, groups, weight, bias, eps, false);
}

gl_tensor *gl_group_norm_silu(gl_tensor *x, int64_t groups, gl_tensor *weight, gl_tensor *bias, float eps)
{
    return group_norm(x, groups, weight, bias, eps, true);
}

/* --- layer_norm_2d -------------------------------------------------------------------- */

/* Positions per block: a block's per-position stats live on the stack, and
 * blocks of (sample, positions) are the units of parallel work. */
#define LN_BLK 128

/* One block: positions [p0, p0 + P) of sample n. mean, rstd [N*S]; out, x [N, C, S]; w, b [C] or NULL. */
static void ln2d_forward_block(float *out, float *mean, float *rstd, const float *x, const float *w, const float *b,
                               ncs d, int64_t n, int64_t p0, int64_t P, float eps)
{
    float m[LN_BLK] = {0}, v[LN_BLK] = {0};
    const float *xn = x + n * d.C * d.S + p0;
    for (int64_t c = 0; c < d.C; c++) {
#pragma omp simd
        for (int64_t j = 0; j < P; j++) m[j] += xn[c * d.S + j];
    }
    for (int64_t j = 0; j < P; j++) m[j] /= (float)d.C;
    for (int64_t c = 0; c < d.C; c++) {
#pragma omp simd
        for (int64_t j = 0; j < P; j++) v[j] += (xn[c * d.S + j] - m[j]) * (xn[c * d.S + j] - m[j]);
    }
    for (int64_t j = 0; j < P; j++) v[j] = 1.0f / sqrtf(v[j] / (float)d.C + eps);
    for (int64_t c = 0; c < d.C; c++) {
        float wc = w ? w[c] : 1.0f, bc = b ? b[c] : 0.0f;
        float *o = out + n * d.C * d.S + p0 + c * d.S;
#pragma omp simd
        for (int64_t j = 0; j < P; j++) o[j] = (xn[c * d.S + j] - m[j]) * v[j] * wc + bc;
    }
    for (int64_t j = 0; j < P; j++) {
        mean[n * d.S + p0 + j] = m[j];
        rstd[n * d.S + p0 + j] = v[j];
    }
}

/* One block's gradients; part [C, 2] (or NULL): the block's sums of dout * xhat and dout per channel. */
static void ln2d_backward_block(grads g, float *part, const float *dout, const float *x, const float *mean,
                                const float *rstd, const float *w, ncs d, int64_t n, int64_t p0, int64_t P)
{
    float a[LN_BLK] = {0}, bsum[LN_BLK] = {0}; /* sums over channels of dn and dn * xhat */
    int64_t base = n * d.C * d.S + p0;
    const float *m = mean + n * d.S + p0, *s = rstd + n * d.S + p0;
    for (int64_t c = 0; c < d.C; c++) {
        const float *gy = dout + base + c * d.S, *xc = x + base + c * d.S;
        float wc = w ? w[c] : 1.0f, pw = 0.0f, pb = 0.0f;
#pragma omp simd reduction(+ : pw, pb)
        for (int64_t j = 0; j < P; j++) {
            float xh = (xc[j] - m[j]) * s[j];
            a[j] += gy[j] * wc;
            bsum[j] += gy[j] * wc * xh;
            pw += gy[j] * xh;
            pb += gy[j];
        }
        if (part) {
            part[c * 2] = pw;
            part[c * 2 + 1] = pb;
        }
    }
    if (!g.dx) return;
    for (int64_t j = 0; j < P; j++) {
        a[j] /= (float)d.C;
        bsum[j] /= (float)d.C;
    }
    for (int64_t c = 0; c < d.C; c++) {
        const float *gy = dout + base + c * d.S, *xc = x + base + c * d.S;
        float *dx = g.dx + base + c * d.S, wc = w ? w[c] : 1.0f;
        if (g.fresh) {
#pragma omp simd
            for (int64_t j = 0; j < P; j++) dx[j] = s[j] * (gy[j] * wc - a[j] - (xc[j] - m[j]) * s[j] * bsum[j]);
        } else {
#pragma omp simd
            for (int64_t j = 0; j < P; j++) dx[j] += s[j] * (gy[j] * wc - a[j] - (xc[j] - m[j]) * s[j] * bsum[j]);
        }
    }
}

/* Saved: x, weight. extra: mean [N*S] then rstd [N*S]. */
static gl_status ln2d_backward(gl_node *nd)
{
    grads g;
    gl_status st = node_grads(nd, &g);
    if (st != GL_OK) return st;
    const gl_tensor *x = nd->saved[0];
    ncs d = dims_of(x);
    int64_t nb = (d.S + LN_BLK - 1) / LN_BLK, units = d.N * nb;
    float *part = NULL;
    if ((g.dw || g.db) && !(part = malloc((size_t)(units * d.C * 2 + 1) * sizeof *part)))
        return gl_error(GL_ENOMEM, "layer_norm_2d backward: out of memory");
    const float *mean = nd->extra, *dout = gl_tensor_f32(nd->gout), *xd = gl_tensor_f32(x),
                *w = f32_or_null(nd->saved[1]);
#pragma omp parallel for if (d.N * d.C * d.S > PAR_MIN) schedule(static)
    for (int64_t u = 0; u < units; u++) {
        int64_t p0 = (u % nb) * LN_BLK, P = d.S - p0 < LN_BLK ? d.S - p0 : LN_BLK;
        ln2d_backward_block(g, part ? part + u * d.C * 2 : NULL, dout, xd, mean, mean + d.N * d.S, w, d, u / nb, p0,
                            P);
    }
    if (part) reduce_parts(g.dw, g.db, part, units, d.C);
    free(part);
    return GL_OK;
}

gl_tensor *gl_layer_norm_2d(gl_tensor *x, gl_tensor *weight, gl_tensor *bias, float eps)
{
    static const char *op = "layer_norm_2d";
    if (gl_interrupt_poll(op)) return NULL;
    if (!check_args(op, x, weight, bias, eps)) return NULL;
    ncs d = dims_of(x);
    gl_tensor *out;
    float *stats;
    if (!alloc_out(op, x, d.N * d.S, &out, &stats)) return NULL;
    int64_t nb = (d.S + LN_BLK - 1) / LN_BLK;
    float *o = gl_tensor_f32(out);
    const float *xd = gl_tensor_f32(x), *w = f32_or_null(weight), *b = f32_or_null(bias);
#pragma omp parallel for if (d.N * d.C * d.S > PAR_MIN) schedule(static)
    for (int64_t u = 0; u < d.N * nb; u++) {
        int64_t p0 = (u % nb) * LN_BLK, P = d.S - p0 < LN_BLK ? d.S - p0 : LN_BLK;
        ln2d_forward_block(o, stats, stats + d.N * d.S, xd, w, b, d, u / nb, p0, P, eps);
    }
    return finish(out, op, ln2d_backward, x, weight, bias, stats, 0, false);
}
