#include "autograd/tape.h"

#include "core/interrupt.h"

#include <stdlib.h>
#include <string.h>

static _Thread_local bool recording_disabled;

bool gl_grad_enabled(void) { return !recording_disabled; }

bool gl_grad_set_enabled(bool on)
{
    bool was = !recording_disabled;
    recording_disabled = !on;
    return was;
}

bool gl_autograd_needed(int n, gl_tensor *const *inputs)
{
    if (recording_disabled) return false;
    for (int k = 0; k < n; k++)
        if (inputs[k] && inputs[k]->requires_grad) return true;
    return false;
}

static void node_destroy(gl_node *node)
{
    for (int k = 0; k < node->n_inputs; k++) gl_tensor_release(node->inputs[k]);
    for (int k = 0; k < GL_NODE_MAX_SAVED; k++) gl_tensor_release(node->saved[k]);
    gl_tensor_release(node->gout);
    if (node->extra_free)
        node->extra_free(node->extra);
    else
        free(node->extra);
    free(node);
}

gl_status gl_autograd_record(gl_node **node, gl_tensor *out, const char *op, gl_backward_fn backward,
                             int n, gl_tensor *const *inputs)
{
    *node = NULL;
    if (!gl_autograd_needed(n, inputs)) return GL_OK;
    gl_node *nd = calloc(1, sizeof *nd);
    if (!nd) return gl_error(GL_ENOMEM, "%s: out of memory recording the graph", op);
    nd->header.destroy = node_destroy;
    nd->op = op;
    nd->backward = backward;
    nd->n_inputs = n;
    for (int k = 0; k < n; k++) {
        nd->inputs[k] = inputs[k];
        if (inputs[k]) gl_tensor_retain(inputs[k]);
    }
    nd->out = out;
    out->grad_fn = nd;
    out->requires_grad = true;
    *node = nd;
    return GL_OK;
}

gl_status gl_node_save(gl_node *node, int slot, const gl_tensor *t)
{
    gl_tensor *alias = gl_detach(t);
    if (!alias) return gl_error_code();
    gl_tensor_release(node->saved[slot]);
    node->saved[slot] = alias;
    return GL_OK;
}

static gl_status grad_slot(gl_tensor **slot, const gl_tensor *like, float **buf)
{
    if (!*slot) {
        *slot = gl_tensor_new(GL_F32, like->ndim, like->shape);
        if (!*slot) return gl_error_code();
    }
    *buf = gl_tensor_f32(*slot);
    return GL_OK;
}

/* ---- gradient sinks ------------------------------------------------------------------------ */

struct gl_grad_sink {
    int n;
    gl_tensor **leaves; /* retained */
    gl_tensor **grads;  /* grads[k]: leaves[k]'s gradient from this sink's thread, or NULL */
};

static _Thread_local gl_grad_sink *sink; /* the calling thread's, if any */

gl_grad_sink *gl_grad_sink_new(int n, gl_tensor *const *leaves)
{
    gl_grad_sink *s = calloc(1, sizeof *s);
    if (s && n > 0) {
        s->leaves = calloc((size_t)n, sizeof *s->leaves);
        s->grads = calloc((size_t)n, sizeof *s->grads);
    }
    if (!s || (n > 0 && (!s->leaves || !s->grads))) {
        if (s) free(s->leaves);
        free(s);
        return gl_error_null(GL_ENOMEM, "gradient sink: out of memory");
    }
    s->n = n;
    for (int k = 0; k < n; k++) {
        s->leaves[k] = leaves[k];
        gl_tensor_retain(leaves[k]);
    }
    return s;
}

void gl_grad_sink_free(gl_grad_sink *s)
{
    if (!s) return;
    for (int k = 0; k < s->n; k++) {
        gl_tensor_release(s->leaves[k]);
        gl_tensor_release(s->grads[k]);
    }
    free(s->leaves);
    free(s->grads);
    free(s);
}

gl_grad_sink *gl_grad_sink_use(gl_grad_sink *s)
{
    gl_grad_sink *was = sink;
    sink = s;
    return was;
}

void gl_grad_sink_merge(int n, gl_grad_sink *const *sinks)
{
    if (n == 0) return;
    int leaves = sinks[0]->n;
    /* leaf by leaf, each on one thread: the sinks add in their order whatever the thread count */
#pragma omp parallel for schedule(dynamic, 1)
    for (int k = 0; k < leaves; k++) {
        gl_tensor *leaf = sinks[0]->leaves[k];
        for (int r = 0; r < n; r++) {
            gl_tensor *g = sinks[r]->grads[k];
            if (!g) continue;
            sinks[r]->grads[k] = NULL;
            if (!leaf->grad) { /* the first gradient becomes the leaf's own */
                leaf->grad = g;
                continue;
            }
            float *dst = gl_tensor_f32(leaf->grad);
            const float *src = gl_tensor_f32(g);
            for (int64_t i = 0; i < leaf->numel; i++) dst[i] += src[i];
            gl_tensor_release(g);
        }
    }
}

