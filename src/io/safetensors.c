#include "io/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/interrupt.h"
#include "io/atomic.h"

/* Tensor data is copied between files and memory as is. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "io/safetensors.c assumes a little-endian host"
#endif

/* The Hugging Face reader refuses larger headers; so do we, before allocating one. */
#define MAX_HEADER_BYTES 100000000u
/* cJSON holds numbers as doubles, which are exact integers up to 2^53. */
#define MAX_JSON_INT 9007199254740992.0

typedef enum { CONV_COPY, CONV_F16, CONV_BF16, CONV_F64 } conv_kind;

typedef struct {
    const char *name; /* as written in files */
    size_t size;      /* bytes per element in the file */
    gl_dtype dt;      /* what it loads as */
    conv_kind conv;
} file_dtype;

static const file_dtype file_dtypes[] = {
    {"F32", 4, GL_F32, CONV_COPY},  {"I32", 4, GL_I32, CONV_COPY}, {"I64", 8, GL_I64, CONV_COPY},
    {"U8", 1, GL_U8, CONV_COPY},    {"BOOL", 1, GL_U8, CONV_COPY}, {"F16", 2, GL_F32, CONV_F16},
    {"BF16", 2, GL_F32, CONV_BF16}, {"F64", 8, GL_F32, CONV_F64},
};
#define SUPPORTED_DTYPES "F32, F16, BF16, F64, I64, I32, U8 and BOOL"

static const char *save_dtype_name(gl_dtype dt)
{
    switch (dt) {
    case GL_F32: return "F32";
    case GL_I32: return "I32";
    case GL_I64: return "I64";
    case GL_U8: return "U8";
    default: return NULL;
    }
}

/* ---- conversions to f32 ---------------------------------------------------- */

static float bits_to_f32(uint32_t bits)
{
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* IEEE half: 1 sign, 5 exponent (bias 15), 10 mantissa bits. Every half is
 * exactly representable as a float. */
static float f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
    if (exp == 0x1f) return bits_to_f32(sign | 0x7f800000u | (mant << 13)); /* inf, nan */
    if (exp == 0) {                                                          /* zero, subnormal */
        float v = ldexpf((float)mant, -24);
        return sign ? -v : v;
    }
    return bits_to_f32(sign | ((exp + 127 - 15) << 23) | (mant << 13));
}

/* bfloat16 is the top half of a float. */
static float bf16_to_f32(uint16_t h) { return bits_to_f32((uint32_t)h << 16); }

/* src holds n elements in the file's layout, possibly unaligned. */
static void convert_to_f32(float *dst, const unsigned char *src, int64_t n, conv_kind conv)
{
#pragma omp parallel for if (n > 65536)
    for (int64_t i = 0; i < n; i++) {
        if (conv == CONV_F64) {
            double d;
            memcpy(&d, src + 8 * i, 8);
            dst[i] = (float)d;
        } else {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);
            dst[i] = conv == CONV_F16 ? f16_to_f32(h) : bf16_to_f32(h);
        }
    }
}

/* A name fit for a one-line message: control bytes (and with ascii_only,
 * all non-ASCII bytes) become '?', long names are cut. */
static const char *printable_bytes(const char *s, char *buf, size_t n, bool ascii_only)
{
    size_t i = 0;
    for (; s[i] && i + 1 < n; i++) {
        unsigned char c = (unsigned char)s[i];
        buf[i] = c < 0x20 || c == 0x7f || (ascii_only && c >= 0x80) ? '?' : s[i];
    }
    buf[i] = '\0';
    if (s[i] && n > 4) memcpy(buf + n - 4, "...", 4);
    return buf;
}

static const char *printable(const char *s, char *buf, size_t n) { return printable_bytes(s, buf, n, false); }

/* Hugging Face readers require the header to be UTF-8: well-formed, shortest
 * form, no surrogates, nothing above U+10FFFF. */
