#include "nn/module.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/tape.h"

/* --- tensor lists ------------------------------------------------------------ */

gl_status gl_tensor_list_add(gl_tensor_list *l, const char *name, gl_tensor *t)
{
    if (l->n == l->cap) {
        int64_t cap = l->cap ? 2 * l->cap : 16;
        gl_named_tensor *items = realloc(l->items, (size_t)cap * sizeof *items);
        if (!items) return gl_error(GL_ENOMEM, "tensor list: out of memory");
        l->items = items;
        l->cap = cap;
    }
    char *copy = NULL;
    if (name && !(copy = strdup(name))) return gl_error(GL_ENOMEM, "tensor list: out of memory");
    gl_tensor_retain(t);
    l->items[l->n++] = (gl_named_tensor){copy, t};
    return GL_OK;
}

gl_tensor *gl_tensor_list_find(const gl_tensor_list *l, const char *name)
{
    for (int64_t k = 0; k < l->n; k++)
        if (l->items[k].name && strcmp(l->items[k].name, name) == 0) return l->items[k].t;
    return NULL;
}

void gl_tensor_list_clear(gl_tensor_list *l)
{
    for (int64_t k = 0; k < l->n; k++) {
        free(l->items[k].name);
        gl_tensor_release(l->items[k].t);
    }
    free(l->items);
    *l = (gl_tensor_list)GL_TENSOR_LIST_INIT;
}

/* Appends "'a', 'b', ..." for the names of l that are absent from other,
 * stopping with "and N more" before the message buffer would overflow. */
static int64_t list_absent(char *buf, size_t n, const gl_tensor_list *l, const gl_tensor_list *other)
{
    int64_t count = 0, shown = 0;
    size_t used = strlen(buf);
    for (int64_t k = 0; k < l->n; k++) {
        if (gl_tensor_list_find(other, l->items[k].name)) continue;
        count++;
        size_t need = strlen(l->items[k].name) + 4;
        if (used + need + 32 < n && shown < 20) {
            used += (size_t)snprintf(buf + used, n - used, "%s'%s'", shown ? ", " : "", l->items[k].name);
            shown++;
        }
    }
    if (count > shown) snprintf(buf + used, n - used, " and %lld more", (long long)(count - shown));
    return count;
}

static gl_status collect_absent(gl_tensor_list *out, const gl_tensor_list *l, const gl_tensor_list *other)
{
    if (!out) return GL_OK;
    for (int64_t k = 0; k < l->n; k++)
        if (!gl_tensor_list_find(other, l->items[k].name)) {
            gl_status st = gl_tensor_list_add(out, l->items[k].name, l->items[k].t);
            if (st != GL_OK) return st;
        }
    return GL_OK;
}

gl_status gl_state_dict_load(const gl_tensor_list *dst, const gl_tensor_list *src, bool strict,
                             gl_tensor_list *missing, gl_tensor_list *unexpected)
{
    if (strict) {
        char msg[900] = "", part[900] = "";
        int64_t n_missing = list_absent(part, sizeof part, dst, src);
        if (n_missing) snprintf(msg, sizeof msg, "missing keys %s", part);
        part[0] = '\0';
        int64_t n_unexpected = list_absent(part, sizeof part, src, dst);
        if (n_unexpected) {
            size_t used = strlen(msg);
            snprintf(msg + used, sizeof msg - used, "%sunexpected keys %s", n_missing ? "; " : "", part);
        }
        if (n_missing || n_unexpected) return gl_error(GL_EINVAL, "load_state_dict: %s", msg);
    }
    for (int64_t k = 0; k < dst->n; k++) {
        const gl_tensor *d = dst->items[k].t, *s = gl_tensor_list_find(src, dst->items[k].name);
        if (!s) continue;
        char a[128], b[128];
        if (!gl_shape_equal(s->ndim, s->shape, d->ndim, d->shape))
            return gl_error(GL_EINVAL, "load_state_dict: '%s' has shape %s in the file, %s in the model",
                            dst->items[k].name, gl_tensor_shape_str(s, a, sizeof a),
                            gl_tensor_shape_str(d, b, sizeof b));
        if (s->dtype != d->dtype)
            return gl_error(GL_EINVAL, "load_state_dict: '%s' has dtype %s in the file, %s in the model",
                            dst->items[k].name, gl_dtype_name(s->dtype), gl_dtype_name(d->dtype));
        if (d->storage->readonly)
            return gl_error(GL_EINVAL, "load_state_dict: '%s' is read-only in the model", dst->items[k].name);
    }
    gl_status st;
    if ((st = collect_absent(missing, dst, src)) != GL_OK) return st;
    if ((st = collect_absent(unexpected, src, dst)) != GL_OK) return st;
    for (int64_t k = 0; k < dst->n; k++) {
        const gl_tensor *s = gl_tensor_list_find(src, dst->items[k].name);
        if (s) memmove(gl_tensor_data(dst->items[k].t), gl_tensor_data(s), gl_tensor_nbytes(s));
    }
    return GL_OK;
}

