/* Binding of the shape area: reshaping, slicing, joining, indexing, masking,
 * comparisons, ordering and sampling. Dims and positions typed as numbers are
 * 1-based (negative from the end); ids tensors and returned indices hold
 * 0-based values. cat and stack are functions only; where is a function
 * (cond, a, b) and a method a:where(cond, b) as in PyTorch; the rest are both. */
#include "lua/binding.h"
#include "ops/shape.h"
#include "ops/sort.h"

/* A shape whose entries may be -1: a table, or the numbers from idx to the top. */
static int shape_arg(lua_State *L, int idx, int64_t *shape, const char *op)
{
    bool table = lua_istable(L, idx);
    int n = table ? (int)luaL_len(L, idx) : lua_gettop(L) - idx + 1;
    if (n < 0) n = 0;
    if (n > GL_MAX_DIMS) luaL_error(L, "%s: shape has %d dims (at most %d)", op, n, GL_MAX_DIMS);
    for (int k = 0; k < n; k++) {
        if (table) {
            lua_geti(L, idx, k + 1);
            if (!lua_isinteger(L, -1)) luaL_error(L, "%s: shape entry %d is not an integer", op, k + 1);
            shape[k] = lua_tointeger(L, -1);
            lua_pop(L, 1);
        } else {
            shape[k] = luaL_checkinteger(L, idx + k);
        }
        if (shape[k] < -1) luaL_error(L, "%s: invalid size %I in shape", op, (lua_Integer)shape[k]);
    }
    return n;
}

/* A dim at which a new dim is inserted into ndim dims: 1..ndim+1, negatives
 * count from ndim+1 (-1 appends). Returned 0-based. */
static int insert_dim(lua_State *L, int idx, const gl_tensor *t, const char *op)
{
    lua_Integer d = luaL_checkinteger(L, idx), nd = t->ndim + 1;
    lua_Integer z = d > 0 ? d - 1 : d + nd;
    if (d == 0 || z < 0 || z >= nd) {
        char s[128];
        luaL_error(L, "%s: dim %d out of range for inserting into shape %s (use 1..%d or -%d..-1)", op, (int)d,
                   gl_tensor_shape_str(t, s, sizeof s), (int)nd, (int)nd);
    }
    return (int)z;
}

/* A 1-based (or negative) position along dim of t, returned 0-based.
 * past_end allows size + 1 (an empty slice at the end). */
static int64_t position(lua_State *L, int idx, const gl_tensor *t, int dim, bool past_end, const char *op)
{
    lua_Integer i = luaL_checkinteger(L, idx), n = t->shape[dim];
    lua_Integer z = i > 0 ? i - 1 : i + n;
    if (i == 0 || z < 0 || z > n || (z == n && !past_end)) {
        char s[128];
        luaL_error(L, "%s: position %I out of range for dim %d of shape %s (1..%I)", op, (lua_Integer)i, dim + 1,
                   gl_tensor_shape_str(t, s, sizeof s), (lua_Integer)n);
    }
    return z;
}

/* The tensors of the table at idx, in a scratch userdata the stack owns. */
static gl_tensor **tensor_list(lua_State *L, int idx, int *n, const char *op)
{
    luaL_checktype(L, idx, LUA_TTABLE);
    *n = (int)luaL_len(L, idx);
    if (*n < 1) luaL_error(L, "%s: expects a non-empty table of tensors", op);
    gl_tensor **xs = lua_newuserdatauv(L, (size_t)*n * sizeof *xs, 0);
    for (int k = 0; k < *n; k++) {
        lua_geti(L, idx, k + 1);
        xs[k] = gl_lua_totensor(L, -1);
        if (!xs[k])
            luaL_error(L, "%s: element %d of the table is a %s, expected a tensor", op, k + 1, luaL_typename(L, -1));
        lua_pop(L, 1); /* the table keeps it alive */
    }
    return xs;
}

/* reshape(x, shape) / view(x, shape): a view; one size may be -1. */
static int l_reshape(lua_State *L)
{
    gl_tensor *x = gl_lua_checktensor(L, 1);
    int64_t shape[GL_MAX_DIMS];
    int nd = shape_arg(L, 2, shape, "reshape");
    return gl_lua_push(L, gl_reshape(x, nd, shape));
}

