/* Decoding: the token sampler (src/models/sampler.h) and the helpers the
 * generation loop and probes of lua/genlab/generate.lua use with a model's
 * KV-cache session (model:session(), src/lua/l_models.c).
 *
 *   gl.sample(logits, {temperature=1, top_k=0, top_p=1, min_p=0,
 *             repetition_penalty=1, greedy=false, history=ids, seed=n}) -> id
 *       logits holds one row [V] (any shape with numel V); id is 0-based.
 *       With seed, the draw comes from a private stream seeded with it and the
 *       genlab stream is left untouched; otherwise from the genlab stream.
 *   gl.sampler{same options but history, plus repetition_window=0} -> Sampler
 *       sampler:sample(logits) -> id   (penalizes the ids accepted so far)
 *       sampler:accept(id | ids)       records tokens for the repetition
 *                                      penalty (only the last repetition_window
 *                                      count; 0 = all) and returns the sampler
 *       sampler:reset()                forgets them
 *       sampler:describe()             the filters in their order, with settings
 *       a seeded sampler owns its stream: it advances from draw to draw.
 *   gl.topk_probs(logits, k) -> probs [k], ids [k] (i64, 0-based)
 *       the k most probable tokens of softmax(logits), most probable first.
 *   gl.token_logprobs(logits [..., V], ids [n]) -> [n]: log softmax(row r)[ids[r]]
 *       for each of the n rows of logits.
 * ids are an integer, a list of integers or an integer tensor, 0-based.
 *
 * GPT modules also get the methods generate, logprobs, score and topk: they
 * call the functions of the same name in lua/genlab/generate.lua. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua/binding.h"
#include "models/sampler.h"

#define GL_LUA_SAMPLER "genlab.Sampler"
/* The gl_module_class name of GPT modules (src/models/gpt.c). */
#define GPT_CLASS "GPT"

/* --- ids from Lua ------------------------------------------------------------------ */

/* The ids at idx (integer, list or integer tensor) in a buffer the Lua stack
 * owns (pushed). Returns the count. */
static int64_t check_ids(lua_State *L, int idx, int64_t **out, const char *op)
{
    idx = lua_absindex(L, idx);
    int64_t n;
    gl_tensor *t = gl_lua_totensor(L, idx);
    bool one = lua_type(L, idx) == LUA_TNUMBER;
    if (one) n = 1;
    else if (lua_istable(L, idx)) n = (int64_t)luaL_len(L, idx);
    else if (t) n = t->numel;
    else return gl_lua_errorf(L, "%s: ids must be an integer, a list of integers or a tensor (got %s)", op,
                              luaL_typename(L, idx));
    int64_t *ids = lua_newuserdatauv(L, (size_t)(n > 0 ? n : 1) * sizeof *ids, 0);
    if (one) {
        int isint;
        ids[0] = lua_tointegerx(L, idx, &isint);
        if (!isint) gl_lua_errorf(L, "%s: id %g is not an integer", op, lua_tonumber(L, idx));
    } else if (t) {
        if (t->dtype == GL_F32)
            return gl_lua_errorf(L, "%s: ids must be an integer tensor (i32/i64/u8), got f32", op);
        for (int64_t i = 0; i < n; i++) ids[i] = (int64_t)gl_tensor_get(t, i);
    } else {
        for (int64_t i = 0; i < n; i++) {
            lua_geti(L, idx, i + 1);
            int isint;
            ids[i] = lua_tointegerx(L, -1, &isint);
            if (!isint) gl_lua_errorf(L, "%s: ids[%lld] is not an integer", op, (long long)(i + 1));
            lua_pop(L, 1);
        }
    }
    *out = ids;
    return n;
}

/* A logits row as floats: the tensor at idx must be f32 with numel V (one row). */
static gl_tensor *check_row(lua_State *L, int idx, const char *op)
{
    gl_tensor *t = gl_lua_checktensor(L, idx);
    int64_t V = t->ndim ? t->shape[t->ndim - 1] : 1;
    if (t->dtype != GL_F32 || t->ndim == 0 || t->numel != V || V < 1) {
        char s[128];
        gl_lua_errorf(L, "%s: logits must be one f32 row [V], got %s %s", op, gl_dtype_name(t->dtype),
                      gl_tensor_shape_str(t, s, sizeof s));
    }
    return t;
}

/* --- sampler ----------------------------------------------------------------------- */

