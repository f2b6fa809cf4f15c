/* Elementwise binary ops. Forward and backward share the broadcast walk of
 * ops/broadcast.c; backward of a broadcast operand sums over its broadcast
 * dims. Backward formulas (g = dL/dout):
 *   add: ga += g, gb += g          sub: ga += g, gb -= g
 *   mul: ga += g*b, gb += g*a      div: ga += g/b, gb -= g*a/b^2
 *   pow: ga += g*b*a^(b-1), gb += g*out*log(a)   (gb term 0 where a <= 0)
 *   maximum/minimum: g goes to the selected operand (a on ties)
 * apply() and grads() define each op once; every loop is instantiated per op
 * (SWITCH_OP) so no switch runs per element. Backward adds straight into the
 * gradient of an operand that is not broadcast and uses an output-sized
 * scratch buffer only for one that is. add and sub of same-shaped operands
 * (the residual stream) hand g itself to a and write b's new buffer. */
#include "ops/binary.h"

#include <math.h>
#include <stdlib.h>

#include "autograd/tape.h"
#include "core/interrupt.h"
#include "ops/broadcast.h"

typedef enum { OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_POW, OP_MAX, OP_MIN } binary_op;

static const char *const op_names[] = {"add", "sub", "mul", "div", "pow", "maximum", "minimum"};

static inline float apply(binary_op op, float x, float y)
{
    switch (op) {
    case OP_ADD: return x + y;
    case OP_SUB: return x - y;
    case OP_MUL: return x * y;
    case OP_DIV: return x / y;
    case OP_POW: return powf(x, y);
    case OP_MAX: return x >= y ? x : y;
    case OP_MIN: return x <= y ? x : y;
    }
    return 0.0f;
}

/* d(out)/da * g and d(out)/db * g at one element (o = the output there). */
static inline void grads(binary_op op, float x, float y, float o, float g, float *dx, float *dy)
{
    switch (op) {
    case OP_ADD: *dx = g; *dy = g; break;
    case OP_SUB: *dx = g; *dy = -g; break;
    case OP_MUL: *dx = g * y; *dy = g * x; break;
    case OP_DIV: *dx = g / y; *dy = -g * x / (y * y); break;
    case OP_POW:
        *dx = (y == 0.0f) ? 0.0f : g * y * powf(x, y - 1.0f);
        *dy = x > 0.0f ? g * o * logf(x) : 0.0f;
        break;
    case OP_MAX: *dx = x >= y ? g : 0.0f; *dy = x >= y ? 0.0f : g; break;
    case OP_MIN: *dx = x <= y ? g : 0.0f; *dy = x <= y ? 0.0f : g; break;
    }
}

/* Runs BODY(OPC) with OPC a constant for the op in `op`, so apply()/grads()
 * fold to one expression inside the loop. */
#define SWITCH_OP(op, BODY)                   \
    switch (op) {                             \
    case OP_ADD: BODY(OP_ADD); break;         \
    case OP_SUB: BODY(OP_SUB); break;         \
    case OP_MUL: BODY(OP_MUL); break;         \
    case OP_DIV: BODY(OP_DIV); break;         \
    case OP_POW: BODY(OP_POW); break;         \
    case OP_MAX: BODY(OP_MAX); break;         \
    case OP_MIN: BODY(OP_MIN); break;         \
    }

typedef struct {
    binary_op op;
    const float *a, *b;
    float *out;
} forward_ctx;

static void forward_row(void *p, int64_t oa, int64_t ob, int64_t oo, int64_t n, int64_t sa, int64_t sb)
{
    forward_ctx *c = p;
    const float *a = c->a + oa, *b = c->b + ob;
    float *o = c->out + oo;
#define ROW(OPC) for (int64_t j = 0; j < n; j++) o[j] = apply(OPC, a[j * sa], b[j * sb])
    SWITCH_OP(c->op, ROW)
#undef ROW
}

/* Gradients of one broadcast row, ADDED into ga/gb (output-shaped: the
 * operand's own gradient when it is not broadcast, else zeroed scratch that
 * is reduced afterwards; NULL when not needed). */
typedef struct {
    binary_op op;
    const float *a, *b, *out, *g;
    float *ga, *gb;
} backward_ctx;

