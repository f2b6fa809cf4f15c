/* Binding of the plot area: text charts and pictures (src/core/chart.h), so
 * that a headless script draws the same charts as the TUI, for its logs.
 *
 *   gl.plot(series [, opts]) -> string
 *     series: a 1-D tensor or a list of numbers (one series);
 *             {name = values, ...} (several, in name order);
 *             a list of {name=, y=, x=, color=} tables, tensors or lists
 *             (several, in list order);
 *             values are 1-D tensors or lists of numbers (nan = a gap);
 *             x defaults to 1, 2, 3, ... (steps count from 1, as positions
 *             do in Lua).
 *     opts: width=72, height=16 (cells, axes and labels included), title,
 *           log=false (log10 y), last=N (only the last N steps), legend
 *           (default: when there are several series), color=false (ANSI
 *           256-colour escapes), glyphs="braille"|"blocks"|"ascii".
 *   gl.plot_image(t [, opts]) -> string
 *     t: [H,W] grey, [H,W,C] or [C,H,W] with C = 1 or 3 (a [3,H,W] is one
 *        RGB image), or a batch [N,H,W] or [N,C,H,W] laid out as a grid
 *        (nrow images a row, padding pixels of black between them, as
 *        torchvision's make_grid); u8 (0..255) or f32 (0..1, clamped).
 *     opts: width, height (cells to fit in; without them the picture keeps
 *           one pixel per column, at most 80x40 cells), nrow=8, padding=1,
 *           color=true (colour half-blocks), glyphs="blocks"|"braille" (both
 *           half-blocks, need color) or "ascii" (a grey ramp; the default
 *           when color=false).
 * Both are Tensor methods too: loss:plot{title = "loss"}, x:plot_image().
 * Memory a call gathers (values, cells) is owned by the Lua stack, so a
 * raised error leaks nothing. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/chart.h"
#include "lua/binding.h"

#define MAX_SIDE 1000

/* Series colours, told apart on dark and light terminals. */
static const int16_t palette[] = {33, 208, 34, 160, 135, 178, 37, 244};

static int check_size(lua_State *L, int opts, const char *op, const char *key, int def)
{
    double v = gl_lua_optfield_number(L, opts, key, def);
    if (v != floor(v) || v < 1 || v > MAX_SIDE)
        return gl_lua_errorf(L, "%s: %s must be a whole number from 1 to %d (got %g)", op, key, MAX_SIDE, v);
    return (int)v;
}

static gl_glyphs check_glyphs(lua_State *L, int opts, const char *op, gl_glyphs def)
{
    static const char *const names[] = {"braille", "blocks", "ascii"};
    gl_glyphs g = def;
    if (opts && lua_getfield(L, opts, "glyphs") != LUA_TNIL) {
        const char *name = lua_tostring(L, -1);
        int i = 0;
        while (i < 3 && !(name && lua_type(L, -1) == LUA_TSTRING && strcmp(name, names[i]) == 0)) i++;
        if (i == 3)
            gl_lua_errorf(L, "%s: glyphs must be 'braille', 'blocks' or 'ascii' (got %s)", op,
                          name ? name : luaL_typename(L, -1));
        g = (gl_glyphs)i;
    }
    if (opts) lua_pop(L, 1);
    return g;
}

/* The canvas's cells in a userdata that the stack owns (pushed). */
static void push_canvas(lua_State *L, gl_canvas *c, int width, int height)
{
    c->cells = lua_newuserdatauv(L, (size_t)width * (size_t)height * sizeof *c->cells, 0);
    c->width = width;
    c->height = height;
}

static int push_canvas_text(lua_State *L, const gl_canvas *c, bool ansi)
{
    char *s = gl_canvas_to_string(c, ansi);
    if (!s) return gl_lua_fail(L);
    lua_pushstring(L, s);
    free(s);
    return 1;
}

/* --- gl.plot --------------------------------------------------------------------- */

/* A buffer owned by the anchor table at anchor (kept alive until the call returns). */
static void *anchored_buffer(lua_State *L, int anchor, size_t bytes)
{
    void *p = lua_newuserdatauv(L, bytes ? bytes : 1, 0);
    lua_seti(L, anchor, (lua_Integer)luaL_len(L, anchor) + 1);
    return p;
}

/* The values at idx (1-D tensor or list of numbers) as doubles in a buffer
 * that the anchor table owns. what names them in errors. */
