/* Incremental GPT inference with a KV cache, outside autograd.
 *
 * A session resolves the model's weights once (retaining them, so a module
 * that later swaps a parameter cannot leave it dangling), preallocates the
 * per-layer K/V caches ([KVH, capacity, HS] per layer, the layout of
 * gl_attention_decode) and the scratch of one chunk of CHUNK tokens, and
 * then runs raw float kernels: gl_sgemm for the projections of several
 * tokens, an AVX2 matrix-vector product (OpenMP over output rows) for one,
 * inline norms and activations, gl_rope_inplace and gl_attention_decode.
 * Appending a token costs the projections plus attention over the cached
 * positions; nothing else grows with the length, and nothing is allocated.
 *
 * The math is gl_gpt_forward's (gpt.c), in the same order, so logits agree
 * to float rounding; tests/lua/test_gpt.lua checks this for every arch.
 * A failed append (interrupt) leaves the length where it was. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/interrupt.h"
#include "models/gpt.h"
#include "ops/attention.h"
#include "ops/matmul.h"
#include "ops/rope.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_AVX2_PATH 1
#endif

enum { CHUNK = 32 };

typedef struct {
    const float *w, *b; /* w [out, in] row-major, b [out] or NULL */
} lin_w;

typedef struct {
    const float *ln1_w, *ln1_b, *ln2_w, *ln2_b;
    lin_w q, k, v, o, gate, up, down;
} layer_w;

struct gl_gpt_session {
    gl_module *m;
    gl_gpt_config c;
    int64_t cap, len;
    int64_t HS, KVD, QKVD; /* head size; K/V row width KVH*HS */
    layer_w *lw;
    const float *tok, *pos, *lnf_w, *lnf_b, *head;
    gl_tensor_list held; /* references on every weight read through the pointers above */
    float *kc, *vc;      /* [L, KVH, cap, HS] */
    float *x, *h, *q, *k, *v, *att, *ff, *ff2; /* chunk scratch */
};

/* --- kernels -------------------------------------------------------------------- */

static float dot_plain(const float *a, const float *b, int64_t n)
{
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

#ifdef HAVE_AVX2_PATH
__attribute__((target("avx2,fma"))) static float dot_avx2(const float *a, const float *b, int64_t n)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    __m256 s = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
    __m128 r = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_shuffle_ps(r, r, 1));
    float t = _mm_cvtss_f32(r);
    for (; i < n; i++) t += a[i] * b[i];
    return t;
}

/* y[r] = W[r] . x for 4 consecutive rows of stride I: four streams at once
 * keep more loads in flight than one row after another. */
__attribute__((target("avx2,fma"))) static void dot4_avx2(float *y, const float *W, const float *x, int64_t I)
{
    const float *w0 = W, *w1 = W + I, *w2 = W + 2 * I, *w3 = W + 3 * I;
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= I; i += 8) {
        __m256 xv = _mm256_loadu_ps(x + i);
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(w0 + i), xv, s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(w1 + i), xv, s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(w2 + i), xv, s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(w3 + i), xv, s3);
    }
    /* transpose-and-add the four accumulators into one vector of 4 sums */
    __m256 a = _mm256_hadd_ps(s0, s1), b = _mm256_hadd_ps(s2, s3), c = _mm256_hadd_ps(a, b);
    __m128 r = _mm_add_ps(_mm256_castps256_ps128(c), _mm256_extractf128_ps(c, 1));
    float t[4];
    _mm_storeu_ps(t, r);
    for (; i < I; i++) {
        t[0] += w0[i] * x[i];
        t[1] += w1[i] * x[i];
        t[2] += w2[i] * x[i];
        t[3] += w3[i] * x[i];
    }
    for (int k = 0; k < 4; k++) y[k] = t[k];
}
#endif

static void dot4_plain(float *y, const float *W, const float *x, int64_t I)
{
    for (int k = 0; k < 4; k++) y[k] = dot_plain(W + k * I, x, I);
}

