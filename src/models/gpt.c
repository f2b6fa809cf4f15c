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
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/tape.h"
#include "core/interrupt.h"
#include "core/rng.h"
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

/* --- the fused linear of a block ----------------------------------------------
 *
 * The graph keeps every tensor it is built from until backward has run, so
 * a block's memory is the sum of its intermediate tensors. Some need not
 * exist: the input of a linear layer that is a cheap function of a tensor
 * kept anyway, h = pre(a) with pre a norm of the residual stream, the GELU
 * of the MLP's hidden layer (the 4C-wide GELU output alone is a fifth of a
 * block) or the attention of the fused qkv projection (a tenth of the
 * layer's FLOPs), and the projection that a residual connection adds
 * (dropped out) to the stream. fused_linear computes
 *     y = [res +] dropout(linear(pre(a), W, b))
 * keeping a and res only. Backward recomputes pre(a) (a block of rows at a
 * time, but for attention), records pre on a private tape whose gradient
 * lands in a's (a norm's own parameters are leaves and accumulate theirs as
 * usual), and regenerates the dropout masks from their seeds. The linear's
 * GEMMs are not repeated. The numbers are those of the composed ops, which
 * run when nothing is recorded or the tensor is too small to pay (and draw
 * the same dropout seeds in the same order). */

typedef enum { PRE_NONE, PRE_NORM, PRE_GELU, PRE_GELU_TANH, PRE_ATTN } pre_kind;

typedef struct {
    pre_kind pre;
    gl_module *norm; /* PRE_NORM's module (retained by a node) */
    gl_attention_opts attn; /* PRE_ATTN: self-attention of a fused qkv, n_head heads */
    int64_t n_head;
    bool attn_seeded; /* attn's dropout seed is attn_seed (set for backward) */
    uint64_t attn_seed;
    float p;         /* dropout of the linear's output, applied only with res */
    bool training;
    /* set by fused_linear for backward */
    bool drop;
    uint64_t seed;
    uint32_t cut;
    float scale;
    /* PRE_ATTN: the attention output (and the leaf it was computed from)
     * that the backward of a reader of the dropped output computed first
     * (see stream_rows), left here for this node's backward */
    gl_tensor *h_leaf, *h;
} fused_op;

enum { RECOMPUTE_BLOCK = 1 << 19 }; /* floats of pre(a) per block of rows in backward */

/* Whether recomputing n floats rather than keeping them pays: from 4 MiB
 * (GENLAB_RECOMPUTE_MIN bytes, for tests and tuning). Below it the memory
 * saved is small and the extra passes cost time (measured: nanoGPT's CPU
 * configuration, whose GELU output is 1.5 MB, takes ~15% longer a step). */
static int64_t recompute_min_bytes;

static void read_recompute_min(void)
{
    const char *e = getenv("GENLAB_RECOMPUTE_MIN");
    recompute_min_bytes = e && *e ? strtoll(e, NULL, 10) : 4 << 20;
    if (recompute_min_bytes < 0) recompute_min_bytes = 0;
}

static bool recompute_pays(int64_t n)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT; /* data-parallel replicas may ask first at once */
    pthread_once(&once, read_recompute_min);
    return n * (int64_t)sizeof(float) >= recompute_min_bytes;
}

static gl_tensor *pre_apply(const fused_op *f, gl_tensor *a)
{
    switch (f->pre) {
    case PRE_NORM: return gl_module_forward(f->norm, a);
    case PRE_GELU: return gl_gelu(a);
    case PRE_GELU_TANH: return gl_gelu_tanh(a);
    case PRE_ATTN: {
        gl_attention_opts o = f->attn;
        o.seed = f->attn_seeded ? &f->attn_seed : NULL;
        return gl_attention_qkv(a, f->n_head, &o);
    }
    case PRE_NONE: break;
    }
    gl_tensor_retain(a);
    return a;
}

static void fused_free(void *extra)
{
    fused_op *f = extra;
    if (f) {
        if (f->norm) gl_module_release(f->norm);
        gl_tensor_release(f->h);
        gl_tensor_release(f->h_leaf);
    }
    free(f);
}

