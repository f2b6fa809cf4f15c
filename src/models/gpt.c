/* The GPT family as one gl_module tree built from src/nn layers, and its
 * autograd forward. Parameter names (state_dict) follow Hugging Face, so
 * GPT-2 / nanoGPT and LLaMA checkpoints map one to one:
 *
 * GPT2 and NEO (nanoGPT's and HF GPT-2's names):
 *   transformer.wte.weight              [V, C]     token embedding
 *   transformer.wpe.weight              [block, C] learned positions
 *   transformer.h.N.ln_1.{weight,bias}  [C]
 *   transformer.h.N.attn.c_attn.weight  [3C, C]    fused q,k,v rows (q first); bias [3C] when bias and not NEO
 *   transformer.h.N.attn.c_proj.weight  [C, C]     bias [C] when bias or NEO
 *   transformer.h.N.ln_2.{weight,bias}  [C]
 *   transformer.h.N.mlp.c_fc.weight     [F, C]     bias [F] when bias
 *   transformer.h.N.mlp.c_proj.weight   [C, F]     bias [C] when bias
 *   transformer.ln_f.{weight,bias}      [C]
 *   lm_head.weight                      [V, C]     tied to transformer.wte.weight when tie_head
 * LayerNorm biases exist when bias. Linear weights are [out, in] (nn.Linear),
 * as nanoGPT stores them; HF GPT-2's Conv1D keeps [in, out] and GPT-Neo keeps
 * separate q/k/v/out_proj: gpt_io.c transposes and splits.
 *
 * LLAMA (HF LlamaForCausalLM's names):
 *   model.embed_tokens.weight                      [V, C]
 *   model.layers.N.input_layernorm.weight          [C]
 *   model.layers.N.self_attn.q_proj.weight         [NH*HS, C]
 *   model.layers.N.self_attn.{k,v}_proj.weight     [KVH*HS, C]
 *   model.layers.N.self_attn.o_proj.weight         [C, NH*HS]
 *   model.layers.N.post_attention_layernorm.weight [C]
 *   model.layers.N.mlp.{gate,up}_proj.weight       [F, C]
 *   model.layers.N.mlp.down_proj.weight            [C, F]
 *   model.norm.weight                              [C]
 *   lm_head.weight                                 [V, C] (tied to embed_tokens when tie_head)
 * RoPE follows HF's rotate_half convention (first half / second half of each head). */
#include "models/gpt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/interrupt.h"
#include "nn/init.h"
#include "nn/layers.h"
#include "ops/attention.h"
#include "ops/binary.h"
#include "ops/matmul.h"
#include "ops/nnops.h"
#include "ops/rope.h"
#include "ops/shape.h"
#include "ops/unary.h"

/* --- configuration ------------------------------------------------------------ */

static const char *arch_name(gl_gpt_arch a)
{
    return a == GL_GPT_GPT2 ? "gpt2" : a == GL_GPT_NEO ? "neo" : a == GL_GPT_LLAMA ? "llama" : "?";
}

const char *gl_gpt_arch_name(gl_gpt_arch a) { return arch_name(a); }

int64_t gl_gpt_default_hidden(const gl_gpt_config *cfg)
{
    int64_t h = 4 * cfg->n_embd;
    if (cfg->arch != GL_GPT_LLAMA) return h;
    h = 2 * h / 3; /* llama2.c / Meta: SwiGLU keeps the parameter count of a 4C MLP */
    return (h + 255) / 256 * 256;
}

