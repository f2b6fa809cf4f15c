/* gl.optim: the optimizers, gradient clipping and learning-rate schedules of
 * src/optim.
 *
 *   gl.optim.sgd(params, {lr=1e-3, momentum=0, dampening=0, nesterov=false, weight_decay=0})
 *   gl.optim.adam(params, {lr=1e-3, betas={0.9, 0.999}, eps=1e-8, weight_decay=0})
 *   gl.optim.adamw(params, {lr=1e-3, betas={0.9, 0.999}, eps=1e-8, weight_decay=1e-2})
 *
 * params is a list of tensors, or a list of groups {params = {...}, <any
 * option>} whose options override the defaults given after it. Methods:
 * step(), zero_grad(), lr([g]) (group g, 1-based; default 1), set_lr(x [, g])
 * (every group unless g), num_groups(), state_dict() ->
 * {tensors = {name -> tensor}, scalars = {name -> number}} (names in
 * optim/optim.h; the tensors are shared) and load_state_dict(sd).
 *
 *   gl.optim.clip_grad_norm(params, max_norm [, {norm_type = 2}]) -> total norm
 *   gl.optim.schedule.constant{lr=}, .step{lr=, step_size=, gamma=0.1},
 *     .cosine{lr=, max_steps=, warmup=0, min_lr=0, start_lr=0}
 * A schedule is called with the number of steps already taken (0 first):
 * sched(s) or sched:lr(s). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "lua/binding.h"
#include "optim/optim.h"
#include "optim/schedule.h"

#define GL_LUA_OPTIM "genlab.Optimizer"
#define GL_LUA_SCHEDULE "genlab.Schedule"
#define SCALAR_LIST "genlab.optim.ScalarList"

typedef struct {
    gl_optim *o; /* NULL once freed */
} optim_ud;

/* --- temporary scalar lists owned by the Lua stack (no leak when a call raises);
 * tensor lists come from gl_lua_new_tensor_list --- */

static int scalar_list_gc(lua_State *L)
{
    gl_scalar_list_clear(luaL_checkudata(L, 1, SCALAR_LIST));
    return 0;
}

