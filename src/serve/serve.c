/* genlab serve: OpenAI-compatible chat and text completions over HTTP.
 *
 * libmicrohttpd runs a thread per connection. Those threads parse and check
 * requests (cJSON) and put generation jobs on a bounded queue; ONE worker
 * thread owns the Lua state that loaded the model (lua/genlab/serve.lua) and
 * runs the jobs one at a time, so no two requests share KV state. Tokens go
 * from the worker into the job's buffer; the connection thread waits on it
 * (plain JSON) or streams it as server-sent events. A client that goes away
 * cancels its job; a slow reader never holds the worker, whose output the
 * buffer absorbs. */
#include "serve/serve.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <lauxlib.h>
#include <lua.h>
#include <microhttpd.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/threads.h"
#include "lua/runtime.h"

/* ---- options ---------------------------------------------------------- */

struct options {
    const char *model, *tokenizer, *template_name, *name, *host, *api_key_env;
    int port, queue_max, max_connections;
    int64_t max_tokens;
    size_t max_body;
    bool verbose;
};

static const char usage[] =
    "usage: genlab serve --model PATH [FLAGS]\n"
    "An OpenAI-compatible HTTP server for one language model:\n"
    "  POST /v1/chat/completions, POST /v1/completions (stream=true for server-sent events),\n"
    "  GET /v1/models, GET /health, GET /metrics (Prometheus text).\n"
    "\n"
    "  --model PATH          model (whatever gl.models.load reads), with its tokenizer\n"
    "  --tokenizer PATH      tokenizer file, when the model has none beside it\n"
    "  --template NAME       chat template (chatml, llama2, plain; default: the model's)\n"
    "  --name ID             the model id clients name (default: the file name)\n"
    "  --host ADDR           address to bind (default 127.0.0.1, loopback only)\n"
    "  --port N              port (default 8080; 0 picks a free one)\n"
    "  --api-key-env VAR     require 'Authorization: Bearer $VAR' (not on /health)\n"
    "  --max-body BYTES      largest request body (default 1048576; larger: 413)\n"
    "  --max-tokens N        largest max_tokens a request may ask (default 512; larger: 400)\n"
    "  --queue N             requests waiting for the model at most (default 32; more: 503)\n"
    "  --max-connections N   open connections at most (default 128)\n"
    "  --verbose             log each request on stderr\n"
    "  --help                this text\n"
    "\n"
    "The first line on stdout is the server's URL. SIGINT or SIGTERM stop it.\n";

/* ---- small helpers ---------------------------------------------------- */

struct buf {
    char *p;
    size_t n, cap;
};

static bool buf_add(struct buf *b, const char *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) return false;
        b->p = p, b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return true;
}

static void buf_printf(struct buf *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0) buf_add(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- jobs and server state -------------------------------------------- */

enum endpoint { EP_CHAT, EP_COMPLETIONS, EP_MODELS, EP_HEALTH, EP_METRICS, EP_OTHER, EP_N };
static const char *const ep_path[EP_N] = {"/v1/chat/completions", "/v1/completions", "/v1/models", "/health",
                                          "/metrics", "other"};

#define MAX_STOP 4

struct job {
    int refs; /* the connection and the queue/worker; under srv.mu */
    enum endpoint ep;
    bool stream, include_usage;
    cJSON *doc;         /* the request; messages, prompt and stop point into it */
    const cJSON *messages;
    const char *prompt;
    const char *stop[MAX_STOP];
    int nstop;
    int64_t max_tokens, top_k, seed;
    double temperature, top_p;
    bool has_top_k, has_seed;
    char id[48];
    long created;
    double t_enqueued;
    /* written by the worker, read by the connection; under srv.mu */
    struct buf out; /* SSE bytes when streaming */
    size_t sent;
    bool began, done, cancelled;
    int err_status;
    char *err_msg, *text;
    const char *err_type;
    char finish[16];
    int64_t tokens_in, tokens_out;
    struct job *next;
};

static const double latency_le[] = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
#define N_LE (sizeof latency_le / sizeof latency_le[0])

static struct {
    struct options o;
    char model_id[256];
    const char *api_key; /* never logged */
    lua_State *L;
    int server_ref;
    pthread_mutex_t mu;
    pthread_cond_t work, progress;
    struct job *head, *tail;
    int depth;
    bool busy, stopping;
    uint64_t next_id;
    /* metrics, under mu */
    uint64_t requests[EP_N][600];
    uint64_t errors, cancelled, latency_bucket[N_LE], latency_count;
    double latency_sum, gen_seconds;
    uint64_t prompt_tokens, gen_tokens;
} srv = {.mu = PTHREAD_MUTEX_INITIALIZER, .work = PTHREAD_COND_INITIALIZER, .progress = PTHREAD_COND_INITIALIZER};

static void job_free(struct job *j)
{
    cJSON_Delete(j->doc);
    free(j->out.p);
    free(j->err_msg);
    free(j->text);
    free(j);
}

static void job_unref_locked(struct job *j)
{
    if (--j->refs == 0) job_free(j);
}

static void job_fail_locked(struct job *j, int status, const char *type, const char *msg)
{
    if (!j->err_msg) {
        j->err_status = status;
        j->err_type = type;
        j->err_msg = strdup(msg);
    }
}

/* ---- responses -------------------------------------------------------- */

static void count_locked(enum endpoint ep, int status)
{
    if (status >= 100 && status < 600) srv.requests[ep][status]++;
    if (status >= 400) srv.errors++;
}

static enum MHD_Result respond(struct MHD_Connection *c, enum endpoint ep, int status, const char *ctype,
                               char *body)
{
    size_t len = strlen(body);
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    if (status == 401) MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    if (status == 405) MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, ep <= EP_COMPLETIONS ? "POST" : "GET");
    if (status == 503) MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    pthread_mutex_lock(&srv.mu);
    count_locked(ep, status);
    pthread_mutex_unlock(&srv.mu);
    return ret;
}

