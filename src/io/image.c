#include "io/image.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "core/interrupt.h"
#include "io/atomic.h"

/* Larger sides are refused before anything is allocated (a 16-bit RGBA
 * image of this size already takes 8 GiB as f32). */
#define MAX_SIDE 32768
/* deflate never expands data more than 1032:1, so a PNG whose header claims
 * more pixel data than that times its size is refused before allocating */
#define MAX_INFLATE 1032
/* Larger images are refused as decompression bombs, as PIL does: a 130 kB
 * 1-bit PNG of 32768x32768 would otherwise become a 4 GiB tensor. */
#define MAX_PIXELS 178956970u
#define PAR_MIN 65536

/* ---- libpng glue: errors come back through a jump, warnings are dropped ---------- */

typedef struct {
    jmp_buf jump;
    char msg[256];
    char warning[128]; /* the last one: it often says why an error follows */
} png_ctx;

static void on_png_error(png_structp png, png_const_charp msg)
{
    png_ctx *c = png_get_error_ptr(png);
    snprintf(c->msg, sizeof c->msg, "%s", msg);
    longjmp(c->jump, 1);
}

/* Library code never prints; libpng's warnings (bad ancillary chunks, sRGB
 * profile quirks) do not stop the read, but the last one is kept for the
 * message of an error that follows it ("Invalid IHDR data" after "Image
 * width exceeds user limit in IHDR"). */
static void on_png_warning(png_structp png, png_const_charp msg)
{
    png_ctx *c = png_get_error_ptr(png);
    snprintf(c->warning, sizeof c->warning, "%s", msg);
}

/* ---- reading -------------------------------------------------------------------- */

typedef struct {
    uint32_t w, h;
    int channels, bytes; /* bytes per sample: 1 or 2 */
    unsigned char *pixels; /* h rows of w * channels samples, big-endian when 16-bit */
} png_pixels;

/* Ancillary chunks that cannot change the pixels as read here (no gamma,
 * background or shift is applied), skipped unread: libpng would otherwise
 * allocate the length a text or profile chunk claims (2 GiB from a 43-byte
 * file) before finding the file too short. 5 bytes a name. */
static const png_byte unused_chunks[] = "bKGD\0cHRM\0eXIf\0gAMA\0hIST\0iCCP\0iTXt\0oFFs\0pCAL\0pHYs\0sBIT\0"
                                        "sCAL\0sPLT\0sRGB\0tEXt\0tIME\0zTXt";

/* Refuses an image header (read, not yet transformed) whose size is a
 * decompression bomb or more than the file can hold. */
static gl_status check_size(png_structp png, png_infop info, uint64_t file_size, const char *path)
{
    uint32_t w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    if ((uint64_t)w * h > MAX_PIXELS)
        return gl_error(GL_EFORMAT, "image.load: %s: the %ux%u image has more than %u pixels (refused as a "
                        "decompression bomb, as PIL does)", path, (unsigned)w, (unsigned)h, MAX_PIXELS);
    /* the filtered rows (a filter byte each) the IDAT data must inflate to;
     * interlacing only adds to this. A size of 0 is unknown (a pipe). */
    uint64_t need = (uint64_t)h * (png_get_rowbytes(png, info) + 1);
    if (file_size && need > file_size * MAX_INFLATE)
        return gl_error(GL_EFORMAT, "image.load: %s: the header's %ux%u image needs %llu bytes of pixel data, more "
                        "than a %llu-byte PNG can hold (truncated or corrupt file)", path, (unsigned)w, (unsigned)h,
                        (unsigned long long)need, (unsigned long long)file_size);
    return GL_OK;
}

/* Decodes the PNG stream fp of file_size bytes (its 8 signature bytes
 * already read) into p. Allocations made after setjmp live in volatile
 * pointers so the error path can free them. */
