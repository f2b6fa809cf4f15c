/* genlab serve's private parts, shared by its files (serve.c's top comment
 * tells how they work together): serve.c (command line, startup, shutdown),
 * serve_http.c (libmicrohttpd: routing, checks, answers, streaming),
 * serve_openai.c (the OpenAI wire format: requests into jobs, jobs into
 * replies, stream chunks and errors), serve_jobs.c (the queue and the worker
 * that owns the Lua state) and serve_metrics.c (/metrics). Functions whose
 * names end in _locked are called with gl_srv.mu held. */
#ifndef GL_SERVE_SERVE_INTERNAL_H
#define GL_SERVE_SERVE_INTERNAL_H

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct gl_serve_options {
    const char *model, *tokenizer, *template_name, *name, *host, *api_key_env;
    int port, queue_max, max_connections;
    int64_t max_tokens;
    size_t max_body;
    bool verbose;
};

/* The one server, defined in serve.c; its fields are set before any thread
 * starts and read-only after. */
struct gl_serve_server {
    struct gl_serve_options o;
    char model_id[256];
    const char *api_key; /* never logged */
    pthread_mutex_t mu;  /* guards the jobs, the queue and the metrics */
};
extern struct gl_serve_server gl_srv;

/* The endpoints; GL_SERVE_EP_OTHER is any other path. */
enum gl_serve_ep {
    GL_SERVE_EP_CHAT,
    GL_SERVE_EP_COMPLETIONS,
    GL_SERVE_EP_MODELS,
    GL_SERVE_EP_HEALTH,
    GL_SERVE_EP_METRICS,
    GL_SERVE_EP_OTHER,
    GL_SERVE_EP_N
};
extern const char *const gl_serve_ep_path[GL_SERVE_EP_N]; /* serve_http.c */

/* A growing byte string, NUL-terminated once anything was added. */
struct gl_serve_buf {
    char *p;
    size_t n, cap;
};

static inline bool gl_serve_buf_add(struct gl_serve_buf *b, const char *s, size_t n)
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

#define GL_SERVE_MAX_STOP 4

/* One generation request, from the connection that made it to the worker
 * and back. */
struct gl_serve_job {
    int refs; /* the connection and the queue/worker; under mu */
    enum gl_serve_ep ep;
    bool stream, include_usage;
    cJSON *doc; /* the request; messages, prompt and stop point into it */
    const cJSON *messages;
    const char *prompt;
    const char *stop[GL_SERVE_MAX_STOP];
    int nstop;
    int64_t max_tokens, top_k, seed;
    double temperature, top_p;
    bool has_top_k, has_seed;
    char id[48];
    long created;
    double t_enqueued;
    /* written by the worker, read by the connection; under mu */
    pthread_cond_t changed;  /* signalled when it made output or ended: wakes its connection only */
    struct gl_serve_buf out; /* SSE bytes when streaming */
    size_t sent;
    bool began, done, cancelled;
    int err_status;
    char *err_msg, *text;
    const char *err_type;
    char finish[16];
    int64_t tokens_in, tokens_out;
    struct gl_serve_job *next;
};

/* serve_http.c: listens on gl_srv.o's host and port and writes the URL
 * clients use into url; false (said on stderr) when it cannot. quiesce stops
 * taking connections; stop ends the ones still open. */
bool gl_serve_http_start(char *url, size_t cap);
void gl_serve_http_quiesce(void);
void gl_serve_http_stop(void);

/* serve_openai.c */
/* Fills j from its request body j->doc, or writes why not into msg and
 * returns the status (400 or 404). */
int gl_serve_job_from_request(struct gl_serve_job *j, char *msg, size_t cap);
/* The whole answer of a job that is done, not streamed. */
cJSON *gl_serve_reply_locked(const struct gl_serve_job *j);
/* {"error": {"message": msg, "type": type}} */
cJSON *gl_serve_error_json(const char *type, const char *msg);
/* Streaming: one piece of generated text as a chunk (after the chunk naming
 * the role, the first time); the end of the stream (finish reason, usage if
 * asked, or the error when the stream had begun; then [DONE]). */
void gl_serve_sse_piece_locked(struct gl_serve_job *j, const char *piece);
void gl_serve_sse_end_locked(struct gl_serve_job *j);

/* serve_jobs.c */
/* Loads gl_srv.o's model into the worker's Lua state; false (said on
 * stderr) when it cannot. */
bool gl_serve_jobs_load(void);
/* Starts the worker thread; false (said on stderr) when it cannot. */
bool gl_serve_jobs_start(void);
/* Queues j (its connection and the queue then hold it), or returns false
 * when the server is stopping or the queue is full; *stopped says which. */
bool gl_serve_jobs_push(struct gl_serve_job *j, bool *stopped);
/* Fails what waits, cancels what runs, and joins the worker. */
void gl_serve_jobs_stop(void);
/* Closes the Lua state (after stop, or when the worker never started). */
void gl_serve_jobs_free(void);
/* A zeroed job (NULL when out of memory); gl_serve_job_free frees one no
 * queue holds; unref drops one of a queued job's references. */
struct gl_serve_job *gl_serve_job_new(void);
void gl_serve_job_free(struct gl_serve_job *j);
void gl_serve_job_unref_locked(struct gl_serve_job *j);
/* Requests waiting, and whether one is being generated. */
void gl_serve_jobs_gauges_locked(int *waiting, bool *running);

/* serve_metrics.c */
void gl_serve_metrics_request_locked(enum gl_serve_ep ep, int status);
void gl_serve_metrics_cancelled_locked(void);
void gl_serve_metrics_latency_locked(double seconds);
void gl_serve_metrics_generated_locked(int64_t tokens_in, int64_t tokens_out, double seconds);
/* The Prometheus text of /metrics (malloc'd); takes mu itself. */
char *gl_serve_metrics_text(void);

#endif