typedef float (*dot_fn)(const float *, const float *, int64_t);
typedef void (*dot4_fn)(float *, const float *, const float *, int64_t);

static dot_fn dot = NULL; /* set by pick_kernels before any use */
static dot4_fn dot4 = NULL;

static void pick_kernels(void)
{
    dot = dot_plain;
    dot4 = dot4_plain;
#ifdef HAVE_AVX2_PATH
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        dot = dot_avx2;
        dot4 = dot4_avx2;
    }
#endif
}

/* y[n, O] (+)= x[n, I] @ W[O, I]^T + b. */
static void linear(float *y, const float *x, lin_w L, int64_t n, int64_t I, int64_t O, bool accumulate)
{
    if (n > 1) {
        gl_sgemm(false, true, n, O, I, 1.0f, x, I, L.w, I, accumulate ? 1.0f : 0.0f, y, O);
        if (L.b)
            for (int64_t t = 0; t < n; t++)
                for (int64_t o = 0; o < O; o++) y[t * O + o] += L.b[o];
        return;
    }
    const float *W = L.w, *b = L.b;
    int64_t O4 = O / 4;
#pragma omp parallel for schedule(static) if (O * I >= 1 << 17)
    for (int64_t g = 0; g < O4 + O % 4; g++) {
        float s[4];
        int64_t o = g < O4 ? 4 * g : 4 * O4 + (g - O4), k = g < O4 ? 4 : 1;
        if (k == 4)
            dot4(s, W + o * I, x, I);
        else
            s[0] = dot(W + o * I, x, I);
        for (int64_t r = 0; r < k; r++) {
            float v = s[r] + (b ? b[o + r] : 0.0f);
            y[o + r] = accumulate ? y[o + r] + v : v;
        }
    }
}

/* Row-wise LayerNorm (b may be NULL) or, when is_rms, RMSNorm. y, x [n, C]. */
static void norm(float *y, const float *x, const float *w, const float *b, int64_t n, int64_t C, float eps,
                 bool is_rms)
{
    for (int64_t t = 0; t < n; t++) {
        const float *xr = x + t * C;
        float *yr = y + t * C;
        if (is_rms) {
            float ss = 0.0f;
            for (int64_t i = 0; i < C; i++) ss += xr[i] * xr[i];
            float r = 1.0f / sqrtf(ss / (float)C + eps);
            for (int64_t i = 0; i < C; i++) yr[i] = xr[i] * r * w[i];
            continue;
        }
        float mean = 0.0f, var = 0.0f;
        for (int64_t i = 0; i < C; i++) mean += xr[i];
        mean /= (float)C;
        for (int64_t i = 0; i < C; i++) var += (xr[i] - mean) * (xr[i] - mean);
        float r = 1.0f / sqrtf(var / (float)C + eps);
        for (int64_t i = 0; i < C; i++) yr[i] = (xr[i] - mean) * r * w[i] + (b ? b[i] : 0.0f);
    }
}

static void gelu(float *x, int64_t n, bool tanh_approx)
{
    if (tanh_approx) {
        const float k = 0.7978845608028654f; /* sqrt(2/pi) */
        for (int64_t i = 0; i < n; i++) x[i] = 0.5f * x[i] * (1.0f + tanhf(k * (x[i] + 0.044715f * x[i] * x[i] * x[i])));
    } else {
        for (int64_t i = 0; i < n; i++) x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.7071067811865476f));
    }
}

