#include "lua/binding.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

gl_tensor *gl_lua_totensor(lua_State *L, int idx)
{
    gl_lua_tensor *u = luaL_testudata(L, idx, GL_LUA_TENSOR);
    return u ? u->t : NULL;
}

gl_tensor *gl_lua_checktensor(lua_State *L, int idx)
{
    gl_lua_tensor *u = luaL_testudata(L, idx, GL_LUA_TENSOR);
    if (!u) {
        luaL_typeerror(L, idx, "tensor");
        return NULL;
    }
    if (!u->t) luaL_error(L, "attempt to use a freed tensor");
    return u->t;
}

gl_tensor *gl_lua_operand(lua_State *L, int idx)
{
    if (lua_type(L, idx) == LUA_TNUMBER) {
        float v = (float)lua_tonumber(L, idx);
        return gl_lua_push(L, gl_tensor_scalar(v)), gl_lua_totensor(L, -1);
    }
    return gl_lua_checktensor(L, idx);
}

int gl_lua_errorf(lua_State *L, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return luaL_error(L, "%s", msg);
}

int gl_lua_fail(lua_State *L) { return luaL_error(L, "%s", gl_error_message()); }

void gl_lua_check(lua_State *L, gl_status st)
{
    if (st != GL_OK) gl_lua_fail(L);
}

int gl_lua_push(lua_State *L, gl_tensor *t)
{
    if (!t) return gl_lua_fail(L);
    gl_lua_tensor *u = lua_newuserdatauv(L, sizeof *u, 1);
    u->t = t;
    luaL_setmetatable(L, GL_LUA_TENSOR);
    /* The collector only sees the small userdata; make it pay for the tensor's
     * bytes too, so Lua loops keep flat memory without collectgarbage(). Lua
     * starts a cycle after about twice its heap of allocation debt, and the
     * heap of a genlab script is often under a megabyte: counted as they are,
     * tensor bytes ran a full cycle per megabyte of tensors, ~100 cycles per
     * UNet forward and 11-13% of DDIM sampling. The bytes are scaled so that
     * a cycle comes per GC_TENSOR_CYCLE_KB of tensors at least (bounding the
     * garbage awaiting a sweep to about that) and per twice the heap when the
     * heap is larger. */
    enum { GC_TENSOR_CYCLE_KB = 16 << 10 };
    static double debt_kb;
    double heap_kb = lua_gc(L, LUA_GCCOUNT, 0);
    double cycle_kb = 2 * heap_kb > GC_TENSOR_CYCLE_KB ? 2 * heap_kb : GC_TENSOR_CYCLE_KB;
    debt_kb += (double)(gl_tensor_nbytes(t) + sizeof *t) / 1024 * (2 * heap_kb / cycle_kb);
    if (debt_kb >= 1) {
        int kb = debt_kb > (1 << 20) ? (1 << 20) : (int)debt_kb;
        lua_gc(L, LUA_GCSTEP, kb);
        debt_kb -= kb;
    }
    return 1;
}

int gl_lua_checkdim(lua_State *L, int idx, const gl_tensor *t, const char *op)
{
    lua_Integer d = luaL_checkinteger(L, idx);
    int nd = t->ndim == 0 ? 1 : t->ndim;
    lua_Integer z = d > 0 ? d - 1 : d + nd;
    if (d == 0 || z < 0 || z >= nd) {
        char s[128];
        luaL_error(L, "%s: dim %d out of range for shape %s (use 1..%d or -%d..-1)", op, (int)d,
                   gl_tensor_shape_str(t, s, sizeof s), nd, nd);
    }
    return (int)z;
}

int gl_lua_optdim(lua_State *L, int idx, const gl_tensor *t, const char *op, int def)
{
    return lua_isnoneornil(L, idx) ? def : gl_lua_checkdim(L, idx, t, op);
}

int gl_lua_checkshape(lua_State *L, int idx, int64_t *shape, const char *op)
{
    int n;
    if (lua_istable(L, idx)) {
        n = (int)luaL_len(L, idx);
        if (n > GL_MAX_DIMS) luaL_error(L, "%s: shape has %d dims (at most %d)", op, n, GL_MAX_DIMS);
        for (int k = 0; k < n; k++) {
            lua_geti(L, idx, k + 1);
            if (!lua_isinteger(L, -1)) luaL_error(L, "%s: shape entry %d is not an integer", op, k + 1);
            shape[k] = lua_tointeger(L, -1);
            lua_pop(L, 1);
        }
    } else {
        int top = lua_gettop(L);
        n = top - idx + 1;
        if (n < 0) n = 0;
        if (n > GL_MAX_DIMS) luaL_error(L, "%s: shape has %d dims (at most %d)", op, n, GL_MAX_DIMS);
        for (int k = 0; k < n; k++) shape[k] = luaL_checkinteger(L, idx + k);
    }
    for (int k = 0; k < n; k++)
        if (shape[k] < 0) gl_lua_errorf(L, "%s: negative size %lld in shape", op, (long long)shape[k]);
    return n;
}

double gl_lua_optfield_number(lua_State *L, int idx, const char *key, double def)
{
    if (idx == 0 || !lua_istable(L, idx)) return def;
    lua_getfield(L, idx, key);
    double v = def;
    if (!lua_isnil(L, -1)) {
        if (!lua_isnumber(L, -1)) luaL_error(L, "option '%s' must be a number", key);
        v = lua_tonumber(L, -1);
    }
    lua_pop(L, 1);
    return v;
}

bool gl_lua_optfield_bool(lua_State *L, int idx, const char *key, bool def)
{
    if (idx == 0 || !lua_istable(L, idx)) return def;
    lua_getfield(L, idx, key);
    bool v = lua_isnil(L, -1) ? def : lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

void gl_lua_check_options(lua_State *L, int idx, const char *op, const char *const *allowed)
{
    if (idx == 0 || !lua_istable(L, idx)) return;
    idx = lua_absindex(L, idx);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        bool known = false;
        if (lua_type(L, -1) == LUA_TSTRING)
            for (const char *const *a = allowed; *a && !known; a++) known = strcmp(*a, lua_tostring(L, -1)) == 0;
        if (!known) {
            const char *key = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : luaL_typename(L, -1);
            luaL_error(L, "%s: unknown option '%s'", op, key);
        }
    }
}

void gl_lua_register(lua_State *L, int module_idx, const luaL_Reg *funcs, bool as_methods)
{
    module_idx = lua_absindex(L, module_idx);
    luaL_getsubtable(L, LUA_REGISTRYINDEX, GL_LUA_METHODS);
    for (const luaL_Reg *f = funcs; f->name; f++) {
        lua_pushcfunction(L, f->func);
        lua_setfield(L, module_idx, f->name);
        if (as_methods) {
            lua_pushcfunction(L, f->func);
            lua_setfield(L, -2, f->name);
        }
    }
    lua_pop(L, 1);
}
