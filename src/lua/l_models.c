/* gl.models: the GPT family (src/models/gpt.h) and its checkpoints.
 *
 *   gl.models.gpt{arch = "gpt2" | "neo" | "llama", vocab_size | vocab, block_size | block,
 *                 n_layer, n_head, n_kv_head, n_embd, n_hidden, dropout, bias, tie_head,
 *                 gelu_tanh, window, local_layers = {2, 4}, norm_eps, rope_theta}
 *       -> a Module of class "GPT". vocab and block are required; n_layer, n_head
 *       and n_embd default to 4, 4, 128 (the char GPT). Per arch: gpt2 has biases,
 *       a tied head and exact GELU (nanoGPT); neo adds tanh GELU and local
 *       attention in every second layer (local_layers, 1-based layer numbers);
 *       llama has no biases and an untied head.
 *   model:forward(ids [, targets]) -> logits [, loss]   ids [B,T] or [T], 0-based ids
 *   model:forward_backward(ids, targets [, scale]) -> loss (a number); adds scale (1) times
 *       the loss's gradient into the parameters' grad, the batch's rows split between
 *       the threads (gl_gpt_forward_backward)
 *   model:loss(ids, targets) -> loss (a number), forward only, rows split likewise
 *   model:config() -> table (the constructor's keys)
 *   model:session([capacity]) -> session
 *   model:save(path [, {tokenizer = string}])   genlab checkpoint (gl.models.load reads it)
 *   session:append(ids (table or tensor) [, {all = false}]) -> logits [V] (or [n,V] with all)
 *   session:reset(), :length(), :capacity(), :free()
 *   session:slide(keep): the caller refills a full cache with its last keep
 *     tokens; the session prepares them as they come (gl_gpt_session_slide)
 *   gl.models._load(path) -> model, info {format, tokenizer, dir}
 *   gl.models._save(model, path [, tokenizer]), gl.models._export_hf(model, dir)
 * lua/genlab/models.lua wraps the last three as load / save / export. */
#include <stdlib.h>
#include <string.h>

#include "lua/binding.h"
#include "models/gpt.h"
#include "models/gpt_io.h"

#define SESSION "genlab.GPTSession"

typedef struct {
    gl_gpt_session *s; /* NULL once freed */
    int64_t vocab;
} session_ud;

/* --- constructor ------------------------------------------------------------------ */

static int64_t int_field(lua_State *L, const char *key, const char *alias, int64_t def)
{
    int ok = 1;
    lua_Integer v = def;
    if (lua_getfield(L, 1, key) == LUA_TNIL && alias) {
        lua_pop(L, 1);
        lua_getfield(L, 1, alias);
        key = alias;
    }
    if (!lua_isnil(L, -1)) {
        v = lua_tointegerx(L, -1, &ok);
        if (!ok) gl_lua_errorf(L, "gpt: '%s' must be an integer", key);
    }
    lua_pop(L, 1);
    return v;
}

