/* The tokenizer object: shared tables, the encode/decode entry points that
 * dispatch on the kind, and the Hugging Face tokenizer.json reader (both BPE
 * kinds share its layout). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/interrupt.h"
#include "text/tokenizer_impl.h"

/* --- UTF-8 ------------------------------------------------------------------ */

int gl_utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
    if (n == 0) return 0;
    unsigned c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    int len;
    uint32_t v, min;
    if ((c & 0xE0) == 0xC0) len = 2, v = c & 0x1F, min = 0x80;
    else if ((c & 0xF0) == 0xE0) len = 3, v = c & 0x0F, min = 0x800;
    else if ((c & 0xF8) == 0xF0) len = 4, v = c & 0x07, min = 0x10000;
    else return 0;
    if ((size_t)len > n) return 0;
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = v;
    return len;
}

int gl_utf8_encode(uint32_t cp, char *out)
{
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

size_t gl_utf8_check(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        uint32_t cp;
        int k = gl_utf8_decode(u + i, len - i, &cp);
        if (!k) return i;
        i += (size_t)k;
    }
    return len;
}

const char *gl_text_show(const char *s, size_t len, char *buf, size_t cap)
{
    size_t k = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[8];
        if (c == '\n' || c == '\t' || c == '\r') snprintf(esc, sizeof esc, "\\%c", c == '\n' ? 'n' : c == '\t' ? 't' : 'r');
        else if (c < 0x20 || c == 0x7F) snprintf(esc, sizeof esc, "\\x%02X", c);
        else esc[0] = (char)c, esc[1] = '\0';
        size_t l = strlen(esc);
        if (k + l + 4 > cap) { /* room for "..." and the NUL */
            size_t j = k; /* the last character's lead byte is buf[j - 1]; drop it if cut short */
            while (j > 0 && ((unsigned char)buf[j - 1] & 0xC0) == 0x80) j--;
            unsigned char lead = j > 0 ? (unsigned char)buf[j - 1] : 0;
            if (lead >= 0xC0 && k - (j - 1) < (size_t)(lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2)) k = j - 1;
            memcpy(buf + k, "...", 4);
            return buf;
        }
        memcpy(buf + k, esc, l);
        k += l;
    }
    buf[k] = '\0';
    return buf;
}

/* --- string table ------------------------------------------------------------ */