static enum MHD_Result respond_json(struct MHD_Connection *c, enum endpoint ep, int status, cJSON *v)
{
    char *s = cJSON_PrintUnformatted(v);
    cJSON_Delete(v);
    if (!s) return MHD_NO;
    return respond(c, ep, status, "application/json", s);
}

static cJSON *error_json(const char *type, const char *msg)
{
    cJSON *root = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(root, "error");
    cJSON_AddStringToObject(e, "message", msg);
    cJSON_AddStringToObject(e, "type", type);
    return root;
}

static enum MHD_Result respond_error(struct MHD_Connection *c, enum endpoint ep, int status, const char *type,
                                     const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return respond_json(c, ep, status, error_json(type, msg));
}

/* ---- request checking ------------------------------------------------- */

/* An integral JSON number in [lo, hi]. */
static bool json_int(const cJSON *v, double lo, double hi, int64_t *out)
{
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= lo && v->valuedouble <= hi)) return false;
    *out = (int64_t)v->valuedouble;
    return (double)*out == v->valuedouble;
}

/* Fills j from the request body doc, or writes why not into msg and returns
 * the status (400 or 404). */
static int job_from_request(struct job *j, char *msg, size_t cap)
{
    const cJSON *doc = j->doc;
#define BAD(...) return snprintf(msg, cap, __VA_ARGS__), 400
    if (!cJSON_IsObject(doc)) BAD("the request body must be a JSON object");
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(doc, "model");
    if (v && !cJSON_IsNull(v)) {
        if (!cJSON_IsString(v)) BAD("'model' must be a string");
        if (strcmp(v->valuestring, srv.model_id) != 0)
            return snprintf(msg, cap, "model '%.200s' does not exist (this server has '%s')", v->valuestring,
                            srv.model_id),
                   404;
    }
    if (j->ep == EP_CHAT) {
        v = cJSON_GetObjectItemCaseSensitive(doc, "messages");
        if (!v) BAD("'messages' is required");
        if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) == 0) BAD("'messages' must be a non-empty array");
        int i = 0;
        const cJSON *m;
        cJSON_ArrayForEach(m, v)
        {
            const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
            const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
            if (!cJSON_IsObject(m)) BAD("'messages[%d]' must be an object", i);
            if (!cJSON_IsString(role)) BAD("'messages[%d].role' must be a string", i);
            if (!cJSON_IsString(content)) BAD("'messages[%d].content' must be a string", i);
            i++;
        }
        j->messages = v;
    } else {
        v = cJSON_GetObjectItemCaseSensitive(doc, "prompt");
        if (!v) BAD("'prompt' is required");
        if (cJSON_IsArray(v) && cJSON_GetArraySize(v) == 1) v = cJSON_GetArrayItem(v, 0);
        if (!cJSON_IsString(v)) BAD("'prompt' must be a string");
        j->prompt = v->valuestring;
    }
    int64_t limit = srv.o.max_tokens;
    j->max_tokens = j->ep == EP_COMPLETIONS && limit > 16 ? 16 : limit;
    v = cJSON_GetObjectItemCaseSensitive(doc, "max_tokens");
    if (!v || cJSON_IsNull(v)) v = cJSON_GetObjectItemCaseSensitive(doc, "max_completion_tokens");
    if (v && !cJSON_IsNull(v)) {
        if (!json_int(v, 1, 1e15, &j->max_tokens)) BAD("'max_tokens' must be an integer >= 1");
        if (j->max_tokens > limit)
            BAD("'max_tokens' is %lld, more than this server's limit of %lld", (long long)j->max_tokens,
                (long long)limit);
    }
    j->temperature = 1, j->top_p = 1;
    v = cJSON_GetObjectItemCaseSensitive(doc, "temperature");
    if (v && !cJSON_IsNull(v)) {
        if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 2)
            BAD("'temperature' must be a number in [0, 2]");
        j->temperature = v->valuedouble;
    }
    v = cJSON_GetObjectItemCaseSensitive(doc, "top_p");
    if (v && !cJSON_IsNull(v)) {
        if (!cJSON_IsNumber(v) || !(v->valuedouble > 0) || v->valuedouble > 1)
            BAD("'top_p' must be a number in (0, 1]");
        j->top_p = v->valuedouble;
    }
    v = cJSON_GetObjectItemCaseSensitive(doc, "top_k");
    if (v && !cJSON_IsNull(v)) {
        if (!json_int(v, 0, 1e9, &j->top_k)) BAD("'top_k' must be an integer >= 0");
        j->has_top_k = true;
    }
    v = cJSON_GetObjectItemCaseSensitive(doc, "seed");
    if (v && !cJSON_IsNull(v)) {
        if (!json_int(v, -9e15, 9e15, &j->seed)) BAD("'seed' must be an integer");
        j->has_seed = true;
    }
    v = cJSON_GetObjectItemCaseSensitive(doc, "n");
    if (v && !cJSON_IsNull(v) && !(cJSON_IsNumber(v) && v->valuedouble == 1)) BAD("only 'n' = 1 is supported");
    v = cJSON_GetObjectItemCaseSensitive(doc, "stop");
    if (cJSON_IsString(v)) j->stop[j->nstop++] = v->valuestring;
    else if (cJSON_IsArray(v)) {
        if (cJSON_GetArraySize(v) > MAX_STOP) BAD("'stop' holds at most %d strings", MAX_STOP);
        const cJSON *s;
        cJSON_ArrayForEach(s, v)
        {
            if (!cJSON_IsString(s)) BAD("'stop' must be a string or a list of strings");
            j->stop[j->nstop++] = s->valuestring;
        }
    } else if (v && !cJSON_IsNull(v))
        BAD("'stop' must be a string or a list of strings");
    for (int i = 0; i < j->nstop; i++)
        if (!j->stop[i][0]) BAD("'stop' strings must not be empty");
    v = cJSON_GetObjectItemCaseSensitive(doc, "stream");
    if (v && !cJSON_IsNull(v)) {
        if (!cJSON_IsBool(v)) BAD("'stream' must be true or false");
        j->stream = cJSON_IsTrue(v);
    }
    v = cJSON_GetObjectItemCaseSensitive(doc, "stream_options");
    if (v && !cJSON_IsNull(v)) {
        const cJSON *u = cJSON_GetObjectItemCaseSensitive(v, "include_usage");
        if (!cJSON_IsObject(v) || (u && !cJSON_IsBool(u))) BAD("'stream_options' must be {\"include_usage\": bool}");
        j->include_usage = cJSON_IsTrue(u);
    }
    return 0;