/* g = silu(g) * u. */
static void swiglu(float *g, const float *u, int64_t n)
{
    for (int64_t i = 0; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

/* --- session ---------------------------------------------------------------------- */

void gl_gpt_session_free(gl_gpt_session *s)
{
    if (!s) return;
    gl_tensor_list_clear(&s->held);
    gl_module_release(s->m);
    free(s->lw);
    free(s->kc);
    free(s->vc);
    free(s->x);
    free(s->h);
    free(s->q);
    free(s->att);
    free(s->ff);
    free(s->ff2);
    free(s->k);
    free(s->v);
    free(s);
}

/* The f32 data of the tensor named name (printf-style), retained in s->held;
 * NULL (error set) when absent and required. */
static const float *weight(gl_gpt_session *s, bool required, const char *fmt, const char *prefix, long long layer)
{
    char name[160];
    snprintf(name, sizeof name, fmt, prefix, layer);
    gl_tensor *t = gl_module_find_tensor(s->m, name);
    if (!t) return required ? gl_error_null(GL_EINVAL, "session: the model has no '%s'", name) : NULL;
    if (t->dtype != GL_F32) return gl_error_null(GL_EINVAL, "session: '%s' is not f32", name);
    if (gl_tensor_list_add(&s->held, NULL, t) != GL_OK) return NULL;
    return gl_tensor_f32(t);
}

static bool resolve(gl_gpt_session *s)
{
    const gl_gpt_config *c = &s->c;
    bool llama = c->arch == GL_GPT_LLAMA;
    int64_t C = c->n_embd;
    const char *tr = llama ? "model" : "transformer";
#define GET(dst, req, pat, l)                                                                 \
    do {                                                                                      \
        if (!((dst) = weight(s, req, "%s." pat, tr, (long long)(l))) && (req)) return false;  \
    } while (0)
    if (llama)
        GET(s->tok, true, "embed_tokens.weight", 0);
    else
        GET(s->tok, true, "wte.weight", 0);
    if (!llama) GET(s->pos, true, "wpe.weight", 0);
    for (int64_t l = 0; l < c->n_layer; l++) {
        layer_w *w = &s->lw[l];
        if (llama) {
            GET(w->ln1_w, true, "layers.%lld.input_layernorm.weight", l);
            GET(w->ln2_w, true, "layers.%lld.post_attention_layernorm.weight", l);
            GET(w->q.w, true, "layers.%lld.self_attn.q_proj.weight", l);
            GET(w->k.w, true, "layers.%lld.self_attn.k_proj.weight", l);
            GET(w->v.w, true, "layers.%lld.self_attn.v_proj.weight", l);
            GET(w->o.w, true, "layers.%lld.self_attn.o_proj.weight", l);
            GET(w->gate.w, true, "layers.%lld.mlp.gate_proj.weight", l);
            GET(w->up.w, true, "layers.%lld.mlp.up_proj.weight", l);
            GET(w->down.w, true, "layers.%lld.mlp.down_proj.weight", l);
            continue;
        }
        GET(w->ln1_w, true, "h.%lld.ln_1.weight", l);
        GET(w->ln1_b, false, "h.%lld.ln_1.bias", l);
        GET(w->ln2_w, true, "h.%lld.ln_2.weight", l);
        GET(w->ln2_b, false, "h.%lld.ln_2.bias", l);
        const float *qkv, *qkv_b;
        GET(qkv, true, "h.%lld.attn.c_attn.weight", l);
        GET(qkv_b, false, "h.%lld.attn.c_attn.bias", l);
        w->q = (lin_w){qkv, qkv_b};
        w->k = (lin_w){qkv + C * C, qkv_b ? qkv_b + C : NULL};
        w->v = (lin_w){qkv + 2 * C * C, qkv_b ? qkv_b + 2 * C : NULL};
        GET(w->o.w, true, "h.%lld.attn.c_proj.weight", l);
        GET(w->o.b, false, "h.%lld.attn.c_proj.bias", l);
        GET(w->up.w, true, "h.%lld.mlp.c_fc.weight", l);
        GET(w->up.b, false, "h.%lld.mlp.c_fc.bias", l);
        GET(w->down.w, true, "h.%lld.mlp.c_proj.weight", l);
        GET(w->down.b, false, "h.%lld.mlp.c_proj.bias", l);
    }
    if (llama) {
        GET(s->lnf_w, true, "norm.weight", 0);
    } else {
        GET(s->lnf_w, true, "ln_f.weight", 0);
        GET(s->lnf_b, false, "ln_f.bias", 0);
    }
    if (!(s->head = weight(s, true, "%slm_head.weight", "", 0))) return false;
#undef GET
    return true;
}

static float *falloc(int64_t n, bool *ok)
{
    float *p = n > 0 && (uint64_t)n < SIZE_MAX / sizeof(float) ? malloc((size_t)n * sizeof(float)) : NULL;
    if (!p) *ok = false;
    return p;
}

gl_gpt_session *gl_gpt_session_new(gl_module *m, int64_t capacity)
{
    const gl_gpt_config *cfg = gl_gpt_config_of(m);
    if (!cfg) return gl_error_null(GL_EINVAL, "session: not a GPT module");
    if (capacity == 0) capacity = cfg->block_size;
    if (capacity < 1 || capacity > cfg->block_size)
        return gl_error_null(GL_EINVAL, "session: capacity %lld is outside 1..block_size %lld", (long long)capacity,
                             (long long)cfg->block_size);
    if (!dot) pick_kernels();
    gl_gpt_session *s = calloc(1, sizeof *s);
    if (!s) return gl_error_null(GL_ENOMEM, "session: out of memory");
    s->m = m;
    gl_module_retain(m);
    s->c = *cfg;
    s->cap = capacity;
    s->held = (gl_tensor_list)GL_TENSOR_LIST_INIT;
    const gl_gpt_config *c = &s->c;
    int64_t C = c->n_embd, L = c->n_layer;
    s->HS = C / c->n_head;
    s->KVD = c->n_kv_head * s->HS;
    int64_t chunk = capacity < CHUNK ? capacity : CHUNK;
    bool ok = true;
    s->lw = calloc((size_t)L, sizeof *s->lw);
    if (!s->lw) ok = false;
    s->kc = falloc(L * capacity * s->KVD, &ok);
    s->vc = falloc(L * capacity * s->KVD, &ok);
    s->x = falloc(chunk * C, &ok);
    s->h = falloc(chunk * C, &ok);
    s->q = falloc(chunk * C, &ok);
    s->att = falloc(chunk * C, &ok);
    s->ff = falloc(chunk * c->n_hidden, &ok);
    s->ff2 = falloc(chunk * c->n_hidden, &ok);
    s->k = falloc(chunk * s->KVD, &ok);
    s->v = falloc(chunk * s->KVD, &ok);
    if (!ok) {
        gl_gpt_session_free(s);
        return gl_error_null(GL_ENOMEM, "session: out of memory for a cache of %lld positions", (long long)capacity);
    }
    if (!resolve(s)) {
        gl_gpt_session_free(s);
        return NULL;
    }
    return s;
}

void gl_gpt_session_reset(gl_gpt_session *s) { s->len = 0; }
int64_t gl_gpt_session_length(const gl_gpt_session *s) { return s->len; }
int64_t gl_gpt_session_capacity(const gl_gpt_session *s) { return s->cap; }

/* Writes n rows [n, KVH*HS] into a [KVH, cap, HS] cache at positions p... */
static void cache_store(float *cache, const float *rows, int64_t n, int64_t p, int64_t KVH, int64_t HS, int64_t cap)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t h = 0; h < KVH; h++)
            memcpy(cache + (h * cap + p + i) * HS, rows + i * KVH * HS + h * HS, (size_t)HS * sizeof(float));
}

