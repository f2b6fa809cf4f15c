/* gl.http: HTTP requests from Lua, through io/http.h.
 *
 *   gl.http.request{method="GET", url=, headers={Name="value"}, body=string,
 *                   timeout=seconds, connect_timeout=seconds, on_data=function(chunk)}
 *     -> {status=, headers={lowercased name = value}, body=, aborted=bool}
 *   gl.http.sleep(seconds)   waits (Ctrl-C stops it), for retry backoff
 *
 * Timeouts default to none (connect: curl's 300 s). With on_data, a 2xx body
 * goes to on_data chunk by chunk (a chunk may end mid-line) and body is "";
 * on_data returning false stops the transfer (aborted = true). Bodies of other
 * statuses are always collected in body, so error responses can be read.
 * Failing to get a response raises one line naming the URL; so does an error
 * raised by on_data, as itself, once the transfer is torn down. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/interrupt.h"
#include "io/http.h"
#include "lua/binding.h"

#define STATE_META "genlab.http.state"

/* What a request holds while it runs; a userdata, so that an error raised
 * anywhere frees it through __gc. */
typedef struct {
    const char **headers; /* point into Lua strings anchored on the stack */
    gl_http_response res;
} request_state;

/* on_data's context: the stack slots of the function and of the saved error. */
typedef struct {
    lua_State *L;
    int fn_idx, err_idx;
    bool failed;
} stream_ctx;

static int state_gc(lua_State *L)
{
    request_state *st = luaL_checkudata(L, 1, STATE_META);
    free(st->headers);
    st->headers = NULL;
    gl_http_response_free(&st->res);
    return 0;
}

/* Runs inside lua_pcall: pushing the chunk may raise (memory), curl must not see that. */
static int call_on_data(lua_State *L)
{
    const char *data = lua_touserdata(L, 2);
    size_t n = (size_t)lua_tointeger(L, 3);
    lua_settop(L, 1);
    lua_pushlstring(L, data, n);
    lua_call(L, 1, 1);
    return 1;
}

static bool stream_chunk(void *ud, const char *data, size_t n)
{
    stream_ctx *ctx = ud;
    lua_State *L = ctx->L;
    lua_pushcfunction(L, call_on_data);
    lua_pushvalue(L, ctx->fn_idx);
    lua_pushlightuserdata(L, (void *)data);
    lua_pushinteger(L, (lua_Integer)n);
    if (lua_pcall(L, 3, 1, 0) != LUA_OK) {
        lua_replace(L, ctx->err_idx);
        ctx->failed = true;
        return false;
    }
    bool go_on = !(lua_isboolean(L, -1) && !lua_toboolean(L, -1));
    lua_pop(L, 1);
    return go_on;
}

static double opt_seconds(lua_State *L, int idx, const char *key)
{
    lua_getfield(L, idx, key);
    double s = 0;
    if (!lua_isnil(L, -1)) {
        if (!lua_isnumber(L, -1)) luaL_error(L, "http.request: %s must be a number of seconds", key);
        s = lua_tonumber(L, -1);
        if (!(s > 0 && s < 1e9)) luaL_error(L, "http.request: %s must be > 0 seconds", key);
    }
    lua_pop(L, 1);
    return s;
}

/* Field key of the options (slot 1) as a string, kept alive in stack slot `slot`. */
static const char *opt_string(lua_State *L, const char *key, const char *def, size_t *len, int slot)
{
    lua_getfield(L, 1, key);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        if (len) *len = def ? strlen(def) : 0;
        return def;
    }
    if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "http.request: %s must be a string", key);
    const char *s = lua_tolstring(L, -1, len);
    lua_replace(L, slot);
    return s;
}

static void push_response(lua_State *L, const gl_http_response *res)
{
    lua_createtable(L, 0, 4);
    lua_pushinteger(L, res->status);
    lua_setfield(L, -2, "status");
    lua_newtable(L);
    for (int64_t i = 0; i < res->n_headers; i++) {
        /* A repeated header is one value, comma-joined (RFC 9110, 5.3). */
        if (lua_getfield(L, -1, res->header_names[i]) == LUA_TSTRING) {
            lua_pushfstring(L, "%s, %s", lua_tostring(L, -1), res->header_values[i]);
            lua_remove(L, -2);
        } else {
            lua_pop(L, 1);
            lua_pushstring(L, res->header_values[i]);
        }
        lua_setfield(L, -2, res->header_names[i]);
    }
    lua_setfield(L, -2, "headers");
    lua_pushlstring(L, res->body, res->body_len);
    lua_setfield(L, -2, "body");
    lua_pushboolean(L, res->aborted);
    lua_setfield(L, -2, "aborted");
}