#undef BAD
}

/* ---- the worker ------------------------------------------------------- */

/* The common part of every response object and stream chunk. */
static cJSON *reply_head(const struct job *j, bool chunk)
{
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "id", j->id);
    cJSON_AddStringToObject(r, "object", j->ep == EP_CHAT ? (chunk ? "chat.completion.chunk" : "chat.completion")
                                                          : "text_completion");
    cJSON_AddNumberToObject(r, "created", (double)j->created);
    cJSON_AddStringToObject(r, "model", srv.model_id);
    return r;
}

/* A choice: {index, message|delta|text, finish_reason}. */
static cJSON *add_choice(cJSON *r, const struct job *j, const char *text, const char *role, const char *finish)
{
    cJSON *choices = cJSON_AddArrayToObject(r, "choices"), *c = cJSON_CreateObject();
    cJSON_AddItemToArray(choices, c);
    cJSON_AddNumberToObject(c, "index", 0);
    if (j->ep == EP_CHAT) {
        cJSON *m = cJSON_AddObjectToObject(c, j->stream ? "delta" : "message");
        if (role) cJSON_AddStringToObject(m, "role", role);
        if (text) cJSON_AddStringToObject(m, "content", text);
    } else {
        cJSON_AddStringToObject(c, "text", text ? text : "");
    }
    if (finish) cJSON_AddStringToObject(c, "finish_reason", finish);
    else cJSON_AddNullToObject(c, "finish_reason");
    return c;
}

static void add_usage(cJSON *r, const struct job *j)
{
    cJSON *u = cJSON_AddObjectToObject(r, "usage");
    cJSON_AddNumberToObject(u, "prompt_tokens", (double)j->tokens_in);
    cJSON_AddNumberToObject(u, "completion_tokens", (double)j->tokens_out);
    cJSON_AddNumberToObject(u, "total_tokens", (double)(j->tokens_in + j->tokens_out));
}

/* Appends `data: <json>\n\n` to the job's stream; under srv.mu. */
static void sse_add_locked(struct job *j, cJSON *v)
{
    char *s = cJSON_PrintUnformatted(v);
    cJSON_Delete(v);
    if (!s) return;
    buf_add(&j->out, "data: ", 6);
    buf_add(&j->out, s, strlen(s));
    buf_add(&j->out, "\n\n", 2);
    free(s);
}

static void sse_begin_locked(struct job *j)
{
    if (j->began) return;
    j->began = true;
    if (j->ep == EP_CHAT) {
        cJSON *r = reply_head(j, true);
        add_choice(r, j, "", "assistant", NULL);
        sse_add_locked(j, r);
    }
}

