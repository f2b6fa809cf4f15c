/* Binding of the image and IDX readers (src/io/image.h, src/io/idx.h) as
 * gl._image, the C half of gl.image and of gl.data.mnist / gl.data.images
 * (lua/genlab/image.lua and data_image.lua check the options and compose):
 *
 *   read_png(path) -> f32 [C,H,W] in [0,1]
 *   write_png(path, x [C,H,W] or [H,W], lo, hi)
 *   convert(x, channels, background) -> [channels,H,W]
 *   resize(x, h, w), center_crop(x, h, w) -> last two dims h x w
 *   grid(x [B,C,H,W], nrow, padding, pad_value) -> [C,H',W']
 *   list_png(dir) -> {path, ...}
 *   idx_read(path) -> u8 tensor of the file's shape
 *   unit(x u8 [, lo=0, hi=1]) -> f32 lo + (hi - lo) * x / 255
 *   randperm(n) -> i64 [n], a permutation of 0..n-1 drawn from the genlab
 *                  generator (Fisher-Yates)
 * Arguments are positional and checked here; errors name the op and the file. */
#include <stdlib.h>

#include "core/rng.h"
#include "io/idx.h"
#include "io/image.h"
#include "lua/binding.h"

static int64_t check_side(lua_State *L, int idx, const char *op, const char *what)
{
    lua_Integer v = luaL_checkinteger(L, idx);
    if (v < 1) return gl_lua_errorf(L, "%s: %s must be a positive integer (got %lld)", op, what, (long long)v);
    return (int64_t)v;
}

static int l_read_png(lua_State *L)
{
    return gl_lua_push(L, gl_image_read_png(luaL_checkstring(L, 1)));
}

static int l_write_png(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    gl_tensor *x = gl_lua_checktensor(L, 2);
    gl_lua_check(L, gl_image_write_png(path, x, (float)luaL_checknumber(L, 3), (float)luaL_checknumber(L, 4)));
    return 0;
}

static int l_convert(lua_State *L)
{
    gl_tensor *x = gl_lua_checktensor(L, 1);
    return gl_lua_push(L, gl_image_convert(x, (int)luaL_checkinteger(L, 2), (float)luaL_checknumber(L, 3)));
}

static int l_resize(lua_State *L)
{
    gl_tensor *x = gl_lua_checktensor(L, 1);
    int64_t h = check_side(L, 2, "image.resize", "height"), w = check_side(L, 3, "image.resize", "width");
    return gl_lua_push(L, gl_image_resize(x, h, w));
}

static int l_center_crop(lua_State *L)
{
    gl_tensor *x = gl_lua_checktensor(L, 1);
    int64_t h = check_side(L, 2, "image.center_crop", "height"), w = check_side(L, 3, "image.center_crop", "width");
    return gl_lua_push(L, gl_image_center_crop(x, h, w));
}

static int l_grid(lua_State *L)
{
    gl_tensor *x = gl_lua_checktensor(L, 1);
    int64_t nrow = check_side(L, 2, "image.grid", "nrow");
    lua_Integer padding = luaL_checkinteger(L, 3);
    return gl_lua_push(L, gl_image_grid(x, nrow, (int64_t)padding, (float)luaL_checknumber(L, 4)));
}

static int l_list_png(lua_State *L)
{
    const char *dir = luaL_checkstring(L, 1);
    lua_settop(L, 1);
    lua_createtable(L, 0, 0);
    char **paths;
    int64_t n;
    gl_lua_check(L, gl_image_list_png(dir, &paths, &n));
    for (int64_t i = 0; i < n; i++) {
        lua_pushstring(L, paths[i]);
        lua_seti(L, 2, (lua_Integer)(i + 1));
    }
    gl_image_free_list(paths, n);
    return 1;
}

static int l_idx_read(lua_State *L)
{
    return gl_lua_push(L, gl_idx_read(luaL_checkstring(L, 1)));
}

static int l_unit(lua_State *L)
{
    gl_tensor *x = gl_lua_checktensor(L, 1);
    float lo = (float)luaL_optnumber(L, 2, 0), hi = (float)luaL_optnumber(L, 3, 1);
    if (x->dtype != GL_U8) return gl_lua_errorf(L, "image.unit: expected a u8 tensor, got %s", gl_dtype_name(x->dtype));
    gl_tensor *out = gl_tensor_empty(GL_F32, x->ndim, x->shape);
    if (out) {
        const unsigned char *s = gl_tensor_data(x);
        float *o = gl_tensor_f32(out), scale = (hi - lo) / 255.0f;
#pragma omp parallel for if (x->numel > 65536) schedule(static)
        for (int64_t i = 0; i < x->numel; i++) o[i] = lo + (float)s[i] * scale;
    }
    return gl_lua_push(L, out);
}

static int l_randperm(lua_State *L)
{
    lua_Integer n = luaL_checkinteger(L, 1);
    if (n < 0) return gl_lua_errorf(L, "randperm: n must be >= 0 (got %lld)", (long long)n);
    int64_t shape[1] = {(int64_t)n};
    gl_tensor *t = gl_tensor_empty(GL_I64, 1, shape);
    if (t) {
        int64_t *p = gl_tensor_data(t);
        for (int64_t i = 0; i < n; i++) p[i] = i;
        for (int64_t i = n - 1; i > 0; i--) {
            int64_t j = (int64_t)gl_rng_below((uint64_t)i + 1), tmp = p[i];
            p[i] = p[j], p[j] = tmp;
        }
    }
    return gl_lua_push(L, t);
}

void gl_lua_open_image(lua_State *L, int module_idx)
{
    static const luaL_Reg funcs[] = {
        {"read_png", l_read_png},       {"write_png", l_write_png}, {"convert", l_convert},
        {"resize", l_resize},           {"center_crop", l_center_crop}, {"grid", l_grid},
        {"list_png", l_list_png},       {"idx_read", l_idx_read},   {"unit", l_unit},
        {"randperm", l_randperm},       {NULL, NULL},
    };
    module_idx = lua_absindex(L, module_idx);
    lua_createtable(L, 0, 16);
    gl_lua_register(L, -1, funcs, false);
    lua_setfield(L, module_idx, "_image");
}
