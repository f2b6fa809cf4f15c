/* The workbench's views (see app.c's top comment): the ui callbacks through
 * which Lua fills the Samples, Model, Image and Probe panes, and the
 * refresh, at most once a frame, of the panes that show state kept in Lua:
 * the Loss curves (cached series read from gl.metrics), the Model, the
 * Probe (formatted again when its width changes), the status line. */
#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua/binding.h"
#include "tui/app_internal.h"

static const char *const metric_names[] = {"loss", "lr", "tokens_per_s", "grad_norm"};

/* ---- C functions for the helper ------------------------------------------------------- */

int app_ui_sample_begin(lua_State *L)
{
    const char *prompt = luaL_checkstring(L, 1);
    gl_text *t = &app.scr.samples;
    if (t->n > 0) gl_text_add(t, app.scr.utf8 ? "\u2500\u2500\u2500" : "---", app.scr.utf8 ? 9 : 3, GL_TEXT_INFO, 0);
    gl_text_feed(t, prompt, strlen(prompt), GL_TEXT_INPUT);
    if (!app.scr.panes[GL_PANE_SAMPLES].visible) {
        app.scr.panes[GL_PANE_SAMPLES].visible = true;
        gl_screen_layout(&app.scr);
    }
    gl_screen_dirty(&app.scr, GL_PANE_SAMPLES);
    return 0;
}

int app_ui_sample(lua_State *L)
{
    size_t len;
    const char *text = luaL_checklstring(L, 1, &len);
    gl_text_feed(&app.scr.samples, text, len, GL_TEXT_OUT);
    app.scr.panes[GL_PANE_SAMPLES].scroll = 0;
    gl_screen_dirty(&app.scr, GL_PANE_SAMPLES);
    return 0;
}

int app_ui_show_model(lua_State *L)
{
    (void)L;
    app.model_stale = true;
    if (!app.scr.panes[GL_PANE_MODEL].visible) {
        app.scr.panes[GL_PANE_MODEL].visible = true;
        gl_screen_layout(&app.scr);
    }
    return 0;
}

/* ui.image(t [, title]): a tensor as a picture in the Image pane. [H,W] grey,
 * [H,W,1|3] or [1|3,H,W] colour, [N,H,W], [N,1|3,H,W] or [N,H,W,1|3] a grid.
 * u8 is divided by 255; floats outside [0,1] are scaled to their range. */
int app_ui_image(lua_State *L)
{
    gl_tensor *t = gl_lua_checktensor(L, 1);
    const char *title = luaL_optstring(L, 2, NULL);
    const int64_t *s = t->shape;
    int64_t n = 1, c = 1, h = 0, w = 0;
    bool chw = false;
    if (t->ndim == 2) {
        h = s[0], w = s[1];
    } else if (t->ndim == 3 && (s[2] == 1 || s[2] == 3)) {
        h = s[0], w = s[1], c = s[2];
    } else if (t->ndim == 3 && (s[0] == 1 || s[0] == 3)) {
        c = s[0], h = s[1], w = s[2], chw = true;
    } else if (t->ndim == 3) {
        n = s[0], h = s[1], w = s[2];
    } else if (t->ndim == 4 && (s[1] == 1 || s[1] == 3)) {
        n = s[0], c = s[1], h = s[2], w = s[3], chw = true;
    } else if (t->ndim == 4 && (s[3] == 1 || s[3] == 3)) {
        n = s[0], h = s[1], w = s[2], c = s[3];
    } else {
        char buf[64];
        return luaL_error(L, "show: cannot draw a tensor of shape %s as an image (use [H,W], [H,W,3], [N,C,H,W])",
                          gl_tensor_shape_str(t, buf, sizeof buf));
    }
    int64_t gc = (int64_t)ceil(sqrt((double)n)), gr = (n + gc - 1) / gc;
    int64_t gw = gc * (w + 1) - 1, gh = gr * (h + 1) - 1;
    if (n < 1 || h < 1 || w < 1 || gw * gh > ((int64_t)1 << 24)) return luaL_error(L, "show: image too large or empty");
    double lo = 0, hi = 1;
    if (t->dtype == GL_U8) {
        hi = 255;
    } else {
        double mn = INFINITY, mx = -INFINITY;
        for (int64_t i = 0; i < t->numel; i++) {
            double v = gl_tensor_get(t, i);
            if (v < mn) mn = v;
            if (v > mx) mx = v;
        }
        if (mn < 0 || mx > 1) lo = mn, hi = mx > mn ? mx : mn + 1;
    }
    float *px = calloc((size_t)(gw * gh * c), sizeof *px);
    if (!px) return luaL_error(L, "show: out of memory");
    for (int64_t k = 0; k < n; k++) {
        int64_t oy = k / gc * (h + 1), ox = k % gc * (w + 1);
        for (int64_t y = 0; y < h; y++)
            for (int64_t x = 0; x < w; x++)
                for (int64_t ch = 0; ch < c; ch++) {
                    int64_t src = chw ? ((k * c + ch) * h + y) * w + x : ((k * h + y) * w + x) * c + ch;
                    double v = (gl_tensor_get(t, src) - lo) / (hi - lo);
                    px[((oy + y) * gw + ox + x) * c + ch] = (float)(v < 0 ? 0 : v > 1 ? 1 : v);
                }
    }
    char buf[64], label[128];
    snprintf(label, sizeof label, "%s%s%s", title ? title : "", title ? " " : "", gl_tensor_shape_str(t, buf, sizeof buf));
    gl_screen_set_image(&app.scr, px, gh, gw, (int)c, label);
    if (!app.scr.panes[GL_PANE_IMAGE].visible) {
        app.scr.panes[GL_PANE_IMAGE].visible = true;
        gl_screen_layout(&app.scr);
    }
    return 0;
}

