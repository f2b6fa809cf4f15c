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
    buf_printf(&b, "# HELP genlab_requests_total HTTP requests answered, by endpoint and status.\n"
                   "# TYPE genlab_requests_total counter\n");
    for (int e = 0; e < GL_SERVE_EP_N; e++)
        for (int s = 100; s < 600; s++)
            if (metrics.requests[e][s])
                buf_printf(&b, "genlab_requests_total{endpoint=\"%s\",status=\"%d\"} %llu\n", gl_serve_ep_path[e], s,
                           (unsigned long long)metrics.requests[e][s]);
    buf_printf(&b, "# HELP genlab_errors_total Requests answered with a status >= 400.\n"
                   "# TYPE genlab_errors_total counter\ngenlab_errors_total %llu\n",
               (unsigned long long)metrics.errors);
    buf_printf(&b, "# HELP genlab_cancelled_total Generations cancelled because the client went away.\n"
                   "# TYPE genlab_cancelled_total counter\ngenlab_cancelled_total %llu\n",
               (unsigned long long)metrics.cancelled);
    buf_printf(&b, "# HELP genlab_request_duration_seconds Generation requests, queued to done.\n"
                   "# TYPE genlab_request_duration_seconds histogram\n");
    for (size_t i = 0; i < N_LE; i++)
        buf_printf(&b, "genlab_request_duration_seconds_bucket{le=\"%g\"} %llu\n", latency_le[i],
                   (unsigned long long)metrics.latency_bucket[i]);
    buf_printf(&b,
               "genlab_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n"
               "genlab_request_duration_seconds_sum %.6f\ngenlab_request_duration_seconds_count %llu\n",
               (unsigned long long)metrics.latency_count, metrics.latency_sum,
               (unsigned long long)metrics.latency_count);
    buf_printf(&b, "# HELP genlab_prompt_tokens_total Prompt tokens read.\n# TYPE genlab_prompt_tokens_total counter\n"
                   "genlab_prompt_tokens_total %llu\n",
               (unsigned long long)metrics.prompt_tokens);
    buf_printf(&b, "# HELP genlab_tokens_generated_total Tokens generated.\n"
                   "# TYPE genlab_tokens_generated_total counter\ngenlab_tokens_generated_total %llu\n",
               (unsigned long long)metrics.gen_tokens);
    buf_printf(&b, "# HELP genlab_generation_seconds_total Seconds spent generating.\n"
                   "# TYPE genlab_generation_seconds_total counter\ngenlab_generation_seconds_total %.6f\n",
               metrics.gen_seconds);
    buf_printf(&b, "# HELP genlab_tokens_per_second Tokens generated per second of generation, so far.\n"
                   "# TYPE genlab_tokens_per_second gauge\ngenlab_tokens_per_second %.3f\n",
               metrics.gen_seconds > 0 ? (double)metrics.gen_tokens / metrics.gen_seconds : 0.0);
    int waiting;
    bool running;
    gl_serve_jobs_gauges_locked(&waiting, &running);
    buf_printf(&b, "# HELP genlab_queue_depth Requests waiting for the model.\n"
                   "# TYPE genlab_queue_depth gauge\ngenlab_queue_depth %d\n"
                   "# HELP genlab_queue_limit Requests that may wait before 503.\n"
                   "# TYPE genlab_queue_limit gauge\ngenlab_queue_limit %d\n"
                   "# HELP genlab_requests_running Requests being generated now (0 or 1).\n"
                   "# TYPE genlab_requests_running gauge\ngenlab_requests_running %d\n",
               waiting, gl_srv.o.queue_max, running ? 1 : 0);
    pthread_mutex_unlock(&gl_srv.mu);
    buf_printf(&b, "# HELP genlab_resident_memory_bytes Resident set size of the server.\n"
                   "# TYPE genlab_resident_memory_bytes gauge\ngenlab_resident_memory_bytes %lld\n",
               (long long)pages * sysconf(_SC_PAGESIZE));
    return b.p ? b.p : strdup("");
}
