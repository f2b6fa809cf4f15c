/* Binding of convolution, pooling and upsampling: gl.conv2d,
 * gl.conv_transpose2d, gl.max_pool2d, gl.avg_pool2d, gl.upsample (also
 * Tensor methods) and the modules gl.nn.Conv2d, ConvTranspose2d, MaxPool2d,
 * AvgPool2d and Upsample. Sizes are a number or {h, w}; names and defaults
 * follow torch.nn.functional and torch.nn. */
#include <stdio.h>
#include <string.h>

#include "lua/binding.h"
#include "nn/conv_layers.h"
#include "ops/conv.h"
#include "ops/pool.h"

/* The options table at idx (nil or absent is none: 0), checked against allowed. */
static int options(lua_State *L, int idx, const char *op, const char *const *allowed)
{
    if (lua_isnoneornil(L, idx)) return 0;
    if (!lua_istable(L, idx)) luaL_error(L, "%s: options must be a table, got %s", op, luaL_typename(L, idx));
    gl_lua_check_options(L, idx, op, allowed);
    return idx;
}

/* The value at the top, an integer or {h, w} of integers, into v; pops it. */
static void topair(lua_State *L, const char *op, const char *what, int64_t v[2])
{
    if (lua_isinteger(L, -1)) {
        v[0] = v[1] = lua_tointeger(L, -1);
    } else if (lua_istable(L, -1) && lua_rawlen(L, -1) == 2) {
        for (int k = 0; k < 2; k++) {
            lua_rawgeti(L, -1 - k, k + 1);
            if (!lua_isinteger(L, -1)) break;
            v[k] = lua_tointeger(L, -1);
        }
        if (!lua_isinteger(L, -1)) luaL_error(L, "%s: %s must be an integer or {h, w} of integers", op, what);
        lua_pop(L, 2);
    } else {
        luaL_error(L, "%s: %s must be an integer or {h, w} of integers, got %s", op, what, luaL_typename(L, -1));
    }
    lua_pop(L, 1);
}

/* Argument idx as a size: an integer or {h, w}. */
static void checkpair(lua_State *L, int idx, const char *op, const char *what, int64_t v[2])
{
    lua_pushvalue(L, idx);
    topair(L, op, what, v);
}

/* Option key of the table at o (0: none) as a size; v keeps its value when absent. */
static void optpair(lua_State *L, int o, const char *op, const char *key, int64_t v[2])
{
    if (!o) return;
    lua_getfield(L, o, key);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return;
    }
    char what[64];
    snprintf(what, sizeof what, "option '%s'", key);
    topair(L, op, what, v);
}

static gl_tensor *opttensor(lua_State *L, int idx)
{
    return lua_isnoneornil(L, idx) ? NULL : gl_lua_checktensor(L, idx);
}

/* The convolution options of the table at o. */
static gl_conv2d_args conv_args(lua_State *L, int o, const char *op, bool transpose)
{
    gl_conv2d_args a = gl_conv2d_args_default();
    optpair(L, o, op, "stride", a.stride);
    optpair(L, o, op, "padding", a.padding);
    optpair(L, o, op, "dilation", a.dilation);
    if (transpose) optpair(L, o, op, "output_padding", a.output_padding);
    if (o) {
        lua_getfield(L, o, "groups");
        if (!lua_isnil(L, -1)) {
            if (!lua_isinteger(L, -1)) luaL_error(L, "%s: option 'groups' must be an integer", op);
            a.groups = lua_tointeger(L, -1);
        }
        lua_pop(L, 1);
    }
    return a;
}

/* conv2d(x, w [, b [, {stride, padding, dilation, groups}]]) */
static int l_conv2d(lua_State *L)
{
    static const char *const keys[] = {"stride", "padding", "dilation", "groups", NULL};
    gl_tensor *x = gl_lua_checktensor(L, 1), *w = gl_lua_checktensor(L, 2), *b = opttensor(L, 3);
    gl_conv2d_args a = conv_args(L, options(L, 4, "conv2d", keys), "conv2d", false);
    return gl_lua_push(L, gl_conv2d(x, w, b, &a));
}