/* Runs n (<= chunk) tokens at positions len.. through the layers, leaving
 * the final hidden states (before ln_f) in s->x. */
static gl_status forward_chunk(gl_gpt_session *s, const int64_t *ids, int64_t n)
{
    const gl_gpt_config *c = &s->c;
    int64_t C = c->n_embd, F = c->n_hidden, p = s->len, KVD = s->KVD, HS = s->HS, KVH = c->n_kv_head;
    bool llama = c->arch == GL_GPT_LLAMA;
    for (int64_t i = 0; i < n; i++) {
        memcpy(s->x + i * C, s->tok + ids[i] * C, (size_t)C * sizeof(float));
        if (!llama)
            for (int64_t j = 0; j < C; j++) s->x[i * C + j] += s->pos[(p + i) * C + j];
    }
    for (int64_t l = 0; l < c->n_layer; l++) {
        const layer_w *w = &s->lw[l];
        float *kc = s->kc + l * s->cap * KVD, *vc = s->vc + l * s->cap * KVD;
        norm(s->h, s->x, w->ln1_w, w->ln1_b, n, C, c->norm_eps, llama);
        linear(s->q, s->h, w->q, n, C, C, false);
        linear(s->k, s->h, w->k, n, C, KVD, false);
        linear(s->v, s->h, w->v, n, C, KVD, false);
        gl_status st;
        if (llama && ((st = gl_rope_inplace(s->q, n, c->n_head, HS, C, p, c->rope_theta)) != GL_OK ||
                      (st = gl_rope_inplace(s->k, n, KVH, HS, KVD, p, c->rope_theta)) != GL_OK))
            return st;
        cache_store(kc, s->k, n, p, KVH, HS, s->cap);
        cache_store(vc, s->v, n, p, KVH, HS, s->cap);
        gl_attention_opts o = {
            .scale = c->arch == GL_GPT_NEO ? 1.0f : 1.0f / sqrtf((float)HS),
            .causal = true,
            .window = (c->arch == GL_GPT_NEO && l < 64 && (c->local_layers >> l & 1)) ? c->window : 0,
        };
        st = gl_attention_decode(s->att, C, s->q, C, n, kc, vc, s->cap, p + n, c->n_head, KVH, HS, &o);
        if (st != GL_OK) return st;
        linear(s->x, s->att, w->o, n, C, C, true);
        norm(s->h, s->x, w->ln2_w, w->ln2_b, n, C, c->norm_eps, llama);
        if (llama) {
            linear(s->ff, s->h, w->gate, n, C, F, false);
            linear(s->ff2, s->h, w->up, n, C, F, false);
            swiglu(s->ff, s->ff2, n * F);
        } else {
            linear(s->ff, s->h, w->up, n, C, F, false);
            gelu(s->ff, n * F, c->gelu_tanh);
        }
        linear(s->x, s->ff, w->down, n, F, C, true);
    }
    return GL_OK;
}