static int l_request(lua_State *L)
{
    static const char *const allowed[] = {"method", "url", "headers", "body", "timeout", "connect_timeout",
                                          "on_data", NULL};
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    gl_lua_check_options(L, 1, "http.request", allowed);
    /* Slots 2..6: method, url, body, headers (as "Name: value" strings), on_data; 7: on_data's error. */
    lua_settop(L, 7);
    gl_http_request req = {0};
    req.method = opt_string(L, "method", "GET", NULL, 2);
    req.url = opt_string(L, "url", NULL, NULL, 3);
    if (!req.url) return luaL_error(L, "http.request: url is required");
    req.body = opt_string(L, "body", NULL, &req.body_len, 4);
    req.timeout = opt_seconds(L, 1, "timeout");
    req.connect_timeout = opt_seconds(L, 1, "connect_timeout");

    lua_newtable(L);
    lua_replace(L, 5);
    if (lua_getfield(L, 1, "headers") != LUA_TNIL) {
        if (!lua_istable(L, -1)) return luaL_error(L, "http.request: headers must be a table {Name = \"value\"}");
        lua_pushnil(L);
        while (lua_next(L, -2)) {
            if (lua_type(L, -2) != LUA_TSTRING || !(lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER))
                return luaL_error(L, "http.request: headers must map names to string values");
            lua_pushfstring(L, "%s: %s", lua_tostring(L, -2), lua_tostring(L, -1));
            lua_rawseti(L, 5, (lua_Integer)++req.n_headers);
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    if (lua_getfield(L, 1, "on_data") != LUA_TNIL && !lua_isfunction(L, -1))
        return luaL_error(L, "http.request: on_data must be a function");
    lua_replace(L, 6);

    request_state *st = lua_newuserdatauv(L, sizeof *st, 0);
    memset(st, 0, sizeof *st);
    luaL_setmetatable(L, STATE_META);
    st->headers = req.n_headers ? malloc((size_t)req.n_headers * sizeof *st->headers) : NULL;
    if (req.n_headers && !st->headers) return luaL_error(L, "http.request: out of memory");
    for (int64_t i = 0; i < req.n_headers; i++) {
        lua_rawgeti(L, 5, (lua_Integer)i + 1);
        st->headers[i] = lua_tostring(L, -1); /* anchored in slot 5's table */
        lua_pop(L, 1);
    }
    req.headers = st->headers;

    stream_ctx ctx = {.L = L, .fn_idx = 6, .err_idx = 7};
    if (!lua_isnil(L, 6)) {
        req.on_data = stream_chunk;
        req.ud = &ctx;
    }
    luaL_checkstack(L, 8, "http.request"); /* stream_chunk must not need to grow the stack */
    gl_status rc = gl_http_perform(&req, &st->res);
    if (ctx.failed) {
        gl_http_response_free(&st->res);
        lua_pushvalue(L, 7);
        return lua_error(L);
    }
    gl_lua_check(L, rc);
    push_response(L, &st->res);
    gl_http_response_free(&st->res);
    return 1;
}

static int l_sleep(lua_State *L)
{
    double s = luaL_checknumber(L, 1);
    if (!(s >= 0 && s < 1e9)) return luaL_error(L, "http.sleep: seconds must be >= 0");
    struct timespec end, now;
    clock_gettime(CLOCK_MONOTONIC, &end);
    end.tv_sec += (time_t)s;
    end.tv_nsec += (long)((s - floor(s)) * 1e9);
    if (end.tv_nsec >= 1000000000L) end.tv_sec++, end.tv_nsec -= 1000000000L;
    for (;;) {
        if (gl_interrupt_poll("http.sleep")) return gl_lua_fail(L);
        clock_gettime(CLOCK_MONOTONIC, &now);
        double left = (double)(end.tv_sec - now.tv_sec) + (double)(end.tv_nsec - now.tv_nsec) * 1e-9;
        if (left <= 0) return 0;
        if (left > 0.05) left = 0.05; /* wake up to notice Ctrl-C */
        struct timespec step = {0, (long)(left * 1e9)};
        nanosleep(&step, NULL);
    }
}

void gl_lua_open_http(lua_State *L, int module_idx)
{
    module_idx = lua_absindex(L, module_idx);
    luaL_newmetatable(L, STATE_META);
    lua_pushcfunction(L, state_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    static const luaL_Reg funcs[] = {{"request", l_request}, {"sleep", l_sleep}, {NULL, NULL}};
    luaL_newlib(L, funcs);
    lua_setfield(L, module_idx, "http");
}