static void *new_box(lua_State *L, size_t size, const char *tname, lua_CFunction gc)
{
    void *p = lua_newuserdatauv(L, size, 0);
    memset(p, 0, size);
    if (luaL_newmetatable(L, tname)) {
        lua_pushcfunction(L, gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    return p;
}

static gl_scalar_list *new_scalar_list(lua_State *L)
{
    return new_box(L, sizeof(gl_scalar_list), SCALAR_LIST, scalar_list_gc);
}

/* The list of tensors at idx into l. */
static void tensors_from(lua_State *L, int idx, gl_tensor_list *l, const char *op)
{
    idx = lua_absindex(L, idx);
    if (!lua_istable(L, idx)) luaL_error(L, "%s: params must be a list of tensors (got %s)", op, luaL_typename(L, idx));
    lua_Integer n = luaL_len(L, idx);
    for (lua_Integer k = 1; k <= n; k++) {
        lua_geti(L, idx, k);
        gl_tensor *t = gl_lua_totensor(L, -1);
        if (!t) luaL_error(L, "%s: params[%d] is a %s, not a tensor", op, (int)k, luaL_typename(L, -1));
        gl_lua_check(L, gl_tensor_list_add(l, NULL, t));
        lua_pop(L, 1);
    }
}

/* --- optimizer -------------------------------------------------------------------- */

static gl_optim *check_optim(lua_State *L, int idx)
{
    optim_ud *u = luaL_checkudata(L, idx, GL_LUA_OPTIM);
    if (!u->o) luaL_error(L, "attempt to use a freed optimizer");
    return u->o;
}

static int o_free(lua_State *L)
{
    optim_ud *u = luaL_checkudata(L, 1, GL_LUA_OPTIM);
    gl_optim_free(u->o);
    u->o = NULL;
    return 0;
}

static const char *const sgd_keys[] = {"lr", "momentum", "dampening", "nesterov", "weight_decay", NULL};
static const char *const adam_keys[] = {"lr", "betas", "eps", "weight_decay", NULL};
static const char *const sgd_group_keys[] = {"params", "lr", "momentum", "dampening", "nesterov", "weight_decay", NULL};
static const char *const adam_group_keys[] = {"params", "lr", "betas", "eps", "weight_decay", NULL};

/* Overrides h by the options in the table at idx. */
static void read_hparams(lua_State *L, int idx, gl_optim_kind kind, gl_optim_hparams *h, const char *op)
{
    h->lr = gl_lua_optfield_number(L, idx, "lr", h->lr);
    h->weight_decay = gl_lua_optfield_number(L, idx, "weight_decay", h->weight_decay);
    if (kind == GL_OPTIM_SGD) {
        h->momentum = gl_lua_optfield_number(L, idx, "momentum", h->momentum);
        h->dampening = gl_lua_optfield_number(L, idx, "dampening", h->dampening);
        h->nesterov = gl_lua_optfield_bool(L, idx, "nesterov", h->nesterov);
        return;
    }
    h->eps = gl_lua_optfield_number(L, idx, "eps", h->eps);
    lua_getfield(L, idx, "betas");
    if (!lua_isnil(L, -1)) {
        if (!lua_istable(L, -1) || luaL_len(L, -1) != 2)
            luaL_error(L, "%s: betas must be a table of two numbers, e.g. {0.9, 0.999}", op);
        lua_geti(L, -1, 1);
        lua_geti(L, -2, 2);
        if (!lua_isnumber(L, -2) || !lua_isnumber(L, -1))
            luaL_error(L, "%s: betas must be a table of two numbers, e.g. {0.9, 0.999}", op);
        h->beta1 = lua_tonumber(L, -2);
        h->beta2 = lua_tonumber(L, -1);
        lua_pop(L, 2);
    }
    lua_pop(L, 1);
}

static int construct(lua_State *L, gl_optim_kind kind, const char *op)
{
    const char *const *keys = kind == GL_OPTIM_SGD ? sgd_keys : adam_keys;
    const char *const *group_keys = kind == GL_OPTIM_SGD ? sgd_group_keys : adam_group_keys;
    luaL_checktype(L, 1, LUA_TTABLE);
    if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    if (lua_isnil(L, 2)) {
        lua_newtable(L);
        lua_replace(L, 2);
    }
    gl_lua_check_options(L, 2, op, keys);
    gl_optim_hparams defaults = gl_optim_defaults(kind);
    read_hparams(L, 2, kind, &defaults, op);

    optim_ud *u = lua_newuserdatauv(L, sizeof *u, 0);
    u->o = NULL;
    luaL_setmetatable(L, GL_LUA_OPTIM);
    if (!(u->o = gl_optim_new(kind))) return gl_lua_fail(L);

    lua_Integer n = luaL_len(L, 1);
    if (n == 0) return luaL_error(L, "%s: got an empty parameter list", op);
    lua_geti(L, 1, 1);
    bool groups = lua_istable(L, -1);
    lua_pop(L, 1);
    if (!groups) {
        gl_tensor_list *l = gl_lua_new_tensor_list(L);
        tensors_from(L, 1, l, op);
        gl_lua_check(L, gl_optim_add_group(u->o, l, &defaults));
        lua_pop(L, 1);
        return 1;
    }
    for (lua_Integer g = 1; g <= n; g++) {
        lua_geti(L, 1, g);
        int gi = lua_gettop(L);
        if (!lua_istable(L, gi))
            return luaL_error(L, "%s: group %d is a %s, not a table", op, (int)g, luaL_typename(L, gi));
        gl_lua_check_options(L, gi, op, group_keys);
        gl_optim_hparams h = defaults;
        read_hparams(L, gi, kind, &h, op);
        gl_tensor_list *l = gl_lua_new_tensor_list(L);
        lua_getfield(L, gi, "params");
        if (lua_isnil(L, -1)) return luaL_error(L, "%s: group %d has no params", op, (int)g);
        tensors_from(L, -1, l, op);
        gl_lua_check(L, gl_optim_add_group(u->o, l, &h));
        lua_settop(L, gi - 1);
    }
    return 1;
}

static int l_sgd(lua_State *L) { return construct(L, GL_OPTIM_SGD, "sgd"); }
static int l_adam(lua_State *L) { return construct(L, GL_OPTIM_ADAM, "adam"); }
static int l_adamw(lua_State *L) { return construct(L, GL_OPTIM_ADAMW, "adamw"); }

static int o_step(lua_State *L)
{
    gl_lua_check(L, gl_optim_step(check_optim(L, 1)));
    return 0;
}

static int o_zero_grad(lua_State *L)
{
    gl_optim_zero_grad(check_optim(L, 1));
    return 0;
}

/* The 0-based group of the 1-based argument at idx (default: first). */
static int64_t group_arg(lua_State *L, const gl_optim *o, int idx)
{
    lua_Integer g = luaL_optinteger(L, idx, 1);
    if (g < 1 || g > o->n_groups)
        luaL_error(L, "optimizer: group %d out of range 1..%d", (int)g, (int)o->n_groups);
    return g - 1;
}

static int o_lr(lua_State *L)
{
    gl_optim *o = check_optim(L, 1);
    lua_pushnumber(L, o->groups[group_arg(L, o, 2)].h.lr);
    return 1;
}

static int o_set_lr(lua_State *L)
{
    gl_optim *o = check_optim(L, 1);
    double lr = luaL_checknumber(L, 2);
    if (!(lr >= 0)) return luaL_error(L, "set_lr: lr must be >= 0 (got %f)", lr);
    if (lua_isnoneornil(L, 3))
        gl_optim_set_lr(o, lr);
    else
        o->groups[group_arg(L, o, 3)].h.lr = lr;
    return 0;
}

static int o_num_groups(lua_State *L)
{
    lua_pushinteger(L, check_optim(L, 1)->n_groups);
    return 1;
}

static int o_state_dict(lua_State *L)
{
    gl_optim *o = check_optim(L, 1);
    gl_tensor_list *tensors = gl_lua_new_tensor_list(L);
    gl_scalar_list *scalars = new_scalar_list(L);
    gl_lua_check(L, gl_optim_state_dict(o, tensors, scalars));
    lua_createtable(L, 0, 2);
    lua_createtable(L, 0, (int)tensors->n);
    for (int64_t k = 0; k < tensors->n; k++) {
        gl_tensor_retain(tensors->items[k].t);
        gl_lua_push(L, tensors->items[k].t);
        lua_setfield(L, -2, tensors->items[k].name);
    }
    lua_setfield(L, -2, "tensors");
    lua_createtable(L, 0, (int)scalars->n);
    for (int64_t k = 0; k < scalars->n; k++) {
        double v = scalars->items[k].v;
        if (v == floor(v) && fabs(v) < 9e15)
            lua_pushinteger(L, (lua_Integer)v);
        else
            lua_pushnumber(L, v);
        lua_setfield(L, -2, scalars->items[k].name);
    }
    lua_setfield(L, -2, "scalars");
    return 1;
}

static const char *const sd_keys[] = {"tensors", "scalars", NULL};

static int o_load_state_dict(lua_State *L)
{
    gl_optim *o = check_optim(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    gl_lua_check_options(L, 2, "load_state_dict", sd_keys);
    gl_tensor_list *tensors = gl_lua_new_tensor_list(L);
    gl_scalar_list *scalars = new_scalar_list(L);
    if (lua_getfield(L, 2, "tensors") != LUA_TNIL) {
        luaL_checktype(L, -1, LUA_TTABLE);
        lua_pushnil(L);
        while (lua_next(L, -2)) {
            gl_tensor *t = gl_lua_totensor(L, -1);
            if (lua_type(L, -2) != LUA_TSTRING || !t)
                return luaL_error(L, "load_state_dict: tensors must map names to tensors");
            gl_lua_check(L, gl_tensor_list_add(tensors, lua_tostring(L, -2), t));
            lua_pop(L, 1);
        }
    }
    if (lua_getfield(L, 2, "scalars") != LUA_TNIL) {
        luaL_checktype(L, -1, LUA_TTABLE);
        lua_pushnil(L);
        while (lua_next(L, -2)) {
            if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TNUMBER)
                return luaL_error(L, "load_state_dict: scalars must map names to numbers");
            gl_lua_check(L, gl_scalar_list_add(scalars, lua_tostring(L, -2), lua_tonumber(L, -1)));
            lua_pop(L, 1);
        }
    }
    gl_lua_check(L, gl_optim_load_state_dict(o, tensors, scalars));
    return 0;
}

static int o_tostring(lua_State *L)
{
    optim_ud *u = luaL_checkudata(L, 1, GL_LUA_OPTIM);
    if (!u->o) return lua_pushliteral(L, "Optimizer(freed)"), 1;
    const gl_optim *o = u->o;
    int64_t n = 0;
    for (int64_t g = 0; g < o->n_groups; g++) n += o->groups[g].params.n;
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    char line[256];
    snprintf(line, sizeof line, "%s(params=%lld, groups=%lld)", gl_optim_kind_name(o->kind), (long long)n,
             (long long)o->n_groups);
    luaL_addstring(&b, line);
    for (int64_t g = 0; g < o->n_groups; g++) {
        const gl_optim_hparams *h = &o->groups[g].h;
        if (o->kind == GL_OPTIM_SGD)
            snprintf(line, sizeof line,
                     "\n  group %lld: params=%lld, lr=%g, momentum=%g, dampening=%g, nesterov=%s, weight_decay=%g",
                     (long long)g + 1, (long long)o->groups[g].params.n, h->lr, h->momentum, h->dampening,
                     h->nesterov ? "true" : "false", h->weight_decay);
        else
            snprintf(line, sizeof line, "\n  group %lld: params=%lld, lr=%g, betas={%g, %g}, eps=%g, weight_decay=%g",
                     (long long)g + 1, (long long)o->groups[g].params.n, h->lr, h->beta1, h->beta2, h->eps,
                     h->weight_decay);
        luaL_addstring(&b, line);
    }
    luaL_pushresult(&b);
    return 1;
}

/* clip_grad_norm(params, max_norm [, {norm_type = 2}]) -> the total norm before clipping */
static int l_clip_grad_norm(lua_State *L)
{
    static const char *const keys[] = {"norm_type", NULL};
    gl_tensor_list *l = gl_lua_new_tensor_list(L);
    tensors_from(L, 1, l, "clip_grad_norm");
    double max_norm = luaL_checknumber(L, 2);
    gl_lua_check_options(L, 3, "clip_grad_norm", keys);
    double total = 0;
    gl_lua_check(L, gl_clip_grad_norm(l, max_norm, gl_lua_optfield_number(L, 3, "norm_type", 2.0), &total));
    lua_pushnumber(L, total);
    return 1;
}

/* --- schedules ------------------------------------------------------------------------ */

static int s_lr(lua_State *L)
{
    const gl_schedule *s = luaL_checkudata(L, 1, GL_LUA_SCHEDULE);
    lua_pushnumber(L, gl_schedule_lr(s, luaL_checkinteger(L, 2)));
    return 1;
}

static int s_tostring(lua_State *L)
{
    const gl_schedule *s = luaL_checkudata(L, 1, GL_LUA_SCHEDULE);
    char buf[256];
    if (s->kind == GL_SCHEDULE_CONSTANT)
        snprintf(buf, sizeof buf, "schedule.constant{lr=%g}", s->lr);
    else if (s->kind == GL_SCHEDULE_STEP)
        snprintf(buf, sizeof buf, "schedule.step{lr=%g, step_size=%lld, gamma=%g}", s->lr, (long long)s->step_size,
                 s->gamma);
    else
        snprintf(buf, sizeof buf, "schedule.cosine{lr=%g, warmup=%lld, max_steps=%lld, min_lr=%g, start_lr=%g}", s->lr,
                 (long long)s->warmup, (long long)s->max_steps, s->min_lr, s->start_lr);
    lua_pushstring(L, buf);
    return 1;
}

static lua_Integer schedule_int(lua_State *L, const char *op, const char *key, bool required, lua_Integer def)
{
    int ok = 0;
    lua_getfield(L, 1, key);
    if (lua_isnil(L, -1) && !required) return lua_pop(L, 1), def;
    lua_Integer v = lua_tointegerx(L, -1, &ok);
    if (!ok) luaL_error(L, "%s: '%s' must be an integer (got %s)", op, key, luaL_tolstring(L, -1, NULL));
    lua_pop(L, 1);
    return v;
}

static double schedule_lr(lua_State *L, const char *op)
{
    lua_getfield(L, 1, "lr");
    if (!lua_isnumber(L, -1)) luaL_error(L, "%s: 'lr' must be a number (got %s)", op, luaL_typename(L, -1));
    double v = lua_tonumber(L, -1);
    lua_pop(L, 1);
    return v;
}

static int push_schedule(lua_State *L, gl_schedule s)
{
    gl_lua_check(L, gl_schedule_check(&s));
    gl_schedule *u = lua_newuserdatauv(L, sizeof *u, 0);
    *u = s;
    luaL_setmetatable(L, GL_LUA_SCHEDULE);
    return 1;
}

static int l_constant(lua_State *L)
{
    static const char *const keys[] = {"lr", NULL};
    luaL_checktype(L, 1, LUA_TTABLE);
    gl_lua_check_options(L, 1, "constant", keys);
    return push_schedule(L, (gl_schedule){.kind = GL_SCHEDULE_CONSTANT, .lr = schedule_lr(L, "constant")});
}

static int l_step(lua_State *L)
{
    static const char *const keys[] = {"lr", "step_size", "gamma", NULL};
    luaL_checktype(L, 1, LUA_TTABLE);
    gl_lua_check_options(L, 1, "step", keys);
    return push_schedule(L, (gl_schedule){.kind = GL_SCHEDULE_STEP,
                                          .lr = schedule_lr(L, "step"),
                                          .step_size = schedule_int(L, "step", "step_size", true, 0),
                                          .gamma = gl_lua_optfield_number(L, 1, "gamma", 0.1)});
}

static int l_cosine(lua_State *L)
{
    static const char *const keys[] = {"lr", "max_steps", "warmup", "min_lr", "start_lr", NULL};
    luaL_checktype(L, 1, LUA_TTABLE);
    gl_lua_check_options(L, 1, "cosine", keys);
    return push_schedule(L, (gl_schedule){.kind = GL_SCHEDULE_COSINE,
                                          .lr = schedule_lr(L, "cosine"),
                                          .max_steps = schedule_int(L, "cosine", "max_steps", true, 0),
                                          .warmup = schedule_int(L, "cosine", "warmup", false, 0),
                                          .min_lr = gl_lua_optfield_number(L, 1, "min_lr", 0.0),
                                          .start_lr = gl_lua_optfield_number(L, 1, "start_lr", 0.0)});
}

/* --- registration ------------------------------------------------------------------------ */

static const luaL_Reg optim_methods[] = {
    {"step", o_step},       {"zero_grad", o_zero_grad},         {"lr", o_lr},
    {"set_lr", o_set_lr},   {"num_groups", o_num_groups},       {"state_dict", o_state_dict},
    {"load_state_dict", o_load_state_dict}, {"free", o_free},   {NULL, NULL},
};

static const luaL_Reg optim_meta[] = {
    {"__gc", o_free}, {"__close", o_free}, {"__tostring", o_tostring}, {NULL, NULL},
};

static const luaL_Reg functions[] = {
    {"sgd", l_sgd}, {"adam", l_adam}, {"adamw", l_adamw}, {"clip_grad_norm", l_clip_grad_norm}, {NULL, NULL},
};

static const luaL_Reg schedule_functions[] = {
    {"constant", l_constant}, {"step", l_step}, {"cosine", l_cosine}, {NULL, NULL},
};

static const luaL_Reg schedule_meta[] = {
    {"__call", s_lr}, {"__tostring", s_tostring}, {NULL, NULL},
};

void gl_lua_open_optim(lua_State *L, int module_idx)
{
    module_idx = lua_absindex(L, module_idx);
    luaL_newmetatable(L, GL_LUA_OPTIM);
    luaL_setfuncs(L, optim_meta, 0);
    lua_pushliteral(L, "Optimizer");
    lua_setfield(L, -2, "__name");
    lua_newtable(L);
    luaL_setfuncs(L, optim_methods, 0);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);

    luaL_newmetatable(L, GL_LUA_SCHEDULE);
    luaL_setfuncs(L, schedule_meta, 0);
    lua_pushliteral(L, "Schedule");
    lua_setfield(L, -2, "__name");
    lua_newtable(L);
    lua_pushcfunction(L, s_lr);
    lua_setfield(L, -2, "lr");
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);

    luaL_getsubtable(L, module_idx, "optim");
    luaL_setfuncs(L, functions, 0);
    luaL_getsubtable(L, -1, "schedule");
    luaL_setfuncs(L, schedule_functions, 0);
    lua_pop(L, 2);
}