static void backward_row(void *p, int64_t oa, int64_t ob, int64_t oo, int64_t n, int64_t sa, int64_t sb)
{
    backward_ctx *c = p;
    const float *a = c->a + oa, *b = c->b + ob, *g = c->g + oo, *out = c->out + oo;
    float *ga = c->ga ? c->ga + oo : NULL, *gb = c->gb ? c->gb + oo : NULL;
#define ROW(OPC)                                                       \
    for (int64_t j = 0; j < n; j++) {                                  \
        float dx, dy;                                                  \
        grads(OPC, a[j * sa], b[j * sb], out[j], g[j], &dx, &dy);      \
        if (ga) ga[j] += dx;                                           \
        if (gb) gb[j] += dy;                                           \
    }
    SWITCH_OP(c->op, ROW)
#undef ROW
}

/* Both operands have the output's shape: one parallel pass, no scratch. */
static void backward_same_shape(binary_op op, int64_t n, const float *a, const float *b, const float *out,
                                const float *g, float *da, float *db)
{
#define LOOP(OPC)                                                              \
    _Pragma("omp parallel for if (n > 32768) schedule(static)")                \
    for (int64_t j = 0; j < n; j++) {                                          \
        float dx, dy;                                                          \
        grads(OPC, a[j], b[j], out[j], g[j], &dx, &dy);                        \
        if (da) da[j] += dx;                                                   \
        if (db) db[j] += dy;                                                   \
    }
    SWITCH_OP(op, LOOP)
#undef LOOP
}

/* d = s * g (a new buffer) or d += s * g, s = +-1. */
static void pass_grad(float *restrict d, const float *restrict g, float s, int64_t n, bool fresh)
{
    if (fresh) {
#pragma omp parallel for simd if (n > 32768) schedule(static)
        for (int64_t j = 0; j < n; j++) d[j] = s * g[j];
    } else {
#pragma omp parallel for simd if (n > 32768) schedule(static)
        for (int64_t j = 0; j < n; j++) d[j] += s * g[j];
    }
}

/* Whether op's backward reads its operands and output. add's and sub's
 * need only the shapes, which the node's inputs give, so they keep none:
 * a saved output would hold its memory until this node's backward. */
static bool saves_operands(binary_op op) { return op != OP_ADD && op != OP_SUB; }

/* add and sub of same-shaped operands, the residual stream's op: a's
 * gradient is g itself, so a takes gout when it has no gradient yet. */
static gl_status add_sub_backward(gl_node *nd, float sb)
{
    const float *g = gl_tensor_f32(nd->gout);
    int64_t n = nd->gout->numel;
    float *d;
    bool taken, fresh;
    gl_status st = gl_node_grad_init(nd, 1, &d, &fresh);
    if (st != GL_OK) return st;
    if (d) pass_grad(d, g, sb, n, fresh);
    if ((st = gl_node_grad_take(nd, 0, &taken)) != GL_OK || taken) return st;
    if ((st = gl_node_grad_init(nd, 0, &d, &fresh)) != GL_OK) return st;
    if (d) pass_grad(d, g, 1.0f, n, fresh);
    return GL_OK;
}

/* saved (but for add and sub, see saves_operands): [0] = a, [1] = b, [2] = out; i[0] = op. */
static gl_status binary_backward(gl_node *nd)
{
    gl_broadcast bc;
    binary_op op = (binary_op)nd->i[0];
    bool saved = saves_operands(op);
    gl_tensor *a = saved ? nd->saved[0] : nd->inputs[0], *b = saved ? nd->saved[1] : nd->inputs[1];
    gl_status st = gl_broadcast_shapes(nd->op, a, b, &bc);
    if (st != GL_OK) return st;
    if (!saved && a->numel == bc.numel && b->numel == bc.numel) return add_sub_backward(nd, op == OP_ADD ? 1.0f : -1.0f);
    float *da, *db;
    if ((st = gl_node_grad(nd, 0, &da)) != GL_OK || (st = gl_node_grad(nd, 1, &db)) != GL_OK) return st;
    const float *g = gl_tensor_f32(nd->gout);
    /* add and sub read no operand value: the broadcast loops get valid pointers all the same */
    const float *pa = saved ? gl_tensor_f32(a) : g, *pb = saved ? gl_tensor_f32(b) : g;
    const float *out = saved ? gl_tensor_f32(nd->saved[2]) : g;
    size_t n = (size_t)bc.numel;
    bool full_a = a->numel == bc.numel, full_b = b->numel == bc.numel;
    if (full_a && full_b) {
        backward_same_shape(op, bc.numel, pa, pb, out, g, da, db);
        return GL_OK;
    }
    float *ta = (da && !full_a) ? calloc(n ? n : 1, sizeof *ta) : NULL;
    float *tb = (db && !full_b) ? calloc(n ? n : 1, sizeof *tb) : NULL;
    if ((da && !full_a && !ta) || (db && !full_b && !tb)) {
        free(ta);
        free(tb);
        return gl_error(GL_ENOMEM, "%s backward: out of memory", nd->op);
    }
    backward_ctx c = {op, pa, pb, out, g, ta ? ta : da, tb ? tb : db};
    gl_broadcast_rows(&bc, backward_row, &c);
    if (ta) gl_broadcast_reduce_add(&bc, 0, da, ta);
    if (tb) gl_broadcast_reduce_add(&bc, 1, db, tb);
    free(ta);
    free(tb);
    return GL_OK;
}

