/* The workbench (see app.h).
 *
 * One Lua state; the loop: wait for a key at most a frame (poll on stdin)
 * -> keys to readline (rl_callback_read_char) or to the focused pane -> if
 * a job exists, resume it for a slice (~25 ms) -> output captured since ->
 * repaint what changed, panes at most 10 times a second.
 *
 * Jobs. A line entered at the prompt runs in its own coroutine; a notebook
 * cell runs in the notebook's job (gl.notebook's run_async). Both give the
 * UI control back at gl.yield_ui (run:step calls it between steps: an
 * explicit yield, where the model is consistent) and, in any Lua code, from
 * a count hook once the slice is spent (a preemption: mid-computation, so a
 * line typed meanwhile waits for the next explicit yield). Jobs stack: a
 * line entered while a job sits at an explicit yield runs on top of it
 * (`model` prints while training goes on). Space pauses the top job.
 *
 * Ctrl-C. The terminal keeps ISIG, so Ctrl-C is a SIGINT even while a
 * kernel runs: the handler requests an interrupt that kernels poll and sets
 * a hook that raises "interrupted!" in the running job's Lua code. The
 * Trainer then puts the model back as after its last complete step. Between
 * slices the same is done to the top job before resuming it; with no job,
 * Ctrl-C abandons the line being typed.
 *
 * The terminal. curses draws on a duplicate of the original stdout; fds 1
 * and 2 are redirected to a memory file that the loop reads into the
 * transcript, so print, io.write and the Trainer's lines land there and
 * nothing scribbles on the screen. readline gets its bytes from a queue
 * (rl_getc_function), draws through rl_redisplay_function into the input
 * window, and never touches the terminal modes. */
#include "tui/app.h"

#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <locale.h>
#include <lua.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>
#include <wchar.h>
#include <readline/history.h>
#include <readline/readline.h>

#include "core/interrupt.h"
#include "lua/binding.h"
#include "lua/runtime.h"
#include "tui/panes.h"
#include "tui/repl.h"

#define SLICE 0.025       /* seconds a job runs before the UI looks at the keys */
#define FRAME 0.100       /* panes repaint at most this often */
#define IDLE_WAIT_MS 50   /* poll timeout with nothing to run */
#define MAX_JOBS 8
#define HOOK_COUNT 1000   /* VM instructions between looks at the clock */

typedef struct {
    lua_State *co; /* the thread resumed (for a notebook job: the notebook's coroutine) */
    int ref;       /* REPL job: the thread; notebook job: the job table */
    bool notebook;
    char label[64];
    bool ran, preempted, paused, stopping;
    double started;
} job;

typedef struct {
    char *run, *name;
    double *x, *y;
    int64_t n, cap;
} cached_series;

typedef struct {
    lua_State *L;
    int ui; /* registry ref of the ui helper table */
    gl_screen scr;
    job jobs[MAX_JOBS];
    int njobs;
    char *chunk;       /* lines of an unfinished chunk */
    char *queue[16];   /* lines entered while the top job was preempted */
    int nqueue;
    char *history;
    int out_fd, saved_out, saved_err;
    bool quit, save_pending;
    int edit_cell;     /* cell whose source is in the input line, or 0 */
    unsigned char keys[256];
    int nkeys, key_at;
    struct {
        wint_t wc;
        bool code; /* a curses key code, not a character */
    } later[256];  /* keys read during a job that must wait for the loop */
    int nlater;
    bool in_hook;  /* keys are being handled from inside a running job's op */
    double last_frame, last_model, slice_end;
    lua_Integer metrics_version, nb_version;
    bool model_stale, curves_stale;
    cached_series cache[32];
    int ncache;
    int metric;
    double job_time, ui_time; /* while a job runs: seconds in it and in the UI around it */
    long frames;
} app_t;

static app_t app;
static lua_State *volatile running; /* the thread in a slice, for the signal handler */
static volatile sig_atomic_t sigint_seen, sigint_handled;

static const char *const metric_names[] = {"loss", "lr", "tokens_per_s", "grad_norm"};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static job *top(void) { return app.njobs ? &app.jobs[app.njobs - 1] : NULL; }

static void info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void drain_output(void);

/* A line in the transcript, after whatever output came before it. */
static void say(gl_text_kind kind, const char *msg)
{
    drain_output();
    app.scr.transcript.open = false;
    gl_text_feed(&app.scr.transcript, msg, strlen(msg), kind);
    if (app.scr.transcript.open) gl_text_feed(&app.scr.transcript, "\n", 1, kind);
    gl_screen_dirty(&app.scr, GL_PANE_TRANSCRIPT);
}

static void info(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    say(GL_TEXT_INFO, buf);
}

/* ---- output capture ------------------------------------------------------------------ */

static bool capture_start(FILE **tty_out)
{
    int fd = memfd_create("genlab-output", MFD_CLOEXEC);
    if (fd < 0) return false;
    fcntl(fd, F_SETFL, O_APPEND);
    int tty = dup(STDOUT_FILENO);
    *tty_out = tty >= 0 ? fdopen(tty, "w") : NULL;
    if (!*tty_out) {
        close(fd);
        return false;
    }
    fflush(stdout);
    fflush(stderr);
    app.saved_out = dup(STDOUT_FILENO);
    app.saved_err = dup(STDERR_FILENO);
    dup2(fd, STDOUT_FILENO);
    dup2(fd, STDERR_FILENO);
    app.out_fd = fd;
    return true;
}

static void capture_pause(bool pause)
{
    fflush(stdout);
    fflush(stderr);
    dup2(pause ? app.saved_out : app.out_fd, STDOUT_FILENO);
    dup2(pause ? app.saved_err : app.out_fd, STDERR_FILENO);
}

/* Moves what was written since into the transcript; the file never blocks a
 * writer, and is emptied whenever all of it has been read. */
static void drain_output(void)
{
    static off_t pos;
    fflush(stdout);
    fflush(stderr);
    char buf[8192];
    ssize_t n;
    bool any = false;
    while ((n = pread(app.out_fd, buf, sizeof buf, pos)) > 0) {
        gl_text_feed(&app.scr.transcript, buf, (size_t)n, GL_TEXT_OUT);
        pos += n;
        any = true;
    }
    if (any) {
        if (ftruncate(app.out_fd, 0) == 0) pos = 0;
        app.scr.panes[GL_PANE_TRANSCRIPT].scroll = 0;
        gl_screen_dirty(&app.scr, GL_PANE_TRANSCRIPT);
    }
}

/* ---- Lua helpers ------------------------------------------------------------------------- */

