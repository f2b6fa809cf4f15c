#include "io/http.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "core/interrupt.h"

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static CURLcode init_result;

static void init_curl(void) { init_result = curl_global_init(CURL_GLOBAL_DEFAULT); }

/* What the callbacks see during one transfer. */
typedef struct {
    const gl_http_request *req;
    gl_http_response *res;
    CURL *curl;
    size_t body_cap, names_cap;
    bool nomem, interrupted;
} transfer;

/* The URL as error messages show it: no "user:password@", no query or fragment
 * (either may hold a secret). Writes at most n bytes into out. */
static void display_url(char *out, size_t n, const char *url)
{
    const char *auth = strstr(url, "://");
    auth = auth ? auth + 3 : url;
    size_t auth_len = strcspn(auth, "/?#");
    const char *at = memchr(auth, '@', auth_len);
    size_t prefix = (size_t)(auth - url), skip = at ? (size_t)(at + 1 - auth) : 0;
    const char *rest = auth + skip;
    size_t rest_len = strcspn(rest, "?#");
    snprintf(out, n, "%.*s%.*s%s", (int)prefix, url, (int)rest_len, rest, rest[rest_len] ? "?..." : "");
}

static bool has_scheme(const char *url, const char *scheme)
{
    size_t n = strlen(scheme);
    return strncasecmp(url, scheme, n) == 0;
}

static void clear_headers(gl_http_response *res)
{
    for (int64_t i = 0; i < res->n_headers; i++) {
        free(res->header_names[i]);
        free(res->header_values[i]);
    }
    res->n_headers = 0;
}

static bool append_body(transfer *tr, const char *data, size_t n)
{
    gl_http_response *res = tr->res;
    size_t need = res->body_len + n + 1;
    if (need < n) return false;
    if (need > tr->body_cap) {
        size_t cap = tr->body_cap ? tr->body_cap : 4096;
        while (cap < need) {
            if (cap > SIZE_MAX / 2) return false;
            cap *= 2;
        }
        char *body = realloc(res->body, cap);
        if (!body) return false;
        res->body = body;
        tr->body_cap = cap;
    }
    memcpy(res->body + res->body_len, data, n);
    res->body_len += n;
    res->body[res->body_len] = '\0';
    return true;
}

static size_t on_header(char *data, size_t size, size_t nitems, void *ud)
{
    transfer *tr = ud;
    gl_http_response *res = tr->res;
    size_t n = size * nitems;
    /* Each response (an interim 100 Continue too) starts with its status line. */
    if (n >= 5 && memcmp(data, "HTTP/", 5) == 0) {
        clear_headers(res);
        return n;
    }
    const char *colon = memchr(data, ':', n);
    if (!colon || colon == data || data[0] == ' ' || data[0] == '\t') return n; /* blank or folded line */
    size_t name_len = (size_t)(colon - data);
    const char *v = colon + 1, *end = data + n;
    while (v < end && (*v == ' ' || *v == '\t')) v++;
    while (end > v && isspace((unsigned char)end[-1])) end--;
    if ((size_t)res->n_headers == tr->names_cap) {
        size_t cap = tr->names_cap ? tr->names_cap * 2 : 16;
        char **names = realloc(res->header_names, cap * sizeof *names);
        if (names) res->header_names = names;
        char **values = names ? realloc(res->header_values, cap * sizeof *values) : NULL;
        if (!values) {
            tr->nomem = true;
            return 0;
        }
        res->header_values = values;
        tr->names_cap = cap;
    }
    char *name = strndup(data, name_len), *value = strndup(v, (size_t)(end - v));
    if (!name || !value) {
        free(name);
        free(value);
        tr->nomem = true;
        return 0;
    }
    for (char *c = name; *c; c++) *c = (char)tolower((unsigned char)*c);
    res->header_names[res->n_headers] = name;
    res->header_values[res->n_headers] = value;
    res->n_headers++;
    return n;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *ud)
{
    transfer *tr = ud;
    size_t n = size * nmemb;
    long status = 0;
    curl_easy_getinfo(tr->curl, CURLINFO_RESPONSE_CODE, &status);
    if (tr->req->on_data && status >= 200 && status < 300) {
        if (tr->req->on_data(tr->req->ud, data, n)) return n;
        tr->res->aborted = true;
        return 0;
    }
    if (!append_body(tr, data, n)) {
        tr->nomem = true;
        return 0;
    }
    return n;
}

/* Called about once a second while idle, and as data moves: Ctrl-C stops the transfer. */
static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    transfer *tr = ud;
    if (!gl_interrupt_pending()) return 0;
    gl_interrupt_clear();
    tr->interrupted = true;
    return 1;
}

static bool valid_seconds(double s) { return isfinite(s) && s >= 0 && s < 1e9; }

static long to_ms(double s) { return s > 0 ? (long)ceil(s * 1000) : 0; }