/* flatten(x [, start_dim=1 [, end_dim=-1]]) */
static int l_flatten(lua_State *L)
{
    gl_tensor *x = gl_lua_checktensor(L, 1);
    int64_t one = 1;
    if (x->ndim == 0) return gl_lua_push(L, gl_reshape(x, 1, &one));
    int s = gl_lua_optdim(L, 2, x, "flatten", 0), e = gl_lua_optdim(L, 3, x, "flatten", x->ndim - 1);
    if (s > e) return luaL_error(L, "flatten: start_dim %d comes after end_dim %d", s + 1, e + 1);
    int64_t shape[GL_MAX_DIMS];
    int nd = 0;
    for (int k = 0; k < x->ndim; k++) {
        if (k <= s || k > e)
            shape[nd++] = x->shape[k];
        else
            shape[nd - 1] *= x->shape[k];
    }
    return gl_lua_push(L, gl_reshape(x, nd, shape));
}

/* squeeze(x [, dim]): drops size-1 dims (only dim when given, if its size is 1). */
static int l_squeeze(lua_State *L)
{
    gl_tensor *x = gl_lua_checktensor(L, 1);
    int only = lua_isnoneornil(L, 2) || x->ndim == 0 ? -1 : gl_lua_checkdim(L, 2, x, "squeeze");
    int64_t shape[GL_MAX_DIMS];
    int nd = 0;
    for (int k = 0; k < x->ndim; k++)
        if (x->shape[k] != 1 || (only >= 0 && k != only)) shape[nd++] = x->shape[k];
    return gl_lua_push(L, gl_reshape(x, nd, shape));
}

/* unsqueeze(x, dim): inserts a size-1 dim at dim (1..ndim+1). */
static int l_unsqueeze(lua_State *L)
{
    gl_tensor *x = gl_lua_checktensor(L, 1);
    int d = insert_dim(L, 2, x, "unsqueeze");
    int64_t shape[GL_MAX_DIMS + 1];
    for (int k = 0, j = 0; k <= x->ndim; k++) shape[k] = k == d ? 1 : x->shape[j++];
    return gl_lua_push(L, gl_reshape(x, x->ndim + 1, shape));
}

static int l_transpose(lua_State *L)
{
    gl_tensor *x = gl_lua_checktensor(L, 1);
    int d0 = gl_lua_checkdim(L, 2, x, "transpose"), d1 = gl_lua_checkdim(L, 3, x, "transpose");
    return gl_lua_push(L, gl_transpose(x, d0, d1));
}

/* t(x): transpose of a 2-D tensor; 0-D and 1-D tensors come back as they are (a view). */
static int l_t(lua_State *L)
{
    gl_tensor *x = gl_lua_checktensor(L, 1);
    if (x->ndim < 2) return gl_lua_push(L, gl_reshape(x, x->ndim, x->shape));
    if (x->ndim > 2) {
        char s[128];
        return luaL_error(L, "t: expects at most 2 dims, got shape %s (use transpose)",
                          gl_tensor_shape_str(x, s, sizeof s));
    }
    return gl_lua_push(L, gl_transpose(x, 0, 1));
}

/* permute(x, {dims}) or permute(x, d1, d2, ...) */
static int l_permute(lua_State *L)
{
    gl_tensor *x = gl_lua_checktensor(L, 1);
    bool table = lua_istable(L, 2);
    int n = table ? (int)luaL_len(L, 2) : lua_gettop(L) - 1;
    if (n != x->ndim) {
        char s[128];
        return luaL_error(L, "permute: got %d dims for a tensor of shape %s", n, gl_tensor_shape_str(x, s, sizeof s));
    }
    int perm[GL_MAX_DIMS];
    for (int k = 0; k < n; k++) {
        if (table) {
            lua_geti(L, 2, k + 1);
            perm[k] = gl_lua_checkdim(L, lua_gettop(L), x, "permute");
            lua_pop(L, 1);
        } else {
            perm[k] = gl_lua_checkdim(L, k + 2, x, "permute");
        }
    }
    return gl_lua_push(L, gl_permute(x, perm));
}

/* narrow(x, dim, start, length): start is 1-based. */
static int l_narrow(lua_State *L)
{
    gl_tensor *x = gl_lua_checktensor(L, 1);
    int d = gl_lua_checkdim(L, 2, x, "narrow");
    int64_t start = position(L, 3, x, d, true, "narrow");
    lua_Integer len = luaL_checkinteger(L, 4);
    if (len < 0 || len > x->shape[d] - start) {
        char s[128];
        return luaL_error(L, "narrow: length %I from position %I exceeds dim %d of shape %s", (lua_Integer)len,
                          (lua_Integer)start + 1, d + 1, gl_tensor_shape_str(x, s, sizeof s));
    }
    return gl_lua_push(L, gl_narrow(x, d, start, len));
}

