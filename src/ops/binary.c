/* Elementwise binary ops. Forward and backward share the broadcast walk of
 * ops/broadcast.c; backward of a broadcast operand sums over its broadcast
 * dims. Backward formulas (g = dL/dout):
 *   add: ga += g, gb += g          sub: ga += g, gb -= g
 *   mul: ga += g*b, gb += g*a      div: ga += g/b, gb -= g*a/b^2
 *   pow: ga += g*b*a^(b-1), gb += g*out*log(a)   (gb term 0 where a <= 0)
 *   maximum/minimum: g goes to the selected operand (a on ties) */
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
    for (int64_t j = 0; j < n; j++) o[j] = apply(c->op, a[j * sa], b[j * sb]);
}

/* Gradients of one broadcast row; ga/gb are per-output-element scratch when
 * the operand is broadcast and are reduced afterwards. */
typedef struct {
    binary_op op;
    const float *a, *b, *out, *g;
    float *ga, *gb; /* output-shaped partial gradients, NULL when not needed */
} backward_ctx;

static void backward_row(void *p, int64_t oa, int64_t ob, int64_t oo, int64_t n, int64_t sa, int64_t sb)
{
    backward_ctx *c = p;
    const float *a = c->a + oa, *b = c->b + ob, *g = c->g + oo, *out = c->out + oo;
    float *ga = c->ga ? c->ga + oo : NULL, *gb = c->gb ? c->gb + oo : NULL;
    for (int64_t j = 0; j < n; j++) {
        float x = a[j * sa], y = b[j * sb], gj = g[j];
        float dx = 0.0f, dy = 0.0f;
        switch (c->op) {
        case OP_ADD: dx = gj; dy = gj; break;
        case OP_SUB: dx = gj; dy = -gj; break;
        case OP_MUL: dx = gj * y; dy = gj * x; break;
        case OP_DIV: dx = gj / y; dy = -gj * x / (y * y); break;
        case OP_POW:
            dx = (y == 0.0f) ? 0.0f : gj * y * powf(x, y - 1.0f);
            dy = x > 0.0f ? gj * out[j] * logf(x) : 0.0f;
            break;
        case OP_MAX: dx = x >= y ? gj : 0.0f; dy = x >= y ? 0.0f : gj; break;
        case OP_MIN: dx = x <= y ? gj : 0.0f; dy = x <= y ? 0.0f : gj; break;
        }
        if (ga) ga[j] = dx;
        if (gb) gb[j] = dy;
    }
}

static gl_status binary_backward(gl_node *nd)
{
    gl_broadcast bc;
    gl_tensor *a = nd->saved[0], *b = nd->saved[1];
    gl_status st = gl_broadcast_shapes(nd->op, a, b, &bc);
    if (st != GL_OK) return st;
    float *da, *db;
    if ((st = gl_node_grad(nd, 0, &da)) != GL_OK || (st = gl_node_grad(nd, 1, &db)) != GL_OK) return st;
    size_t n = (size_t)bc.numel;
    float *ta = da ? malloc(n * sizeof *ta) : NULL, *tb = db ? malloc(n * sizeof *tb) : NULL;
    if ((da && !ta) || (db && !tb)) {
        free(ta);
        free(tb);
        return gl_error(GL_ENOMEM, "%s backward: out of memory", nd->op);
    }
    backward_ctx c = {(binary_op)nd->i[0], gl_tensor_f32(a), gl_tensor_f32(b), gl_tensor_f32(nd->saved[2]),
                      gl_tensor_f32(nd->gout), ta, tb};
    gl_broadcast_rows(&bc, backward_row, &c);
    if (da) gl_broadcast_reduce_add(&bc, 0, da, ta);
    if (db) gl_broadcast_reduce_add(&bc, 1, db, tb);
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
    gl_tensor *out = gl_tensor_new(GL_F32, bc.ndim, bc.shape);
    if (!out) return NULL;
    const float *pa = gl_tensor_f32(a), *pb = gl_tensor_f32(b);
    float *po = gl_tensor_f32(out);
    if (a->numel == bc.numel && b->numel == bc.numel) {
        int64_t n = bc.numel;
#pragma omp parallel for if (n > 32768) schedule(static)
        for (int64_t j = 0; j < n; j++) po[j] = apply(op, pa[j], pb[j]);
    } else {
        forward_ctx c = {op, pa, pb, po};
        gl_broadcast_rows(&bc, forward_row, &c);
    }
    gl_tensor *ins[2] = {a, b};
    gl_node *nd;
    if (gl_autograd_record(&nd, out, name, binary_backward, 2, ins) != GL_OK) goto fail;
    if (nd) {
        nd->i[0] = op;
        if (gl_node_save(nd, 0, a) != GL_OK || gl_node_save(nd, 1, b) != GL_OK ||
            gl_node_save(nd, 2, out) != GL_OK)
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