static gl_status decode_png(FILE *fp, uint64_t file_size, const char *path, png_pixels *p)
{
    png_ctx ctx = {.msg = "unknown libpng error"};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &ctx, on_png_error, on_png_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return gl_error(GL_ENOMEM, "image.load: %s: out of memory", path);
    }
    unsigned char *volatile pixels = NULL;
    png_bytep *volatile rows = NULL;
    if (setjmp(ctx.jump)) {
        png_destroy_read_struct(&png, &info, NULL);
        free(pixels);
        free(rows);
        if (strcmp(ctx.msg, "Read Error") == 0) /* libpng's word for a short fread */
            return gl_error(GL_EFORMAT, "image.load: %s: truncated (the file ends inside the PNG data)%s", path,
                            ferror(fp) ? "; read error" : "");
        if (ctx.warning[0])
            return gl_error(GL_EFORMAT, "image.load: %s: %s: %s (corrupt PNG data)", path, ctx.msg, ctx.warning);
        return gl_error(GL_EFORMAT, "image.load: %s: %s (corrupt PNG data)", path, ctx.msg);
    }
    png_init_io(png, fp);
    png_set_sig_bytes(png, 8);
    png_set_user_limits(png, MAX_SIDE, MAX_SIDE);
    png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER, unused_chunks, (int)(sizeof unused_chunks / 5));
    png_read_info(png, info);
    if (check_size(png, info, file_size, path) != GL_OK) {
        png_destroy_read_struct(&png, &info, NULL);
        return GL_EFORMAT;
    }
    uint32_t w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    png_set_expand(png); /* palette -> RGB(A), grey < 8 bits -> 8, tRNS -> alpha */
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    int channels = png_get_channels(png, info), bytes = png_get_bit_depth(png, info) == 16 ? 2 : 1;
    size_t rowbytes = png_get_rowbytes(png, info);
    if (rowbytes != (size_t)w * (size_t)channels * (size_t)bytes) {
        snprintf(ctx.msg, sizeof ctx.msg, "unexpected row size %zu for width %u", rowbytes, (unsigned)w);
        longjmp(ctx.jump, 1);
    }
    pixels = malloc(rowbytes * h);
    rows = malloc(sizeof(png_bytep) * h);
    if (!pixels || !rows) {
        snprintf(ctx.msg, sizeof ctx.msg, "out of memory for %ux%u pixels", (unsigned)w, (unsigned)h);
        longjmp(ctx.jump, 1);
    }
    for (uint32_t y = 0; y < h; y++) rows[y] = pixels + (size_t)y * rowbytes;
    png_read_image(png, rows);
    png_read_end(png, NULL);
    png_destroy_read_struct(&png, &info, NULL);
    free(rows);
    *p = (png_pixels){.w = w, .h = h, .channels = channels, .bytes = bytes, .pixels = pixels};
    return GL_OK;
}

gl_tensor *gl_image_read_png(const char *path)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) return gl_error_null(GL_EIO, "image.load: %s: %s", path, strerror(errno));
    unsigned char sig[8];
    size_t got = fread(sig, 1, sizeof sig, fp);
    if (got < sizeof sig || png_sig_cmp(sig, 0, sizeof sig)) {
        int err = ferror(fp) ? errno : 0;
        fclose(fp);
        if (err) return gl_error_null(GL_EIO, "image.load: %s: %s", path, strerror(err));
        if (got < sizeof sig)
            return gl_error_null(GL_EFORMAT, "image.load: %s: not a PNG file (only %zu bytes)", path, got);
        return gl_error_null(GL_EFORMAT, "image.load: %s: not a PNG file (no PNG signature; only PNG is read)", path);
    }
    png_pixels p;
    struct stat sb;
    gl_status st = decode_png(fp, fstat(fileno(fp), &sb) == 0 ? (uint64_t)sb.st_size : 0, path, &p);
    fclose(fp);
    if (st != GL_OK) return NULL;
    int64_t shape[3] = {p.channels, p.h, p.w};
    gl_tensor *t = gl_tensor_empty(GL_F32, 3, shape);
    if (t) {
        float *o = gl_tensor_f32(t);
        int64_t plane = (int64_t)p.h * p.w, C = p.channels;
        for (int64_t i = 0; i < plane; i++)
            for (int64_t c = 0; c < C; c++) {
                const unsigned char *s = p.pixels + (size_t)(i * C + c) * (size_t)p.bytes;
                o[c * plane + i] = p.bytes == 2 ? (float)(s[0] << 8 | s[1]) / 65535.0f : (float)s[0] / 255.0f;
            }
    }
    free(p.pixels);
    return t;
}

