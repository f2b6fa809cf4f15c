/* Normalizations of channels-first feature maps (ops/norm2d.h, nn/norm_layers.h):
 *   gl.batch_norm(x, running_mean|nil, running_var|nil, weight|nil, bias|nil,
 *                 {training = true, momentum = 0.1, eps = 1e-5})
 *       training updates running_mean / running_var in place when given;
 *   gl.group_norm(x, groups, weight|nil, bias|nil, {eps = 1e-5, silu = false})
 *       silu: the output goes through SiLU in the same pass
 *   (both also as Tensor methods), and the modules
 *   gl.nn.BatchNorm1d(C, {momentum = 0.1, eps = 1e-5, affine = true}), gl.nn.BatchNorm2d(C, {...}),
 *   gl.nn.GroupNorm(groups, C, {eps = 1e-5, affine = true}),
 *   gl.nn.InstanceNorm2d(C, {eps = 1e-5, affine = false}), gl.nn.LayerNorm2d(C, {eps = 1e-5, affine = true}). */
#include "lua/binding.h"
#include "nn/norm_layers.h"
#include "ops/norm2d.h"

/* A tensor or nil at idx. */
static gl_tensor *opt_tensor(lua_State *L, int idx)
{
    return lua_isnoneornil(L, idx) ? NULL : gl_lua_checktensor(L, idx);
}

static lua_Integer check_count(lua_State *L, int idx, const char *op, const char *what)
{
    int ok = 0;
    lua_Integer v = lua_tointegerx(L, idx, &ok);
    if (!ok) gl_lua_errorf(L, "%s: %s must be an integer (got %s)", op, what, luaL_typename(L, idx));
    return v;
}

static int l_batch_norm(lua_State *L)
{
    static const char *const keys[] = {"training", "momentum", "eps", NULL};
    gl_tensor *x = gl_lua_checktensor(L, 1);
    gl_tensor *rm = opt_tensor(L, 2), *rv = opt_tensor(L, 3), *w = opt_tensor(L, 4), *b = opt_tensor(L, 5);
    gl_lua_check_options(L, 6, "batch_norm", keys);
    bool training = gl_lua_optfield_bool(L, 6, "training", true);
    float momentum = (float)gl_lua_optfield_number(L, 6, "momentum", 0.1);
    float eps = (float)gl_lua_optfield_number(L, 6, "eps", 1e-5);
    return gl_lua_push(L, gl_batch_norm(x, rm, rv, w, b, training, momentum, eps));
}

static int l_group_norm(lua_State *L)
{
    static const char *const keys[] = {"eps", "silu", NULL};
    gl_tensor *x = gl_lua_checktensor(L, 1);
    lua_Integer groups = check_count(L, 2, "group_norm", "groups");
    gl_tensor *w = opt_tensor(L, 3), *b = opt_tensor(L, 4);
    gl_lua_check_options(L, 5, "group_norm", keys);
    float eps = (float)gl_lua_optfield_number(L, 5, "eps", 1e-5);
    bool silu = gl_lua_optfield_bool(L, 5, "silu", false);
    return gl_lua_push(L, (silu ? gl_group_norm_silu : gl_group_norm)(x, groups, w, b, eps));
}

static const char *const bn_keys[] = {"momentum", "eps", "affine", NULL};
static const char *const norm_keys[] = {"eps", "affine", NULL};

static int batch_norm_module(lua_State *L, const char *op, gl_module *(*make)(int64_t, float, float, bool))
{
    lua_Integer C = check_count(L, 1, op, "channels");
    gl_lua_check_options(L, 2, op, bn_keys);
    float momentum = (float)gl_lua_optfield_number(L, 2, "momentum", 0.1);
    float eps = (float)gl_lua_optfield_number(L, 2, "eps", 1e-5);
    return gl_lua_push_module(L, make(C, momentum, eps, gl_lua_optfield_bool(L, 2, "affine", true)), true);
}

static int l_batch_norm1d(lua_State *L) { return batch_norm_module(L, "BatchNorm1d", gl_nn_batch_norm1d_new); }
static int l_batch_norm2d(lua_State *L) { return batch_norm_module(L, "BatchNorm2d", gl_nn_batch_norm2d_new); }

static int l_group_norm_module(lua_State *L)
{
    lua_Integer groups = check_count(L, 1, "GroupNorm", "groups"), C = check_count(L, 2, "GroupNorm", "channels");
    gl_lua_check_options(L, 3, "GroupNorm", norm_keys);
    float eps = (float)gl_lua_optfield_number(L, 3, "eps", 1e-5);
    return gl_lua_push_module(L, gl_nn_group_norm_new(groups, C, eps, gl_lua_optfield_bool(L, 3, "affine", true)),
                              true);
}

/* One channel count and {eps, affine} options, affine defaulting to affine_default. */
static int channel_module(lua_State *L, const char *op, gl_module *(*make)(int64_t, float, bool), bool affine_default)
{
    lua_Integer C = check_count(L, 1, op, "channels");
    gl_lua_check_options(L, 2, op, norm_keys);
    float eps = (float)gl_lua_optfield_number(L, 2, "eps", 1e-5);
    return gl_lua_push_module(L, make(C, eps, gl_lua_optfield_bool(L, 2, "affine", affine_default)), true);
}

static int l_instance_norm2d(lua_State *L)
{
    return channel_module(L, "InstanceNorm2d", gl_nn_instance_norm2d_new, false);
}

static int l_layer_norm2d(lua_State *L) { return channel_module(L, "LayerNorm2d", gl_nn_layer_norm2d_new, true); }

static const luaL_Reg ops[] = {
    {"batch_norm", l_batch_norm},
    {"group_norm", l_group_norm},
    {NULL, NULL},
};

static const luaL_Reg modules[] = {
    {"BatchNorm1d", l_batch_norm1d},       {"BatchNorm2d", l_batch_norm2d}, {"GroupNorm", l_group_norm_module},
    {"InstanceNorm2d", l_instance_norm2d}, {"LayerNorm2d", l_layer_norm2d}, {NULL, NULL},
};

void gl_lua_open_norm2d(lua_State *L, int module_idx)
{
    module_idx = lua_absindex(L, module_idx);
    gl_lua_register(L, module_idx, ops, true);
    luaL_getsubtable(L, module_idx, "nn");
    luaL_setfuncs(L, modules, 0);
    lua_pop(L, 1);
}