/* x's rows [r0, r0 + R) as a [R, K] tensor sharing its storage. */
static gl_tensor *rows_of(gl_tensor *x, int64_t r0, int64_t R, int64_t K)
{
    int64_t shape[2] = {R, K};
    return gl_tensor_from_storage(x->storage, x->offset + (size_t)(r0 * K) * sizeof(float), GL_F32, 2, shape);
}

/* One block of R rows: dz [R,M] (the gradient of the linear's output), a's
 * rows (pre(a_rows) [R,K]); adds into dw [M,K], db [M], and a's gradient:
 * da (a_rows' elements), or through pre into da_rows, the matching part of
 * a's gradient tensor. With pre and da but no da_rows, a's gradient is a's
 * own storage (see fused_linear_backward): pre's backward writes a fresh
 * gradient, copied over a's rows once nothing reads them any more. */
static gl_status fused_block(fused_op *f, gl_tensor *a_rows, int64_t R, const float *dz, const float *W,
                             int64_t M, int64_t K, float *dw, float *db, float *da, gl_tensor *da_rows)
{
    int64_t shape[2] = {R, K};
    gl_status st = GL_OK;
    gl_tensor *leaf = NULL, *h = NULL, *dh = NULL;
    if (f->pre == PRE_NONE) {
        if (dw) gl_sgemm(true, false, M, K, R, 1.0f, dz, M, gl_tensor_f32(a_rows), K, 1.0f, dw, K);
        if (da) gl_sgemm(false, false, R, K, M, 1.0f, dz, M, W, K, 1.0f, da, K);
    } else {
        if (f->h) { /* computed already, with its graph (see stream_rows) */
            leaf = f->h_leaf;
            h = f->h;
            f->h_leaf = f->h = NULL;
        } else if (!(leaf = gl_detach(a_rows)) || (da && gl_set_requires_grad(leaf, true) != GL_OK) ||
                   !(h = pre_apply(f, leaf))) {
            goto fail;
        }
        if (da && da_rows) { /* pre's backward adds straight into a's gradient */
            gl_tensor_retain(da_rows);
            leaf->grad = da_rows;
        }
        if (dw) gl_sgemm(true, false, M, K, R, 1.0f, dz, M, gl_tensor_f32(h), K, 1.0f, dw, K);
        if (h->requires_grad) { /* dh = dz W, through pre into a and the norm's parameters */
            /* in h's place when pre's backward does not read h (nothing else holds its storage) */
            dh = h->storage->refs == 1 ? gl_tensor_from_storage(h->storage, h->offset, GL_F32, 2, shape)
                                       : gl_tensor_empty(GL_F32, 2, shape);
            if (!dh) goto fail;
            gl_sgemm(false, false, R, K, M, 1.0f, dz, M, W, K, 0.0f, gl_tensor_f32(dh), K);
            if ((st = gl_backward_take(h, dh)) != GL_OK) goto done;
        }
        if (da && !da_rows) {
            if (!leaf->grad) goto fail;
            memcpy(da, gl_tensor_f32(leaf->grad), (size_t)(R * K) * sizeof *da);
        }
    }
    if (db)
        for (int64_t r = 0; r < R; r++)
            for (int64_t m = 0; m < M; m++) db[m] += dz[r * M + m];
    goto done;
fail:
    st = gl_error_code();
done:
    gl_tensor_release(dh);
    gl_tensor_release(h);
    gl_tensor_release(leaf);
    return st;
}

/* linear(pre(a), W, b), for a GELU pre a block of rows at a time, so that
 * pre(a) never exists whole (the MLP's GELU output alone is 96 MiB in the
 * baby GPT, and it came on top of every activation the graph keeps). Rows
 * are independent in the GELU and in the GEMM, so the numbers are those of
 * the whole (checked bit for bit on the baby GPT's gradients; a norm pre in
 * blocks was not: its gradients moved in the last digits, so it runs whole).
 * Blocks are whole multiples of the 256 rows gl_sgemm's own blocks have at
 * least, which keeps the GEMMs as efficient. */