/* Pushes ui[name] (a function set by lua/genlab/workbench.lua). */
static void push_ui(const char *name)
{
    lua_rawgeti(app.L, LUA_REGISTRYINDEX, app.ui);
    lua_getfield(app.L, -1, name);
    lua_remove(app.L, -2);
}

/* Calls ui[name](thread-of-the-top-job, args on the stack) with nres results;
 * false (and a message in the transcript) on error. */
static bool call_ui(const char *name, int nargs, int nres)
{
    lua_State *L = app.L;
    push_ui(name);
    lua_insert(L, -(nargs + 1));
    job *j = top();
    if (j)
        lua_pushthread(j->co), lua_xmove(j->co, L, 1);
    else
        lua_pushnil(L);
    lua_insert(L, -(nargs + 1));
    if (lua_pcall(L, nargs + 1, nres, 0) != LUA_OK) {
        char msg[400];
        snprintf(msg, sizeof msg, "workbench: %s", lua_tostring(L, -1));
        lua_pop(L, 1);
        say(GL_TEXT_ERROR, msg);
        return false;
    }
    return true;
}

/* ---- C functions for the helper ------------------------------------------------------- */

/* ui.repl_yield() -> false when not in a REPL job; yields once its slice is spent. */
static int l_repl_yield(lua_State *L)
{
    job *j = top();
    if (!j || j->notebook || L != running) {
        lua_pushboolean(L, 0);
        return 1;
    }
    if (now() >= app.slice_end && lua_isyieldable(L)) return lua_yield(L, 0);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_sample_begin(lua_State *L)
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

static int l_sample(lua_State *L)
{
    size_t len;
    const char *text = luaL_checklstring(L, 1, &len);
    gl_text_feed(&app.scr.samples, text, len, GL_TEXT_OUT);
    app.scr.panes[GL_PANE_SAMPLES].scroll = 0;
    gl_screen_dirty(&app.scr, GL_PANE_SAMPLES);
    return 0;
}

static int l_show_model(lua_State *L)
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
static int l_image(lua_State *L)
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

static bool load_helper(void)
{
    lua_State *L = app.L;
    lua_newtable(L);
    static const luaL_Reg fns[] = {{"repl_yield", l_repl_yield}, {"sample_begin", l_sample_begin},
                                   {"sample", l_sample},         {"image", l_image},
                                   {"show_model", l_show_model}, {NULL, NULL}};
    luaL_setfuncs(L, fns, 0);
    lua_pushvalue(L, -1);
    app.ui = luaL_ref(L, LUA_REGISTRYINDEX);
    /* lua/genlab/workbench.lua returns the set-up function of the workbench's Lua side */
    lua_getglobal(L, "require");
    lua_pushliteral(L, "genlab.workbench");
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
        fprintf(stderr, "genlab: %s\n", lua_tostring(L, -1));
        return false;
    }
    lua_getglobal(L, "gl");
    lua_pushvalue(L, -3);
    if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
        fprintf(stderr, "genlab: %s\n", lua_tostring(L, -1));
        return false;
    }
    lua_pop(L, 1);
    return true;
}

/* ---- the notebook ------------------------------------------------------------------------ */

static bool has_notebook(void)
{
    push_ui("nb");
    bool yes = lua_istable(app.L, -1);
    lua_pop(app.L, 1);
    return yes;
}

/* Pushes ui.nb[method] and ui.nb (for a method call). */
static void push_nb_method(const char *method)
{
    push_ui("nb");
    lua_getfield(app.L, -1, method);
    lua_insert(app.L, -2);
}

static int cell_count(void)
{
    push_ui("nb");
    lua_getfield(app.L, -1, "cells");
    int n = (int)lua_rawlen(app.L, -1);
    lua_pop(app.L, 2);
    return n;
}

/* Rebuilds the notebook pane's lines when the notebook changed. */
static void refresh_notebook(bool force)
{
    if (!has_notebook()) return;
    push_ui("nb");
    lua_getfield(app.L, -1, "version");
    lua_Integer v = lua_tointeger(app.L, -1);
    lua_pop(app.L, 2);
    if (!force && v == app.nb_version) return;
    app.nb_version = v;
    if (!call_ui("nb_lines", 0, 2)) return;
    lua_State *L = app.L;
    gl_screen *s = &app.scr;
    gl_text_clear(&s->notebook);
    int n = (int)lua_rawlen(L, -2);
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, -2, i);
        lua_rawgeti(L, -1, 1);
        lua_rawgeti(L, -2, 2);
        lua_rawgeti(L, -3, 3);
        size_t len;
        const char *text = lua_tolstring(L, -3, &len), *kind = lua_tostring(L, -2);
        gl_text_kind k = strcmp(kind, "head") == 0    ? GL_TEXT_HEAD
                         : strcmp(kind, "code") == 0  ? GL_TEXT_CODE
                         : strcmp(kind, "error") == 0 ? GL_TEXT_ERROR
                         : strcmp(kind, "info") == 0  ? GL_TEXT_INFO
                                                      : GL_TEXT_OUT;
        /* the notebook pane does not interpret escapes: drop them */
        char *clean = malloc(len + 1);
        size_t m = 0;
        for (size_t b = 0; clean && b < len; b++) {
            if (text[b] == '\033' && b + 1 < len && text[b + 1] == '[') {
                b += 2;
                while (b < len && !(text[b] >= '@' && text[b] <= '~')) b++;
            } else if (text[b] == '\t') {
                clean[m++] = ' ';
            } else {
                clean[m++] = text[b];
            }
        }
        if (clean) gl_text_add(&s->notebook, clean, m, k, (int)lua_tointeger(L, -1));
        free(clean);
        lua_pop(L, 4);
    }
    int cells = (int)lua_tointeger(L, -1);
    lua_pop(L, 2);
    if (s->notebook_cell > cells) s->notebook_cell = cells;
    if (s->notebook_cell < 1 && cells > 0) s->notebook_cell = 1;
    gl_screen_dirty(s, GL_PANE_NOTEBOOK);
}

static bool open_notebook(const char *path)
{
    lua_State *L = app.L;
    lua_getglobal(L, "gl");
    lua_getfield(L, -1, "notebook");
    lua_getfield(L, -1, "open");
    lua_pushstring(L, path);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
        say(GL_TEXT_ERROR, lua_tostring(L, -1));
        lua_pop(L, 3);
        return false;
    }
    lua_getfield(L, -1, "env"); /* REPL input and completion see the cells' globals */
    lua_setfield(L, LUA_REGISTRYINDEX, GL_REPL_SCOPE);
    lua_rawgeti(L, LUA_REGISTRYINDEX, app.ui);
    lua_insert(L, -2);
    lua_setfield(L, -2, "nb");
    lua_pop(L, 3);
    app.scr.panes[GL_PANE_NOTEBOOK].visible = true;
    app.scr.panes[GL_PANE_NOTEBOOK].weight = 16;
    app.scr.notebook_cell = 1;
    gl_screen_layout(&app.scr);
    refresh_notebook(true);
    info("notebook %s: Ctrl-O focuses it; Up/Down pick a cell, Enter runs it, a runs all, e edits (F1: keys)", path);
    return true;
}

