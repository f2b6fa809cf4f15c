/* genlab serve: the bounded queue of generation jobs and the one worker
 * thread that owns the Lua state (lua/genlab/serve.lua) and runs them, one
 * at a time. A job whose client went away is cancelled: skipped while it
 * waits, stopped at its next token while it runs. */
#include <lauxlib.h>
#include <lua.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/threads.h"
#include "lua/runtime.h"
#include "serve/serve_internal.h"

/* The model's Lua state: touched only by the worker once it runs. */
static lua_State *state;
static int server_ref; /* registry ref of serve.load's server */
static pthread_t worker;

/* The queue, under gl_srv.mu. */
static pthread_cond_t work = PTHREAD_COND_INITIALIZER; /* a job was queued, or stopping */
static struct gl_serve_job *head, *tail;
static int depth;     /* jobs waiting */
static bool busy;     /* one is being generated */
static bool stopping; /* the server is shutting down: no new jobs, running ones end */
static uint64_t next_id;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

struct gl_serve_job *gl_serve_job_new(void)
{
    struct gl_serve_job *j = calloc(1, sizeof *j);
    if (j && pthread_cond_init(&j->changed, NULL) != 0) {
        free(j);
        return NULL;
    }
    return j;
}

void gl_serve_job_free(struct gl_serve_job *j)
{
    pthread_cond_destroy(&j->changed);
    cJSON_Delete(j->doc);
    free(j->out.p);
    free(j->err_msg);
    free(j->text);
    free(j);
}

void gl_serve_job_unref_locked(struct gl_serve_job *j)
{
    if (--j->refs == 0) gl_serve_job_free(j);
}

/* The first failure is the one the client hears of. */
static void job_fail_locked(struct gl_serve_job *j, int status, const char *type, const char *msg)
{
    if (!j->err_msg) {
        j->err_status = status;
        j->err_type = type;
        j->err_msg = strdup(msg);
    }
}

/* The first line of a Lua error, without its "file.lua:N: " prefix. */
static void error_line(lua_State *L, char *out, size_t cap)
{
    const char *msg = lua_tostring(L, -1);
    if (!msg) msg = "error";
    const char *p = strstr(msg, ".lua:");
    if (p) {
        const char *q = p + 5;
        while (*q >= '0' && *q <= '9') q++;
        if (*q == ':' && q[1] == ' ' && !memchr(msg, '\n', (size_t)(p - msg))) msg = q + 2;
    }
    size_t n = strcspn(msg, "\n");
    snprintf(out, cap, "%.*s", (int)(n < cap ? n : cap - 1), msg);
}

/* A fresh Lua state runs serve.load(path, opts). */
bool gl_serve_jobs_load(void)
{
    const struct gl_serve_options *o = &gl_srv.o;
    lua_State *L = gl_runtime_new();
    if (!L) {
        fputs("genlab serve: cannot create a Lua state\n", stderr);
        return false;
    }
    lua_pushcfunction(L, gl_runtime_traceback);
    int handler = lua_gettop(L);
    lua_getglobal(L, "require");
    lua_pushstring(L, "genlab.serve");
    if (lua_pcall(L, 1, 1, handler) == LUA_OK) {
        lua_getfield(L, -1, "load");
        lua_pushstring(L, o->model);
        lua_createtable(L, 0, 2);
        if (o->tokenizer) lua_pushstring(L, o->tokenizer), lua_setfield(L, -2, "tokenizer");
        if (o->template_name) lua_pushstring(L, o->template_name), lua_setfield(L, -2, "template");
        if (lua_pcall(L, 2, 1, handler) == LUA_OK) {
            server_ref = luaL_ref(L, LUA_REGISTRYINDEX);
            lua_settop(L, 0);
            state = L;
            return true;
        }
    }
    char msg[512];
    error_line(L, msg, sizeof msg);
    fprintf(stderr, "genlab serve: %s\n", msg);
    lua_close(L);
    return false;
}

/* ---- one job ---------------------------------------------------------- */

/* on_token(piece) for serve.lua: into the job's stream; raises when the
 * client has gone, which ends the generation. */