static gl_tensor *pre_linear(const fused_op *f, gl_tensor *a, gl_tensor *w, gl_tensor *b)
{
    int64_t M = w->shape[0], K = w->shape[1], N = K > 0 ? a->numel / K : 0;
    if ((f->pre != PRE_GELU && f->pre != PRE_GELU_TANH) || a->dtype != GL_F32 || a->shape[a->ndim - 1] != K || N == 0) {
        gl_tensor *h = pre_apply(f, a);
        return h ? swap(h, gl_linear(h, w, b)) : NULL;
    }
    int64_t shape[GL_MAX_DIMS], rows = RECOMPUTE_BLOCK / (K > M ? K : M) / 256 * 256;
    memcpy(shape, a->shape, sizeof shape);
    shape[a->ndim - 1] = M;
    if (rows < 256) rows = 256;
    gl_tensor *y = gl_tensor_empty(GL_F32, a->ndim, shape);
    for (int64_t r0 = 0; y && r0 < N; r0 += rows) {
        int64_t R = N - r0 < rows ? N - r0 : rows;
        gl_tensor *ar = rows_of(a, r0, R, K), *h = ar ? pre_apply(f, ar) : NULL, *yr = h ? gl_linear(h, w, b) : NULL;
        if (yr)
            memcpy(gl_tensor_f32(y) + r0 * M, gl_tensor_f32(yr), (size_t)(R * M) * sizeof(float));
        else
            y = swap(y, NULL);
        gl_tensor_release(yr);
        gl_tensor_release(h);
        gl_tensor_release(ar);
    }
    return y;
}

/* --- the residual stream after attention, again ------------------------------
 *
 * drop_stream releases the data of x = res + dropout(linear(h)), the output
 * of a block's attention node (h the attention of its qkv), which the MLP's
 * norm-linear reads again in backward. That backward reads x in blocks of
 * rows and stream_rows computes them again from the node's inputs: h whole
 * (with its graph: it stays with the node, whose backward comes next and
 * would compute it again), then the projection a few rows at a time into a
 * window, in the row blocks the forward's GEMM ran in (gl_sgemm's blocks):
 * the same calls give the same numbers, bit for bit. What this costs is the
 * projection's GEMM once more; what it saves, a [B,T,C] per layer. */

static gl_status fused_linear_backward(gl_node *nd);

typedef struct {
    gl_node *node;  /* x's (the attention node); its fused_op holds h */
    gl_tensor *win; /* [cap, M]: x's rows [lo, hi) */
    int64_t lo, hi, chunk, N, M;
} stream_rows;

/* For reading x (its data released) in blocks of at most `block` rows, in order. */
static gl_status stream_open(stream_rows *s, gl_tensor *x, int64_t block)
{
    gl_node *p = x->grad_fn;
    if (!p || p->backward != fused_linear_backward || ((const fused_op *)p->extra)->pre != PRE_ATTN || !p->inputs[3])
        return gl_error(GL_ESTATE, "gpt: backward: an input's data was released"); /* only drop_stream's are */
    fused_op *pf = p->extra;
    gl_tensor *qkv = p->inputs[0], *w = p->inputs[1];
    *s = (stream_rows){.node = p, .M = w->shape[0], .N = x->numel / w->shape[0]};
    s->chunk = gl_sgemm_block_rows(s->N, s->M, w->shape[1]);
    if (!pf->h) {
        bool was = gl_grad_set_enabled(true);
        if ((pf->h_leaf = gl_detach(qkv)) && gl_set_requires_grad(pf->h_leaf, qkv->requires_grad) == GL_OK)
            pf->h = pre_apply(pf, pf->h_leaf);
        gl_grad_set_enabled(was);
        if (!pf->h) {
            gl_tensor_release(pf->h_leaf);
            pf->h_leaf = NULL;
            return gl_error_code();
        }
    }
    int64_t shape[2] = {block + s->chunk, s->M};
    return (s->win = gl_tensor_empty(GL_F32, 2, shape)) ? GL_OK : gl_error_code();
}

