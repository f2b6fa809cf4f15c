/* gl.nn: the C modules of src/nn as Lua userdata, and gl.nn.init.
 *
 * A module userdata holds one reference on its gl_module. The same C module
 * always comes back as the same userdata while one is alive (children read
 * twice are rawequal). Besides its methods, m.<name> reads a parameter,
 * buffer or child by name, m[i] the i-th child (1-based) and #m counts
 * children; assigning a tensor to m.<name> replaces an existing parameter
 * or buffer of the same shape (weight tying).
 *
 * Names in named_parameters, named_buffers and state_dict are PyTorch's
 * dotted names, so children of containers are named "0", "1", ... while
 * positions typed in Lua (m[1]) stay 1-based.
 *   named_parameters(), named_buffers(), named_children()
 *       an ordered list of {name, value} pairs
 *   named_tensors()  the same for every entry of the state dict, in order
 *   state_dict()   a map name -> tensor (shared, not copied)
 *   load_state_dict(sd [, {strict = true}])
 *       copies sd's tensors in; returns the lists of missing and unexpected
 *       names (empty when strict, which raises instead) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua/binding.h"
#include "nn/init.h"
#include "nn/layers.h"
#include "nn/module.h"

#define GL_LUA_MODULE "genlab.Module"
#define MODULE_METHODS "genlab.Module.methods"
#define MODULE_CLASS_METHODS "genlab.Module.class_methods"
#define MODULE_CACHE "genlab.Module.cache"
#define TENSOR_LIST "genlab.nn.TensorList"

typedef struct {
    gl_module *m; /* NULL once freed */
} module_ud;

/* --- temporary tensor lists owned by the Lua stack (no leak when a call raises) --- */

static int list_gc(lua_State *L)
{
    gl_tensor_list_clear(luaL_checkudata(L, 1, TENSOR_LIST));
    return 0;
}