gl_status gl_gpt_session_append(gl_gpt_session *s, const int64_t *ids, int64_t n, float *logits, bool all_positions)
{
    const gl_gpt_config *c = &s->c;
    if (n < 1) return gl_error(GL_EINVAL, "session: append needs at least one token");
    if (n > s->cap - s->len)
        return gl_error(GL_EINVAL, "session: appending %lld tokens to %lld exceeds the capacity %lld", (long long)n,
                        (long long)s->len, (long long)s->cap);
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= c->vocab_size)
            return gl_error(GL_EINVAL, "session: token id %lld is outside the vocabulary [0, %lld)", (long long)ids[i],
                            (long long)c->vocab_size);
    int64_t C = c->n_embd, V = c->vocab_size, chunk = s->cap < CHUNK ? s->cap : CHUNK, start = s->len;
    bool llama = c->arch == GL_GPT_LLAMA;
    for (int64_t done = 0; done < n;) {
        if (gl_interrupt_poll("session")) {
            s->len = start; /* appends nothing */
            return GL_EINTR;
        }
        int64_t k = n - done < chunk ? n - done : chunk;
        gl_status st = forward_chunk(s, ids + done, k);
        if (st != GL_OK) {
            s->len = start;
            return st;
        }
        s->len += k;
        done += k;
        if (all_positions) {
            norm(s->h, s->x, s->lnf_w, s->lnf_b, k, C, c->norm_eps, llama);
            linear(logits + (done - k) * V, s->h, (lin_w){s->head, NULL}, k, C, V, false);
        } else if (done == n) {
            norm(s->h, s->x + (k - 1) * C, s->lnf_w, s->lnf_b, 1, C, c->norm_eps, llama);
            linear(logits, s->h, (lin_w){s->head, NULL}, 1, C, V, false);
        }
    }
    return GL_OK;
}