/* x's rows [c0, c0 + R), one of the forward GEMM's blocks, into dst. */
static gl_status stream_chunk(const stream_rows *s, float *dst, int64_t c0, int64_t R)
{
    const fused_op *pf = s->node->extra;
    gl_tensor *w = s->node->inputs[1], *b = s->node->inputs[2], *res = s->node->inputs[3];
    bool was = gl_grad_set_enabled(false);
    gl_tensor *hr = rows_of(pf->h, c0, R, w->shape[1]), *y = hr ? gl_linear(hr, w, b) : NULL;
    gl_grad_set_enabled(was);
    gl_tensor_release(hr);
    if (!y) return gl_error_code();
    const float *yd = gl_tensor_f32(y), *rd = gl_tensor_f32(res) + c0 * s->M;
    int64_t n = R * s->M;
    if (pf->drop) {
        gl_dropout_apply(dst, rd, yd, c0 * s->M, n, pf->seed, pf->cut, pf->scale);
    } else {
#pragma omp parallel for simd if (n > 32768) schedule(static)
        for (int64_t i = 0; i < n; i++) dst[i] = rd[i] + yd[i];
    }
    gl_tensor_release(y);
    return GL_OK;
}

/* x's rows [r0, r0 + R) as a tensor (sharing the window): R at most the
 * block of stream_open, r0 where the previous call's rows ended. */
static gl_tensor *stream_get(stream_rows *s, int64_t r0, int64_t R)
{
    float *win = gl_tensor_f32(s->win);
    if (r0 + R > s->hi && r0 > s->lo) { /* rows before r0 are read no more */
        memmove(win, win + (r0 - s->lo) * s->M, (size_t)((s->hi - r0) * s->M) * sizeof *win);
        s->lo = r0;
    }
    while (r0 + R > s->hi) {
        int64_t n = s->N - s->hi < s->chunk ? s->N - s->hi : s->chunk;
        if (stream_chunk(s, win + (s->hi - s->lo) * s->M, s->hi, n) != GL_OK) return NULL;
        s->hi += n;
    }
    return rows_of(s->win, r0 - s->lo, R, s->M);
}

