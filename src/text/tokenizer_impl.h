/* Inside the tokenizers: the object, its string table, the merge table and
 * the helpers the kind-specific files share. Not installed. */
#ifndef GL_TEXT_TOKENIZER_IMPL_H
#define GL_TEXT_TOKENIZER_IMPL_H

#include <stdbool.h>

#include "text/tokenizer.h"

/* Strings with ids 0..n-1 in one arena, with a hash index (first id wins
 * for duplicates). */
typedef struct {
    char *data;
    size_t len, cap;
    size_t *off; /* n + 1 offsets */
    int64_t n, ncap;
    int32_t *slots; /* open addressing; -1 empty */
    size_t nslots;
} gl_strtab;

gl_status gl_strtab_add(gl_strtab *t, const char *s, size_t len);
int64_t gl_strtab_find(const gl_strtab *t, const char *s, size_t len);
static inline const char *gl_strtab_get(const gl_strtab *t, int64_t i, size_t *len)
{
    *len = t->off[i + 1] - t->off[i];
    return t->data + t->off[i];
}
void gl_strtab_clear(gl_strtab *t);

/* Merge table: pair (left id, right id) -> merged id and rank (lower first).
 * One slot holds all three, so a lookup costs one cache miss. */
typedef struct {
    uint64_t key; /* left << 32 | right; UINT64_MAX when empty */
    int32_t merged, rank;
} gl_pair_slot;

typedef struct {
    gl_pair_slot *slots;
    size_t cap, n;
} gl_pairmap;

/* Slot hash of a pair key (a << 32 | b): splitmix64's finalizer mixes both halves into the low bits. */
static inline uint64_t gl_pair_hash(uint64_t k)
{
    k = (k ^ (k >> 30)) * 0xBF58476D1CE4E5B9ull;
    k = (k ^ (k >> 27)) * 0x94D049BB133111EBull;
    return k ^ (k >> 31);
}

gl_status gl_pairmap_put(gl_pairmap *m, int32_t a, int32_t b, int32_t merged, int32_t rank);
void gl_pairmap_clear(gl_pairmap *m);

/* Scratch of the merge engine, reused between calls. */
typedef struct {
    int32_t *next, *prev;
    void *heap;
    size_t cap, heap_cap;
} gl_bpe_work;

/* Applies merges to ids[0..n) in place (lowest rank first, equal ranks left
 * to right) and returns the new count, or -1 with an error (no memory). */
int64_t gl_bpe_merge(const gl_pairmap *m, gl_bpe_work *w, int32_t *ids, int64_t n);
void gl_bpe_work_clear(gl_bpe_work *w);

/* Growable id list. */
typedef struct {
    int32_t *v;
    int64_t n, cap;
} gl_idbuf;

gl_status gl_idbuf_push(gl_idbuf *b, int32_t id);
gl_status gl_idbuf_reserve(gl_idbuf *b, int64_t extra);

/* The GPT-2 pre-tokenizer (pretokenize.c). */
typedef struct gl_pretok gl_pretok;
gl_pretok *gl_pretok_new(void);
/* The next pre-token of text[0..len) at or after *pos: [*start, *end). false at the end. */
bool gl_pretok_next(gl_pretok *p, const char *text, size_t len, size_t *pos, size_t *start, size_t *end);
void gl_pretok_free(gl_pretok *p);

/* Length of the valid UTF-8 sequence at s[0..n) (1..4), 0 when invalid;
 * the code point goes to *cp. */
int gl_utf8_decode(const unsigned char *s, size_t n, uint32_t *cp);
/* Writes cp as UTF-8 to out (4 bytes room) and returns its length. */
int gl_utf8_encode(uint32_t cp, char *out);
/* Byte offset of the first invalid UTF-8 sequence, or len when all is valid. */
size_t gl_utf8_check(const char *s, size_t len);

enum { GL_PIECE_NORMAL = 0, GL_PIECE_CONTROL = 1, GL_PIECE_BYTE = 2, GL_PIECE_ADDED = 4 };

struct gl_tokenizer {
    gl_tokenizer_kind kind;
    gl_strtab pieces;    /* vocabulary strings by id */
    gl_strtab text;      /* what each id decodes to */
    uint8_t *type;       /* GL_PIECE_* per id */
    float *scores;       /* SPM from tokenizer.bin; NULL otherwise */
    uint8_t *in_merge;   /* SPM: 1 for ids that some merge uses; the others split the text */
    int32_t space_id;    /* SPM: the "▁" piece, -1 absent */
    bool space_wall;     /* SPM: no piece has "▁" after another character, so "▁" after
                          * a non-"▁" symbol splits the text too */
    gl_pairmap merges;
    int64_t role[4];     /* gl_token_role -> id or -1 */
    int32_t byte_id[256]; /* GPT2: the piece of each byte; SPM: the <0xNN> fallback (-1 absent) */
    int32_t added[8];    /* added special tokens matched in text with GL_TOKENIZE_SPECIAL */
    int n_added;
    gl_pretok *pretok;   /* GPT2 */
    gl_strtab cache;     /* GPT2: pre-token -> cache_ids[cache_off[i] ..] */
    gl_idbuf cache_ids;
    int64_t *cache_off;
    int64_t cache_cap;
    gl_bpe_work work;
    gl_idbuf scratch;
    char *source;
};

gl_tokenizer *gl_tokenizer_alloc(gl_tokenizer_kind kind, const char *source);
/* Reads a whole file (malloc'd, NUL-terminated). op names the caller in errors. */
char *gl_text_read_file(const char *path, size_t *len, const char *op);

/* Kind-specific parts. encode_* append the ids of text[0..len) to out;
 * at_start says the segment begins the text (SPM's dummy prefix). */
gl_status gl_char_encode(gl_tokenizer *tok, const char *text, size_t len, gl_idbuf *out);
gl_status gl_gpt2_encode(gl_tokenizer *tok, const char *text, size_t len, gl_idbuf *out);
gl_status gl_spm_encode(gl_tokenizer *tok, const char *text, size_t len, bool at_start, gl_idbuf *out);
/* Fill byte tables, decoded text and specials once pieces and merges are in. */
gl_status gl_gpt2_finish(gl_tokenizer *tok, const char *op);
gl_status gl_spm_finish(gl_tokenizer *tok, const char *op);
/* Merges of an SPM vocabulary from its scores (tokenizer.bin has no merge list). */
gl_status gl_spm_merges_from_scores(gl_tokenizer *tok, const char *op);
/* Fills in_merge once the merges are in. */
gl_status gl_spm_index_merges(gl_tokenizer *tok, const char *op);

#endif