/* ---- writing -------------------------------------------------------------------- */

/* Encodes h rows of w * channels bytes into the stream fp. */
static gl_status encode_png(FILE *fp, const char *path, const unsigned char *pixels, uint32_t w, uint32_t h,
                            int channels)
{
    static const int types[] = {0, PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA, PNG_COLOR_TYPE_RGB,
                                PNG_COLOR_TYPE_RGB_ALPHA};
    png_ctx ctx = {.msg = "unknown libpng error"};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &ctx, on_png_error, on_png_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    png_bytep *rows = malloc(sizeof(png_bytep) * h);
    if (!info || !rows) {
        png_destroy_write_struct(&png, NULL);
        free(rows);
        return gl_error(GL_ENOMEM, "image.save: %s: out of memory", path);
    }
    if (setjmp(ctx.jump)) {
        png_destroy_write_struct(&png, &info);
        free(rows);
        return gl_error(GL_EIO, "image.save: %s: %s", path, ctx.msg);
    }
    for (uint32_t y = 0; y < h; y++) rows[y] = (png_bytep)pixels + (size_t)y * w * (size_t)channels;
    png_init_io(png, fp);
    png_set_IHDR(png, info, w, h, 8, types[channels], PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    png_write_image(png, rows);
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    free(rows);
    return GL_OK;
}

/* Re-raises the current error under "image.save: ". */
static gl_status save_error(void)
{
    char msg[512];
    snprintf(msg, sizeof msg, "%s", gl_error_message());
    return gl_error(gl_error_code(), "image.save: %s", msg);
}

gl_status gl_image_write_png(const char *path, const gl_tensor *x, float lo, float hi)
{
    char s[128];
    if (x->dtype != GL_F32 || (x->ndim != 2 && x->ndim != 3))
        return gl_error(GL_EINVAL, "image.save: %s: expected an f32 image [C,H,W] or [H,W], got %s %s", path,
                        gl_dtype_name(x->dtype), gl_tensor_shape_str(x, s, sizeof s));
    int64_t C = x->ndim == 3 ? x->shape[0] : 1, H = x->shape[x->ndim - 2], W = x->shape[x->ndim - 1];
    if (C < 1 || C > 4)
        return gl_error(GL_EINVAL, "image.save: %s: %lld channels in %s (1 grey, 2 grey+alpha, 3 RGB or 4 RGBA)", path,
                        (long long)C, gl_tensor_shape_str(x, s, sizeof s));
    if (H < 1 || W < 1 || H > MAX_SIDE || W > MAX_SIDE)
        return gl_error(GL_EINVAL, "image.save: %s: image size %lldx%lld out of range 1..%d", path, (long long)H,
                        (long long)W, MAX_SIDE);
    if (!(hi > lo) || !isfinite(lo) || !isfinite(hi))
        return gl_error(GL_EINVAL, "image.save: %s: range {%g, %g} must have lo < hi", path, lo, hi);
    unsigned char *pixels = malloc((size_t)x->numel);
    if (!pixels) return gl_error(GL_ENOMEM, "image.save: %s: out of memory", path);
    const float *v = gl_tensor_f32(x);
    int64_t plane = H * W;
    float scale = 1.0f / (hi - lo);
    for (int64_t i = 0; i < plane; i++)
        for (int64_t c = 0; c < C; c++) {
            float u = fminf(fmaxf((v[c * plane + i] - lo) * scale, 0.0f), 1.0f); /* NaN -> 0 */
            pixels[i * C + c] = (unsigned char)(u * 255.0f + 0.5f);
        }
    gl_atomic_file *f;
    gl_status st = gl_atomic_open(&f, path);
    if (st != GL_OK) {
        free(pixels);
        return save_error();
    }
    st = encode_png(gl_atomic_stream(f), path, pixels, (uint32_t)W, (uint32_t)H, (int)C);
    free(pixels);
    if (st != GL_OK) {
        gl_atomic_abort(f);
        return st;
    }
    return gl_atomic_commit(f) == GL_OK ? GL_OK : save_error();
}

/* ---- channels --------------------------------------------------------------------- */

gl_tensor *gl_image_convert(const gl_tensor *x, int channels, float background)
{
    char s[128];
    if (x->dtype != GL_F32 || x->ndim != 3 || x->shape[0] < 1 || x->shape[0] > 4)
        return gl_error_null(GL_EINVAL, "image.convert: expected an f32 image [C,H,W] with C = 1..4, got %s %s",
                             gl_dtype_name(x->dtype), gl_tensor_shape_str(x, s, sizeof s));
    if (channels != 1 && channels != 3 && channels != 4)
        return gl_error_null(GL_EINVAL, "image.convert: channels must be 1, 3 or 4 (got %d)", channels);
    int64_t C = x->shape[0], plane = x->shape[1] * x->shape[2];
    int64_t shape[3] = {channels, x->shape[1], x->shape[2]};
    gl_tensor *out = gl_tensor_empty(GL_F32, 3, shape);
    if (!out) return NULL;
    const float *v = gl_tensor_f32(x);
    float *o = gl_tensor_f32(out);
    bool color = C >= 3, alpha = C == 2 || C == 4;
    for (int64_t i = 0; i < plane; i++) {
        float r = v[i], g = color ? v[plane + i] : r, b = color ? v[2 * plane + i] : r;
        float a = alpha ? v[(C - 1) * plane + i] : 1.0f;
        if (channels == 4) {
            o[i] = r, o[plane + i] = g, o[2 * plane + i] = b, o[3 * plane + i] = a;
            continue;
        }
        if (alpha) {
            r = r * a + background * (1 - a);
            g = g * a + background * (1 - a);
            b = b * a + background * (1 - a);
        }
        if (channels == 3)
            o[i] = r, o[plane + i] = g, o[2 * plane + i] = b;
        else
            o[i] = color ? 0.299f * r + 0.587f * g + 0.114f * b : r;
    }
    return out;
}

/* ---- resize and crop ---------------------------------------------------------------- */

/* How each of n_out samples along one axis mixes the n_in inputs: taps
 * (index, weight) pairs per output, unused ones of weight 0 at index 0. */
typedef struct {
    int taps;
    int64_t *index;
    float *weight;
} axis_filter;

static bool axis_filter_init(axis_filter *f, int64_t n_in, int64_t n_out)
{
    double scale = (double)n_in / (double)n_out;
    f->taps = n_out < n_in ? (int)ceil(scale) + 1 : 2;
    f->index = calloc((size_t)(n_out * f->taps), sizeof *f->index);
    f->weight = calloc((size_t)(n_out * f->taps), sizeof *f->weight);
    if (!f->index || !f->weight) return false;
    for (int64_t i = 0; i < n_out; i++) {
        int64_t *idx = f->index + i * f->taps;
        float *wt = f->weight + i * f->taps;
        if (n_out < n_in) { /* box: the overlap of [i, i+1) * scale with each input pixel */
            double start = (double)i * scale, end = (double)(i + 1) * scale;
            int k = 0;
            for (int64_t j = (int64_t)floor(start); j < n_in && (double)j < end && k < f->taps; j++, k++) {
                double overlap = fmin(end, (double)(j + 1)) - fmax(start, (double)j);
                idx[k] = j;
                wt[k] = (float)(overlap / scale);
            }
        } else { /* linear between the two nearest input centres */
            double src = fmax(((double)i + 0.5) * scale - 0.5, 0.0);
            int64_t j0 = (int64_t)src;
            if (j0 > n_in - 1) j0 = n_in - 1;
            int64_t j1 = j0 < n_in - 1 ? j0 + 1 : j0;
            double l = src - (double)j0;
            idx[0] = j0, wt[0] = (float)(1 - l);
            idx[1] = j1, wt[1] = (float)l;
        }
    }
    return true;
}

static void axis_filter_free(axis_filter *f)
{
    free(f->index);
    free(f->weight);
}

static gl_status check_image_dims(const gl_tensor *x, int64_t h, int64_t w, const char *op)
{
    char s[128];
    if (x->ndim < 2)
        return gl_error(GL_EINVAL, "%s: expected an image with at least 2 dims [...,H,W], got %s", op,
                        gl_tensor_shape_str(x, s, sizeof s));
    if (h < 1 || w < 1 || h > MAX_SIDE || w > MAX_SIDE)
        return gl_error(GL_EINVAL, "%s: size %lldx%lld out of range 1..%d", op, (long long)h, (long long)w, MAX_SIDE);
    return GL_OK;
}

gl_tensor *gl_image_resize(const gl_tensor *x, int64_t h, int64_t w)
{
    char s[128];
    if (check_image_dims(x, h, w, "image.resize") != GL_OK) return NULL;
    if (x->dtype != GL_F32)
        return gl_error_null(GL_EINVAL, "image.resize: expected an f32 tensor, got %s", gl_dtype_name(x->dtype));
    int64_t H = x->shape[x->ndim - 2], W = x->shape[x->ndim - 1];
    if (H < 1 || W < 1)
        return gl_error_null(GL_EINVAL, "image.resize: cannot resize the empty image %s",
                             gl_tensor_shape_str(x, s, sizeof s));
    if (gl_interrupt_poll("image.resize")) return NULL;
    int64_t shape[GL_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 2] = h, shape[x->ndim - 1] = w;
    int64_t planes = x->numel / (H * W);
    gl_tensor *out = gl_tensor_empty(GL_F32, x->ndim, shape);
    float *tmp = malloc(sizeof(float) * (size_t)(planes * H * w));
    axis_filter fy = {0}, fx = {0};
    if (!out || !tmp || !axis_filter_init(&fy, H, h) || !axis_filter_init(&fx, W, w)) {
        gl_tensor_release(out);
        free(tmp);
        axis_filter_free(&fy);
        axis_filter_free(&fx);
        return out ? gl_error_null(GL_ENOMEM, "image.resize: out of memory") : NULL;
    }
    const float *src = gl_tensor_f32(x);
    float *dst = gl_tensor_f32(out);
    /* rows first (W -> w), then columns (H -> h) */
#pragma omp parallel for if (planes * H * w > PAR_MIN) schedule(static)
    for (int64_t r = 0; r < planes * H; r++)
        for (int64_t i = 0; i < w; i++) {
            float acc = 0;
            for (int k = 0; k < fx.taps; k++) acc += fx.weight[i * fx.taps + k] * src[r * W + fx.index[i * fx.taps + k]];
            tmp[r * w + i] = acc;
        }
#pragma omp parallel for if (planes * h * w > PAR_MIN) schedule(static)
    for (int64_t r = 0; r < planes * h; r++) {
        int64_t p = r / h, y = r % h;
        float *o = dst + r * w;
        for (int64_t i = 0; i < w; i++) o[i] = 0;
        for (int k = 0; k < fy.taps; k++) {
            float wt = fy.weight[y * fy.taps + k];
            const float *row = tmp + (p * H + fy.index[y * fy.taps + k]) * w;
            for (int64_t i = 0; i < w; i++) o[i] += wt * row[i];
        }
    }
    free(tmp);
    axis_filter_free(&fy);
    axis_filter_free(&fx);
    return out;
}

gl_tensor *gl_image_center_crop(const gl_tensor *x, int64_t h, int64_t w)
{
    char s[128];
    if (check_image_dims(x, h, w, "image.center_crop") != GL_OK) return NULL;
    int64_t H = x->shape[x->ndim - 2], W = x->shape[x->ndim - 1];
    if (h > H || w > W)
        return gl_error_null(GL_EINVAL, "image.center_crop: %lldx%lld is larger than the image %s", (long long)h,
                             (long long)w, gl_tensor_shape_str(x, s, sizeof s));
    int64_t shape[GL_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 2] = h, shape[x->ndim - 1] = w;
    gl_tensor *out = gl_tensor_empty(x->dtype, x->ndim, shape);
    if (!out) return NULL;
    size_t esz = gl_dtype_size(x->dtype);
    int64_t planes = x->numel / (H * W), top = (H - h) / 2, left = (W - w) / 2;
    const char *src = gl_tensor_data(x);
    char *dst = gl_tensor_data(out);
    for (int64_t p = 0; p < planes; p++)
        for (int64_t y = 0; y < h; y++)
            memcpy(dst + (size_t)((p * h + y) * w) * esz, src + (size_t)((p * H + top + y) * W + left) * esz,
                   (size_t)w * esz);
    return out;
}

/* ---- grids ------------------------------------------------------------------------ */

gl_tensor *gl_image_grid(const gl_tensor *x, int64_t nrow, int64_t padding, float pad_value)
{
    char s[128];
    if (x->dtype != GL_F32 || x->ndim != 4 || x->shape[0] < 1)
        return gl_error_null(GL_EINVAL, "image.grid: expected f32 images [B,C,H,W] with B >= 1, got %s %s",
                             gl_dtype_name(x->dtype), gl_tensor_shape_str(x, s, sizeof s));
    if (nrow < 1 || padding < 0 || padding > MAX_SIDE)
        return gl_error_null(GL_EINVAL, "image.grid: nrow must be >= 1 and padding in 0..%d (got %lld, %lld)",
                             MAX_SIDE, (long long)nrow, (long long)padding);
    int64_t B = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    int64_t cols = nrow < B ? nrow : B, rows = (B + cols - 1) / cols;
    int64_t GH = rows * (H + padding) + padding, GW = cols * (W + padding) + padding;
    if (GH > MAX_SIDE || GW > MAX_SIDE)
        return gl_error_null(GL_EINVAL, "image.grid: the grid of %s would be %lldx%lld pixels (at most %d a side)",
                             gl_tensor_shape_str(x, s, sizeof s), (long long)GH, (long long)GW, MAX_SIDE);
    int64_t shape[3] = {C, GH, GW};
    gl_tensor *out = gl_tensor_empty(GL_F32, 3, shape);
    if (!out) return NULL;
    float *o = gl_tensor_f32(out);
    const float *v = gl_tensor_f32(x);
    for (int64_t i = 0; i < out->numel; i++) o[i] = pad_value;
    for (int64_t b = 0; b < B; b++) {
        int64_t top = (b / cols) * (H + padding) + padding, left = (b % cols) * (W + padding) + padding;
        for (int64_t c = 0; c < C; c++)
            for (int64_t y = 0; y < H; y++)
                memcpy(o + (c * GH + top + y) * GW + left, v + ((b * C + c) * H + y) * W, sizeof(float) * (size_t)W);
    }
    return out;
}

/* ---- listing a folder ------------------------------------------------------------- */

typedef struct {
    char *path;
    dev_t dev;
    ino_t ino;
} found_file;

typedef struct {
    found_file *v;
    int64_t n, cap;
    dev_t dirs_dev[64]; /* the directories being walked, to stop at symlink loops */
    ino_t dirs_ino[64];
    int depth;
} file_list;

static bool has_png_suffix(const char *name)
{
    size_t n = strlen(name);
    return n > 4 && strcasecmp(name + n - 4, ".png") == 0;
}

static gl_status walk(file_list *fl, const char *dir, const char *root)
{
    if (gl_interrupt_poll("image.list")) return GL_EINTR;
    DIR *d = opendir(dir);
    if (!d) return gl_error(GL_EIO, "image.list: %s: %s", dir, strerror(errno));
    gl_status st = GL_OK;
    struct dirent *e;
    while (st == GL_OK && (errno = 0, e = readdir(d))) {
        if (e->d_name[0] == '.' && (!e->d_name[1] || (e->d_name[1] == '.' && !e->d_name[2]))) continue;
        size_t len = strlen(dir) + strlen(e->d_name) + 2;
        char *path = malloc(len);
        if (!path) {
            st = gl_error(GL_ENOMEM, "image.list: %s: out of memory", root);
            break;
        }
        snprintf(path, len, "%s/%s", dir, e->d_name);
        struct stat sb;
        if (stat(path, &sb) != 0) { /* a dangling link: nothing to read */
            free(path);
            continue;
        }
        if (S_ISDIR(sb.st_mode)) {
            bool loop = false;
            for (int i = 0; i < fl->depth; i++) loop |= fl->dirs_dev[i] == sb.st_dev && fl->dirs_ino[i] == sb.st_ino;
            if (!loop && fl->depth < 64) {
                fl->dirs_dev[fl->depth] = sb.st_dev, fl->dirs_ino[fl->depth] = sb.st_ino;
                fl->depth++;
                st = walk(fl, path, root);
                fl->depth--;
            }
            free(path);
            continue;
        }
        if (!S_ISREG(sb.st_mode) || !has_png_suffix(e->d_name)) {
            free(path);
            continue;
        }
        if (fl->n == fl->cap) {
            int64_t cap = fl->cap ? 2 * fl->cap : 256;
            found_file *v = realloc(fl->v, sizeof *v * (size_t)cap);
            if (!v) {
                free(path);
                st = gl_error(GL_ENOMEM, "image.list: %s: out of memory", root);
                break;
            }
            fl->v = v, fl->cap = cap;
        }
        fl->v[fl->n++] = (found_file){.path = path, .dev = sb.st_dev, .ino = sb.st_ino};
    }
    if (st == GL_OK && errno) st = gl_error(GL_EIO, "image.list: %s: %s", dir, strerror(errno));
    closedir(d);
    return st;
}

static int cmp_inode(const void *a, const void *b)
{
    const found_file *x = a, *y = b;
    if (x->dev != y->dev) return x->dev < y->dev ? -1 : 1;
    if (x->ino != y->ino) return x->ino < y->ino ? -1 : 1;
    return strcmp(x->path, y->path);
}

static int cmp_path(const void *a, const void *b)
{
    return strcmp(((const found_file *)a)->path, ((const found_file *)b)->path);
}

void gl_image_free_list(char **paths, int64_t n)
{
    for (int64_t i = 0; paths && i < n; i++) free(paths[i]);
    free(paths);
}

gl_status gl_image_list_png(const char *dir, char ***paths, int64_t *n)
{
    *paths = NULL;
    *n = 0;
    struct stat sb;
    if (stat(dir, &sb) != 0) return gl_error(GL_EIO, "image.list: %s: %s", dir, strerror(errno));
    if (!S_ISDIR(sb.st_mode)) return gl_error(GL_EINVAL, "image.list: %s: not a directory", dir);
    file_list fl = {.depth = 1, .dirs_dev = {sb.st_dev}, .dirs_ino = {sb.st_ino}};
    size_t dlen = strlen(dir);
    char *root = strdup(dir);
    if (!root) return gl_error(GL_ENOMEM, "image.list: %s: out of memory", dir);
    while (dlen > 1 && root[dlen - 1] == '/') root[--dlen] = '\0'; /* "dir/" lists as "dir/name" */
    gl_status st = walk(&fl, root, dir);
    free(root);
    char **out = NULL;
    int64_t kept = 0;
    if (st == GL_OK && fl.n > 0) {
        /* one entry per file: the first path in byte order among its names */
        qsort(fl.v, (size_t)fl.n, sizeof *fl.v, cmp_inode);
        for (int64_t i = 0; i < fl.n; i++) {
            if (kept && fl.v[kept - 1].dev == fl.v[i].dev && fl.v[kept - 1].ino == fl.v[i].ino)
                free(fl.v[i].path);
            else
                fl.v[kept++] = fl.v[i];
        }
        fl.n = kept;
        qsort(fl.v, (size_t)fl.n, sizeof *fl.v, cmp_path);
    }
    if (st == GL_OK) {
        out = malloc(sizeof *out * (size_t)(fl.n ? fl.n : 1));
        if (!out) st = gl_error(GL_ENOMEM, "image.list: %s: out of memory", dir);
    }
    for (int64_t i = 0; i < fl.n; i++) {
        if (out)
            out[i] = fl.v[i].path;
        else
            free(fl.v[i].path);
    }
    free(fl.v);
    if (st != GL_OK) return st;
    *paths = out;
    *n = fl.n;
    return GL_OK;
}
