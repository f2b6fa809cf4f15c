/* Elementwise functions of one f32 tensor. One table (UNARY_OPS) holds every
 * op with its forward and backward side by side, as expressions of
 *   x  the input element,   y  the output element,   g  dL/dy,
 *   a, b  the op's scalar arguments (slope, beta/threshold, lo/hi, s/b, p).
 * Backward ADDS g * dy/dx into the input gradient (GELU's y there is
 * Phi(x), which its forward keeps instead of the output). At kinks the derivative
 * follows PyTorch: relu'(0) = 0, abs'(0) = 0, leaky_relu'(0) = slope,
 * clamp passes g where lo <= x <= hi, pow_scalar with p = 0 has gradient 0.
 * NaN inputs give NaN outputs (relu and clamp included). */
#include "ops/unary.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "autograd/tape.h"
#include "core/interrupt.h"
#include "ops/simd.h"

/* Below this many elements a loop runs on one thread. */
#define PARALLEL_MIN 16384


#define SQRT_2_OVER_PI 0.7978845608028654f
#define INV_SQRT_2PI 0.3989422804014327f
#define GELU_C 0.044715f


/* ---- erf and exp that vectorize ----------------------------------------------
 * libm's erff and expf are calls, so loops over them stay scalar (erff alone
 * was ~15% of a GPT training step). These are branch-free: every select is a
 * bit-mask blend decided by integer compares of bit patterns, because GCC
 * will not if-convert float compares or FP math under a condition (they may
 * trap under the default -ftrapping-math), and a loop that is not
 * if-converted is not vectorized. */

/* e^(-u^2), 0 from u^2 >= 87 on. */
static GL_ALWAYS_INLINE float exp_neg_square(float u)
{
    const uint32_t tb = gl_fbits(u * u), lim = gl_fbits(87.0f);
    return gl_fsel(-(uint32_t)(tb < lim), gl_exp_le0(-gl_bitsf(tb < lim ? tb : lim)), 0.0f);
}

/* erf(u) for |u| < 1: the first branch of erf_and_exp below. */
static GL_ALWAYS_INLINE float erf_small(float u)
{
    static const float P1[8] = {-9.667044571e-06f, 1.126595903e-04f, -8.484080406e-04f, 5.221031808e-03f,
                                -2.686543073e-02f, 1.128378250e-01f,  -3.761263847e-01f, 1.283791671e-01f};
    const float t2 = u * u;
    float p = P1[0];
    p = p * t2 + P1[1];
    p = p * t2 + P1[2];
    p = p * t2 + P1[3];
    p = p * t2 + P1[4];
    p = p * t2 + P1[5];
    p = p * t2 + P1[6];
    p = p * t2 + P1[7];
    return u + u * p;
}

/* erf(u), and e^(-u^2) in *e (exp_neg_square), within 1.4 ulp of erf over
 * all floats (erff: 1 ulp); NaN gives NaN. Coefficients: near-minimax
 * (mpmath.chebyfit) fits of
 *   |u| < 1:  erf(u) = u + u * P1(u^2)  (erf_small)
 *   |u| >= 1: erf(u) = sign(u) (1 - e^(-u^2) P2(t)), t = 1 / (1 + |u|/2),
 * that is erfc(u) e^(u^2) as a polynomial in t (as Numerical Recipes' erfcc),
 * fitted on 1 <= |u| <= 4; beyond 4, erfc(u) is under half an ulp of 1. */
static GL_ALWAYS_INLINE float erf_and_exp(float u, float *e)
{
    static const float P2[8] = {1.208524332e-01f,  -4.765252744e-01f, 5.712651758e-01f, -1.102082941e-01f,
                                3.510303232e-01f,  2.587513664e-01f,  2.850616201e-01f, -1.642363871e-04f};
    const uint32_t ab = gl_fbits(u) & 0x7fffffffu;
    const float a = gl_bitsf(ab), p = erf_small(u);
    *e = exp_neg_square(u);
    const float t = 1.0f / (1.0f + 0.5f * a);
    float q = P2[0];
    q = q * t + P2[1];
    q = q * t + P2[2];
    q = q * t + P2[3];
    q = q * t + P2[4];
    q = q * t + P2[5];
    q = q * t + P2[6];
    q = q * t + P2[7];
    /* 1 for 4 <= |u| <= inf (one unsigned compare); NaN keeps the formula's NaN */
    q = gl_fsel(-(uint32_t)(ab - gl_fbits(4.0f) <= 0x7f800000u - gl_fbits(4.0f)), 1.0f, 1.0f - *e * q);
    return gl_fsel(-(uint32_t)(ab < gl_fbits(1.0f)), p, copysignf(q, u));
}

