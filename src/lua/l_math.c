/* Binding of the math area: elementwise binary and unary ops, reductions,
 * softmax, and the arithmetic metamethods of Tensor. Every function is both
 * gl.fn(x, ...) and x:fn(...). Dims are 1-based (negative from the end);
 * max/min/argmax/argmin return 0-based i64 indices, as PyTorch.
 *
 *   add/sub/mul/div/pow/maximum/minimum(a, b)  either side may be a number
 *   sum/mean(x [, dim [, keepdim]])            no dim: over all elements
 *   var/std(x [, dim [, keepdim]] [, {correction = 1}])
 *   max/min(x)            -> 0-dim value
 *   max/min(x, dim [, keepdim]) -> values, indices
 *   max/min(x, y)         -> maximum/minimum(x, y) for a tensor y
 *   argmax/argmin(x [, dim [, keepdim]])      no dim: position in the flattened x
 *   logsumexp(x, dim [, keepdim])
 *   norm(x [, p = 2 [, dim [, keepdim]]])     p may be math.huge / -math.huge
 *   softmax/log_softmax(x, dim) */
#include <math.h>
#include <string.h>

#include "lua/binding.h"
#include "ops/binary.h"
#include "ops/reduce.h"
#include "ops/unary.h"

/* ---- binary ---------------------------------------------------------------- */

typedef gl_tensor *(*binary_fn)(gl_tensor *, gl_tensor *);

/* Tensor-with-number arithmetic on an f32 tensor takes the one-pass affine /
 * pow_scalar kernels; everything else broadcasts two tensors (a number
 * becomes a 0-dim tensor), which also gives the error messages. */
static int arith(lua_State *L, char op, binary_fn fn)
{
    bool na = lua_type(L, 1) == LUA_TNUMBER, nb = lua_type(L, 2) == LUA_TNUMBER;
    gl_tensor *t = na == nb ? NULL : gl_lua_totensor(L, na ? 2 : 1);
    if (t && t->dtype == GL_F32) {
        float c = (float)lua_tonumber(L, na ? 1 : 2);
        switch (op) {
        case '+': return gl_lua_push(L, gl_affine(t, 1.0f, c));
        case '-': return gl_lua_push(L, nb ? gl_affine(t, 1.0f, -c) : gl_affine(t, -1.0f, c));
        case '*': return gl_lua_push(L, gl_affine(t, c, 0.0f));
        case '/':
            if (nb) return gl_lua_push(L, gl_affine(t, 1.0f / c, 0.0f));
            break;
        case '^':
            if (nb) return gl_lua_push(L, gl_pow_scalar(t, c));
            break;
        default: break;
        }
    }
    gl_tensor *a = gl_lua_operand(L, 1), *b = gl_lua_operand(L, 2);
    return gl_lua_push(L, fn(a, b));
}

static int l_add(lua_State *L) { return arith(L, '+', gl_add); }
static int l_sub(lua_State *L) { return arith(L, '-', gl_sub); }
static int l_mul(lua_State *L) { return arith(L, '*', gl_mul); }
static int l_div(lua_State *L) { return arith(L, '/', gl_div); }
static int l_pow(lua_State *L) { return arith(L, '^', gl_pow); }
static int l_maximum(lua_State *L) { return arith(L, 0, gl_maximum); }
static int l_minimum(lua_State *L) { return arith(L, 0, gl_minimum); }

/* ---- unary ------------------------------------------------------------------- */

#define UNARY(name) \
    static int l_##name(lua_State *L) { return gl_lua_push(L, gl_##name(gl_lua_checktensor(L, 1))); }
UNARY(neg)
UNARY(exp)
UNARY(log)
UNARY(sqrt)
UNARY(rsqrt)
UNARY(abs)
UNARY(sin)
UNARY(cos)
UNARY(tanh)
UNARY(sigmoid)
UNARY(relu)
UNARY(silu)
#undef UNARY

/* leaky_relu(x [, slope = 0.01]) */
static int l_leaky_relu(lua_State *L)
{
    gl_tensor *x = gl_lua_checktensor(L, 1);
    return gl_lua_push(L, gl_leaky_relu(x, (float)luaL_optnumber(L, 2, 0.01)));
}

