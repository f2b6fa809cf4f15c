/* The Tensor userdata: life cycle, constructors, properties, conversions,
 * printing and indexing. Arithmetic metamethods live in l_math.c. */
#include <stdlib.h>
#include <string.h>

#include "autograd/tape.h"
#include "core/print.h"
#include "lua/binding.h"
#include "ops/create.h"

/* __gc, __close and :free() are this one idempotent function. */
static int l_free(lua_State *L)
{
    gl_lua_tensor *u = luaL_checkudata(L, 1, GL_LUA_TENSOR);
    gl_tensor_release(u->t);
    u->t = NULL;
    return 0;
}

/* Options table at idx may carry dtype = "f32" | "i64" | ...; returns def otherwise. */
static gl_dtype opt_dtype(lua_State *L, int idx, gl_dtype def, const char *op)
{
    if (idx == 0 || !lua_istable(L, idx)) return def;
    lua_getfield(L, idx, "dtype");
    gl_dtype dt = def;
    if (!lua_isnil(L, -1)) {
        const char *name = luaL_checkstring(L, -1);
        int d = gl_dtype_from_name(name);
        if (d < 0) luaL_error(L, "%s: unknown dtype '%s' (use f32, i32, i64 or u8)", op, name);
        dt = (gl_dtype)d;
    }
    lua_pop(L, 1);
    return dt;
}

/* Shape arguments: a table {2,3} or numbers 2, 3, optionally followed by an options table. */
static int shape_args(lua_State *L, int64_t *shape, int *opts_idx, const char *op)
{
    int top = lua_gettop(L);
    *opts_idx = 0;
    if (lua_istable(L, 1)) {
        if (top >= 2) *opts_idx = 2;
        return gl_lua_checkshape(L, 1, shape, op);
    }
    int n = top;
    if (top >= 1 && lua_istable(L, top)) {
        *opts_idx = top;
        n = top - 1;
    }
    if (n > GL_MAX_DIMS) luaL_error(L, "%s: shape has %d dims (at most %d)", op, n, GL_MAX_DIMS);
    for (int k = 0; k < n; k++) {
        shape[k] = luaL_checkinteger(L, k + 1);
        if (shape[k] < 0) gl_lua_errorf(L, "%s: negative size %lld in shape", op, (long long)shape[k]);
    }
    return n;
}

static const char *const create_opts[] = {"dtype", "requires_grad", NULL};
static const char *const random_opts[] = {"requires_grad", NULL}; /* rand and randn draw f32 only */
static const char *const dtype_opts[] = {"dtype", NULL};

static int finish_new(lua_State *L, gl_tensor *t, int opts_idx)
{
    gl_lua_push(L, t);
    if (opts_idx && gl_lua_optfield_bool(L, opts_idx, "requires_grad", false))
        gl_lua_check(L, gl_set_requires_grad(t, true));
    return 1;
}

static int filled(lua_State *L, const char *op, double value)
{
    int64_t shape[GL_MAX_DIMS];
    int opts;
    int nd = shape_args(L, shape, &opts, op);
    if (opts) gl_lua_check_options(L, opts, op, create_opts);
    return finish_new(L, gl_full(opt_dtype(L, opts, GL_F32, op), nd, shape, value), opts);
}

static int l_zeros(lua_State *L) { return filled(L, "zeros", 0.0); }
static int l_ones(lua_State *L) { return filled(L, "ones", 1.0); }

/* full(shape-table, value [, {dtype=, requires_grad=}]) */
static int l_full(lua_State *L)
{
    int64_t shape[GL_MAX_DIMS];
    if (!lua_istable(L, 1)) return luaL_error(L, "full: shape must be a table, e.g. gl.full({2, 3}, 7)");
    int nd = gl_lua_checkshape(L, 1, shape, "full");
    double v = luaL_checknumber(L, 2);
    gl_lua_check_options(L, 3, "full", create_opts);
    return finish_new(L, gl_full(opt_dtype(L, 3, GL_F32, "full"), nd, shape, v), lua_istable(L, 3) ? 3 : 0);
}

static int l_rand(lua_State *L)
{
    int64_t shape[GL_MAX_DIMS];
    int opts;
    int nd = shape_args(L, shape, &opts, "rand");
    if (opts) gl_lua_check_options(L, opts, "rand", random_opts);
    return finish_new(L, gl_rand(nd, shape), opts);
}

static int l_randn(lua_State *L)
{
    int64_t shape[GL_MAX_DIMS];
    int opts;
    int nd = shape_args(L, shape, &opts, "randn");
    if (opts) gl_lua_check_options(L, opts, "randn", random_opts);
    return finish_new(L, gl_randn(nd, shape), opts);
}