static bool bool_field(lua_State *L, const char *key, bool def)
{
    lua_getfield(L, 1, key);
    if (!lua_isnil(L, -1) && !lua_isboolean(L, -1)) gl_lua_errorf(L, "gpt: '%s' must be a boolean", key);
    bool v = lua_isnil(L, -1) ? def : lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

static double num_field(lua_State *L, const char *key, double def)
{
    lua_getfield(L, 1, key);
    if (!lua_isnil(L, -1) && !lua_isnumber(L, -1)) gl_lua_errorf(L, "gpt: '%s' must be a number", key);
    double v = lua_isnil(L, -1) ? def : lua_tonumber(L, -1);
    lua_pop(L, 1);
    return v;
}

static const char *const gpt_keys[] = {"arch",     "vocab_size", "vocab",     "block_size",   "block",    "n_layer",
                                       "n_head",   "n_kv_head",  "n_embd",    "n_hidden",     "dropout",  "bias",
                                       "tie_head", "gelu_tanh",  "window",    "local_layers", "norm_eps", "rope_theta",
                                       NULL};

static int l_gpt(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    gl_lua_check_options(L, 1, "gpt", gpt_keys);
    gl_gpt_config c = {0};
    lua_getfield(L, 1, "arch");
    const char *arch = luaL_optstring(L, -1, "gpt2");
    if (!strcmp(arch, "gpt2"))
        c.arch = GL_GPT_GPT2;
    else if (!strcmp(arch, "neo"))
        c.arch = GL_GPT_NEO;
    else if (!strcmp(arch, "llama"))
        c.arch = GL_GPT_LLAMA;
    else
        return gl_lua_errorf(L, "gpt: unknown arch '%s' (gpt2, neo or llama)", arch);
    lua_pop(L, 1);
    c.vocab_size = int_field(L, "vocab_size", "vocab", 0);
    c.block_size = int_field(L, "block_size", "block", 0);
    if (c.vocab_size == 0) return luaL_error(L, "gpt: vocab_size (or vocab) is required");
    if (c.block_size == 0) return luaL_error(L, "gpt: block_size (or block) is required");
    c.n_layer = int_field(L, "n_layer", NULL, 4);
    c.n_head = int_field(L, "n_head", NULL, 4);
    c.n_kv_head = int_field(L, "n_kv_head", NULL, 0);
    c.n_embd = int_field(L, "n_embd", NULL, 128);
    c.n_hidden = int_field(L, "n_hidden", NULL, 0);
    c.window = int_field(L, "window", NULL, 0);
    c.dropout = (float)num_field(L, "dropout", 0.0);
    c.norm_eps = (float)num_field(L, "norm_eps", 0.0);
    c.rope_theta = (float)num_field(L, "rope_theta", 0.0);
    bool llama = c.arch == GL_GPT_LLAMA;
    c.bias = bool_field(L, "bias", !llama);
    c.tie_head = bool_field(L, "tie_head", !llama);
    c.gelu_tanh = bool_field(L, "gelu_tanh", c.arch == GL_GPT_NEO);
    if (lua_getfield(L, 1, "local_layers") == LUA_TTABLE) {
        lua_Integer n = (lua_Integer)luaL_len(L, -1);
        for (lua_Integer i = 1; i <= n; i++) {
            lua_geti(L, -1, i);
            int ok = 0;
            lua_Integer k = lua_tointegerx(L, -1, &ok);
            if (!ok || k < 1 || k > 64 || k > c.n_layer)
                return gl_lua_errorf(L, "gpt: local_layers[%lld] must be a layer number in 1..%lld", (long long)i,
                                     (long long)(c.n_layer < 64 ? c.n_layer : 64));
            c.local_layers |= (uint64_t)1 << (k - 1);
            lua_pop(L, 1);
        }
    } else if (!lua_isnil(L, -1)) {
        return luaL_error(L, "gpt: 'local_layers' must be a table of layer numbers");
    } else if (c.arch == GL_GPT_NEO) {
        for (int64_t k = 1; k < c.n_layer && k < 64; k += 2) c.local_layers |= (uint64_t)1 << k;
    }
    lua_pop(L, 1);
    return gl_lua_push_module(L, gl_gpt_new(&c), true);
}

/* --- model methods ------------------------------------------------------------------ */

static gl_module *check_gpt(lua_State *L, int idx)
{
    gl_module *m = gl_lua_checkmodule(L, idx);
    if (!gl_gpt_config_of(m)) luaL_error(L, "gpt: expected a GPT model");
    return m;
}

static int g_forward(lua_State *L)
{
    gl_module *m = check_gpt(L, 1);
    gl_tensor *ids = gl_lua_checktensor(L, 2);
    gl_tensor *targets = lua_isnoneornil(L, 3) ? NULL : gl_lua_checktensor(L, 3);
    gl_tensor *loss = NULL;
    gl_tensor *logits = gl_gpt_forward(m, ids, targets, targets ? &loss : NULL);
    gl_lua_push(L, logits);
    if (!targets) return 1;
    gl_lua_push(L, loss);
    return 2;
}

static int g_forward_backward(lua_State *L)
{
    gl_module *m = check_gpt(L, 1);
    gl_tensor *ids = gl_lua_checktensor(L, 2), *targets = gl_lua_checktensor(L, 3);
    double scale = luaL_optnumber(L, 4, 1.0), loss;
    gl_lua_check(L, gl_gpt_forward_backward(m, ids, targets, (float)scale, &loss));
    lua_pushnumber(L, loss);
    return 1;
}

static int g_loss(lua_State *L)
{
    gl_module *m = check_gpt(L, 1);
    gl_tensor *ids = gl_lua_checktensor(L, 2), *targets = gl_lua_checktensor(L, 3);
    double loss;
    gl_lua_check(L, gl_gpt_loss(m, ids, targets, &loss));
    lua_pushnumber(L, loss);
    return 1;
}

static void set_int(lua_State *L, const char *k, int64_t v)
{
    lua_pushinteger(L, v);
    lua_setfield(L, -2, k);
}

static int g_config(lua_State *L)
{
    const gl_gpt_config *c = gl_gpt_config_of(check_gpt(L, 1));
    lua_newtable(L);
    lua_pushstring(L, gl_gpt_arch_name(c->arch));
    lua_setfield(L, -2, "arch");
    set_int(L, "vocab_size", c->vocab_size);
    set_int(L, "block_size", c->block_size);
    set_int(L, "n_layer", c->n_layer);
    set_int(L, "n_head", c->n_head);
    set_int(L, "n_kv_head", c->n_kv_head);
    set_int(L, "n_embd", c->n_embd);
    set_int(L, "n_hidden", c->n_hidden);
    set_int(L, "window", c->window);
    lua_pushnumber(L, c->dropout);
    lua_setfield(L, -2, "dropout");
    lua_pushnumber(L, c->norm_eps);
    lua_setfield(L, -2, "norm_eps");
    lua_pushnumber(L, c->rope_theta);
    lua_setfield(L, -2, "rope_theta");
    lua_pushboolean(L, c->bias);
    lua_setfield(L, -2, "bias");
    lua_pushboolean(L, c->tie_head);
    lua_setfield(L, -2, "tie_head");
    lua_pushboolean(L, c->gelu_tanh);
    lua_setfield(L, -2, "gelu_tanh");
    lua_newtable(L);
    for (int64_t k = 0, n = 0; k < 64 && k < c->n_layer; k++)
        if (c->local_layers >> k & 1) {
            lua_pushinteger(L, k + 1);
            lua_rawseti(L, -2, ++n);
        }
    lua_setfield(L, -2, "local_layers");
    return 1;
}

/* --- sessions ---------------------------------------------------------------------- */

static session_ud *check_session(lua_State *L, int idx)
{
    session_ud *u = luaL_checkudata(L, idx, SESSION);
    if (!u->s) luaL_error(L, "attempt to use a freed session");
    return u;
}

static int s_free(lua_State *L)
{
    session_ud *u = luaL_checkudata(L, 1, SESSION);
    gl_gpt_session_free(u->s);
    u->s = NULL;
    return 0;
}

static int g_session(lua_State *L)
{
    gl_module *m = check_gpt(L, 1);
    lua_Integer cap = luaL_optinteger(L, 2, 0);
    session_ud *u = lua_newuserdatauv(L, sizeof *u, 0);
    u->s = NULL;
    luaL_setmetatable(L, SESSION);
    u->s = gl_gpt_session_new(m, cap);
    if (!u->s) return gl_lua_fail(L);
    u->vocab = gl_gpt_config_of(m)->vocab_size;
    return 1;
}

static const char *const append_keys[] = {"all", NULL};

static int s_append(lua_State *L)
{
    session_ud *u = check_session(L, 1);
    gl_lua_check_options(L, 3, "append", append_keys);
    bool all = gl_lua_optfield_bool(L, 3, "all", false);
    int64_t n;
    int64_t *ids;
    gl_tensor *t = gl_lua_totensor(L, 2);
    if (t) {
        if (t->dtype != GL_I64 && t->dtype != GL_I32)
            return gl_lua_errorf(L, "append: ids must be an i64 or i32 tensor (got %s)", gl_dtype_name(t->dtype));
        n = t->numel;
    } else {
        luaL_checktype(L, 2, LUA_TTABLE);
        n = (int64_t)luaL_len(L, 2);
    }
    if (n < 1) return luaL_error(L, "append: no tokens given");
    int64_t few[32]; /* a decoded token or a refill: no allocation */
    ids = n <= 32 ? few : lua_newuserdatauv(L, (size_t)n * sizeof *ids, 0); /* scratch owned by the stack */
    for (int64_t i = 0; i < n; i++) {
        if (t) {
            ids[i] = (int64_t)gl_tensor_get(t, i);
            continue;
        }
        lua_geti(L, 2, i + 1);
        int ok = 0;
        ids[i] = lua_tointegerx(L, -1, &ok);
        if (!ok) return gl_lua_errorf(L, "append: ids[%lld] is not an integer", (long long)(i + 1));
        lua_pop(L, 1);
    }
    int64_t shape[2] = {n, u->vocab};
    gl_tensor *out = all ? gl_tensor_empty(GL_F32, 2, shape) : gl_tensor_empty(GL_F32, 1, shape + 1);
    gl_lua_push(L, out);
    gl_lua_check(L, gl_gpt_session_append(u->s, ids, n, gl_tensor_f32(out), all));
    return 1;
}

static int s_reset(lua_State *L)
{
    gl_gpt_session_reset(check_session(L, 1)->s);
    lua_settop(L, 1);
    return 1;
}

static int s_slide(lua_State *L)
{
    session_ud *u = check_session(L, 1);
    gl_lua_check(L, gl_gpt_session_slide(u->s, luaL_checkinteger(L, 2)));
    lua_settop(L, 1);
    return 1;
}

static int s_length(lua_State *L)
{
    lua_pushinteger(L, gl_gpt_session_length(check_session(L, 1)->s));
    return 1;
}

static int s_capacity(lua_State *L)
{
    lua_pushinteger(L, gl_gpt_session_capacity(check_session(L, 1)->s));
    return 1;
}

static int s_tostring(lua_State *L)
{
    session_ud *u = luaL_checkudata(L, 1, SESSION);
    if (!u->s) return lua_pushliteral(L, "GPTSession (freed)"), 1;
    lua_pushfstring(L, "GPTSession(length=%d, capacity=%d)", (int)gl_gpt_session_length(u->s),
                    (int)gl_gpt_session_capacity(u->s));
    return 1;
}

/* --- checkpoints ----------------------------------------------------------------------- */

static int l_load(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    gl_gpt_load_info info = {0};
    gl_module *m = gl_gpt_load(path, &info);
    if (!m) return gl_lua_fail(L);
    gl_lua_push_module(L, m, true);
    lua_newtable(L);
    lua_pushstring(L, info.format);
    lua_setfield(L, -2, "format");
    if (info.tokenizer) {
        lua_pushstring(L, info.tokenizer);
        lua_setfield(L, -2, "tokenizer");
    }
    if (info.dir) {
        lua_pushstring(L, info.dir);
        lua_setfield(L, -2, "dir");
    }
    gl_gpt_load_info_free(&info);
    return 2;
}

static const char *const save_keys[] = {"tokenizer", NULL};

/* model:save(path [, {tokenizer = string}]); gl.models._save(model, path [, string]). */
static int l_save(lua_State *L)
{
    gl_module *m = check_gpt(L, 1);
    const char *path = luaL_checkstring(L, 2);
    const char *tok = NULL;
    if (lua_istable(L, 3)) {
        gl_lua_check_options(L, 3, "save", save_keys);
        lua_getfield(L, 3, "tokenizer");
        if (!lua_isnil(L, -1) && !lua_isstring(L, -1)) return luaL_error(L, "save: tokenizer must be a string");
        tok = lua_tostring(L, -1);
    } else {
        tok = luaL_optstring(L, 3, NULL);
    }
    gl_lua_check(L, gl_gpt_save(m, path, tok));
    return 0;
}

static int l_export_hf(lua_State *L)
{
    gl_module *m = check_gpt(L, 1);
    gl_lua_check(L, gl_gpt_export_hf(m, luaL_checkstring(L, 2)));
    return 0;
}

static const luaL_Reg gpt_methods[] = {
    {"forward", g_forward},
    {"forward_backward", g_forward_backward},
    {"loss", g_loss},
    {"config", g_config},
    {"session", g_session},
    {"save", l_save},
    {NULL, NULL},
};

static const luaL_Reg session_methods[] = {
    {"append", s_append}, {"reset", s_reset}, {"slide", s_slide}, {"length", s_length},
    {"capacity", s_capacity}, {"free", s_free}, {NULL, NULL},
};

static const luaL_Reg functions[] = {
    {"gpt", l_gpt},
    {"_load", l_load},
    {"_save", l_save},
    {"_export_hf", l_export_hf},
    {NULL, NULL},
};

void gl_lua_open_models(lua_State *L, int module_idx)
{
    module_idx = lua_absindex(L, module_idx);
    luaL_newmetatable(L, SESSION);
    luaL_newlib(L, session_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, s_free);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, s_free);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, s_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushliteral(L, "GPTSession");
    lua_setfield(L, -2, "__name");
    lua_pop(L, 1);
    gl_lua_register_module_methods(L, "GPT", gpt_methods);
    luaL_getsubtable(L, module_idx, "models");
    luaL_setfuncs(L, functions, 0);
    lua_pop(L, 1);
}