gl_tensor_list *gl_lua_new_tensor_list(lua_State *L)
{
    gl_tensor_list *l = lua_newuserdatauv(L, sizeof *l, 0);
    *l = (gl_tensor_list)GL_TENSOR_LIST_INIT;
    if (luaL_newmetatable(L, TENSOR_LIST)) {
        lua_pushcfunction(L, list_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    return l;
}

/* Pushes a new reference to t. */
static void push_tensor(lua_State *L, gl_tensor *t)
{
    gl_tensor_retain(t);
    gl_lua_push(L, t);
}

/* --- module userdata ------------------------------------------------------------ */

void gl_lua_register_module_methods(lua_State *L, const char *class_name, const luaL_Reg *funcs)
{
    luaL_getsubtable(L, LUA_REGISTRYINDEX, MODULE_CLASS_METHODS);
    luaL_getsubtable(L, -1, class_name);
    luaL_setfuncs(L, funcs, 0);
    lua_pop(L, 2);
}

gl_module *gl_lua_checkmodule(lua_State *L, int idx)
{
    module_ud *u = luaL_checkudata(L, idx, GL_LUA_MODULE);
    if (!u->m) luaL_error(L, "attempt to use a freed module");
    return u->m;
}

/* Pushes the userdata of m, taking the caller's reference when owned, or
 * raises the current error when m is NULL. */
int gl_lua_push_module(lua_State *L, gl_module *m, bool owned)
{
    if (!m) return gl_lua_fail(L);
    luaL_getsubtable(L, LUA_REGISTRYINDEX, MODULE_CACHE);
    lua_rawgetp(L, -1, m);
    if (!lua_isnil(L, -1)) {
        if (owned) gl_module_release(m);
        lua_remove(L, -2);
        return 1;
    }
    lua_pop(L, 1);
    module_ud *u = lua_newuserdatauv(L, sizeof *u, 0);
    u->m = m;
    if (!owned) gl_module_retain(m);
    luaL_setmetatable(L, GL_LUA_MODULE);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, -3, m);
    lua_remove(L, -2);
    return 1;
}

/* __gc, __close and :free() are this one idempotent function. */
static int m_free(lua_State *L)
{
    module_ud *u = luaL_checkudata(L, 1, GL_LUA_MODULE);
    if (!u->m) return 0;
    luaL_getsubtable(L, LUA_REGISTRYINDEX, MODULE_CACHE);
    if (lua_rawgetp(L, -1, u->m) != LUA_TNIL && lua_rawequal(L, -1, 1)) {
        lua_pushnil(L);
        lua_rawsetp(L, -3, u->m);
    }
    gl_module_release(u->m);
    u->m = NULL;
    return 0;
}

/* Pushes {name, value} pairs or bare values of a tensor list. */
static void push_list(lua_State *L, const gl_tensor_list *l, bool named)
{
    lua_createtable(L, (int)l->n, 0);
    for (int64_t k = 0; k < l->n; k++) {
        if (named) {
            lua_createtable(L, 2, 0);
            lua_pushstring(L, l->items[k].name);
            lua_rawseti(L, -2, 1);
            push_tensor(L, l->items[k].t);
            lua_rawseti(L, -2, 2);
        } else {
            push_tensor(L, l->items[k].t);
        }
        lua_rawseti(L, -2, k + 1);
    }
}

typedef gl_status (*walk_fn)(const gl_module *m, gl_tensor_list *out);

static int traverse(lua_State *L, walk_fn fn, bool named)
{
    gl_module *m = gl_lua_checkmodule(L, 1);
    gl_tensor_list *l = gl_lua_new_tensor_list(L);
    gl_lua_check(L, fn(m, l));
    push_list(L, l, named);
    return 1;
}

static int m_parameters(lua_State *L) { return traverse(L, gl_module_named_parameters, false); }
static int m_named_parameters(lua_State *L) { return traverse(L, gl_module_named_parameters, true); }
static int m_buffers(lua_State *L) { return traverse(L, gl_module_named_buffers, false); }
static int m_named_buffers(lua_State *L) { return traverse(L, gl_module_named_buffers, true); }

static int m_named_children(lua_State *L)
{
    gl_module *m = gl_lua_checkmodule(L, 1);
    lua_createtable(L, (int)m->n_children, 0);
    for (int64_t k = 0; k < m->n_children; k++) {
        lua_createtable(L, 2, 0);
        lua_pushstring(L, m->children[k].name);
        lua_rawseti(L, -2, 1);
        gl_lua_push_module(L, m->children[k].m, false);
        lua_rawseti(L, -2, 2);
        lua_rawseti(L, -2, k + 1);
    }
    return 1;
}

static int m_state_dict(lua_State *L)
{
    gl_module *m = gl_lua_checkmodule(L, 1);
    gl_tensor_list *l = gl_lua_new_tensor_list(L);
    gl_lua_check(L, gl_module_state_dict(m, l));
    lua_createtable(L, 0, (int)l->n);
    for (int64_t k = 0; k < l->n; k++) {
        push_tensor(L, l->items[k].t);
        lua_setfield(L, -2, l->items[k].name);
    }
    return 1;
}

static int m_named_tensors(lua_State *L) { return traverse(L, gl_module_state_dict, true); }

/* The map name -> tensor at idx into l; raises on other entries. */
static void map_to_list(lua_State *L, int idx, gl_tensor_list *l, const char *op)
{
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (lua_type(L, -2) != LUA_TSTRING) luaL_error(L, "%s: state dict keys must be strings", op);
        gl_tensor *t = gl_lua_totensor(L, -1);
        if (!t) luaL_error(L, "%s: '%s' is a %s, not a tensor", op, lua_tostring(L, -2), luaL_typename(L, -1));
        gl_lua_check(L, gl_tensor_list_add(l, lua_tostring(L, -2), t));
        lua_pop(L, 1);
    }
}

static void push_names(lua_State *L, const gl_tensor_list *l)
{
    lua_createtable(L, (int)l->n, 0);
    for (int64_t k = 0; k < l->n; k++) {
        lua_pushstring(L, l->items[k].name);
        lua_rawseti(L, -2, k + 1);
    }
}

static const char *const load_opts[] = {"strict", NULL};