static int l_on_token(lua_State *L)
{
    struct gl_serve_job *j = lua_touserdata(L, lua_upvalueindex(1));
    const char *piece = luaL_checkstring(L, 1);
    pthread_mutex_lock(&gl_srv.mu);
    bool gone = j->cancelled || stopping;
    if (!gone && j->stream) {
        gl_serve_sse_piece_locked(j, piece);
        pthread_cond_signal(&j->changed);
    }
    pthread_mutex_unlock(&gl_srv.mu);
    if (gone) return luaL_error(L, "request cancelled");
    return 0;
}

static void set_int(lua_State *L, const char *k, int64_t v)
{
    lua_pushinteger(L, (lua_Integer)v);
    lua_setfield(L, -2, k);
}

static void set_num(lua_State *L, const char *k, double v)
{
    lua_pushnumber(L, v);
    lua_setfield(L, -2, k);
}

/* {{role=, content=}, ...}; job_from_request checked the types. */
static void push_messages(lua_State *L, const cJSON *messages)
{
    lua_newtable(L);
    int i = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, messages)
    {
        lua_createtable(L, 0, 2);
        lua_pushstring(L, cJSON_GetObjectItemCaseSensitive(m, "role")->valuestring);
        lua_setfield(L, -2, "role");
        lua_pushstring(L, cJSON_GetObjectItemCaseSensitive(m, "content")->valuestring);
        lua_setfield(L, -2, "content");
        lua_rawseti(L, -2, ++i);
    }
}