/* on_token(piece) for serve.lua: into the job's stream; raises when the
 * client has gone, which ends the generation. */
static int l_on_token(lua_State *L)
{
    struct job *j = lua_touserdata(L, lua_upvalueindex(1));
    size_t n;
    const char *piece = luaL_checklstring(L, 1, &n);
    pthread_mutex_lock(&srv.mu);
    bool gone = j->cancelled || srv.stopping;
    if (!gone && j->stream) {
        sse_begin_locked(j);
        cJSON *r = reply_head(j, true);
        add_choice(r, j, piece, NULL, NULL);
        sse_add_locked(j, r);
        pthread_cond_broadcast(&srv.progress);
    }
    pthread_mutex_unlock(&srv.mu);
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

static void push_options(lua_State *L, const struct job *j)
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

static void run_job(struct job *j)
{
    lua_State *L = srv.L;
    int top = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, srv.server_ref);
    lua_getfield(L, -1, j->ep == EP_CHAT ? "chat" : "complete");
    lua_insert(L, -2);
    if (j->ep == EP_CHAT) push_messages(L, j->messages);
    else lua_pushstring(L, j->prompt);
    push_options(L, j);
    lua_pushlightuserdata(L, j);
    lua_pushcclosure(L, l_on_token, 1);
    int status = lua_pcall(L, 4, 1, 0);
    pthread_mutex_lock(&srv.mu);
    if (status != LUA_OK) {
        char msg[512];
        if (lua_istable(L, -1) && lua_getfield(L, -1, "bad_request") == LUA_TSTRING) {
            job_fail_locked(j, 400, "invalid_request_error", lua_tostring(L, -1));
        } else if (j->cancelled) {
            job_fail_locked(j, 499, "cancelled", "the client closed the connection");
        } else if (srv.stopping) {
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
        srv.gen_seconds += lua_tonumber(L, -1);
        lua_pop(L, 1);
        srv.prompt_tokens += (uint64_t)j->tokens_in;
        srv.gen_tokens += (uint64_t)j->tokens_out;
    }
    lua_settop(L, top);
    if (j->stream && !j->err_msg) {
        sse_begin_locked(j);
        cJSON *r = reply_head(j, true);
        add_choice(r, j, j->ep == EP_CHAT ? NULL : "", NULL, j->finish);
        sse_add_locked(j, r);
        if (j->include_usage) {
            r = reply_head(j, true);
            cJSON_AddArrayToObject(r, "choices");
            add_usage(r, j);
            sse_add_locked(j, r);
        }
    } else if (j->stream && j->began) {
        sse_add_locked(j, error_json(j->err_type, j->err_msg));
    }
    if (j->stream) buf_add(&j->out, "data: [DONE]\n\n", 14);
    pthread_mutex_unlock(&srv.mu);
}

static void observe_latency_locked(double s)
{
    for (size_t i = 0; i < N_LE; i++)
        if (s <= latency_le[i]) srv.latency_bucket[i]++;
    srv.latency_count++;
    srv.latency_sum += s;
}

static void *worker_main(void *arg)
{
    (void)arg;
    /* OpenMP's thread count is per thread: give this one GENLAB_THREADS too. */
    gl_threads_set(gl_threads_get());
    pthread_mutex_lock(&srv.mu);
    for (;;) {
        while (!srv.head && !srv.stopping) pthread_cond_wait(&srv.work, &srv.mu);
        if (srv.stopping) break;
        struct job *j = srv.head;
        srv.head = j->next;
        if (!srv.head) srv.tail = NULL;
        srv.depth--;
        if (j->cancelled) {
            srv.cancelled++;
            job_fail_locked(j, 499, "cancelled", "the client closed the connection");
            j->done = true;
        } else {
            srv.busy = true;
            pthread_mutex_unlock(&srv.mu);
            run_job(j);
            lua_gc(srv.L, LUA_GCSTEP, 0);
            pthread_mutex_lock(&srv.mu);
            srv.busy = false;
            if (j->cancelled) srv.cancelled++;
            j->done = true;
            observe_latency_locked(now_s() - j->t_enqueued);
        }
        pthread_cond_broadcast(&srv.progress);
        job_unref_locked(j);
    }
    pthread_mutex_unlock(&srv.mu);
    return NULL;
}

/* ---- HTTP ------------------------------------------------------------- */

struct request {
    enum endpoint ep;
    struct buf body;
    bool too_big, answered;
};

static ssize_t stream_reader(void *cls, uint64_t pos, char *out, size_t max)
{
    (void)pos;
    struct job *j = cls;
    pthread_mutex_lock(&srv.mu);
    while (j->sent == j->out.n && !j->done) pthread_cond_wait(&srv.progress, &srv.mu);
    ssize_t n = MHD_CONTENT_READER_END_OF_STREAM;
    if (j->sent < j->out.n) {
        size_t k = j->out.n - j->sent < max ? j->out.n - j->sent : max;
        memcpy(out, j->out.p + j->sent, k);
        j->sent += k;
        n = (ssize_t)k;
    }
    pthread_mutex_unlock(&srv.mu);
    return n;
}

/* The stream is over: the client read it all, or went away mid-way. */
static void stream_done(void *cls)
{
    struct job *j = cls;
    pthread_mutex_lock(&srv.mu);
    if (!j->done) j->cancelled = true;
    job_unref_locked(j);
    pthread_mutex_unlock(&srv.mu);
}

/* Whether the client closed its end (it no longer waits for the answer). */
static bool client_gone(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *info = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!info) return false;
    struct pollfd p = {.fd = info->connect_fd, .events = POLLRDHUP};
    return poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

/* Waits until the job is done (or, streaming, has begun), checking a few
 * times a second that the client is still there; a client that left
 * cancels its job, queued or running. */
static void wait_for_job_locked(struct MHD_Connection *c, struct job *j)
{
    while (!j->done && !(j->stream && j->began)) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 200 * 1000 * 1000;
        if (until.tv_nsec >= 1000000000L) until.tv_sec++, until.tv_nsec -= 1000000000L;
        if (pthread_cond_timedwait(&srv.progress, &srv.mu, &until) == ETIMEDOUT && !j->cancelled && client_gone(c))
            j->cancelled = true;
    }
}