/* randint(low, high, shape-table [, {dtype="i64"}]) */
static int l_randint(lua_State *L)
{
    lua_Integer lo = luaL_checkinteger(L, 1), hi = luaL_checkinteger(L, 2);
    int64_t shape[GL_MAX_DIMS];
    if (!lua_istable(L, 3)) return luaL_error(L, "randint: shape must be a table, e.g. gl.randint(0, 10, {4})");
    int nd = gl_lua_checkshape(L, 3, shape, "randint");
    gl_lua_check_options(L, 4, "randint", dtype_opts);
    gl_dtype dt = opt_dtype(L, lua_istable(L, 4) ? 4 : 0, GL_I64, "randint");
    if (dt == GL_I64) return gl_lua_push(L, gl_randint(lo, hi, nd, shape));
    gl_lua_push(L, gl_randint(lo, hi, nd, shape));
    return gl_lua_push(L, gl_to_dtype(gl_lua_totensor(L, -1), dt));
}

/* arange(stop) | arange(start, stop [, step]) [, {dtype=}] */
static int l_arange(lua_State *L)
{
    int top = lua_gettop(L), opts = 0;
    if (top && lua_istable(L, top)) opts = top--;
    if (opts) gl_lua_check_options(L, opts, "arange", dtype_opts);
    double start = 0, stop, step = 1;
    if (top == 1) {
        stop = luaL_checknumber(L, 1);
    } else {
        start = luaL_checknumber(L, 1);
        stop = luaL_checknumber(L, 2);
        step = luaL_optnumber(L, 3, 1);
    }
    gl_dtype def = (lua_isinteger(L, 1) && (top < 2 || lua_isinteger(L, 2)) && (top < 3 || lua_isinteger(L, 3)))
                       ? GL_I64 : GL_F32;
    return gl_lua_push(L, gl_arange(opt_dtype(L, opts, def, "arange"), start, stop, step));
}

static int l_linspace(lua_State *L)
{
    return gl_lua_push(L, gl_linspace(luaL_checknumber(L, 1), luaL_checknumber(L, 2), luaL_checkinteger(L, 3)));
}

static int l_eye(lua_State *L) { return gl_lua_push(L, gl_eye(luaL_checkinteger(L, 1))); }

/* Walks a nested table to find its shape; raises on ragged input. */
static void table_shape(lua_State *L, int idx, int depth, int *ndim, int64_t *shape)
{
    int64_t n = (int64_t)luaL_len(L, idx);
    if (depth >= GL_MAX_DIMS) luaL_error(L, "tensor: nesting deeper than %d dims", GL_MAX_DIMS);
    if (depth >= *ndim) {
        *ndim = depth + 1;
        shape[depth] = n;
    } else if (shape[depth] != n) {
        gl_lua_errorf(L, "tensor: ragged nested table (dim %d has lengths %lld and %lld)", depth + 1,
                   (long long)shape[depth], (long long)n);
    }
    if (n == 0) return;
    lua_geti(L, idx, 1);
    if (lua_istable(L, -1)) table_shape(L, lua_gettop(L), depth + 1, ndim, shape);
    lua_pop(L, 1);
}

static void table_fill(lua_State *L, int idx, int depth, int ndim, gl_tensor *t, int64_t *pos)
{
    int64_t n = (int64_t)luaL_len(L, idx);
    if (n != t->shape[depth]) luaL_error(L, "tensor: ragged nested table at dim %d", depth + 1);
    for (int64_t i = 1; i <= n; i++) {
        lua_geti(L, idx, i);
        if (depth + 1 < ndim) {
            if (!lua_istable(L, -1)) luaL_error(L, "tensor: ragged nested table at dim %d", depth + 2);
            table_fill(L, lua_gettop(L), depth + 1, ndim, t, pos);
        } else {
            if (!lua_isnumber(L, -1) && !lua_isboolean(L, -1))
                gl_lua_errorf(L, "tensor: element %lld is a %s, expected a number", (long long)*pos + 1,
                           luaL_typename(L, -1));
            double v = lua_isboolean(L, -1) ? lua_toboolean(L, -1) : lua_tonumber(L, -1);
            gl_tensor_set(t, (*pos)++, v);
        }
        lua_pop(L, 1);
    }
}

