/* Autograd from Lua: backward, requires_grad, detach, no_grad scopes. */
#include <stdlib.h>

#include "autograd/tape.h"
#include "lua/binding.h"

static const char *const backward_opts[] = {"retain_graph", NULL};

/* t:backward([grad] [, {retain_graph=false}]) */
static int l_backward(lua_State *L)
{
    gl_tensor *t = gl_lua_checktensor(L, 1);
    gl_tensor *grad = NULL;
    int opts = 0;
    if (lua_istable(L, 2)) {
        opts = 2;
    } else if (!lua_isnoneornil(L, 2)) {
        grad = gl_lua_checktensor(L, 2);
        if (lua_istable(L, 3)) opts = 3;
    }
    if (opts) gl_lua_check_options(L, opts, "backward", backward_opts);
    bool retain = gl_lua_optfield_bool(L, opts, "retain_graph", false);
    gl_lua_check(L, gl_backward(t, grad, retain));
    return 0;
}

static int l_requires_grad_(lua_State *L)
{
    gl_tensor *t = gl_lua_checktensor(L, 1);
    gl_lua_check(L, gl_set_requires_grad(t, lua_isnoneornil(L, 2) ? true : lua_toboolean(L, 2)));
    lua_settop(L, 1);
    return 1;
}

static int l_detach(lua_State *L) { return gl_lua_push(L, gl_detach(gl_lua_checktensor(L, 1))); }

static int l_is_leaf(lua_State *L)
{
    lua_pushboolean(L, gl_lua_checktensor(L, 1)->grad_fn == NULL);
    return 1;
}

static int l_grad_fn(lua_State *L)
{
    gl_tensor *t = gl_lua_checktensor(L, 1);
    if (t->grad_fn)
        lua_pushstring(L, t->grad_fn->op);
    else
        lua_pushnil(L);
    return 1;
}

/* no_grad(f, ...) calls f(...) with recording off and returns its results;
 * the previous setting comes back even when f raises. */
static int no_grad_call(lua_State *L)
{
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    return lua_gettop(L);
}

static int l_no_grad(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    bool was = gl_grad_set_enabled(false);
    lua_pushcfunction(L, no_grad_call);
    lua_insert(L, 1);
    int st = lua_pcall(L, lua_gettop(L) - 1, LUA_MULTRET, 0);
    gl_grad_set_enabled(was);
    if (st != LUA_OK) return lua_error(L);
    return lua_gettop(L);
}

static int l_set_grad_enabled(lua_State *L)
{
    lua_pushboolean(L, gl_grad_set_enabled(lua_toboolean(L, 1)));
    return 1;
}

static int l_is_grad_enabled(lua_State *L)
{
    lua_pushboolean(L, gl_grad_enabled());
    return 1;
}

/* Custom differentiable functions written in Lua:
 *   local Square = gl.Function{ forward = function(ctx, x) ctx.x = x; return x * x end,
 *                               backward = function(ctx, g) return g * 2 * ctx.x end }
 * forward runs with recording off; backward returns one gradient (or nil)
 * per tensor argument. The node keeps {backward, ctx} in the registry. */
typedef struct {
    lua_State *L;
    int ref; /* registry: {backward, ctx} */
} lua_fn_extra;

static void lua_fn_free(void *p)
{
    lua_fn_extra *e = p;
    luaL_unref(e->L, LUA_REGISTRYINDEX, e->ref);
    free(e);
}

static gl_status lua_fn_backward(gl_node *nd)
{
    lua_fn_extra *e = nd->extra;
    lua_State *L = e->L;
    int top = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, e->ref);
    lua_rawgeti(L, -1, 1);
    lua_rawgeti(L, -2, 2);
    gl_tensor_retain(nd->gout);
    gl_lua_push(L, nd->gout);
    bool was = gl_grad_set_enabled(false);
    int st = lua_pcall(L, 2, nd->n_inputs, 0);
    gl_grad_set_enabled(was);
    if (st != LUA_OK) {
        gl_status err = gl_error(GL_EINVAL, "Function backward: %s", lua_tostring(L, -1));
        lua_settop(L, top);
        return err;
    }
    gl_status res = GL_OK;
    for (int k = 0; k < nd->n_inputs && res == GL_OK; k++) {
        int idx = lua_gettop(L) - nd->n_inputs + 1 + k;
        gl_tensor *g = gl_lua_totensor(L, idx);
        float *buf;
        if (lua_isnil(L, idx)) continue; /* no gradient for this input: leave .grad alone */
        if ((res = gl_node_grad(nd, k, &buf)) != GL_OK || !buf) continue;
        char a[128], b[128];
        if (!g || g->dtype != GL_F32 || g->numel != nd->inputs[k]->numel) {
            res = gl_error(GL_EINVAL, "Function backward: gradient %d must be an f32 tensor of shape %s%s%s", k + 1,
                           gl_tensor_shape_str(nd->inputs[k], a, sizeof a), g ? ", got " : "",
                           g ? gl_tensor_shape_str(g, b, sizeof b) : "");
            continue;
        }
        const float *pg = gl_tensor_f32(g);
        for (int64_t i = 0; i < g->numel; i++) buf[i] += pg[i];
    }
    lua_settop(L, top);
    return res;
}