/* select(x, dim, i): i is 1-based; t[i] calls select(t, 1, i). */
static int l_select(lua_State *L)
{
    gl_tensor *x = gl_lua_checktensor(L, 1);
    if (x->ndim == 0) return luaL_error(L, "select: cannot select from a 0-dim tensor");
    int d = gl_lua_checkdim(L, 2, x, "select");
    return gl_lua_push(L, gl_select(x, d, position(L, 3, x, d, false, "select")));
}

/* index(x, dim, ids): the positions ids (1-D, 0-based) along dim. */
static int l_index(lua_State *L)
{
    gl_tensor *x = gl_lua_checktensor(L, 1);
    int d = gl_lua_checkdim(L, 2, x, "index");
    return gl_lua_push(L, gl_index_select(x, d, gl_lua_checktensor(L, 3)));
}

/* cat({tensors} [, dim=1]) */
static int l_cat(lua_State *L)
{
    int n;
    lua_settop(L, 2); /* the scratch list goes above the arguments */
    gl_tensor **xs = tensor_list(L, 1, &n, "cat");
    int d = gl_lua_optdim(L, 2, xs[0], "cat", 0);
    return gl_lua_push(L, gl_cat(n, xs, d));
}

/* stack({tensors} [, dim=1]): dim ranges over 1..ndim+1. */
static int l_stack(lua_State *L)
{
    int n;
    lua_settop(L, 2);
    gl_tensor **xs = tensor_list(L, 1, &n, "stack");
    int d = lua_isnoneornil(L, 2) ? 0 : insert_dim(L, 2, xs[0], "stack");
    return gl_lua_push(L, gl_stack(n, xs, d));
}

/* Pushes a table of narrow views/copies of x along d with the given lengths. */
static int push_pieces(lua_State *L, gl_tensor *x, int d, int n, const int64_t *lens)
{
    lua_createtable(L, n, 0);
    int64_t at = 0;
    for (int k = 0; k < n; k++) {
        gl_lua_push(L, gl_narrow(x, d, at, lens[k]));
        lua_rawseti(L, -2, k + 1);
        at += lens[k];
    }
    return 1;
}

/* Lengths of pieces of at most size covering n (one empty piece when n = 0). */
static int64_t *even_pieces(lua_State *L, int64_t n, int64_t size, int *count)
{
    *count = n == 0 ? 1 : (int)((n + size - 1) / size);
    int64_t *lens = lua_newuserdatauv(L, (size_t)*count * sizeof *lens, 0);
    for (int k = 0; k < *count; k++) lens[k] = n - k * size < size ? n - k * size : size;
    return lens;
}

/* split(x, size | {sizes} [, dim=1]) -> table of tensors */
static int l_split(lua_State *L)
{
    gl_tensor *x = gl_lua_checktensor(L, 1);
    if (x->ndim == 0) return luaL_error(L, "split: cannot split a 0-dim tensor");
    int d = gl_lua_optdim(L, 3, x, "split", 0), count;
    int64_t n = x->shape[d], *lens;
    if (lua_istable(L, 2)) {
        count = (int)luaL_len(L, 2);
        lens = lua_newuserdatauv(L, (size_t)(count ? count : 1) * sizeof *lens, 0);
        int64_t sum = 0;
        for (int k = 0; k < count; k++) {
            lua_geti(L, 2, k + 1);
            if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 0)
                return luaL_error(L, "split: size %d is not a non-negative integer", k + 1);
            sum += lens[k] = lua_tointeger(L, -1);
            lua_pop(L, 1);
        }
        if (sum != n)
            return luaL_error(L, "split: sizes sum to %I but dim %d has size %I", (lua_Integer)sum, d + 1,
                              (lua_Integer)n);
    } else {
        lua_Integer size = luaL_checkinteger(L, 2);
        if (size < 1) return luaL_error(L, "split: size must be positive, got %I", (lua_Integer)size);
        lens = even_pieces(L, n, size, &count);
    }
    return push_pieces(L, x, d, count, lens);
}