/* tensor(number | nested table [, {dtype=, requires_grad=}]) */
static int l_tensor(lua_State *L)
{
    gl_lua_check_options(L, 2, "tensor", create_opts);
    if (lua_type(L, 1) == LUA_TNUMBER) {
        gl_dtype dt = opt_dtype(L, 2, GL_F32, "tensor");
        gl_tensor *t = gl_tensor_new(dt, 0, NULL);
        if (t) gl_tensor_set(t, 0, lua_tonumber(L, 1));
        return finish_new(L, t, lua_istable(L, 2) ? 2 : 0);
    }
    luaL_checktype(L, 1, LUA_TTABLE);
    int64_t shape[GL_MAX_DIMS] = {0};
    int ndim = 0;
    table_shape(L, 1, 0, &ndim, shape);
    gl_dtype dt = opt_dtype(L, 2, GL_F32, "tensor");
    gl_lua_push(L, gl_tensor_new(dt, ndim, shape));
    gl_tensor *t = gl_lua_totensor(L, -1);
    int64_t pos = 0;
    table_fill(L, 1, 0, ndim, t, &pos);
    if (gl_lua_optfield_bool(L, 2, "requires_grad", false)) gl_lua_check(L, gl_set_requires_grad(t, true));
    return 1;
}

static int l_shape(lua_State *L)
{
    gl_tensor *t = gl_lua_checktensor(L, 1);
    lua_createtable(L, t->ndim, 0);
    for (int k = 0; k < t->ndim; k++) {
        lua_pushinteger(L, t->shape[k]);
        lua_rawseti(L, -2, k + 1);
    }
    return 1;
}

static int l_size(lua_State *L)
{
    gl_tensor *t = gl_lua_checktensor(L, 1);
    if (lua_isnoneornil(L, 2)) return l_shape(L);
    int d = gl_lua_checkdim(L, 2, t, "size");
    lua_pushinteger(L, t->ndim ? t->shape[d] : 1);
    return 1;
}

static int l_dim(lua_State *L)
{
    lua_pushinteger(L, gl_lua_checktensor(L, 1)->ndim);
    return 1;
}

static int l_numel(lua_State *L)
{
    lua_pushinteger(L, gl_lua_checktensor(L, 1)->numel);
    return 1;
}

static int l_dtype(lua_State *L)
{
    lua_pushstring(L, gl_dtype_name(gl_lua_checktensor(L, 1)->dtype));
    return 1;
}

static void push_element(lua_State *L, const gl_tensor *t, int64_t i)
{
    if (gl_dtype_is_int(t->dtype))
        lua_pushinteger(L, (lua_Integer)gl_tensor_get(t, i));
    else
        lua_pushnumber(L, gl_tensor_get(t, i));
}

static int l_item(lua_State *L)
{
    gl_tensor *t = gl_lua_checktensor(L, 1);
    if (t->numel != 1) {
        char s[128];
        return gl_lua_errorf(L, "item: tensor of shape %s has %lld elements, expected 1",
                          gl_tensor_shape_str(t, s, sizeof s), (long long)t->numel);
    }
    push_element(L, t, 0);
    return 1;
}

static void tolist(lua_State *L, const gl_tensor *t, int d, int64_t base)
{
    int64_t inner = 1;
    for (int k = d + 1; k < t->ndim; k++) inner *= t->shape[k];
    lua_createtable(L, (int)t->shape[d], 0);
    for (int64_t i = 0; i < t->shape[d]; i++) {
        if (d == t->ndim - 1)
            push_element(L, t, base + i);
        else
            tolist(L, t, d + 1, base + i * inner);
        lua_rawseti(L, -2, i + 1);
    }
}

/* In-place writes to a tensor the tape tracks would corrupt gradients, as
 * in PyTorch; optimizers and initializers write inside no_grad. */
static void check_writable(lua_State *L, const gl_tensor *t, const char *op)
{
    if (t->requires_grad && gl_grad_enabled())
        luaL_error(L, "%s: in-place change of a tensor that requires grad (wrap it in gl.no_grad)", op);
}

/* Linear position (1-based, row-major) into the data, checked. */
static int64_t flat_pos(lua_State *L, const gl_tensor *t, int idx, const char *op)
{
    lua_Integer i = luaL_checkinteger(L, idx);
    if (i < 1 || i > t->numel)
        gl_lua_errorf(L, "%s: position %lld out of range 1..%lld", op, (long long)i, (long long)t->numel);
    return i - 1;
}

/* t:getflat(i) reads element i of the row-major data, whatever the shape. */
static int l_getflat(lua_State *L)
{
    gl_tensor *t = gl_lua_checktensor(L, 1);
    push_element(L, t, flat_pos(L, t, 2, "getflat"));
    return 1;
}

