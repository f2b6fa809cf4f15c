/* Binding of the network ops and losses: gl.matmul (also t:matmul), gl.linear,
 * the normalizations, embedding, dropout and the losses. Names and defaults
 * follow torch.nn.functional; id and target tensors hold 0-based values.
 * Also the fused attention (gl.attention, gl.attention_qkv), the fused
 * residual dropout (gl.dropout_add) and rotary embeddings (gl.rope). */
#include <string.h>

#include "lua/binding.h"
#include "ops/attention.h"
#include "ops/matmul.h"
#include "ops/nnops.h"
#include "ops/rope.h"

/* A tensor or nil at idx. */
static gl_tensor *opttensor(lua_State *L, int idx)
{
    return lua_isnoneornil(L, idx) ? NULL : gl_lua_checktensor(L, idx);
}

/* The options table at idx (nil or absent is no options), checked against allowed. */
static int options(lua_State *L, int idx, const char *op, const char *const *allowed)
{
    if (lua_isnoneornil(L, idx)) return 0;
    if (!lua_istable(L, idx)) luaL_error(L, "%s: options must be a table, got %s", op, luaL_typename(L, idx));
    gl_lua_check_options(L, idx, op, allowed);
    return idx;
}

static gl_reduction opt_reduction(lua_State *L, int idx, const char *op, bool batchmean_ok)
{
    static const char *const names[] = {"mean", "sum", "none", "batchmean"};
    if (!idx) return GL_REDUCE_MEAN;
    lua_getfield(L, idx, "reduction");
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return GL_REDUCE_MEAN;
    }
    if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "%s: option 'reduction' must be a string", op);
    const char *s = lua_tostring(L, -1);
    for (int k = 0; k < (batchmean_ok ? 4 : 3); k++)
        if (strcmp(s, names[k]) == 0) {
            lua_pop(L, 1);
            return (gl_reduction)k;
        }
    luaL_error(L, "%s: unknown reduction '%s' (use mean, sum, none%s)", op, s, batchmean_ok ? " or batchmean" : "");
    return GL_REDUCE_MEAN; /* not reached */
}

static int64_t opt_integer(lua_State *L, int idx, const char *op, const char *key, int64_t def)
{
    if (!idx) return def;
    lua_getfield(L, idx, key);
    int64_t v = def;
    if (!lua_isnil(L, -1)) {
        if (!lua_isinteger(L, -1)) luaL_error(L, "%s: option '%s' must be an integer", op, key);
        v = lua_tointeger(L, -1);
    }
    lua_pop(L, 1);
    return v;
}

static int l_matmul(lua_State *L)
{
    return gl_lua_push(L, gl_matmul(gl_lua_checktensor(L, 1), gl_lua_checktensor(L, 2)));
}

/* linear(x, w [, b]) */
static int l_linear(lua_State *L)
{
    gl_tensor *x = gl_lua_checktensor(L, 1), *w = gl_lua_checktensor(L, 2);
    return gl_lua_push(L, gl_linear(x, w, opttensor(L, 3)));
}

/* layer_norm(x [, w [, b [, eps=1e-5]]]) */
static int l_layer_norm(lua_State *L)
{
    gl_tensor *x = gl_lua_checktensor(L, 1), *w = opttensor(L, 2), *b = opttensor(L, 3);
    return gl_lua_push(L, gl_layer_norm(x, w, b, (float)luaL_optnumber(L, 4, 1e-5)));
}

/* rms_norm(x [, w [, eps=1e-6]]) */
static int l_rms_norm(lua_State *L)
{
    gl_tensor *x = gl_lua_checktensor(L, 1), *w = opttensor(L, 2);
    return gl_lua_push(L, gl_rms_norm(x, w, (float)luaL_optnumber(L, 3, 1e-6)));
}

/* embedding(weight, ids) */
static int l_embedding(lua_State *L)
{
    return gl_lua_push(L, gl_embedding(gl_lua_checktensor(L, 1), gl_lua_checktensor(L, 2)));
}

/* dropout(x [, p=0.5 [, training=true]]) */
static int l_dropout(lua_State *L)
{
    gl_tensor *x = gl_lua_checktensor(L, 1);
    float p = (float)luaL_optnumber(L, 2, 0.5);
    bool training = lua_isnoneornil(L, 3) ? true : lua_toboolean(L, 3);
    return gl_lua_push(L, gl_dropout(x, p, training));
}

/* dropout_add(x, f [, p=0.5, training=true]): x + dropout(f), fused (the
 * residual connection of the GPT blocks; backward keeps no mask). */
