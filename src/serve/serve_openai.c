/* genlab serve: the OpenAI wire format. A request body is checked into a
 * job; a finished job becomes a chat.completion or text_completion, a
 * streamed one a series of `data: {chunk}` server-sent events ending with
 * `data: [DONE]`; errors are {"error": {message, type}}. */
#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve/serve_internal.h"

/* ---- requests --------------------------------------------------------- */

/* An integral JSON number in [lo, hi]. */
static bool json_int(const cJSON *v, double lo, double hi, int64_t *out)
{
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= lo && v->valuedouble <= hi)) return false;
    *out = (int64_t)v->valuedouble;
    return (double)*out == v->valuedouble;
}

int gl_serve_job_from_request(struct gl_serve_job *j, char *msg, size_t cap)
{
    const cJSON *doc = j->doc;
#define BAD(...) return snprintf(msg, cap, __VA_ARGS__), 400
    if (!cJSON_IsObject(doc)) BAD("the request body must be a JSON object");
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(doc, "model");
    if (v && !cJSON_IsNull(v)) {
        if (!cJSON_IsString(v)) BAD("'model' must be a string");
        if (strcmp(v->valuestring, gl_srv.model_id) != 0)
            return snprintf(msg, cap, "model '%.200s' does not exist (this server has '%s')", v->valuestring,
                            gl_srv.model_id),
                   404;
    }
    if (j->ep == GL_SERVE_EP_CHAT) {
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
    /* OpenAI's legacy completions default to 16 tokens; chat to the limit. */
    int64_t limit = gl_srv.o.max_tokens;
    j->max_tokens = j->ep == GL_SERVE_EP_COMPLETIONS && limit > 16 ? 16 : limit;
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
        if (cJSON_GetArraySize(v) > GL_SERVE_MAX_STOP) BAD("'stop' holds at most %d strings", GL_SERVE_MAX_STOP);
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

/* ---- replies ---------------------------------------------------------- */

/* The common part of every response object and stream chunk. */
static cJSON *reply_head(const struct gl_serve_job *j, bool chunk)
{
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "id", j->id);
    cJSON_AddStringToObject(r, "object", j->ep == GL_SERVE_EP_CHAT
                                             ? (chunk ? "chat.completion.chunk" : "chat.completion")
                                             : "text_completion");
    cJSON_AddNumberToObject(r, "created", (double)j->created);
    cJSON_AddStringToObject(r, "model", gl_srv.model_id);
    return r;
}

/* A choice: {index, message|delta|text, finish_reason}. */
static void add_choice(cJSON *r, const struct gl_serve_job *j, const char *text, const char *role,
                       const char *finish)
{
    cJSON *choices = cJSON_AddArrayToObject(r, "choices"), *c = cJSON_CreateObject();
    cJSON_AddItemToArray(choices, c);
    cJSON_AddNumberToObject(c, "index", 0);
    if (j->ep == GL_SERVE_EP_CHAT) {
        cJSON *m = cJSON_AddObjectToObject(c, j->stream ? "delta" : "message");
        if (role) cJSON_AddStringToObject(m, "role", role);
        if (text) cJSON_AddStringToObject(m, "content", text);
    } else {
        cJSON_AddStringToObject(c, "text", text ? text : "");
    }
    if (finish) cJSON_AddStringToObject(c, "finish_reason", finish);
    else cJSON_AddNullToObject(c, "finish_reason");
}

static void add_usage(cJSON *r, const struct gl_serve_job *j)
{
    cJSON *u = cJSON_AddObjectToObject(r, "usage");
    cJSON_AddNumberToObject(u, "prompt_tokens", (double)j->tokens_in);
    cJSON_AddNumberToObject(u, "completion_tokens", (double)j->tokens_out);
    cJSON_AddNumberToObject(u, "total_tokens", (double)(j->tokens_in + j->tokens_out));
}

cJSON *gl_serve_reply_locked(const struct gl_serve_job *j)
{
    cJSON *r = reply_head(j, false);
    add_choice(r, j, j->text, "assistant", j->finish);
    add_usage(r, j);
    return r;
}

cJSON *gl_serve_error_json(const char *type, const char *msg)
{
    cJSON *root = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(root, "error");
    cJSON_AddStringToObject(e, "message", msg);
    cJSON_AddStringToObject(e, "type", type);
    return root;
}

/* ---- streams ---------------------------------------------------------- */

/* Appends `data: <json>\n\n` to the job's stream. */
static void sse_add_locked(struct gl_serve_job *j, cJSON *v)
{
    char *s = cJSON_PrintUnformatted(v);
    cJSON_Delete(v);
    if (!s) return;
    gl_serve_buf_add(&j->out, "data: ", 6);
    gl_serve_buf_add(&j->out, s, strlen(s));
    gl_serve_buf_add(&j->out, "\n\n", 2);
    free(s);
}

/* A chat stream opens with a chunk that names the role. */
static void sse_begin_locked(struct gl_serve_job *j)
{
    if (j->began) return;
    j->began = true;
    if (j->ep == GL_SERVE_EP_CHAT) {
        cJSON *r = reply_head(j, true);
        add_choice(r, j, "", "assistant", NULL);
        sse_add_locked(j, r);
    }
}

void gl_serve_sse_piece_locked(struct gl_serve_job *j, const char *piece)
{
    sse_begin_locked(j);
    cJSON *r = reply_head(j, true);
    add_choice(r, j, piece, NULL, NULL);
    sse_add_locked(j, r);
}

void gl_serve_sse_end_locked(struct gl_serve_job *j)
{
    if (!j->err_msg) {
        sse_begin_locked(j);
        cJSON *r = reply_head(j, true);
        add_choice(r, j, j->ep == GL_SERVE_EP_CHAT ? NULL : "", NULL, j->finish);
        sse_add_locked(j, r);
        if (j->include_usage) {
            r = reply_head(j, true);
            cJSON_AddArrayToObject(r, "choices");
            add_usage(r, j);
            sse_add_locked(j, r);
        }
    } else if (j->began) {
        /* too late for an HTTP status: the error travels in the stream */
        sse_add_locked(j, gl_serve_error_json(j->err_type, j->err_msg));
    }
    gl_serve_buf_add(&j->out, "data: [DONE]\n\n", 14);
}