/* ui.show_probe(): ui.probe_result (set by gl.probe.show) goes to the Probe pane. */
int app_ui_show_probe(lua_State *L)
{
    (void)L;
    app.probe_stale = true;
    app.scr.panes[GL_PANE_PROBE].scroll = 0;
    if (!app.scr.panes[GL_PANE_PROBE].visible) {
        app.scr.panes[GL_PANE_PROBE].visible = true;
        gl_screen_layout(&app.scr);
    }
    return 0;
}

/* ---- views ------------------------------------------------------------------------------------------ */

static cached_series *cache_of(const char *run, const char *name)
{
    for (int i = 0; i < app.ncache; i++)
        if (strcmp(app.cache[i].run, run) == 0 && strcmp(app.cache[i].name, name) == 0) return &app.cache[i];
    if (app.ncache == (int)(sizeof app.cache / sizeof *app.cache)) return NULL;
    cached_series *c = &app.cache[app.ncache++];
    memset(c, 0, sizeof *c);
    c->run = strdup(run);
    c->name = strdup(name);
    return c;
}

static void cache_push(cached_series *c, double x, double y)
{
    if (c->n == c->cap) {
        int64_t cap = c->cap ? 2 * c->cap : 256;
        double *nx = realloc(c->x, (size_t)cap * sizeof *nx), *ny = nx ? realloc(c->y, (size_t)cap * sizeof *ny) : NULL;
        if (nx) c->x = nx;
        if (!ny) return;
        c->y = ny;
        c->cap = cap;
    }
    c->x[c->n] = x;
    c->y[c->n] = y;
    c->n++;
}

/* Brings the cached series up to date, reading only its newest points
 * unless it changed in some other way than growing. */
static void update_series(cached_series *c)
{
    lua_State *L = app.L;
    for (int attempt = 0; attempt < 2; attempt++) {
        lua_getglobal(L, "gl");
        lua_getfield(L, -1, "metrics");
        lua_getfield(L, -1, "series");
        lua_pushstring(L, c->run);
        lua_pushstring(L, c->name);
        if (attempt == 0 && c->n > 0)
            lua_pushinteger(L, 64);
        else
            lua_pushnil(L);
        if (lua_pcall(L, 3, 2, 0) != LUA_OK) {
            lua_pop(L, 3);
            return;
        }
        int64_t k = (int64_t)lua_rawlen(L, -2), from = -1;
        if (attempt == 0 && c->n > 0) {
            for (int64_t i = k; i >= 1 && from < 0; i--) {
                lua_rawgeti(L, -2, i);
                if (lua_tonumber(L, -1) == c->x[c->n - 1]) from = i + 1;
                lua_pop(L, 1);
            }
        } else {
            c->n = 0;
            from = 1;
        }
        if (from >= 1) {
            for (int64_t i = from; i <= k; i++) {
                lua_rawgeti(L, -2, i);
                lua_rawgeti(L, -2, i);
                double y = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : NAN;
                cache_push(c, lua_tonumber(L, -2), y);
                lua_pop(L, 2);
            }
            lua_pop(L, 4);
            return;
        }
        lua_pop(L, 4);
    }
}

/* The Loss pane's next metric (its m key). */
void app_next_metric(void)
{
    app.metric = (app.metric + 1) % (int)(sizeof metric_names / sizeof *metric_names);
    app.curves_stale = true;
}