/* The gradient slot of input i, NULL when it needs no gradient. A leaf's
 * slot is in the thread's sink when the sink holds that leaf. */
static gl_tensor **slot_of(gl_node *node, int i)
{
    gl_tensor *in = node->inputs[i];
    if (!in || !in->requires_grad) return NULL;
    if (in->grad_fn) return &in->grad_fn->gout;
    if (sink)
        for (int k = 0; k < sink->n; k++)
            if (sink->leaves[k] == in) return &sink->grads[k];
    return &in->grad;
}

gl_tensor *gl_node_grad_tensor(gl_node *node, int i)
{
    gl_tensor **slot = slot_of(node, i);
    return slot ? *slot : NULL;
}

gl_status gl_node_grad(gl_node *node, int i, float **buf)
{
    gl_tensor **slot = slot_of(node, i);
    *buf = NULL;
    return slot ? grad_slot(slot, node->inputs[i], buf) : GL_OK;
}

gl_status gl_node_grad_init(gl_node *node, int i, float **buf, bool *fresh)
{
    gl_tensor **slot = slot_of(node, i);
    *buf = NULL;
    *fresh = false;
    if (!slot) return GL_OK;
    if (!*slot) {
        const gl_tensor *in = node->inputs[i];
        if (!(*slot = gl_tensor_empty(GL_F32, in->ndim, in->shape))) return gl_error_code();
        *fresh = true;
    }
    *buf = gl_tensor_f32(*slot);
    return GL_OK;
}

gl_status gl_node_grad_take(gl_node *node, int i, bool *taken)
{
    gl_tensor **slot = slot_of(node, i);
    const gl_tensor *in = node->inputs[i], *g = node->gout;
    *taken = false;
    if (!slot || *slot || !g || g->numel != in->numel || g->storage->readonly) return GL_OK;
    if (!(*slot = gl_tensor_from_storage(g->storage, g->offset, GL_F32, in->ndim, in->shape))) return gl_error_code();
    *taken = true;
    return GL_OK;
}

gl_status gl_node_grad_reuse(gl_node *node, int i, float **buf, bool *reused)
{
    gl_tensor **slot = slot_of(node, i), *in = node->inputs[i];
    *buf = NULL;
    *reused = false;
    /* two references: this node's and the pin gl_backward holds on every node's output */
    if (!slot || *slot || !node->consumed || !in->grad_fn || in->refs != 2 || in->storage->refs != 1 ||
        in->storage->readonly || in->dtype != GL_F32)
        return GL_OK;
    for (int k = 0; k < node->n_inputs; k++)
        if (k != i && node->inputs[k] == in) return GL_OK;
    if (!(*slot = gl_tensor_from_storage(in->storage, in->offset, GL_F32, in->ndim, in->shape))) return gl_error_code();
    *buf = gl_tensor_f32(*slot);
    *reused = true;
    return GL_OK;
}

gl_tensor *gl_detach(const gl_tensor *t)
{
    return gl_tensor_from_storage(t->storage, t->offset, t->dtype, t->ndim, t->shape);
}

gl_status gl_set_requires_grad(gl_tensor *t, bool on)
{
    if (on && t->dtype != GL_F32)
        return gl_error(GL_EINVAL, "requires_grad: only f32 tensors can require gradients (got %s)",
                        gl_dtype_name(t->dtype));
    if (!on && t->grad_fn)
        return gl_error(GL_EINVAL, "requires_grad: cannot turn off a tensor produced by a recorded op; use detach()");
    t->requires_grad = on;
    return GL_OK;
}

/* Marks the graph of nd's output as freed by a backward pass. */
static void detach_node(gl_node *nd)
{
    nd->out->grad_fn = NULL;
    nd->out->graph_freed = true;
}

/* Frees a node of a consumed graph and drops the pin on its output (see
 * gl_backward). Its inputs that other nodes still need are pinned. An input
 * this node was the last to use (held by the pin alone from now on) keeps
 * only its shape for its own node's backward, which reads no output data:
 * its storage goes now, not when that node has run. */
static void free_node(gl_node *nd)
{
    gl_tensor *out = nd->out;
    for (int k = 0; k < nd->n_inputs; k++) {
        gl_tensor *in = nd->inputs[k];
        if (in && in->grad_fn && in->grad_fn->consumed && in->refs == 2) {
            gl_storage_release(in->storage);
            in->storage = NULL;
        }
    }
    detach_node(nd);
    node_destroy(nd);
    gl_tensor_release(out);
}

/* Nodes reachable from root in post-order (inputs before the nodes that use
 * them), found without recursion so deep graphs cannot overflow the stack. */
typedef struct {
    gl_node **items;
    size_t n, cap;
} node_list;

