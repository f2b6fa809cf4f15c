#include "optim/optim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- scalar lists ------------------------------------------------------------ */

gl_status gl_scalar_list_add(gl_scalar_list *l, const char *name, double v)
{
    if (l->n == l->cap) {
        int64_t cap = l->cap ? 2 * l->cap : 16;
        gl_named_scalar *items = realloc(l->items, (size_t)cap * sizeof *items);
        if (!items) return gl_error(GL_ENOMEM, "scalar list: out of memory");
        l->items = items;
        l->cap = cap;
    }
    char *copy = strdup(name);
    if (!copy) return gl_error(GL_ENOMEM, "scalar list: out of memory");
    l->items[l->n++] = (gl_named_scalar){copy, v};
    return GL_OK;
}

bool gl_scalar_list_find(const gl_scalar_list *l, const char *name, double *v)
{
    for (int64_t k = 0; k < l->n; k++)
        if (strcmp(l->items[k].name, name) == 0) return *v = l->items[k].v, true;
    return false;
}

void gl_scalar_list_clear(gl_scalar_list *l)
{
    for (int64_t k = 0; k < l->n; k++) free(l->items[k].name);
    free(l->items);
    *l = (gl_scalar_list)GL_SCALAR_LIST_INIT;
}

/* --- construction ------------------------------------------------------------ */

const char *gl_optim_kind_name(gl_optim_kind kind)
{
    return kind == GL_OPTIM_SGD ? "SGD" : kind == GL_OPTIM_ADAM ? "Adam" : "AdamW";
}

/* The Lua constructor's name, for messages. */
static const char *op_name(gl_optim_kind kind)
{
    return kind == GL_OPTIM_SGD ? "sgd" : kind == GL_OPTIM_ADAM ? "adam" : "adamw";
}

gl_optim_hparams gl_optim_defaults(gl_optim_kind kind)
{
    return (gl_optim_hparams){.lr = 1e-3,
                              .weight_decay = kind == GL_OPTIM_ADAMW ? 1e-2 : 0.0,
                              .beta1 = 0.9,
                              .beta2 = 0.999,
                              .eps = 1e-8};
}

gl_status gl_optim_check_hparams(gl_optim_kind kind, const gl_optim_hparams *h)
{
    const char *op = op_name(kind);
    if (!(h->lr >= 0)) return gl_error(GL_EINVAL, "%s: lr must be >= 0 (got %g)", op, h->lr);
    if (!(h->weight_decay >= 0))
        return gl_error(GL_EINVAL, "%s: weight_decay must be >= 0 (got %g)", op, h->weight_decay);
    if (kind == GL_OPTIM_SGD) {
        if (!(h->momentum >= 0)) return gl_error(GL_EINVAL, "%s: momentum must be >= 0 (got %g)", op, h->momentum);
        if (!isfinite(h->dampening)) return gl_error(GL_EINVAL, "%s: dampening must be finite", op);
        if (h->nesterov && (h->momentum <= 0 || h->dampening != 0))
            return gl_error(GL_EINVAL,
                            "%s: nesterov needs momentum > 0 and dampening 0 (got momentum %g, dampening %g)",
                            op, h->momentum, h->dampening);
        return GL_OK;
    }
    if (!(h->eps >= 0)) return gl_error(GL_EINVAL, "%s: eps must be >= 0 (got %g)", op, h->eps);
    if (!(h->beta1 >= 0 && h->beta1 < 1))
        return gl_error(GL_EINVAL, "%s: beta1 must be in [0, 1) (got %g)", op, h->beta1);
    if (!(h->beta2 >= 0 && h->beta2 < 1))
        return gl_error(GL_EINVAL, "%s: beta2 must be in [0, 1) (got %g)", op, h->beta2);
    return GL_OK;
}

gl_optim *gl_optim_new(gl_optim_kind kind)
{
    gl_optim *o = calloc(1, sizeof *o);
    if (!o) return gl_error_null(GL_ENOMEM, "%s: out of memory", op_name(kind));
    o->kind = kind;
    return o;
}

static void state_clear(gl_optim_param_state *s)
{
    gl_tensor_release(s->exp_avg);
    gl_tensor_release(s->exp_avg_sq);
    gl_tensor_release(s->momentum_buffer);
    *s = (gl_optim_param_state){0};
}