/* Loads the map at src_idx into dst; pushes the missing and unexpected name lists. */
static int load_into(lua_State *L, const gl_tensor_list *dst, int src_idx, int opts_idx)
{
    gl_lua_check_options(L, opts_idx, "load_state_dict", load_opts);
    bool strict = gl_lua_optfield_bool(L, opts_idx, "strict", true);
    gl_tensor_list *src = gl_lua_new_tensor_list(L), *missing = gl_lua_new_tensor_list(L), *unexpected = gl_lua_new_tensor_list(L);
    map_to_list(L, src_idx, src, "load_state_dict");
    gl_lua_check(L, gl_state_dict_load(dst, src, strict, missing, unexpected));
    push_names(L, missing);
    push_names(L, unexpected);
    return 2;
}

static int m_load_state_dict(lua_State *L)
{
    gl_module *m = gl_lua_checkmodule(L, 1);
    gl_tensor_list *dst = gl_lua_new_tensor_list(L);
    gl_lua_check(L, gl_module_state_dict(m, dst));
    return load_into(L, dst, 2, 3);
}

static int m_forward(lua_State *L)
{
    gl_module *m = gl_lua_checkmodule(L, 1);
    return gl_lua_push(L, gl_module_forward(m, gl_lua_checktensor(L, 2)));
}

/* m(...) calls the class's own forward when it has one (a model's
 * forward(ids, targets) returns two values), else the one-tensor forward. */
static int m_call(lua_State *L)
{
    gl_module *m = gl_lua_checkmodule(L, 1);
    luaL_getsubtable(L, LUA_REGISTRYINDEX, MODULE_CLASS_METHODS);
    if (lua_getfield(L, -1, m->cls->name) == LUA_TTABLE && lua_getfield(L, -1, "forward") == LUA_TFUNCTION) {
        lua_replace(L, -3);
        lua_pop(L, 1);
        lua_insert(L, 1);
        lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
        return lua_gettop(L);
    }
    lua_settop(L, 2);
    return m_forward(L);
}

static int m_train(lua_State *L)
{
    gl_module_train(gl_lua_checkmodule(L, 1), lua_isnoneornil(L, 2) ? true : lua_toboolean(L, 2));
    lua_settop(L, 1);
    return 1;
}

static int m_eval(lua_State *L)
{
    gl_module_train(gl_lua_checkmodule(L, 1), false);
    lua_settop(L, 1);
    return 1;
}

static int m_training(lua_State *L)
{
    lua_pushboolean(L, gl_lua_checkmodule(L, 1)->training);
    return 1;
}

static int m_zero_grad(lua_State *L)
{
    gl_module_zero_grad(gl_lua_checkmodule(L, 1));
    return 0;
}

static int m_requires_grad_(lua_State *L)
{
    gl_module_requires_grad(gl_lua_checkmodule(L, 1), lua_isnoneornil(L, 2) ? true : lua_toboolean(L, 2));
    lua_settop(L, 1);
    return 1;
}

static const char *const count_opts[] = {"trainable", NULL};

/* num_parameters([{trainable = false}]): elements over distinct parameters. */
static int m_num_parameters(lua_State *L)
{
    gl_module *m = gl_lua_checkmodule(L, 1);
    gl_lua_check_options(L, 2, "num_parameters", count_opts);
    lua_pushinteger(L, gl_module_num_parameters(m, gl_lua_optfield_bool(L, 2, "trainable", false)));
    return 1;
}

static int m_describe(lua_State *L)
{
    char *s = gl_module_describe(gl_lua_checkmodule(L, 1));
    if (!s) return gl_lua_fail(L);
    lua_pushstring(L, s);
    free(s);
    return 1;
}

/* The tree, then "parameters: N (trainable count when some are frozen), bytes". */
static int m_tostring(lua_State *L)
{
    module_ud *u = luaL_checkudata(L, 1, GL_LUA_MODULE);
    if (!u->m) return lua_pushliteral(L, "Module(freed)"), 1;
    m_describe(L);
    int64_t all = gl_module_num_parameters(u->m, false), trainable = gl_module_num_parameters(u->m, true);
    char size[64]; /* parameters are f32 */
    snprintf(size, sizeof size, "%.2f MiB", (double)all * 4.0 / (1024.0 * 1024.0));
    if (all == trainable)
        lua_pushfstring(L, "%s\nparameters: %I, %s", lua_tostring(L, -1), (lua_Integer)all, size);
    else
        lua_pushfstring(L, "%s\nparameters: %I (%I trainable), %s", lua_tostring(L, -1), (lua_Integer)all,
                        (lua_Integer)trainable, size);
    return 1;
}