/* --- modules ----------------------------------------------------------------- */

gl_module *gl_module_new(const gl_module_class *cls, void *impl)
{
    gl_module *m = calloc(1, sizeof *m);
    if (!m) {
        if (cls->destroy_impl)
            cls->destroy_impl(impl);
        else
            free(impl);
        return gl_error_null(GL_ENOMEM, "%s: out of memory", cls->name);
    }
    m->refs = 1;
    m->cls = cls;
    m->training = true;
    m->impl = impl;
    return m;
}

void gl_module_retain(gl_module *m)
{
    if (m) atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
}

void gl_module_release(gl_module *m)
{
    if (!m || atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) > 1) return;
    gl_tensor_list_clear(&m->params);
    gl_tensor_list_clear(&m->buffers);
    for (int64_t k = 0; k < m->n_children; k++) {
        free(m->children[k].name);
        gl_module_release(m->children[k].m);
    }
    free(m->children);
    if (m->cls->destroy_impl)
        m->cls->destroy_impl(m->impl);
    else
        free(m->impl);
    free(m);
}

static gl_status check_new_name(const gl_module *m, const char *name, const char *what)
{
    if (!name || !*name || strchr(name, '.'))
        return gl_error(GL_EINVAL, "%s: %s name '%s' must be non-empty and contain no '.'", m->cls->name, what,
                        name ? name : "");
    if (gl_tensor_list_find(&m->params, name) || gl_tensor_list_find(&m->buffers, name) || gl_module_child(m, name))
        return gl_error(GL_EINVAL, "%s: '%s' is already registered", m->cls->name, name);
    return GL_OK;
}

gl_status gl_module_add_param(gl_module *m, const char *name, gl_tensor *t)
{
    gl_status st = check_new_name(m, name, "parameter");
    if (st != GL_OK) return st;
    if (t->dtype != GL_F32)
        return gl_error(GL_EINVAL, "%s: parameter '%s' must be f32 (got %s)", m->cls->name, name,
                        gl_dtype_name(t->dtype));
    if (t->grad_fn)
        return gl_error(GL_EINVAL, "%s: parameter '%s' is the result of a recorded op; pass a leaf (detach it)",
                        m->cls->name, name);
    if ((st = gl_tensor_list_add(&m->params, name, t)) != GL_OK) return st;
    return gl_set_requires_grad(t, true);
}

gl_status gl_module_add_buffer(gl_module *m, const char *name, gl_tensor *t)
{
    gl_status st = check_new_name(m, name, "buffer");
    return st != GL_OK ? st : gl_tensor_list_add(&m->buffers, name, t);
}

gl_status gl_module_add_child(gl_module *m, const char *name, gl_module *child)
{
    gl_status st = check_new_name(m, name, "child");
    if (st != GL_OK) return st;
    if (m->n_children == m->cap_children) {
        int64_t cap = m->cap_children ? 2 * m->cap_children : 4;
        gl_named_module *items = realloc(m->children, (size_t)cap * sizeof *items);
        if (!items) return gl_error(GL_ENOMEM, "%s: out of memory", m->cls->name);
        m->children = items;
        m->cap_children = cap;
    }
    char *copy = strdup(name);
    if (!copy) return gl_error(GL_ENOMEM, "%s: out of memory", m->cls->name);
    gl_module_retain(child);
    m->children[m->n_children++] = (gl_named_module){copy, child};
    return GL_OK;
}

static gl_named_tensor *entry(gl_tensor_list *l, const char *name)
{
    for (int64_t k = 0; k < l->n; k++)
        if (strcmp(l->items[k].name, name) == 0) return &l->items[k];
    return NULL;
}

