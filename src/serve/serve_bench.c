/* genlab bench serve: `genlab serve` under load. A child server on a free
 * loopback port answers REQUESTS chat completions from CLIENTS concurrent
 * libcurl clients (keep-alive connections); then the same generations run in
 * this process, and the difference is the server's overhead. */
#include "serve/serve.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <lua.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lua/runtime.h"

static const char usage[] =
    "usage: genlab bench serve [--model PATH] [--clients N] [--requests N] [--max-tokens N]\n"
    "Starts `genlab serve` on a free loopback port, sends REQUESTS (200) chat completions from\n"
    "CLIENTS (8) concurrent clients, each asking MAX_TOKENS (32) tokens, and reports p50/p99\n"
    "latency, tokens/s, failures, the server's resident memory before and after, and its\n"
    "overhead over the same generations done in-process. Without --model it builds a small\n"
    "random char GPT (4 layers, 128 wide) in a temporary folder.\n";

/* Each user message; the in-process run formats the same ones. */
static const char prompt_format[] = "Request %d: tell me a short story about the sea.";

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static long rss_kb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kb = -1;
    if (!f) return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1) break;
    fclose(f);
    return kb;
}

/* Starts `genlab serve` and reads its URL (first stdout line). */
static pid_t start_server(const char *model, int max_tokens, int queue, char *url, size_t cap)
{
    int fds[2];
    if (pipe(fds) != 0) return -1;
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        char mt[32], q[32];
        snprintf(mt, sizeof mt, "%d", max_tokens);
        snprintf(q, sizeof q, "%d", queue);
        dup2(fds[1], STDOUT_FILENO);
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0) dup2(null, STDERR_FILENO), close(null);
        close(fds[0]);
        close(fds[1]);
        execl("/proc/self/exe", "genlab", "serve", "--model", model, "--port", "0", "--max-tokens", mt, "--queue", q,
              "--name", "bench", (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    size_t n = 0;
    struct pollfd p = {.fd = fds[0], .events = POLLIN};
    while (n + 1 < cap && poll(&p, 1, 120000) == 1) {
        ssize_t k = read(fds[0], url + n, 1);
        if (k <= 0 || url[n] == '\n') break;
        n++;
    }
    url[n] = 0;
    close(fds[0]);
    if (strncmp(url, "http://", 7) != 0) {
        kill(pid, SIGTERM);
        waitpid(pid, NULL, 0);
        return -1;
    }
    return pid;
}

struct slot {
    CURL *easy;
    char *resp;
    size_t n;
    char body[512];
    double t0;
};

static size_t on_data(char *p, size_t size, size_t n, void *ud)
{
    struct slot *s = ud;
    char *r = realloc(s->resp, s->n + size * n + 1);
    if (!r) return 0;
    memcpy(r + s->n, p, size * n);
    s->resp = r;
    s->n += size * n;
    r[s->n] = 0;
    return size * n;
}

static void launch(CURLM *m, struct slot *s, const char *url, int i, int max_tokens)
{
    char content[256];
    snprintf(content, sizeof content, prompt_format, i);
    snprintf(s->body, sizeof s->body,
             "{\"model\":\"bench\",\"messages\":[{\"role\":\"user\",\"content\":\"%s\"}],"
             "\"max_tokens\":%d,\"temperature\":1,\"seed\":%d}",
             content, max_tokens, i);
    s->n = 0;
    curl_easy_setopt(s->easy, CURLOPT_URL, url);
    curl_easy_setopt(s->easy, CURLOPT_POSTFIELDS, s->body);
    curl_easy_setopt(s->easy, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(s->easy, CURLOPT_WRITEDATA, s);
    curl_easy_setopt(s->easy, CURLOPT_TIMEOUT, 300L);
    curl_easy_setopt(s->easy, CURLOPT_PRIVATE, s);
    s->t0 = now_s();
    curl_multi_add_handle(m, s->easy);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

struct load_result {
    int ok, failed;
    int64_t tokens;
    double wall, *latency; /* latency[ok] */
};

/* The load: requests from `clients` concurrent keep-alive clients. */
static void run_load(const char *base, int clients, int requests, int max_tokens, struct load_result *res)
{
    char url[512];
    snprintf(url, sizeof url, "%s/v1/chat/completions", base);
    struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
    CURLM *m = curl_multi_init();
    struct slot *slots = calloc((size_t)clients, sizeof *slots);
    int next = 0, running = 0;
    double t0 = now_s();
    for (int c = 0; c < clients && next < requests; c++) {
        slots[c].easy = curl_easy_init();
        curl_easy_setopt(slots[c].easy, CURLOPT_HTTPHEADER, hdr);
        launch(m, &slots[c], url, ++next, max_tokens);
    }
    do {
        curl_multi_perform(m, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(m, &left))) {
            if (msg->msg != CURLMSG_DONE) continue;
            struct slot *s;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&s);
            long code = 0;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &code);
            cJSON *doc = msg->data.result == CURLE_OK && code == 200 ? cJSON_ParseWithLength(s->resp, s->n) : NULL;
            const cJSON *usage = cJSON_GetObjectItemCaseSensitive(doc, "usage");
            const cJSON *tok = cJSON_GetObjectItemCaseSensitive(usage, "completion_tokens");
            if (cJSON_IsNumber(tok)) {
                res->latency[res->ok++] = now_s() - s->t0;
                res->tokens += (int64_t)tok->valuedouble;
            } else {
                if (res->failed++ < 3)
                    fprintf(stderr, "genlab bench serve: request failed (%s, HTTP %ld): %.200s\n",
                            curl_easy_strerror(msg->data.result), code, s->resp ? s->resp : "");
            }
            cJSON_Delete(doc);
            curl_multi_remove_handle(m, s->easy);
            if (next < requests) launch(m, s, url, ++next, max_tokens);
        }
        if (running || next < requests) curl_multi_poll(m, NULL, 0, 1000, NULL);
    } while (running || res->ok + res->failed < next);
    res->wall = now_s() - t0;
    for (int c = 0; c < clients; c++) {
        if (slots[c].easy) curl_easy_cleanup(slots[c].easy);
        free(slots[c].resp);
    }
    free(slots);
    curl_multi_cleanup(m);
    curl_slist_free_all(hdr);
}