static uint64_t hash_bytes(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

static int64_t strtab_slot(const gl_strtab *t, const char *s, size_t len, bool *found)
{
    size_t mask = t->nslots - 1, i = (size_t)hash_bytes(s, len) & mask;
    for (;; i = (i + 1) & mask) {
        int32_t id = t->slots[i];
        if (id < 0) {
            *found = false;
            return (int64_t)i;
        }
        size_t l = t->off[id + 1] - t->off[id];
        if (l == len && memcmp(t->data + t->off[id], s, len) == 0) {
            *found = true;
            return (int64_t)i;
        }
    }
}

static gl_status strtab_rehash(gl_strtab *t, size_t nslots)
{
    int32_t *slots = malloc(nslots * sizeof *slots);
    if (!slots) return gl_error(GL_ENOMEM, "tokenizer: out of memory");
    memset(slots, 0xFF, nslots * sizeof *slots);
    free(t->slots);
    t->slots = slots;
    t->nslots = nslots;
    for (int64_t id = 0; id < t->n; id++) {
        bool found;
        size_t l;
        const char *s = gl_strtab_get(t, id, &l);
        int64_t slot = strtab_slot(t, s, l, &found);
        if (!found) t->slots[slot] = (int32_t)id;
    }
    return GL_OK;
}

gl_status gl_strtab_add(gl_strtab *t, const char *s, size_t len)
{
    if (t->n >= INT32_MAX - 1) return gl_error(GL_ENOMEM, "tokenizer: too many strings");
    if (t->n + 2 > t->ncap) {
        int64_t ncap = t->ncap ? 2 * t->ncap : 256;
        size_t *off = realloc(t->off, (size_t)ncap * sizeof *off);
        if (!off) return gl_error(GL_ENOMEM, "tokenizer: out of memory");
        if (!t->off) off[0] = 0;
        t->off = off;
        t->ncap = ncap;
    }
    if (t->len + len + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 4096;
        while (cap < t->len + len + 1) cap *= 2;
        char *d = realloc(t->data, cap);
        if (!d) return gl_error(GL_ENOMEM, "tokenizer: out of memory");
        t->data = d;
        t->cap = cap;
    }
    if ((size_t)(t->n + 1) * 2 > t->nslots) {
        gl_status st = strtab_rehash(t, t->nslots ? 2 * t->nslots : 1024);
        if (st) return st;
    }
    if (len) memcpy(t->data + t->len, s, len);
    t->len += len;
    t->data[t->len] = '\0'; /* keeps the last string readable as C text */
    t->off[t->n + 1] = t->len;
    bool found;
    int64_t slot = strtab_slot(t, s, len, &found);
    if (!found) t->slots[slot] = (int32_t)t->n;
    t->n++;
    return GL_OK;
}

int64_t gl_strtab_find(const gl_strtab *t, const char *s, size_t len)
{
    if (!t->nslots) return -1;
    bool found;
    int64_t slot = strtab_slot(t, s, len, &found);
    return found ? t->slots[slot] : -1;
}

void gl_strtab_clear(gl_strtab *t)
{
    free(t->data);
    free(t->off);
    free(t->slots);
    memset(t, 0, sizeof *t);
}

/* --- merge table -------------------------------------------------------------- */

static size_t pair_slot(const gl_pairmap *m, uint64_t key)
{
    size_t mask = m->cap - 1, i = (size_t)gl_pair_hash(key) & mask;
    while (m->slots[i].key != UINT64_MAX && m->slots[i].key != key) i = (i + 1) & mask;
    return i;
}

gl_status gl_pairmap_put(gl_pairmap *m, int32_t a, int32_t b, int32_t merged, int32_t rank)
{
    if ((m->n + 1) * 2 > m->cap) {
        size_t cap = m->cap ? 2 * m->cap : 4096;
        gl_pairmap nm = {malloc(cap * sizeof *nm.slots), cap, 0};
        if (!nm.slots) return gl_error(GL_ENOMEM, "tokenizer: out of memory");
        for (size_t i = 0; i < cap; i++) nm.slots[i].key = UINT64_MAX;
        for (size_t i = 0; i < m->cap; i++) {
            if (m->slots[i].key == UINT64_MAX) continue;
            nm.slots[pair_slot(&nm, m->slots[i].key)] = m->slots[i];
            nm.n++;
        }
        gl_pairmap_clear(m);
        *m = nm;
    }
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    size_t s = pair_slot(m, key);
    if (m->slots[s].key != UINT64_MAX) return GL_OK; /* the first (best) rank of a pair wins */
    m->slots[s] = (gl_pair_slot){key, merged, rank};
    m->n++;
    return GL_OK;
}

void gl_pairmap_clear(gl_pairmap *m)
{
    free(m->slots);
    memset(m, 0, sizeof *m);
}

/* --- id buffer --------------------------------------------------------------------- */

gl_status gl_idbuf_reserve(gl_idbuf *b, int64_t extra)
{
    if (b->n + extra <= b->cap) return GL_OK;
    int64_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + extra) cap *= 2;
    int32_t *v = realloc(b->v, (size_t)cap * sizeof *v);
    if (!v) return gl_error(GL_ENOMEM, "tokenizer: out of memory");
    b->v = v;
    b->cap = cap;
    return GL_OK;
}

gl_status gl_idbuf_push(gl_idbuf *b, int32_t id)
{
    if (b->n == b->cap) {
        gl_status st = gl_idbuf_reserve(b, 1);
        if (st) return st;
    }
    b->v[b->n++] = id;
    return GL_OK;
}