/* gelu(x [, {approximate = "none" | "tanh"}]) */
static int l_gelu(lua_State *L)
{
    static const char *const opts[] = {"approximate", NULL};
    gl_tensor *x = gl_lua_checktensor(L, 1);
    gl_lua_check_options(L, 2, "gelu", opts);
    const char *approx = "none";
    if (lua_istable(L, 2)) {
        lua_getfield(L, 2, "approximate");
        if (!lua_isnil(L, -1)) approx = luaL_checkstring(L, -1);
    }
    bool use_tanh = strcmp(approx, "tanh") == 0;
    if (!use_tanh && strcmp(approx, "none") != 0)
        return luaL_error(L, "gelu: approximate must be \"none\" or \"tanh\" (got \"%s\")", approx);
    return gl_lua_push(L, use_tanh ? gl_gelu_tanh(x) : gl_gelu(x));
}

/* softplus(x [, {beta = 1, threshold = 20}]) */
static int l_softplus(lua_State *L)
{
    static const char *const opts[] = {"beta", "threshold", NULL};
    gl_tensor *x = gl_lua_checktensor(L, 1);
    gl_lua_check_options(L, 2, "softplus", opts);
    float beta = (float)gl_lua_optfield_number(L, 2, "beta", 1.0);
    float threshold = (float)gl_lua_optfield_number(L, 2, "threshold", 20.0);
    return gl_lua_push(L, gl_softplus(x, beta, threshold));
}

/* clamp(x, min, max): nil leaves that side unbounded. */
static int l_clamp(lua_State *L)
{
    gl_tensor *x = gl_lua_checktensor(L, 1);
    if (lua_isnoneornil(L, 2) && lua_isnoneornil(L, 3))
        return luaL_error(L, "clamp: at least one of min and max must be given");
    float lo = lua_isnoneornil(L, 2) ? -INFINITY : (float)luaL_checknumber(L, 2);
    float hi = lua_isnoneornil(L, 3) ? INFINITY : (float)luaL_checknumber(L, 3);
    return gl_lua_push(L, gl_clamp(x, lo, hi));
}

/* ---- reductions ------------------------------------------------------------------ */

typedef gl_tensor *(*all_fn)(gl_tensor *);
typedef gl_tensor *(*dim_fn)(gl_tensor *, int, bool);

/* f(x [, dim [, keepdim]]): no dim reduces everything. */
static int reduce(lua_State *L, const char *op, all_fn all, dim_fn along)
{
    gl_tensor *x = gl_lua_checktensor(L, 1);
    if (lua_isnoneornil(L, 2)) return gl_lua_push(L, all(x));
    int dim = gl_lua_checkdim(L, 2, x, op);
    return gl_lua_push(L, along(x, dim, lua_toboolean(L, 3)));
}

static int l_sum(lua_State *L) { return reduce(L, "sum", gl_sum_all, gl_sum); }
static int l_mean(lua_State *L) { return reduce(L, "mean", gl_mean_all, gl_mean); }
static int l_argmax(lua_State *L) { return reduce(L, "argmax", gl_argmax_all, gl_argmax); }
static int l_argmin(lua_State *L) { return reduce(L, "argmin", gl_argmin_all, gl_argmin); }

/* var/std(x [, dim [, keepdim]] [, {correction = 1}]) */
static int moments(lua_State *L, const char *op, gl_tensor *(*all)(gl_tensor *, int),
                   gl_tensor *(*along)(gl_tensor *, int, bool, int))
{
    static const char *const opts[] = {"correction", NULL};
    gl_tensor *x = gl_lua_checktensor(L, 1);
    int top = lua_gettop(L), o = 0;
    if (top >= 2 && lua_istable(L, top)) o = top--;
    gl_lua_check_options(L, o, op, opts);
    double c = gl_lua_optfield_number(L, o, "correction", 1.0);
    if (c != floor(c) || fabs(c) > 1e9) return luaL_error(L, "%s: correction must be an integer (got %f)", op, c);
    if (top < 2 || lua_isnil(L, 2)) return gl_lua_push(L, all(x, (int)c));
    int dim = gl_lua_checkdim(L, 2, x, op);
    return gl_lua_push(L, along(x, dim, top >= 3 && lua_toboolean(L, 3), (int)c));
}