/* Inputs a [..., K], W [M, K], b [M] or NULL, res [..., M] or NULL; extra: the fused_op. */
static gl_status fused_linear_backward(gl_node *nd)
{
    fused_op *f = nd->extra;
    gl_tensor *a = nd->inputs[0], *w = nd->inputs[1];
    float *da, *dw, *db, *dres;
    /* The GELU's input (the MLP's widest tensor) is needed by no one after
     * this node unless the graph is kept: its gradient then overwrites it
     * rather than take as much memory again. */
    bool reused = false;
    gl_status st = f->pre == PRE_GELU || f->pre == PRE_GELU_TANH ? gl_node_grad_reuse(nd, 0, &da, &reused) : GL_OK;
    if (st != GL_OK || (!reused && (st = gl_node_grad(nd, 0, &da)) != GL_OK) ||
        (st = gl_node_grad(nd, 1, &dw)) != GL_OK || (st = gl_node_grad(nd, 2, &db)) != GL_OK)
        return st;
    int64_t M = w->shape[0], K = w->shape[1], N = nd->out->numel / M, KA = a->numel / N; /* KA: a's row */
    gl_tensor *dat = !da || reused ? NULL : gl_node_grad_tensor(nd, 0); /* the tensor behind da */
    const float *gout = gl_tensor_f32(nd->gout);
    /* blocks of rows: all at once when nothing is recomputed or masked */
    int64_t wide = K > M ? K : M;
    int64_t rows = f->pre == PRE_ATTN || (f->pre == PRE_NONE && !f->drop) ? N
                   : RECOMPUTE_BLOCK / wide > 0                           ? RECOMPUTE_BLOCK / wide
                                                                          : 1;
    float *masked = NULL; /* a block's gout through the dropout mask: the linear's output gradient */
    stream_rows stream = {0}; /* a's rows when drop_stream released its data */
    if (!a->storage && (st = stream_open(&stream, a, rows < N ? rows : N)) != GL_OK) {
        gl_tensor_release(stream.win);
        return st;
    }
    if (f->drop && !(masked = malloc((size_t)((rows < N ? rows : N) * M) * sizeof *masked + 1))) {
        gl_tensor_release(stream.win);
        return gl_error(GL_ENOMEM, "gpt: backward: out of memory");
    }
    bool was = gl_grad_set_enabled(true);
    for (int64_t r0 = 0; r0 < N && st == GL_OK; r0 += rows) {
        int64_t R = N - r0 < rows ? N - r0 : rows;
        const float *dz = gout + r0 * M;
        if (masked) {
            gl_dropout_apply(masked, NULL, dz, r0 * M, R * M, f->seed, f->cut, f->scale);
            dz = masked;
        }
        gl_tensor *ar = f->pre == PRE_ATTN ? gl_detach(a) /* attention mixes rows */
                        : stream.win       ? stream_get(&stream, r0, R)
                                           : rows_of(a, r0, R, KA);
        gl_tensor *dr = !dat || !ar ? NULL : f->pre == PRE_ATTN ? gl_detach(dat) : rows_of(dat, r0, R, KA);
        st = ar && (!dat || dr) ? fused_block(f, ar, R, dz, gl_tensor_f32(w), M, K, dw, db, da ? da + r0 * KA : NULL, dr)
                               : gl_error_code();
        gl_tensor_release(dr);
        gl_tensor_release(ar);
    }
    gl_grad_set_enabled(was);
    free(masked);
    gl_tensor_release(stream.win);
    if (st != GL_OK || !nd->inputs[3]) return st;
    bool taken; /* res's gradient is gout itself: shared when it has none yet (gout is not used again) */
    if ((st = gl_node_grad_take(nd, 3, &taken)) != GL_OK || taken) return st;
    if ((st = gl_node_grad(nd, 3, &dres)) != GL_OK || !dres) return st;
    int64_t n = N * M;
#pragma omp parallel for simd if (n > 32768) schedule(static)
    for (int64_t i = 0; i < n; i++) dres[i] += gout[i];
    return GL_OK;
}

/* [res +] dropout(linear(pre(a), W, b)) (see above); dropout only with res. */
static gl_tensor *fused_linear(const fused_op *op, gl_tensor *a, gl_module *lin, gl_tensor *res)
{
    gl_tensor *w = W(lin), *b = Bias(lin);
    gl_tensor *ins[4] = {a, w, b, res};
    int64_t pre_numel = a->numel / a->shape[a->ndim - 1] * w->shape[1];
    if (!gl_autograd_needed(4, ins) || (op->pre != PRE_NONE && !recompute_pays(pre_numel))) { /* the composed ops */
        gl_tensor *h = pre_apply(op, a);
        gl_tensor *z = h ? swap(h, gl_linear(h, w, b)) : NULL;
        return z && res ? swap(z, gl_dropout_add(res, z, op->p, op->training)) : z;
    }
    fused_op *f = malloc(sizeof *f);
    if (!f) return gl_error_null(GL_ENOMEM, "gpt: out of memory");
    *f = *op;
    if (f->norm) gl_module_retain(f->norm);
    if (f->pre == PRE_ATTN && f->attn.training && f->attn.dropout > 0.0f) { /* the draw gl_attention_qkv makes */
        f->attn_seeded = true;
        f->attn_seed = gl_rng_u64();
    }
    f->drop = res && f->training && f->p > 0.0f;
    if (f->drop) { /* one draw, as gl_dropout_add makes */
        f->seed = gl_rng_u64();
        f->cut = gl_dropout_cut(f->p);
        f->scale = 1.0f / (1.0f - f->p);
    }
    bool was = gl_grad_set_enabled(false);
    gl_tensor *y = pre_linear(f, a, w, b);
    gl_grad_set_enabled(was);
    if (y && res) {
        char s1[128], s2[128];
        if (!gl_shape_equal(res->ndim, res->shape, y->ndim, y->shape)) {
            gl_error(GL_EINVAL, "gpt: residual %s and projection %s differ", gl_tensor_shape_str(res, s1, sizeof s1),
                     gl_tensor_shape_str(y, s2, sizeof s2));
            y = swap(y, NULL);
        } else if (f->drop) {
            gl_dropout_apply(gl_tensor_f32(y), gl_tensor_f32(res), gl_tensor_f32(y), 0, y->numel, f->seed, f->cut,
                             f->scale);
        } else {
            float *yd = gl_tensor_f32(y);
            const float *rd = gl_tensor_f32(res);
            int64_t n = y->numel;
#pragma omp parallel for simd if (n > 32768) schedule(static)
            for (int64_t i = 0; i < n; i++) yd[i] = rd[i] + yd[i];
        }
    }
    gl_node *nd = NULL;
    if (y && gl_autograd_record(&nd, y, "gpt_fused_linear", fused_linear_backward, 4, ins) != GL_OK)
        y = swap(y, NULL);
    if (!y || !nd) {
        fused_free(f);
        return y;
    }
    nd->extra = f;
    nd->extra_free = fused_free;
    return y;
}