/* __call of a Function object: upvalue 1 is forward, 2 is backward. */
static int lua_fn_call(lua_State *L)
{
    int nargs = lua_gettop(L) - 1; /* arg 1 is the Function object itself */
    gl_tensor *ins[GL_NODE_MAX_INPUTS];
    int n = 0;
    for (int k = 2; k <= nargs + 1; k++) {
        gl_tensor *t = gl_lua_totensor(L, k);
        if (!t) continue;
        if (n == GL_NODE_MAX_INPUTS)
            return luaL_error(L, "Function: at most %d tensor arguments", GL_NODE_MAX_INPUTS);
        ins[n++] = t;
    }
    lua_newtable(L); /* ctx */
    int ctx = lua_gettop(L);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushvalue(L, ctx);
    for (int k = 2; k <= nargs + 1; k++) lua_pushvalue(L, k);
    bool was = gl_grad_set_enabled(false);
    int st = lua_pcall(L, nargs + 1, 1, 0);
    gl_grad_set_enabled(was);
    if (st != LUA_OK) return lua_error(L);
    gl_tensor *res = gl_lua_totensor(L, -1);
    if (!res) return luaL_error(L, "Function: forward must return a tensor, got %s", luaL_typename(L, -1));
    if (!gl_autograd_needed(n, ins)) return 1;
    /* record on a fresh alias so that returning an input unchanged cannot rewire it */
    gl_lua_push(L, gl_detach(res));
    gl_tensor *out = gl_lua_totensor(L, -1);
    lua_fn_extra *e = malloc(sizeof *e);
    if (!e) return luaL_error(L, "Function: out of memory");
    lua_createtable(L, 2, 0);
    lua_pushvalue(L, lua_upvalueindex(2));
    lua_rawseti(L, -2, 1);
    lua_pushvalue(L, ctx);
    lua_rawseti(L, -2, 2);
    e->L = L;
    e->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    gl_node *nd;
    if (gl_autograd_record(&nd, out, "Function", lua_fn_backward, n, ins) != GL_OK) {
        lua_fn_free(e);
        return gl_lua_fail(L);
    }
    nd->extra = e;
    nd->extra_free = lua_fn_free;
    return 1;
}

static const char *const function_opts[] = {"forward", "backward", NULL};

/* Function{forward = f, backward = g} -> a callable object. */
static int l_function(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    gl_lua_check_options(L, 1, "Function", function_opts);
    lua_getfield(L, 1, "forward");
    lua_getfield(L, 1, "backward");
    if (!lua_isfunction(L, -2) || !lua_isfunction(L, -1))
        return luaL_error(L, "Function: both 'forward' and 'backward' must be functions");
    lua_newtable(L);
    lua_createtable(L, 0, 1);
    lua_pushvalue(L, -4);
    lua_pushvalue(L, -4);
    lua_pushcclosure(L, lua_fn_call, 2);
    lua_setfield(L, -2, "__call");
    lua_setmetatable(L, -2);
    return 1;
}

static const luaL_Reg methods[] = {
    {"backward", l_backward}, {"requires_grad_", l_requires_grad_}, {"detach", l_detach},
    {"is_leaf", l_is_leaf},   {"grad_fn", l_grad_fn},               {NULL, NULL},
};

static const luaL_Reg functions[] = {
    {"no_grad", l_no_grad},
    {"Function", l_function},
    {"set_grad_enabled", l_set_grad_enabled},
    {"is_grad_enabled", l_is_grad_enabled},
    {NULL, NULL},
};

void gl_lua_open_autograd(lua_State *L, int module_idx)
{
    gl_lua_register(L, module_idx, methods, true);
    gl_lua_register(L, module_idx, functions, false);
}