static int m_len(lua_State *L)
{
    lua_pushinteger(L, gl_lua_checkmodule(L, 1)->n_children);
    return 1;
}

/* m:method, m.<parameter | buffer | child>, m[i] the i-th child. Methods
 * are found on a freed module too, so that free() stays idempotent. */
static int m_index(lua_State *L)
{
    if (lua_type(L, 2) == LUA_TSTRING) {
        module_ud *u = luaL_checkudata(L, 1, GL_LUA_MODULE);
        if (u->m) { /* methods of the module's own class (e.g. a model's generate) first */
            luaL_getsubtable(L, LUA_REGISTRYINDEX, MODULE_CLASS_METHODS);
            if (lua_getfield(L, -1, u->m->cls->name) == LUA_TTABLE &&
                lua_getfield(L, -1, lua_tostring(L, 2)) != LUA_TNIL)
                return 1;
            lua_settop(L, 2);
        }
        lua_getfield(L, LUA_REGISTRYINDEX, MODULE_METHODS);
        if (lua_getfield(L, -1, lua_tostring(L, 2)) != LUA_TNIL) return 1;
    }
    gl_module *m = gl_lua_checkmodule(L, 1);
    if (lua_type(L, 2) == LUA_TNUMBER) {
        lua_Integer i = luaL_checkinteger(L, 2);
        if (i < 1 || i > m->n_children) return lua_pushnil(L), 1;
        return gl_lua_push_module(L, m->children[i - 1].m, false);
    }
    if (lua_type(L, 2) != LUA_TSTRING) return lua_pushnil(L), 1;
    const char *key = lua_tostring(L, 2);
    gl_tensor *t = gl_module_param(m, key);
    if (!t) t = gl_module_buffer(m, key);
    if (t) return push_tensor(L, t), 1;
    gl_module *child = gl_module_child(m, key);
    if (child) return gl_lua_push_module(L, child, false);
    lua_pushnil(L);
    return 1;
}

static int m_newindex(lua_State *L)
{
    gl_module *m = gl_lua_checkmodule(L, 1);
    const char *key = luaL_checkstring(L, 2);
    gl_tensor *t = gl_lua_totensor(L, 3);
    if (!t || (!gl_module_param(m, key) && !gl_module_buffer(m, key)))
        return luaL_error(L, "%s: cannot set '%s' (only an existing parameter or buffer can be replaced, by a tensor)",
                          m->cls->name, key);
    gl_lua_check(L, gl_module_set_tensor(m, key, t));
    return 0;
}

/* --- constructors ----------------------------------------------------------------- */

/* The config table at 1 (absent means empty), checked against allowed. */
static void check_config(lua_State *L, const char *op, const char *const *allowed)
{
    if (lua_isnoneornil(L, 1)) {
        lua_settop(L, 0);
        lua_newtable(L);
    } else {
        luaL_checktype(L, 1, LUA_TTABLE);
    }
    gl_lua_check_options(L, 1, op, allowed);
}

static lua_Integer need_int(lua_State *L, const char *op, const char *key)
{
    int ok = 0;
    lua_getfield(L, 1, key);
    lua_Integer v = lua_tointegerx(L, -1, &ok);
    if (!ok) luaL_error(L, "%s: '%s' must be an integer (got %s)", op, key, luaL_tolstring(L, -1, NULL));
    lua_pop(L, 1);
    return v;
}

static int l_linear(lua_State *L)
{
    static const char *const keys[] = {"in_features", "out_features", "bias", NULL};
    check_config(L, "Linear", keys);
    lua_Integer in = need_int(L, "Linear", "in_features"), out = need_int(L, "Linear", "out_features");
    return gl_lua_push_module(L, gl_nn_linear_new(in, out, gl_lua_optfield_bool(L, 1, "bias", true)), true);
}