/* A value from the server's /metrics, or -1. */
static double metric(const char *base, const char *name)
{
    char url[512];
    snprintf(url, sizeof url, "%s/metrics", base);
    struct slot s = {.easy = curl_easy_init()};
    double v = -1;
    if (!s.easy) return v;
    curl_easy_setopt(s.easy, CURLOPT_URL, url);
    curl_easy_setopt(s.easy, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(s.easy, CURLOPT_WRITEDATA, &s);
    curl_easy_setopt(s.easy, CURLOPT_TIMEOUT, 10L);
    if (curl_easy_perform(s.easy) == CURLE_OK && s.resp) {
        size_t n = strlen(name);
        for (const char *p = s.resp; p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
            if (strncmp(p, name, n) == 0 && p[n] == ' ') v = strtod(p + n + 1, NULL);
    }
    free(s.resp);
    curl_easy_cleanup(s.easy);
    return v;
}

static bool arg_int(const char *flag, const char *v, int lo, int hi, int *out)
{
    char *end;
    long x = strtol(v, &end, 10);
    if (end == v || *end || x < lo || x > hi) {
        fprintf(stderr, "genlab bench serve: %s must be an integer in %d..%d, got '%s'\n", flag, lo, hi, v);
        return false;
    }
    *out = (int)x;
    return true;
}

int gl_serve_bench_main(int argc, char **argv)
{
    const char *model = NULL;
    int clients = 8, requests = 200, max_tokens = 32;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(usage, stdout);
            return 0;
        }
        bool known = !strcmp(a, "--model") || !strcmp(a, "--clients") || !strcmp(a, "--requests") ||
                     !strcmp(a, "--max-tokens");
        if (!known) {
            fprintf(stderr, "genlab bench serve: unknown flag '%s' (see --help)\n", a);
            return 2;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "genlab bench serve: %s needs a value\n", a);
            return 2;
        }
        const char *v = argv[++i];
        if (!strcmp(a, "--model")) model = v;
        else if (!strcmp(a, "--clients") ? !arg_int(a, v, 1, 256, &clients)
                 : !strcmp(a, "--requests") ? !arg_int(a, v, 1, 1000000, &requests)
                                            : !arg_int(a, v, 1, 4096, &max_tokens))
            return 2;
    }

    char dir[] = "/tmp/genlab-bench-serve-XXXXXX", path[128];
    bool made = false;
    if (!model) {
        if (!mkdtemp(dir)) {
            fprintf(stderr, "genlab bench serve: cannot make a temporary folder: %s\n", strerror(errno));
            return 1;
        }
        snprintf(path, sizeof path, "%s/small.safetensors", dir);
        const char *code =
            "require('genlab.serve').tiny_model(..., {n_layer = 4, n_head = 4, n_embd = 128, block = 128})";
        lua_State *L = gl_runtime_new();
        bool ok = L && luaL_loadstring(L, code) == LUA_OK && (lua_pushstring(L, path), lua_pcall(L, 1, 0, 0)) == LUA_OK;
        if (L && !ok) fprintf(stderr, "genlab bench serve: %s\n", lua_tostring(L, -1));
        if (L) lua_close(L);
        if (!ok) return 1;
        model = path, made = true;
    }

    curl_global_init(CURL_GLOBAL_DEFAULT);
    char url[256];
    int rc = 1;
    pid_t pid = start_server(model, max_tokens, clients * 2, url, sizeof url);
    if (pid < 0) {
        fprintf(stderr, "genlab bench serve: the server did not start (try genlab serve --model %s)\n", model);
        goto done;
    }
    struct load_result warm = {.latency = calloc(8, sizeof(double))};
    run_load(url, 1, 4, max_tokens, &warm); /* first-touch costs out of the figures */
    free(warm.latency);
    long rss0 = rss_kb(pid);
    double gen0 = metric(url, "genlab_generation_seconds_total");
    struct load_result res = {.latency = calloc((size_t)requests, sizeof(double))};
    run_load(url, clients, requests, max_tokens, &res);
    double gen = metric(url, "genlab_generation_seconds_total") - gen0;
    long rss1 = rss_kb(pid);
    kill(pid, SIGTERM);
    int status = 0;
    waitpid(pid, &status, 0);

    lua_State *L = gl_runtime_new();
    double local_s = 0;
    long long local_tokens = 0;
    if (L && luaL_loadstring(L, "return require('genlab.serve').bench_local(...)") == LUA_OK) {
        lua_pushstring(L, model);
        lua_pushinteger(L, requests);
        lua_pushinteger(L, max_tokens);
        lua_pushstring(L, prompt_format);
        if (lua_pcall(L, 4, 2, 0) == LUA_OK) {
            local_s = lua_tonumber(L, -2);
            local_tokens = (long long)lua_tointeger(L, -1);
        } else {
            fprintf(stderr, "genlab bench serve: in-process run: %s\n", lua_tostring(L, -1));
        }
    }
    if (L) lua_close(L);

    qsort(res.latency, (size_t)res.ok, sizeof(double), cmp_double);
    double p50 = res.ok ? res.latency[(res.ok - 1) / 2] : 0, p99 = res.ok ? res.latency[(res.ok * 99 - 1) / 100] : 0;
    printf("genlab bench serve: %s, %d clients, %d requests of %d tokens (GENLAB_THREADS=%s)\n",
           made ? "small random char GPT (4x128)" : model, clients, requests, max_tokens,
           getenv("GENLAB_THREADS") ? getenv("GENLAB_THREADS") : "default");
    printf("  requests    %d ok, %d failed\n", res.ok, res.failed);
    printf("  latency     p50 %.1f ms, p99 %.1f ms (queueing included)\n", p50 * 1e3, p99 * 1e3);
    printf("  served      %.1f tokens/s (%lld tokens in %.3f s)\n", res.tokens / res.wall, (long long)res.tokens,
           res.wall);
    printf("  in-process  %.1f tokens/s (%lld tokens in %.3f s)\n", local_s > 0 ? local_tokens / local_s : 0.0,
           local_tokens, local_s);
    printf("  overhead    %.1f%% of the server's time over the in-process run (goal < 10%%)\n",
           res.wall > 0 ? 100 * (res.wall - local_s) / res.wall : 0.0);
    /* Measured during the load itself, so a busy machine affects both sides alike. */
    printf("  model busy  %.1f%% of the server's time (generation %.3f s of %.3f s; the rest is HTTP, JSON,\n"
           "              templates and waiting for clients)\n",
           res.wall > 0 ? 100 * gen / res.wall : 0.0, gen, res.wall);
    printf("  server RSS  %.1f MB before, %.1f MB after (%+.1f MB)\n", rss0 / 1024.0, rss1 / 1024.0,
           (rss1 - rss0) / 1024.0);
    printf("  shutdown    %s\n",
           WIFEXITED(status) && WEXITSTATUS(status) == 0 ? "clean (exit 0 on SIGTERM)" : "NOT clean");
    rc = res.failed == 0 && local_s > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
    free(res.latency);
done:
    curl_global_cleanup();
    if (made) {
        unlink(path);
        rmdir(dir);
    }
    return rc;
}