static bool valid_utf8(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        int n = *p < 0x80 ? 0 : (*p & 0xe0) == 0xc0 ? 1 : (*p & 0xf0) == 0xe0 ? 2 : (*p & 0xf8) == 0xf0 ? 3 : -1;
        if (n < 0) return false;
        uint32_t c = n ? *p & (0x3fu >> n) : *p;
        p++;
        for (int k = 0; k < n; k++, p++) {
            if ((*p & 0xc0) != 0x80) return false; /* also stops at the terminating NUL */
            c = c << 6 | (*p & 0x3fu);
        }
        static const uint32_t least[4] = {0, 0x80, 0x800, 0x10000};
        if (c < least[n] || (c >= 0xd800 && c <= 0xdfff) || c > 0x10ffff) return false;
    }
    return true;
}

/* ---- saving -------------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A string that appears twice in s[0..n), or NULL. Sets *oom when it could not tell. */
static const char *find_duplicate(const char *const *s, int64_t n, bool *oom)
{
    *oom = false;
    if (n < 2) return NULL;
    const char **sorted = malloc((size_t)n * sizeof *sorted);
    if (!sorted) {
        *oom = true;
        return NULL;
    }
    memcpy(sorted, s, (size_t)n * sizeof *sorted);
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_str);
    const char *dup = NULL;
    for (int64_t i = 1; i < n && !dup; i++)
        if (strcmp(sorted[i - 1], sorted[i]) == 0) dup = sorted[i];
    free(sorted);
    return dup;
}

static gl_status check_save_args(const char *path, int64_t n, const char *const *names, gl_tensor *const *tensors,
                                 int64_t n_meta, const char *const *keys, const char *const *values)
{
    char nb[96];
    if (n < 0 || n_meta < 0) return gl_error(GL_EINVAL, "save: %s: negative count", path);
    for (int64_t i = 0; i < n; i++) {
        if (!names[i] || !tensors[i])
            return gl_error(GL_EINVAL, "save: %s: entry %lld has no name or tensor", path, (long long)i + 1);
        if (!valid_utf8(names[i]))
            return gl_error(GL_EINVAL, "save: %s: tensor name '%s' is not valid UTF-8 (the header is UTF-8 JSON)", path,
                            printable_bytes(names[i], nb, sizeof nb, true));
        if (strcmp(names[i], "__metadata__") == 0)
            return gl_error(GL_EINVAL, "save: %s: '__metadata__' is reserved and cannot name a tensor", path);
        if (!save_dtype_name(tensors[i]->dtype))
            return gl_error(GL_EINVAL, "save: %s: tensor '%s' has dtype %s, which safetensors saving does not support",
                            path, names[i], gl_dtype_name(tensors[i]->dtype));
    }
    for (int64_t i = 0; i < n_meta; i++) {
        if (!keys[i] || !values[i])
            return gl_error(GL_EINVAL, "save: %s: metadata entry %lld has no key or value", path, (long long)i + 1);
        if (!valid_utf8(keys[i]) || !valid_utf8(values[i]))
            return gl_error(GL_EINVAL, "save: %s: metadata '%s' is not valid UTF-8 (the header is UTF-8 JSON)", path,
                            printable_bytes(keys[i], nb, sizeof nb, true));
    }
    bool oom = false;
    const char *dup = find_duplicate(names, n, &oom);
    if (dup) return gl_error(GL_EINVAL, "save: %s: two tensors are named '%s'", path, dup);
    if (!oom) dup = find_duplicate(keys, n_meta, &oom);
    if (dup) return gl_error(GL_EINVAL, "save: %s: metadata key '%s' appears twice", path, dup);
    return oom ? gl_error(GL_ENOMEM, "save: %s: out of memory", path) : GL_OK;
}

/* The compact JSON header, as the Hugging Face writer makes it: __metadata__
 * first, then the tensors in data order. Integers go in as raw text so they
 * print exactly. NULL when out of memory. */