/* x Phi(x), Phi(x) = (1 + erf(x / sqrt 2)) / 2, as PyTorch's exact GELU */
static GL_ALWAYS_INLINE float gelu_f(float x)
{
    float e;
    return 0.5f * x * (1.0f + erf_and_exp(x * (float)M_SQRT1_2, &e));
}
/* gelu_f(x) where |x / sqrt 2| < 1, in its operations */
static GL_ALWAYS_INLINE float gelu_small(float x) { return 0.5f * x * (1.0f + erf_small(x * (float)M_SQRT1_2)); }
/* GELU's derivative Phi(x) + x phi(x), phi(x) = e^(-x^2/2) / sqrt(2 pi),
 * from Phi(x) as the forward computed it (gelu_forward_saving): the
 * backward then needs no erf, only an exp. */
static GL_ALWAYS_INLINE float gelu_d(float x, float Phi)
{
    return Phi + x * INV_SQRT_2PI * exp_neg_square(x * (float)M_SQRT1_2);
}

/* tanh from one expf: several times faster than tanhf, and accurate to a
 * few 1e-8 absolute, which is all gelu_tanh needs (it uses 1 + tanh). */
static inline float tanh_fast(float u)
{
    float e = expf(-2.0f * fabsf(u));
    return copysignf((1.0f - e) / (1.0f + e), u);
}

static inline float gelu_tanh_f(float x)
{
    return 0.5f * x * (1.0f + tanh_fast(SQRT_2_OVER_PI * (x + GELU_C * x * x * x)));
}
static inline float gelu_tanh_d(float x)
{
    float t = tanh_fast(SQRT_2_OVER_PI * (x + GELU_C * x * x * x));
    return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * SQRT_2_OVER_PI * (1.0f + 3.0f * GELU_C * x * x);
}

/* softplus with beta a and threshold b: linear where beta*x > threshold, as PyTorch. */
static inline float softplus_f(float x, float a, float b) { return x * a > b ? x : log1pf(expf(x * a)) / a; }
static inline float softplus_d(float x, float a, float b) { return x * a > b ? 1.0f : gl_sigmoidf(x * a); }

/* min(max(x, lo), hi) as PyTorch (hi wins when lo > hi); NaN passes through. */
static inline float clamp_f(float x, float lo, float hi)
{
    float v = x < lo ? lo : x;
    return v > hi ? hi : v;
}

static inline float pow_f(float x, float p)
{
    if (p == 2.0f) return x * x;
    if (p == 1.0f) return x;
    if (p == 0.5f) return sqrtf(x);
    return powf(x, p);
}
static inline float pow_d(float x, float p)
{
    if (p == 0.0f) return 0.0f;
    if (p == 2.0f) return 2.0f * x;
    if (p == 1.0f) return 1.0f;
    return p * powf(x, p - 1.0f);
}

/* The loop of each forward and backward below: V a `simd` loop, for bodies
 * that vectorize; S a scalar one, for bodies that call libm (expf, sinf,
 * tanhf, powf; sqrtf too, for errno), which neither GCC nor clang vectorize
 * without fast-math (clang warns about a `simd` loop it cannot vectorize). */
#define LOOP_V _Pragma("omp parallel for simd if (n > PARALLEL_MIN) schedule(static)")
#define LOOP_S _Pragma("omp parallel for if (n > PARALLEL_MIN) schedule(static)")

/*    id          name         loop forward              loop backward (added into dx) */
#define UNARY_OPS(X)                                                                          \
    X(NEG,        "neg",        V, -x,                    V, -g)                              \
    X(EXP,        "exp",        S, expf(x),               V, g * y)                           \
    X(LOG,        "log",        S, logf(x),               V, g / x)                           \
    X(SQRT,       "sqrt",       S, sqrtf(x),              V, g * 0.5f / y)                    \
    X(RSQRT,      "rsqrt",      S, 1.0f / sqrtf(x),       V, -0.5f * g * y * y * y)           \
    X(ABS,        "abs",        V, fabsf(x),              V, x > 0 ? g : (x < 0 ? -g : 0.0f)) \
    X(SIN,        "sin",        S, sinf(x),               S, g * cosf(x))                     \
    X(COS,        "cos",        S, cosf(x),               S, -g * sinf(x))                    \
    X(TANH,       "tanh",       S, tanhf(x),              V, g * (1.0f - y * y))              \
    X(SIGMOID,    "sigmoid",    V, gl_sigmoidf(x),        V, g * y * (1.0f - y))              \
    X(RELU,       "relu",       V, x < 0 ? 0.0f : x,      V, x > 0 ? g : 0.0f)                \
    X(LEAKY_RELU, "leaky_relu", V, x > 0 ? x : x * a,     V, x > 0 ? g : g * a)               \
    X(GELU,       "gelu",       V, gelu_f(x),             V, g * gelu_d(x, y))                \
    X(GELU_TANH,  "gelu_tanh",  S, gelu_tanh_f(x),        S, g * gelu_tanh_d(x))              \
    X(SILU,       "silu",       V, x * gl_sigmoidf(x),    V, g * gl_silu_gradf(x))            \
    X(SOFTPLUS,   "softplus",   S, softplus_f(x, a, b),   V, g * softplus_d(x, a, b))         \
    X(CLAMP,      "clamp",      V, clamp_f(x, a, b),      V, x >= a && x <= b ? g : 0.0f)     \
    X(AFFINE,     "affine",     V, x * a + b,             V, g * a)                           \
    X(POW_SCALAR, "pow",        S, pow_f(x, a),           S, g * pow_d(x, a))