gl_status gl_gpt_config_finish(gl_gpt_config *c)
{
    if (c->arch != GL_GPT_GPT2 && c->arch != GL_GPT_NEO && c->arch != GL_GPT_LLAMA)
        return gl_error(GL_EINVAL, "gpt: arch must be gpt2, neo or llama");
#define POSITIVE(f)                                                                                   \
    if (c->f <= 0) return gl_error(GL_EINVAL, "gpt: " #f " must be positive (got %lld)", (long long)c->f)
    POSITIVE(vocab_size);
    POSITIVE(block_size);
    POSITIVE(n_layer);
    POSITIVE(n_head);
    POSITIVE(n_embd);
#undef POSITIVE
    if (c->vocab_size > (int64_t)1 << 31 || c->block_size > (int64_t)1 << 24 || c->n_layer > 4096 ||
        c->n_embd > (int64_t)1 << 20)
        return gl_error(GL_EINVAL, "gpt: vocab_size, block_size, n_layer or n_embd is implausibly large");
    if (c->n_embd % c->n_head)
        return gl_error(GL_EINVAL, "gpt: n_embd %lld is not a multiple of n_head %lld", (long long)c->n_embd,
                        (long long)c->n_head);
    if (c->n_kv_head == 0) c->n_kv_head = c->n_head;
    if (c->n_kv_head < 0 || c->n_head % c->n_kv_head)
        return gl_error(GL_EINVAL, "gpt: n_head %lld is not a multiple of n_kv_head %lld", (long long)c->n_head,
                        (long long)c->n_kv_head);
    if (c->arch != GL_GPT_LLAMA && c->n_kv_head != c->n_head)
        return gl_error(GL_EINVAL, "gpt: n_kv_head differs from n_head (grouped-query attention is LLaMA's)");
    if (c->n_hidden == 0) c->n_hidden = gl_gpt_default_hidden(c);
    if (c->n_hidden < 0 || c->n_hidden > (int64_t)1 << 22)
        return gl_error(GL_EINVAL, "gpt: n_hidden must be positive (got %lld)", (long long)c->n_hidden);
    if (!(c->dropout >= 0 && c->dropout < 1))
        return gl_error(GL_EINVAL, "gpt: dropout must be in [0, 1) (got %g)", (double)c->dropout);
    if (c->norm_eps == 0) c->norm_eps = 1e-5f;
    if (!(c->norm_eps > 0)) return gl_error(GL_EINVAL, "gpt: norm_eps must be positive");
    if (c->rope_theta == 0) c->rope_theta = 10000.0f;
    if (!(c->rope_theta > 0)) return gl_error(GL_EINVAL, "gpt: rope_theta must be positive");
    if (c->window == 0) c->window = 256;
    if (c->window < 0) return gl_error(GL_EINVAL, "gpt: window must be positive (got %lld)", (long long)c->window);
    if (c->arch == GL_GPT_LLAMA) {
        if ((c->n_embd / c->n_head) % 2)
            return gl_error(GL_EINVAL, "gpt: head size %lld must be even for rotary embeddings",
                            (long long)(c->n_embd / c->n_head));
        if (c->bias) return gl_error(GL_EINVAL, "gpt: bias is not supported for llama");
    }
    if (c->local_layers) {
        if (c->arch != GL_GPT_NEO) return gl_error(GL_EINVAL, "gpt: local_layers are GPT-Neo's (arch neo)");
        if (c->n_layer < 64 && (c->local_layers >> c->n_layer))
            return gl_error(GL_EINVAL, "gpt: local_layers names a layer beyond n_layer %lld", (long long)c->n_layer);
    }
    return GL_OK;
}

/* --- the module tree ------------------------------------------------------------ */

/* Borrowed pointers to the layers of one block (owned by the module tree). */
typedef struct {
    gl_module *ln_1, *ln_2;
    gl_module *qkv;         /* GPT2 / NEO fused projection */
    gl_module *q, *k, *v;   /* LLaMA */
    gl_module *o;           /* attention output projection */
    gl_module *gate, *up, *down; /* up is GPT-2's c_fc, down its mlp.c_proj */
} gpt_layer;

typedef struct {
    gl_gpt_config cfg;
    gl_module *tok, *pos, *ln_f, *head;
    gpt_layer *layers;
} gpt_impl;

static void gpt_destroy(void *p)
{
    gpt_impl *g = p;
    if (!g) return;
    free(g->layers);
    free(g);
}

static void gpt_repr(const gl_module *m, char *buf, size_t n)
{
    const gl_gpt_config *c = &((const gpt_impl *)m->impl)->cfg;
    int k = snprintf(buf, n, "arch=%s, vocab_size=%lld, block_size=%lld, n_layer=%lld, n_head=%lld", arch_name(c->arch),
                     (long long)c->vocab_size, (long long)c->block_size, (long long)c->n_layer, (long long)c->n_head);
    if (k < 0 || (size_t)k >= n) return;
    if (c->n_kv_head != c->n_head) k += snprintf(buf + k, n - k, ", n_kv_head=%lld", (long long)c->n_kv_head);
    if (k < 0 || (size_t)k >= n) return;
    snprintf(buf + k, n - k, ", n_embd=%lld, n_hidden=%lld, dropout=%g, tie_head=%s", (long long)c->n_embd,
             (long long)c->n_hidden, (double)c->dropout, c->tie_head ? "true" : "false");
}

static gl_tensor *gpt_forward1(gl_module *m, gl_tensor *ids) { return gl_gpt_forward(m, ids, NULL, NULL); }

static const gl_module_class gpt_class = {"GPT", gpt_forward1, gpt_repr, gpt_destroy};
/* Containers that only name their children; gl_gpt_forward runs them. */
static const gl_module_class container_classes[] = {
    {"GPTTransformer", NULL, NULL, NULL}, {"GPTBlock", NULL, NULL, NULL}, {"GPTAttention", NULL, NULL, NULL},
    {"GPTMLP", NULL, NULL, NULL},
};
enum { C_TRANSFORMER, C_BLOCK, C_ATTN, C_MLP };

static gl_module *container(int kind) { return gl_module_new(&container_classes[kind], NULL); }

/* Adds child (a fresh module, consumed) under name; returns it borrowed, NULL on failure. */
static gl_module *attach(gl_module *parent, const char *name, gl_module *child)
{
    if (!child) return NULL;
    gl_status st = gl_module_add_child(parent, name, child);
    gl_module_release(child);
    return st == GL_OK ? child : NULL;
}

static gl_status init_linear(gl_module *lin, double std)
{
    gl_status st = gl_init_normal(gl_module_param(lin, "weight"), 0.0, std);
    gl_tensor *b = gl_module_param(lin, "bias");
    if (st == GL_OK && b) st = gl_init_zeros(b);
    return st;
}

static gl_module *linear(gl_module *parent, const char *name, int64_t in, int64_t out, bool bias, double std)
{
    gl_module *l = attach(parent, name, gl_nn_linear_new(in, out, bias));
    if (l && init_linear(l, std) != GL_OK) return NULL;
    return l;
}

static gl_module *norm(gl_module *parent, const char *name, const gl_gpt_config *c)
{
    if (c->arch == GL_GPT_LLAMA) return attach(parent, name, gl_nn_rms_norm_new(c->n_embd, c->norm_eps));
    return attach(parent, name, gl_nn_layer_norm_new(c->n_embd, c->norm_eps, true, c->bias));
}

static gl_module *embedding(gl_module *parent, const char *name, int64_t num, int64_t dim)
{
    gl_module *e = attach(parent, name, gl_nn_embedding_new(num, dim));
    if (e && gl_init_normal(gl_module_param(e, "weight"), 0.0, 0.02) != GL_OK) return NULL;
    return e;
}

static bool build_gpt2_layer(gl_module *h, int64_t i, const gl_gpt_config *c, gpt_layer *ly, double pstd)
{
    char name[32];
    snprintf(name, sizeof name, "%lld", (long long)i);
    gl_module *blk = attach(h, name, container(C_BLOCK));
    if (!blk) return false;
    int64_t C = c->n_embd;
    bool neo = c->arch == GL_GPT_NEO;
    gl_module *attn, *mlp;
    if (!(ly->ln_1 = norm(blk, "ln_1", c)) || !(attn = attach(blk, "attn", container(C_ATTN))) ||
        !(ly->qkv = linear(attn, "c_attn", C, 3 * C, c->bias && !neo, 0.02)) ||
        !(ly->o = linear(attn, "c_proj", C, C, c->bias || neo, pstd)) || !(ly->ln_2 = norm(blk, "ln_2", c)) ||
        !(mlp = attach(blk, "mlp", container(C_MLP))) ||
        !(ly->up = linear(mlp, "c_fc", C, c->n_hidden, c->bias, 0.02)) ||
        !(ly->down = linear(mlp, "c_proj", c->n_hidden, C, c->bias, pstd)))
        return false;
    return true;
}

static bool build_llama_layer(gl_module *h, int64_t i, const gl_gpt_config *c, gpt_layer *ly, double pstd)
{
    char name[32];
    snprintf(name, sizeof name, "%lld", (long long)i);
    gl_module *blk = attach(h, name, container(C_BLOCK));
    if (!blk) return false;
    int64_t C = c->n_embd, HS = C / c->n_head, KV = c->n_kv_head * HS;
    gl_module *attn, *mlp;
    if (!(ly->ln_1 = norm(blk, "input_layernorm", c)) || !(attn = attach(blk, "self_attn", container(C_ATTN))) ||
        !(ly->q = linear(attn, "q_proj", C, C, false, 0.02)) || !(ly->k = linear(attn, "k_proj", C, KV, false, 0.02)) ||
        !(ly->v = linear(attn, "v_proj", C, KV, false, 0.02)) || !(ly->o = linear(attn, "o_proj", C, C, false, pstd)) ||
        !(ly->ln_2 = norm(blk, "post_attention_layernorm", c)) || !(mlp = attach(blk, "mlp", container(C_MLP))) ||
        !(ly->gate = linear(mlp, "gate_proj", C, c->n_hidden, false, 0.02)) ||
        !(ly->up = linear(mlp, "up_proj", C, c->n_hidden, false, 0.02)) ||
        !(ly->down = linear(mlp, "down_proj", c->n_hidden, C, false, pstd)))
        return false;
    return true;
}

gl_module *gl_gpt_new(const gl_gpt_config *cfg)
{
    gl_gpt_config c = *cfg;
    if (gl_gpt_config_finish(&c) != GL_OK) return NULL;
    gpt_impl *g = calloc(1, sizeof *g);
    gpt_layer *layers = calloc((size_t)c.n_layer, sizeof *layers);
    if (!g || !layers) {
        free(g);
        free(layers);
        return gl_error_null(GL_ENOMEM, "gpt: out of memory");
    }
    g->cfg = c;
    g->layers = layers;
    gl_module *m = gl_module_new(&gpt_class, g);
    if (!m) return NULL;
    double pstd = 0.02 / sqrt(2.0 * (double)c.n_layer);
    bool llama = c.arch == GL_GPT_LLAMA;
    gl_module *tr = attach(m, llama ? "model" : "transformer", container(C_TRANSFORMER));
    if (!tr || !(g->tok = embedding(tr, llama ? "embed_tokens" : "wte", c.vocab_size, c.n_embd))) goto fail;
    if (!llama && !(g->pos = embedding(tr, "wpe", c.block_size, c.n_embd))) goto fail;
    gl_module *h = attach(tr, llama ? "layers" : "h", gl_nn_module_list_new());
    if (!h) goto fail;
    for (int64_t i = 0; i < c.n_layer; i++)
        if (!(llama ? build_llama_layer : build_gpt2_layer)(h, i, &c, &layers[i], pstd)) goto fail;
    if (!(g->ln_f = norm(tr, llama ? "norm" : "ln_f", &c))) goto fail;
    if (!(g->head = linear(m, "lm_head", c.n_embd, c.vocab_size, false, 0.02))) goto fail;
    if (c.tie_head && gl_module_set_tensor(g->head, "weight", gl_module_param(g->tok, "weight")) != GL_OK) goto fail;
    return m;
fail:
    gl_module_release(m);
    return NULL;
}

const gl_gpt_config *gl_gpt_config_of(const gl_module *m)
{
    if (!m || m->cls != &gpt_class) return NULL;
    return &((const gpt_impl *)m->impl)->cfg;
}

/* --- forward ------------------------------------------------------------------- */

/* Releases a then returns b, so chains read x = step(x, f(x)). */
static gl_tensor *swap(gl_tensor *old, gl_tensor *t)
{
    gl_tensor_release(old);
    return t;
}

static gl_tensor *W(gl_module *lin) { return gl_module_param(lin, "weight"); }
static gl_tensor *Bias(gl_module *lin) { return gl_module_param(lin, "bias"); }

/* x [B,T,C] -> ln(x); both norm kinds run through their module. */
static gl_tensor *run(gl_module *mod, gl_tensor *x) { return gl_module_forward(mod, x); }

/* [B,T,H*HS] -> [B,H,T,HS], the layout of gl_rope and gl_attention (one copy). */
static gl_tensor *heads(gl_tensor *x, int64_t H, int64_t HS)
{
    int64_t s[4] = {x->shape[0], x->shape[1], H, HS};
    gl_tensor *r = gl_reshape(x, 4, s);
    return r ? swap(r, gl_transpose(r, 1, 2)) : NULL;
}

/* Self-attention of one layer: h [B,T,C] (normed) -> [B,T,C] before the output projection. */
static gl_tensor *attention(const gl_gpt_config *c, const gpt_layer *ly, int64_t layer, gl_tensor *h, bool training)
{
    int64_t B = h->shape[0], T = h->shape[1], NH = c->n_head, HS = c->n_embd / NH, KVH = c->n_kv_head;
    gl_tensor *q = NULL, *k = NULL, *v = NULL, *y = NULL;
    if (c->arch == GL_GPT_LLAMA) {
        q = gl_linear(h, W(ly->q), NULL);
        k = q ? gl_linear(h, W(ly->k), NULL) : NULL;
        v = k ? gl_linear(h, W(ly->v), NULL) : NULL;
        if (!v || !(q = swap(q, heads(q, NH, HS))) || !(k = swap(k, heads(k, KVH, HS))) ||
            !(v = swap(v, heads(v, KVH, HS))))
            goto done;
        if (!(q = swap(q, gl_rope(q, 0, c->rope_theta))) || !(k = swap(k, gl_rope(k, 0, c->rope_theta)))) goto done;
    } else {
        /* [B,T,3C] -> [3,B,NH,T,HS] in one copy; q, k, v are views of it. */
        gl_tensor *qkv = gl_linear(h, W(ly->qkv), Bias(ly->qkv));
        if (!qkv) goto done;
        int64_t s5[5] = {B, T, 3, NH, HS};
        const int perm[5] = {2, 0, 3, 1, 4};
        gl_tensor *r = gl_reshape(qkv, 5, s5);
        gl_tensor_release(qkv);
        gl_tensor *p = r ? gl_permute(r, perm) : NULL;
        gl_tensor_release(r);
        if (!p) goto done;
        q = gl_select(p, 0, 0);
        k = q ? gl_select(p, 0, 1) : NULL;
        v = k ? gl_select(p, 0, 2) : NULL;
        gl_tensor_release(p);
        if (!v) goto done;
    }
    gl_attention_opts o = {
        .causal = true,
        .scale = c->arch == GL_GPT_NEO ? 1.0f : 1.0f / sqrtf((float)HS),
        .window = (c->arch == GL_GPT_NEO && layer < 64 && (c->local_layers >> layer & 1)) ? c->window : 0,
        .dropout = c->dropout,
        .training = training,
    };
    y = gl_attention(q, k, v, &o); /* [B,NH,T,HS] */
    if (y) y = swap(y, gl_transpose(y, 1, 2));
    if (y) {
        int64_t s3[3] = {B, T, c->n_embd};
        y = swap(y, gl_reshape(y, 3, s3));
    }
done:
    gl_tensor_release(q);
    gl_tensor_release(k);
    gl_tensor_release(v);
    return y;
}

static gl_tensor *mlp(const gl_gpt_config *c, const gpt_layer *ly, gl_tensor *h)
{
    if (c->arch == GL_GPT_LLAMA) {
        gl_tensor *g = gl_linear(h, W(ly->gate), NULL);
        if (!g) return NULL;
        g = swap(g, gl_silu(g));
        gl_tensor *u = g ? gl_linear(h, W(ly->up), NULL) : NULL;
        gl_tensor *p = u ? gl_mul(g, u) : NULL;
        gl_tensor_release(g);
        gl_tensor_release(u);
        return p ? swap(p, gl_linear(p, W(ly->down), NULL)) : NULL;
    }
    gl_tensor *a = gl_linear(h, W(ly->up), Bias(ly->up));
    if (a) a = swap(a, c->gelu_tanh ? gl_gelu_tanh(a) : gl_gelu(a));
    return a ? swap(a, gl_linear(a, W(ly->down), Bias(ly->down))) : NULL;
}

/* x + dropout(f) (f consumed). */
static gl_tensor *residual(gl_tensor *x, gl_tensor *f, const gl_gpt_config *c, bool training)
{
    if (!f) return NULL;
    if (c->dropout > 0 && training) f = swap(f, gl_dropout(f, c->dropout, true));
    return f ? swap(f, gl_add(x, f)) : NULL;
}

static gl_tensor *check_ids(const gl_gpt_config *c, gl_tensor *ids, const char *what)
{
    char s[128];
    if (ids->dtype != GL_I64 && ids->dtype != GL_I32)
        return gl_error_null(GL_EINVAL, "gpt: %s must be i64 or i32 (got %s)", what, gl_dtype_name(ids->dtype));
    if (ids->ndim != 2 && ids->ndim != 1)
        return gl_error_null(GL_EINVAL, "gpt: %s must be [B,T] or [T] (got %s)", what,
                             gl_tensor_shape_str(ids, s, sizeof s));
    int64_t T = ids->shape[ids->ndim - 1];
    if (T == 0) return gl_error_null(GL_EINVAL, "gpt: %s is empty", what);
    if (T > c->block_size)
        return gl_error_null(GL_EINVAL, "gpt: sequence length %lld exceeds block_size %lld", (long long)T,
                             (long long)c->block_size);
    return ids;
}

gl_tensor *gl_gpt_forward(gl_module *m, gl_tensor *ids, gl_tensor *targets, gl_tensor **loss)
{
    if (loss) *loss = NULL;
    if (!gl_gpt_config_of(m)) return gl_error_null(GL_EINVAL, "gpt: forward: not a GPT module");
    const gpt_impl *g = m->impl;
    const gl_gpt_config *c = &g->cfg;
    if (!check_ids(c, ids, "ids")) return NULL;
    char s1[128], s2[128];
    if (targets && !gl_shape_equal(targets->ndim, targets->shape, ids->ndim, ids->shape))
        return gl_error_null(GL_EINVAL, "gpt: targets %s do not match ids %s", gl_tensor_shape_str(targets, s1, sizeof s1),
                             gl_tensor_shape_str(ids, s2, sizeof s2));
    if (gl_interrupt_poll("gpt")) return NULL;
    bool training = m->training;
    int64_t T = ids->shape[ids->ndim - 1], B = ids->ndim == 2 ? ids->shape[0] : 1;
    gl_tensor *x = NULL, *ids2 = NULL, *logits = NULL;
    int64_t s2d[2] = {B, T};
    if (!(ids2 = gl_reshape(ids, 2, s2d))) goto done;
    if (!(x = run(g->tok, ids2))) goto done;
    if (c->arch != GL_GPT_LLAMA) {
        gl_tensor *pos = gl_narrow(gl_module_param(g->pos, "weight"), 0, 0, T); /* [T,C] view */
        if (!pos) goto done;
        x = swap(x, gl_add(x, pos));
        gl_tensor_release(pos);
        if (!x) goto done;
    }
    if (c->dropout > 0 && training && !(x = swap(x, gl_dropout(x, c->dropout, true)))) goto done;
    for (int64_t l = 0; l < c->n_layer; l++) {
        const gpt_layer *ly = &g->layers[l];
        gl_tensor *h = run(ly->ln_1, x);
        gl_tensor *a = h ? attention(c, ly, l, h, training) : NULL;
        gl_tensor_release(h);
        if (!a) goto fail;
        a = swap(a, gl_linear(a, W(ly->o), Bias(ly->o)));
        if (!(x = swap(x, residual(x, a, c, training)))) goto done;
        h = run(ly->ln_2, x);
        gl_tensor *f = h ? mlp(c, ly, h) : NULL;
        gl_tensor_release(h);
        if (!(x = swap(x, residual(x, f, c, training)))) goto done;
        if (gl_interrupt_poll("gpt")) goto fail;
    }
    if (!(x = swap(x, run(g->ln_f, x)))) goto done;
    logits = gl_linear(x, W(g->head), NULL);
    if (logits && ids->ndim == 1) {
        int64_t s[2] = {T, c->vocab_size};
        logits = swap(logits, gl_reshape(logits, 2, s));
    }
    if (logits && targets && loss) {
        *loss = gl_cross_entropy(logits, targets, -1, 0.0f, GL_REDUCE_MEAN);
        if (!*loss) logits = swap(logits, NULL);
    }
    goto done;
fail:
    gl_tensor_release(x);
    x = NULL;
done:
    gl_tensor_release(x);
    gl_tensor_release(ids2);
    return logits;
}