/* linear(norm(x)), keeping x only. */
static gl_tensor *norm_linear(gl_module *norm, gl_tensor *x, gl_module *lin)
{
    fused_op op = {.pre = PRE_NORM, .norm = norm};
    return fused_linear(&op, x, lin, NULL);
}

/* x + dropout(linear(pre(a))), keeping x and a only. */
static gl_tensor *residual_linear(const gl_gpt_config *c, pre_kind pre, gl_tensor *a, gl_module *lin, gl_tensor *x,
                                  bool training)
{
    fused_op op = {.pre = pre, .p = c->dropout, .training = training};
    return fused_linear(&op, a, lin, x);
}

/* x + dropout(attention(x) projected): x [B,T,C] the residual stream.
 * GPT-2 and Neo attend straight from the fused qkv projection, and their
 * output projection computes the attention again in backward rather than
 * keep its output (a [B,T,C] per layer for a tenth of the layer's FLOPs). */
static gl_tensor *attention(const gl_gpt_config *c, const gpt_layer *ly, int64_t layer, gl_tensor *x, bool training)
{
    int64_t B = x->shape[0], T = x->shape[1], NH = c->n_head, HS = c->n_embd / NH, KVH = c->n_kv_head;
    gl_attention_opts o = {
        .causal = true,
        .scale = c->arch == GL_GPT_NEO ? 1.0f : 1.0f / sqrtf((float)HS),
        .window = (c->arch == GL_GPT_NEO && layer < 64 && (c->local_layers >> layer & 1)) ? c->window : 0,
        .dropout = c->dropout,
        .training = training,
    };
    if (c->arch != GL_GPT_LLAMA) {
        gl_tensor *qkv = norm_linear(ly->ln_1, x, ly->qkv); /* [B,T,3C] */
        fused_op op = {.pre = PRE_ATTN, .attn = o, .n_head = NH, .p = c->dropout, .training = training};
        return qkv ? swap(qkv, fused_linear(&op, qkv, ly->o, x)) : NULL;
    }
    gl_tensor *q = NULL, *k = NULL, *v = NULL, *y = NULL, *h = run(ly->ln_1, x);
    if (!h) return NULL;
    q = gl_linear(h, W(ly->q), NULL);
    k = q ? gl_linear(h, W(ly->k), NULL) : NULL;
    v = k ? gl_linear(h, W(ly->v), NULL) : NULL;
    if (!v || !(q = swap(q, heads(q, NH, HS))) || !(k = swap(k, heads(k, KVH, HS))) ||
        !(v = swap(v, heads(v, KVH, HS))))
        goto done;
    if (!(q = swap(q, gl_rope(q, 0, c->rope_theta))) || !(k = swap(k, gl_rope(k, 0, c->rope_theta)))) goto done;
    y = gl_attention(q, k, v, &o); /* [B,NH,T,HS] */
    if (y) y = swap(y, gl_transpose(y, 1, 2));
    if (y) {
        int64_t s3[3] = {B, T, c->n_embd};
        y = swap(y, gl_reshape(y, 3, s3));
    }
    if (y) y = swap(y, residual_linear(c, PRE_NONE, y, ly->o, x, training));
done:
    gl_tensor_release(h);
    gl_tensor_release(q);
    gl_tensor_release(k);
    gl_tensor_release(v);
    return y;
}

