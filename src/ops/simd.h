/* What the vectorized loops of src/ops share (internal, not installed).
 *
 * GL_SIMD_CLONES builds a function twice on x86-64 with GCC, for AVX2 (8
 * floats a vector) and the SSE2 baseline, and the loader picks one. The
 * build has no FMA contraction (-std=c11), so the clones give the same bits
 * except where a reduction's order follows the vector width.
 * GL_ALWAYS_INLINE inlines a helper even into the clones, where GCC does not
 * inline plain `inline` ones on its own; a call per element would stop
 * vectorization. */
#ifndef GL_OPS_SIMD_H
#define GL_OPS_SIMD_H

#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define GL_SIMD_CLONES __attribute__((target_clones("avx2", "default")))
#define GL_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define GL_SIMD_CLONES
#define GL_ALWAYS_INLINE inline
#endif

/* e^x for x <= 0 (a softmax's x - max, a log-sum-exp's x - lse, a sigmoid's
 * -|x|), in a form `omp simd` vectorizes: Cephes' expf (x = n ln2 + r,
 * |r| <= ln2/2, degree-6 polynomial for e^r, times 2^n built from the
 * exponent bits); relative error below 1e-7. glibc's expf is a call per
 * element without fast-math. Below -87 (where e^x < 1.7e-38) and at -inf it
 * returns 0; NaN stays NaN. Under -ftrapping-math GCC does not if-convert
 * float selects, so the range is handled with integer masks. */
static GL_ALWAYS_INLINE float gl_exp_le0(float x)
{
    int32_t below = -(int32_t)(x < -87.0f);
    /* max(x, -87) as a bit blend, so that n stays in the exponent's range */
    union { float f; int32_t i; } ux = {.f = x}, lim = {.f = -87.0f};
    ux.i = (ux.i & ~below) | (lim.i & below);
    x = ux.f;
    float kf = x * 1.44269504088896341f + 12582912.0f; /* 1.5*2^23 + n, n = round(x / ln 2) */
    float n = kf - 12582912.0f;
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float y = 1.9875691500e-4f;
    y = y * r + 1.3981999507e-3f;
    y = y * r + 8.3334519073e-3f;
    y = y * r + 4.1665795894e-2f;
    y = y * r + 1.6666665459e-1f;
    y = y * r + 5.0000001201e-1f;
    y = y * (r * r) + r + 1.0f;
    union { float f; uint32_t u; } k = {.f = kf}, two_n, out;
    two_n.u = (k.u - 0x4B400000u + 127u) << 23; /* the bits of 2^n, in unsigned arithmetic (no UB for NaN) */
    out.f = y * two_n.f;
    out.u &= ~(uint32_t)below; /* 0 below -87 */
    return out.f;
}

/* A float's bits and back, and a bit-mask blend: x where mask is all ones,
 * y where it is 0. GCC will not if-convert float compares or FP math under
 * a condition (they may trap under the default -ftrapping-math), so the
 * vectorized loops select by integer compares of bit patterns. */
static inline uint32_t gl_fbits(float f)
{
    uint32_t b;
    memcpy(&b, &f, sizeof b);
    return b;
}

static inline float gl_bitsf(uint32_t b)
{
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

static inline float gl_fsel(uint32_t mask, float x, float y)
{
    return gl_bitsf((gl_fbits(x) & mask) | (gl_fbits(y) & ~mask));
}

/* 1 / (1 + e^-x) through gl_exp_le0(-|x|), so that loops over it vectorize
 * (expf's calls kept SiLU scalar: 11% of a UNet step): e^-|x| / (1 + e^-|x|)
 * below 0, its complement's form 1 / (1 + e^-|x|) from 0 on. Below -87 the
 * exponential is 0, so the result is 0 or 1 (within 2e-38); NaN gives NaN.
 * The select picks between two computed values, which GCC if-converts.
 * gl.sigmoid, gl.silu and group_norm's fused SiLU all use it, so the fused
 * op gives the plain ops' bits. */
static GL_ALWAYS_INLINE float gl_sigmoidf(float x)
{
    const float e = gl_exp_le0(-__builtin_fabsf(x));
    return (x >= 0.0f ? 1.0f : e) * (1.0f / (1.0f + e));
}

/* SiLU's derivative, d/dx x sigmoid(x). */
static GL_ALWAYS_INLINE float gl_silu_gradf(float x)
{
    float s = gl_sigmoidf(x);
    return s * (1.0f + x * (1.0f - s));
}

#endif