typedef struct {
    gl_sampler *s; /* made for the first logits' V; remade when V changes */
    gl_sampler_config cfg;
    bool seeded, freed;
    uint64_t seed;
    gl_rng_state rng;
    int64_t window;           /* repetition window, 0 = everything accepted */
    int64_t *hist, n_hist, cap_hist;
} sampler_ud;

static sampler_ud *check_sampler(lua_State *L, int idx)
{
    sampler_ud *u = luaL_checkudata(L, idx, GL_LUA_SAMPLER);
    if (u->freed) luaL_error(L, "attempt to use a freed sampler");
    return u;
}

static int s_free(lua_State *L)
{
    sampler_ud *u = luaL_checkudata(L, 1, GL_LUA_SAMPLER);
    gl_sampler_free(u->s);
    free(u->hist);
    u->s = NULL;
    u->hist = NULL;
    u->n_hist = u->cap_hist = 0;
    u->freed = true;
    return 0;
}

static const char *const sample_keys[] = {"temperature", "top_k", "top_p", "min_p", "repetition_penalty",
                                          "greedy", "seed", "history", NULL};
static const char *const sampler_keys[] = {"temperature", "top_k", "top_p", "min_p", "repetition_penalty",
                                           "greedy", "seed", "repetition_window", NULL};

static int64_t opt_integer(lua_State *L, int idx, const char *key, int64_t def, const char *op)
{
    double v = gl_lua_optfield_number(L, idx, key, (double)def);
    if (v != floor(v) || fabs(v) > 9.0e18) gl_lua_errorf(L, "%s: %s must be an integer, got %g", op, key, v);
    return (int64_t)v;
}

/* A new sampler userdata (pushed) configured by the options table at idx. */
static sampler_ud *new_sampler(lua_State *L, int idx, const char *const *keys, const char *op)
{
    if (!lua_isnoneornil(L, idx)) luaL_checktype(L, idx, LUA_TTABLE);
    else idx = 0;
    gl_lua_check_options(L, idx, op, keys);
    gl_sampler_config cfg = gl_sampler_config_default();
    cfg.temperature = gl_lua_optfield_number(L, idx, "temperature", cfg.temperature);
    cfg.top_k = opt_integer(L, idx, "top_k", cfg.top_k, op);
    cfg.top_p = gl_lua_optfield_number(L, idx, "top_p", cfg.top_p);
    cfg.min_p = gl_lua_optfield_number(L, idx, "min_p", cfg.min_p);
    cfg.repetition_penalty = gl_lua_optfield_number(L, idx, "repetition_penalty", cfg.repetition_penalty);
    cfg.greedy = gl_lua_optfield_bool(L, idx, "greedy", cfg.greedy);
    gl_lua_check(L, gl_sampler_config_check(&cfg));
    int64_t window = opt_integer(L, idx, "repetition_window", 0, op);
    if (window < 0) gl_lua_errorf(L, "%s: repetition_window must be >= 0 (0 = all), got %lld", op, (long long)window);
    bool seeded = false;
    uint64_t seed = 0;
    if (idx) {
        lua_getfield(L, idx, "seed");
        if (!lua_isnil(L, -1)) {
            int isint;
            seed = (uint64_t)lua_tointegerx(L, -1, &isint);
            if (!isint) gl_lua_errorf(L, "%s: seed must be an integer", op);
            seeded = true;
        }
        lua_pop(L, 1);
    }
    sampler_ud *u = lua_newuserdatauv(L, sizeof *u, 0);
    memset(u, 0, sizeof *u);
    luaL_setmetatable(L, GL_LUA_SAMPLER);
    u->cfg = cfg;
    u->window = window;
    u->seeded = seeded;
    u->seed = seed;
    if (seeded) gl_sampler_rng_seed(&u->rng, seed);
    return u;
}

static void accept_ids(lua_State *L, sampler_ud *u, const int64_t *ids, int64_t n)
{
    if (u->n_hist + n > u->cap_hist) {
        /* With a window, keep only its last entries before growing. */
        if (u->window > 0 && u->n_hist > u->window) {
            memmove(u->hist, u->hist + u->n_hist - u->window, (size_t)u->window * sizeof *u->hist);
            u->n_hist = u->window;
        }
        if (u->n_hist + n > u->cap_hist) {
            int64_t cap = 2 * (u->n_hist + n) + 16;
            int64_t *h = realloc(u->hist, (size_t)cap * sizeof *h);
            if (!h) gl_lua_errorf(L, "sampler: out of memory for %lld history ids", (long long)cap);
            u->hist = h;
            u->cap_hist = cap;
        }
    }
    memcpy(u->hist + u->n_hist, ids, (size_t)n * sizeof *ids);
    u->n_hist += n;
}

