/* genlab serve: the HTTP side, on libmicrohttpd with a thread per
 * connection. Routes a request, checks what needs no body (method, API key,
 * declared size), collects the body up to --max-body, answers the small
 * endpoints itself and hands generation requests to the queue, then waits
 * for the job and answers it as JSON or streams it as server-sent events.
 * Every answer is counted for /metrics; every error is OpenAI's JSON. */
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "serve/serve_internal.h"

const char *const gl_serve_ep_path[GL_SERVE_EP_N] = {"/v1/chat/completions", "/v1/completions", "/v1/models",
                                                     "/health", "/metrics", "other"};

/* What a connection knows of its request between libmicrohttpd's calls. */
struct request {
    enum gl_serve_ep ep;
    struct gl_serve_buf body;
    bool too_big, answered;
};

static struct MHD_Daemon *httpd;
static MHD_socket listening = MHD_INVALID_SOCKET; /* once quiesced: ours to close */

/* ---- answers ---------------------------------------------------------- */

/* Queues body (malloc'd; freed here) as the answer. */
static enum MHD_Result respond(struct MHD_Connection *c, enum gl_serve_ep ep, int status, const char *ctype,
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
    if (status == 405)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, ep <= GL_SERVE_EP_COMPLETIONS ? "POST" : "GET");
    if (status == 503) MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    pthread_mutex_lock(&gl_srv.mu);
    gl_serve_metrics_request_locked(ep, status);
    pthread_mutex_unlock(&gl_srv.mu);
    return ret;
}

static enum MHD_Result respond_json(struct MHD_Connection *c, enum gl_serve_ep ep, int status, cJSON *v)
{
    char *s = cJSON_PrintUnformatted(v);
    cJSON_Delete(v);
    if (!s) return MHD_NO;
    return respond(c, ep, status, "application/json", s);
}

static enum MHD_Result respond_error(struct MHD_Connection *c, enum gl_serve_ep ep, int status, const char *type,
                                     const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return respond_json(c, ep, status, gl_serve_error_json(type, msg));
}

/* ---- checks that need no body ----------------------------------------- */

static enum gl_serve_ep route(const char *url)
{
    for (int e = 0; e < GL_SERVE_EP_OTHER; e++)
        if (strcmp(url, gl_serve_ep_path[e]) == 0) return (enum gl_serve_ep)e;
    return GL_SERVE_EP_OTHER;
}

/* Compares without stopping at the first difference, so timing says
 * nothing about the key. */
static bool authorized(struct MHD_Connection *c)
{
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || strncmp(h, "Bearer ", 7) != 0) return false;
    h += 7;
    size_t n = strlen(h), k = strlen(gl_srv.api_key);
    unsigned char diff = n != k;
    for (size_t i = 0; i < n; i++) diff |= (unsigned char)(h[i] ^ gl_srv.api_key[i < k ? i : 0]);
    return diff == 0;
}

/* Path, method, key, declared size. Returns MHD_YES with *answered false
 * when the request may go on. */
static enum MHD_Result early_checks(struct MHD_Connection *c, struct request *q, const char *method, bool *answered)
{
    *answered = true;
    if (q->ep == GL_SERVE_EP_OTHER) return respond_error(c, q->ep, 404, "not_found_error", "no such path");
    bool post = q->ep == GL_SERVE_EP_CHAT || q->ep == GL_SERVE_EP_COMPLETIONS;
    if (strcmp(method, post ? "POST" : "GET") != 0)
        return respond_error(c, q->ep, 405, "invalid_request_error", "%s needs %s, not %s", gl_serve_ep_path[q->ep],
                             post ? "POST" : "GET", method);
    if (gl_srv.api_key && q->ep != GL_SERVE_EP_HEALTH && !authorized(c))
        return respond_error(c, q->ep, 401, "authentication_error",
                             "missing or wrong API key (send 'Authorization: Bearer KEY')");
    const char *len = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (len && strtoull(len, NULL, 10) > gl_srv.o.max_body)
        return respond_error(c, q->ep, 413, "invalid_request_error", "the request body is larger than %zu bytes",
                             gl_srv.o.max_body);
    *answered = false;
    return MHD_YES;
}

