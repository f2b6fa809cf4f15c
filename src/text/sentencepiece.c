/* SentencePiece-style BPE with byte fallback (LLaMA), from a llama2.c
 * tokenizer.bin or, through tokenizer.c, a Hugging Face tokenizer.json.
 *
 * Pieces are kept as SentencePiece writes them, with "▁" (U+2581) for a
 * space: llama2.c's export turned "▁" into " " and wrapped <s> and </s> in
 * newlines, which loading undoes. tokenizer.bin carries scores, not merges;
 * the merge list is rebuilt the way Hugging Face converts a SentencePiece
 * model: every split of a piece into two pieces, ordered by the merged
 * piece's score (highest first), then left id, then right id. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "text/tokenizer_impl.h"

#define SPACE_PIECE "\xE2\x96\x81" /* ▁ */

static bool is_byte_piece(const char *s, size_t l, int *byte)
{
    static const char hex[] = "0123456789ABCDEF";
    if (l != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return false;
    const char *h = strchr(hex, s[3]), *lo = strchr(hex, s[4]);
    if (!h || !lo || !s[3] || !s[4]) return false;
    *byte = (int)((h - hex) * 16 + (lo - hex));
    return true;
}

gl_status gl_spm_finish(gl_tokenizer *tok, const char *op)
{
    int64_t n = tok->pieces.n;
    if (!tok->type && !(tok->type = calloc((size_t)n, 1))) return gl_error(GL_ENOMEM, "%s: out of memory", op);
    if (tok->role[GL_TOKEN_BOS] < 0) tok->role[GL_TOKEN_BOS] = gl_strtab_find(&tok->pieces, "<s>", 3);
    if (tok->role[GL_TOKEN_EOS] < 0) tok->role[GL_TOKEN_EOS] = gl_strtab_find(&tok->pieces, "</s>", 4);
    if (tok->role[GL_TOKEN_UNK] < 0) tok->role[GL_TOKEN_UNK] = gl_strtab_find(&tok->pieces, "<unk>", 5);
    for (int r = 0; r < 4; r++)
        if (tok->role[r] >= 0) tok->type[tok->role[r]] |= GL_PIECE_CONTROL;
    for (int r = GL_TOKEN_BOS; r <= GL_TOKEN_EOS; r++) {
        int32_t id = (int32_t)tok->role[r];
        bool listed = false;
        for (int i = 0; i < tok->n_added; i++) listed |= tok->added[i] == id;
        if (id >= 0 && !listed && tok->n_added < (int)(sizeof tok->added / sizeof tok->added[0]))
            tok->added[tok->n_added++] = id;
    }
    for (int64_t id = 0; id < n; id++) {
        size_t l;
        const char *s = gl_strtab_get(&tok->pieces, id, &l);
        int b;
        gl_status st;
        if (is_byte_piece(s, l, &b)) {
            tok->type[id] |= GL_PIECE_BYTE;
            if (tok->byte_id[b] < 0) tok->byte_id[b] = (int32_t)id;
            char c = (char)b;
            st = gl_strtab_add(&tok->text, &c, 1);
        } else if (tok->type[id] & GL_PIECE_CONTROL && id != tok->role[GL_TOKEN_UNK]) {
            st = gl_strtab_add(&tok->text, "", 0); /* <s>, </s>: markers, not text */
        } else if (tok->type[id] != GL_PIECE_NORMAL) {
            st = gl_strtab_add(&tok->text, s, l);
        } else {
            char *buf = malloc(l + 1);
            size_t k = 0;
            if (!buf) return gl_error(GL_ENOMEM, "%s: out of memory", op);
            for (size_t i = 0; i < l;) {
                if (i + 3 <= l && memcmp(s + i, SPACE_PIECE, 3) == 0) buf[k++] = ' ', i += 3;
                else buf[k++] = s[i++];
            }
            st = gl_strtab_add(&tok->text, buf, k);
            free(buf);
        }
        if (st) return st;
    }
    return GL_OK;
}

typedef struct {
    float score;
    int32_t left, right, merged;
} split;

static int cmp_split(const void *pa, const void *pb)
{
    const split *a = pa, *b = pb;
    if (a->score != b->score) return a->score > b->score ? -1 : 1;
    if (a->left != b->left) return a->left < b->left ? -1 : 1;
    return (a->right > b->right) - (a->right < b->right);
}

/* A bound on the bytes gl_spm_merges_from_scores hashes (about 2 s); real
 * vocabularies need a few million (LLaMA's 32,000 pieces: under 2 million). */
#define MERGE_HASH_BYTES (1ull << 31)

/* has[l] = 1 when some normal piece is l bytes long (malloc'd, *maxl + 1 entries). */
static uint8_t *normal_lengths(const gl_tokenizer *tok, size_t *maxl)
{
    *maxl = 0;
    for (int64_t id = 0; id < tok->pieces.n; id++) {
        size_t l = tok->pieces.off[id + 1] - tok->pieces.off[id];
        if (tok->type[id] == GL_PIECE_NORMAL && l > *maxl) *maxl = l;
    }
    uint8_t *has = calloc(*maxl + 1, 1);
    for (int64_t id = 0; has && id < tok->pieces.n; id++)
        if (tok->type[id] == GL_PIECE_NORMAL) has[tok->pieces.off[id + 1] - tok->pieces.off[id]] = 1;
    return has;
}

gl_status gl_spm_merges_from_scores(gl_tokenizer *tok, const char *op)
{
    size_t n = 0, cap = 1024, maxl;
    split *all = malloc(cap * sizeof *all);
    /* Splits whose halves have no piece of their length are skipped without
     * hashing them: a long piece would otherwise cost time quadratic in its length. */
    uint8_t *has = normal_lengths(tok, &maxl);
    if (!all || !has) {
        free(all);
        free(has);
        return gl_error(GL_ENOMEM, "%s: out of memory", op);
    }
    /* What is left to hash is bounded up front: a vocabulary of every prefix of
     * one long string passes the length test at every split (cubic time). */
    uint64_t bytes = 0;
    for (int64_t id = 0; id < tok->pieces.n; id++) {
        size_t l = tok->pieces.off[id + 1] - tok->pieces.off[id];
        for (size_t i = 1; tok->type[id] == GL_PIECE_NORMAL && i < l; i++) bytes += has[i] && has[l - i] ? l : 0;
    }
    if (bytes > MERGE_HASH_BYTES) {
        free(all);
        free(has);
        return gl_error(GL_EFORMAT, "%s: rebuilding the merges would hash %llu bytes of piece halves (at most %llu): "
                        "the vocabulary's pieces are too long", op, (unsigned long long)bytes,
                        (unsigned long long)MERGE_HASH_BYTES);
    }
    for (int64_t id = 0; id < tok->pieces.n; id++) {
        if (tok->type[id] != GL_PIECE_NORMAL) continue;
        size_t l;
        const char *s = gl_strtab_get(&tok->pieces, id, &l);
        uint32_t cp;
        for (size_t i = 0, k; i < l; i += k) {
            k = (size_t)gl_utf8_decode((const unsigned char *)s + i, l - i, &cp);
            if (!k) k = 1;
            if (i == 0 || !has[i] || !has[l - i]) continue;
            int64_t a = gl_strtab_find(&tok->pieces, s, i), b = gl_strtab_find(&tok->pieces, s + i, l - i);
            if (a < 0 || b < 0 || tok->type[a] != GL_PIECE_NORMAL || tok->type[b] != GL_PIECE_NORMAL) continue;
            if (n == cap) {
                split *m = realloc(all, 2 * cap * sizeof *all);
                if (!m) {
                    free(all);
                    free(has);
                    return gl_error(GL_ENOMEM, "%s: out of memory", op);
                }
                all = m;
                cap *= 2;
            }
            all[n++] = (split){tok->scores[id], (int32_t)a, (int32_t)b, (int32_t)id};
        }
    }
    free(has);
    qsort(all, n, sizeof *all, cmp_split);
    gl_status st = GL_OK;
    for (size_t i = 0; i < n && !st; i++) st = gl_pairmap_put(&tok->merges, all[i].left, all[i].right, all[i].merged, (int32_t)i);
    free(all);
    return st;
}

gl_status gl_spm_index_merges(gl_tokenizer *tok, const char *op)
{
    if (!(tok->in_merge = calloc((size_t)tok->pieces.n, 1))) return gl_error(GL_ENOMEM, "%s: out of memory", op);
    for (size_t i = 0; i < tok->merges.cap; i++) {
        uint64_t k = tok->merges.slots[i].key;
        if (k == UINT64_MAX) continue;
        tok->in_merge[k >> 32] = tok->in_merge[k & 0xFFFFFFFFu] = 1;
    }
    tok->space_id = (int32_t)gl_strtab_find(&tok->pieces, SPACE_PIECE, 3);
    tok->space_wall = tok->space_id >= 0;
    for (int64_t id = 0; id < tok->pieces.n && tok->space_wall; id++) {
        size_t l;
        const char *s = gl_strtab_get(&tok->pieces, id, &l), *p = s;
        while (p < s + l && (p = memmem(p, (size_t)(s + l - p), SPACE_PIECE, 3))) {
            if (p > s && !(p - s >= 3 && memcmp(p - 3, SPACE_PIECE, 3) == 0)) tok->space_wall = false;
            p += 3;
        }
    }
    return GL_OK;
}

/* llama2.c's file: validated field by field, sizes checked before use. */
static gl_status parse_llama2c(gl_tokenizer *tok, const unsigned char *d, size_t len, const char *path)
{
    if (len < 4) return gl_error(GL_EFORMAT, "llama2c: '%s' is truncated: %zu bytes, no header", path, len);
    uint32_t max_len;
    memcpy(&max_len, d, 4);
    size_t off = 4, cap = 0;
    for (int64_t i = 0; off < len; i++) {
        if (len - off < 8)
            return gl_error(GL_EFORMAT, "llama2c: '%s' is truncated inside piece %lld (at byte %zu)", path,
                            (long long)i, off);
        float score;
        int32_t l;
        memcpy(&score, d + off, 4);
        memcpy(&l, d + off + 4, 4);
        off += 8;
        if (l < 0) return gl_error(GL_EFORMAT, "llama2c: '%s': piece %lld has a negative length %d", path, (long long)i, l);
        if ((uint32_t)l > max_len)
            return gl_error(GL_EFORMAT, "llama2c: '%s': piece %lld has length %d, over the header's maximum %u", path,
                            (long long)i, l, max_len);
        if ((size_t)l > len - off)
            return gl_error(GL_EFORMAT, "llama2c: '%s' is truncated: piece %lld needs %d bytes, %zu remain", path,
                            (long long)i, l, len - off);
        if (!isfinite(score) && !(isinf(score) && score < 0))
            return gl_error(GL_EFORMAT, "llama2c: '%s': piece %lld has score %g", path, (long long)i, (double)score);
        const char *s = (const char *)d + off;
        size_t sl = (size_t)l;
        off += sl;
        /* llama2.c's export: "\n<s>\n" for the control pieces, " " for "▁" elsewhere */
        if (i < 3 && sl >= 2 && s[0] == '\n' && s[sl - 1] == '\n') s++, sl -= 2;
        char *buf = malloc(3 * sl + 1);
        if (!buf) return gl_error(GL_ENOMEM, "llama2c: out of memory");
        size_t k = 0;
        for (size_t j = 0; j < sl; j++) {
            if (s[j] == ' ' && i >= 3) memcpy(buf + k, SPACE_PIECE, 3), k += 3;
            else buf[k++] = s[j];
        }
        gl_status st = gl_strtab_add(&tok->pieces, buf, k);
        free(buf);
        if (st) return st;
        if ((size_t)i >= cap) {
            cap = cap ? 2 * cap : 1024;
            float *sc = realloc(tok->scores, cap * sizeof *sc);
            if (!sc) return gl_error(GL_ENOMEM, "llama2c: out of memory");
            tok->scores = sc;
        }
        tok->scores[i] = score;
    }
    if (tok->pieces.n < 3)
        return gl_error(GL_EFORMAT, "llama2c: '%s' has %lld pieces; a vocabulary needs at least <unk>, <s>, </s>", path,
                        (long long)tok->pieces.n);
    return GL_OK;
}

gl_tokenizer *gl_tokenizer_llama2c_load(const char *path)
{
    size_t len;
    char *data = gl_text_read_file(path, &len, "llama2c");
    if (!data) return NULL;
    gl_tokenizer *tok = gl_tokenizer_alloc(GL_TOKENIZER_SPM, path);
    if (!tok) {
        free(data);
        return NULL;
    }
    gl_status st = parse_llama2c(tok, (const unsigned char *)data, len, path);
    free(data);
    if (!st) {
        /* llama2.c's fixed ids */
        tok->role[GL_TOKEN_UNK] = 0, tok->role[GL_TOKEN_BOS] = 1, tok->role[GL_TOKEN_EOS] = 2;
        if (!(tok->type = calloc((size_t)tok->pieces.n, 1))) st = gl_error(GL_ENOMEM, "llama2c: out of memory");
    }
    if (st || gl_spm_finish(tok, "llama2c") || gl_spm_merges_from_scores(tok, "llama2c") ||
        gl_spm_index_merges(tok, "llama2c")) {
        gl_tokenizer_free(tok);
        return NULL;
    }
    return tok;
}

/* The id of bytes s[0..l) as one normal piece, else its byte tokens. */
static gl_status push_symbol(gl_tokenizer *tok, const char *s, size_t l, gl_idbuf *out)
{
    int64_t id = gl_strtab_find(&tok->pieces, s, l);
    if (id >= 0 && tok->type[id] == GL_PIECE_NORMAL) {
        out->v[out->n++] = (int32_t)id;
        return GL_OK;
    }
    for (size_t i = 0; i < l; i++) {
        int32_t b = tok->byte_id[(unsigned char)s[i]];
        if (b < 0 && (b = (int32_t)tok->role[GL_TOKEN_UNK]) < 0)
            return gl_error(GL_EINVAL, "sentencepiece: byte 0x%02X has no token and the vocabulary has no <unk>",
                            (unsigned char)s[i]);
        out->v[out->n++] = b;
    }
    return GL_OK;
}

gl_status gl_spm_encode(gl_tokenizer *tok, const char *text, size_t len, bool at_start, gl_idbuf *out)
{
    /* a byte yields at most three symbols (a space without a "▁" piece) */
    gl_status st = gl_idbuf_reserve(out, 3 * (int64_t)len + 3);
    if (st) return st;
    int64_t start = out->n;
    if (at_start && len && (st = push_symbol(tok, SPACE_PIECE, 3, out))) return st;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        int k = gl_utf8_decode((const unsigned char *)text + i, len - i, &cp);
        if (k == 0) k = 1; /* a stray byte: its byte token, so decode gives it back */
        if (k == 1 && text[i] == ' ') st = push_symbol(tok, SPACE_PIECE, 3, out);
        else st = push_symbol(tok, text + i, (size_t)k, out);
        if (st) return st;
        i += (size_t)k;
    }
    /* Walls: a symbol no merge uses ("\n" as <0x0A>), and with space_wall a
     * "▁" after another symbol (a word start). Runs between walls merge
     * independently, which keeps the heap small on long texts. */
    int32_t *v = out->v, sp = tok->space_wall ? tok->space_id : -1;
    int64_t k = start;
    for (int64_t i = start, j; i < out->n; i = j) {
        for (j = i; j < out->n && tok->in_merge[v[j]] && !(j > i && v[j] == sp && v[j - 1] != sp);) j++;
        if (j == i) j++;
        int64_t n = gl_bpe_merge(&tok->merges, &tok->work, out->v + i, j - i);
        if (n < 0) return gl_error_code();
        memmove(v + k, v + i, (size_t)n * sizeof *v);
        k += n;
    }
    out->n = k;
    return GL_OK;
}