static int l_dropout_add(lua_State *L)
{
    gl_tensor *x = gl_lua_checktensor(L, 1), *f = gl_lua_checktensor(L, 2);
    float p = (float)luaL_optnumber(L, 3, 0.5);
    bool training = lua_isnoneornil(L, 4) ? true : lua_toboolean(L, 4);
    return gl_lua_push(L, gl_dropout_add(x, f, p, training));
}

static const char *const ce_opts[] = {"ignore_index", "label_smoothing", "reduction", NULL};

/* cross_entropy(logits, targets [, {ignore_index=-100, label_smoothing=0, reduction="mean"}]) */
static int l_cross_entropy(lua_State *L)
{
    gl_tensor *x = gl_lua_checktensor(L, 1), *t = gl_lua_checktensor(L, 2);
    int o = options(L, 3, "cross_entropy", ce_opts);
    int64_t ignore = opt_integer(L, o, "cross_entropy", "ignore_index", -100);
    float smoothing = (float)gl_lua_optfield_number(L, o, "label_smoothing", 0.0);
    gl_reduction red = opt_reduction(L, o, "cross_entropy", false);
    return gl_lua_push(L, gl_cross_entropy(x, t, ignore, smoothing, red));
}

static const char *const nll_opts[] = {"ignore_index", "reduction", NULL};

/* nll_loss(logp, targets [, {ignore_index=-100, reduction="mean"}]) */
static int l_nll_loss(lua_State *L)
{
    gl_tensor *x = gl_lua_checktensor(L, 1), *t = gl_lua_checktensor(L, 2);
    int o = options(L, 3, "nll_loss", nll_opts);
    int64_t ignore = opt_integer(L, o, "nll_loss", "ignore_index", -100);
    return gl_lua_push(L, gl_nll_loss(x, t, ignore, opt_reduction(L, o, "nll_loss", false)));
}

static const char *const red_opts[] = {"reduction", NULL};

/* name(input, target [, {reduction="mean"}]) */
static int pointwise(lua_State *L, const char *op, gl_tensor *(*fn)(gl_tensor *, gl_tensor *, gl_reduction))
{
    gl_tensor *x = gl_lua_checktensor(L, 1), *y = gl_lua_checktensor(L, 2);
    int o = options(L, 3, op, red_opts);
    return gl_lua_push(L, fn(x, y, opt_reduction(L, o, op, false)));
}

static int l_mse_loss(lua_State *L) { return pointwise(L, "mse_loss", gl_mse_loss); }
static int l_l1_loss(lua_State *L) { return pointwise(L, "l1_loss", gl_l1_loss); }
static int l_bce(lua_State *L) { return pointwise(L, "binary_cross_entropy", gl_bce_loss); }
static int l_bce_logits(lua_State *L) { return pointwise(L, "binary_cross_entropy_with_logits", gl_bce_with_logits); }

static const char *const kl_opts[] = {"reduction", "log_target", NULL};

/* kl_div(input, target [, {reduction="mean", log_target=false}]): input holds log-probabilities. */
static int l_kl_div(lua_State *L)
{
    gl_tensor *x = gl_lua_checktensor(L, 1), *y = gl_lua_checktensor(L, 2);
    int o = options(L, 3, "kl_div", kl_opts);
    bool log_target = gl_lua_optfield_bool(L, o, "log_target", false);
    return gl_lua_push(L, gl_kl_div(x, y, log_target, opt_reduction(L, o, "kl_div", true)));
}

static const char *const attention_opts[] = {"scale", "causal", "window", "dropout", "training", NULL};

/* The attention options at idx; HS gives the default scale 1/sqrt(HS). */
static gl_attention_opts opt_attention(lua_State *L, int idx, const char *op, int64_t HS)
{
    int o = options(L, idx, op, attention_opts);
    gl_attention_opts a = gl_attention_opts_default(HS);
    a.scale = (float)gl_lua_optfield_number(L, o, "scale", a.scale);
    a.causal = gl_lua_optfield_bool(L, o, "causal", a.causal);
    a.window = opt_integer(L, o, op, "window", 0);
    a.dropout = (float)gl_lua_optfield_number(L, o, "dropout", 0.0);
    a.training = gl_lua_optfield_bool(L, o, "training", false);
    return a;
}

/* attention(q, k, v [, {scale=1/sqrt(HS), causal=true, window=0, dropout=0, training=false}])
 * q [B,NH,T,HS], k and v [B,KVH,S,HS] -> [B,NH,T,HS] */
static int l_attention(lua_State *L)
{
    gl_tensor *q = gl_lua_checktensor(L, 1), *k = gl_lua_checktensor(L, 2), *v = gl_lua_checktensor(L, 3);
    gl_attention_opts a = opt_attention(L, 4, "attention", q->ndim > 0 ? q->shape[q->ndim - 1] : 1);
    return gl_lua_push(L, gl_attention(q, k, v, &a));
}

