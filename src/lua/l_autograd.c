/* Autograd from Lua: backward, requires_grad, detach, no_grad scopes. */
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
    gl_lua_check(L, gl_set_requires_grad(t, lua_isnone(L, 2) ? true : lua_toboolean(L, 2)));
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

static const luaL_Reg methods[] = {
    {"backward", l_backward}, {"requires_grad_", l_requires_grad_}, {"detach", l_detach},
    {"is_leaf", l_is_leaf},   {"grad_fn", l_grad_fn},               {NULL, NULL},
};

static const luaL_Reg functions[] = {
    {"no_grad", l_no_grad},
    {"set_grad_enabled", l_set_grad_enabled},
    {"is_grad_enabled", l_is_grad_enabled},
    {NULL, NULL},
};

void gl_lua_open_autograd(lua_State *L, int module_idx)
{
    gl_lua_register(L, module_idx, methods, true);
    gl_lua_register(L, module_idx, functions, false);
}