/* chunk(x, n [, dim=1]): pieces of ceil(size / n), so possibly fewer than n. */
static int l_chunk(lua_State *L)
{
    gl_tensor *x = gl_lua_checktensor(L, 1);
    lua_Integer chunks = luaL_checkinteger(L, 2);
    if (chunks < 1) return luaL_error(L, "chunk: number of chunks must be positive, got %I", (lua_Integer)chunks);
    if (x->ndim == 0) return luaL_error(L, "chunk: cannot split a 0-dim tensor");
    int d = gl_lua_optdim(L, 3, x, "chunk", 0), count;
    int64_t n = x->shape[d], size = (n + chunks - 1) / chunks;
    int64_t *lens = even_pieces(L, n, size ? size : 1, &count);
    return push_pieces(L, x, d, count, lens);
}

/* expand(x, shape): -1 keeps a size. */
static int l_expand(lua_State *L)
{
    gl_tensor *x = gl_lua_checktensor(L, 1);
    int64_t shape[GL_MAX_DIMS];
    int nd = shape_arg(L, 2, shape, "expand");
    return gl_lua_push(L, gl_expand(x, nd, shape));
}

static int l_gather(lua_State *L)
{
    gl_tensor *x = gl_lua_checktensor(L, 1);
    int d = gl_lua_checkdim(L, 2, x, "gather");
    return gl_lua_push(L, gl_gather(x, d, gl_lua_checktensor(L, 3)));
}

static int l_scatter_add(lua_State *L)
{
    gl_tensor *x = gl_lua_checktensor(L, 1);
    int d = gl_lua_checkdim(L, 2, x, "scatter_add");
    return gl_lua_push(L, gl_scatter_add(x, d, gl_lua_checktensor(L, 3), gl_lua_checktensor(L, 4)));
}

static int l_masked_fill(lua_State *L)
{
    gl_tensor *x = gl_lua_checktensor(L, 1), *mask = gl_lua_checktensor(L, 2);
    return gl_lua_push(L, gl_masked_fill(x, mask, (float)luaL_checknumber(L, 3)));
}

/* The tensor at idx, or a number there turned into a 0-dim tensor of dtype dt (owned by the stack). */
static gl_tensor *operand_of(lua_State *L, int idx, gl_dtype dt)
{
    if (lua_type(L, idx) != LUA_TNUMBER) return gl_lua_checktensor(L, idx);
    gl_lua_push(L, gl_tensor_new(dt, 0, NULL));
    gl_tensor *t = gl_lua_totensor(L, -1);
    gl_tensor_set(t, 0, lua_tonumber(L, idx));
    return t;
}

/* cond ? (arg a) : (arg b); a number operand takes the other operand's dtype. */
static int where_args(lua_State *L, int c, int a, int b)
{
    gl_tensor *cond = gl_lua_checktensor(L, c), *ta = gl_lua_totensor(L, a), *tb = gl_lua_totensor(L, b);
    gl_tensor *pa = operand_of(L, a, tb ? tb->dtype : GL_F32);
    gl_tensor *pb = operand_of(L, b, ta ? ta->dtype : GL_F32);
    return gl_lua_push(L, gl_where(cond, pa, pb));
}

/* gl.where(cond, a, b) */
static int l_where(lua_State *L) { return where_args(L, 1, 2, 3); }

/* a:where(cond, b), PyTorch's method order: a where cond holds, else b. */
static int l_where_method(lua_State *L) { return where_args(L, 2, 1, 3); }

static int l_tril(lua_State *L)
{
    gl_tensor *x = gl_lua_checktensor(L, 1);
    return gl_lua_push(L, gl_tril(x, luaL_optinteger(L, 2, 0)));
}

static int l_triu(lua_State *L)
{
    gl_tensor *x = gl_lua_checktensor(L, 1);
    return gl_lua_push(L, gl_triu(x, luaL_optinteger(L, 2, 0)));
}

static int l_one_hot(lua_State *L)
{
    gl_tensor *ids = gl_lua_checktensor(L, 1);
    return gl_lua_push(L, gl_one_hot(ids, luaL_checkinteger(L, 2)));
}

static int l_clone(lua_State *L) { return gl_lua_push(L, gl_clone(gl_lua_checktensor(L, 1))); }

/* eq/ne/lt/le/gt/ge(a, b): either operand may be a number; u8 0/1 results. */
static int compare(lua_State *L, gl_tensor *(*op)(gl_tensor *, gl_tensor *))
{
    gl_tensor *a = gl_lua_operand(L, 1), *b = gl_lua_operand(L, 2);
    return gl_lua_push(L, op(a, b));
}

static int l_eq(lua_State *L) { return compare(L, gl_eq); }
static int l_ne(lua_State *L) { return compare(L, gl_ne); }
static int l_lt(lua_State *L) { return compare(L, gl_lt); }
static int l_le(lua_State *L) { return compare(L, gl_le); }
static int l_gt(lua_State *L) { return compare(L, gl_gt); }
static int l_ge(lua_State *L) { return compare(L, gl_ge); }