/* ---- jobs ------------------------------------------------------------------------------------ */

static void stop_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    lua_sethook(L, NULL, 0, 0);
    luaL_error(L, "interrupted!");
}

/* Gives the UI control back once the slice is spent (see the top comment). */
static void slice_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    if (L != running || !lua_isyieldable(L) || now() < app.slice_end) return;
    job *j = top();
    if (j) j->preempted = true;
    lua_yield(L, 0);
}

static void on_sigint(int sig)
{
    (void)sig;
    lua_State *L = running;
    if (L) { /* as lua.c does: lua_sethook is safe in a signal handler */
        gl_interrupt_request();
        lua_sethook(L, stop_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKLINE | LUA_MASKCOUNT, 1);
        sigint_handled = 1;
    }
    sigint_seen = 1;
}

static void arm(job *j)
{
    if (j->stopping) {
        gl_interrupt_request();
        lua_sethook(j->co, stop_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKLINE | LUA_MASKCOUNT, 1);
    } else {
        lua_sethook(j->co, slice_hook, LUA_MASKCOUNT, HOOK_COUNT);
    }
}

static void push_job(job *j)
{
    app.jobs[app.njobs++] = *j;
    app.scr.status_dirty = true;
}

/* Compiles the chunk in the notebook's globals when one is open and starts it as a job. */
static void start_repl_job(const char *src)
{
    lua_State *L = app.L;
    if (app.njobs == MAX_JOBS) {
        say(GL_TEXT_ERROR, "too many jobs waiting: Ctrl-C stops the top one");
        return;
    }
    int c = gl_repl_compile(L, src);
    if (c == GL_CHUNK_ERROR) {
        say(GL_TEXT_ERROR, lua_tostring(L, -1));
        lua_pop(L, 1);
        return;
    }
    if (lua_getfield(L, LUA_REGISTRYINDEX, GL_REPL_SCOPE) == LUA_TTABLE) {
        if (!lua_setupvalue(L, -2, 1)) lua_pop(L, 1);
    } else {
        lua_pop(L, 1);
    }
    job j = {.co = lua_newthread(L), .started = now()};
    lua_insert(L, -2);
    lua_xmove(L, j.co, 1);
    j.ref = luaL_ref(L, LUA_REGISTRYINDEX);
    snprintf(j.label, sizeof j.label, "%.*s", (int)strcspn(src, "\n"), src);
    push_job(&j);
}

/* Starts nb:run_async(i) (i > 0) or nb:run_all_async() as a job. */
static void start_cell_job(int cell)
{
    lua_State *L = app.L;
    for (int i = 0; i < app.njobs; i++)
        if (app.jobs[i].notebook) {
            say(GL_TEXT_ERROR, "a notebook cell is running: wait, or Ctrl-C it");
            return;
        }
    if (app.njobs == MAX_JOBS) return;
    push_nb_method(cell > 0 ? "run_async" : "run_all_async");
    if (cell > 0) lua_pushinteger(L, cell);
    if (lua_pcall(L, cell > 0 ? 2 : 1, 1, 0) != LUA_OK) {
        say(GL_TEXT_ERROR, lua_tostring(L, -1));
        lua_pop(L, 1);
        return;
    }
    lua_getfield(L, -1, "co");
    job j = {.co = lua_tothread(L, -1), .notebook = true, .started = now()};
    lua_pop(L, 1);
    j.ref = luaL_ref(L, LUA_REGISTRYINDEX);
    if (cell > 0)
        snprintf(j.label, sizeof j.label, "cell %d", cell);
    else
        snprintf(j.label, sizeof j.label, "all cells");
    push_job(&j);
}

static void save_outputs(void)
{
    push_nb_method("save_outputs");
    if (lua_pcall(app.L, 1, 0, 0) != LUA_OK) {
        say(GL_TEXT_ERROR, lua_tostring(app.L, -1));
        lua_pop(app.L, 1);
    }
}

/* On quit: the file too when a cell was edited. */
static void save_notebook(void)
{
    push_ui("nb");
    lua_getfield(app.L, -1, "dirty");
    bool dirty = lua_toboolean(app.L, -1);
    lua_pop(app.L, 2);
    push_nb_method(dirty ? "save" : "save_outputs");
    if (lua_pcall(app.L, 1, 0, 0) != LUA_OK) lua_pop(app.L, 1);
}

static void checkpoint_now(void)
{
    if (call_ui("checkpoint", 0, 1)) {
        info("%s", lua_tostring(app.L, -1));
        lua_pop(app.L, 1);
    }
    app.save_pending = false;
}

/* A job ended: show its results or its error, forget it. */
static void finish_job(int status, int nres)
{
    lua_State *L = app.L;
    job j = app.jobs[--app.njobs];
    drain_output();
    if (j.notebook) {
        if (status != LUA_OK) { /* a bug in the notebook's runner (cells' errors are outputs) */
            say(GL_TEXT_ERROR, lua_tostring(L, -1));
            lua_pop(L, 1);
        }
        refresh_notebook(true);
        save_outputs();
        info("%s finished in %.1fs", j.label, now() - j.started);
    } else if (status == LUA_OK) {
        bool any = false;
        for (int i = 1; i <= nres; i++) any = any || !lua_isnil(j.co, -i);
        if (any) {
            lua_pushcfunction(L, gl_repl_show);
            lua_xmove(j.co, L, nres);
            if (lua_pcall(L, nres, 0, 0) != LUA_OK) {
                say(GL_TEXT_ERROR, lua_tostring(L, -1));
                lua_pop(L, 1);
            }
            drain_output();
        }
    } else {
        const char *msg = lua_tostring(j.co, -1);
        if (!msg) msg = "(error object is not a string)";
        if (strstr(msg, "interrupted")) {
            say(GL_TEXT_ERROR, msg);
        } else {
            luaL_traceback(L, j.co, msg, 0);
            say(GL_TEXT_ERROR, lua_tostring(L, -1));
            lua_pop(L, 1);
        }
    }
    if (!j.notebook) lua_resetthread(j.co);
    lua_sethook(j.co, NULL, 0, 0);
    luaL_unref(L, LUA_REGISTRYINDEX, j.ref);
    gl_interrupt_clear();
    app.model_stale = app.curves_stale = true;
    app.scr.status_dirty = true;
    if (app.save_pending) checkpoint_now();
}

