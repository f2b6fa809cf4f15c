/* Byte-pair merging (shared by GPT-2 and SentencePiece BPE) and the GPT-2
 * byte-level tokenizer: the bytes-to-unicode map, encoder.json + vocab.bpe,
 * pre-tokens cached to their ids. */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "text/tokenizer_impl.h"

/* --- the merge engine --------------------------------------------------------
 * A doubly linked list over the symbols and a min-heap of candidate pairs
 * keyed by (rank, position of the left symbol). A popped pair is applied
 * only if both symbols still hold the ids it was queued with and are still
 * neighbours; symbols only grow, so a stale entry never looks valid again.
 * Equal ranks go left to right, which is GPT-2's "merge every occurrence of
 * the best pair in one pass" and SentencePiece's leftmost tie-break. */

typedef struct {
    int32_t rank, left, right, lid, rid, merged;
} cand;

static bool cand_less(const cand *a, const cand *b)
{
    return a->rank != b->rank ? a->rank < b->rank : a->left < b->left;
}

static void heap_push(cand *h, size_t *n, cand c)
{
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!cand_less(&c, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = c;
}

static cand heap_pop(cand *h, size_t *n)
{
    cand top = h[0], last = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && cand_less(&h[c + 1], &h[c])) c++;
        if (!cand_less(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = last;
    return top;
}

static bool lookup(const gl_pairmap *m, int32_t a, int32_t b, int32_t *merged, int32_t *rank)
{
    if (!m->cap) return false;
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    size_t mask = m->cap - 1, i = (size_t)gl_pair_hash(key) & mask;
    for (; m->slots[i].key != UINT64_MAX; i = (i + 1) & mask) {
        if (m->slots[i].key == key) {
            *merged = m->slots[i].merged;
            *rank = m->slots[i].rank;
            return true;
        }
    }
    return false;
}

static gl_status work_reserve(gl_bpe_work *w, int64_t n)
{
    if ((size_t)n > w->cap) {
        size_t cap = w->cap ? w->cap : 64;
        while (cap < (size_t)n) cap *= 2;
        int32_t *next = realloc(w->next, cap * sizeof *next);
        if (next) w->next = next;
        int32_t *prev = realloc(w->prev, cap * sizeof *prev);
        if (prev) w->prev = prev;
        if (!next || !prev) return gl_error(GL_ENOMEM, "bpe: out of memory");
        w->cap = cap;
    }
    return GL_OK;
}

/* The heap holds at most n - 1 live pairs plus two per merge: 3n bounds it. */
static gl_status heap_reserve(gl_bpe_work *w, size_t need)
{
    if (need > w->heap_cap) {
        size_t cap = w->heap_cap ? w->heap_cap : 256;
        while (cap < need) cap *= 2;
        void *h = realloc(w->heap, cap * sizeof(cand));
        if (!h) return gl_error(GL_ENOMEM, "bpe: out of memory");
        w->heap = h;
        w->heap_cap = cap;
    }
    return GL_OK;
}

static void try_push(const gl_pairmap *m, cand *h, size_t *nh, const int32_t *ids, int32_t l, int32_t r)
{
    cand c = {0, l, r, ids[l], ids[r], 0};
    if (lookup(m, c.lid, c.rid, &c.merged, &c.rank)) heap_push(h, nh, c);
}

int64_t gl_bpe_merge(const gl_pairmap *m, gl_bpe_work *w, int32_t *ids, int64_t n)
{
    if (n < 2 || !m->n) return n;
    if (n > INT32_MAX / 4) return gl_error(GL_EINVAL, "bpe: a piece of %lld symbols is too long", (long long)n), -1;
    if (work_reserve(w, n) || heap_reserve(w, (size_t)n * 3)) return -1;
    int32_t *next = w->next, *prev = w->prev;
    cand *h = w->heap;
    size_t nh = 0;
    for (int32_t i = 0; i < n; i++) next[i] = i + 1, prev[i] = i - 1;
    for (int32_t i = 0; i + 1 < n; i++) try_push(m, h, &nh, ids, i, i + 1);
    while (nh) {
        cand c = heap_pop(h, &nh);
        if (ids[c.left] != c.lid || ids[c.right] != c.rid || next[c.left] != c.right) continue;
        ids[c.left] = c.merged;
        ids[c.right] = -1;
        int32_t nx = next[c.right];
        next[c.left] = nx;
        if (nx < n) prev[nx] = c.left;
        if (prev[c.left] >= 0) try_push(m, h, &nh, ids, prev[c.left], c.left);
        if (nx < n) try_push(m, h, &nh, ids, c.left, nx);
    }
    int64_t k = 0;
    for (int32_t i = 0; i < n; i = next[i]) ids[k++] = ids[i];
    return k;
}

void gl_bpe_work_clear(gl_bpe_work *w)
{
    free(w->next);
    free(w->prev);
    free(w->heap);
    memset(w, 0, sizeof *w);
}

/* --- GPT-2 ------------------------------------------------------------------- */

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the
 * rest map to 256, 257, ... in byte order. to_byte is the inverse (-1 elsewhere). */
#define BYTE_CP_MAX 324
static void byte_map(uint32_t to_cp[256], int16_t to_byte[BYTE_CP_MAX])
{
    int n = 0;
    for (int i = 0; i < BYTE_CP_MAX; i++) to_byte[i] = -1;
    for (int i = 0; i < 256; i++) {
        bool printable = (i >= '!' && i <= '~') || (i >= 0xA1 && i <= 0xAC) || (i >= 0xAE && i <= 0xFF);
        to_cp[i] = printable ? (uint32_t)i : (uint32_t)(256 + n++);
        to_byte[to_cp[i]] = (int16_t)i;
    }
}

gl_status gl_gpt2_finish(gl_tokenizer *tok, const char *op)
{
    int64_t n = tok->pieces.n;
    uint32_t to_cp[256];
    int16_t to_byte[BYTE_CP_MAX];
    byte_map(to_cp, to_byte);
    if (!tok->type && !(tok->type = calloc((size_t)n, 1))) return gl_error(GL_ENOMEM, "%s: out of memory", op);
    for (int b = 0; b < 256; b++) {
        char u[4];
        int l = gl_utf8_encode(to_cp[b], u);
        int64_t id = gl_strtab_find(&tok->pieces, u, (size_t)l);
        if (id < 0)
            return gl_error(GL_EFORMAT, "%s: '%s' is not a byte-level vocabulary: byte 0x%02X (\"%.*s\") has no token",
                            op, tok->source, b, l, u);
        tok->byte_id[b] = (int32_t)id;
    }
    int32_t eot = (int32_t)gl_strtab_find(&tok->pieces, "<|endoftext|>", 13);
    if (eot >= 0) {
        tok->role[GL_TOKEN_BOS] = tok->role[GL_TOKEN_EOS] = eot;
        if (!(tok->type[eot] & GL_PIECE_ADDED) && tok->n_added < (int)(sizeof tok->added / sizeof tok->added[0]))
            tok->added[tok->n_added++] = eot;
        tok->type[eot] |= GL_PIECE_ADDED;
    }
    for (int64_t id = 0; id < n; id++) {
        size_t l;
        const char *s = gl_strtab_get(&tok->pieces, id, &l);
        char buf[1024];
        size_t k = 0;
        if (tok->type[id] & GL_PIECE_ADDED) {
            if (gl_strtab_add(&tok->text, s, l)) return GL_ENOMEM;
            continue;
        }
        for (size_t i = 0; i < l;) {
            uint32_t cp;
            int m = gl_utf8_decode((const unsigned char *)s + i, l - i, &cp);
            if (!m) return gl_error(GL_EFORMAT, "%s: '%s': token %lld is not valid UTF-8", op, tok->source, (long long)id);
            int b = cp < BYTE_CP_MAX ? to_byte[cp] : -1;
            if (k + 4 > sizeof buf) return gl_error(GL_EFORMAT, "%s: '%s': token %lld is too long", op, tok->source,
                                                    (long long)id);
            if (b >= 0) buf[k++] = (char)b;
            else memcpy(buf + k, s + i, (size_t)m), k += (size_t)m;
            i += (size_t)m;
        }
        if (gl_strtab_add(&tok->text, buf, k)) return GL_ENOMEM;
    }
    if (!(tok->pretok = gl_pretok_new())) return gl_error_code();
    return GL_OK;
}

static gl_status load_encoder(gl_tokenizer *tok, const char *path)
{
    size_t len;
    char *text = gl_text_read_file(path, &len, "gpt2");
    if (!text) return gl_error_code();
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return gl_error(GL_EFORMAT, "gpt2: '%s' is not a JSON object of token -> id", path);
    }
    int64_t n = cJSON_GetArraySize(root);
    const char **by_id = calloc((size_t)n + 1, sizeof *by_id);
    gl_status st = by_id ? GL_OK : gl_error(GL_ENOMEM, "gpt2: out of memory");
    const cJSON *it;
    cJSON_ArrayForEach(it, root) {
        if (st) break;
        double v = cJSON_IsNumber(it) ? it->valuedouble : -1;
        char q[64];
        if (v < 0 || v >= (double)n || v != (double)(int64_t)v || by_id[(int64_t)v])
            st = gl_error(GL_EFORMAT, "gpt2: '%s': token \"%s\" has id %s; ids must be distinct, 0..%lld", path,
                          gl_text_show(it->string, strlen(it->string), q, sizeof q),
                          cJSON_IsNumber(it) ? "out of range or repeated" : "that is not a number", (long long)n - 1);
        else by_id[(int64_t)v] = it->string;
    }
    for (int64_t i = 0; i < n && !st; i++) st = gl_strtab_add(&tok->pieces, by_id[i], strlen(by_id[i]));
    free(by_id);
    cJSON_Delete(root);
    return st;
}

static gl_status load_merges(gl_tokenizer *tok, const char *path)
{
    size_t len;
    char *text = gl_text_read_file(path, &len, "gpt2");
    if (!text) return gl_error_code();
    gl_status st = GL_OK;
    int32_t rank = 0;
    int64_t line = 0;
    char buf[512];
    for (char *p = text, *end = text + len; p < end && !st;) {
        char *nl = memchr(p, '\n', (size_t)(end - p)), *e = nl ? nl : end;
        line++;
        size_t l = (size_t)(e - p);
        if (l && p[l - 1] == '\r') l--;
        if (l && !(line == 1 && strncmp(p, "#version", 8) == 0)) {
            char *sp = memchr(p, ' ', l);
            if (!sp || sp == p || sp == p + l - 1 || l > sizeof buf)
                st = gl_error(GL_EFORMAT, "gpt2: '%s' line %lld is not \"left right\"", path, (long long)line);
            else {
                size_t la = (size_t)(sp - p), lb = l - la - 1;
                memcpy(buf, p, la);
                memcpy(buf + la, sp + 1, lb);
                int64_t a = gl_strtab_find(&tok->pieces, p, la), b = gl_strtab_find(&tok->pieces, sp + 1, lb);
                int64_t m = gl_strtab_find(&tok->pieces, buf, la + lb);
                char q[64];
                if (a < 0 || b < 0 || m < 0)
                    st = gl_error(GL_EFORMAT, "gpt2: '%s' line %lld: merge \"%s\" uses a token not in the encoder",
                                  path, (long long)line, gl_text_show(p, l, q, sizeof q));
                else st = gl_pairmap_put(&tok->merges, (int32_t)a, (int32_t)b, (int32_t)m, rank++);
            }
        }
        p = e + 1;
    }
    free(text);
    return st;
}

gl_tokenizer *gl_tokenizer_gpt2_load(const char *encoder_json_path, const char *vocab_bpe_path)
{
    gl_tokenizer *tok = gl_tokenizer_alloc(GL_TOKENIZER_GPT2, encoder_json_path);
    if (!tok) return NULL;
    if (load_encoder(tok, encoder_json_path) || load_merges(tok, vocab_bpe_path) || gl_gpt2_finish(tok, "gpt2")) {
        gl_tokenizer_free(tok);
        return NULL;
    }
    return tok;
}

/* Pre-tokens repeat (" the", " and"): their ids are cached, up to a bound. */
#define CACHE_MAX_ENTRIES (1 << 18)
#define CACHE_MAX_BYTES 64

static gl_status cache_put(gl_tokenizer *tok, const char *s, size_t len, const int32_t *ids, int64_t n)
{
    if (len > CACHE_MAX_BYTES) return GL_OK;
    if (tok->cache.n >= CACHE_MAX_ENTRIES) {
        gl_strtab_clear(&tok->cache);
        tok->cache_ids.n = 0;
    }
    int64_t i = tok->cache.n;
    if (i + 2 > tok->cache_cap) {
        int64_t cap = tok->cache_cap ? 2 * tok->cache_cap : 1024;
        int64_t *off = realloc(tok->cache_off, (size_t)cap * sizeof *off);
        if (!off) return gl_error(GL_ENOMEM, "gpt2: out of memory");
        tok->cache_off = off;
        tok->cache_cap = cap;
    }
    gl_status st = gl_idbuf_reserve(&tok->cache_ids, n);
    if (st || (st = gl_strtab_add(&tok->cache, s, len))) return st;
    tok->cache_off[i] = tok->cache_ids.n;
    memcpy(tok->cache_ids.v + tok->cache_ids.n, ids, (size_t)n * sizeof *ids);
    tok->cache_ids.n += n;
    tok->cache_off[i + 1] = tok->cache_ids.n;
    return GL_OK;
}

gl_status gl_gpt2_encode(gl_tokenizer *tok, const char *text, size_t len, gl_idbuf *out)
{
    size_t bad = gl_utf8_check(text, len);
    if (bad < len) return gl_error(GL_EINVAL, "gpt2: the text is not valid UTF-8 at byte %zu", bad + 1);
    size_t pos = 0, s, e;
    gl_status st;
    while (gl_pretok_next(tok->pretok, text, len, &pos, &s, &e)) {
        int64_t hit = e - s <= CACHE_MAX_BYTES ? gl_strtab_find(&tok->cache, text + s, e - s) : -1;
        if (hit >= 0) {
            int64_t a = tok->cache_off[hit], n = tok->cache_off[hit + 1] - a;
            if ((st = gl_idbuf_reserve(out, n))) return st;
            memcpy(out->v + out->n, tok->cache_ids.v + a, (size_t)n * sizeof *out->v);
            out->n += n;
            continue;
        }
        if ((st = gl_idbuf_reserve(out, (int64_t)(e - s)))) return st;
        int32_t *ids = out->v + out->n;
        for (size_t i = s; i < e; i++) ids[i - s] = tok->byte_id[(unsigned char)text[i]];
        int64_t n = gl_bpe_merge(&tok->merges, &tok->work, ids, (int64_t)(e - s));
        if (n < 0) return gl_error_code();
        out->n += n;
        if ((st = cache_put(tok, text + s, e - s, ids, n))) return st;
    }
    return GL_OK;
}