static enum MHD_Result answer_job(struct MHD_Connection *c, struct job *j)
{
    pthread_mutex_lock(&srv.mu);
    wait_for_job_locked(c, j);
    if (j->err_msg && !j->began) {
        int status = j->err_status;
        enum endpoint ep = j->ep;
        cJSON *e = error_json(j->err_type, j->err_msg);
        job_unref_locked(j);
        pthread_mutex_unlock(&srv.mu);
        return respond_json(c, ep, status, e);
    }
    if (j->stream) {
        pthread_mutex_unlock(&srv.mu);
        struct MHD_Response *r =
            MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_reader, j, stream_done);
        if (!r) {
            pthread_mutex_lock(&srv.mu);
            job_unref_locked(j);
            pthread_mutex_unlock(&srv.mu);
            return MHD_NO;
        }
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
        MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
        enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, r);
        MHD_destroy_response(r);
        pthread_mutex_lock(&srv.mu);
        count_locked(j->ep, 200);
        pthread_mutex_unlock(&srv.mu);
        return ret;
    }
    cJSON *r = reply_head(j, false);
    add_choice(r, j, j->text, "assistant", j->finish);
    add_usage(r, j);
    enum endpoint ep = j->ep;
    job_unref_locked(j);
    pthread_mutex_unlock(&srv.mu);
    return respond_json(c, ep, 200, r);
}

static enum MHD_Result start_job(struct MHD_Connection *c, struct request *q)
{
    struct job *j = calloc(1, sizeof *j);
    if (!j) return respond_error(c, q->ep, 500, "server_error", "out of memory");
    j->ep = q->ep;
    j->doc = cJSON_ParseWithLength(q->body.p ? q->body.p : "", q->body.n);
    if (!j->doc) {
        job_free(j);
        return respond_error(c, q->ep, 400, "invalid_request_error", "the request body is not valid JSON");
    }
    char msg[512];
    int status = job_from_request(j, msg, sizeof msg);
    if (status) {
        job_free(j);
        return respond_error(c, q->ep, status, status == 404 ? "not_found_error" : "invalid_request_error", "%s", msg);
    }
    pthread_mutex_lock(&srv.mu);
    if (srv.stopping || srv.depth >= srv.o.queue_max) {
        bool stopping = srv.stopping;
        pthread_mutex_unlock(&srv.mu);
        job_free(j);
        return respond_error(c, q->ep, 503, "server_overloaded",
                             stopping ? "the server is shutting down"
                                      : "the queue is full (%d requests waiting); retry later",
                             srv.o.queue_max);
    }
    snprintf(j->id, sizeof j->id, "%s-%llx", j->ep == EP_CHAT ? "chatcmpl" : "cmpl", (unsigned long long)++srv.next_id);
    j->created = (long)time(NULL);
    j->t_enqueued = now_s();
    j->refs = 2;
    if (srv.tail) srv.tail->next = j;
    else srv.head = j;
    srv.tail = j;
    srv.depth++;
    pthread_cond_signal(&srv.work);
    pthread_mutex_unlock(&srv.mu);
    return answer_job(c, j);
}