typedef enum {
#define X(id, name, fk, fwd, bk, bwd) OP_##id,
    UNARY_OPS(X)
#undef X
} unary_op;

static const char *const op_names[] = {
#define X(id, name, fk, fwd, bk, bwd) name,
    UNARY_OPS(X)
#undef X
};

GL_SIMD_CLONES static void unary_forward(unary_op op, float *restrict out, const float *restrict in, int64_t n, float a,
                                      float b)
{
    switch (op) {
#define X(id, name, fk, fwd, bk, bwd)                                         \
    case OP_##id:                                                             \
        LOOP_##fk                                                             \
        for (int64_t k = 0; k < n; k++) {                                     \
            const float x = in[k];                                            \
            out[k] = (fwd);                                                   \
        }                                                                     \
        break;
        UNARY_OPS(X)
#undef X
    }
}

/* GELU's forward when it records: out = x Phi(x) (gelu_f's operations) and
 * Phi [n], which its backward reads in place of the output. */
GL_SIMD_CLONES static void gelu_forward_saving(float *restrict out, float *restrict Phi, const float *restrict in,
                                            int64_t n)
{
#pragma omp parallel for simd if (n > PARALLEL_MIN) schedule(static)
    for (int64_t k = 0; k < n; k++) {
        const float x = in[k];
        float e;
        const float erf = erf_and_exp(x * (float)M_SQRT1_2, &e);
        out[k] = 0.5f * x * (1.0f + erf);
        Phi[k] = 0.5f * (1.0f + erf);
    }
}

/* dx = g * f'(x) into a new buffer (fresh), else dx += g * f'(x). */
GL_SIMD_CLONES static void unary_backward_kernel(unary_op op, float *restrict dx, const float *restrict in,
                                              const float *restrict outp, const float *restrict gout, int64_t n,
                                              float a, float b, bool fresh)
{
#define LOOP(bk, bwd, ASSIGN)                                                 \
    LOOP_##bk                                                                 \
    for (int64_t k = 0; k < n; k++) {                                         \
        const float x = in[k], y = outp[k], g = gout[k];                      \
        (void)x; /* not every formula reads both x and y */                   \
        (void)y;                                                              \
        dx[k] ASSIGN (bwd);                                                   \
    }
    switch (op) {
#define X(id, name, fk, fwd, bk, bwd) \
    case OP_##id:                     \
        if (fresh) {                  \
            LOOP(bk, bwd, =)          \
        } else {                      \
            LOOP(bk, bwd, +=)         \
        }                             \
        break;
        UNARY_OPS(X)
#undef X
#undef LOOP
    }
}

/* saved[0] = x, saved[1] = out; i[0] = op; f[0], f[1] = a, b. */
static gl_status unary_backward(gl_node *nd)
{
    float *dx;
    bool fresh;
    gl_status st = gl_node_grad_init(nd, 0, &dx, &fresh);
    if (st != GL_OK || !dx) return st;
    unary_backward_kernel((unary_op)nd->i[0], dx, gl_tensor_f32(nd->saved[0]), gl_tensor_f32(nd->saved[1]),
                          gl_tensor_f32(nd->gout), nd->saved[0]->numel, (float)nd->f[0], (float)nd->f[1], fresh);
    return GL_OK;
}

