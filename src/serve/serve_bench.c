/* genlab bench serve: `genlab serve` under load. A child server on a free
 * loopback port answers REQUESTS chat completions from CLIENTS concurrent
 * libcurl clients (keep-alive connections); the same generations run in this
 * process too, in turns with the load, and the difference is the server's
 * overhead, in wall time and in CPU time. */
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
    "overhead (wall and CPU time) over the same generations done in-process, in rounds that\n"
    "alternate with the load. Without --model it builds a small random char GPT (4 layers,\n"
    "128 wide) in a temporary folder.\n";

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

/* The CPU seconds (user and system, all threads) pid has used, or -1. */
static double cpu_s(pid_t pid)
{
    char path[64], line[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    bool got = fgets(line, sizeof line, f) != NULL;
    fclose(f);
    const char *p = got ? strrchr(line, ')') : NULL; /* the command name may hold spaces */
    unsigned long long user, sys;
    /* after the name: state and 10 more fields, then utime and stime */
    if (!p || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &user, &sys) != 2) return -1;
    return (double)(user + sys) / (double)sysconf(_SC_CLK_TCK);
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

/* `clients` keep-alive connections to the server, kept across rounds. */
struct clients {
    CURLM *m;
    struct slot *slots;
    int n;
    struct curl_slist *hdr;
    char url[512];
};

static bool clients_open(struct clients *c, const char *base, int n)
{
    snprintf(c->url, sizeof c->url, "%s/v1/chat/completions", base);
    c->hdr = curl_slist_append(NULL, "Content-Type: application/json");
    c->m = curl_multi_init();
    c->slots = calloc((size_t)n, sizeof *c->slots);
    c->n = n;
    bool ok = c->hdr && c->m && c->slots;
    for (int i = 0; ok && i < n; i++) {
        ok = (c->slots[i].easy = curl_easy_init()) != NULL;
        if (ok) curl_easy_setopt(c->slots[i].easy, CURLOPT_HTTPHEADER, c->hdr);
    }
    return ok;
}

static void clients_close(struct clients *c)
{
    for (int i = 0; c->slots && i < c->n; i++) {
        if (c->slots[i].easy) curl_easy_cleanup(c->slots[i].easy);
        free(c->slots[i].resp);
    }
    free(c->slots);
    if (c->m) curl_multi_cleanup(c->m);
    curl_slist_free_all(c->hdr);
}

/* Requests first..last (their numbers pick prompts and seeds) from all the
 * clients at once, into res. */
static void run_load(struct clients *c, int first, int last, int max_tokens, struct load_result *res)
{
    int next = first, done = 0, running = 0;
    double t0 = now_s();
    for (int i = 0; i < c->n && next <= last; i++) launch(c->m, &c->slots[i], c->url, next++, max_tokens);
    while (done < next - first) {
        curl_multi_perform(c->m, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(c->m, &left))) {
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
            curl_multi_remove_handle(c->m, s->easy);
            done++;
            if (next <= last) launch(c->m, s, c->url, next++, max_tokens);
        }
        if (done < next - first) curl_multi_poll(c->m, NULL, 0, 1000, NULL);
    }
    res->wall += now_s() - t0;
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

/* The in-process side: a Lua state holding serve.bench_local's runner for
 * the same model, and what its runs added up to. */
struct local_result {
    double s, cpu;
    int64_t tokens;
};

static lua_State *local_open(const char *model, int max_tokens)
{
    lua_State *L = gl_runtime_new();
    if (!L) return NULL;
    if (luaL_loadstring(L, "return require('genlab.serve').bench_local(...)") == LUA_OK) {
        lua_pushstring(L, model);
        lua_pushinteger(L, max_tokens);
        lua_pushstring(L, prompt_format);
        if (lua_pcall(L, 3, 1, 0) == LUA_OK) return L; /* the runner stays on the stack */
    }
    fprintf(stderr, "genlab bench serve: in-process run: %s\n", lua_tostring(L, -1));
    lua_close(L);
    return NULL;
}

/* Requests first..last in this process, as run_load sends them; false
 * (said on stderr) when they failed. */
static bool local_run(lua_State *L, int first, int last, struct local_result *res)
{
    lua_pushvalue(L, 1);
    lua_pushinteger(L, first);
    lua_pushinteger(L, last);
    if (lua_pcall(L, 2, 3, 0) != LUA_OK) {
        fprintf(stderr, "genlab bench serve: in-process run: %s\n", lua_tostring(L, -1));
        lua_settop(L, 1);
        return false;
    }
    res->s += lua_tonumber(L, -3);
    res->tokens += (int64_t)lua_tointeger(L, -2);
    res->cpu += lua_tonumber(L, -1);
    lua_settop(L, 1);
    return true;
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
    int rc = 1, status = 0;
    struct clients cl = {0};
    struct load_result res = {.latency = calloc((size_t)requests, sizeof(double))};
    struct local_result local = {0};
    lua_State *L = local_open(model, max_tokens);
    pid_t pid = L ? start_server(model, max_tokens, clients * 2, url, sizeof url) : -1;
    if (L && pid < 0)
        fprintf(stderr, "genlab bench serve: the server did not start (try genlab serve --model %s)\n", model);
    if (pid < 0) goto done;
    if (!res.latency || !clients_open(&cl, url, clients)) {
        fputs("genlab bench serve: cannot set up the clients (out of memory?)\n", stderr);
        goto done;
    }
    /* First-touch costs out of the figures, on both sides; this also opens
     * every connection. */
    struct load_result warm = {.latency = calloc((size_t)clients, sizeof(double))};
    if (warm.latency) run_load(&cl, 1, clients, max_tokens, &warm);
    free(warm.latency);
    struct local_result warm_local = {0};
    bool local_ok = local_run(L, 1, clients, &warm_local);
    long rss0 = rss_kb(pid);
    double gen0 = metric(url, "genlab_generation_seconds_total"), cpu0 = cpu_s(pid);
    /* The load and the in-process run take turns in rounds, so a shared
     * machine's changing load falls on both alike; the server idles while
     * this process generates. */
    int rounds = requests / (3 * clients) < 1 ? 1 : requests / (3 * clients) > 8 ? 8 : requests / (3 * clients);
    for (int r = 0; r < rounds && local_ok; r++) {
        int first = 1 + (int)((int64_t)requests * r / rounds), last = (int)((int64_t)requests * (r + 1) / rounds);
        run_load(&cl, first, last, max_tokens, &res);
        local_ok = local_run(L, first, last, &local);
    }
    double cpu = cpu_s(pid) - cpu0;
    double gen = metric(url, "genlab_generation_seconds_total") - gen0;
    long rss1 = rss_kb(pid);
    kill(pid, SIGTERM);
    waitpid(pid, &status, 0);
    pid = -1;

    qsort(res.latency, (size_t)res.ok, sizeof(double), cmp_double);
    double p50 = res.ok ? res.latency[(res.ok - 1) / 2] : 0, p99 = res.ok ? res.latency[(res.ok * 99 - 1) / 100] : 0;
    printf("genlab bench serve: %s, %d clients, %d requests of %d tokens (GENLAB_THREADS=%s)\n",
           made ? "small random char GPT (4x128)" : model, clients, requests, max_tokens,
           getenv("GENLAB_THREADS") ? getenv("GENLAB_THREADS") : "default");
    printf("  requests    %d ok, %d failed (in %d rounds, each followed by its in-process run)\n", res.ok, res.failed,
           rounds);
    printf("  latency     p50 %.1f ms, p99 %.1f ms (queueing included)\n", p50 * 1e3, p99 * 1e3);
    printf("  served      %.1f tokens/s (%lld tokens in %.3f s)\n", res.tokens / res.wall, (long long)res.tokens,
           res.wall);
    printf("  in-process  %.1f tokens/s (%lld tokens in %.3f s)\n", local.s > 0 ? local.tokens / local.s : 0.0,
           (long long)local.tokens, local.s);
    printf("  overhead    %.1f%% of the server's time over the in-process run (goal < 10%%)\n",
           res.wall > 0 ? 100 * (res.wall - local.s) / res.wall : 0.0);
    /* Measured during the load itself, so a busy machine affects both sides alike. */
    printf("  model busy  %.1f%% of the server's time (generation %.3f s of %.3f s; the rest is each request's\n"
           "              set-up (template, tokenizer, session), hand-offs and waiting for clients)\n",
           res.wall > 0 ? 100 * gen / res.wall : 0.0, gen, res.wall);
    /* CPU time leaves out the time others' processes take from a shared
     * machine; the server's includes its HTTP threads. */
    printf("  CPU         server %.2f s during the load, in-process %.2f s: overhead %.1f%% of the server's CPU\n",
           cpu0 >= 0 ? cpu : 0.0, local.cpu, cpu0 >= 0 && cpu > 0 ? 100 * (cpu - local.cpu) / cpu : 0.0);
    printf("  server RSS  %.1f MB before, %.1f MB after (%+.1f MB)\n", rss0 / 1024.0, rss1 / 1024.0,
           (rss1 - rss0) / 1024.0);
    printf("  shutdown    %s\n",
           WIFEXITED(status) && WEXITSTATUS(status) == 0 ? "clean (exit 0 on SIGTERM)" : "NOT clean");
    rc = res.failed == 0 && local_ok && local.s > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
done:
    if (pid > 0) {
        kill(pid, SIGTERM);
        waitpid(pid, NULL, 0);
    }
    clients_close(&cl);
    free(res.latency);
    if (L) lua_close(L);
    curl_global_cleanup();
    if (made) {
        unlink(path);
        rmdir(dir);
    }
    return rc;
}
