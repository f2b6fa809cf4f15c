#include "core/print.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Like PyTorch: more than SUMMARY_THRESHOLD elements shows EDGE items at each end of every dim. */
enum { SUMMARY_THRESHOLD = 1000, EDGE = 3 };

typedef struct {
    char *buf;
    size_t len, cap;
    int ok;
} strbuf;

static void sb_printf(strbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_printf(strbuf *sb, const char *fmt, ...)
{
    if (!sb->ok) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(sb->buf + sb->len, sb->cap - sb->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            sb->ok = 0;
            return;
        }
        if ((size_t)n < sb->cap - sb->len) {
            sb->len += (size_t)n;
            return;
        }
        size_t cap = 2 * sb->cap + (size_t)n;
        char *b = realloc(sb->buf, cap);
        if (!b) {
            sb->ok = 0;
            return;
        }
        sb->buf = b;
        sb->cap = cap;
    }
}

typedef struct {
    const gl_tensor *t;
    int summarize;
    int sci;       /* use %e */
    int decimals;  /* for %f */
    int width;
    int is_int;
} fmt_opts;

static void format_value(strbuf *sb, const fmt_opts *o, double v)
{
    if (o->is_int)
        sb_printf(sb, "%*lld", o->width, (long long)v);
    else if (o->sci)
        sb_printf(sb, "%*.4e", o->width, v);
    else
        sb_printf(sb, "%*.*f", o->width, o->decimals, v);
}

static void format_dim(strbuf *sb, const fmt_opts *o, int d, int64_t base, int indent)
{
    const gl_tensor *t = o->t;
    int64_t n = t->shape[d];
    int64_t inner = 1;
    for (int k = d + 1; k < t->ndim; k++) inner *= t->shape[k];
    sb_printf(sb, "[");
    for (int64_t i = 0; i < n; i++) {
        if (o->summarize && n > 2 * EDGE && i == EDGE) {
            sb_printf(sb, d == t->ndim - 1 ? "..., " : "...,\n%*s", d == t->ndim - 1 ? 0 : indent + 1, "");
            i = n - EDGE;
        }
        if (d == t->ndim - 1)
            format_value(sb, o, gl_tensor_get(t, base + i));
        else
            format_dim(sb, o, d + 1, base + i * inner, indent + 1);
        if (i < n - 1) {
            if (d == t->ndim - 1)
                sb_printf(sb, ", ");
            else
                sb_printf(sb, ",%s%*s", t->ndim - d > 2 ? "\n\n" : "\n", indent + 1, "");
        }
    }
    sb_printf(sb, "]");
}

/* Picks fixed or scientific notation and a column width from the values shown. */
static void choose_format(fmt_opts *o)
{
    const gl_tensor *t = o->t;
    double maxabs = 0, minabs = INFINITY;
    int all_int = 1, nonfinite = 0;
    for (int64_t i = 0; i < t->numel; i++) {
        double v = gl_tensor_get(t, i);
        if (!isfinite(v)) {
            nonfinite = 1;
            continue;
        }
        double a = fabs(v);
        if (a > maxabs) maxabs = a;
        if (a > 0 && a < minabs) minabs = a;
        if (v != floor(v)) all_int = 0;
    }
    o->decimals = 4;
    if (!o->is_int && maxabs > 0 && (maxabs >= 1e8 || minabs < 1e-4 || maxabs / minabs > 1e8)) o->sci = 1;
    if (!o->is_int && all_int && !o->sci) o->decimals = 0;
    char tmp[64];
    int w = 1;
    for (int64_t i = 0; i < t->numel; i++) {
        double v = gl_tensor_get(t, i);
        int n;
        if (o->is_int)
            n = snprintf(tmp, sizeof tmp, "%lld", (long long)v);
        else if (o->sci)
            n = snprintf(tmp, sizeof tmp, "%.4e", v);
        else
            n = snprintf(tmp, sizeof tmp, "%.*f", o->decimals, v);
        if (n > w) w = n;
    }
    (void)nonfinite;
    o->width = w;
}

char *gl_tensor_format(const gl_tensor *t)
{
    strbuf sb = {malloc(256), 0, 256, 1};
    if (!sb.buf) return NULL;
    fmt_opts o = {t, t->numel > SUMMARY_THRESHOLD, 0, 4, 1, gl_dtype_is_int(t->dtype)};
    choose_format(&o);
    sb_printf(&sb, "tensor(");
    if (t->ndim == 0)
        format_value(&sb, &o, gl_tensor_get(t, 0));
    else if (t->numel == 0)
        sb_printf(&sb, "[]");
    else
        format_dim(&sb, &o, 0, 0, 7);
    char shape[128];
    sb_printf(&sb, ", shape=%s, dtype=%s%s)", gl_tensor_shape_str(t, shape, sizeof shape), gl_dtype_name(t->dtype),
              t->requires_grad ? (t->grad_fn ? ", grad_fn" : ", requires_grad") : "");
    if (!sb.ok) {
        free(sb.buf);
        return NULL;
    }
    return sb.buf;
}
