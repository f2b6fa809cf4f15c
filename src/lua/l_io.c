/* Binding of the io area: gl.save / gl.load for safetensors files, and the
 * RNG state that a checkpoint carries (gl.rng_state / gl.set_rng_state).
 *
 *   gl.save(path, {name = tensor, ...} [, {metadata = {key = "value", ...}}])
 *   local tensors, metadata, names = gl.load(path)   -- names: file order
 *
 * All memory a call gathers is owned by the Lua stack, so a raised error
 * leaks nothing. */
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "io/safetensors.h"
#include "io/textfile.h"
#include "lua/binding.h"

#define RESULT_MT "genlab.safetensors"

typedef struct {
    const char *name;
    gl_tensor *t;
} named_tensor;

/* The Hugging Face writer's order: wider dtypes first, then names. It keeps
 * every tensor aligned in the data buffer and makes files deterministic. */
static int dtype_rank(gl_dtype dt)
{
    switch (dt) {
    case GL_I64: return 0;
    case GL_F32: return 1;
    case GL_I32: return 2;
    case GL_U8: return 3;
    default: return 4;
    }
}

static int cmp_tensor(const void *a, const void *b)
{
    const named_tensor *x = a, *y = b;
    int rx = dtype_rank(x->t->dtype), ry = dtype_rank(y->t->dtype);
    return rx != ry ? rx - ry : strcmp(x->name, y->name);
}

/* Metadata (key, value) pairs by key. */
static int cmp_pair(const void *a, const void *b)
{
    return strcmp(((const char *const *)a)[0], ((const char *const *)b)[0]);
}

/* The tensor table at idx, as an array on the stack (top). */
static named_tensor *gather_tensors(lua_State *L, int idx, int64_t *n)
{
    *n = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (lua_type(L, -2) != LUA_TSTRING)
            luaL_error(L, "save: the tensor table must map names to tensors, but has a %s key", luaL_typename(L, -2));
        gl_lua_tensor *u = luaL_testudata(L, -1, GL_LUA_TENSOR);
        if (!u) luaL_error(L, "save: entry '%s' is a %s, expected a tensor", lua_tostring(L, -2), luaL_typename(L, -1));
        if (!u->t) luaL_error(L, "save: entry '%s' is a freed tensor", lua_tostring(L, -2));
        (*n)++;
        lua_pop(L, 1);
    }
    named_tensor *items = lua_newuserdatauv(L, (size_t)*n * sizeof *items + 1, 0);
    int64_t i = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        items[i].name = lua_tostring(L, -2); /* the key stays alive in the table */
        items[i++].t = ((gl_lua_tensor *)lua_touserdata(L, -1))->t;
        lua_pop(L, 1);
    }
    qsort(items, (size_t)*n, sizeof *items, cmp_tensor);
    return items;
}

/* The metadata table at idx (may be nil) as sorted (key, value) pairs on the
 * stack (top); numbers become strings as tostring() writes them. */
static const char **gather_metadata(lua_State *L, int idx, int64_t *n)
{
    *n = 0;
    if (!lua_isnil(L, idx)) {
        if (!lua_istable(L, idx)) luaL_error(L, "save: option 'metadata' must be a table of strings");
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            if (lua_type(L, -2) != LUA_TSTRING)
                luaL_error(L, "save: metadata keys must be strings, got a %s", luaL_typename(L, -2));
            int ty = lua_type(L, -1);
            if (ty != LUA_TSTRING && ty != LUA_TNUMBER)
                luaL_error(L, "save: metadata '%s' is a %s, expected a string or a number", lua_tostring(L, -2),
                           luaL_typename(L, -1));
            (*n)++;
            lua_pop(L, 1);
        }
    }
    lua_newtable(L); /* keeps the strings made from numbers alive */
    int keep = lua_gettop(L);
    const char **pairs = lua_newuserdatauv(L, (size_t)*n * 2 * sizeof *pairs + 1, 0);
    int64_t i = 0;
    if (*n) {
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            pairs[2 * i] = lua_tostring(L, -2);
            pairs[2 * i + 1] = luaL_tolstring(L, -1, NULL);
            lua_rawseti(L, keep, i + 1);
            lua_pop(L, 1);
            i++;
        }
    }
    qsort(pairs, (size_t)*n, 2 * sizeof *pairs, cmp_pair);
    return pairs;
}