static int l_embedding(lua_State *L)
{
    static const char *const keys[] = {"num", "dim", NULL};
    check_config(L, "Embedding", keys);
    lua_Integer num = need_int(L, "Embedding", "num"), dim = need_int(L, "Embedding", "dim");
    return gl_lua_push_module(L, gl_nn_embedding_new(num, dim), true);
}

static int l_layer_norm(lua_State *L)
{
    static const char *const keys[] = {"dim", "eps", "affine", "bias", NULL};
    check_config(L, "LayerNorm", keys);
    lua_Integer dim = need_int(L, "LayerNorm", "dim");
    float eps = (float)gl_lua_optfield_number(L, 1, "eps", 1e-5);
    return gl_lua_push_module(L,
                       gl_nn_layer_norm_new(dim, eps, gl_lua_optfield_bool(L, 1, "affine", true),
                                            gl_lua_optfield_bool(L, 1, "bias", true)),
                       true);
}

static int l_rms_norm(lua_State *L)
{
    static const char *const keys[] = {"dim", "eps", NULL};
    check_config(L, "RMSNorm", keys);
    lua_Integer dim = need_int(L, "RMSNorm", "dim");
    return gl_lua_push_module(L, gl_nn_rms_norm_new(dim, (float)gl_lua_optfield_number(L, 1, "eps", 1e-6)), true);
}

static int l_dropout(lua_State *L)
{
    static const char *const keys[] = {"p", NULL};
    check_config(L, "Dropout", keys);
    return gl_lua_push_module(L, gl_nn_dropout_new((float)gl_lua_optfield_number(L, 1, "p", 0.5)), true);
}

static const char *const no_keys[] = {NULL};

static int activation(lua_State *L, const char *op, gl_activation kind)
{
    check_config(L, op, no_keys);
    return gl_lua_push_module(L, gl_nn_activation_new(kind, 0.0f), true);
}

static int l_relu(lua_State *L) { return activation(L, "ReLU", GL_ACT_RELU); }
static int l_silu(lua_State *L) { return activation(L, "SiLU", GL_ACT_SILU); }
static int l_tanh(lua_State *L) { return activation(L, "Tanh", GL_ACT_TANH); }
static int l_sigmoid(lua_State *L) { return activation(L, "Sigmoid", GL_ACT_SIGMOID); }

static int l_gelu(lua_State *L)
{
    static const char *const keys[] = {"approximate", NULL};
    check_config(L, "GELU", keys);
    lua_getfield(L, 1, "approximate");
    const char *a = lua_isnil(L, -1) ? "none" : luaL_checkstring(L, -1);
    if (strcmp(a, "none") != 0 && strcmp(a, "tanh") != 0)
        return luaL_error(L, "GELU: approximate must be \"none\" or \"tanh\" (got \"%s\")", a);
    return gl_lua_push_module(L, gl_nn_activation_new(strcmp(a, "tanh") == 0 ? GL_ACT_GELU_TANH : GL_ACT_GELU, 0.0f), true);
}

static int l_leaky_relu(lua_State *L)
{
    static const char *const keys[] = {"slope", NULL};
    check_config(L, "LeakyReLU", keys);
    float slope = (float)gl_lua_optfield_number(L, 1, "slope", 0.01);
    return gl_lua_push_module(L, gl_nn_activation_new(GL_ACT_LEAKY_RELU, slope), true);
}

/* --- helpers for lua/genlab/nn.lua ---------------------------------------------------- */

static int l_is_cmodule(lua_State *L)
{
    lua_pushboolean(L, luaL_testudata(L, 1, GL_LUA_MODULE) != NULL);
    return 1;
}

/* _tensor_key(t): a light userdata naming the C tensor, equal for every
 * userdata of the same tensor (to list a shared parameter once). */
static int l_tensor_key(lua_State *L)
{
    lua_pushlightuserdata(L, gl_lua_checktensor(L, 1));
    return 1;
}

/* _load_tensors(dst, src [, {strict=}]): dst an ordered list of {name, tensor},
 * src a map; gl_state_dict_load, returning the missing and unexpected names. */