/* --- the object --------------------------------------------------------------------- */

gl_tokenizer *gl_tokenizer_alloc(gl_tokenizer_kind kind, const char *source)
{
    gl_tokenizer *tok = calloc(1, sizeof *tok);
    if (!tok) return gl_error_null(GL_ENOMEM, "tokenizer: out of memory");
    tok->kind = kind;
    for (int i = 0; i < 4; i++) tok->role[i] = -1;
    for (int i = 0; i < 256; i++) tok->byte_id[i] = -1;
    if (source && !(tok->source = strdup(source))) {
        free(tok);
        return gl_error_null(GL_ENOMEM, "tokenizer: out of memory");
    }
    return tok;
}

void gl_tokenizer_free(gl_tokenizer *tok)
{
    if (!tok) return;
    gl_strtab_clear(&tok->pieces);
    gl_strtab_clear(&tok->text);
    gl_strtab_clear(&tok->cache);
    gl_pairmap_clear(&tok->merges);
    gl_bpe_work_clear(&tok->work);
    gl_pretok_free(tok->pretok);
    free(tok->type);
    free(tok->scores);
    free(tok->in_merge);
    free(tok->cache_ids.v);
    free(tok->cache_off);
    free(tok->scratch.v);
    free(tok->source);
    free(tok);
}