static void group_clear(gl_param_group *g)
{
    for (int64_t k = 0; k < g->params.n; k++) state_clear(&g->state[k]);
    free(g->state);
    gl_tensor_list_clear(&g->params);
}

void gl_optim_free(gl_optim *o)
{
    if (!o) return;
    for (int64_t k = 0; k < o->n_groups; k++) group_clear(&o->groups[k]);
    free(o->groups);
    free(o);
}

static bool in_group(const gl_param_group *g, const gl_tensor *t)
{
    for (int64_t k = 0; k < g->params.n; k++)
        if (g->params.items[k].t == t) return true;
    return false;
}

gl_status gl_optim_add_group(gl_optim *o, const gl_tensor_list *params, const gl_optim_hparams *h)
{
    const char *op = op_name(o->kind);
    gl_status st = gl_optim_check_hparams(o->kind, h);
    if (st != GL_OK) return st;
    gl_param_group g = {.params = GL_TENSOR_LIST_INIT, .h = *h};
    for (int64_t k = 0; k < params->n && st == GL_OK; k++) {
        gl_tensor *t = params->items[k].t;
        if (t->dtype != GL_F32)
            st = gl_error(GL_EINVAL, "%s: parameter %lld is %s; only f32 tensors can be optimized", op,
                          (long long)k + 1, gl_dtype_name(t->dtype));
        else if (t->grad_fn)
            st = gl_error(GL_EINVAL, "%s: parameter %lld is the result of an op, not a leaf tensor", op,
                          (long long)k + 1);
        for (int64_t j = 0; j < o->n_groups && st == GL_OK; j++)
            if (in_group(&o->groups[j], t))
                st = gl_error(GL_EINVAL,
                              "%s: parameter %lld is already in group %lld; a tensor may be in one group only",
                              op, (long long)k + 1, (long long)j + 1);
        if (st == GL_OK && !in_group(&g, t)) st = gl_tensor_list_add(&g.params, params->items[k].name, t);
    }
    if (st == GL_OK && o->n_groups == o->cap_groups) {
        int64_t cap = o->cap_groups ? 2 * o->cap_groups : 4;
        gl_param_group *groups = realloc(o->groups, (size_t)cap * sizeof *groups);
        if (groups) {
            o->groups = groups;
            o->cap_groups = cap;
        } else {
            st = gl_error(GL_ENOMEM, "%s: out of memory", op);
        }
    }
    if (st == GL_OK && g.params.n && !(g.state = calloc((size_t)g.params.n, sizeof *g.state)))
        st = gl_error(GL_ENOMEM, "%s: out of memory", op);
    if (st != GL_OK) {
        group_clear(&g);
        return st;
    }
    o->groups[o->n_groups++] = g;
    return GL_OK;
}

/* --- stepping ----------------------------------------------------------------- */

/* Parameters a step updates: not frozen, and given a gradient. */
static bool active(const gl_tensor *p) { return p->requires_grad && p->grad; }

static gl_status ensure(gl_tensor **slot, const gl_tensor *like)
{
    if (!*slot && !(*slot = gl_tensor_new(GL_F32, like->ndim, like->shape))) return gl_error_code();
    return GL_OK;
}

/* ATen's CPU kernels round a * b + c once (FMA) in add(other, alpha) and
 * addcmul, not in mul, div or addcdiv; fmaf reproduces them bit for bit.
 * On x86-64 a clone built for FMA hardware makes fmaf one instruction rather
 * than a libm call; the results are the same either way. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define FMA_CLONES __attribute__((target_clones("fma", "default")))
#else
#define FMA_CLONES
#endif

/* p[n], g[n] the gradient, buf[n] the momentum buffer (NULL without momentum),
 * fresh: buf was just created and takes d as it is. */
FMA_CLONES static void sgd_update(float *p, const float *g, float *buf, bool fresh, int64_t n,
                                  const gl_optim_hparams *h)
{
    const bool decay = h->weight_decay != 0, nesterov = h->nesterov;
    const float wd = (float)h->weight_decay, mom = (float)h->momentum, damp = (float)(1.0 - h->dampening);
    const float neg_lr = (float)-h->lr;
#pragma omp parallel for if (n > 32768)
    for (int64_t i = 0; i < n; i++) {
        float d = decay ? fmaf(wd, p[i], g[i]) : g[i];               /* grad.add(p, alpha=wd) */
        if (buf) {
            float b = fresh ? d : fmaf(damp, d, buf[i] * mom);        /* buf.mul_(mom).add_(d, alpha=1-damp) */
            buf[i] = b;
            d = nesterov ? fmaf(mom, b, d) : b;                       /* d.add(buf, alpha=mom) */
        }
        p[i] = fmaf(neg_lr, d, p[i]);                                 /* p.add_(d, alpha=-lr) */
    }
}

