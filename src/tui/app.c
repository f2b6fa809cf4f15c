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
 * window, and never touches the terminal modes.
 *
 * Files (one state, app_internal.h): this one sets up, runs the loop,
 * captures output and loads the Lua helper (lua/genlab/workbench.lua, the
 * `ui` table); app_jobs.c runs jobs in slices, handles Ctrl-C and the lines
 * queued behind a busy job; app_keys.c takes keys, glues readline in and
 * runs `:` commands; app_views.c refreshes the panes that show Lua state
 * (curves, model, status, probe) and holds the ui callbacks that fill panes
 * (Samples, Model, Image, Probe);
 * app_notebook.c opens, refreshes, runs and edits the notebook. */
#include "tui/app.h"

#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <locale.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>
#include <readline/history.h>
#include <readline/readline.h>

#include "core/interrupt.h"
#include "lua/runtime.h"
#include "tui/app_internal.h"
#include "tui/repl.h"

app_t app;

double app_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

job *app_top(void) { return app.njobs ? &app.jobs[app.njobs - 1] : NULL; }

/* A line in the transcript, after whatever output came before it. */
void app_say(gl_text_kind kind, const char *msg)
{
    app_drain_output();
    app.scr.transcript.open = false;
    gl_text_feed(&app.scr.transcript, msg, strlen(msg), kind);
    if (app.scr.transcript.open) gl_text_feed(&app.scr.transcript, "\n", 1, kind);
    gl_screen_dirty(&app.scr, GL_PANE_TRANSCRIPT);
}

void app_info(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    app_say(GL_TEXT_INFO, buf);
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

void app_capture_pause(bool pause)
{
    fflush(stdout);
    fflush(stderr);
    dup2(pause ? app.saved_out : app.out_fd, STDOUT_FILENO);
    dup2(pause ? app.saved_err : app.out_fd, STDERR_FILENO);
}

/* Moves what was written since into the transcript; the file never blocks a
 * writer, and is emptied whenever all of it has been read. */
void app_drain_output(void)
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

/* ---- the Lua helper ------------------------------------------------------------------- */

/* Pushes ui[name] (a function set by lua/genlab/workbench.lua). */
void app_push_ui(const char *name)
{
    lua_rawgeti(app.L, LUA_REGISTRYINDEX, app.ui);
    lua_getfield(app.L, -1, name);
    lua_remove(app.L, -2);
}

/* Calls ui[name](thread-of-the-top-job, args on the stack) with nres results;
 * false (and a message in the transcript) on error. */
bool app_call_ui(const char *name, int nargs, int nres)
{
    lua_State *L = app.L;
    app_push_ui(name);
    lua_insert(L, -(nargs + 1));
    job *j = app_top();
    if (j)
        lua_pushthread(j->co), lua_xmove(j->co, L, 1);
    else
        lua_pushnil(L);
    lua_insert(L, -(nargs + 1));
    if (lua_pcall(L, nargs + 1, nres, 0) != LUA_OK) {
        char msg[400];
        snprintf(msg, sizeof msg, "workbench: %s", lua_tostring(L, -1));
        lua_pop(L, 1);
        app_say(GL_TEXT_ERROR, msg);
        return false;
    }
    return true;
}

static bool load_helper(void)
{
    lua_State *L = app.L;
    lua_newtable(L);
    static const luaL_Reg fns[] = {{"repl_yield", app_ui_repl_yield}, {"sample_begin", app_ui_sample_begin},
                                   {"sample", app_ui_sample},         {"image", app_ui_image},
                                   {"show_model", app_ui_show_model}, {"show_probe", app_ui_show_probe},
                                   {NULL, NULL}};
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

/* ---- the loop ------------------------------------------------------------------------------ */

static void frame(void)
{
    gl_screen *s = &app.scr;
    double t = app_now();
    if (t - app.last_frame >= FRAME) {
        if (app.njobs) app.frames++;
        app_refresh_views();
        gl_screen_draw(s, false);
        app.last_frame = t;
    } else if (s->input_dirty) { /* keystrokes echo at once */
        gl_screen_draw_input(s);
    }
}

static void loop(void)
{
    while (!app.quit) {
        bool runnable = app.njobs && !app_top()->paused;
        double t0 = app_now(), in_job = app.job_time;
        struct pollfd pfd = {.fd = STDIN_FILENO, .events = POLLIN};
        poll(&pfd, 1, runnable ? 0 : IDLE_WAIT_MS);
        app_read_keys();
        if (app_sigint_seen) app_handle_sigint();
        if (app.quit) break;
        if (app.njobs && !app_top()->paused) app_run_jobs();
        app_drain_output();
        frame();
        if (runnable) app.ui_time += app_now() - t0 - (app.job_time - in_job);
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
    sa.sa_handler = app_on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    if (!gl_screen_open(&app.scr, tty, stdin)) {
        app_capture_pause(true);
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
    app_setup_readline();
    gl_interrupt_set_hook(app_echo_during_job, NULL, 0.010);
    lua_getglobal(L, "gl");
    lua_getfield(L, -1, "system_info");
    if (lua_pcall(L, 0, 1, 0) == LUA_OK) app_info("%s", lua_tostring(L, -1));
    lua_pop(L, 2);
    app_info("%s; F1 or ? for keys, help(x) for docs, Ctrl-D quits", LUA_RELEASE);
    if (notebook) app_open_notebook(notebook);
    app_refresh_status();
    gl_screen_draw(&app.scr, true);
    loop();

    gl_interrupt_set_hook(NULL, NULL, 0);
    rl_callback_handler_remove();
    if (app.history) history_truncate_file(app.history, GL_REPL_HISTORY_MAX);
    free(app.history);
    if (app_has_notebook()) app_save_notebook();
    gl_screen_close(&app.scr);
    app_capture_pause(true);
    fclose(tty);
    app_views_free();
    free(app.chunk);
    for (int i = 0; i < app.nqueue; i++) free(app.queue[i]);
    lua_close(L);
    return 0;
}