static gl_status list_push(node_list *l, gl_node *nd)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        gl_node **items = realloc(l->items, cap * sizeof *items);
        if (!items) return gl_error(GL_ENOMEM, "backward: out of memory");
        l->items = items;
        l->cap = cap;
    }
    l->items[l->n++] = nd;
    return GL_OK;
}

static gl_status topo_order(gl_node *root, node_list *order)
{
    enum { UNSEEN = 0, OPEN = 1, DONE = 2 };
    node_list stack = {0};
    gl_status st = list_push(&stack, root);
    root->visit = OPEN;
    while (st == GL_OK && stack.n) {
        gl_node *nd = stack.items[stack.n - 1];
        bool pushed = false;
        for (int k = 0; k < nd->n_inputs && !pushed; k++) {
            gl_tensor *in = nd->inputs[k];
            if (in && in->grad_fn && in->grad_fn->visit == UNSEEN) {
                in->grad_fn->visit = OPEN;
                st = list_push(&stack, in->grad_fn);
                pushed = true;
            }
        }
        if (!pushed && st == GL_OK) {
            stack.n--;
            nd->visit = DONE;
            st = list_push(order, nd);
        }
    }
    free(stack.items);
    return st;
}

/* gl_backward; taken, when not NULL, is grad itself, to become the root's gradient buffer. */
static gl_status backward(gl_tensor *root, const gl_tensor *grad, gl_tensor *taken, bool retain_graph)
{
    char s1[128], s2[128];
    if (!root->requires_grad)
        return gl_error(GL_EINVAL, "backward: tensor does not require grad and has no grad_fn");
    if (!grad && root->numel != 1)
        return gl_error(GL_EINVAL, "backward: grad can be implicit only for one-element outputs (shape %s); pass a gradient",
                        gl_tensor_shape_str(root, s1, sizeof s1));
    if (grad && (grad->dtype != GL_F32 || grad->numel != root->numel))
        return gl_error(GL_EINVAL, "backward: gradient shape %s does not match output shape %s",
                        gl_tensor_shape_str(grad, s1, sizeof s1), gl_tensor_shape_str(root, s2, sizeof s2));

    float *g = NULL;
    gl_status st;
    if (root->graph_freed)
        return gl_error(GL_ESTATE, "backward: the graph of this tensor was already freed by a backward pass "
                                   "(pass {retain_graph=true} to the first backward to run it twice)");
    if (!root->grad_fn) { /* a leaf: its gradient is the seed itself */
        if ((st = grad_slot(&root->grad, root, &g)) != GL_OK) return st;
        for (int64_t k = 0; k < root->numel; k++) g[k] += grad ? gl_tensor_f32(grad)[k] : 1.0f;
        return GL_OK;
    }

    node_list order = {0};
    st = topo_order(root->grad_fn, &order);
    for (size_t k = 0; k < order.n; k++) order.items[k]->visit = 0;
    if (st == GL_OK && taken) {
        gl_tensor_retain(taken);
        root->grad_fn->gout = taken;
    } else if (st == GL_OK && (st = grad_slot(&root->grad_fn->gout, root, &g)) == GL_OK) {
        for (int64_t k = 0; k < root->numel; k++) g[k] += grad ? gl_tensor_f32(grad)[k] : 1.0f;
    }
    /* Without retain_graph, a node is freed as soon as its backward has run,
     * with the tensors it kept: the last layers' activations are gone before
     * the first layers' backward runs. Every node's output is pinned until
     * then, so that releasing a node's inputs cannot destroy a node still to
     * run (a tensor owns the node that produced it). */
    if (!retain_graph)
        for (size_t k = 0; k < order.n; k++) {
            gl_tensor_retain(order.items[k]->out);
            order.items[k]->consumed = true;
        }

    size_t left = order.n; /* nodes whose backward has not run */
    while (left > 0 && st == GL_OK) {
        gl_node *nd = order.items[--left];
        gl_interrupt_tick(); /* a backward pass runs to its end; the workbench may echo keys meanwhile */
        if (nd->gout) st = nd->backward(nd);
        gl_tensor_release(nd->gout);
        nd->gout = NULL;
        if (!retain_graph) free_node(nd);
    }
    for (size_t k = 0; k < left; k++) { /* after a failure, drop partial gradients */
        gl_tensor_release(order.items[k]->gout);
        order.items[k]->gout = NULL;
    }
    if (!retain_graph) {
        /* Detach the nodes left by a failure from their outputs first, so
         * that freeing one cannot cascade into another still in the list. */
        for (size_t k = 0; k < left; k++) detach_node(order.items[k]);
        for (size_t k = 0; k < left; k++) free_node(order.items[k]);
    }
    free(order.items);
    return st;
}

gl_status gl_backward(gl_tensor *root, const gl_tensor *grad, bool retain_graph)
{
    return backward(root, grad, NULL, retain_graph);
}

gl_status gl_backward_take(gl_tensor *root, gl_tensor *grad)
{
    return backward(root, grad, root->grad_fn ? grad : NULL, false);
}