/* Runs the top job for what is left of the slice; false when it ended or yielded. */
static bool resume_top(void)
{
    lua_State *L = app.L;
    job *j = top();
    j->preempted = false;
    j->ran = true;
    arm(j);
    int status, nres = 0;
    bool done;
    if (j->notebook) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, j->ref);
        lua_getfield(L, -1, "resume");
        lua_insert(L, -2);
        lua_pushnumber(L, app.slice_end - now() > 0 ? app.slice_end - now() : 0);
        double t0 = now();
        running = j->co;
        status = lua_pcall(L, 2, 1, 0);
        running = NULL;
        app.job_time += now() - t0;
        done = status != LUA_OK || lua_toboolean(L, -1);
        if (status == LUA_OK) lua_pop(L, 1);
    } else {
        double t0 = now();
        running = j->co;
        status = lua_resume(j->co, L, 0, &nres);
        running = NULL;
        app.job_time += now() - t0;
        done = status != LUA_YIELD;
        if (!done) lua_pop(j->co, nres);
    }
    lua_sethook(j->co, NULL, 0, 0);
    if (done) {
        finish_job(status, nres);
        return false;
    }
    if (!j->preempted && app.save_pending) checkpoint_now();
    return now() < app.slice_end;
}

static void start_queued(void);

static void run_jobs(void)
{
    app.slice_end = now() + SLICE;
    while (app.njobs && !top()->paused) {
        start_queued();
        if (!resume_top() && (app.njobs == 0 || top()->preempted || now() >= app.slice_end)) break;
    }
    start_queued();
}

/* ---- input lines ------------------------------------------------------------------------------- */

static const char help_text[] =
    "genlab workbench keys\n"
    "\n"
    "Enter        run the line (Lua; expressions print)     Alt-Enter  new line in the input\n"
    "Tab          complete globals, fields, methods         Up/Down    history\n"
    "Ctrl-C       stop the running job (or drop the line)   Ctrl-D, :q quit\n"
    "Space        pause/resume the job (empty line)         Ctrl-S     checkpoint the training run\n"
    "F2 F3 F4 F5  show/hide Loss, Samples, Model, Image     F6 F7      Notebook, Transcript\n"
    "Ctrl-O, Esc  focus the next pane / back to the input   + -        grow/shrink the focused pane\n"
    "PgUp PgDn    scroll the transcript (or focused pane)   F1 or ?    this help\n"
    "\n"
    "Loss pane:      l log scale, z zoom to the last N steps, m next metric (loss, lr, tok/s, grad norm)\n"
    "Notebook pane:  Up/Down cell, Enter run, a run all, r restart, e edit in $EDITOR, i edit here\n"
    "\n"
    ":help  :q  :open NOTEBOOK.lua  :run [N]  :all  :restart  :save  :clear  :stats (UI cost)\n"
    "help(x) documents genlab functions; show(x) puts a tensor image, model or text in a pane\n"
    "\n"
    "any key closes this help";

static void toggle_help(void)
{
    app.scr.help = app.scr.help ? NULL : (char *)help_text;
    if (!app.scr.help) gl_screen_layout(&app.scr);
    app.scr.input_dirty = true;
}

static void set_prompt(const char *p)
{
    rl_set_prompt(p);
    free(app.scr.prompt);
    app.scr.prompt = strdup(p);
    app.scr.input_dirty = true;
}

static void run_cell_command(int cell)
{
    if (!has_notebook()) {
        say(GL_TEXT_ERROR, "no notebook open (:open PATH)");
        return;
    }
    start_cell_job(cell);
}

static void restart_notebook(void)
{
    if (!has_notebook()) return;
    for (int i = app.njobs - 1; i >= 0; i--)
        if (app.jobs[i].notebook) { /* nb:restart cancels the notebook's job */
            luaL_unref(app.L, LUA_REGISTRYINDEX, app.jobs[i].ref);
            memmove(&app.jobs[i], &app.jobs[i + 1], (size_t)(app.njobs - i - 1) * sizeof(job));
            app.njobs--;
        }
    push_nb_method("restart");
    if (lua_pcall(app.L, 1, 0, 0) != LUA_OK) {
        say(GL_TEXT_ERROR, lua_tostring(app.L, -1));
        lua_pop(app.L, 1);
    }
    push_ui("nb");
    lua_getfield(app.L, -1, "env");
    lua_setfield(app.L, LUA_REGISTRYINDEX, GL_REPL_SCOPE);
    lua_pop(app.L, 1);
    refresh_notebook(true);
    info("notebook restarted: fresh globals, outputs cleared");
}

/* The command a typed word names: a whole name, or a prefix (':' and at
 * least one letter) of exactly one name. NULL when unknown or ambiguous. */
static const char *command_named(const char *word, size_t n)
{
    static const char *const names[] = {":q", ":quit", ":help", ":open", ":run", ":all",
                                        ":restart", ":save", ":stats", ":clear"};
    const size_t count = sizeof names / sizeof names[0];
    const char *found = NULL;
    for (size_t i = 0; i < count; i++)
        if (strlen(names[i]) == n && strncmp(names[i], word, n) == 0) return names[i];
    if (n < 2) return NULL;
    for (size_t i = 0; i < count; i++) {
        if (strncmp(names[i], word, n) != 0) continue;
        if (found) return NULL;
        found = names[i];
    }
    return found;
}

static void command(const char *line)
{
    char arg[1024] = "";
    const char *sp = strchr(line, ' ');
    size_t n = sp ? (size_t)(sp - line) : strlen(line);
    if (sp) snprintf(arg, sizeof arg, "%s", sp + strspn(sp, " "));
    const char *name = command_named(line, n);
    if (!name) {
        say(GL_TEXT_ERROR, "unknown or ambiguous command (:help lists them)");
    } else if (strcmp(name, ":q") == 0 || strcmp(name, ":quit") == 0) {
        app.quit = true;
    } else if (strcmp(name, ":help") == 0) {
        toggle_help();
    } else if (strcmp(name, ":open") == 0) {
        if (*arg)
            open_notebook(arg);
        else
            say(GL_TEXT_ERROR, ":open needs a file name");
    } else if (strcmp(name, ":run") == 0) {
        run_cell_command(*arg ? atoi(arg) : app.scr.notebook_cell);
    } else if (strcmp(name, ":all") == 0) {
        run_cell_command(0);
    } else if (strcmp(name, ":restart") == 0) {
        restart_notebook();
    } else if (strcmp(name, ":save") == 0) {
        app.save_pending = true;
        if (!top() || !top()->preempted) checkpoint_now();
    } else if (strcmp(name, ":stats") == 0) {
        double total = app.job_time + app.ui_time;
        info("UI cost while jobs ran: %.1f ms of %.1f s (%.2f%%), %ld frames (%.1f/s)", 1e3 * app.ui_time, total,
             total > 0 ? 100 * app.ui_time / total : 0.0, app.frames, total > 0 ? (double)app.frames / total : 0.0);
    } else if (strcmp(name, ":clear") == 0) {
        gl_text_clear(&app.scr.transcript);
        gl_screen_dirty(&app.scr, GL_PANE_TRANSCRIPT);
    }
}