static gl_tensor *binary(binary_op op, gl_tensor *a, gl_tensor *b)
{
    const char *name = op_names[op];
    if (gl_interrupt_poll(name)) return NULL;
    if (a->dtype != GL_F32 || b->dtype != GL_F32)
        return gl_error_null(GL_EINVAL, "%s: expected f32 tensors, got %s and %s (convert with :float())", name,
                             gl_dtype_name(a->dtype), gl_dtype_name(b->dtype));
    gl_broadcast bc;
    if (gl_broadcast_shapes(name, a, b, &bc) != GL_OK) return NULL;
    gl_tensor *out = gl_tensor_empty(GL_F32, bc.ndim, bc.shape);
    if (!out) return NULL;
    const float *pa = gl_tensor_f32(a), *pb = gl_tensor_f32(b);
    float *po = gl_tensor_f32(out);
    if (a->numel == bc.numel && b->numel == bc.numel) {
        int64_t n = bc.numel;
#define ROW(OPC) for (int64_t j = 0; j < n; j++) po[j] = apply(OPC, pa[j], pb[j]);
        /* no `simd` for pow: powf's calls do not vectorize, and clang warns
         * about a `simd` loop it cannot vectorize (OPC is a constant: one
         * branch folds away) */
#define LOOP(OPC)                                                                 \
    if (OPC == OP_POW) {                                                          \
        _Pragma("omp parallel for if (n > 32768) schedule(static)") ROW(OPC)      \
    } else {                                                                      \
        _Pragma("omp parallel for simd if (n > 32768) schedule(static)") ROW(OPC) \
    }
        SWITCH_OP(op, LOOP)
#undef LOOP
#undef ROW
    } else {
        forward_ctx c = {op, pa, pb, po};
        gl_broadcast_rows(&bc, forward_row, &c);
    }
    gl_tensor *ins[2] = {a, b};
    gl_node *nd;
    if (gl_autograd_record(&nd, out, name, binary_backward, 2, ins) != GL_OK) goto fail;
    if (nd) {
        nd->i[0] = op;
        if (saves_operands(op) && (gl_node_save(nd, 0, a) != GL_OK || gl_node_save(nd, 1, b) != GL_OK ||
                                   gl_node_save(nd, 2, out) != GL_OK))
            goto fail;
    }
    return out;
fail:
    gl_tensor_release(out);
    return NULL;
}

gl_tensor *gl_add(gl_tensor *a, gl_tensor *b) { return binary(OP_ADD, a, b); }
gl_tensor *gl_sub(gl_tensor *a, gl_tensor *b) { return binary(OP_SUB, a, b); }
gl_tensor *gl_mul(gl_tensor *a, gl_tensor *b) { return binary(OP_MUL, a, b); }
gl_tensor *gl_div(gl_tensor *a, gl_tensor *b) { return binary(OP_DIV, a, b); }
gl_tensor *gl_pow(gl_tensor *a, gl_tensor *b) { return binary(OP_POW, a, b); }
gl_tensor *gl_maximum(gl_tensor *a, gl_tensor *b) { return binary(OP_MAX, a, b); }
gl_tensor *gl_minimum(gl_tensor *a, gl_tensor *b) { return binary(OP_MIN, a, b); }