static int64_t check_values(lua_State *L, int idx, int anchor, const double **out, const char *what)
{
    idx = lua_absindex(L, idx);
    gl_tensor *t = gl_lua_totensor(L, idx);
    int64_t n;
    if (t) {
        if (t->ndim != 1) {
            char shape[64];
            return gl_lua_errorf(L, "plot: %s must be a 1-D tensor (got shape %s)", what,
                                 gl_tensor_shape_str(t, shape, sizeof shape));
        }
        n = t->numel;
    } else if (lua_istable(L, idx)) {
        n = (int64_t)luaL_len(L, idx);
    } else {
        return gl_lua_errorf(L, "plot: %s must be a 1-D tensor or a list of numbers (got %s)", what,
                             luaL_typename(L, idx));
    }
    double *v = anchored_buffer(L, anchor, (size_t)n * sizeof *v);
    for (int64_t i = 0; i < n; i++) {
        if (t) {
            v[i] = gl_tensor_get(t, i);
            continue;
        }
        if (lua_geti(L, idx, (lua_Integer)(i + 1)) != LUA_TNUMBER)
            return gl_lua_errorf(L, "plot: %s[%lld] must be a number (got %s)", what, (long long)(i + 1),
                                 luaL_typename(L, -1));
        v[i] = lua_tonumber(L, -1);
        lua_pop(L, 1);
    }
    *out = v;
    return n;
}

/* One series from the entry of a series list at idx: {name=, y=, x=, color=}
 * or bare values (a tensor or a list of numbers). */
static void check_entry(lua_State *L, int idx, int anchor, int pos, gl_series *s)
{
    static const char *const keys[] = {"name", "y", "x", "color", NULL};
    char what[64];
    idx = lua_absindex(L, idx);
    snprintf(what, sizeof what, "series %d", pos);
    bool record = false;
    if (lua_istable(L, idx)) {
        record = lua_getfield(L, idx, "y") != LUA_TNIL;
        lua_pop(L, 1);
    }
    if (!record) {
        s->n = check_values(L, idx, anchor, &s->y, what);
        return;
    }
    gl_lua_check_options(L, idx, "plot", keys);
    int type = lua_getfield(L, idx, "name");
    if (type == LUA_TSTRING) {
        s->name = lua_tostring(L, -1); /* the entry keeps it alive */
        snprintf(what, sizeof what, "series '%.40s'", s->name);
    } else if (type != LUA_TNIL) {
        gl_lua_errorf(L, "plot: %s: name must be a string (got %s)", what, luaL_typename(L, -1));
    }
    lua_pop(L, 1);
    if (lua_getfield(L, idx, "color") != LUA_TNIL) {
        if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 0 || lua_tointeger(L, -1) > 255)
            gl_lua_errorf(L, "plot: %s: color must be an xterm-256 colour number 0..255", what);
        s->color = (int16_t)lua_tointeger(L, -1);
    }
    lua_pop(L, 1);
    lua_getfield(L, idx, "y");
    s->n = check_values(L, -1, anchor, &s->y, what);
    lua_pop(L, 1);
    if (lua_getfield(L, idx, "x") != LUA_TNIL) {
        char xwhat[80];
        snprintf(xwhat, sizeof xwhat, "%s x", what);
        int64_t nx = check_values(L, -1, anchor, &s->x, xwhat);
        if (nx != s->n)
            gl_lua_errorf(L, "plot: %s has %lld x values for %lld y values", what, (long long)nx,
                          (long long)s->n);
    }
    lua_pop(L, 1);
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(((const gl_series *)a)->name, ((const gl_series *)b)->name);
}