/* Runs a complete line, or keeps it for the next when the chunk goes on. */
static void submit(const char *line)
{
    lua_State *L = app.L;
    char *src = app.chunk ? NULL : strdup(line);
    if (app.chunk) {
        size_t n = strlen(app.chunk) + strlen(line) + 2;
        src = malloc(n);
        if (src) snprintf(src, n, "%s\n%s", app.chunk, line);
        free(app.chunk);
        app.chunk = NULL;
    }
    if (!src) return;
    int c = gl_repl_compile(L, src);
    if (c == GL_CHUNK_MORE) {
        app.chunk = src;
        set_prompt("... ");
        return;
    }
    if (c == GL_CHUNK_READY) lua_pop(L, 1);
    if (c == GL_CHUNK_ERROR) lua_pop(L, 1);
    set_prompt("> ");
    start_repl_job(src);
    free(src);
}

/* Whether a line entered now must wait: the top job has not started yet or
 * is mid-computation. */
static bool must_wait(void)
{
    job *j = top();
    return j && (!j->ran || j->preempted);
}

/* Lines entered while the top job was mid-computation run once it yields. */
static void start_queued(void)
{
    while (app.nqueue > 0 && !must_wait()) {
        char *line = app.queue[0];
        memmove(app.queue, app.queue + 1, (size_t)(--app.nqueue) * sizeof *app.queue);
        if (!app.chunk && line[0] == ':')
            command(line);
        else
            submit(line);
        free(line);
    }
}

static void on_line(char *line)
{
    if (!line) { /* Ctrl-D on an empty line */
        app.quit = true;
        return;
    }
    gl_repl_history_add(app.history, line);
    char echo[4096];
    snprintf(echo, sizeof echo, "%s%s", app.chunk ? "... " : "> ", line);
    drain_output();
    app.scr.transcript.open = false;
    gl_text_feed(&app.scr.transcript, echo, strlen(echo), GL_TEXT_INPUT);
    gl_text_feed(&app.scr.transcript, "\n", 1, GL_TEXT_INPUT);
    app.scr.panes[GL_PANE_TRANSCRIPT].scroll = 0;
    gl_screen_dirty(&app.scr, GL_PANE_TRANSCRIPT);
    if (app.edit_cell) {
        push_nb_method("set_source");
        lua_pushinteger(app.L, app.edit_cell);
        lua_pushstring(app.L, line);
        if (lua_pcall(app.L, 3, 0, 0) != LUA_OK) {
            say(GL_TEXT_ERROR, lua_tostring(app.L, -1));
            lua_pop(app.L, 1);
        } else {
            info("cell %d changed (Enter in the notebook runs it; :save-ing the file happens on quit)", app.edit_cell);
        }
        app.edit_cell = 0;
        set_prompt("> ");
        refresh_notebook(false);
    } else if (!app.chunk && line[0] == ':' && !app.in_hook) {
        command(line);
    } else if (app.in_hook || app.nqueue > 0 || must_wait()) {
        if (app.nqueue < (int)(sizeof app.queue / sizeof *app.queue)) {
            app.queue[app.nqueue++] = strdup(line);
            info("(runs when the job reaches its next step)");
        }
    } else {
        submit(line);
    }
    free(line);
}

/* ---- readline through a queue of bytes ----------------------------------------------------------- */

static int ui_getc(FILE *f)
{
    (void)f;
    if (app.key_at < app.nkeys) return app.keys[app.key_at++];
    return 0; /* never EOF: readline would take it for the end of input */
}

static void ui_redisplay(void)
{
    free(app.scr.line);
    app.scr.line = strdup(rl_line_buffer ? rl_line_buffer : "");
    app.scr.point = rl_point;
    app.scr.input_dirty = true;
}

static void ui_prep(int meta) { (void)meta; }
static void ui_deprep(void) {}

/* Tab with several matches: list them in the transcript. */
static void show_matches(char **matches, int n, int longest)
{
    (void)longest;
    char buf[2048];
    size_t at = 0;
    buf[0] = '\0';
    for (int i = 1; i <= n && at < sizeof buf - 64; i++)
        at += (size_t)snprintf(buf + at, sizeof buf - at, "%s%s", i > 1 ? "  " : "", matches[i]);
    if (at >= sizeof buf - 64) snprintf(buf + at, sizeof buf - at, "  ...");
    say(GL_TEXT_INFO, buf);
}

static int insert_newline(int count, int key)
{
    (void)count;
    (void)key;
    return rl_insert_text("\n") >= 0 ? 0 : 1;
}

static void feed(const char *bytes, size_t n)
{
    if (n > sizeof app.keys) return;
    memcpy(app.keys, bytes, n);
    app.nkeys = (int)n;
    app.key_at = 0;
    while (app.key_at < app.nkeys && !app.quit) rl_callback_read_char();
}

static void put_line(const char *text)
{
    rl_replace_line(text, 0);
    rl_point = rl_end;
    ui_redisplay();
}

/* ---- keys ------------------------------------------------------------------------------------------ */

static void toggle_pane(gl_pane_id id)
{
    gl_pane *p = &app.scr.panes[id];
    if (id == GL_PANE_NOTEBOOK && !has_notebook()) {
        say(GL_TEXT_ERROR, "no notebook open (:open PATH)");
        return;
    }
    p->visible = !p->visible;
    if (!p->visible && app.scr.focus == (int)id) app.scr.focus = -1;
    if (id == GL_PANE_MODEL) app.model_stale = true;
    if (id == GL_PANE_LOSS) app.curves_stale = true;
    gl_screen_layout(&app.scr);
}

static void resize_focused(int dir)
{
    gl_screen *s = &app.scr;
    if (s->focus < 0) return;
    gl_pane *p = &s->panes[s->focus];
    p->weight += dir * 4;
    if (p->weight < 3) p->weight = 3;
    if (p->weight > 60) p->weight = 60;
    s->side_pct += (s->focus >= GL_PANE_LOSS ? dir : -dir) * 5;
    if (s->side_pct < 20) s->side_pct = 20;
    if (s->side_pct > 75) s->side_pct = 75;
    gl_screen_layout(s);
}