/* attention_qkv(qkv, n_head [, options as attention]): qkv [B,T,3C] holds
 * q, k and v side by side (GPT-2's c_attn output) -> [B,T,C], heads merged. */
static int l_attention_qkv(lua_State *L)
{
    gl_tensor *qkv = gl_lua_checktensor(L, 1);
    lua_Integer n_head = luaL_checkinteger(L, 2);
    if (n_head < 1) return luaL_error(L, "attention_qkv: n_head must be positive, got %d", (int)n_head);
    int64_t C3 = qkv->ndim > 0 ? qkv->shape[qkv->ndim - 1] : 0;
    int64_t HS = C3 % (3 * n_head) == 0 && C3 > 0 ? C3 / (3 * n_head) : 1;
    gl_attention_opts a = opt_attention(L, 3, "attention_qkv", HS);
    return gl_lua_push(L, gl_attention_qkv(qkv, n_head, &a));
}

/* Internal, for tests: the KV-cache decode kernel on tensors.
 * _attention_decode(q [n,NH,HS], k_cache, v_cache [KVH,capacity,HS] [, {scale=, window=, length=capacity}])
 * -> [n,NH,HS]: the n queries are the last n of the first `length` cached positions. */
static int l_attention_decode(lua_State *L)
{
    static const char *const allowed[] = {"scale", "window", "length", NULL};
    gl_tensor *q = gl_lua_checktensor(L, 1), *k = gl_lua_checktensor(L, 2), *v = gl_lua_checktensor(L, 3);
    int o = options(L, 4, "_attention_decode", allowed);
    if (q->ndim != 3 || k->ndim != 3 || q->dtype != GL_F32 || k->dtype != GL_F32 || v->dtype != GL_F32 ||
        !gl_shape_equal(k->ndim, k->shape, v->ndim, v->shape) || k->shape[2] != q->shape[2])
        return luaL_error(L, "_attention_decode: expected f32 q [n,NH,HS], k and v [KVH,capacity,HS]");
    gl_attention_opts a = gl_attention_opts_default(q->shape[2]);
    a.scale = (float)gl_lua_optfield_number(L, o, "scale", a.scale);
    a.window = opt_integer(L, o, "_attention_decode", "window", 0);
    int64_t S = opt_integer(L, o, "_attention_decode", "length", k->shape[1]);
    gl_lua_push(L, gl_tensor_empty(GL_F32, 3, q->shape));
    gl_tensor *out = gl_lua_checktensor(L, -1);
    int64_t NH = q->shape[1], HS = q->shape[2];
    gl_lua_check(L, gl_attention_decode(gl_tensor_f32(out), NH * HS, gl_tensor_f32(q), NH * HS, q->shape[0],
                                        gl_tensor_f32(k), gl_tensor_f32(v), k->shape[1], S, NH, k->shape[0], HS, &a));
    return 1;
}

/* rope(x [, {offset=0, theta=10000}]): x [..., T, HS], row t at position offset + t */
static int l_rope(lua_State *L)
{
    static const char *const allowed[] = {"offset", "theta", NULL};
    gl_tensor *x = gl_lua_checktensor(L, 1);
    int o = options(L, 2, "rope", allowed);
    int64_t offset = opt_integer(L, o, "rope", "offset", 0);
    float theta = (float)gl_lua_optfield_number(L, o, "theta", 10000.0);
    return gl_lua_push(L, gl_rope(x, offset, theta));
}

static const luaL_Reg methods[] = {
    {"matmul", l_matmul},
    {NULL, NULL},
};

static const luaL_Reg functions[] = {
    {"linear", l_linear},
    {"layer_norm", l_layer_norm},
    {"rms_norm", l_rms_norm},
    {"embedding", l_embedding},
    {"dropout", l_dropout},
    {"dropout_add", l_dropout_add},
    {"cross_entropy", l_cross_entropy},
    {"nll_loss", l_nll_loss},
    {"mse_loss", l_mse_loss},
    {"l1_loss", l_l1_loss},
    {"binary_cross_entropy", l_bce},
    {"binary_cross_entropy_with_logits", l_bce_logits},
    {"kl_div", l_kl_div},
    {"attention", l_attention},
    {"attention_qkv", l_attention_qkv},
    {"_attention_decode", l_attention_decode},
    {"rope", l_rope},
    {NULL, NULL},
};

void gl_lua_open_nnops(lua_State *L, int module_idx)
{
    gl_lua_register(L, module_idx, methods, true);
    gl_lua_register(L, module_idx, functions, false);
}