/* ---- generation requests ---------------------------------------------- */

static ssize_t stream_reader(void *cls, uint64_t pos, char *out, size_t max)
{
    (void)pos;
    struct gl_serve_job *j = cls;
    pthread_mutex_lock(&gl_srv.mu);
    while (j->sent == j->out.n && !j->done) pthread_cond_wait(&j->changed, &gl_srv.mu);
    ssize_t n = MHD_CONTENT_READER_END_OF_STREAM;
    if (j->sent < j->out.n) {
        size_t k = j->out.n - j->sent < max ? j->out.n - j->sent : max;
        memcpy(out, j->out.p + j->sent, k);
        j->sent += k;
        n = (ssize_t)k;
    }
    pthread_mutex_unlock(&gl_srv.mu);
    return n;
}

/* The stream is over: the client read it all, or went away mid-way. */
static void stream_done(void *cls)
{
    struct gl_serve_job *j = cls;
    pthread_mutex_lock(&gl_srv.mu);
    if (!j->done) j->cancelled = true;
    gl_serve_job_unref_locked(j);
    pthread_mutex_unlock(&gl_srv.mu);
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
static void wait_for_job_locked(struct MHD_Connection *c, struct gl_serve_job *j)
{
    while (!j->done && !(j->stream && j->began)) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 200 * 1000 * 1000;
        if (until.tv_nsec >= 1000000000L) until.tv_sec++, until.tv_nsec -= 1000000000L;
        if (pthread_cond_timedwait(&j->changed, &gl_srv.mu, &until) == ETIMEDOUT && !j->cancelled &&
            client_gone(c))
            j->cancelled = true;
    }
}

/* Answers a queued job; its connection's reference ends here, or with the
 * stream it starts. */
static enum MHD_Result answer_job(struct MHD_Connection *c, struct gl_serve_job *j)
{
    pthread_mutex_lock(&gl_srv.mu);
    wait_for_job_locked(c, j);
    if (j->err_msg && !j->began) {
        int status = j->err_status;
        enum gl_serve_ep ep = j->ep;
        cJSON *e = gl_serve_error_json(j->err_type, j->err_msg);
        gl_serve_job_unref_locked(j);
        pthread_mutex_unlock(&gl_srv.mu);
        return respond_json(c, ep, status, e);
    }
    if (j->stream) {
        pthread_mutex_unlock(&gl_srv.mu);
        struct MHD_Response *r =
            MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_reader, j, stream_done);
        if (!r) {
            pthread_mutex_lock(&gl_srv.mu);
            gl_serve_job_unref_locked(j);
            pthread_mutex_unlock(&gl_srv.mu);
            return MHD_NO;
        }
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
        MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
        enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, r);
        MHD_destroy_response(r);
        pthread_mutex_lock(&gl_srv.mu);
        gl_serve_metrics_request_locked(j->ep, 200);
        pthread_mutex_unlock(&gl_srv.mu);
        return ret;
    }
    cJSON *r = gl_serve_reply_locked(j);
    enum gl_serve_ep ep = j->ep;
    gl_serve_job_unref_locked(j);
    pthread_mutex_unlock(&gl_srv.mu);
    return respond_json(c, ep, 200, r);
}

static enum MHD_Result start_job(struct MHD_Connection *c, struct request *q)
{
    struct gl_serve_job *j = gl_serve_job_new();
    if (!j) return respond_error(c, q->ep, 500, "server_error", "out of memory");
    j->ep = q->ep;
    j->doc = cJSON_ParseWithLength(q->body.p ? q->body.p : "", q->body.n);
    if (!j->doc) {
        gl_serve_job_free(j);
        return respond_error(c, q->ep, 400, "invalid_request_error", "the request body is not valid JSON");
    }
    char msg[512];
    int status = gl_serve_job_from_request(j, msg, sizeof msg);
    if (status) {
        gl_serve_job_free(j);
        return respond_error(c, q->ep, status, status == 404 ? "not_found_error" : "invalid_request_error", "%s", msg);
    }
    bool stopping;
    if (!gl_serve_jobs_push(j, &stopping)) {
        gl_serve_job_free(j);
        return respond_error(c, q->ep, 503, "server_overloaded",
                             stopping ? "the server is shutting down"
                                      : "the queue is full (%d requests waiting); retry later",
                             gl_srv.o.queue_max);
    }
    return answer_job(c, j);
}

