/* genlab serve: the counters behind GET /metrics, and their Prometheus text
 * (exposition format 0.0.4). The counters are under gl_srv.mu. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "serve/serve_internal.h"

static const double latency_le[] = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
#define N_LE (sizeof latency_le / sizeof latency_le[0])

static struct {
    uint64_t requests[GL_SERVE_EP_N][600]; /* by endpoint and HTTP status */
    uint64_t errors, cancelled, latency_bucket[N_LE], latency_count;
    double latency_sum, gen_seconds;
    uint64_t prompt_tokens, gen_tokens;
} metrics;

void gl_serve_metrics_request_locked(enum gl_serve_ep ep, int status)
{
    if (status >= 100 && status < 600) metrics.requests[ep][status]++;
    if (status >= 400) metrics.errors++;
}

void gl_serve_metrics_cancelled_locked(void) { metrics.cancelled++; }

/* One generation request, queued to done. */
void gl_serve_metrics_latency_locked(double seconds)
{
    for (size_t i = 0; i < N_LE; i++)
        if (seconds <= latency_le[i]) metrics.latency_bucket[i]++;
    metrics.latency_count++;
    metrics.latency_sum += seconds;
}

void gl_serve_metrics_generated_locked(int64_t tokens_in, int64_t tokens_out, double seconds)
{
    metrics.gen_seconds += seconds;
    metrics.prompt_tokens += (uint64_t)tokens_in;
    metrics.gen_tokens += (uint64_t)tokens_out;
}

static void buf_printf(struct gl_serve_buf *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0) gl_serve_buf_add(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* A metric's HELP and TYPE lines. */
static void metric_head(struct gl_serve_buf *b, const char *name, const char *type, const char *help)
{
    buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A metric of one whole value, with its HELP and TYPE lines. */
static void metric_count(struct gl_serve_buf *b, const char *name, const char *type, const char *help,
                         unsigned long long v)
{
    metric_head(b, name, type, help);
    buf_printf(b, "%s %llu\n", name, v);
}

/* A metric of one real value printed with `decimals` decimals. */
static void metric_real(struct gl_serve_buf *b, const char *name, const char *type, const char *help, int decimals,
                        double v)
{
    metric_head(b, name, type, help);
    buf_printf(b, "%s %.*f\n", name, decimals, v);
}

char *gl_serve_metrics_text(void)
{
    struct gl_serve_buf b = {0};
    long pages = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        long size;
        if (fscanf(f, "%ld %ld", &size, &pages) != 2) pages = 0;
        fclose(f);
    }
    pthread_mutex_lock(&gl_srv.mu);
    metric_head(&b, "genlab_requests_total", "counter", "HTTP requests answered, by endpoint and status.");
    for (int e = 0; e < GL_SERVE_EP_N; e++)
        for (int s = 100; s < 600; s++)
            if (metrics.requests[e][s])
                buf_printf(&b, "genlab_requests_total{endpoint=\"%s\",status=\"%d\"} %llu\n", gl_serve_ep_path[e], s,
                           (unsigned long long)metrics.requests[e][s]);
    metric_count(&b, "genlab_errors_total", "counter", "Requests answered with a status >= 400.", metrics.errors);
    metric_count(&b, "genlab_cancelled_total", "counter", "Generations cancelled because the client went away.",
                 metrics.cancelled);
    metric_head(&b, "genlab_request_duration_seconds", "histogram", "Generation requests, queued to done.");
    for (size_t i = 0; i < N_LE; i++)
        buf_printf(&b, "genlab_request_duration_seconds_bucket{le=\"%g\"} %llu\n", latency_le[i],
                   (unsigned long long)metrics.latency_bucket[i]);
    buf_printf(&b,
               "genlab_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n"
               "genlab_request_duration_seconds_sum %.6f\ngenlab_request_duration_seconds_count %llu\n",
               (unsigned long long)metrics.latency_count, metrics.latency_sum,
               (unsigned long long)metrics.latency_count);
    metric_count(&b, "genlab_prompt_tokens_total", "counter", "Prompt tokens read.", metrics.prompt_tokens);
    metric_count(&b, "genlab_tokens_generated_total", "counter", "Tokens generated.", metrics.gen_tokens);
    metric_real(&b, "genlab_generation_seconds_total", "counter", "Seconds spent generating.", 6, metrics.gen_seconds);
    metric_real(&b, "genlab_tokens_per_second", "gauge", "Tokens generated per second of generation, so far.", 3,
                metrics.gen_seconds > 0 ? (double)metrics.gen_tokens / metrics.gen_seconds : 0.0);
    int waiting;
    bool running;
    gl_serve_jobs_gauges_locked(&waiting, &running);
    metric_count(&b, "genlab_queue_depth", "gauge", "Requests waiting for the model.", (unsigned long long)waiting);
    metric_count(&b, "genlab_queue_limit", "gauge", "Requests that may wait before 503.",
                 (unsigned long long)gl_srv.o.queue_max);
    metric_count(&b, "genlab_requests_running", "gauge", "Requests being generated now (0 or 1).", running ? 1 : 0);
    pthread_mutex_unlock(&gl_srv.mu);
    metric_count(&b, "genlab_resident_memory_bytes", "gauge", "Resident set size of the server.",
                 (unsigned long long)pages * (unsigned long long)sysconf(_SC_PAGESIZE));
    return b.p ? b.p : strdup("");
}