static void scroll_pane(gl_pane_id id, int by)
{
    gl_pane *p = &app.scr.panes[id];
    bool from_top = id == GL_PANE_MODEL || id == GL_PANE_NOTEBOOK;
    p->scroll += from_top ? -by : by;
    if (p->scroll < 0) p->scroll = 0;
    gl_screen_dirty(&app.scr, id);
}

static void edit_in_editor(int cell)
{
    lua_State *L = app.L;
    push_ui("nb");
    lua_getfield(L, -1, "cells");
    lua_rawgeti(L, -1, cell);
    lua_getfield(L, -1, "source");
    const char *src = lua_tostring(L, -1);
    char path[] = "/tmp/genlab-cell-XXXXXX.lua";
    int fd = mkstemps(path, 4);
    bool ok = fd >= 0 && src && write(fd, src, strlen(src)) == (ssize_t)strlen(src);
    if (fd >= 0) close(fd);
    lua_pop(L, 4);
    if (!ok) {
        say(GL_TEXT_ERROR, "edit: cannot write a temporary file");
        return;
    }
    const char *editor = getenv("VISUAL") ? getenv("VISUAL") : getenv("EDITOR") ? getenv("EDITOR") : "vi";
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "%s '%s'", editor, path);
    def_prog_mode();
    endwin();
    capture_pause(true);
    int rc = system(cmd);
    capture_pause(false);
    reset_prog_mode();
    gl_screen_layout(&app.scr);
    FILE *f = fopen(path, "rb");
    if (rc == 0 && f) {
        luaL_Buffer b;
        luaL_buffinit(L, &b);
        char buf[4096];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, f)) > 0) luaL_addlstring(&b, buf, n);
        luaL_pushresult(&b);
        push_nb_method("set_source");
        lua_pushinteger(L, cell);
        lua_pushvalue(L, -4);
        if (lua_pcall(L, 3, 0, 0) != LUA_OK) {
            say(GL_TEXT_ERROR, lua_tostring(L, -1));
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    } else {
        info("edit: %s exited with status %d; the cell is unchanged", editor, rc);
    }
    if (f) fclose(f);
    unlink(path);
    refresh_notebook(false);
}

static void notebook_key(int key)
{
    gl_screen *s = &app.scr;
    int cells = cell_count();
    switch (key) {
    case KEY_UP:
    case 'k':
        if (s->notebook_cell > 1) s->notebook_cell--;
        gl_screen_show_cell(s);
        break;
    case KEY_DOWN:
    case 'j':
        if (s->notebook_cell < cells) s->notebook_cell++;
        gl_screen_show_cell(s);
        break;
    case '\r':
    case '\n':
    case KEY_ENTER: start_cell_job(s->notebook_cell); break;
    case 'a': start_cell_job(0); break;
    case 'r': restart_notebook(); break;
    case 'e': edit_in_editor(s->notebook_cell); break;
    case 'i': {
        push_ui("nb");
        lua_getfield(app.L, -1, "cells");
        lua_rawgeti(app.L, -1, s->notebook_cell);
        lua_getfield(app.L, -1, "source");
        app.edit_cell = s->notebook_cell;
        char prompt[32];
        snprintf(prompt, sizeof prompt, "cell %d> ", app.edit_cell);
        set_prompt(prompt);
        put_line(lua_tostring(app.L, -1) ? lua_tostring(app.L, -1) : "");
        lua_pop(app.L, 4);
        s->focus = -1;
        gl_screen_dirty(s, GL_PANE_NOTEBOOK);
        break;
    }
    default: break;
    }
}

/* Keys for a focused pane; false when the key is not one of its own. */
static bool pane_key(int key)
{
    gl_screen *s = &app.scr;
    int id = s->focus;
    if (key == '+' || key == '=') {
        resize_focused(1);
        return true;
    }
    if (key == '-') {
        resize_focused(-1);
        return true;
    }
    if (id == GL_PANE_NOTEBOOK && strchr("kjaeir\r\n", key ? key : 1)) {
        notebook_key(key);
        return true;
    }
    if (id == GL_PANE_NOTEBOOK && (key == KEY_UP || key == KEY_DOWN || key == KEY_ENTER)) {
        notebook_key(key);
        return true;
    }
    if (id == GL_PANE_LOSS && (key == 'l' || key == 'z' || key == 'm')) {
        if (key == 'l') s->log_y = !s->log_y;
        if (key == 'z') s->last_n = s->last_n == 0 ? 1000 : s->last_n == 1000 ? 200 : s->last_n == 200 ? 50 : 0;
        if (key == 'm') {
            app.metric = (app.metric + 1) % (int)(sizeof metric_names / sizeof *metric_names);
            app.curves_stale = true;
        }
        gl_screen_dirty(s, GL_PANE_LOSS);
        return true;
    }
    if (key == KEY_UP || key == KEY_DOWN) {
        scroll_pane((gl_pane_id)id, key == KEY_UP ? 1 : -1);
        return true;
    }
    return false;
}

static void readline_key(int key)
{
    static const struct {
        int key;
        const char *seq;
    } map[] = {{KEY_UP, "\033[A"},    {KEY_DOWN, "\033[B"},   {KEY_RIGHT, "\033[C"}, {KEY_LEFT, "\033[D"},
               {KEY_HOME, "\033[H"},  {KEY_END, "\033[F"},    {KEY_DC, "\033[3~"},  {KEY_BACKSPACE, "\177"},
               {KEY_ENTER, "\r"}};
    for (size_t i = 0; i < sizeof map / sizeof *map; i++)
        if (map[i].key == key) feed(map[i].seq, strlen(map[i].seq));
}

static bool line_empty(void) { return !rl_line_buffer || rl_line_buffer[0] == '\0'; }

static void toggle_pause(void)
{
    job *j = top();
    j->paused = !j->paused;
    info("%s %s", j->paused ? "paused:" : "resumed:", j->label);
    app.scr.status_dirty = true;
}

/* A function key or other curses key code. */
static void special_key(int key)
{
    gl_screen *s = &app.scr;
    if (key == KEY_RESIZE) {
        gl_screen_layout(s);
        if (has_notebook()) gl_screen_show_cell(s);
        return;
    }
    if (key == KEY_F(1)) {
        toggle_help();
        return;
    }
    static const gl_pane_id fkeys[] = {GL_PANE_LOSS, GL_PANE_SAMPLES, GL_PANE_MODEL, GL_PANE_IMAGE, GL_PANE_NOTEBOOK,
                                       GL_PANE_TRANSCRIPT};
    for (int i = 0; i < 6; i++)
        if (key == KEY_F(2 + i)) {
            toggle_pane(fkeys[i]);
            return;
        }
    if (key == KEY_PPAGE || key == KEY_NPAGE) {
        int id = s->focus >= 0 ? s->focus : GL_PANE_TRANSCRIPT;
        int page = s->panes[id].win ? getmaxy(s->panes[id].win) - 2 : 10;
        scroll_pane((gl_pane_id)id, key == KEY_PPAGE ? page : -page);
        return;
    }
    if (s->focus >= 0 && pane_key(key)) return;
    readline_key(key);
}