static gl_status check_request(const gl_http_request *req, const char *shown)
{
    const char *m = req->method ? req->method : "";
    if (strcmp(m, "GET") && strcmp(m, "POST") && strcmp(m, "PUT") && strcmp(m, "DELETE"))
        return gl_error(GL_EINVAL, "http: method '%s' is not one of GET, POST, PUT, DELETE", m);
    if (!has_scheme(req->url, "http://") && !has_scheme(req->url, "https://"))
        return gl_error(GL_EINVAL, "http: %s %s: only http:// and https:// URLs are supported", m, shown);
    if (req->body && !strcmp(m, "GET")) return gl_error(GL_EINVAL, "http: GET %s: a GET request has no body", shown);
    if (!valid_seconds(req->timeout) || !valid_seconds(req->connect_timeout))
        return gl_error(GL_EINVAL, "http: %s %s: timeouts must be seconds >= 0", m, shown);
    for (int64_t i = 0; i < req->n_headers; i++) {
        const char *h = req->headers[i];
        const char *colon = strchr(h, ':');
        if (strpbrk(h, "\r\n") || !colon || colon == h)
            return gl_error(GL_EINVAL, "http: %s %s: header %lld is not one 'Name: value' line", m, shown,
                            (long long)i + 1);
    }
    return GL_OK;
}

static bool add_header(struct curl_slist **list, const char *line)
{
    struct curl_slist *l = curl_slist_append(*list, line);
    if (l) *list = l;
    return l != NULL;
}

/* The reason a transfer failed, for "http: METHOD URL: reason". */
static void failure_reason(char *out, size_t n, CURL *curl, CURLcode rc, const char *errbuf,
                           const gl_http_request *req)
{
    long os_errno = 0;
    curl_off_t connected = 0;
    curl_easy_getinfo(curl, CURLINFO_OS_ERRNO, &os_errno);
    curl_easy_getinfo(curl, CURLINFO_CONNECT_TIME_T, &connected);
    if (rc == CURLE_COULDNT_CONNECT && os_errno == ECONNREFUSED) {
        snprintf(out, n, "connection refused");
    } else if (rc == CURLE_OPERATION_TIMEDOUT && !connected && req->connect_timeout > 0 &&
               (req->timeout == 0 || req->connect_timeout <= req->timeout)) {
        snprintf(out, n, "could not connect within %g s", req->connect_timeout);
    } else if (rc == CURLE_OPERATION_TIMEDOUT && req->timeout > 0) {
        snprintf(out, n, "timed out after %g s", req->timeout);
    } else {
        snprintf(out, n, "%s", errbuf[0] ? errbuf : curl_easy_strerror(rc));
        out[0] = (char)tolower((unsigned char)out[0]);
    }
}

gl_status gl_http_perform(const gl_http_request *req, gl_http_response *res)
{
    memset(res, 0, sizeof *res);
    char shown[512];
    display_url(shown, sizeof shown, req->url ? req->url : "");
    if (!req->url) return gl_error(GL_EINVAL, "http: no URL");
    gl_status st = check_request(req, shown);
    if (st != GL_OK) return st;
    pthread_once(&init_once, init_curl);
    if (init_result != CURLE_OK)
        return gl_error(GL_EIO, "http: cannot initialize libcurl: %s", curl_easy_strerror(init_result));

    transfer tr = {.req = req, .res = res};
    struct curl_slist *headers = NULL;
    bool has_expect = false, ok = true;
    /* curl would send "Expect: 100-continue" for big bodies and wait for the
     * server's go-ahead; a plain request is simpler and never stalls. */
    for (int64_t i = 0; i < req->n_headers; i++) has_expect |= strncasecmp(req->headers[i], "expect:", 7) == 0;
    if (!has_expect) ok = add_header(&headers, "Expect:");
    for (int64_t i = 0; ok && i < req->n_headers; i++) ok = add_header(&headers, req->headers[i]);
    tr.curl = ok ? curl_easy_init() : NULL;
    if (!tr.curl) {
        curl_slist_free_all(headers);
        return gl_error(GL_ENOMEM, "http: %s %s: out of memory", req->method, shown);
    }
    char errbuf[CURL_ERROR_SIZE] = "";
    CURL *c = tr.curl;
    curl_easy_setopt(c, CURLOPT_URL, req->url);
#if LIBCURL_VERSION_NUM >= 0x075500 /* 7.85 */
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
#else
    curl_easy_setopt(c, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "genlab/" PACKAGE_VERSION);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, to_ms(req->timeout));
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, to_ms(req->connect_timeout));
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &tr);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &tr);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, &tr);
    if (!strcmp(req->method, "GET")) {
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    } else {
        if (strcmp(req->method, "POST")) curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, req->method);
        if (req->body || !strcmp(req->method, "POST")) {
            curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
            curl_easy_setopt(c, CURLOPT_POSTFIELDS, req->body ? req->body : "");
        }
    }

    CURLcode rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &res->status);
    if (tr.nomem) {
        st = gl_error(GL_ENOMEM, "http: %s %s: out of memory", req->method, shown);
    } else if (tr.interrupted) {
        st = gl_error(GL_EINTR, "http: %s %s: interrupted", req->method, shown);
    } else if (rc != CURLE_OK && !(res->aborted && rc == CURLE_WRITE_ERROR)) {
        char reason[CURL_ERROR_SIZE + 64];
        failure_reason(reason, sizeof reason, c, rc, errbuf, req);
        st = gl_error(GL_EIO, "http: %s %s: %s", req->method, shown, reason);
    } else if (!res->body && !append_body(&tr, "", 0)) {
        st = gl_error(GL_ENOMEM, "http: %s %s: out of memory", req->method, shown);
    }
    curl_easy_cleanup(c);
    curl_slist_free_all(headers);
    if (st != GL_OK) gl_http_response_free(res);
    return st;
}

void gl_http_response_free(gl_http_response *res)
{
    clear_headers(res);
    free(res->header_names);
    free(res->header_values);
    free(res->body);
    memset(res, 0, sizeof *res);
}