static int l_load_tensors(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    gl_tensor_list *dst = gl_lua_new_tensor_list(L);
    lua_Integer n = luaL_len(L, 1);
    for (lua_Integer k = 1; k <= n; k++) {
        lua_geti(L, 1, k);
        lua_geti(L, -1, 1);
        lua_geti(L, -2, 2);
        if (lua_type(L, -2) != LUA_TSTRING || !gl_lua_totensor(L, -1))
            return luaL_error(L, "load_state_dict: entry %d of the model's tensors is not a {name, tensor} pair",
                              (int)k);
        gl_lua_check(L, gl_tensor_list_add(dst, lua_tostring(L, -2), gl_lua_totensor(L, -1)));
        lua_pop(L, 3);
    }
    return load_into(L, dst, 2, 3);
}

/* --- gl.nn.init -------------------------------------------------------------------------- */

/* Argument `pos` of an init function, given positionally or by key in an
 * options table at 2. */
static int init_arg(lua_State *L, int pos, const char *key)
{
    if (lua_istable(L, 2)) {
        lua_getfield(L, 2, key);
    } else {
        lua_pushvalue(L, pos);
    }
    return lua_gettop(L);
}

static double init_number(lua_State *L, int pos, const char *key, double def)
{
    int i = init_arg(L, pos, key);
    double v = luaL_optnumber(L, i, def);
    lua_pop(L, 1);
    return v;
}

static gl_tensor *init_target(lua_State *L, const char *op, const char *const *keys)
{
    gl_tensor *t = gl_lua_checktensor(L, 1);
    if (lua_istable(L, 2)) gl_lua_check_options(L, 2, op, keys);
    return t;
}

static int init_done(lua_State *L, gl_status st)
{
    gl_lua_check(L, st);
    lua_settop(L, 1);
    return 1;
}

static int i_uniform(lua_State *L)
{
    static const char *const keys[] = {"a", "b", NULL};
    gl_tensor *t = init_target(L, "uniform_", keys);
    return init_done(L, gl_init_uniform(t, init_number(L, 2, "a", 0.0), init_number(L, 3, "b", 1.0)));
}

static int i_normal(lua_State *L)
{
    static const char *const keys[] = {"mean", "std", NULL};
    gl_tensor *t = init_target(L, "normal_", keys);
    return init_done(L, gl_init_normal(t, init_number(L, 2, "mean", 0.0), init_number(L, 3, "std", 1.0)));
}

static int i_constant(lua_State *L)
{
    static const char *const keys[] = {"val", NULL};
    gl_tensor *t = init_target(L, "constant_", keys);
    int i = init_arg(L, 2, "val");
    double v = luaL_checknumber(L, i);
    return init_done(L, gl_init_constant(t, v));
}

static int i_zeros(lua_State *L) { return init_done(L, gl_init_zeros(gl_lua_checktensor(L, 1))); }
static int i_ones(lua_State *L) { return init_done(L, gl_init_ones(gl_lua_checktensor(L, 1))); }

static const char *const xavier_keys[] = {"gain", NULL};

static int i_xavier_uniform(lua_State *L)
{
    gl_tensor *t = init_target(L, "xavier_uniform_", xavier_keys);
    return init_done(L, gl_init_xavier_uniform(t, init_number(L, 2, "gain", 1.0)));
}

static int i_xavier_normal(lua_State *L)
{
    gl_tensor *t = init_target(L, "xavier_normal_", xavier_keys);
    return init_done(L, gl_init_xavier_normal(t, init_number(L, 2, "gain", 1.0)));
}

/* kaiming_*_(t [, a [, mode [, nonlinearity]]]) or (t, {a=, mode=, nonlinearity=}) */
static int kaiming(lua_State *L, const char *op,
                   gl_status (*fn)(gl_tensor *, double, gl_fan_mode, const char *))
{
    static const char *const keys[] = {"a", "mode", "nonlinearity", NULL};
    gl_tensor *t = init_target(L, op, keys);
    double a = init_number(L, 2, "a", 0.0);
    const char *mode = luaL_optstring(L, init_arg(L, 3, "mode"), "fan_in");
    const char *nl = luaL_optstring(L, init_arg(L, 4, "nonlinearity"), "leaky_relu");
    if (strcmp(mode, "fan_in") != 0 && strcmp(mode, "fan_out") != 0)
        return luaL_error(L, "%s: mode must be \"fan_in\" or \"fan_out\" (got \"%s\")", op, mode);
    gl_status st = fn(t, a, strcmp(mode, "fan_in") == 0 ? GL_FAN_IN : GL_FAN_OUT, nl);
    return init_done(L, st);
}