/* Whether t is the output of a fused_linear node with input i == x. */
static bool fused_reads(const gl_tensor *t, int i, const gl_tensor *x)
{
    return t->grad_fn && t->grad_fn->backward == fused_linear_backward && t->grad_fn->inputs[i] == x;
}

/* Releases the storage of x, the residual stream between a block's
 * attention and its MLP, once the MLP is recorded: a [B,T,C] per layer
 * that only the MLP's norm-linear reads again in backward, which computes
 * it again from the attention node (stream_rows). Only when x is such an
 * output, its readers are the MLP's two fused nodes (a norm-linear and the
 * residual of the down projection, which needs x's shape only) and no one
 * else holds x (refs: the caller's and the two nodes') or its data. */
static void drop_stream(gl_tensor *x, gl_tensor *a, gl_tensor *y)
{
    if (!x->grad_fn || x->grad_fn->backward != fused_linear_backward || !fused_reads(a, 0, x) ||
        !fused_reads(y, 3, x) || x->refs != 3 || !x->storage || x->storage->refs != 1)
        return;
    const fused_op *xf = x->grad_fn->extra, *af = a->grad_fn->extra;
    if (xf->pre != PRE_ATTN || !x->grad_fn->inputs[3] || af->pre != PRE_NORM) return;
    gl_storage_release(x->storage);
    x->storage = NULL;
}

/* x + dropout(MLP(x)): x [B,T,C] the residual stream. */
static gl_tensor *mlp(const gl_gpt_config *c, const gpt_layer *ly, gl_tensor *x, bool training)
{
    if (c->arch == GL_GPT_LLAMA) {
        gl_tensor *h = run(ly->ln_2, x);
        gl_tensor *g = h ? gl_linear(h, W(ly->gate), NULL) : NULL;
        g = g ? swap(g, gl_silu(g)) : NULL;
        gl_tensor *u = g ? gl_linear(h, W(ly->up), NULL) : NULL;
        gl_tensor *p = u ? gl_mul(g, u) : NULL;
        gl_tensor_release(h);
        gl_tensor_release(g);
        gl_tensor_release(u);
        return p ? swap(p, residual_linear(c, PRE_NONE, p, ly->down, x, training)) : NULL;
    }
    gl_tensor *a = norm_linear(ly->ln_2, x, ly->up);
    gl_tensor *y = a ? residual_linear(c, c->gelu_tanh ? PRE_GELU_TANH : PRE_GELU, a, ly->down, x, training) : NULL;
    if (y) drop_stream(x, a, y);
    gl_tensor_release(a);
    return y;
}

/* --- the embeddings ------------------------------------------------------------
 *
 * The lookup wte[ids] (+ wpe[:T]) and its dropout would keep three [B,T,C]
 * tensors (the lookup, the sum, the dropped-out sum); embed keeps the last
 * only: its backward runs the lookup again on a private tape, through which
 * the dropped-out gradient reaches the (leaf) embedding weights. */

/* wte[ids] + wpe[:T] (GPT-2, Neo) or wte[ids] (LLaMA); ids [B,T]. */
static gl_tensor *lookup(const gpt_impl *g, gl_tensor *ids, int64_t T)
{
    gl_tensor *x = run(g->tok, ids);
    if (!x || !g->pos) return x;
    gl_tensor *pos = gl_narrow(W(g->pos), 0, 0, T); /* [T,C] view */
    if (!pos) return swap(x, NULL);
    x = swap(x, gl_add(x, pos));
    gl_tensor_release(pos);
    return x;
}