/* Adam(W)'s per-element constants. decay is 1 for Adam: p * 1 == p exactly. */
typedef struct {
    bool l2;
    float wd, decay, beta1, c1, beta2, c2, neg_step_size, bc2_sqrt, eps;
} adam_consts;

enum { ADAM_BLOCK = 256 };

/* Updates len <= ADAM_BLOCK elements of p, m (exp_avg), v (exp_avg_sq) from g.
 * Split so that most of it vectorizes: sqrtf is a call that may set errno
 * (the build keeps -fmath-errno), which stops GCC from vectorizing a loop
 * holding it, and so does a float op under a condition (it may trap). So
 * one loop updates m and v (l2 picks one of two copies of it), a scalar
 * loop takes the square roots, and a last loop updates p. A function of its
 * own, not the body of the OpenMP loop: the outlined body of a cloned
 * function did not vectorize. */
FMA_CLONES static void adam_block(float *restrict p, const float *restrict g, float *restrict m, float *restrict v,
                                  int64_t len, const adam_consts *k)
{
    const adam_consts c = *k;
    float pi[ADAM_BLOCK], root[ADAM_BLOCK];
#define ADAM_MV(D)                                                                                   \
    _Pragma("omp simd")                                                                              \
    for (int64_t j = 0; j < len; j++) {                                                              \
        pi[j] = p[j] * c.decay;                               /* p.mul_(1 - lr*wd) */                \
        const float d = (D);                                                                         \
        m[j] = fmaf(c.c1, d, m[j] * c.beta1);                 /* m.mul_(b1).add_(d, alpha=1-b1) */   \
        v[j] = fmaf(c.c2 * d, d, v[j] * c.beta2);             /* v.mul_(b2).addcmul_(d, d, 1-b2) */  \
    }
    if (c.l2) {
        ADAM_MV(fmaf(c.wd, pi[j], g[j])) /* grad.add(p, alpha=wd) */
    } else {
        ADAM_MV(g[j])
    }
#undef ADAM_MV
    for (int64_t j = 0; j < len; j++) root[j] = sqrtf(v[j]);
#pragma omp simd
    for (int64_t j = 0; j < len; j++) {
        const float denom = root[j] / c.bc2_sqrt + c.eps;  /* (v.sqrt() / bc2_sqrt).add_(eps) */
        p[j] = pi[j] + c.neg_step_size * m[j] / denom;     /* p.addcdiv_(m, denom, value=-step_size) */
    }
}

/* p, g, m (exp_avg), v (exp_avg_sq): [n]; step counts this one. */
static void adam_update(float *p, const float *g, float *m, float *v, int64_t n, const gl_optim_hparams *h,
                        int64_t step, bool decoupled)
{
    const double bc1 = 1.0 - pow(h->beta1, (double)step), bc2 = 1.0 - pow(h->beta2, (double)step);
    const adam_consts c = {
        .l2 = !decoupled && h->weight_decay != 0,
        .wd = (float)h->weight_decay,
        .decay = decoupled ? (float)(1.0 - h->lr * h->weight_decay) : 1.0f,
        .beta1 = (float)h->beta1,
        .c1 = (float)(1.0 - h->beta1),
        .beta2 = (float)h->beta2,
        .c2 = (float)(1.0 - h->beta2),
        .neg_step_size = (float)-(h->lr / bc1),
        .bc2_sqrt = (float)sqrt(bc2),
        .eps = (float)h->eps,
    };
    const int64_t nblk = (n + ADAM_BLOCK - 1) / ADAM_BLOCK;
#pragma omp parallel for if (n > 32768)
    for (int64_t b = 0; b < nblk; b++) {
        const int64_t i0 = b * ADAM_BLOCK;
        adam_block(p + i0, g + i0, m + i0, v + i0, n - i0 < ADAM_BLOCK ? n - i0 : ADAM_BLOCK, &c);
    }
}