/* Draws from the row at idx with the given history; returns the id. */
static int64_t draw(lua_State *L, sampler_ud *u, int idx, const int64_t *hist, int64_t n_hist)
{
    gl_tensor *row = check_row(L, idx, "sample");
    if (!u->s || gl_sampler_vocab(u->s) != row->numel) {
        gl_sampler_free(u->s);
        u->s = gl_sampler_new(&u->cfg, row->numel);
        if (!u->s) gl_lua_fail(L);
    }
    int64_t id;
    gl_lua_check(L, gl_sampler_sample(u->s, gl_tensor_f32(row), hist, n_hist, u->seeded ? &u->rng : NULL, &id));
    return id;
}

static int l_sample(lua_State *L)
{
    check_row(L, 1, "sample");
    lua_settop(L, 2);
    sampler_ud *u = new_sampler(L, 2, sample_keys, "sample"); /* at 3 */
    int64_t *hist = NULL, n_hist = 0;
    if (lua_istable(L, 2) && lua_getfield(L, 2, "history") != LUA_TNIL) n_hist = check_ids(L, -1, &hist, "sample");
    lua_pushinteger(L, draw(L, u, 1, hist, n_hist));
    return 1;
}

static int l_sampler(lua_State *L)
{
    lua_settop(L, 1);
    new_sampler(L, 1, sampler_keys, "sampler");
    return 1;
}

static int s_sample(lua_State *L)
{
    sampler_ud *u = check_sampler(L, 1);
    int64_t n = u->window > 0 && u->n_hist > u->window ? u->window : u->n_hist;
    lua_pushinteger(L, draw(L, u, 2, u->hist + u->n_hist - n, n));
    return 1;
}

static int s_accept(lua_State *L)
{
    sampler_ud *u = check_sampler(L, 1);
    int64_t *ids;
    int64_t n = check_ids(L, 2, &ids, "sampler:accept");
    accept_ids(L, u, ids, n);
    lua_settop(L, 1);
    return 1;
}

static int s_reset(lua_State *L)
{
    check_sampler(L, 1)->n_hist = 0;
    lua_settop(L, 1);
    return 1;
}

static int s_describe(lua_State *L)
{
    sampler_ud *u = check_sampler(L, 1);
    const gl_sampler_config *c = &u->cfg;
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    char s[256];
    if (c->repetition_penalty == 1.0) snprintf(s, sizeof s, "repetition_penalty=1 (off) -> ");
    else if (u->window) snprintf(s, sizeof s, "repetition_penalty=%g (last %lld tokens) -> ", c->repetition_penalty, (long long)u->window);
    else snprintf(s, sizeof s, "repetition_penalty=%g (all tokens so far) -> ", c->repetition_penalty);
    luaL_addstring(&b, s);
    if (c->greedy || c->temperature == 0.0) {
        luaL_addstring(&b, "greedy (argmax)");
    } else {
        snprintf(s, sizeof s, "temperature=%g -> top_k=%lld%s -> top_p=%g -> min_p=%g -> sample", c->temperature,
                 (long long)c->top_k, c->top_k ? "" : " (off)", c->top_p, c->min_p);
        luaL_addstring(&b, s);
        if (u->seeded) snprintf(s, sizeof s, " (private stream, seed %llu)", (unsigned long long)u->seed);
        else snprintf(s, sizeof s, " (genlab stream)");
        luaL_addstring(&b, s);
    }
    luaL_pushresult(&b);
    return 1;
}

static int s_tostring(lua_State *L)
{
    sampler_ud *u = luaL_checkudata(L, 1, GL_LUA_SAMPLER);
    if (u->freed) return lua_pushliteral(L, "Sampler (freed)"), 1;
    s_describe(L);
    lua_pushfstring(L, "Sampler: %s", lua_tostring(L, -1));
    return 1;
}

/* --- top-k probabilities ----------------------------------------------------------- */

static int l_topk_probs(lua_State *L)
{
    gl_tensor *row = check_row(L, 1, "topk_probs");
    lua_Integer k = luaL_checkinteger(L, 2);
    if (k < 1 || k > row->numel)
        gl_lua_errorf(L, "topk_probs: k = %lld out of range 1..%lld", (long long)k, (long long)row->numel);
    int64_t shape[1] = {k};
    gl_lua_push(L, gl_tensor_empty(GL_F32, 1, shape));
    gl_tensor *probs = gl_lua_totensor(L, -1);
    gl_lua_push(L, gl_tensor_empty(GL_I64, 1, shape));
    gl_tensor *ids = gl_lua_totensor(L, -1);
    gl_lua_check(L, gl_softmax_topk_row(gl_tensor_f32(row), row->numel, k, gl_tensor_data(ids), gl_tensor_f32(probs)));
    return 2;
}