static int l_save(lua_State *L)
{
    static const char *const opts[] = {"metadata", NULL};
    const char *path = luaL_checkstring(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    if (!lua_isnoneornil(L, 3)) luaL_checktype(L, 3, LUA_TTABLE);
    gl_lua_check_options(L, 3, "save", opts);
    int64_t n, n_meta;
    named_tensor *items = gather_tensors(L, 2, &n);
    if (lua_istable(L, 3))
        lua_getfield(L, 3, "metadata");
    else
        lua_pushnil(L);
    const char **pairs = gather_metadata(L, lua_gettop(L), &n_meta);
    const char **names = lua_newuserdatauv(L, (size_t)n * sizeof *names + 1, 0);
    gl_tensor **tensors = lua_newuserdatauv(L, (size_t)n * sizeof *tensors + 1, 0);
    const char **keys = lua_newuserdatauv(L, (size_t)n_meta * 2 * sizeof *keys + 1, 0), **values = keys + n_meta;
    for (int64_t i = 0; i < n; i++) {
        names[i] = items[i].name;
        tensors[i] = items[i].t;
    }
    for (int64_t i = 0; i < n_meta; i++) {
        keys[i] = pairs[2 * i];
        values[i] = pairs[2 * i + 1];
    }
    gl_lua_check(L, gl_safetensors_save(path, n, names, tensors, n_meta, keys, values));
    return 0;
}

static int result_gc(lua_State *L)
{
    gl_safetensors_free(luaL_checkudata(L, 1, RESULT_MT));
    return 0;
}

static int l_load(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    /* The result lives in a userdata until each tensor is handed to Lua, so
     * an error on the way frees what is left. */
    gl_safetensors *r = lua_newuserdatauv(L, sizeof *r, 0);
    memset(r, 0, sizeof *r);
    luaL_setmetatable(L, RESULT_MT);
    gl_lua_check(L, gl_safetensors_load(path, r));
    lua_createtable(L, 0, r->n > 1000000 ? 0 : (int)r->n);
    int tensors = lua_gettop(L);
    lua_createtable(L, 0, r->n_meta > 1000000 ? 0 : (int)r->n_meta);
    int meta = lua_gettop(L);
    lua_createtable(L, r->n > 1000000 ? 0 : (int)r->n, 0);
    int names = lua_gettop(L);
    for (int64_t i = 0; i < r->n_meta; i++) {
        lua_pushstring(L, r->meta_values[i]);
        lua_setfield(L, meta, r->meta_keys[i]);
    }
    for (int64_t i = 0; i < r->n; i++) {
        gl_lua_push(L, r->tensors[i]);
        r->tensors[i] = NULL;
        lua_setfield(L, tensors, r->names[i]);
        lua_pushstring(L, r->names[i]);
        lua_rawseti(L, names, i + 1);
    }
    gl_safetensors_free(r);
    return 3;
}

/* rng_state() -> u8 tensor holding the generator's state. */
static int l_rng_state(lua_State *L)
{
    gl_rng_state s;
    gl_rng_get(&s);
    int64_t shape[1] = {(int64_t)sizeof s};
    gl_lua_push(L, gl_tensor_new(GL_U8, 1, shape));
    memcpy(gl_tensor_data(gl_lua_totensor(L, -1)), &s, sizeof s);
    return 1;
}

/* set_rng_state(t) restores a state from rng_state(). */
static int l_set_rng_state(lua_State *L)
{
    gl_tensor *t = gl_lua_checktensor(L, 1);
    gl_rng_state s;
    if (t->dtype != GL_U8 || t->ndim != 1 || t->numel != (int64_t)sizeof s) {
        char sh[128];
        return luaL_error(L, "set_rng_state: expected the u8 tensor of shape [%d] that rng_state() returns, got %s %s",
                          (int)sizeof s, gl_dtype_name(t->dtype), gl_tensor_shape_str(t, sh, sizeof sh));
    }
    memcpy(&s, gl_tensor_data(t), sizeof s);
    if (s.has_spare > 1 || (s.s[0] | s.s[1] | s.s[2] | s.s[3]) == 0)
        return luaL_error(L, "set_rng_state: the tensor does not hold a valid generator state");
    gl_rng_set(&s);
    return 0;
}

/* read_file(path) -> string: the whole file, gunzipped when it is gzip. */
static int l_read_file(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    char *data;
    size_t len;
    gl_lua_check(L, gl_read_file(path, &data, &len));
    lua_pushlstring(L, data, len);
    free(data);
    return 1;
}

static const luaL_Reg functions[] = {
    {"read_file", l_read_file},
    {"save", l_save}, {"load", l_load}, {"rng_state", l_rng_state}, {"set_rng_state", l_set_rng_state}, {NULL, NULL},
};

void gl_lua_open_io(lua_State *L, int module_idx)
{
    if (luaL_newmetatable(L, RESULT_MT)) {
        lua_pushcfunction(L, result_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    gl_lua_register(L, module_idx, functions, false);
}