gl_status gl_optim_step(gl_optim *o)
{
    const char *op = op_name(o->kind);
    for (int64_t gi = 0, idx = 0; gi < o->n_groups; gi++)
        for (int64_t k = 0; k < o->groups[gi].params.n; k++, idx++) {
            const gl_tensor *p = o->groups[gi].params.items[k].t;
            if (!active(p)) continue;
            if (p->storage->readonly)
                return gl_error(GL_EINVAL, "%s: parameter %lld is read-only; freeze it or copy it", op,
                                (long long)idx + 1);
            if (p->grad->numel != p->numel || p->grad->dtype != GL_F32)
                return gl_error(GL_EINVAL, "%s: gradient of parameter %lld does not match its shape", op,
                                (long long)idx + 1);
        }
    for (int64_t gi = 0; gi < o->n_groups; gi++) {
        gl_param_group *g = &o->groups[gi];
        for (int64_t k = 0; k < g->params.n; k++) {
            gl_tensor *p = g->params.items[k].t;
            gl_optim_param_state *s = &g->state[k];
            if (!active(p)) continue;
            gl_status st = GL_OK;
            if (o->kind == GL_OPTIM_SGD) {
                bool fresh = !s->momentum_buffer;
                if (g->h.momentum != 0) st = ensure(&s->momentum_buffer, p);
                if (st != GL_OK) return st;
                sgd_update(gl_tensor_f32(p), gl_tensor_f32(p->grad),
                           g->h.momentum != 0 ? gl_tensor_f32(s->momentum_buffer) : NULL, fresh, p->numel, &g->h);
            } else {
                if ((st = ensure(&s->exp_avg, p)) != GL_OK || (st = ensure(&s->exp_avg_sq, p)) != GL_OK) return st;
                s->step++;
                adam_update(gl_tensor_f32(p), gl_tensor_f32(p->grad), gl_tensor_f32(s->exp_avg),
                            gl_tensor_f32(s->exp_avg_sq), p->numel, &g->h, s->step, o->kind == GL_OPTIM_ADAMW);
            }
        }
    }
    return GL_OK;
}

void gl_optim_zero_grad(gl_optim *o)
{
    for (int64_t gi = 0; gi < o->n_groups; gi++)
        for (int64_t k = 0; k < o->groups[gi].params.n; k++) {
            gl_tensor *p = o->groups[gi].params.items[k].t;
            gl_tensor_release(p->grad);
            p->grad = NULL;
        }
}

void gl_optim_set_lr(gl_optim *o, double lr)
{
    for (int64_t gi = 0; gi < o->n_groups; gi++) o->groups[gi].h.lr = lr;
}

/* --- state dicts --------------------------------------------------------------- */

enum { F_EXP_AVG, F_EXP_AVG_SQ, F_MOMENTUM, F_COUNT };
static const char *const tensor_fields[F_COUNT] = {"exp_avg", "exp_avg_sq", "momentum_buffer"};

static gl_tensor **field_slot(gl_optim_param_state *s, int f)
{
    return f == F_EXP_AVG ? &s->exp_avg : f == F_EXP_AVG_SQ ? &s->exp_avg_sq : &s->momentum_buffer;
}

static bool field_allowed(gl_optim_kind kind, int f) { return (kind == GL_OPTIM_SGD) == (f == F_MOMENTUM); }

/* Group hyperparameters by name: SGD's, then Adam's. */
static const char *const sgd_hparams[] = {"lr", "weight_decay", "momentum", "dampening", "nesterov", NULL};
static const char *const adam_hparams[] = {"lr", "weight_decay", "beta1", "beta2", "eps", NULL};

static double *hparam_slot(gl_optim_hparams *h, const char *name, double *nesterov)
{
    if (strcmp(name, "lr") == 0) return &h->lr;
    if (strcmp(name, "weight_decay") == 0) return &h->weight_decay;
    if (strcmp(name, "momentum") == 0) return &h->momentum;
    if (strcmp(name, "dampening") == 0) return &h->dampening;
    if (strcmp(name, "beta1") == 0) return &h->beta1;
    if (strcmp(name, "beta2") == 0) return &h->beta2;
    if (strcmp(name, "eps") == 0) return &h->eps;
    if (strcmp(name, "nesterov") == 0) return nesterov;
    return NULL;
}