/* t:setflat(i, v) writes element i in place (no autograd). */
static int l_setflat(lua_State *L)
{
    gl_tensor *t = gl_lua_checktensor(L, 1);
    int64_t i = flat_pos(L, t, 2, "setflat");
    check_writable(L, t, "setflat");
    double v = luaL_checknumber(L, 3);
    if (t->storage->readonly) return luaL_error(L, "setflat: tensor is read-only");
    gl_tensor_set(t, i, v);
    return 0;
}

static int l_tolist(lua_State *L)
{
    gl_tensor *t = gl_lua_checktensor(L, 1);
    if (t->ndim == 0)
        push_element(L, t, 0);
    else
        tolist(L, t, 0, 0);
    return 1;
}

static int l_to(lua_State *L)
{
    gl_tensor *t = gl_lua_checktensor(L, 1);
    const char *name = luaL_checkstring(L, 2);
    int dt = gl_dtype_from_name(name);
    if (dt < 0) return luaL_error(L, "to: unknown dtype '%s' (use f32, i32, i64 or u8)", name);
    return gl_lua_push(L, gl_to_dtype(t, (gl_dtype)dt));
}

static int convert(lua_State *L, gl_dtype dt) { return gl_lua_push(L, gl_to_dtype(gl_lua_checktensor(L, 1), dt)); }
static int l_float(lua_State *L) { return convert(L, GL_F32); }
static int l_long(lua_State *L) { return convert(L, GL_I64); }
static int l_int(lua_State *L) { return convert(L, GL_I32); }
static int l_byte(lua_State *L) { return convert(L, GL_U8); }

static int l_fill_(lua_State *L)
{
    gl_tensor *t = gl_lua_checktensor(L, 1);
    check_writable(L, t, "fill_");
    gl_lua_check(L, gl_fill_(t, luaL_checknumber(L, 2)));
    lua_settop(L, 1);
    return 1;
}

static int l_zero_(lua_State *L)
{
    gl_tensor *t = gl_lua_checktensor(L, 1);
    check_writable(L, t, "zero_");
    gl_lua_check(L, gl_fill_(t, 0.0));
    lua_settop(L, 1);
    return 1;
}

static int l_copy_(lua_State *L)
{
    gl_tensor *dst = gl_lua_checktensor(L, 1), *src = gl_lua_checktensor(L, 2);
    check_writable(L, dst, "copy_");
    gl_lua_check(L, gl_copy_(dst, src));
    lua_settop(L, 1);
    return 1;
}

static int l_tostring(lua_State *L)
{
    gl_lua_tensor *u = luaL_checkudata(L, 1, GL_LUA_TENSOR);
    if (!u->t) {
        lua_pushliteral(L, "tensor(freed)");
        return 1;
    }
    char *s = gl_tensor_format(u->t);
    if (!s) return luaL_error(L, "tostring: out of memory");
    lua_pushstring(L, s);
    free(s);
    return 1;
}

static int l_len(lua_State *L)
{
    gl_tensor *t = gl_lua_checktensor(L, 1);
    if (t->ndim == 0) return luaL_error(L, "len: a 0-dim tensor has no length");
    lua_pushinteger(L, t->shape[0]);
    return 1;
}

static int l_is_tensor(lua_State *L)
{
    lua_pushboolean(L, luaL_testudata(L, 1, GL_LUA_TENSOR) != NULL);
    return 1;
}

/* t[i] is t:select(1, i) (a number for 1-D tensors); t.name looks up a method. */
static int l_index(lua_State *L)
{
    if (lua_type(L, 2) == LUA_TNUMBER) {
        gl_tensor *t = gl_lua_checktensor(L, 1);
        if (t->ndim == 0) return luaL_error(L, "index: cannot index a 0-dim tensor");
        lua_Integer i = luaL_checkinteger(L, 2);
        lua_Integer z = i > 0 ? i - 1 : i + t->shape[0];
        if (i == 0 || z < 0 || z >= t->shape[0]) {
            char s[128];
            return gl_lua_errorf(L, "index: position %lld out of range for dim 1 of shape %s (1..%lld)", (long long)i,
                              gl_tensor_shape_str(t, s, sizeof s), (long long)t->shape[0]);
        }
        if (t->ndim == 1) {
            push_element(L, t, z);
            return 1;
        }
        lua_getfield(L, LUA_REGISTRYINDEX, GL_LUA_METHODS);
        lua_getfield(L, -1, "select");
        lua_pushvalue(L, 1);
        lua_pushinteger(L, 1);
        lua_pushinteger(L, z + 1);
        lua_call(L, 3, 1);
        return 1;
    }
    const char *key = lua_tostring(L, 2);
    if (key && strcmp(key, "grad") == 0) { /* the accumulated gradient, shared, or nil */
        gl_tensor *t = gl_lua_checktensor(L, 1);
        if (!t->grad) return lua_pushnil(L), 1;
        gl_tensor_retain(t->grad);
        return gl_lua_push(L, t->grad);
    }
    if (key && strcmp(key, "requires_grad") == 0) {
        lua_pushboolean(L, gl_lua_checktensor(L, 1)->requires_grad);
        return 1;
    }
    lua_getfield(L, LUA_REGISTRYINDEX, GL_LUA_METHODS);
    lua_pushvalue(L, 2);
    lua_rawget(L, -2);
    return 1;
}

