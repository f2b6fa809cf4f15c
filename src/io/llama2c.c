#include "io/llama2c.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define MAGIC_V1 0x616b3432 /* "ak42": export.py --version 1 and later */

/* a * b * c into *out, false on overflow or a negative factor. */
static bool mul3(int64_t a, int64_t b, int64_t c, int64_t *out)
{
    int64_t ab;
    if (a < 0 || b < 0 || c < 0) return false;
    return !__builtin_mul_overflow(a, b, &ab) && !__builtin_mul_overflow(ab, c, out);
}

typedef struct {
    const char *name;
    int ndim;
    int64_t shape[3];
} entry;

gl_status gl_llama2c_load(const char *path, gl_llama2c_config *cfg, gl_tensor_list *out)
{
    memset(cfg, 0, sizeof *cfg);
    FILE *f = fopen(path, "rb");
    if (!f) return gl_error(GL_EIO, "load: %s: %s", path, strerror(errno));
    struct stat sb;
    int32_t h[7];
    if (fstat(fileno(f), &sb) != 0 || fread(h, sizeof h, 1, f) != 1) {
        fclose(f);
        return gl_error(GL_EFORMAT, "load: %s: too short for a llama2.c header (28 bytes)", path);
    }
    if (h[0] == MAGIC_V1) {
        fclose(f);
        return gl_error(GL_EFORMAT,
                        "load: %s: a llama2.c version 1+ export (magic 'ak42'); only the legacy version 0 "
                        "format is read (export.py --version 0)",
                        path);
    }
    cfg->dim = h[0];
    cfg->hidden_dim = h[1];
    cfg->n_layers = h[2];
    cfg->n_heads = h[3];
    cfg->n_kv_heads = h[4];
    cfg->shared_classifier = h[5] > 0;
    cfg->vocab_size = h[5] < 0 ? -(int64_t)h[5] : h[5];
    cfg->seq_len = h[6];
    const char *bad = cfg->dim <= 0          ? "dim"
                      : cfg->hidden_dim <= 0 ? "hidden_dim"
                      : cfg->n_layers <= 0   ? "n_layers"
                      : cfg->n_heads <= 0    ? "n_heads"
                      : cfg->n_kv_heads <= 0 ? "n_kv_heads"
                      : cfg->vocab_size <= 0 ? "vocab_size"
                      : cfg->seq_len <= 0    ? "seq_len"
                      : cfg->dim % cfg->n_heads ? "dim (not a multiple of n_heads)"
                      : cfg->n_heads % cfg->n_kv_heads ? "n_kv_heads (does not divide n_heads)"
                      : (cfg->dim / cfg->n_heads) % 2  ? "n_heads (head size must be even)"
                                                       : NULL;
    if (bad) {
        fclose(f);
        return gl_error(GL_EFORMAT,
                        "load: %s: bad llama2.c header field %s (header: dim=%d hidden_dim=%d n_layers=%d n_heads=%d "
                        "n_kv_heads=%d vocab_size=%d seq_len=%d; is this a llama2.c .bin?)",
                        path, bad, h[0], h[1], h[2], h[3], h[4], h[5], h[6]);
    }
    int64_t D = cfg->dim, F = cfg->hidden_dim, L = cfg->n_layers, V = cfg->vocab_size, HS = D / cfg->n_heads;
    int64_t KVD = cfg->n_kv_heads * HS;
    entry e[] = {
        {"token_embedding_table", 2, {V, D}},
        {"rms_att_weight", 2, {L, D}},
        {"wq", 3, {L, D, D}},
        {"wk", 3, {L, KVD, D}},
        {"wv", 3, {L, KVD, D}},
        {"wo", 3, {L, D, D}},
        {"rms_ffn_weight", 2, {L, D}},
        {"w1", 3, {L, F, D}},
        {"w2", 3, {L, D, F}},
        {"w3", 3, {L, F, D}},
        {"rms_final_weight", 1, {D}},
        {"freq_cis", 2, {cfg->seq_len, HS}}, /* real and imaginary halves, skipped */
        {"wcls", 2, {V, D}},
    };
    int n = cfg->shared_classifier ? 12 : 13;
    int64_t total = 0, count[13];
    for (int i = 0; i < n; i++) {
        int64_t s1 = e[i].ndim > 1 ? e[i].shape[1] : 1, s2 = e[i].ndim > 2 ? e[i].shape[2] : 1;
        if (!mul3(e[i].shape[0], s1, s2, &count[i]) || __builtin_add_overflow(total, count[i], &total) ||
            total > INT64_MAX / 4) {
            fclose(f);
            return gl_error(GL_EFORMAT, "load: %s: llama2.c header sizes overflow (dim=%d, vocab_size=%d)", path, h[0],
                            h[5]);
        }
    }
    int64_t expect = 28 + 4 * total;
    if ((int64_t)sb.st_size != expect) {
        fclose(f);
        return gl_error(GL_EFORMAT,
                        "load: %s: file has %lld bytes, the llama2.c header (dim=%d hidden_dim=%d n_layers=%d "
                        "n_heads=%d n_kv_heads=%d vocab_size=%d seq_len=%d) implies %lld (%s)",
                        path, (long long)sb.st_size, h[0], h[1], h[2], h[3], h[4], h[5], h[6], (long long)expect,
                        (int64_t)sb.st_size < expect ? "truncated?" : "wrong header or not a llama2.c file?");
    }
    gl_status st = GL_OK;
    for (int i = 0; i < n && st == GL_OK; i++) {
        if (i == 11) { /* freq_cis: skip */
            if (fseeko(f, (off_t)(4 * count[i]), SEEK_CUR) != 0) st = gl_error(GL_EIO, "load: %s: seek failed", path);
            continue;
        }
        gl_tensor *t = gl_tensor_empty(GL_F32, e[i].ndim, e[i].shape);
        if (!t) {
            st = gl_error_code();
            break;
        }
        if (fread(gl_tensor_data(t), 4, (size_t)count[i], f) != (size_t)count[i])
            st = gl_error(GL_EIO, "load: %s: read failed in '%s'", path, e[i].name);
        else
            st = gl_tensor_list_add(out, e[i].name, t);
        gl_tensor_release(t);
    }
    fclose(f);
    if (st != GL_OK) gl_tensor_list_clear(out);
    return st;
}