/* Parses [dim=-1 [, opts]] at idx, where opts may also stand at idx. */
static int dim_and_opts(lua_State *L, int idx, const gl_tensor *x, const char *op, const char *const *allowed,
                        int *opts)
{
    int d = x->ndim - 1;
    *opts = idx;
    if (!lua_istable(L, idx)) {
        d = gl_lua_optdim(L, idx, x, op, x->ndim - 1);
        *opts = idx + 1;
    }
    if (!lua_isnoneornil(L, *opts)) luaL_checktype(L, *opts, LUA_TTABLE);
    gl_lua_check_options(L, *opts, op, allowed);
    return d;
}

/* Pushes values and indices of an ordering op (NULL values raise). */
static int push_pair(lua_State *L, gl_tensor *values, gl_tensor *indices)
{
    gl_lua_push(L, values);
    gl_lua_push(L, indices);
    return 2;
}

/* topk(x, k [, dim=-1] [, {largest=true}]) -> values, indices (0-based i64) */
static int l_topk(lua_State *L)
{
    static const char *const allowed[] = {"largest", NULL};
    gl_tensor *x = gl_lua_checktensor(L, 1), *idx;
    lua_Integer k = luaL_checkinteger(L, 2);
    int opts, d = dim_and_opts(L, 3, x, "topk", allowed, &opts);
    gl_tensor *v = gl_topk(x, k, d, gl_lua_optfield_bool(L, opts, "largest", true), &idx);
    return push_pair(L, v, idx);
}

/* sort(x [, dim=-1] [, {descending=false}]) -> values, indices (0-based i64); stable */
static int l_sort(lua_State *L)
{
    static const char *const allowed[] = {"descending", NULL};
    gl_tensor *x = gl_lua_checktensor(L, 1), *idx;
    int opts, d = dim_and_opts(L, 2, x, "sort", allowed, &opts);
    gl_tensor *v = gl_sort(x, d, gl_lua_optfield_bool(L, opts, "descending", false), &idx);
    return push_pair(L, v, idx);
}

/* multinomial(probs, n [, {replacement=false}]) -> i64 [n] or [R, n], 0-based */
static int l_multinomial(lua_State *L)
{
    static const char *const allowed[] = {"replacement", NULL};
    gl_tensor *p = gl_lua_checktensor(L, 1);
    lua_Integer n = luaL_checkinteger(L, 2);
    if (!lua_isnoneornil(L, 3)) luaL_checktype(L, 3, LUA_TTABLE);
    gl_lua_check_options(L, 3, "multinomial", allowed);
    return gl_lua_push(L, gl_multinomial(p, n, gl_lua_optfield_bool(L, 3, "replacement", false)));
}

static const luaL_Reg functions[] = {
    {"cat", l_cat}, {"stack", l_stack}, {"where", l_where}, {NULL, NULL},
};

static const luaL_Reg methods[] = {
    {"reshape", l_reshape},         {"view", l_reshape},     {"flatten", l_flatten},
    {"squeeze", l_squeeze},         {"unsqueeze", l_unsqueeze}, {"transpose", l_transpose},
    {"t", l_t},                     {"permute", l_permute},  {"narrow", l_narrow},
    {"select", l_select},           {"index", l_index},      {"split", l_split},
    {"chunk", l_chunk},             {"expand", l_expand},    {"gather", l_gather},
    {"scatter_add", l_scatter_add}, {"masked_fill", l_masked_fill}, {"tril", l_tril},
    {"triu", l_triu},               {"one_hot", l_one_hot},  {"clone", l_clone},
    {"eq", l_eq},                   {"ne", l_ne},            {"lt", l_lt},
    {"le", l_le},                   {"gt", l_gt},            {"ge", l_ge},
    {"topk", l_topk},               {"sort", l_sort},        {"multinomial", l_multinomial},
    {NULL, NULL},
};

void gl_lua_open_shape(lua_State *L, int module_idx)
{
    gl_lua_register(L, module_idx, functions, false);
    gl_lua_register(L, module_idx, methods, true);
    /* where is a method with PyTorch's argument order, so it is not registered as the function */
    luaL_getsubtable(L, LUA_REGISTRYINDEX, GL_LUA_METHODS);
    lua_pushcfunction(L, l_where_method);
    lua_setfield(L, -2, "where");
    lua_pop(L, 1);
}