static int64_t total_params(const gl_optim *o)
{
    int64_t n = 0;
    for (int64_t gi = 0; gi < o->n_groups; gi++) n += o->groups[gi].params.n;
    return n;
}

gl_status gl_optim_state_dict(const gl_optim *o, gl_tensor_list *tensors, gl_scalar_list *scalars)
{
    char name[96];
    gl_status st = GL_OK;
    const char *const *hp = o->kind == GL_OPTIM_SGD ? sgd_hparams : adam_hparams;
    for (int64_t gi = 0, idx = 0; gi < o->n_groups && st == GL_OK; gi++) {
        gl_param_group *g = &o->groups[gi];
        snprintf(name, sizeof name, "group.%lld.params", (long long)gi);
        st = gl_scalar_list_add(scalars, name, (double)g->params.n);
        gl_optim_hparams h = g->h;
        double nesterov = h.nesterov;
        for (const char *const *n = hp; *n && st == GL_OK; n++) {
            snprintf(name, sizeof name, "group.%lld.%s", (long long)gi, *n);
            st = gl_scalar_list_add(scalars, name, *hparam_slot(&h, *n, &nesterov));
        }
        for (int64_t k = 0; k < g->params.n && st == GL_OK; k++, idx++) {
            gl_optim_param_state *s = &g->state[k];
            for (int f = 0; f < F_COUNT && st == GL_OK; f++) {
                gl_tensor *t = *field_slot(s, f);
                if (!t) continue;
                snprintf(name, sizeof name, "state.%lld.%s", (long long)idx, tensor_fields[f]);
                st = gl_tensor_list_add(tensors, name, t);
            }
            if (st == GL_OK && o->kind != GL_OPTIM_SGD && s->step > 0) {
                snprintf(name, sizeof name, "state.%lld.step", (long long)idx);
                st = gl_scalar_list_add(scalars, name, (double)s->step);
            }
        }
    }
    return st;
}

/* Splits "state.<i>.<field>" or "group.<g>.<field>"; false when name has another form. */
static bool parse_key(const char *name, const char *head, int64_t *index, const char **field)
{
    size_t n = strlen(head);
    if (strncmp(name, head, n) != 0 || name[n] != '.') return false;
    char *end;
    const char *digits = name + n + 1;
    if (*digits < '0' || *digits > '9') return false;
    long long v = strtoll(digits, &end, 10);
    if (*end != '.' || !end[1]) return false;
    *index = v;
    *field = end + 1;
    return true;
}

/* Where parameter idx (counted across groups) lives. */
static gl_param_group *locate(gl_optim *o, int64_t idx, int64_t *k)
{
    for (int64_t gi = 0; gi < o->n_groups; gi++) {
        if (idx < o->groups[gi].params.n) return *k = idx, &o->groups[gi];
        idx -= o->groups[gi].params.n;
    }
    return NULL;
}

static gl_status unexpected_key(const gl_optim *o, const char *name)
{
    return gl_error(GL_EINVAL, "load_state_dict: unexpected key '%s' for %s with %lld groups and %lld parameters", name,
                    gl_optim_kind_name(o->kind), (long long)o->n_groups, (long long)total_params(o));
}