/* t[i] = number | tensor: fills or copies into the i-th slice of dim 1. */
static int l_newindex(lua_State *L)
{
    gl_tensor *t = gl_lua_checktensor(L, 1);
    const char *key = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : NULL;
    if (key && strcmp(key, "grad") == 0) { /* t.grad = nil drops the gradient */
        if (!lua_isnil(L, 3)) return luaL_error(L, "grad: only nil can be assigned (use t.grad:copy_(g))");
        gl_tensor_release(t->grad);
        t->grad = NULL;
        return 0;
    }
    if (key && strcmp(key, "requires_grad") == 0) {
        gl_lua_check(L, gl_set_requires_grad(t, lua_toboolean(L, 3)));
        return 0;
    }
    if (key) return luaL_error(L, "tensor: cannot set field '%s'", key);
    lua_Integer i = luaL_checkinteger(L, 2);
    if (t->ndim == 0) return luaL_error(L, "index: cannot index a 0-dim tensor");
    lua_Integer z = i > 0 ? i - 1 : i + t->shape[0];
    if (i == 0 || z < 0 || z >= t->shape[0]) {
        char s[128];
        return gl_lua_errorf(L, "index: position %lld out of range for dim 1 of shape %s", (long long)i,
                          gl_tensor_shape_str(t, s, sizeof s));
    }
    check_writable(L, t, "index");
    int64_t inner = t->numel / t->shape[0];
    gl_lua_push(L, gl_tensor_from_storage(t->storage, t->offset + (size_t)(z * inner) * gl_dtype_size(t->dtype),
                                          t->dtype, t->ndim - 1, t->shape + 1));
    gl_tensor *slice = gl_lua_totensor(L, -1);
    if (lua_type(L, 3) == LUA_TNUMBER)
        gl_lua_check(L, gl_fill_(slice, lua_tonumber(L, 3)));
    else
        gl_lua_check(L, gl_copy_(slice, gl_lua_checktensor(L, 3)));
    return 0;
}

static const luaL_Reg functions[] = {
    {"tensor", l_tensor}, {"zeros", l_zeros},     {"ones", l_ones},   {"full", l_full},
    {"rand", l_rand},     {"randn", l_randn},     {"randint", l_randint}, {"arange", l_arange},
    {"linspace", l_linspace}, {"eye", l_eye},     {"is_tensor", l_is_tensor}, {NULL, NULL},
};

static const luaL_Reg methods[] = {
    {"free", l_free},   {"shape", l_shape}, {"size", l_size},     {"dim", l_dim},       {"numel", l_numel},
    {"dtype", l_dtype}, {"item", l_item},   {"tolist", l_tolist}, {"to", l_to},         {"float", l_float},
    {"long", l_long},   {"int", l_int},     {"byte", l_byte},     {"fill_", l_fill_},   {"zero_", l_zero_},
    {"copy_", l_copy_}, {"getflat", l_getflat}, {"setflat", l_setflat}, {NULL, NULL},
};

static const luaL_Reg metamethods[] = {
    {"__gc", l_free},     {"__close", l_free}, {"__tostring", l_tostring}, {"__len", l_len},
    {"__index", l_index}, {"__newindex", l_newindex}, {NULL, NULL},
};

void gl_lua_open_tensor(lua_State *L, int module_idx)
{
    luaL_newmetatable(L, GL_LUA_TENSOR);
    luaL_setfuncs(L, metamethods, 0);
    lua_pushliteral(L, "tensor");
    lua_setfield(L, -2, "__name");
    lua_pop(L, 1);
    gl_lua_register(L, module_idx, functions, false);
    gl_lua_register(L, module_idx, methods, true);
}
