/* The workbench's jobs (see app.c's top comment): REPL lines and notebook
 * cells run as coroutines resumed a slice at a time, stacked, paused,
 * stopped by Ctrl-C; lines entered while the top job is mid-computation
 * wait in a queue until it yields. */
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/interrupt.h"
#include "tui/app_internal.h"
#include "tui/repl.h"

lua_State *volatile app_running;
volatile sig_atomic_t app_sigint_seen;
static volatile sig_atomic_t sigint_handled;

/* ui.repl_yield() -> false when not in a REPL job; yields once its slice is spent. */
int app_ui_repl_yield(lua_State *L)
{
    job *j = app_top();
    if (!j || j->notebook || L != app_running) {
        lua_pushboolean(L, 0);
        return 1;
    }
    if (app_now() >= app.slice_end && lua_isyieldable(L)) return lua_yield(L, 0);
    lua_pushboolean(L, 1);
    return 1;
}

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
    if (L != app_running || !lua_isyieldable(L) || app_now() < app.slice_end) return;
    job *j = app_top();
    if (j) j->preempted = true;
    lua_yield(L, 0);
}

void app_on_sigint(int sig)
{
    (void)sig;
    lua_State *L = app_running;
    if (L) { /* as lua.c does: lua_sethook is safe in a signal handler */
        gl_interrupt_request();
        lua_sethook(L, stop_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKLINE | LUA_MASKCOUNT, 1);
        sigint_handled = 1;
    }
    app_sigint_seen = 1;
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
void app_start_repl_job(const char *src)
{
    lua_State *L = app.L;
    if (app.njobs == MAX_JOBS) {
        app_say(GL_TEXT_ERROR, "too many jobs waiting: Ctrl-C stops the top one");
        return;
    }
    int c = gl_repl_compile(L, src);
    if (c == GL_CHUNK_ERROR) {
        app_say(GL_TEXT_ERROR, lua_tostring(L, -1));
        lua_pop(L, 1);
        return;
    }
    if (lua_getfield(L, LUA_REGISTRYINDEX, GL_REPL_SCOPE) == LUA_TTABLE) {
        if (!lua_setupvalue(L, -2, 1)) lua_pop(L, 1);
    } else {
        lua_pop(L, 1);
    }
    job j = {.co = lua_newthread(L), .started = app_now()};
    lua_insert(L, -2);
    lua_xmove(L, j.co, 1);
    j.ref = luaL_ref(L, LUA_REGISTRYINDEX);
    snprintf(j.label, sizeof j.label, "%.*s", (int)strcspn(src, "\n"), src);
    push_job(&j);
}

/* Starts nb:run_async(i) (i > 0) or nb:run_all_async() as a job. */
void app_start_cell_job(int cell)
{
    lua_State *L = app.L;
    for (int i = 0; i < app.njobs; i++)
        if (app.jobs[i].notebook) {
            app_say(GL_TEXT_ERROR, "a notebook cell is running: wait, or Ctrl-C it");
            return;
        }
    if (app.njobs == MAX_JOBS) return;
    app_push_nb_method(cell > 0 ? "run_async" : "run_all_async");
    if (cell > 0) lua_pushinteger(L, cell);
    if (lua_pcall(L, cell > 0 ? 2 : 1, 1, 0) != LUA_OK) {
        app_say(GL_TEXT_ERROR, lua_tostring(L, -1));
        lua_pop(L, 1);
        return;
    }
    lua_getfield(L, -1, "co");
    job j = {.co = lua_tothread(L, -1), .notebook = true, .started = app_now()};
    lua_pop(L, 1);
    j.ref = luaL_ref(L, LUA_REGISTRYINDEX);
    if (cell > 0)
        snprintf(j.label, sizeof j.label, "cell %d", cell);
    else
        snprintf(j.label, sizeof j.label, "all cells");
    push_job(&j);
}

void app_checkpoint_now(void)
{
    if (app_call_ui("checkpoint", 0, 1)) {
        app_info("%s", lua_tostring(app.L, -1));
        lua_pop(app.L, 1);
    }
    app.save_pending = false;
}

/* A job ended: show its results or its error, forget it. */
static void finish_job(int status, int nres)
{
    lua_State *L = app.L;
    job j = app.jobs[--app.njobs];
    app_drain_output();
    if (j.notebook) {
        if (status != LUA_OK) { /* a bug in the notebook's runner (cells' errors are outputs) */
            app_say(GL_TEXT_ERROR, lua_tostring(L, -1));
            lua_pop(L, 1);
        }
        app_refresh_notebook(true);
        app_nb_save_outputs();
        app_info("%s finished in %.1fs", j.label, app_now() - j.started);
    } else if (status == LUA_OK) {
        bool any = false;
        for (int i = 1; i <= nres; i++) any = any || !lua_isnil(j.co, -i);
        if (any) {
            lua_pushcfunction(L, gl_repl_show);
            lua_xmove(j.co, L, nres);
            if (lua_pcall(L, nres, 0, 0) != LUA_OK) {
                app_say(GL_TEXT_ERROR, lua_tostring(L, -1));
                lua_pop(L, 1);
            }
            app_drain_output();
        }
    } else {
        const char *msg = lua_tostring(j.co, -1);
        if (!msg) msg = "(error object is not a string)";
        if (strstr(msg, "interrupted")) {
            app_say(GL_TEXT_ERROR, msg);
        } else {
            luaL_traceback(L, j.co, msg, 0);
            app_say(GL_TEXT_ERROR, lua_tostring(L, -1));
            lua_pop(L, 1);
        }
    }
    if (!j.notebook) lua_resetthread(j.co);
    lua_sethook(j.co, NULL, 0, 0);
    luaL_unref(L, LUA_REGISTRYINDEX, j.ref);
    gl_interrupt_clear();
    app.model_stale = app.curves_stale = true;
    app.scr.status_dirty = true;
    if (app.save_pending) app_checkpoint_now();
}

/* Runs the top job for what is left of the slice; false when it ended or yielded. */
static bool resume_top(void)
{
    lua_State *L = app.L;
    job *j = app_top();
    j->preempted = false;
    j->ran = true;
    arm(j);
    int status, nres = 0;
    bool done;
    if (j->notebook) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, j->ref);
        lua_getfield(L, -1, "resume");
        lua_insert(L, -2);
        lua_pushnumber(L, app.slice_end - app_now() > 0 ? app.slice_end - app_now() : 0);
        double t0 = app_now();
        app_running = j->co;
        status = lua_pcall(L, 2, 1, 0);
        app_running = NULL;
        app.job_time += app_now() - t0;
        done = status != LUA_OK || lua_toboolean(L, -1);
        if (status == LUA_OK) lua_pop(L, 1);
    } else {
        double t0 = app_now();
        app_running = j->co;
        status = lua_resume(j->co, L, 0, &nres);
        app_running = NULL;
        app.job_time += app_now() - t0;
        done = status != LUA_YIELD;
        if (!done) lua_pop(j->co, nres);
    }
    lua_sethook(j->co, NULL, 0, 0);
    if (done) {
        finish_job(status, nres);
        return false;
    }
    if (!j->preempted && app.save_pending) app_checkpoint_now();
    return app_now() < app.slice_end;
}