static void push_options(lua_State *L, const struct gl_serve_job *j)
{
    lua_newtable(L);
    set_int(L, "max_tokens", j->max_tokens);
    set_num(L, "temperature", j->temperature);
    set_num(L, "top_p", j->top_p);
    if (j->has_top_k) set_int(L, "top_k", j->top_k);
    if (j->has_seed) set_int(L, "seed", j->seed);
    lua_createtable(L, j->nstop, 0);
    for (int i = 0; i < j->nstop; i++) {
        lua_pushstring(L, j->stop[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "stop");
}

static int64_t int_field(lua_State *L, int idx, const char *k)
{
    lua_getfield(L, idx, k);
    int64_t v = (int64_t)lua_tointeger(L, -1);
    lua_pop(L, 1);
    return v;
}

/* server:chat(messages, opts, on_token) or server:complete(prompt, ...),
 * and what came of it into the job. */
static void run_job(struct gl_serve_job *j)
{
    lua_State *L = state;
    int top = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, server_ref);
    lua_getfield(L, -1, j->ep == GL_SERVE_EP_CHAT ? "chat" : "complete");
    lua_insert(L, -2);
    if (j->ep == GL_SERVE_EP_CHAT) push_messages(L, j->messages);
    else lua_pushstring(L, j->prompt);
    push_options(L, j);
    lua_pushlightuserdata(L, j);
    lua_pushcclosure(L, l_on_token, 1);
    int status = lua_pcall(L, 4, 1, 0);
    pthread_mutex_lock(&gl_srv.mu);
    if (status != LUA_OK) {
        char msg[512];
        if (lua_istable(L, -1) && lua_getfield(L, -1, "bad_request") == LUA_TSTRING) {
            job_fail_locked(j, 400, "invalid_request_error", lua_tostring(L, -1));
        } else if (j->cancelled) {
            job_fail_locked(j, 499, "cancelled", "the client closed the connection");
        } else if (stopping) {
            job_fail_locked(j, 503, "server_overloaded", "the server is shutting down");
        } else {
            if (lua_istable(L, -1)) lua_pop(L, 1);
            error_line(L, msg, sizeof msg);
            job_fail_locked(j, 500, "server_error", msg);
            fprintf(stderr, "genlab serve: %s: %s\n", j->id, msg);
        }
    } else {
        lua_getfield(L, -1, "text");
        const char *text = lua_tostring(L, -1);
        j->text = strdup(text ? text : "");
        lua_pop(L, 1);
        lua_getfield(L, -1, "finish_reason");
        snprintf(j->finish, sizeof j->finish, "%s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "stop");
        lua_pop(L, 1);
        j->tokens_in = int_field(L, -1, "tokens_in");
        j->tokens_out = int_field(L, -1, "tokens_out");
        lua_getfield(L, -1, "seconds");
        gl_serve_metrics_generated_locked(j->tokens_in, j->tokens_out, lua_tonumber(L, -1));
        lua_pop(L, 1);
    }
    lua_settop(L, top);
    if (j->stream) gl_serve_sse_end_locked(j);
    pthread_mutex_unlock(&gl_srv.mu);
}

/* ---- the worker and the queue ----------------------------------------- */

static void *worker_main(void *arg)
{
    (void)arg;
    /* OpenMP's thread count is per thread: give this one GENLAB_THREADS too. */
    gl_threads_set(gl_threads_get());
    pthread_mutex_lock(&gl_srv.mu);
    for (;;) {
        while (!head && !stopping) pthread_cond_wait(&work, &gl_srv.mu);
        if (stopping) break;
        struct gl_serve_job *j = head;
        head = j->next;
        if (!head) tail = NULL;
        depth--;
        if (j->cancelled) {
            gl_serve_metrics_cancelled_locked();
            job_fail_locked(j, 499, "cancelled", "the client closed the connection");
            j->done = true;
        } else {
            busy = true;
            pthread_mutex_unlock(&gl_srv.mu);
            /* No collector step here: gl_lua_push already steps it in
             * proportion to the tensor bytes each job makes, as it does
             * in-process, and a step per job cost 0.5 ms, 4% of a job. */
            run_job(j);
            pthread_mutex_lock(&gl_srv.mu);
            busy = false;
            if (j->cancelled) gl_serve_metrics_cancelled_locked();
            j->done = true;
            gl_serve_metrics_latency_locked(now_s() - j->t_enqueued);
        }
        pthread_cond_signal(&j->changed);
        gl_serve_job_unref_locked(j);
    }
    pthread_mutex_unlock(&gl_srv.mu);
    return NULL;
}

bool gl_serve_jobs_start(void)
{
    if (pthread_create(&worker, NULL, worker_main, NULL) == 0) return true;
    fputs("genlab serve: cannot start the worker thread\n", stderr);
    return false;
}

bool gl_serve_jobs_push(struct gl_serve_job *j, bool *stopped)
{
    pthread_mutex_lock(&gl_srv.mu);
    *stopped = stopping;
    if (stopping || depth >= gl_srv.o.queue_max) {
        pthread_mutex_unlock(&gl_srv.mu);
        return false;
    }
    snprintf(j->id, sizeof j->id, "%s-%llx", j->ep == GL_SERVE_EP_CHAT ? "chatcmpl" : "cmpl",
             (unsigned long long)++next_id);
    j->created = (long)time(NULL);
    j->t_enqueued = now_s();
    j->refs = 2;
    if (tail) tail->next = j;
    else head = j;
    tail = j;
    depth++;
    pthread_cond_signal(&work);
    pthread_mutex_unlock(&gl_srv.mu);
    return true;
}

void gl_serve_jobs_stop(void)
{
    pthread_mutex_lock(&gl_srv.mu);
    stopping = true;
    for (struct gl_serve_job *j = head, *next; j; j = next) {
        next = j->next;
        job_fail_locked(j, 503, "server_overloaded", "the server is shutting down");
        if (j->stream) gl_serve_sse_end_locked(j);
        j->done = true;
        pthread_cond_signal(&j->changed);
        gl_serve_job_unref_locked(j);
    }
    head = tail = NULL;
    depth = 0;
    pthread_cond_broadcast(&work);
    pthread_mutex_unlock(&gl_srv.mu);
    pthread_join(worker, NULL);
}

void gl_serve_jobs_free(void)
{
    if (state) lua_close(state);
    state = NULL;
}

void gl_serve_jobs_gauges_locked(int *waiting, bool *running)
{
    *waiting = depth;
    *running = busy;
}