static char *build_header(int64_t n, const char *const *names, gl_tensor *const *tensors, int64_t n_meta,
                          const char *const *keys, const char *const *values)
{
    cJSON *root = cJSON_CreateObject();
    bool ok = root != NULL;
    if (ok && n_meta > 0) {
        cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
        ok = meta != NULL;
        for (int64_t i = 0; ok && i < n_meta; i++) ok = cJSON_AddStringToObject(meta, keys[i], values[i]) != NULL;
    }
    uint64_t offset = 0;
    for (int64_t i = 0; ok && i < n; i++) {
        const gl_tensor *t = tensors[i];
        char shape[GL_MAX_DIMS * 24 + 4], offsets[48];
        uint64_t nbytes = gl_tensor_nbytes(t);
        snprintf(offsets, sizeof offsets, "[%llu,%llu]", (unsigned long long)offset,
                 (unsigned long long)(offset + nbytes));
        offset += nbytes;
        cJSON *info = cJSON_AddObjectToObject(root, names[i]);
        ok = info && cJSON_AddStringToObject(info, "dtype", save_dtype_name(t->dtype)) &&
             cJSON_AddRawToObject(info, "shape", gl_tensor_shape_str(t, shape, sizeof shape)) &&
             cJSON_AddRawToObject(info, "data_offsets", offsets);
    }
    char *json = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    return json;
}

static gl_status write_file(gl_atomic_file *f, const char *json, int64_t n, gl_tensor *const *tensors)
{
    size_t len = strlen(json), pad = (8 - len % 8) % 8;
    uint64_t hlen = len + pad;
    unsigned char le[8];
    for (int k = 0; k < 8; k++) le[k] = (unsigned char)(hlen >> (8 * k));
    gl_status st = gl_atomic_write(f, le, 8);
    if (st == GL_OK) st = gl_atomic_write(f, json, len);
    if (st == GL_OK) st = gl_atomic_write(f, "        ", pad);
    for (int64_t i = 0; st == GL_OK && i < n; i++) {
        if (gl_interrupt_poll("save")) return GL_EINTR;
        st = gl_atomic_write(f, gl_tensor_data(tensors[i]), gl_tensor_nbytes(tensors[i]));
    }
    return st;
}

/* Puts "save: " in front of the message an io/atomic.h call left. */
static gl_status prefix_save(gl_status st)
{
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", gl_error_message());
    return gl_error(st, "save: %s", msg);
}

gl_status gl_safetensors_save(const char *path, int64_t n, const char *const *names, gl_tensor *const *tensors,
                              int64_t n_meta, const char *const *meta_keys, const char *const *meta_values)
{
    if (!path || !*path) return gl_error(GL_EINVAL, "save: empty path");
    gl_status st = check_save_args(path, n, names, tensors, n_meta, meta_keys, meta_values);
    if (st != GL_OK) return st;
    uint64_t total = 0;
    for (int64_t i = 0; i < n; i++) {
        uint64_t nb = gl_tensor_nbytes(tensors[i]);
        if (nb > UINT64_MAX - total) return gl_error(GL_EINVAL, "save: %s: the tensors' sizes overflow", path);
        total += nb;
    }
    char *json = build_header(n, names, tensors, n_meta, meta_keys, meta_values);
    if (!json) return gl_error(GL_ENOMEM, "save: %s: out of memory building the header", path);
    gl_atomic_file *f;
    st = gl_atomic_open(&f, path);
    if (st == GL_OK) {
        st = write_file(f, json, n, tensors);
        if (st == GL_OK)
            st = gl_atomic_commit(f);
        else
            gl_atomic_abort(f);
    }
    cJSON_free(json);
    return st == GL_OK || st == GL_EINTR ? st : prefix_save(st);
}

/* ---- loading: validation ---------------------------------------------------------- */

/* One tensor of the header, checked against the data buffer. */
typedef struct {
    const char *name; /* in the cJSON tree */
    const file_dtype *fdt;
    int ndim;
    int64_t shape[GL_MAX_DIMS];
    uint64_t begin, end; /* relative to the data buffer */
} entry;