/* conv_transpose2d(x, w [, b [, {stride, padding, output_padding, dilation, groups}]]) */
static int l_conv_transpose2d(lua_State *L)
{
    static const char *const keys[] = {"stride", "padding", "output_padding", "dilation", "groups", NULL};
    gl_tensor *x = gl_lua_checktensor(L, 1), *w = gl_lua_checktensor(L, 2), *b = opttensor(L, 3);
    gl_conv2d_args a = conv_args(L, options(L, 4, "conv_transpose2d", keys), "conv_transpose2d", true);
    return gl_lua_push(L, gl_conv_transpose2d(x, w, b, &a));
}

/* The kernel at k_idx and {stride = kernel, padding = 0} of the table at o_idx. */
static gl_pool2d_args pool_args(lua_State *L, int k_idx, int o_idx, const char *op)
{
    static const char *const keys[] = {"stride", "padding", NULL};
    gl_pool2d_args a = {{0, 0}, {0, 0}, {0, 0}};
    checkpair(L, k_idx, op, "kernel size", a.kernel);
    a.stride[0] = a.kernel[0], a.stride[1] = a.kernel[1];
    int o = options(L, o_idx, op, keys);
    optpair(L, o, op, "stride", a.stride);
    optpair(L, o, op, "padding", a.padding);
    return a;
}

/* max_pool2d(x, k [, {stride = k, padding = 0}]) */
static int l_max_pool2d(lua_State *L)
{
    gl_tensor *x = gl_lua_checktensor(L, 1);
    gl_pool2d_args a = pool_args(L, 2, 3, "max_pool2d");
    return gl_lua_push(L, gl_max_pool2d(x, &a));
}

/* avg_pool2d(x, k [, {stride = k, padding = 0}]) */
static int l_avg_pool2d(lua_State *L)
{
    gl_tensor *x = gl_lua_checktensor(L, 1);
    gl_pool2d_args a = pool_args(L, 2, 3, "avg_pool2d");
    return gl_lua_push(L, gl_avg_pool2d(x, &a));
}

/* {scale = s | size = {H, W}, mode = "nearest" | "bilinear", align_corners = false} at o. */
static gl_upsample_args upsample_args(lua_State *L, int o, const char *op)
{
    static const char *const keys[] = {"scale", "size", "mode", "align_corners", NULL};
    gl_upsample_args a = {{0, 0}, {2.0, 2.0}, GL_UPSAMPLE_NEAREST, false};
    o = options(L, o, op, keys);
    if (!o) return a;
    lua_getfield(L, o, "size");
    bool have_size = !lua_isnil(L, -1);
    lua_getfield(L, o, "scale");
    bool have_scale = !lua_isnil(L, -1);
    if (have_size && have_scale) luaL_error(L, "%s: give either 'scale' or 'size', not both", op);
    if (have_scale && lua_isnumber(L, -1)) {
        a.scale[0] = a.scale[1] = lua_tonumber(L, -1);
    } else if (have_scale && lua_istable(L, -1) && lua_rawlen(L, -1) == 2) {
        for (int k = 0; k < 2; k++) {
            lua_rawgeti(L, -1 - k, k + 1);
            if (!lua_isnumber(L, -1)) luaL_error(L, "%s: option 'scale' must be a number or {h, w}", op);
            a.scale[k] = lua_tonumber(L, -1);
        }
        lua_pop(L, 2);
    } else if (have_scale) {
        luaL_error(L, "%s: option 'scale' must be a number or {h, w}", op);
    }
    lua_pop(L, 1);
    if (have_size) {
        topair(L, op, "option 'size'", a.size);
        if (a.size[0] < 1 || a.size[1] < 1)
            gl_lua_errorf(L, "%s: option 'size' must be >= 1 (got %lldx%lld)", op, (long long)a.size[0],
                          (long long)a.size[1]);
    } else {
        lua_pop(L, 1);
    }
    lua_getfield(L, o, "mode");
    if (!lua_isnil(L, -1)) {
        const char *m = lua_tostring(L, -1);
        if (m && strcmp(m, "bilinear") == 0) a.mode = GL_UPSAMPLE_BILINEAR;
        else if (!m || strcmp(m, "nearest") != 0)
            luaL_error(L, "%s: unknown mode '%s' (use nearest or bilinear)", op, luaL_tolstring(L, -1, NULL));
    }
    lua_pop(L, 1);
    a.align_corners = gl_lua_optfield_bool(L, o, "align_corners", false);
    return a;
}