char *gl_text_read_file(const char *path, size_t *len, const char *op)
{
    FILE *f = fopen(path, "rb");
    if (!f) return gl_error_null(GL_EIO, "%s: cannot open '%s': %s", op, path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n - 1, f);
        if (n < cap - 1) break;
        char *b = realloc(buf, cap * 2);
        if (!b) free(buf);
        buf = b;
        cap *= 2;
    }
    int bad = ferror(f);
    fclose(f);
    if (!buf) return gl_error_null(GL_ENOMEM, "%s: out of memory reading '%s'", op, path);
    if (bad) {
        free(buf);
        return gl_error_null(GL_EIO, "%s: error reading '%s'", op, path);
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

gl_tokenizer_kind gl_tokenizer_kind_of(const gl_tokenizer *tok) { return tok->kind; }

const char *gl_tokenizer_kind_name(const gl_tokenizer *tok)
{
    switch (tok->kind) {
    case GL_TOKENIZER_CHAR: return "char";
    case GL_TOKENIZER_GPT2: return "gpt2";
    default: return "sentencepiece";
    }
}

int64_t gl_tokenizer_vocab_size(const gl_tokenizer *tok) { return tok->pieces.n; }
int64_t gl_tokenizer_special_id(const gl_tokenizer *tok, gl_token_role role) { return tok->role[role]; }
const char *gl_tokenizer_source(const gl_tokenizer *tok) { return tok->source; }

const char *gl_tokenizer_piece(const gl_tokenizer *tok, int64_t id, size_t *len)
{
    if (id < 0 || id >= tok->pieces.n) return NULL;
    return gl_strtab_get(&tok->pieces, id, len);
}

int64_t gl_tokenizer_id(const gl_tokenizer *tok, const char *piece, size_t len)
{
    return gl_strtab_find(&tok->pieces, piece, len);
}

float gl_tokenizer_score(const gl_tokenizer *tok, int64_t id)
{
    return tok->scores && id >= 0 && id < tok->pieces.n ? tok->scores[id] : 0.0f;
}

/* --- encode / decode ------------------------------------------------------------------ */

static gl_status encode_segment(gl_tokenizer *tok, const char *text, size_t len, bool at_start, gl_idbuf *out)
{
    switch (tok->kind) {
    case GL_TOKENIZER_CHAR: return gl_char_encode(tok, text, len, out);
    case GL_TOKENIZER_GPT2: return gl_gpt2_encode(tok, text, len, out);
    default: return gl_spm_encode(tok, text, len, at_start, out);
    }
}

/* The earliest added special token in text[0..len) (longest at a tie). */
static const char *find_special(const gl_tokenizer *tok, const char *text, size_t len, int32_t *id, size_t *slen)
{
    const char *best = NULL;
    for (int i = 0; i < tok->n_added; i++) {
        size_t l;
        const char *s = gl_strtab_get(&tok->pieces, tok->added[i], &l);
        if (!l) continue;
        const char *p = memmem(text, len, s, l);
        if (p && (!best || p < best || (p == best && l > *slen))) best = p, *id = tok->added[i], *slen = l;
    }
    return best;
}

static gl_status encode_all(gl_tokenizer *tok, const char *text, size_t len, int flags, gl_idbuf *out)
{
    const char *op = gl_tokenizer_kind_name(tok);
    gl_status st;
    if (flags & GL_TOKENIZE_BOS) {
        if (tok->role[GL_TOKEN_BOS] < 0) return gl_error(GL_EINVAL, "%s: the vocabulary has no BOS token", op);
        if ((st = gl_idbuf_push(out, (int32_t)tok->role[GL_TOKEN_BOS]))) return st;
    }
    if (flags & GL_TOKENIZE_EOS && tok->role[GL_TOKEN_EOS] < 0)
        return gl_error(GL_EINVAL, "%s: the vocabulary has no EOS token", op);
    size_t pos = 0;
    while (pos < len) {
        int32_t id = -1;
        size_t slen = 0;
        const char *sp = flags & GL_TOKENIZE_SPECIAL ? find_special(tok, text + pos, len - pos, &id, &slen) : NULL;
        size_t seg = sp ? (size_t)(sp - (text + pos)) : len - pos;
        if (seg && (st = encode_segment(tok, text + pos, seg, pos == 0, out))) return st;
        pos += seg;
        if (sp) {
            if ((st = gl_idbuf_push(out, id))) return st;
            pos += slen;
        }
    }
    if (flags & GL_TOKENIZE_EOS) return gl_idbuf_push(out, (int32_t)tok->role[GL_TOKEN_EOS]);
    return GL_OK;
}

gl_tensor *gl_tokenizer_encode(gl_tokenizer *tok, const char *text, size_t len, int flags)
{
    if (gl_interrupt_poll("encode")) return NULL;
    gl_idbuf *out = &tok->scratch;
    out->n = 0;
    if (encode_all(tok, text, len, flags, out)) return NULL;
    int64_t shape[1] = {out->n};
    gl_tensor *t = gl_tensor_empty(GL_I64, 1, shape);
    if (!t) return NULL;
    int64_t *d = gl_tensor_data(t);
    for (int64_t i = 0; i < out->n; i++) d[i] = out->v[i];
    return t;
}

char *gl_tokenizer_decode(const gl_tokenizer *tok, const int64_t *ids, int64_t n, int flags, size_t *len)
{
    size_t total = 0;
    for (int64_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= tok->pieces.n)
            return gl_error_null(GL_EINVAL, "decode: id %lld at position %lld is outside the vocabulary [0, %lld)",
                                 (long long)ids[i], (long long)i + 1, (long long)tok->pieces.n);
        total += tok->text.off[ids[i] + 1] - tok->text.off[ids[i]];
    }
    char *out = malloc(total + 1);
    if (!out) return gl_error_null(GL_ENOMEM, "decode: out of memory");
    size_t k = 0;
    /* SentencePiece drops the dummy-prefix space of the first piece. */
    bool first = tok->kind == GL_TOKENIZER_SPM && !(flags & GL_DETOKENIZE_KEEP_PREFIX);
    for (int64_t i = 0; i < n; i++) {
        size_t l;
        const char *s = gl_strtab_get(&tok->text, ids[i], &l);
        if (first && ids[i] == tok->role[GL_TOKEN_BOS]) continue;
        if (first && tok->type[ids[i]] == GL_PIECE_NORMAL && l && s[0] == ' ') s++, l--;
        first = false;
        memcpy(out + k, s, l);
        k += l;
    }
    out[k] = '\0';
    *len = k;
    return out;
}