/* Checks every key against o; fills new_state (total_params entries) and new_h (n_groups). */
static gl_status load_check(gl_optim *o, const gl_tensor_list *tensors, const gl_scalar_list *scalars,
                            gl_optim_param_state *new_state, gl_optim_hparams *new_h)
{
    int64_t n = total_params(o), idx, k;
    const char *field;
    char a[128], b[128];
    for (int64_t j = 0; j < tensors->n; j++) {
        const char *name = tensors->items[j].name;
        const gl_tensor *t = tensors->items[j].t;
        int f = 0;
        if (!name || !parse_key(name, "state", &idx, &field) || idx >= n) return unexpected_key(o, name ? name : "");
        while (f < F_COUNT && strcmp(field, tensor_fields[f]) != 0) f++;
        if (f == F_COUNT || !field_allowed(o->kind, f)) return unexpected_key(o, name);
        const gl_tensor *p = locate(o, idx, &k)->params.items[k].t;
        if (!gl_shape_equal(t->ndim, t->shape, p->ndim, p->shape) || t->dtype != GL_F32)
            return gl_error(GL_EINVAL, "load_state_dict: '%s' is %s %s in the file, parameter %lld is f32 %s", name,
                            gl_dtype_name(t->dtype), gl_tensor_shape_str(t, a, sizeof a), (long long)idx + 1,
                            gl_tensor_shape_str(p, b, sizeof b));
        *field_slot(&new_state[idx], f) = (gl_tensor *)t; /* borrowed until copied */
    }
    for (int64_t gi = 0; gi < o->n_groups; gi++) new_h[gi] = o->groups[gi].h;
    bool *counted = calloc((size_t)o->n_groups + 1, sizeof *counted);
    if (!counted) return gl_error(GL_ENOMEM, "load_state_dict: out of memory");
    gl_status st = GL_OK;
    for (int64_t j = 0; j < scalars->n && st == GL_OK; j++) {
        const char *name = scalars->items[j].name;
        double v = scalars->items[j].v;
        if (parse_key(name, "state", &idx, &field) && idx < n && o->kind != GL_OPTIM_SGD &&
            strcmp(field, "step") == 0) {
            if (!(v >= 1 && v == floor(v) && v < 9e15))
                st = gl_error(GL_EINVAL, "load_state_dict: '%s' must be a positive integer (got %g)", name, v);
            new_state[idx].step = (int64_t)v;
        } else if (parse_key(name, "group", &idx, &field) && idx < o->n_groups) {
            double nesterov = new_h[idx].nesterov;
            double *slot = hparam_slot(&new_h[idx], field, &nesterov);
            bool known = false;
            for (const char *const *hp = o->kind == GL_OPTIM_SGD ? sgd_hparams : adam_hparams; *hp; hp++)
                known = known || strcmp(*hp, field) == 0;
            if (strcmp(field, "params") == 0) {
                if (v != (double)o->groups[idx].params.n)
                    st = gl_error(GL_EINVAL,
                                  "load_state_dict: group %lld has %g parameters in the file, %lld in the optimizer",
                                  (long long)idx + 1, v, (long long)o->groups[idx].params.n);
                counted[idx] = true;
            } else if (known) {
                *slot = v;
                new_h[idx].nesterov = nesterov != 0;
            } else {
                st = unexpected_key(o, name);
            }
        } else {
            st = unexpected_key(o, name);
        }
    }
    for (int64_t gi = 0; gi < o->n_groups && st == GL_OK; gi++) {
        if (!counted[gi])
            st = gl_error(GL_EINVAL,
                          "load_state_dict: no 'group.%lld.params' in the file; it is not a %s state of %lld groups",
                          (long long)gi, gl_optim_kind_name(o->kind), (long long)o->n_groups);
        if (st == GL_OK) st = gl_optim_check_hparams(o->kind, &new_h[gi]);
    }
    free(counted);
    for (idx = 0; idx < n && st == GL_OK; idx++) {
        const gl_optim_param_state *s = &new_state[idx];
        if (o->kind != GL_OPTIM_SGD && (!s->exp_avg != !s->exp_avg_sq || !s->exp_avg != (s->step == 0)))
            st = gl_error(GL_EINVAL, "load_state_dict: the state of parameter %lld is incomplete "
                          "(needs exp_avg, exp_avg_sq and step together)", (long long)idx + 1);
    }
    return st;
}

gl_status gl_optim_load_state_dict(gl_optim *o, const gl_tensor_list *tensors, const gl_scalar_list *scalars)
{
    int64_t n = total_params(o);
    gl_optim_param_state *fresh = calloc((size_t)n + 1, sizeof *fresh);
    gl_optim_hparams *h = calloc((size_t)o->n_groups + 1, sizeof *h);
    gl_status st = fresh && h ? load_check(o, tensors, scalars, fresh, h)
                              : gl_error(GL_ENOMEM, "load_state_dict: out of memory");
    /* Replace the borrowed tensors by copies; on failure release what was copied. */
    int64_t copied = 0;
    for (; copied < n && st == GL_OK; copied++)
        for (int f = 0; f < F_COUNT && st == GL_OK; f++) {
            gl_tensor **slot = field_slot(&fresh[copied], f);
            if (*slot && !(*slot = gl_tensor_clone_data(*slot))) st = gl_error_code();
        }
    if (st != GL_OK) {
        for (int64_t i = 0; i < copied; i++) state_clear(&fresh[i]);
    } else {
        for (int64_t gi = 0, idx = 0; gi < o->n_groups; gi++) {
            o->groups[gi].h = h[gi];
            for (int64_t k = 0; k < o->groups[gi].params.n; k++, idx++) {
                state_clear(&o->groups[gi].state[k]);
                o->groups[gi].state[k] = fresh[idx];
            }
        }
    }
    free(fresh);
    free(h);
    return st;
}