typedef struct {
    const char *path;
    cJSON *root;
    cJSON *meta; /* the __metadata__ object or NULL */
    entry *entries;
    int64_t n;
    uint64_t data_start, data_size;
} header;

static gl_status bad(const char *path, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static gl_status bad(const char *path, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return gl_error(GL_EFORMAT, "load: %s: %s", path, msg);
}

/* What a JSON value is, for messages: its number, or its kind. */
static const char *describe(const cJSON *x, char *buf, size_t n)
{
    if (!x) return "missing";
    if (cJSON_IsNumber(x)) {
        snprintf(buf, n, "%.17g", x->valuedouble);
        return buf;
    }
    if (cJSON_IsString(x)) return "a string";
    if (cJSON_IsArray(x)) return "an array";
    if (cJSON_IsObject(x)) return "an object";
    if (cJSON_IsBool(x)) return "a boolean";
    if (cJSON_IsNull(x)) return "null";
    return "not a JSON value";
}

/* A JSON integer in 0..2^53. */
static bool json_uint(const cJSON *x, uint64_t *v)
{
    if (!cJSON_IsNumber(x)) return false;
    double d = x->valuedouble;
    if (!(d >= 0 && d <= MAX_JSON_INT) || d != floor(d)) return false;
    *v = (uint64_t)d;
    return true;
}

static gl_status parse_metadata(header *h, cJSON *meta)
{
    char nb[96];
    if (h->meta) return bad(h->path, "the header has '__metadata__' twice");
    if (cJSON_IsNull(meta)) return GL_OK;
    if (!cJSON_IsObject(meta))
        return bad(h->path, "'__metadata__' is %s, expected an object of strings", describe(meta, nb, sizeof nb));
    h->meta = meta;
    const cJSON *v;
    cJSON_ArrayForEach(v, meta) {
        char kb[96];
        if (!cJSON_IsString(v))
            return bad(h->path, "metadata entry '%s' is %s, expected a string", printable(v->string, kb, sizeof kb),
                       describe(v, nb, sizeof nb));
    }
    return GL_OK;
}

static gl_status parse_entry(header *h, const cJSON *info, entry *e)
{
    char nb[96], vb[64], sb[GL_MAX_DIMS * 24 + 4];
    const char *name = printable(e->name, nb, sizeof nb);
    if (!cJSON_IsObject(info))
        return bad(h->path, "tensor '%s' is %s, expected an object with dtype, shape and data_offsets", name,
                   describe(info, vb, sizeof vb));

    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(info, "dtype");
    if (!cJSON_IsString(dtype))
        return bad(h->path, "tensor '%s' has dtype %s, expected a string such as \"F32\"", name,
                   describe(dtype, vb, sizeof vb));
    for (size_t k = 0; k < sizeof file_dtypes / sizeof file_dtypes[0] && !e->fdt; k++)
        if (strcmp(dtype->valuestring, file_dtypes[k].name) == 0) e->fdt = &file_dtypes[k];
    if (!e->fdt)
        return bad(h->path, "tensor '%s' has dtype '%s', which genlab cannot load (it reads " SUPPORTED_DTYPES ")",
                   name, printable(dtype->valuestring, vb, sizeof vb));

    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(info, "shape");
    if (!cJSON_IsArray(shape))
        return bad(h->path, "tensor '%s' has shape %s, expected an array of sizes", name,
                   describe(shape, vb, sizeof vb));
    int ndim = cJSON_GetArraySize(shape);
    if (ndim > GL_MAX_DIMS)
        return bad(h->path, "tensor '%s' has %d dims; genlab tensors have at most %d", name, ndim, GL_MAX_DIMS);
    e->ndim = ndim;
    uint64_t numel = 1;
    bool overflow = false;
    const cJSON *x;
    int k = 0;
    cJSON_ArrayForEach(x, shape) {
        uint64_t v;
        if (!json_uint(x, &v))
            return bad(h->path, "tensor '%s' has shape entry %d = %s, expected a non-negative integer", name, k + 1,
                       describe(x, vb, sizeof vb));
        e->shape[k++] = (int64_t)v;
        if (v && numel > UINT64_MAX / v) overflow = true;
        numel *= v;
    }
    gl_shape_str(ndim, e->shape, sb, sizeof sb);
    if (overflow || numel > INT64_MAX / e->fdt->size)
        return bad(h->path, "tensor '%s' has shape %s, too many elements", name, sb);
    uint64_t nbytes = numel * e->fdt->size;

    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(info, "data_offsets");
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 || !json_uint(offs->child, &e->begin) ||
        !json_uint(offs->child->next, &e->end))
        return bad(h->path, "tensor '%s' has data_offsets that are not two non-negative integers [begin,end]", name);
    if (e->begin > e->end)
        return bad(h->path, "tensor '%s' has data_offsets [%llu,%llu] that end before they begin", name,
                   (unsigned long long)e->begin, (unsigned long long)e->end);
    if (e->end > h->data_size)
        return bad(h->path, "tensor '%s' data_offsets [%llu,%llu] exceed the data size %llu (truncated file?)", name,
                   (unsigned long long)e->begin, (unsigned long long)e->end, (unsigned long long)h->data_size);
    if (e->end - e->begin != nbytes)
        return bad(h->path, "tensor '%s' data_offsets [%llu,%llu] hold %llu bytes but %s shape %s needs %llu", name,
                   (unsigned long long)e->begin, (unsigned long long)e->end,
                   (unsigned long long)(e->end - e->begin), e->fdt->name, sb, (unsigned long long)nbytes);
    return GL_OK;
}

