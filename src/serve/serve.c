/* genlab serve: OpenAI-compatible chat and text completions over HTTP.
 *
 * libmicrohttpd runs a thread per connection (serve_http.c). Those threads
 * parse and check requests (cJSON, serve_openai.c) and put generation jobs on
 * a bounded queue; ONE worker thread owns the Lua state that loaded the model
 * (lua/genlab/serve.lua) and runs the jobs one at a time, so no two requests
 * share KV state (serve_jobs.c). Tokens go from the worker into the job's
 * buffer; the connection thread waits on it (plain JSON) or streams it as
 * server-sent events. A client that goes away cancels its job; a slow reader
 * never holds the worker, whose output the buffer absorbs. One mutex,
 * gl_srv.mu, guards the jobs, the queue and the counters of /metrics
 * (serve_metrics.c). serve_internal.h declares what the files share;
 * serve_bench.c is `genlab bench serve`, a client of all this.
 *
 * This file: the command line, startup and shutdown. */
#include "serve/serve.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve/serve_internal.h"

struct gl_serve_server gl_srv = {.mu = PTHREAD_MUTEX_INITIALIZER};

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

/* ---- the command line -------------------------------------------------- */

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
static int parse_args(int argc, char **argv, struct gl_serve_options *o)
{
    *o = (struct gl_serve_options){.host = "127.0.0.1", .port = 8080, .queue_max = 32, .max_connections = 128,
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

/* The id clients name: --name, else the model's file name. */
static void set_model_id(const struct gl_serve_options *o)
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
    snprintf(gl_srv.model_id, sizeof gl_srv.model_id, "%s", name);
}

/* ---- startup and shutdown --------------------------------------------- */

int gl_serve_main(int argc, char **argv)
{
    struct gl_serve_options o;
    int rc = parse_args(argc, argv, &o);
    if (rc >= 0) return rc;
    gl_srv.o = o;
    if (o.api_key_env) {
        gl_srv.api_key = getenv(o.api_key_env);
        if (!gl_srv.api_key || !gl_srv.api_key[0])
            return usage_error("--api-key-env: the environment variable %s is not set or empty", o.api_key_env);
    }
    set_model_id(&o);
    if (!gl_serve_jobs_load()) return 1;

    /* Every thread started from here on leaves SIGINT and SIGTERM to sigwait. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (!gl_serve_jobs_start()) {
        gl_serve_jobs_free();
        return 1;
    }
    char url[320];
    bool listening = gl_serve_http_start(url, sizeof url);
    if (listening) {
        printf("%s\n", url);
        fflush(stdout);
        fprintf(stderr, "genlab serve: model '%s' at %s/v1 (queue %d, max_tokens %lld%s)\n", gl_srv.model_id, url,
                o.queue_max, (long long)o.max_tokens, gl_srv.api_key ? ", API key required" : "");
        int sig;
        sigwait(&stop, &sig);
        fprintf(stderr, "genlab serve: %s, shutting down\n", sig == SIGINT ? "interrupted" : "terminated");
        gl_serve_http_quiesce(); /* no new connections from here on */
    }

    /* Fail what waits, cancel what runs, then let the threads end. */
    gl_serve_jobs_stop();
    gl_serve_http_stop();
    gl_serve_jobs_free();
    return listening ? 0 : 1;
}