gl_status gl_module_set_tensor(gl_module *m, const char *name, gl_tensor *t)
{
    bool is_param = true;
    gl_named_tensor *e = entry(&m->params, name);
    if (!e) {
        e = entry(&m->buffers, name);
        is_param = false;
    }
    if (!e) return gl_error(GL_EINVAL, "%s: no parameter or buffer named '%s'", m->cls->name, name);
    char a[128], b[128];
    if (!gl_shape_equal(t->ndim, t->shape, e->t->ndim, e->t->shape) || t->dtype != e->t->dtype)
        return gl_error(GL_EINVAL, "%s: '%s' is %s %s, cannot replace it by %s %s", m->cls->name, name,
                        gl_dtype_name(e->t->dtype), gl_tensor_shape_str(e->t, a, sizeof a), gl_dtype_name(t->dtype),
                        gl_tensor_shape_str(t, b, sizeof b));
    if (is_param) {
        if (t->grad_fn)
            return gl_error(GL_EINVAL, "%s: parameter '%s' must be a leaf (detach it)", m->cls->name, name);
        gl_status st = gl_set_requires_grad(t, e->t->requires_grad);
        if (st != GL_OK) return st;
    }
    gl_tensor_retain(t);
    gl_tensor_release(e->t);
    e->t = t;
    return GL_OK;
}

gl_tensor *gl_module_param(const gl_module *m, const char *name) { return gl_tensor_list_find(&m->params, name); }
gl_tensor *gl_module_buffer(const gl_module *m, const char *name) { return gl_tensor_list_find(&m->buffers, name); }

gl_module *gl_module_child(const gl_module *m, const char *name)
{
    for (int64_t k = 0; k < m->n_children; k++)
        if (strcmp(m->children[k].name, name) == 0) return m->children[k].m;
    return NULL;
}

gl_tensor *gl_module_find_tensor(const gl_module *m, const char *dotted)
{
    const char *dot;
    while (m && (dot = strchr(dotted, '.'))) {
        gl_module *next = NULL;
        for (int64_t k = 0; k < m->n_children && !next; k++) {
            const char *n = m->children[k].name;
            if (strlen(n) == (size_t)(dot - dotted) && strncmp(n, dotted, (size_t)(dot - dotted)) == 0)
                next = m->children[k].m;
        }
        m = next;
        dotted = dot + 1;
    }
    if (!m) return NULL;
    gl_tensor *t = gl_module_param(m, dotted);
    return t ? t : gl_module_buffer(m, dotted);
}

gl_tensor *gl_module_forward(gl_module *m, gl_tensor *x)
{
    if (!m->cls->forward)
        return gl_error_null(GL_EINVAL, "forward: %s has no one-tensor forward", m->cls->name);
    return m->cls->forward(m, x);
}

void gl_module_train(gl_module *m, bool on)
{
    m->training = on;
    for (int64_t k = 0; k < m->n_children; k++) gl_module_train(m->children[k].m, on);
}

void gl_module_requires_grad(gl_module *m, bool on)
{
    /* Parameters are f32 leaves (add_param and set_tensor check), so this cannot fail. */
    for (int64_t k = 0; k < m->params.n; k++) gl_set_requires_grad(m->params.items[k].t, on);
    for (int64_t k = 0; k < m->n_children; k++) gl_module_requires_grad(m->children[k].m, on);
}

void gl_module_zero_grad(gl_module *m)
{
    for (int64_t k = 0; k < m->params.n; k++) {
        gl_tensor *p = m->params.items[k].t;
        gl_tensor_release(p->grad);
        p->grad = NULL;
    }
    for (int64_t k = 0; k < m->n_children; k++) gl_module_zero_grad(m->children[k].m);
}

/* --- traversals -------------------------------------------------------------- */

enum { WALK_PARAMS = 1, WALK_BUFFERS = 2, WALK_DEDUP = 4 };

static bool listed(const gl_tensor_list *out, const gl_tensor *t)
{
    for (int64_t k = 0; k < out->n; k++)
        if (out->items[k].t == t) return true;
    return false;
}

static gl_status walk_list(const gl_tensor_list *l, const char *prefix, int flags, gl_tensor_list *out)
{
    char name[512];
    for (int64_t k = 0; k < l->n; k++) {
        if ((flags & WALK_DEDUP) && listed(out, l->items[k].t)) continue;
        if ((size_t)snprintf(name, sizeof name, "%s%s", prefix, l->items[k].name) >= sizeof name)
            return gl_error(GL_EINVAL, "state_dict: name '%s%s' is too long", prefix, l->items[k].name);
        gl_status st = gl_tensor_list_add(out, name, l->items[k].t);
        if (st != GL_OK) return st;
    }
    return GL_OK;
}