/* ---- libmicrohttpd ---------------------------------------------------- */

/* Called once with the headers, then with each piece of the body, then
 * once more with none: the time to answer. */
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
        if (gl_srv.o.verbose) fprintf(stderr, "genlab serve: %s %s\n", method, url);
        return r;
    }
    if (*upload_size) {
        if (!q->answered && !q->too_big) {
            if (q->body.n + *upload_size > gl_srv.o.max_body) q->too_big = true;
            else if (!gl_serve_buf_add(&q->body, upload, *upload_size)) return MHD_NO;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (q->answered) return MHD_YES;
    q->answered = true;
    if (q->too_big)
        return respond_error(c, q->ep, 413, "invalid_request_error", "the request body is larger than %zu bytes",
                             gl_srv.o.max_body);
    switch (q->ep) {
    case GL_SERVE_EP_HEALTH: return respond(c, q->ep, 200, "application/json", strdup("{\"status\":\"ok\"}"));
    case GL_SERVE_EP_METRICS: return respond(c, q->ep, 200, "text/plain; version=0.0.4", gl_serve_metrics_text());
    case GL_SERVE_EP_MODELS: {
        cJSON *r = cJSON_CreateObject(), *data = NULL, *m = cJSON_CreateObject();
        cJSON_AddStringToObject(r, "object", "list");
        data = cJSON_AddArrayToObject(r, "data");
        cJSON_AddItemToArray(data, m);
        cJSON_AddStringToObject(m, "id", gl_srv.model_id);
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

bool gl_serve_http_start(char *url, size_t cap)
{
    const struct gl_serve_options *o = &gl_srv.o;
    struct sockaddr_in in4 = {.sin_family = AF_INET, .sin_port = htons((uint16_t)o->port)};
    struct sockaddr_in6 in6 = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)o->port)};
    bool v6 = strchr(o->host, ':') != NULL;
    if (v6 ? inet_pton(AF_INET6, o->host, &in6.sin6_addr) != 1 : inet_pton(AF_INET, o->host, &in4.sin_addr) != 1) {
        fprintf(stderr, "genlab serve: --host must be a numeric IPv4 or IPv6 address, got '%s'\n", o->host);
        return false;
    }
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL | MHD_USE_ITC |
                     (v6 ? MHD_USE_IPv6 : 0);
    httpd = MHD_start_daemon(flags, (uint16_t)o->port, NULL, NULL, on_request, NULL, MHD_OPTION_SOCK_ADDR,
                               v6 ? (struct sockaddr *)&in6 : (struct sockaddr *)&in4, MHD_OPTION_NOTIFY_COMPLETED,
                               on_completed, NULL, MHD_OPTION_CONNECTION_LIMIT, (unsigned)o->max_connections,
                               MHD_OPTION_CONNECTION_TIMEOUT, 60u, MHD_OPTION_END);
    if (!httpd) {
        fprintf(stderr, "genlab serve: cannot listen on %s port %d: %s\n", o->host, o->port,
                errno ? strerror(errno) : "libmicrohttpd failed to start");
        return false;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(httpd, MHD_DAEMON_INFO_BIND_PORT);
    snprintf(url, cap, v6 ? "http://[%s]:%u" : "http://%s:%u", o->host, info ? info->port : (unsigned)o->port);
    return true;
}

void gl_serve_http_quiesce(void)
{
    if (httpd) listening = MHD_quiesce_daemon(httpd);
}

void gl_serve_http_stop(void)
{
    if (httpd) MHD_stop_daemon(httpd);
    if (listening != MHD_INVALID_SOCKET) close(listening);
    httpd = NULL;
    listening = MHD_INVALID_SOCKET;
}