static char *metrics_text(void)
{
    struct buf b = {0};
    long pages = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        long size;
        if (fscanf(f, "%ld %ld", &size, &pages) != 2) pages = 0;
        fclose(f);
    }
    pthread_mutex_lock(&srv.mu);
    buf_printf(&b, "# HELP genlab_requests_total HTTP requests answered, by endpoint and status.\n"
                   "# TYPE genlab_requests_total counter\n");
    for (int e = 0; e < EP_N; e++)
        for (int s = 100; s < 600; s++)
            if (srv.requests[e][s])
                buf_printf(&b, "genlab_requests_total{endpoint=\"%s\",status=\"%d\"} %llu\n", ep_path[e], s,
                           (unsigned long long)srv.requests[e][s]);
    buf_printf(&b, "# HELP genlab_errors_total Requests answered with a status >= 400.\n"
                   "# TYPE genlab_errors_total counter\ngenlab_errors_total %llu\n",
               (unsigned long long)srv.errors);
    buf_printf(&b, "# HELP genlab_cancelled_total Generations cancelled because the client went away.\n"
                   "# TYPE genlab_cancelled_total counter\ngenlab_cancelled_total %llu\n",
               (unsigned long long)srv.cancelled);
    buf_printf(&b, "# HELP genlab_request_duration_seconds Generation requests, queued to done.\n"
                   "# TYPE genlab_request_duration_seconds histogram\n");
    for (size_t i = 0; i < N_LE; i++)
        buf_printf(&b, "genlab_request_duration_seconds_bucket{le=\"%g\"} %llu\n", latency_le[i],
                   (unsigned long long)srv.latency_bucket[i]);
    buf_printf(&b,
               "genlab_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n"
               "genlab_request_duration_seconds_sum %.6f\ngenlab_request_duration_seconds_count %llu\n",
               (unsigned long long)srv.latency_count, srv.latency_sum, (unsigned long long)srv.latency_count);
    buf_printf(&b, "# HELP genlab_prompt_tokens_total Prompt tokens read.\n# TYPE genlab_prompt_tokens_total counter\n"
                   "genlab_prompt_tokens_total %llu\n",
               (unsigned long long)srv.prompt_tokens);
    buf_printf(&b, "# HELP genlab_tokens_generated_total Tokens generated.\n"
                   "# TYPE genlab_tokens_generated_total counter\ngenlab_tokens_generated_total %llu\n",
               (unsigned long long)srv.gen_tokens);
    buf_printf(&b, "# HELP genlab_generation_seconds_total Seconds spent generating.\n"
                   "# TYPE genlab_generation_seconds_total counter\ngenlab_generation_seconds_total %.6f\n",
               srv.gen_seconds);
    buf_printf(&b, "# HELP genlab_tokens_per_second Tokens generated per second of generation, so far.\n"
                   "# TYPE genlab_tokens_per_second gauge\ngenlab_tokens_per_second %.3f\n",
               srv.gen_seconds > 0 ? (double)srv.gen_tokens / srv.gen_seconds : 0.0);
    buf_printf(&b, "# HELP genlab_queue_depth Requests waiting for the model.\n"
                   "# TYPE genlab_queue_depth gauge\ngenlab_queue_depth %d\n"
                   "# HELP genlab_queue_limit Requests that may wait before 503.\n"
                   "# TYPE genlab_queue_limit gauge\ngenlab_queue_limit %d\n"
                   "# HELP genlab_requests_running Requests being generated now (0 or 1).\n"
                   "# TYPE genlab_requests_running gauge\ngenlab_requests_running %d\n",
               srv.depth, srv.o.queue_max, srv.busy ? 1 : 0);
    pthread_mutex_unlock(&srv.mu);
    buf_printf(&b, "# HELP genlab_resident_memory_bytes Resident set size of the server.\n"
                   "# TYPE genlab_resident_memory_bytes gauge\ngenlab_resident_memory_bytes %lld\n",
               (long long)pages * sysconf(_SC_PAGESIZE));
    return b.p ? b.p : strdup("");
}

static enum endpoint route(const char *url)
{
    for (int e = 0; e < EP_OTHER; e++)
        if (strcmp(url, ep_path[e]) == 0) return (enum endpoint)e;
    return EP_OTHER;
}

/* Compares without stopping at the first difference, so timing says
 * nothing about the key. */
static bool authorized(struct MHD_Connection *c)
{
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || strncmp(h, "Bearer ", 7) != 0) return false;
    h += 7;
    size_t n = strlen(h), k = strlen(srv.api_key);
    unsigned char diff = n != k;
    for (size_t i = 0; i < n; i++) diff |= (unsigned char)(h[i] ^ srv.api_key[i < k ? i : 0]);
    return diff == 0;
}

/* Checks that need no body: path, method, key, declared size. Returns
 * MHD_YES with *answered false when the request may go on. */