/* Whether a line entered now must wait: the top job has not started yet or
 * is mid-computation. */
bool app_must_wait(void)
{
    job *j = app_top();
    return j && (!j->ran || j->preempted);
}

/* Lines entered while the top job was mid-computation run once it yields. */
static void start_queued(void)
{
    while (app.nqueue > 0 && !app_must_wait()) {
        char *line = app.queue[0];
        memmove(app.queue, app.queue + 1, (size_t)(--app.nqueue) * sizeof *app.queue);
        if (!app.chunk && line[0] == ':')
            app_command(line);
        else
            app_submit(line);
        free(line);
    }
}

void app_run_jobs(void)
{
    app.slice_end = app_now() + SLICE;
    while (app.njobs && !app_top()->paused) {
        start_queued();
        if (!resume_top() && (app.njobs == 0 || app_top()->preempted || app_now() >= app.slice_end)) break;
    }
    start_queued();
}

/* Ctrl-C: the top job stops (its Trainer step unwinds), else the line is dropped. */
void app_handle_sigint(void)
{
    bool handled = sigint_handled;
    app_sigint_seen = sigint_handled = 0;
    if (app.scr.help) app_toggle_help();
    job *j = app_top();
    if (handled) return; /* the handler already stopped the job that was running */
    if (j) {
        j->stopping = true;
        j->paused = false;
        return;
    }
    for (int i = 0; i < app.nqueue; i++) free(app.queue[i]);
    app.nqueue = 0;
    app_line_reset();
    app_info("^C");
}