/* The series at idx into an array the anchor table owns. Returns the count. */
static int check_series(lua_State *L, int idx, int anchor, gl_series **out)
{
    enum { ONE, LIST, MAP } kind = ONE;
    int n = 1;
    if (!gl_lua_totensor(L, idx)) {
        if (!lua_istable(L, idx))
            return gl_lua_errorf(L, "plot: series must be a tensor or a table (got %s)", luaL_typename(L, idx));
        int first = lua_geti(L, idx, 1);
        lua_pop(L, 1);
        if (first == LUA_TTABLE || first == LUA_TUSERDATA) {
            kind = LIST;
            n = (int)luaL_len(L, idx);
        } else if (first == LUA_TNIL) {
            int keys = 0;
            lua_pushnil(L);
            while (lua_next(L, idx)) {
                lua_pop(L, 1);
                if (lua_type(L, -1) != LUA_TSTRING)
                    return gl_lua_errorf(L, "plot: series table keys must be names (got a %s key)",
                                         luaL_typename(L, -1));
                keys++;
            }
            if (keys > 0) kind = MAP, n = keys; /* else {}: one empty series */
        }
    }
    gl_series *s = anchored_buffer(L, anchor, (size_t)n * sizeof *s);
    memset(s, 0, (size_t)n * sizeof *s);
    if (kind == ONE) {
        s[0].n = check_values(L, idx, anchor, &s[0].y, "series");
    } else if (kind == LIST) {
        for (int i = 0; i < n; i++) {
            s[i].color = -1;
            lua_geti(L, idx, i + 1);
            check_entry(L, -1, anchor, i + 1, &s[i]);
            lua_pop(L, 1);
        }
    } else {
        int i = 0;
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            char what[64];
            s[i].name = lua_tostring(L, -2); /* a key of the table: alive while it is */
            snprintf(what, sizeof what, "series '%.40s'", s[i].name);
            s[i].n = check_values(L, -1, anchor, &s[i].y, what);
            lua_pop(L, 1);
            i++;
        }
        qsort(s, (size_t)n, sizeof *s, cmp_names);
    }
    for (int i = 0; i < n; i++) {
        if (kind != LIST || s[i].color < 0) s[i].color = palette[i % (int)(sizeof palette / sizeof *palette)];
        if (!s[i].x) { /* steps count from 1, as positions do in Lua */
            double *x = anchored_buffer(L, anchor, (size_t)s[i].n * sizeof *x);
            for (int64_t k = 0; k < s[i].n; k++) x[k] = (double)(k + 1);
            s[i].x = x;
        }
    }
    *out = s;
    return n;
}

static int l_plot(lua_State *L)
{
    static const char *const keys[] = {"width", "height", "title", "log", "last", "glyphs", "color", "legend", NULL};
    int opts = lua_isnoneornil(L, 2) ? 0 : 2;
    if (opts) luaL_checktype(L, 2, LUA_TTABLE);
    gl_lua_check_options(L, opts, "plot", keys);
    int width = check_size(L, opts, "plot", "width", 72), height = check_size(L, opts, "plot", "height", 16);
    gl_chart_opts o = {.glyphs = check_glyphs(L, opts, "plot", GL_GLYPHS_BRAILLE)};
    o.log_y = gl_lua_optfield_bool(L, opts, "log", false);
    double last = gl_lua_optfield_number(L, opts, "last", 0);
    if (last != floor(last) || last < 0)
        return gl_lua_errorf(L, "plot: last must be a whole number >= 0 (got %g)", last);
    o.last_n = (int64_t)last;
    bool ansi = gl_lua_optfield_bool(L, opts, "color", false);
    if (opts) {
        if (lua_getfield(L, opts, "title") != LUA_TNIL) o.title = luaL_checkstring(L, -1); /* opts keeps it */
        lua_pop(L, 1);
    }
    lua_newtable(L); /* anchors the buffers */
    gl_series *s = NULL;
    int n = check_series(L, 1, lua_gettop(L), &s);
    o.legend = gl_lua_optfield_bool(L, opts, "legend", n > 1);
    gl_canvas c;
    push_canvas(L, &c, width, height);
    gl_lua_check(L, gl_chart_draw(&c, s, n, &o));
    return push_canvas_text(L, &c, ansi);
}

/* --- gl.plot_image --------------------------------------------------------------- */

typedef struct {
    int64_t n, c, h, w; /* images, channels, height, width */
    bool chw;           /* channels before rows */
} layout;

static layout check_layout(lua_State *L, const gl_tensor *t)
{
    const int64_t *d = t->shape;
    layout g = {.n = 1, .c = 1};
    bool chan3 = t->ndim == 3 && (d[2] == 1 || d[2] == 3), chan0 = t->ndim == 3 && (d[0] == 1 || d[0] == 3);
    if (t->ndim == 2) g.h = d[0], g.w = d[1];
    else if (chan3) g.h = d[0], g.w = d[1], g.c = d[2];
    else if (chan0) g.c = d[0], g.h = d[1], g.w = d[2], g.chw = true;
    else if (t->ndim == 3) g.n = d[0], g.h = d[1], g.w = d[2];
    else if (t->ndim == 4 && (d[1] == 1 || d[1] == 3)) g.n = d[0], g.c = d[1], g.h = d[2], g.w = d[3], g.chw = true;
    else {
        char shape[64];
        gl_lua_errorf(L,
                      "plot_image: need [H,W], [H,W,C], [C,H,W], [N,H,W] or [N,C,H,W] with C = 1 or 3 "
                      "(got shape %s)",
                      gl_tensor_shape_str(t, shape, sizeof shape));
    }
    if (g.n * g.h * g.w == 0) gl_lua_errorf(L, "plot_image: the image is empty");
    return g;
}