/* --- log-probabilities of given tokens ---------------------------------------------- */

static int l_token_logprobs(lua_State *L)
{
    gl_tensor *x = gl_lua_checktensor(L, 1);
    int64_t V = x->ndim ? x->shape[x->ndim - 1] : 0;
    if (x->dtype != GL_F32 || x->ndim == 0 || V < 1) {
        char s[128];
        gl_lua_errorf(L, "token_logprobs: logits must be f32 [..., V], got %s %s", gl_dtype_name(x->dtype),
                      gl_tensor_shape_str(x, s, sizeof s));
    }
    int64_t rows = x->numel / V, *ids;
    int64_t n = check_ids(L, 2, &ids, "token_logprobs");
    if (n != rows)
        gl_lua_errorf(L, "token_logprobs: %lld ids for %lld rows of logits", (long long)n, (long long)rows);
    for (int64_t r = 0; r < n; r++)
        if (ids[r] < 0 || ids[r] >= V)
            gl_lua_errorf(L, "token_logprobs: id %lld at %lld is outside the vocabulary [0, %lld)", (long long)ids[r],
                          (long long)(r + 1), (long long)V);
    float *row = lua_newuserdatauv(L, (size_t)V * sizeof *row, 0); /* scratch owned by the stack */
    int64_t shape[1] = {n};
    gl_lua_push(L, gl_tensor_empty(GL_F32, 1, shape));
    float *out = gl_tensor_f32(gl_lua_totensor(L, -1));
    const float *lg = gl_tensor_f32(x);
    for (int64_t r = 0; r < n; r++) {
        gl_log_softmax_row(row, lg + r * V, V);
        out[r] = row[ids[r]];
    }
    return 1;
}

/* --- GPT methods, implemented in lua/genlab/generate.lua --------------------------- */

static int forward_done(lua_State *L, int status, lua_KContext ctx)
{
    (void)status;
    (void)ctx;
    return lua_gettop(L);
}

/* Calls the Lua function with a continuation, so a generation running in a
 * workbench job can yield between tokens and stream to the screen. */
static int forward_to_lua(lua_State *L, const char *name)
{
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    if (lua_getfield(L, -1, "genlab.generate") != LUA_TTABLE || lua_getfield(L, -1, name) != LUA_TFUNCTION)
        return luaL_error(L, "%s: lua/genlab/generate.lua is not loaded (require \"genlab\")", name);
    lua_replace(L, -3);
    lua_pop(L, 1);
    lua_insert(L, 1);
    lua_callk(L, lua_gettop(L) - 1, LUA_MULTRET, 0, forward_done);
    return forward_done(L, LUA_OK, 0);
}

static int m_generate(lua_State *L) { return forward_to_lua(L, "generate"); }
static int m_logprobs(lua_State *L) { return forward_to_lua(L, "logprobs"); }
static int m_score(lua_State *L) { return forward_to_lua(L, "score"); }
static int m_topk(lua_State *L) { return forward_to_lua(L, "topk"); }

static const luaL_Reg gpt_methods[] = {
    {"generate", m_generate}, {"logprobs", m_logprobs}, {"score", m_score}, {"topk", m_topk}, {NULL, NULL},
};

/* --- registration ------------------------------------------------------------------ */

static const luaL_Reg sampler_methods[] = {
    {"sample", s_sample}, {"accept", s_accept}, {"reset", s_reset}, {"describe", s_describe},
    {"free", s_free},     {NULL, NULL},
};

static const luaL_Reg functions[] = {
    {"sample", l_sample},
    {"sampler", l_sampler},
    {"topk_probs", l_topk_probs},
    {"token_logprobs", l_token_logprobs},
    {NULL, NULL},
};

static void new_class(lua_State *L, const char *name, const luaL_Reg *methods, lua_CFunction gc, lua_CFunction tostring)
{
    luaL_newmetatable(L, name);
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, gc);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);
}

void gl_lua_open_sample(lua_State *L, int module_idx)
{
    new_class(L, GL_LUA_SAMPLER, sampler_methods, s_free, s_tostring);
    gl_lua_register(L, module_idx, functions, false);
    gl_lua_register_module_methods(L, GPT_CLASS, gpt_methods);
}