static gl_tensor *unary(unary_op op, gl_tensor *x, float a, float b)
{
    const char *name = op_names[op];
    if (gl_interrupt_poll(name)) return NULL;
    if (x->dtype != GL_F32)
        return gl_error_null(GL_EINVAL, "%s: expected an f32 tensor, got %s (convert with :float())", name,
                             gl_dtype_name(x->dtype));
    gl_tensor *out = gl_tensor_empty(GL_F32, x->ndim, x->shape), *Phi = NULL; /* Phi: GELU's, for backward */
    if (!out) return NULL;
    if (op == OP_GELU && gl_autograd_needed(1, &x)) {
        if (!(Phi = gl_tensor_empty(GL_F32, x->ndim, x->shape))) goto fail;
        gelu_forward_saving(gl_tensor_f32(out), gl_tensor_f32(Phi), gl_tensor_f32(x), x->numel);
    } else {
        unary_forward(op, gl_tensor_f32(out), gl_tensor_f32(x), x->numel, a, b);
    }
    gl_node *nd;
    if (gl_autograd_record(&nd, out, name, unary_backward, 1, &x) != GL_OK) goto fail;
    if (nd) {
        nd->i[0] = op;
        nd->f[0] = a;
        nd->f[1] = b;
        if (gl_node_save(nd, 0, x) != GL_OK || gl_node_save(nd, 1, Phi ? Phi : out) != GL_OK) goto fail;
    }
    gl_tensor_release(Phi);
    return out;
fail:
    gl_tensor_release(Phi);
    gl_tensor_release(out);
    return NULL;
}

gl_tensor *gl_neg(gl_tensor *x) { return unary(OP_NEG, x, 0, 0); }
gl_tensor *gl_exp(gl_tensor *x) { return unary(OP_EXP, x, 0, 0); }
gl_tensor *gl_log(gl_tensor *x) { return unary(OP_LOG, x, 0, 0); }
gl_tensor *gl_sqrt(gl_tensor *x) { return unary(OP_SQRT, x, 0, 0); }
gl_tensor *gl_rsqrt(gl_tensor *x) { return unary(OP_RSQRT, x, 0, 0); }
gl_tensor *gl_abs(gl_tensor *x) { return unary(OP_ABS, x, 0, 0); }
gl_tensor *gl_sin(gl_tensor *x) { return unary(OP_SIN, x, 0, 0); }
gl_tensor *gl_cos(gl_tensor *x) { return unary(OP_COS, x, 0, 0); }
gl_tensor *gl_tanh(gl_tensor *x) { return unary(OP_TANH, x, 0, 0); }
gl_tensor *gl_sigmoid(gl_tensor *x) { return unary(OP_SIGMOID, x, 0, 0); }
gl_tensor *gl_relu(gl_tensor *x) { return unary(OP_RELU, x, 0, 0); }
gl_tensor *gl_leaky_relu(gl_tensor *x, float slope) { return unary(OP_LEAKY_RELU, x, slope, 0); }
gl_tensor *gl_gelu(gl_tensor *x) { return unary(OP_GELU, x, 0, 0); }
gl_tensor *gl_gelu_tanh(gl_tensor *x) { return unary(OP_GELU_TANH, x, 0, 0); }

/* Exact GELU by blocks of 8 (a vector): a block whose |x / sqrt 2| are all
 * under 1 needs only erf's first polynomial (gelu_small, the same numbers),
 * without the exponential, division and second polynomial of the rest. The
 * MLP inputs of a decoded token are mostly such blocks. */
GL_SIMD_CLONES void gl_gelu_inplace(float *x, int64_t n, bool tanh_approx)
{
    if (tanh_approx) { /* no `simd`: tanh_fast calls expf, as in GELU_TANH's loops */
        for (int64_t i = 0; i < n; i++) x[i] = gelu_tanh_f(x[i]);
        return;
    }
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        float *b = x + i;
        uint32_t big = 0;
        for (int k = 0; k < 8; k++) big |= (uint32_t)((gl_fbits(b[k] * (float)M_SQRT1_2) & 0x7fffffffu) >= gl_fbits(1.0f));
        if (big) {
#pragma omp simd
            for (int k = 0; k < 8; k++) b[k] = gelu_f(b[k]);
        } else {
#pragma omp simd
            for (int k = 0; k < 8; k++) b[k] = gelu_small(b[k]);
        }
    }
    for (; i < n; i++) x[i] = gelu_f(x[i]);
}
gl_tensor *gl_silu(gl_tensor *x) { return unary(OP_SILU, x, 0, 0); }
gl_tensor *gl_clamp(gl_tensor *x, float lo, float hi) { return unary(OP_CLAMP, x, lo, hi); }
gl_tensor *gl_affine(gl_tensor *x, float s, float b) { return unary(OP_AFFINE, x, s, b); }
gl_tensor *gl_pow_scalar(gl_tensor *x, float p) { return unary(OP_POW_SCALAR, x, p, 0); }

gl_tensor *gl_softplus(gl_tensor *x, float beta, float threshold)
{
    if (!(beta != 0.0f))
        return gl_error_null(GL_EINVAL, "softplus: beta must be nonzero (got %g)", (double)beta);
    return unary(OP_SOFTPLUS, x, beta, threshold);
}