static int l_var(lua_State *L) { return moments(L, "var", gl_var_all, gl_var); }
static int l_std(lua_State *L) { return moments(L, "std", gl_std_all, gl_std); }

static int extreme(lua_State *L, const char *op, all_fn all, gl_tensor *(*along)(gl_tensor *, int, bool, gl_tensor **),
                   binary_fn elementwise)
{
    gl_tensor *x = gl_lua_checktensor(L, 1);
    gl_tensor *y = gl_lua_totensor(L, 2);
    if (y) return gl_lua_push(L, elementwise(x, y));
    if (lua_isnoneornil(L, 2)) return gl_lua_push(L, all(x));
    int dim = gl_lua_checkdim(L, 2, x, op);
    gl_tensor *idx;
    gl_lua_push(L, along(x, dim, lua_toboolean(L, 3), &idx));
    gl_lua_push(L, idx);
    return 2;
}

static int l_max(lua_State *L) { return extreme(L, "max", gl_max_all, gl_max, gl_maximum); }
static int l_min(lua_State *L) { return extreme(L, "min", gl_min_all, gl_min, gl_minimum); }

/* logsumexp(x, dim [, keepdim]) */
static int l_logsumexp(lua_State *L)
{
    gl_tensor *x = gl_lua_checktensor(L, 1);
    int dim = gl_lua_checkdim(L, 2, x, "logsumexp");
    return gl_lua_push(L, gl_logsumexp(x, dim, lua_toboolean(L, 3)));
}

/* norm(x [, p = 2 [, dim [, keepdim]]]) */
static int l_norm(lua_State *L)
{
    gl_tensor *x = gl_lua_checktensor(L, 1);
    float p = (float)luaL_optnumber(L, 2, 2.0);
    if (lua_isnoneornil(L, 3)) return gl_lua_push(L, gl_norm_all(x, p));
    int dim = gl_lua_checkdim(L, 3, x, "norm");
    return gl_lua_push(L, gl_norm(x, p, dim, lua_toboolean(L, 4)));
}

static int l_softmax(lua_State *L)
{
    gl_tensor *x = gl_lua_checktensor(L, 1);
    return gl_lua_push(L, gl_softmax(x, gl_lua_checkdim(L, 2, x, "softmax")));
}

static int l_log_softmax(lua_State *L)
{
    gl_tensor *x = gl_lua_checktensor(L, 1);
    return gl_lua_push(L, gl_log_softmax(x, gl_lua_checkdim(L, 2, x, "log_softmax")));
}

static const luaL_Reg functions[] = {
    {"add", l_add},
    {"sub", l_sub},
    {"mul", l_mul},
    {"div", l_div},
    {"pow", l_pow},
    {"maximum", l_maximum},
    {"minimum", l_minimum},
    {"neg", l_neg},
    {"exp", l_exp},
    {"log", l_log},
    {"sqrt", l_sqrt},
    {"rsqrt", l_rsqrt},
    {"abs", l_abs},
    {"sin", l_sin},
    {"cos", l_cos},
    {"tanh", l_tanh},
    {"sigmoid", l_sigmoid},
    {"relu", l_relu},
    {"leaky_relu", l_leaky_relu},
    {"gelu", l_gelu},
    {"silu", l_silu},
    {"softplus", l_softplus},
    {"clamp", l_clamp},
    {"sum", l_sum},
    {"mean", l_mean},
    {"var", l_var},
    {"std", l_std},
    {"max", l_max},
    {"min", l_min},
    {"argmax", l_argmax},
    {"argmin", l_argmin},
    {"logsumexp", l_logsumexp},
    {"norm", l_norm},
    {"softmax", l_softmax},
    {"log_softmax", l_log_softmax},
    {NULL, NULL},
};

/* No __eq: == on tensors stays identity, as for every Lua object. */
static const luaL_Reg metamethods[] = {
    {"__add", l_add}, {"__sub", l_sub}, {"__mul", l_mul}, {"__div", l_div},
    {"__pow", l_pow}, {"__unm", l_neg}, {NULL, NULL},
};

void gl_lua_open_math(lua_State *L, int module_idx)
{
    gl_lua_register(L, module_idx, functions, true);
    luaL_getmetatable(L, GL_LUA_TENSOR);
    luaL_setfuncs(L, metamethods, 0);
    lua_pop(L, 1);
}