static void refresh_curves(void)
{
    lua_State *L = app.L;
    const char *metric = metric_names[app.metric];
    lua_getglobal(L, "gl");
    lua_getfield(L, -1, "metrics");
    lua_getfield(L, -1, "runs");
    if (lua_pcall(L, 0, 1, 0) != LUA_OK) {
        lua_pop(L, 3);
        return;
    }
    int nruns = (int)lua_rawlen(L, -1);
    gl_curve *curves = calloc((size_t)(2 * nruns + 1), sizeof *curves);
    int n = 0;
    for (int r = 1; curves && r <= nruns; r++) {
        lua_rawgeti(L, -1, r);
        const char *run = lua_tostring(L, -1);
        const char *names[2] = {metric, strcmp(metric, "loss") == 0 ? "val_loss" : NULL};
        for (int k = 0; run && k < 2 && names[k]; k++) {
            cached_series *c = cache_of(run, names[k]);
            if (!c) continue;
            update_series(c);
            if (c->n == 0) continue;
            gl_curve *cv = &curves[n];
            char label[128];
            snprintf(label, sizeof label, "%s%s%s", nruns > 1 ? run : "", nruns > 1 ? " " : "",
                     k == 1 ? "val" : names[k]);
            cv->name = strdup(label);
            cv->x = malloc((size_t)c->n * sizeof *cv->x);
            cv->y = malloc((size_t)c->n * sizeof *cv->y);
            if (!cv->name || !cv->x || !cv->y) {
                free(cv->name), free(cv->x), free(cv->y);
                continue;
            }
            memcpy(cv->x, c->x, (size_t)c->n * sizeof *cv->x);
            memcpy(cv->y, c->y, (size_t)c->n * sizeof *cv->y);
            cv->n = c->n;
            n++;
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 3);
    free(app.scr.metric);
    app.scr.metric = strdup(metric);
    gl_screen_set_curves(&app.scr, curves, n);
}

static lua_Integer metrics_version(void)
{
    lua_State *L = app.L;
    lua_getglobal(L, "gl");
    lua_getfield(L, -1, "metrics");
    lua_getfield(L, -1, "version");
    lua_Integer v = lua_pcall(L, 0, 1, 0) == LUA_OK ? lua_tointeger(L, -1) : 0;
    lua_pop(L, 3);
    return v;
}

static void refresh_model(void)
{
    if (!app_call_ui("model_text", 0, 1)) return;
    size_t len;
    const char *text = lua_tolstring(app.L, -1, &len);
    gl_text_clear(&app.scr.model);
    gl_text_feed(&app.scr.model, text ? text : "", text ? len : 0, GL_TEXT_OUT);
    lua_pop(app.L, 1);
    gl_screen_dirty(&app.scr, GL_PANE_MODEL);
    app.model_stale = false;
    app.last_model = app_now();
}

void app_refresh_status(void)
{
    gl_screen *s = &app.scr;
    job *j = app_top();
    char state[160];
    if (j) {
        double t = app_now() - j->started;
        snprintf(state, sizeof state, " %s %s %d:%02d", j->paused ? "PAUSED" : "running", j->label, (int)t / 60,
                 (int)t % 60);
    } else {
        snprintf(state, sizeof state, " ready");
    }
    bool got = app_call_ui("status", 0, 1);
    const char *rest = got ? lua_tostring(app.L, -1) : "";
    snprintf(s->status_text, sizeof s->status_text, "%s | %s | F1 help", state, rest ? rest : "");
    if (got) lua_pop(app.L, 1);
    s->status_dirty = true;
}

/* The last probe result as text for the Probe pane's width (ui.probe_text
 * formats it, in colour when the terminal has colours), when it is new or
 * the width changed. The lines keep their colour escapes for the pane. */
static void refresh_probe(void)
{
    gl_screen *s = &app.scr;
    int width = gl_screen_text_cols(s, GL_PANE_PROBE);
    if (width < 1 || (!app.probe_stale && width == app.probe_width)) return;
    if (width != app.probe_width) s->panes[GL_PANE_PROBE].scroll = 0; /* its lines are other lines now */
    app.probe_stale = false;
    app.probe_width = width;
    lua_pushinteger(app.L, width);
    lua_pushboolean(app.L, s->colors);
    if (!app_call_ui("probe_text", 2, 1)) return;
    size_t len;
    const char *text = lua_tolstring(app.L, -1, &len);
    gl_text_clear(&s->probe);
    for (size_t at = 0; text && at < len;) {
        const char *nl = memchr(text + at, '\n', len - at);
        size_t n = nl ? (size_t)(nl - (text + at)) : len - at;
        gl_text_add(&s->probe, text + at, n, GL_TEXT_OUT, 0);
        at += n + 1;
    }
    lua_pop(app.L, 1);
    gl_screen_dirty(s, GL_PANE_PROBE);
}

/* The panes that show state outside the UI's own hands, at most once a frame. */
void app_refresh_views(void)
{
    gl_screen *s = &app.scr;
    app_refresh_status();
    if (s->panes[GL_PANE_LOSS].visible) {
        lua_Integer v = metrics_version();
        if (v != app.metrics_version || app.curves_stale) {
            app.metrics_version = v;
            app.curves_stale = false;
            refresh_curves();
        }
    }
    app_follow_running_cell();
    if (s->panes[GL_PANE_MODEL].visible && (app.model_stale || app_now() - app.last_model > 5)) refresh_model();
    if (s->panes[GL_PANE_PROBE].visible) refresh_probe();
    app_refresh_notebook(false);
}

void app_views_free(void)
{
    for (int i = 0; i < app.ncache; i++) {
        free(app.cache[i].run), free(app.cache[i].name), free(app.cache[i].x), free(app.cache[i].y);
    }
}