/* Element (image i, channel ch, row y, column x) scaled to 0..1. */
static float pixel(const gl_tensor *t, const layout *g, int64_t i, int64_t ch, int64_t y, int64_t x)
{
    int64_t k = g->chw ? ((i * g->c + ch) * g->h + y) * g->w + x : ((i * g->h + y) * g->w + x) * g->c + ch;
    if (t->dtype == GL_U8) return (float)((const uint8_t *)gl_tensor_data(t))[k] / 255.0f;
    return gl_tensor_f32(t)[k];
}

static int l_plot_image(lua_State *L)
{
    static const char *const keys[] = {"width", "height", "glyphs", "color", "nrow", "padding", NULL};
    gl_tensor *t = gl_lua_checktensor(L, 1);
    int opts = lua_isnoneornil(L, 2) ? 0 : 2;
    if (opts) luaL_checktype(L, 2, LUA_TTABLE);
    gl_lua_check_options(L, opts, "plot_image", keys);
    if (t->dtype != GL_U8 && t->dtype != GL_F32)
        return gl_lua_errorf(L, "plot_image: the image must be u8 or f32 (got %s)", gl_dtype_name(t->dtype));
    layout g = check_layout(L, t);
    bool color = gl_lua_optfield_bool(L, opts, "color", true);
    gl_glyphs glyphs = check_glyphs(L, opts, "plot_image", color ? GL_GLYPHS_BLOCKS : GL_GLYPHS_ASCII);
    if (!color && glyphs != GL_GLYPHS_ASCII)
        return gl_lua_errorf(L, "plot_image: half-block glyphs need color=true (or use glyphs='ascii')");
    double nrow = gl_lua_optfield_number(L, opts, "nrow", 8), pad = gl_lua_optfield_number(L, opts, "padding", 1);
    if (nrow != floor(nrow) || nrow < 1 || nrow > MAX_SIDE)
        return gl_lua_errorf(L, "plot_image: nrow must be a whole number from 1 to %d (got %g)", MAX_SIDE, nrow);
    if (pad != floor(pad) || pad < 0 || pad > 64)
        return gl_lua_errorf(L, "plot_image: padding must be a whole number from 0 to 64 (got %g)", pad);

    /* The grid, as torchvision's make_grid lays it out, in HWC floats. */
    int64_t p = g.n > 1 ? (int64_t)pad : 0, cols = g.n < (int64_t)nrow ? g.n : (int64_t)nrow;
    int64_t rows = (g.n + cols - 1) / cols, gh = rows * (g.h + p) + p, gw = cols * (g.w + p) + p;
    if (gh > 65536 || gw > 65536) return gl_lua_errorf(L, "plot_image: the grid is too large (%lldx%lld pixels)",
                                                      (long long)gh, (long long)gw);
    float *px = lua_newuserdatauv(L, (size_t)(gh * gw * g.c) * sizeof *px, 0);
    memset(px, 0, (size_t)(gh * gw * g.c) * sizeof *px);
    for (int64_t i = 0; i < g.n; i++) {
        int64_t oy = p + (i / cols) * (g.h + p), ox = p + (i % cols) * (g.w + p);
        for (int64_t y = 0; y < g.h; y++)
            for (int64_t x = 0; x < g.w; x++)
                for (int64_t ch = 0; ch < g.c; ch++)
                    px[((oy + y) * gw + ox + x) * g.c + ch] = pixel(t, &g, i, ch, y, x);
    }

    bool sized = false;
    if (opts) {
        sized = lua_getfield(L, opts, "width") != LUA_TNIL;
        sized = lua_getfield(L, opts, "height") != LUA_TNIL || sized;
        lua_pop(L, 2);
    }
    int max_cols = sized ? check_size(L, opts, "plot_image", "width", MAX_SIDE) : (gw < 80 ? (int)gw : 80);
    int max_rows = sized ? check_size(L, opts, "plot_image", "height", MAX_SIDE) : (gh < 80 ? (int)(gh + 1) / 2 : 40);
    int ncols, nrows;
    gl_image_fit(gh, gw, max_cols, max_rows, &ncols, &nrows);
    gl_canvas c;
    push_canvas(L, &c, ncols, nrows);
    gl_lua_check(L, gl_image_draw(&c, px, true, gh, gw, (int)g.c, glyphs));
    return push_canvas_text(L, &c, color);
}

static const luaL_Reg functions[] = {{"plot", l_plot}, {"plot_image", l_plot_image}, {NULL, NULL}};

void gl_lua_open_plot(lua_State *L, int module_idx) { gl_lua_register(L, module_idx, functions, true); }