char *gl_tokenizer_serialize(const gl_tokenizer *tok, size_t *len)
{
    const char *magic = tok->kind == GL_TOKENIZER_CHAR ? "genlab-char/1\n" : "genlab-tokenizer-file/1\n";
    const char *body = tok->kind == GL_TOKENIZER_CHAR ? tok->pieces.data : tok->source;
    size_t m = strlen(magic), n = tok->kind == GL_TOKENIZER_CHAR ? tok->pieces.len : strlen(tok->source);
    char *s = malloc(m + n + 1);
    if (!s) return gl_error_null(GL_ENOMEM, "serialize: out of memory");
    memcpy(s, magic, m);
    memcpy(s + m, body, n);
    s[m + n] = '\0';
    *len = m + n;
    return s;
}

/* --- Hugging Face tokenizer.json --------------------------------------------------------- */

/* True when node (an object or a Sequence of them) has an entry of type `type`
 * (looked up in the arrays named by `list`) for which pred holds. */
static bool has_component(const cJSON *node, const char *list, bool (*pred)(const cJSON *))
{
    if (!cJSON_IsObject(node)) return false;
    if (pred(node)) return true;
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(node, list);
    const cJSON *it;
    cJSON_ArrayForEach(it, items) if (has_component(it, list, pred)) return true;
    return false;
}

static bool type_is(const cJSON *n, const char *t)
{
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(n, "type");
    return cJSON_IsString(ty) && strcmp(ty->valuestring, t) == 0;
}

static bool is_byte_level(const cJSON *n) { return type_is(n, "ByteLevel"); }
static bool is_split(const cJSON *n) { return type_is(n, "Split"); }
static bool is_prefix_space(const cJSON *n)
{
    return type_is(n, "ByteLevel") && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(n, "add_prefix_space"));
}
static bool is_metaspace(const cJSON *n) { return type_is(n, "Metaspace"); }
static bool is_space_replace(const cJSON *n)
{
    if (!type_is(n, "Replace")) return false;
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(n, "pattern");
    const cJSON *str = cJSON_GetObjectItemCaseSensitive(pat, "String");
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(n, "content");
    return cJSON_IsString(str) && strcmp(str->valuestring, " ") == 0 && cJSON_IsString(content) &&
           strcmp(content->valuestring, "\xE2\x96\x81") == 0;
}

