/* One HTTP(S) request through libcurl's easy interface, for clients of
 * OpenAI-compatible endpoints.
 *
 *     gl_http_request req = {.method = "POST", .url = url, .headers = hdrs, .n_headers = 1,
 *                            .body = json, .body_len = strlen(json), .timeout = 60};
 *     gl_http_response res;
 *     if ((st = gl_http_perform(&req, &res)) != GL_OK) return st;  // res holds nothing then
 *     ... res.status, res.body ...
 *     gl_http_response_free(&res);
 *
 * Only http:// and https:// URLs are accepted (redirects are not followed).
 * A response with any status is GL_OK: the caller judges 4xx and 5xx. Failing
 * to get a response is an error, GL_EIO with one line naming the method, the
 * URL (without credentials or query) and the reason, e.g.
 *     http: POST http://127.0.0.1:9/v1/chat/completions: connection refused
 * GL_EINVAL for a bad request, GL_EINTR when Ctrl-C (core/interrupt.h) stops it.
 * Thread-safe: curl is initialized once, and each call has its own handle. */
#ifndef GL_IO_HTTP_H
#define GL_IO_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

/* Receives the body of a 2xx response as it arrives, in chunks of any size
 * (a line may be split between calls). Returning false stops the transfer:
 * gl_http_perform then returns GL_OK with res->aborted set. */
typedef bool (*gl_http_data_fn)(void *ud, const char *data, size_t n);

typedef struct gl_http_request {
    const char *method;          /* "GET", "POST", "PUT" or "DELETE" */
    const char *url;
    const char *const *headers;  /* n_headers lines "Name: value" */
    int64_t n_headers;
    const char *body;            /* body_len bytes, or NULL for none */
    size_t body_len;
    double timeout;              /* whole request, seconds; 0 = no limit */
    double connect_timeout;      /* connection phase, seconds; 0 = curl's default (300) */
    gl_http_data_fn on_data;     /* NULL: the body is collected in res->body */
    void *ud;
} gl_http_request;

typedef struct gl_http_response {
    long status;
    int64_t n_headers;           /* of the final response; names lowercased, in arrival order */
    char **header_names;
    char **header_values;
    char *body;                  /* NUL-terminated; empty when on_data took a 2xx body */
    size_t body_len;
    bool aborted;                /* on_data returned false */
} gl_http_response;

gl_status gl_http_perform(const gl_http_request *req, gl_http_response *res);
/* Frees what res holds and zeroes it; a zeroed response is a no-op. */
void gl_http_response_free(gl_http_response *res);

#endif