static enum MHD_Result early_checks(struct MHD_Connection *c, struct request *q, const char *method, bool *answered)
{
    *answered = true;
    if (q->ep == EP_OTHER) return respond_error(c, q->ep, 404, "not_found_error", "no such path");
    bool post = q->ep == EP_CHAT || q->ep == EP_COMPLETIONS;
    if (strcmp(method, post ? "POST" : "GET") != 0)
        return respond_error(c, q->ep, 405, "invalid_request_error", "%s needs %s, not %s", ep_path[q->ep],
                             post ? "POST" : "GET", method);
    if (srv.api_key && q->ep != EP_HEALTH && !authorized(c))
        return respond_error(c, q->ep, 401, "authentication_error",
                             "missing or wrong API key (send 'Authorization: Bearer KEY')");
    const char *len = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (len && strtoull(len, NULL, 10) > srv.o.max_body)
        return respond_error(c, q->ep, 413, "invalid_request_error", "the request body is larger than %zu bytes",
                             srv.o.max_body);
    *answered = false;
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
    (void)cls, (void)version;
    struct request *q = *con_cls;
    if (!q) {
        q = calloc(1, sizeof *q);
        if (!q) return MHD_NO;
        *con_cls = q;
        q->ep = route(url);
        enum MHD_Result r = early_checks(c, q, method, &q->answered);
        if (srv.o.verbose) fprintf(stderr, "genlab serve: %s %s\n", method, url);
        return r;
    }
    if (*upload_size) {
        if (!q->answered && !q->too_big) {
            if (q->body.n + *upload_size > srv.o.max_body) q->too_big = true;
            else if (!buf_add(&q->body, upload, *upload_size)) return MHD_NO;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (q->answered) return MHD_YES;
    q->answered = true;
    if (q->too_big)
        return respond_error(c, q->ep, 413, "invalid_request_error", "the request body is larger than %zu bytes",
                             srv.o.max_body);
    switch (q->ep) {
    case EP_HEALTH: return respond(c, q->ep, 200, "application/json", strdup("{\"status\":\"ok\"}"));
    case EP_METRICS: return respond(c, q->ep, 200, "text/plain; version=0.0.4", metrics_text());
    case EP_MODELS: {
        cJSON *r = cJSON_CreateObject(), *data = NULL, *m = cJSON_CreateObject();
        cJSON_AddStringToObject(r, "object", "list");
        data = cJSON_AddArrayToObject(r, "data");
        cJSON_AddItemToArray(data, m);
        cJSON_AddStringToObject(m, "id", srv.model_id);
        cJSON_AddStringToObject(m, "object", "model");
        cJSON_AddNumberToObject(m, "created", 0);
        cJSON_AddStringToObject(m, "owned_by", "genlab");
        return respond_json(c, q->ep, 200, r);
    }
    default: return start_job(c, q);
    }
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode code)
{
    (void)cls, (void)c, (void)code;
    struct request *q = *con_cls;
    if (!q) return;
    free(q->body.p);
    free(q);
    *con_cls = NULL;
}

/* ---- startup and shutdown --------------------------------------------- */

static int usage_error(const char *fmt, const char *arg)
{
    fputs("genlab serve: ", stderr);
    fprintf(stderr, fmt, arg);
    fputs(" (see genlab serve --help)\n", stderr);
    return 2;
}

static bool parse_int(const char *s, long long lo, long long hi, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

/* Returns -1 when the options are good, else the exit code. */
static int parse_args(int argc, char **argv, struct options *o)
{
    *o = (struct options){.host = "127.0.0.1", .port = 8080, .queue_max = 32, .max_connections = 128,
                          .max_tokens = 512, .max_body = 1 << 20};
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(usage, stdout);
            return 0;
        }
        if (strcmp(a, "--verbose") == 0) {
            o->verbose = true;
            continue;
        }
        static const char *const with_value[] = {"--model", "--tokenizer", "--template", "--name", "--host", "--port",
                                                 "--api-key-env", "--max-body", "--max-tokens", "--queue",
                                                 "--max-connections", NULL};
        int k = 0;
        while (with_value[k] && strcmp(a, with_value[k]) != 0) k++;
        if (!with_value[k]) return usage_error(a[0] == '-' ? "unknown flag '%s'" : "unexpected argument '%s'", a);
        if (i + 1 >= argc) return usage_error("%s needs a value", a);
        const char *v = argv[++i];
        long long n = 0;
        switch (k) {
        case 0: o->model = v; break;
        case 1: o->tokenizer = v; break;
        case 2: o->template_name = v; break;
        case 3: o->name = v; break;
        case 4: o->host = v; break;
        case 5:
            if (!parse_int(v, 0, 65535, &n)) return usage_error("--port must be an integer in 0..65535, got '%s'", v);
            o->port = (int)n;
            break;
        case 6: o->api_key_env = v; break;
        case 7:
            if (!parse_int(v, 1, 1LL << 32, &n))
                return usage_error("--max-body must be a positive byte count, got '%s'", v);
            o->max_body = (size_t)n;
            break;
        case 8:
            if (!parse_int(v, 1, 1 << 24, &n))
                return usage_error("--max-tokens must be a positive integer, got '%s'", v);
            o->max_tokens = n;
            break;
        case 9:
            if (!parse_int(v, 1, 1 << 20, &n)) return usage_error("--queue must be a positive integer, got '%s'", v);
            o->queue_max = (int)n;
            break;
        default:
            if (!parse_int(v, 1, 1 << 16, &n))
                return usage_error("--max-connections must be a positive integer, got '%s'", v);
            o->max_connections = (int)n;
            break;
        }
    }
    if (!o->model) return usage_error("%s", "--model PATH is required");
    unsigned char addr[sizeof(struct in6_addr)];
    if (inet_pton(strchr(o->host, ':') ? AF_INET6 : AF_INET, o->host, addr) != 1)
        return usage_error("--host must be a numeric IPv4 or IPv6 address, got '%s'", o->host);
    return -1;
}

/* Loads the model into a fresh Lua state: serve.load(path, opts). */
static bool load_model(const struct options *o)
{
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
            srv.server_ref = luaL_ref(L, LUA_REGISTRYINDEX);
            lua_settop(L, 0);
            srv.L = L;
            return true;
        }
    }
    char msg[512];
    error_line(L, msg, sizeof msg);
    fprintf(stderr, "genlab serve: %s\n", msg);
    lua_close(L);
    return false;
}