static int cmp_entry_name(const void *a, const void *b)
{
    return strcmp((*(const entry *const *)a)->name, (*(const entry *const *)b)->name);
}

static int cmp_entry_begin(const void *a, const void *b)
{
    const entry *x = *(const entry *const *)a, *y = *(const entry *const *)b;
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

/* No two tensors share a name or a byte. */
static gl_status check_disjoint(header *h)
{
    if (h->n < 2) return GL_OK;
    entry **s = malloc((size_t)h->n * sizeof *s);
    if (!s) return gl_error(GL_ENOMEM, "load: %s: out of memory", h->path);
    for (int64_t i = 0; i < h->n; i++) s[i] = &h->entries[i];
    char a[96], b[96];
    gl_status st = GL_OK;
    qsort(s, (size_t)h->n, sizeof *s, cmp_entry_name);
    for (int64_t i = 1; i < h->n && st == GL_OK; i++)
        if (strcmp(s[i - 1]->name, s[i]->name) == 0)
            st = bad(h->path, "the header names tensor '%s' twice", printable(s[i]->name, a, sizeof a));
    qsort(s, (size_t)h->n, sizeof *s, cmp_entry_begin);
    const entry *last = NULL; /* the non-empty tensor reaching furthest so far */
    for (int64_t i = 0; i < h->n && st == GL_OK; i++) {
        const entry *e = s[i];
        if (e->begin == e->end) continue;
        if (last && e->begin < last->end)
            st = bad(h->path, "tensors '%s' [%llu,%llu] and '%s' [%llu,%llu] overlap in the data buffer",
                     printable(last->name, a, sizeof a), (unsigned long long)last->begin,
                     (unsigned long long)last->end, printable(e->name, b, sizeof b), (unsigned long long)e->begin,
                     (unsigned long long)e->end);
        if (!last || e->end > last->end) last = e;
    }
    free(s);
    return st;
}

/* Parses and checks the JSON text hdr[0..len) into *h. */
static gl_status parse_header(header *h, const char *hdr, size_t len)
{
    const char *end = NULL;
    h->root = cJSON_ParseWithLengthOpts(hdr, len, &end, false);
    if (!h->root) {
        size_t at = end ? (size_t)(end - hdr) : 0;
        char near[24];
        size_t k = 0;
        for (; k + 1 < sizeof near && at + k < len; k++) {
            unsigned char c = (unsigned char)hdr[at + k];
            near[k] = c < 0x20 || c >= 0x7f ? '?' : (char)c;
        }
        near[k] = '\0';
        return bad(h->path,
                   "the header is not valid JSON (error at byte %zu of %zu, near '%s'; not a safetensors file?)", at,
                   len, near);
    }
    for (const char *p = end; p < hdr + len; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
            return bad(h->path, "the JSON header has trailing bytes after byte %zu of %zu", (size_t)(end - hdr), len);
    if (!cJSON_IsObject(h->root)) {
        char vb[64];
        return bad(h->path, "the header is %s, expected a JSON object", describe(h->root, vb, sizeof vb));
    }
    int64_t count = cJSON_GetArraySize(h->root);
    h->entries = calloc((size_t)count + 1, sizeof *h->entries);
    if (!h->entries) return gl_error(GL_ENOMEM, "load: %s: out of memory", h->path);
    cJSON *item;
    cJSON_ArrayForEach(item, h->root) {
        gl_status st;
        if (strcmp(item->string, "__metadata__") == 0) {
            st = parse_metadata(h, item);
        } else {
            entry *e = &h->entries[h->n++];
            e->name = item->string;
            st = parse_entry(h, item, e);
        }
        if (st != GL_OK) return st;
    }
    return check_disjoint(h);
}

/* ---- loading: reading ------------------------------------------------------------------ */

static gl_status read_at(int fd, void *buf, size_t n, uint64_t off, const char *path)
{
    char *p = buf;
    while (n) {
        ssize_t r = pread(fd, p, n < (1u << 30) ? n : (1u << 30), (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return gl_error(GL_EIO, "load: %s: read failed: %s", path, strerror(errno));
        if (r == 0) return bad(path, "the file ended early (was it truncated while loading?)");
        p += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return GL_OK;
}

/* A fresh tensor with entry e's data. */
static gl_status read_tensor(int fd, const header *h, const entry *e, gl_tensor **out)
{
    gl_tensor *t = gl_tensor_new(e->fdt->dt, e->ndim, e->shape);
    if (!t) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", gl_error_message());
        return gl_error(gl_error_code(), "load: %s: %s", h->path, msg);
    }
    size_t nbytes = (size_t)(e->end - e->begin);
    uint64_t off = h->data_start + e->begin;
    gl_status st = GL_OK;
    if (e->fdt->conv == CONV_COPY) {
        st = read_at(fd, gl_tensor_data(t), nbytes, off, h->path);
    } else if (nbytes) {
        unsigned char *raw = malloc(nbytes);
        st = raw ? read_at(fd, raw, nbytes, off, h->path) : gl_error(GL_ENOMEM, "load: %s: out of memory", h->path);
        if (st == GL_OK) convert_to_f32(gl_tensor_f32(t), raw, t->numel, e->fdt->conv);
        free(raw);
    }
    if (st != GL_OK) {
        gl_tensor_release(t);
        return st;
    }
    *out = t;
    return GL_OK;
}

static gl_status fill_result(int fd, const header *h, gl_safetensors *out)
{
    int64_t n_meta = h->meta ? cJSON_GetArraySize(h->meta) : 0;
    out->names = calloc((size_t)h->n + 1, sizeof *out->names);
    out->tensors = calloc((size_t)h->n + 1, sizeof *out->tensors);
    out->meta_keys = calloc((size_t)n_meta + 1, sizeof *out->meta_keys);
    out->meta_values = calloc((size_t)n_meta + 1, sizeof *out->meta_values);
    if (!out->names || !out->tensors || !out->meta_keys || !out->meta_values)
        return gl_error(GL_ENOMEM, "load: %s: out of memory", h->path);
    const cJSON *m;
    if (h->meta) cJSON_ArrayForEach(m, h->meta) {
        out->meta_keys[out->n_meta] = strdup(m->string);
        out->meta_values[out->n_meta] = strdup(m->valuestring);
        out->n_meta++;
        if (!out->meta_keys[out->n_meta - 1] || !out->meta_values[out->n_meta - 1])
            return gl_error(GL_ENOMEM, "load: %s: out of memory", h->path);
    }
    for (int64_t i = 0; i < h->n; i++) {
        if (gl_interrupt_poll("load")) return GL_EINTR;
        out->n++;
        out->names[i] = strdup(h->entries[i].name);
        if (!out->names[i]) return gl_error(GL_ENOMEM, "load: %s: out of memory", h->path);
        gl_status st = read_tensor(fd, h, &h->entries[i], &out->tensors[i]);
        if (st != GL_OK) return st;
    }
    return GL_OK;
}

/* Reads the length prefix and the JSON header, and checks them. */
static gl_status read_header(int fd, uint64_t size, header *h)
{
    if (size < 8)
        return bad(h->path, "the file is %llu bytes, too short for a safetensors header (empty or truncated file?)",
                   (unsigned long long)size);
    unsigned char le[8];
    gl_status st = read_at(fd, le, 8, 0, h->path);
    if (st != GL_OK) return st;
    uint64_t len = 0;
    for (int k = 7; k >= 0; k--) len = len << 8 | le[k];
    if (len > size - 8)
        return bad(h->path,
                   "the header length %llu exceeds the %llu bytes after it (truncated file, or not a safetensors file?)",
                   (unsigned long long)len, (unsigned long long)(size - 8));
    if (len > MAX_HEADER_BYTES)
        return bad(h->path, "the header length %llu is over the %u-byte limit (not a safetensors file?)",
                   (unsigned long long)len, MAX_HEADER_BYTES);
    if (len < 2) return bad(h->path, "the header length is %llu, too short for a JSON object", (unsigned long long)len);
    h->data_start = 8 + len;
    h->data_size = size - 8 - len;
    char *text = malloc((size_t)len + 1);
    if (!text)
        return gl_error(GL_ENOMEM, "load: %s: out of memory for a %llu-byte header", h->path, (unsigned long long)len);
    st = read_at(fd, text, (size_t)len, 8, h->path);
    if (st == GL_OK) {
        text[len] = '\0';
        st = parse_header(h, text, (size_t)len);
    }
    free(text);
    return st;
}

gl_status gl_safetensors_load(const char *path, gl_safetensors *out)
{
    memset(out, 0, sizeof *out);
    if (!path || !*path) return gl_error(GL_EINVAL, "load: empty path");
    /* O_NONBLOCK: a FIFO given by mistake must not hang the open. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return gl_error(GL_EIO, "load: %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int err = errno;
        close(fd);
        return gl_error(GL_EIO, "load: %s: %s", path, strerror(err));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return gl_error(GL_EIO, "load: %s: %s, expected a .safetensors file", path,
                        S_ISDIR(sb.st_mode) ? "is a directory" : "is not a regular file");
    }
    header h = {.path = path};
    gl_status st = read_header(fd, (uint64_t)sb.st_size, &h);
    if (st == GL_OK) st = fill_result(fd, &h, out);
    close(fd);
    cJSON_Delete(h.root);
    free(h.entries);
    if (st != GL_OK) gl_safetensors_free(out);
    return st;
}

void gl_safetensors_free(gl_safetensors *st)
{
    for (int64_t i = 0; i < st->n; i++) {
        free(st->names[i]);
        gl_tensor_release(st->tensors[i]);
    }
    for (int64_t i = 0; i < st->n_meta; i++) {
        free(st->meta_keys[i]);
        free(st->meta_values[i]);
    }
    free(st->names);
    free(st->tensors);
    free(st->meta_keys);
    free(st->meta_values);
    memset(st, 0, sizeof *st);
}