static void type_key(wint_t wc);

static void key(wint_t wc)
{
    gl_screen *s = &app.scr;
    if (s->help) { /* any key closes the help */
        toggle_help();
        return;
    }
    if (wc == 15) { /* Ctrl-O */
        s->focus = gl_screen_next_focus(s, s->focus);
        gl_screen_layout(s);
        return;
    }
    if (wc == 27 && s->focus >= 0) {
        s->focus = -1;
        gl_screen_layout(s);
        return;
    }
    if (wc == 19) { /* Ctrl-S */
        app.save_pending = true;
        if (!top() || !top()->preempted) checkpoint_now();
        return;
    }
    if (wc == ' ' && top() && (line_empty() || s->focus >= 0)) {
        toggle_pause();
        return;
    }
    if (wc == '?' && line_empty() && s->focus < 0) {
        toggle_help();
        return;
    }
    if (s->focus >= 0) {
        if (pane_key((int)wc)) return;
        s->focus = -1; /* typing goes to the input line */
        gl_screen_layout(s);
    }
    type_key(wc);
}

/* A key typed into the input line. */
static void type_key(wint_t wc)
{
    char buf[MB_LEN_MAX];
    mbstate_t st;
    memset(&st, 0, sizeof st);
    size_t n = wcrtomb(buf, (wchar_t)wc, &st);
    if (n != (size_t)-1) feed(buf, n);
}

/* Keys readline can take from inside a running job: they edit the input
 * line, or enter it into the queue of lines that run once the job yields;
 * none runs Lua or touches jobs and panes. */
static bool edits_only(wint_t wc)
{
    const gl_screen *s = &app.scr;
    if (s->help || s->focus >= 0 || app.edit_cell) return false;
    if (wc == ' ' && line_empty()) return false; /* pauses the job */
    if (wc == '?' && line_empty()) return false; /* opens the help */
    if (wc >= 32) return true;                   /* characters; 127 is backspace */
    switch (wc) {
    case '\r': case '\n': /* the line is queued (on_line), as any line entered while a job computes */
    case 1: case 2: case 5: case 6: case 8: case 11: case 21: case 23: /* C-a C-b C-e C-f C-h C-k C-u C-w */
        return true;
    default:
        return false;
    }
}

/* Called from inside ops while a job runs (gl_interrupt_set_hook), so what
 * is typed during a long training step echoes at once. Editing keys and
 * Enter go to readline now; the first key that could run something (Tab,
 * pane and function keys, Space on an empty line...) and every key after it
 * wait in app.later for the loop, which handles them in order. */
static void echo_during_job(void *unused)
{
    (void)unused;
    if (!running || app.quit) return;
    wint_t wc;
    int r;
    while ((r = wget_wch(app.scr.input, &wc)) != ERR) {
        bool code = r == KEY_CODE_YES;
        if (app.nlater == 0 && !code && edits_only(wc)) {
            app.in_hook = true;
            type_key(wc);
            app.in_hook = false;
        } else if (app.nlater < (int)(sizeof app.later / sizeof *app.later)) {
            app.later[app.nlater].wc = wc;
            app.later[app.nlater++].code = code;
        }
    }
    if (app.scr.input_dirty) gl_screen_draw_input(&app.scr);
}

static void read_keys(void)
{
    for (int i = 0; i < app.nlater && !app.quit; i++)
        if (app.later[i].code)
            special_key((int)app.later[i].wc);
        else
            key(app.later[i].wc);
    app.nlater = 0;
    wint_t wc;
    int r;
    while (!app.quit && (r = wget_wch(app.scr.input, &wc)) != ERR) {
        if (r == KEY_CODE_YES)
            special_key((int)wc);
        else
            key(wc);
    }
}

/* Ctrl-C: the top job stops (its Trainer step unwinds), else the line is dropped. */
static void handle_sigint(void)
{
    bool handled = sigint_handled;
    sigint_seen = sigint_handled = 0;
    if (app.scr.help) toggle_help();
    job *j = top();
    if (handled) return; /* the handler already stopped the job that was running */
    if (j) {
        j->stopping = true;
        j->paused = false;
        return;
    }
    free(app.chunk);
    app.chunk = NULL;
    for (int i = 0; i < app.nqueue; i++) free(app.queue[i]);
    app.nqueue = 0;
    app.edit_cell = 0;
    set_prompt("> ");
    rl_free_line_state();
    put_line("");
    info("^C");
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
    if (!call_ui("model_text", 0, 1)) return;
    size_t len;
    const char *text = lua_tolstring(app.L, -1, &len);
    gl_text_clear(&app.scr.model);
    gl_text_feed(&app.scr.model, text ? text : "", text ? len : 0, GL_TEXT_OUT);
    lua_pop(app.L, 1);
    gl_screen_dirty(&app.scr, GL_PANE_MODEL);
    app.model_stale = false;
    app.last_model = now();
}

static void refresh_status(void)
{
    gl_screen *s = &app.scr;
    job *j = top();
    char state[160];
    if (j) {
        double t = now() - j->started;
        snprintf(state, sizeof state, " %s %s %d:%02d", j->paused ? "PAUSED" : "running", j->label, (int)t / 60,
                 (int)t % 60);
    } else {
        snprintf(state, sizeof state, " ready");
    }
    const char *rest = "";
    if (call_ui("status", 0, 1)) rest = lua_tostring(app.L, -1);
    snprintf(s->status_text, sizeof s->status_text, "%s | %s | F1 help", state, rest ? rest : "");
    if (rest) lua_pop(app.L, 1);
    s->status_dirty = true;
}

/* While a notebook job runs, its cell is the selected one (unless the user
 * is moving around the notebook). */
static void follow_running_cell(void)
{
    job *j = NULL;
    for (int i = 0; i < app.njobs; i++)
        if (app.jobs[i].notebook) j = &app.jobs[i];
    if (!j || app.scr.focus == GL_PANE_NOTEBOOK) return;
    lua_State *L = app.L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, j->ref);
    lua_getfield(L, -1, "cell");
    push_ui("nb");
    lua_getfield(L, -1, "cells");
    int n = (int)lua_rawlen(L, -1);
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, i);
        bool same = lua_rawequal(L, -1, -4);
        lua_pop(L, 1);
        if (same && app.scr.notebook_cell != i) {
            app.scr.notebook_cell = i;
            gl_screen_show_cell(&app.scr);
        }
    }
    lua_pop(L, 4);
}