/* vocab {piece: id} -> pieces by id; added tokens may extend it. */
static gl_status json_vocab(gl_tokenizer *tok, const cJSON *vocab, const cJSON *added, const char *path)
{
    int64_t n = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, vocab) {
        if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble >= 1e7 ||
            it->valuedouble != (double)(int64_t)it->valuedouble) {
            char q[64];
            return gl_error(GL_EFORMAT, "from_json: '%s': vocab entry '%s' has no valid id", path,
                            gl_text_show(it->string, strlen(it->string), q, sizeof q));
        }
        if ((int64_t)it->valuedouble + 1 > n) n = (int64_t)it->valuedouble + 1;
    }
    cJSON_ArrayForEach(it, added) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(it, "content");
        if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble >= 1e7 || !cJSON_IsString(content))
            return gl_error(GL_EFORMAT, "from_json: '%s': an added token lacks a valid id or content", path);
        if ((int64_t)id->valuedouble + 1 > n) n = (int64_t)id->valuedouble + 1;
    }
    if (n == 0) return gl_error(GL_EFORMAT, "from_json: '%s': model.vocab is empty", path);
    const char **by_id = calloc((size_t)n, sizeof *by_id);
    if (!by_id) return gl_error(GL_ENOMEM, "from_json: out of memory");
    cJSON_ArrayForEach(it, vocab) {
        int64_t id = (int64_t)it->valuedouble;
        if (by_id[id]) {
            char q1[64], q2[64];
            gl_error(GL_EFORMAT, "from_json: '%s': tokens \"%s\" and \"%s\" share id %lld", path,
                     gl_text_show(by_id[id], strlen(by_id[id]), q1, sizeof q1),
                     gl_text_show(it->string, strlen(it->string), q2, sizeof q2), (long long)id);
            free(by_id);
            return GL_EFORMAT;
        }
        by_id[id] = it->string;
    }
    cJSON_ArrayForEach(it, added) {
        int64_t id = (int64_t)cJSON_GetObjectItemCaseSensitive(it, "id")->valuedouble;
        if (!by_id[id]) by_id[id] = cJSON_GetObjectItemCaseSensitive(it, "content")->valuestring;
    }
    gl_status st = GL_OK;
    for (int64_t i = 0; i < n && !st; i++) {
        if (!by_id[i]) st = gl_error(GL_EFORMAT, "from_json: '%s': no token has id %lld (ids must be 0..%lld)", path,
                                     (long long)i, (long long)n - 1);
        else st = gl_strtab_add(&tok->pieces, by_id[i], strlen(by_id[i]));
    }
    free(by_id);
    if (st) return st;
    if (!(tok->type = calloc((size_t)n, 1))) return gl_error(GL_ENOMEM, "from_json: out of memory");
    cJSON_ArrayForEach(it, added) {
        const cJSON *special = cJSON_GetObjectItemCaseSensitive(it, "special");
        int64_t id = (int64_t)cJSON_GetObjectItemCaseSensitive(it, "id")->valuedouble;
        if (!cJSON_IsTrue(special)) continue;
        tok->type[id] |= GL_PIECE_ADDED;
        if (tok->n_added < (int)(sizeof tok->added / sizeof tok->added[0])) tok->added[tok->n_added++] = (int32_t)id;
    }
    return GL_OK;
}

/* merges: ["a b", ...] or [["a", "b"], ...], rank = position. */
static gl_status json_merges(gl_tokenizer *tok, const cJSON *merges, const char *path)
{
    int64_t rank = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, merges) {
        const char *a, *b;
        size_t la, lb;
        if (cJSON_IsString(it)) {
            a = it->valuestring;
            const char *sp = strchr(a + (a[0] != '\0'), ' ');
            char q[64];
            if (!sp) return gl_error(GL_EFORMAT, "from_json: '%s': merge %lld \"%s\" is not \"left right\"", path,
                                     (long long)rank + 1, gl_text_show(a, strlen(a), q, sizeof q));
            la = (size_t)(sp - a), b = sp + 1, lb = strlen(b);
        } else if (cJSON_GetArraySize(it) == 2 && cJSON_IsString(cJSON_GetArrayItem(it, 0)) &&
                   cJSON_IsString(cJSON_GetArrayItem(it, 1))) {
            a = cJSON_GetArrayItem(it, 0)->valuestring, la = strlen(a);
            b = cJSON_GetArrayItem(it, 1)->valuestring, lb = strlen(b);
        } else {
            return gl_error(GL_EFORMAT, "from_json: '%s': merge %lld is neither \"a b\" nor [a, b]", path,
                            (long long)rank + 1);
        }
        char buf[512];
        if (la + lb > sizeof buf)
            return gl_error(GL_EFORMAT, "from_json: '%s': merge %lld is too long", path, (long long)rank + 1);
        memcpy(buf, a, la);
        memcpy(buf + la, b, lb);
        int64_t ia = gl_strtab_find(&tok->pieces, a, la), ib = gl_strtab_find(&tok->pieces, b, lb);
        int64_t im = gl_strtab_find(&tok->pieces, buf, la + lb);
        if (ia < 0 || ib < 0 || im < 0) {
            char qa[64], qb[64];
            return gl_error(GL_EFORMAT, "from_json: '%s': merge %lld (\"%s\" \"%s\") uses a piece not in the vocab",
                            path, (long long)rank + 1, gl_text_show(a, la, qa, sizeof qa),
                            gl_text_show(b, lb, qb, sizeof qb));
        }
        gl_status st = gl_pairmap_put(&tok->merges, (int32_t)ia, (int32_t)ib, (int32_t)im, (int32_t)rank);
        if (st) return st;
        rank++;
    }
    return GL_OK;
}