/* upsample(x [, {scale = 2 | size = {H, W}, mode = "nearest", align_corners = false}]) */
static int l_upsample(lua_State *L)
{
    gl_tensor *x = gl_lua_checktensor(L, 1);
    gl_upsample_args a = upsample_args(L, 2, "upsample");
    return gl_lua_push(L, gl_upsample(x, &a));
}

/* --- modules ------------------------------------------------------------------------ */

static int conv_module(lua_State *L, bool transpose)
{
    static const char *const keys[] = {"stride", "padding", "dilation", "groups", "bias", NULL};
    static const char *const tkeys[] = {"stride", "padding", "output_padding", "dilation", "groups", "bias", NULL};
    const char *op = transpose ? "ConvTranspose2d" : "Conv2d";
    lua_Integer cin = luaL_checkinteger(L, 1), cout = luaL_checkinteger(L, 2);
    int64_t k[2];
    checkpair(L, 3, op, "kernel size", k);
    int o = options(L, 4, op, transpose ? tkeys : keys);
    gl_conv2d_args a = conv_args(L, o, op, transpose);
    bool bias = gl_lua_optfield_bool(L, o, "bias", true);
    gl_module *m = transpose ? gl_nn_conv_transpose2d_new(cin, cout, k, &a, bias)
                             : gl_nn_conv2d_new(cin, cout, k, &a, bias);
    return gl_lua_push_module(L, m, true);
}

/* Conv2d(cin, cout, k [, {stride, padding, dilation, groups, bias = true}]) */
static int l_Conv2d(lua_State *L) { return conv_module(L, false); }
/* ConvTranspose2d(cin, cout, k [, {stride, padding, output_padding, dilation, groups, bias = true}]) */
static int l_ConvTranspose2d(lua_State *L) { return conv_module(L, true); }

/* MaxPool2d(k [, {stride = k, padding = 0}]) */
static int l_MaxPool2d(lua_State *L)
{
    gl_pool2d_args a = pool_args(L, 1, 2, "MaxPool2d");
    return gl_lua_push_module(L, gl_nn_max_pool2d_new(&a), true);
}

/* AvgPool2d(k [, {stride = k, padding = 0}]) */
static int l_AvgPool2d(lua_State *L)
{
    gl_pool2d_args a = pool_args(L, 1, 2, "AvgPool2d");
    return gl_lua_push_module(L, gl_nn_avg_pool2d_new(&a), true);
}

/* Upsample{scale = 2 | size = {H, W}, mode = "nearest", align_corners = false} */
static int l_Upsample(lua_State *L)
{
    gl_upsample_args a = upsample_args(L, 1, "Upsample");
    return gl_lua_push_module(L, gl_nn_upsample_new(&a), true);
}

static const luaL_Reg ops[] = {
    {"conv2d", l_conv2d},         {"conv_transpose2d", l_conv_transpose2d}, {"max_pool2d", l_max_pool2d},
    {"avg_pool2d", l_avg_pool2d}, {"upsample", l_upsample},                 {NULL, NULL},
};

static const luaL_Reg modules[] = {
    {"Conv2d", l_Conv2d},       {"ConvTranspose2d", l_ConvTranspose2d}, {"MaxPool2d", l_MaxPool2d},
    {"AvgPool2d", l_AvgPool2d}, {"Upsample", l_Upsample},               {NULL, NULL},
};

void gl_lua_open_conv(lua_State *L, int module_idx)
{
    module_idx = lua_absindex(L, module_idx);
    gl_lua_register(L, module_idx, ops, true);
    luaL_getsubtable(L, module_idx, "nn");
    luaL_setfuncs(L, modules, 0);
    lua_pop(L, 1);
}