/* The panes that show state outside the UI's own hands, at most once a frame. */
static void refresh_views(void)
{
    gl_screen *s = &app.scr;
    refresh_status();
    if (s->panes[GL_PANE_LOSS].visible) {
        lua_Integer v = metrics_version();
        if (v != app.metrics_version || app.curves_stale) {
            app.metrics_version = v;
            app.curves_stale = false;
            refresh_curves();
        }
    }
    follow_running_cell();
    if (s->panes[GL_PANE_MODEL].visible && (app.model_stale || now() - app.last_model > 5)) refresh_model();
    refresh_notebook(false);
}

/* ---- set-up and the loop ----------------------------------------------------------------------------- */

static void setup_readline(void)
{
    rl_readline_name = "genlab";
    rl_catch_signals = 0;
    rl_catch_sigwinch = 0;
    rl_change_environment = 0;
    rl_getc_function = ui_getc;
    rl_redisplay_function = ui_redisplay;
    rl_prep_term_function = ui_prep;
    rl_deprep_term_function = ui_deprep;
    rl_completion_display_matches_hook = show_matches;
    rl_outstream = fopen("/dev/null", "w");
    rl_instream = stdin;
    gl_repl_completion_install(app.L);
    stifle_history(GL_REPL_HISTORY_MAX);
    app.history = gl_repl_history_open();
    rl_callback_handler_install("> ", on_line);
    rl_variable_bind("bell-style", "none");
    rl_bind_keyseq("\\e\\r", insert_newline);
    set_prompt("> ");
}

static void frame(void)
{
    gl_screen *s = &app.scr;
    double t = now();
    if (t - app.last_frame >= FRAME) {
        if (app.njobs) app.frames++;
        refresh_views();
        gl_screen_draw(s, false);
        app.last_frame = t;
    } else if (s->input_dirty) { /* keystrokes echo at once */
        gl_screen_draw_input(s);
    }
}

static void loop(void)
{
    while (!app.quit) {
        bool runnable = app.njobs && !top()->paused;
        double t0 = now(), in_job = app.job_time;
        struct pollfd pfd = {.fd = STDIN_FILENO, .events = POLLIN};
        poll(&pfd, 1, runnable ? 0 : IDLE_WAIT_MS);
        read_keys();
        if (sigint_seen) handle_sigint();
        if (app.quit) break;
        if (app.njobs && !top()->paused) run_jobs();
        drain_output();
        frame();
        if (runnable) app.ui_time += now() - t0 - (app.job_time - in_job);
    }
}

/* $HOME/.genlab/welcome.lua, copied from the shipped one when missing, so
 * that its outputs and edits have a place of the user's own; the shipped
 * file itself when that cannot be done. */
int gl_app_welcome(const char *shipped)
{
    const char *home = getenv("HOME");
    char dir[4096], path[4200];
    if (!home || !*home) return gl_app_main(shipped);
    snprintf(dir, sizeof dir, "%s/.genlab", home);
    snprintf(path, sizeof path, "%s/welcome.lua", dir);
    if (access(path, R_OK) == 0) return gl_app_main(path);
    FILE *in = fopen(shipped, "rb"), *out = NULL;
    if (in && (mkdir(dir, 0700) == 0 || errno == EEXIST)) out = fopen(path, "wb");
    bool ok = in && out;
    char buf[8192];
    size_t n;
    while (ok && (n = fread(buf, 1, sizeof buf, in)) > 0) ok = fwrite(buf, 1, n, out) == n;
    if (in) fclose(in);
    if (out && fclose(out) != 0) ok = false;
    if (!ok && out) unlink(path);
    return gl_app_main(ok ? path : shipped);
}

int gl_app_main(const char *notebook)
{
    setlocale(LC_ALL, "");
    app.out_fd = app.saved_out = app.saved_err = -1;
    app.ui = LUA_NOREF;
    lua_State *L = gl_runtime_new();
    if (!L) {
        fprintf(stderr, "genlab: cannot create Lua state\n");
        return 1;
    }
    app.L = L;
    gl_runtime_set_args(L, notebook ? notebook : "genlab", 0, NULL);
    if (gl_runtime_dostring(L, "gl = require 'genlab'", "=workbench") != 0 || !load_helper()) {
        lua_close(L);
        return 1;
    }
    gl_repl_help_install(L);
    FILE *tty = NULL;
    if (!capture_start(&tty)) {
        fprintf(stderr, "genlab: cannot capture output: %s\n", strerror(errno));
        lua_close(L);
        return 1;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    if (!gl_screen_open(&app.scr, tty, stdin)) {
        capture_pause(true);
        fprintf(stderr, "genlab: cannot start the screen (TERM=%s)\n", getenv("TERM") ? getenv("TERM") : "");
        lua_close(L);
        return 1;
    }
    /* Ctrl-S and Ctrl-Q are keys here, not flow control */
    struct termios tio;
    if (tcgetattr(STDIN_FILENO, &tio) == 0) {
        tio.c_iflag &= ~(tcflag_t)(IXON | IXOFF);
        tcsetattr(STDIN_FILENO, TCSANOW, &tio);
        def_prog_mode();
    }
    setup_readline();
    gl_interrupt_set_hook(echo_during_job, NULL, 0.010);
    lua_getglobal(L, "gl");
    lua_getfield(L, -1, "system_info");
    if (lua_pcall(L, 0, 1, 0) == LUA_OK) info("%s", lua_tostring(L, -1));
    lua_pop(L, 2);
    info("%s; F1 or ? for keys, help(x) for docs, Ctrl-D quits", LUA_RELEASE);
    if (notebook) open_notebook(notebook);
    refresh_status();
    gl_screen_draw(&app.scr, true);
    loop();

    gl_interrupt_set_hook(NULL, NULL, 0);
    rl_callback_handler_remove();
    if (app.history) history_truncate_file(app.history, GL_REPL_HISTORY_MAX);
    free(app.history);
    if (has_notebook()) save_notebook();
    gl_screen_close(&app.scr);
    capture_pause(true);
    fclose(tty);
    for (int i = 0; i < app.ncache; i++) {
        free(app.cache[i].run), free(app.cache[i].name), free(app.cache[i].x), free(app.cache[i].y);
    }
    free(app.chunk);
    for (int i = 0; i < app.nqueue; i++) free(app.queue[i]);
    lua_close(L);
    return 0;
}