static void set_model_id(const struct options *o)
{
    const char *name = o->name;
    char tmp[256];
    if (!name) {
        snprintf(tmp, sizeof tmp, "%s", o->model);
        size_t n = strlen(tmp);
        while (n > 1 && tmp[n - 1] == '/') tmp[--n] = 0;
        char *slash = strrchr(tmp, '/');
        name = slash ? slash + 1 : tmp;
    }
    snprintf(srv.model_id, sizeof srv.model_id, "%s", name);
}

static struct MHD_Daemon *start_daemon(const struct options *o, char *url, size_t cap)
{
    struct sockaddr_in in4 = {.sin_family = AF_INET, .sin_port = htons((uint16_t)o->port)};
    struct sockaddr_in6 in6 = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)o->port)};
    bool v6 = strchr(o->host, ':') != NULL;
    if (v6 ? inet_pton(AF_INET6, o->host, &in6.sin6_addr) != 1 : inet_pton(AF_INET, o->host, &in4.sin_addr) != 1) {
        fprintf(stderr, "genlab serve: --host must be a numeric IPv4 or IPv6 address, got '%s'\n", o->host);
        return NULL;
    }
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL | MHD_USE_ITC |
                     (v6 ? MHD_USE_IPv6 : 0);
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, (uint16_t)o->port, NULL, NULL, on_request, NULL, MHD_OPTION_SOCK_ADDR,
        v6 ? (struct sockaddr *)&in6 : (struct sockaddr *)&in4, MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)o->max_connections, MHD_OPTION_CONNECTION_TIMEOUT, 60u,
        MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "genlab serve: cannot listen on %s port %d: %s\n", o->host, o->port,
                errno ? strerror(errno) : "libmicrohttpd failed to start");
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    snprintf(url, cap, v6 ? "http://[%s]:%u" : "http://%s:%u", o->host, info ? info->port : (unsigned)o->port);
    return d;
}

int gl_serve_main(int argc, char **argv)
{
    struct options o;
    int rc = parse_args(argc, argv, &o);
    if (rc >= 0) return rc;
    srv.o = o;
    if (o.api_key_env) {
        srv.api_key = getenv(o.api_key_env);
        if (!srv.api_key || !srv.api_key[0])
            return usage_error("--api-key-env: the environment variable %s is not set or empty", o.api_key_env);
    }
    set_model_id(&o);
    if (!load_model(&o)) return 1;

    /* Every thread started from here on leaves SIGINT and SIGTERM to sigwait. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);

    pthread_t worker;
    if (pthread_create(&worker, NULL, worker_main, NULL) != 0) {
        fputs("genlab serve: cannot start the worker thread\n", stderr);
        lua_close(srv.L);
        return 1;
    }
    char url[320];
    MHD_socket listening = MHD_INVALID_SOCKET;
    struct MHD_Daemon *d = start_daemon(&o, url, sizeof url);
    if (d) {
        printf("%s\n", url);
        fflush(stdout);
        fprintf(stderr, "genlab serve: model '%s' at %s/v1 (queue %d, max_tokens %lld%s)\n", srv.model_id, url,
                o.queue_max, (long long)o.max_tokens, srv.api_key ? ", API key required" : "");
        int sig;
        sigwait(&stop, &sig);
        fprintf(stderr, "genlab serve: %s, shutting down\n", sig == SIGINT ? "interrupted" : "terminated");
        listening = MHD_quiesce_daemon(d); /* no new connections from here on */
    }

    /* Fail what waits, cancel what runs, then let the threads end. */
    pthread_mutex_lock(&srv.mu);
    srv.stopping = true;
    for (struct job *j = srv.head, *next; j; j = next) {
        next = j->next;
        job_fail_locked(j, 503, "server_overloaded", "the server is shutting down");
        if (j->stream) buf_add(&j->out, "data: [DONE]\n\n", 14);
        j->done = true;
        job_unref_locked(j);
    }
    srv.head = srv.tail = NULL;
    srv.depth = 0;
    pthread_cond_broadcast(&srv.work);
    pthread_cond_broadcast(&srv.progress);
    pthread_mutex_unlock(&srv.mu);
    pthread_join(worker, NULL);
    if (d) MHD_stop_daemon(d);
    if (listening != MHD_INVALID_SOCKET) close(listening);
    lua_close(srv.L);
    return d ? 0 : 1;
}
