/* Helpers shared by the binding files (l_*.c). Each area registers its
 * functions with gl_lua_register: into the genlab module table and, when
 * they take a tensor first, as Tensor methods too.
 *
 * Conventions at the Lua surface:
 *  - numbers the user types as positions or dims are 1-based, negative ones
 *    count from the end (-1 is the last), as in Lua and torch7;
 *  - tensors of indices (gather, embedding ids, targets, argmax results)
 *    hold 0-based values, as in PyTorch and every file format.
 * Errors are raised once, after all temporaries are owned by the Lua stack,
 * with luaL_error(L, "%s", msg). */
#ifndef GL_LUA_BINDING_H
#define GL_LUA_BINDING_H

#include <lauxlib.h>
#include <lua.h>
#include <stdbool.h>

#include "core/error.h"
#include "core/tensor.h"

#define GL_LUA_TENSOR "genlab.Tensor"
#define GL_LUA_METHODS "genlab.Tensor.methods"

typedef struct {
    gl_tensor *t; /* NULL once freed */
} gl_lua_tensor;

/* The tensor at idx; raises on a non-tensor or a freed tensor. */
gl_tensor *gl_lua_checktensor(lua_State *L, int idx);
/* The tensor at idx or NULL when it is not a tensor. */
gl_tensor *gl_lua_totensor(lua_State *L, int idx);
/* A tensor at idx, or a number turned into a 0-dim f32 tensor that the
 * stack owns (pushed at the top). */
gl_tensor *gl_lua_operand(lua_State *L, int idx);
/* Pushes t (taking its reference) and tells the collector about its bytes.
 * When t is NULL, raises the current error instead. Returns 1. */
int gl_lua_push(lua_State *L, gl_tensor *t);
/* luaL_error with the C library's printf (lua_pushfstring knows no %lld or
 * width flags). Never returns. */
int gl_lua_errorf(lua_State *L, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Raises the current C error as a Lua error. */
int gl_lua_fail(lua_State *L);
/* Raises unless st is GL_OK. */
void gl_lua_check(lua_State *L, gl_status st);

/* A dim argument: 1-based or negative, returned 0-based; raises when out of range. */
int gl_lua_checkdim(lua_State *L, int idx, const gl_tensor *t, const char *op);
int gl_lua_optdim(lua_State *L, int idx, const gl_tensor *t, const char *op, int def);
/* A shape from a table {2,3} or from the numbers at idx..top. Returns ndim. */
int gl_lua_checkshape(lua_State *L, int idx, int64_t *shape, const char *op);
/* Field of an options table at idx (idx 0, a non-table or a nil field gives def). */
double gl_lua_optfield_number(lua_State *L, int idx, const char *key, double def);
bool gl_lua_optfield_bool(lua_State *L, int idx, const char *key, bool def);
/* Raises "op: unknown option 'key'" when the table at idx has a key not in allowed (NULL-terminated). */
void gl_lua_check_options(lua_State *L, int idx, const char *op, const char *const *allowed);

/* nn modules as Lua userdata (src/lua/l_nn.c). push takes the caller's
 * reference when owned and raises the current error when m is NULL. */
typedef struct gl_module gl_module;
gl_module *gl_lua_checkmodule(lua_State *L, int idx);
int gl_lua_push_module(lua_State *L, gl_module *m, bool owned);
/* An empty gl_tensor_list owned by the Lua stack (cleared by __gc), so a
 * call that raises while filling it leaks nothing. */
typedef struct gl_tensor_list gl_tensor_list;
gl_tensor_list *gl_lua_new_tensor_list(lua_State *L);
/* Extra methods for modules of one class (looked up before the common ones). */
void gl_lua_register_module_methods(lua_State *L, const char *class_name, const luaL_Reg *funcs);

/* Registers funcs into the table at module_idx; with as_methods, also as Tensor methods. */
void gl_lua_register(lua_State *L, int module_idx, const luaL_Reg *funcs, bool as_methods);

/* Per-area openers, called by luaopen_genlab_core with the module table at module_idx. */
void gl_lua_open_tensor(lua_State *L, int module_idx);
void gl_lua_open_math(lua_State *L, int module_idx);
void gl_lua_open_shape(lua_State *L, int module_idx);
void gl_lua_open_nnops(lua_State *L, int module_idx);
void gl_lua_open_autograd(lua_State *L, int module_idx);
void gl_lua_open_io(lua_State *L, int module_idx);
void gl_lua_open_nn(lua_State *L, int module_idx);
void gl_lua_open_optim(lua_State *L, int module_idx);
void gl_lua_open_sys(lua_State *L, int module_idx);
void gl_lua_open_models(lua_State *L, int module_idx);
void gl_lua_open_text(lua_State *L, int module_idx);
void gl_lua_open_sample(lua_State *L, int module_idx);
void gl_lua_open_plot(lua_State *L, int module_idx);
void gl_lua_open_conv(lua_State *L, int module_idx);
void gl_lua_open_norm2d(lua_State *L, int module_idx);
void gl_lua_open_image(lua_State *L, int module_idx);
void gl_lua_open_http(lua_State *L, int module_idx);
void gl_lua_open_json(lua_State *L, int module_idx);

int luaopen_genlab_core(lua_State *L);

#endif