static int i_kaiming_uniform(lua_State *L) { return kaiming(L, "kaiming_uniform_", gl_init_kaiming_uniform); }
static int i_kaiming_normal(lua_State *L) { return kaiming(L, "kaiming_normal_", gl_init_kaiming_normal); }

/* calculate_gain(nonlinearity [, param]) */
static int i_calculate_gain(lua_State *L)
{
    double gain = 1.0;
    gl_lua_check(L, gl_init_gain(luaL_checkstring(L, 1), luaL_optnumber(L, 2, -1.0), &gain));
    lua_pushnumber(L, gain);
    return 1;
}

/* --- registration ---------------------------------------------------------------------- */

static const luaL_Reg module_methods[] = {
    {"forward", m_forward},
    {"parameters", m_parameters},
    {"named_parameters", m_named_parameters},
    {"buffers", m_buffers},
    {"named_buffers", m_named_buffers},
    {"named_children", m_named_children},
    {"state_dict", m_state_dict},
    {"named_tensors", m_named_tensors},
    {"load_state_dict", m_load_state_dict},
    {"train", m_train},
    {"eval", m_eval},
    {"training", m_training},
    {"zero_grad", m_zero_grad},
    {"requires_grad_", m_requires_grad_},
    {"num_parameters", m_num_parameters},
    {"describe", m_describe},
    {"free", m_free},
    {NULL, NULL},
};

static const luaL_Reg module_meta[] = {
    {"__gc", m_free},         {"__close", m_free},       {"__tostring", m_tostring}, {"__len", m_len},
    {"__index", m_index},     {"__newindex", m_newindex}, {"__call", m_call},      {NULL, NULL},
};

static const luaL_Reg constructors[] = {
    {"Linear", l_linear},
    {"Embedding", l_embedding},
    {"LayerNorm", l_layer_norm},
    {"RMSNorm", l_rms_norm},
    {"Dropout", l_dropout},
    {"ReLU", l_relu},
    {"GELU", l_gelu},
    {"SiLU", l_silu},
    {"Tanh", l_tanh},
    {"Sigmoid", l_sigmoid},
    {"LeakyReLU", l_leaky_relu},
    {"_is_cmodule", l_is_cmodule},
    {"_tensor_key", l_tensor_key},
    {"_load_tensors", l_load_tensors},
    {NULL, NULL},
};

static const luaL_Reg init_functions[] = {
    {"uniform_", i_uniform},
    {"normal_", i_normal},
    {"constant_", i_constant},
    {"zeros_", i_zeros},
    {"ones_", i_ones},
    {"xavier_uniform_", i_xavier_uniform},
    {"xavier_normal_", i_xavier_normal},
    {"kaiming_uniform_", i_kaiming_uniform},
    {"kaiming_normal_", i_kaiming_normal},
    {"calculate_gain", i_calculate_gain},
    {NULL, NULL},
};

void gl_lua_open_nn(lua_State *L, int module_idx)
{
    module_idx = lua_absindex(L, module_idx);
    luaL_newmetatable(L, GL_LUA_MODULE);
    luaL_setfuncs(L, module_meta, 0);
    lua_pushliteral(L, "Module");
    lua_setfield(L, -2, "__name");
    lua_pop(L, 1);
    luaL_getsubtable(L, LUA_REGISTRYINDEX, MODULE_METHODS);
    luaL_setfuncs(L, module_methods, 0);
    lua_pop(L, 1);
    /* The cache of userdata by module pointer holds them weakly. */
    luaL_getsubtable(L, LUA_REGISTRYINDEX, MODULE_CACHE);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "v");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_pop(L, 1);

    luaL_getsubtable(L, module_idx, "nn");
    luaL_setfuncs(L, constructors, 0);
    luaL_getsubtable(L, -1, "init");
    luaL_setfuncs(L, init_functions, 0);
    lua_pop(L, 2);
}