/* --- gradient clipping ---------------------------------------------------------- */

/* Sum of g[i]^2 for i in [i0, i1), in double, in eight interleaved partial
 * sums: independent chains (one sum would wait on each add's latency),
 * added in a fixed order. */
static double sum_squares_range(const float *g, int64_t i0, int64_t i1)
{
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
    int64_t i = i0;
    for (; i + 8 <= i1; i += 8) {
        const float *x = g + i;
        s0 += (double)x[0] * x[0], s1 += (double)x[1] * x[1], s2 += (double)x[2] * x[2], s3 += (double)x[3] * x[3];
        s4 += (double)x[4] * x[4], s5 += (double)x[5] * x[5], s6 += (double)x[6] * x[6], s7 += (double)x[7] * x[7];
    }
    for (; i < i1; i++) s0 += (double)g[i] * g[i];
    return ((s0 + s4) + (s2 + s6)) + ((s1 + s5) + (s3 + s7));
}

static int64_t chunk_end(int64_t c, int64_t chunk, int64_t n) { return (c + 1) * chunk < n ? (c + 1) * chunk : n; }

/* Sum of g[i]^2 in double, over fixed chunks added in order, so the result
 * does not depend on the thread count. */
static double sum_squares(const float *g, int64_t n)
{
    enum { CHUNK = 1 << 16 };
    int64_t n_chunks = (n + CHUNK - 1) / CHUNK;
    double small[64], *part = n_chunks <= 64 ? small : malloc((size_t)n_chunks * sizeof *part);
    double s = 0;
    if (!part) { /* no memory for the partial sums: the chunks in turn */
        for (int64_t c = 0; c < n_chunks; c++) s += sum_squares_range(g, c * CHUNK, chunk_end(c, CHUNK, n));
        return s;
    }
#pragma omp parallel for if (n_chunks > 1)
    for (int64_t c = 0; c < n_chunks; c++) part[c] = sum_squares_range(g, c * CHUNK, chunk_end(c, CHUNK, n));
    for (int64_t c = 0; c < n_chunks; c++) s += part[c];
    if (part != small) free(part);
    return s;
}

gl_status gl_clip_grad_norm(const gl_tensor_list *params, double max_norm, double norm_type, double *total_norm)
{
    if (!(norm_type > 0)) return gl_error(GL_EINVAL, "clip_grad_norm: norm_type must be > 0 (got %g)", norm_type);
    if (!(max_norm >= 0)) return gl_error(GL_EINVAL, "clip_grad_norm: max_norm must be >= 0 (got %g)", max_norm);
    const bool inf = isinf(norm_type);
    double acc = 0;
    for (int64_t k = 0; k < params->n; k++) {
        const gl_tensor *p = params->items[k].t;
        if (!active(p)) continue;
        const float *g = gl_tensor_f32(p->grad);
        int64_t n = p->grad->numel;
        double s = 0;
        /* Each tensor's norm is rounded to f32 as torch's per-tensor norms are. */
        if (inf) {
            for (int64_t i = 0; i < n; i++) s = fmax(s, fabs((double)g[i]));
            acc = fmax(acc, (float)s);
        } else if (norm_type == 2) {
            s = sum_squares(g, n);
            double t = (float)sqrt(s);
            acc += t * t;
        } else {
            for (int64_t i = 0; i < n; i++) s += pow(fabs((double)g[i]), norm_type);
            acc += pow((float)pow(s, 1.0 / norm_type), norm_type);
        }
    }
    float total = (float)(inf ? acc : pow(acc, 1.0 / norm_type));
    *total_norm = total;
    float coef = (float)max_norm / (total + 1e-6f);
    if (coef >= 1.0f) return GL_OK; /* torch multiplies by the clamped 1.0: no change */
    for (int64_t k = 0; k < params->n; k++) {
        const gl_tensor *p = params->items[k].t;
        if (!active(p)) continue;
        float *g = gl_tensor_f32(p->grad);
        int64_t n = p->grad->numel;
#pragma omp simd
        for (int64_t i = 0; i < n; i++) g[i] *= coef;
    }
    return GL_OK;
}