static gl_status walk(const gl_module *m, const char *prefix, int flags, gl_tensor_list *out)
{
    gl_status st;
    if ((flags & WALK_PARAMS) && (st = walk_list(&m->params, prefix, flags, out)) != GL_OK) return st;
    if ((flags & WALK_BUFFERS) && (st = walk_list(&m->buffers, prefix, flags, out)) != GL_OK) return st;
    char sub[512];
    for (int64_t k = 0; k < m->n_children; k++) {
        if ((size_t)snprintf(sub, sizeof sub, "%s%s.", prefix, m->children[k].name) >= sizeof sub)
            return gl_error(GL_EINVAL, "state_dict: name '%s%s' is too long", prefix, m->children[k].name);
        if ((st = walk(m->children[k].m, sub, flags, out)) != GL_OK) return st;
    }
    return GL_OK;
}

gl_status gl_module_named_parameters(const gl_module *m, gl_tensor_list *out)
{
    return walk(m, "", WALK_PARAMS | WALK_DEDUP, out);
}

gl_status gl_module_named_buffers(const gl_module *m, gl_tensor_list *out)
{
    return walk(m, "", WALK_BUFFERS | WALK_DEDUP, out);
}

gl_status gl_module_state_dict(const gl_module *m, gl_tensor_list *out)
{
    return walk(m, "", WALK_PARAMS | WALK_BUFFERS, out);
}

gl_status gl_module_load_state_dict(gl_module *m, const gl_tensor_list *sd, bool strict, gl_tensor_list *missing,
                                    gl_tensor_list *unexpected)
{
    gl_tensor_list dst = GL_TENSOR_LIST_INIT;
    gl_status st = gl_module_state_dict(m, &dst);
    if (st == GL_OK) st = gl_state_dict_load(&dst, sd, strict, missing, unexpected);
    gl_tensor_list_clear(&dst);
    return st;
}

int64_t gl_module_num_parameters(const gl_module *m, bool trainable_only)
{
    gl_tensor_list l = GL_TENSOR_LIST_INIT;
    int64_t n = 0;
    if (gl_module_named_parameters(m, &l) == GL_OK)
        for (int64_t k = 0; k < l.n; k++)
            if (!trainable_only || l.items[k].t->requires_grad) n += l.items[k].t->numel;
    gl_tensor_list_clear(&l);
    return n;
}

/* --- summary ----------------------------------------------------------------- */

typedef struct {
    char *s;
    size_t n, cap;
    bool oom;
} strbuf;

static void sb_add(strbuf *b, const char *text)
{
    size_t len = strlen(text);
    if (b->oom) return;
    if (b->n + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (b->n + len + 1 > cap) cap *= 2;
        char *s = realloc(b->s, cap);
        if (!s) {
            b->oom = true;
            return;
        }
        b->s = s;
        b->cap = cap;
    }
    memcpy(b->s + b->n, text, len + 1);
    b->n += len;
}

static void describe_tensors(strbuf *b, const gl_tensor_list *l, const char *tag)
{
    char shape[128];
    for (int64_t k = 0; k < l->n; k++) {
        const gl_tensor *t = l->items[k].t;
        sb_add(b, "  ");
        sb_add(b, l->items[k].name);
        sb_add(b, " ");
        sb_add(b, gl_tensor_shape_str(t, shape, sizeof shape));
        if (tag) sb_add(b, tag);
        else if (!t->requires_grad) sb_add(b, " (frozen)");
    }
}

static void describe(strbuf *b, const gl_module *m, int depth)
{
    char extra[256] = "";
    sb_add(b, m->cls->name);
    if (m->cls->extra_repr) m->cls->extra_repr(m, extra, sizeof extra);
    if (extra[0] || m->cls->forward) {
        sb_add(b, "(");
        sb_add(b, extra);
        sb_add(b, ")");
    }
    describe_tensors(b, &m->params, NULL);
    describe_tensors(b, &m->buffers, " (buffer)");
    for (int64_t k = 0; k < m->n_children; k++) {
        sb_add(b, "\n");
        for (int d = 0; d <= depth; d++) sb_add(b, "  ");
        sb_add(b, "(");
        sb_add(b, m->children[k].name);
        sb_add(b, "): ");
        describe(b, m->children[k].m, depth + 1);
    }
}

char *gl_module_describe(const gl_module *m)
{
    strbuf b = {0};
    describe(&b, m, 0);
    if (b.oom) {
        free(b.s);
        return gl_error_null(GL_ENOMEM, "describe: out of memory");
    }
    return b.s;
}