gl_tokenizer *gl_tokenizer_json_load(const char *path)
{
    size_t len;
    char *text = gl_text_read_file(path, &len, "from_json");
    if (!text) return NULL;
    cJSON *root = cJSON_ParseWithLength(text, len);
    if (!root) {
        const char *where = cJSON_GetErrorPtr();
        long off = where && where >= text && where <= text + len ? (long)(where - text) : -1;
        free(text);
        return gl_error_null(GL_EFORMAT, "from_json: '%s' is not valid JSON (error near byte %ld)", path, off);
    }
    free(text);
    gl_tokenizer *tok = NULL;
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if (!type_is(model, "BPE")) {
        const cJSON *ty = cJSON_GetObjectItemCaseSensitive(model, "type");
        char q[64];
        gl_error(GL_EFORMAT, "from_json: '%s': model.type is %s%s%s; only BPE tokenizers are supported", path,
                 cJSON_IsString(ty) ? "\"" : "",
                 cJSON_IsString(ty) ? gl_text_show(ty->valuestring, strlen(ty->valuestring), q, sizeof q) : "missing",
                 cJSON_IsString(ty) ? "\"" : "");
        goto done;
    }
    if (!cJSON_IsObject(vocab) || !cJSON_IsArray(merges) || (added && !cJSON_IsArray(added))) {
        gl_error(GL_EFORMAT, "from_json: '%s': model.vocab must be an object, model.merges and added_tokens arrays",
                 path);
        goto done;
    }
    const cJSON *normalizer = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    bool spm = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(model, "byte_fallback")) ||
               has_component(normalizer, "normalizers", is_space_replace) ||
               has_component(pre, "pretokenizers", is_metaspace);
    bool gpt2 = has_component(pre, "pretokenizers", is_byte_level);
    if (spm == gpt2) {
        gl_error(GL_EFORMAT, "from_json: '%s': cannot tell the BPE flavour (%s)", path,
                 spm ? "both ByteLevel and SentencePiece markers"
                     : "neither a ByteLevel pre-tokenizer nor byte_fallback/Metaspace");
        goto done;
    }
    /* Byte-level BPEs with their own regex (GPT-4, Llama 3), a prefix space
     * (RoBERTa) or a normalizer would get wrong ids from GPT-2's rules. */
    if (gpt2 && (has_component(pre, "pretokenizers", is_split) || has_component(pre, "pretokenizers", is_prefix_space) ||
                 cJSON_IsObject(normalizer))) {
        gl_error(GL_EFORMAT, "from_json: '%s': a byte-level BPE with a %s; only GPT-2's exact pre-tokenization is supported",
                 path, cJSON_IsObject(normalizer) ? "normalizer" :
                       has_component(pre, "pretokenizers", is_split) ? "Split pre-tokenizer (its own regex)" : "prefix space");
        goto done;
    }
    tok = gl_tokenizer_alloc(spm ? GL_TOKENIZER_SPM : GL_TOKENIZER_GPT2, path);
    if (!tok || json_vocab(tok, vocab, added, path) || json_merges(tok, merges, path)) goto fail;
    if (spm) {
        const cJSON *unk = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
        if (cJSON_IsString(unk)) tok->role[GL_TOKEN_UNK] = gl_strtab_find(&tok->pieces, unk->valuestring,
                                                                             strlen(unk->valuestring));
        if (gl_spm_finish(tok, "from_json") || gl_spm_index_merges(tok, "from_json")) goto fail;
    } else if (gl_gpt2_finish(tok, "from_json")) {
        goto fail;
    }
    goto done;
fail:
    gl_tokenizer_free(tok);
    tok = NULL;
done:
    cJSON_Delete(root);
    return tok;
}