typedef struct {
    gl_module *model; /* retained, as are ids */
    gl_tensor *ids;
    bool drop;
    uint64_t seed;
    uint32_t cut;
    float scale;
} embed_op;

static void embed_free(void *extra)
{
    embed_op *e = extra;
    if (e) {
        gl_module_release(e->model);
        gl_tensor_release(e->ids);
    }
    free(e);
}

/* Inputs: the embedding weights (leaves); extra: the embed_op. */
static gl_status embed_backward(gl_node *nd)
{
    const embed_op *e = nd->extra;
    gl_tensor *grad = nd->gout, *masked = NULL, *x = NULL;
    if (e->drop) {
        if (!(masked = gl_tensor_empty(GL_F32, grad->ndim, grad->shape))) return gl_error_code();
        gl_dropout_apply(gl_tensor_f32(masked), NULL, gl_tensor_f32(grad), 0, grad->numel, e->seed, e->cut, e->scale);
        grad = masked;
    }
    bool was = gl_grad_set_enabled(true);
    x = lookup(e->model->impl, e->ids, e->ids->shape[1]);
    gl_status st = !x ? gl_error_code() : x->requires_grad ? gl_backward(x, grad, false) : GL_OK;
    gl_grad_set_enabled(was);
    gl_tensor_release(x);
    gl_tensor_release(masked);
    return st;
}

/* dropout(lookup(ids)), ids [B,T]. */
static gl_tensor *embed(gl_module *m, gl_tensor *ids, bool training)
{
    const gpt_impl *g = m->impl;
    float p = g->cfg.dropout;
    int64_t T = ids->shape[1];
    gl_tensor *ins[2] = {W(g->tok), g->pos ? W(g->pos) : NULL};
    bool drop = training && p > 0.0f;
    if (!gl_autograd_needed(2, ins) || ins[0]->grad_fn || (ins[1] && ins[1]->grad_fn) ||
        !recompute_pays(ids->numel * ins[0]->shape[1])) { /* the composed ops */
        gl_tensor *x = lookup(g, ids, T);
        return x && drop ? swap(x, gl_dropout(x, p, true)) : x;
    }
    embed_op *e = calloc(1, sizeof *e);
    if (!e) return gl_error_null(GL_ENOMEM, "gpt: out of memory");
    if (drop) { /* one draw, as gl_dropout makes */
        e->drop = true;
        e->seed = gl_rng_u64();
        e->cut = gl_dropout_cut(p);
        e->scale = 1.0f / (1.0f - p);
    }
    bool was = gl_grad_set_enabled(false);
    gl_tensor *x = lookup(g, ids, T);
    gl_grad_set_enabled(was);
    if (x && drop) gl_dropout_apply(gl_tensor_f32(x), NULL, gl_tensor_f32(x), 0, x->numel, e->seed, e->cut, e->scale);
    gl_node *nd = NULL;
    if (x && gl_autograd_record(&nd, x, "gpt_embed", embed_backward, 2, ins) != GL_OK) x = swap(x, NULL);
    if (!x || !nd) {
        free(e);
        return x;
    }
    gl_module_retain(m);
    gl_tensor_retain(ids);
    e->model = m;
    e->ids = ids;
    nd->extra = e;
    nd->extra_free = embed_free;
    return x;
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
    if (!(x = embed(m, ids2, training))) goto done;
    for (int64_t l = 0; l < c->n_layer; l++) {
        const gpt_layer *ly = &g->layers[l];
        if (!(x = swap(x, attention(c, ly, l, x, training)))) goto done;
        if (!(x = swap(x, mlp(c, ly, x, training)))) goto done;
        if (gl_interrupt_poll("gpt")) goto fail;
    }
    logits = norm_linear(g->ln_f, x, g->head);
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
