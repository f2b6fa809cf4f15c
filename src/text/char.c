/* Character-level tokenizer: the vocabulary is the sorted set of Unicode code
 * points of a corpus (as nanoGPT's shakespeare_char sorts its characters),
 * one id per code point. It serializes to "genlab-char/1\n" followed by the
 * characters, so a model can carry it in checkpoint metadata. */
#include <stdlib.h>
#include <string.h>

#include "text/tokenizer_impl.h"

#define MAGIC "genlab-char/1\n"
#define N_CODEPOINTS 0x110000

static gl_tokenizer *from_codepoints(const uint8_t *seen)
{
    gl_tokenizer *tok = gl_tokenizer_alloc(GL_TOKENIZER_CHAR, NULL);
    if (!tok) return NULL;
    for (uint32_t cp = 0; cp < N_CODEPOINTS; cp++) {
        if (!(seen[cp >> 3] >> (cp & 7) & 1)) continue;
        char u[4];
        int l = gl_utf8_encode(cp, u);
        if (gl_strtab_add(&tok->pieces, u, (size_t)l) || gl_strtab_add(&tok->text, u, (size_t)l)) {
            gl_tokenizer_free(tok);
            return NULL;
        }
    }
    if (!(tok->type = calloc((size_t)tok->pieces.n, 1))) {
        gl_tokenizer_free(tok);
        return gl_error_null(GL_ENOMEM, "char: out of memory");
    }
    return tok;
}

/* Marks the code points of s in seen; sorted (optional) requires them to be
 * strictly increasing. */
static gl_status scan(const char *s, size_t len, uint8_t *seen, bool sorted, const char *op)
{
    uint32_t last = 0;
    int64_t pos = 0;
    for (size_t i = 0; i < len; pos++) {
        uint32_t cp;
        int k = gl_utf8_decode((const unsigned char *)s + i, len - i, &cp);
        if (!k) return gl_error(GL_EINVAL, "%s: not valid UTF-8 at byte %zu", op, i + 1);
        if (sorted && pos > 0 && cp <= last)
            return gl_error(GL_EFORMAT, "%s: character %lld (U+%04X) is out of order or repeated", op,
                            (long long)pos + 1, (unsigned)cp);
        seen[cp >> 3] |= (uint8_t)(1u << (cp & 7));
        last = cp;
        i += (size_t)k;
    }
    return GL_OK;
}

static gl_tokenizer *build(const char *s, size_t len, bool sorted, const char *op)
{
    if (!len) return gl_error_null(GL_EINVAL, "%s: the text is empty, so there is no vocabulary", op);
    uint8_t *seen = calloc(N_CODEPOINTS / 8, 1);
    if (!seen) return gl_error_null(GL_ENOMEM, "%s: out of memory", op);
    gl_tokenizer *tok = scan(s, len, seen, sorted, op) ? NULL : from_codepoints(seen);
    free(seen);
    return tok;
}

gl_tokenizer *gl_tokenizer_char_new(const char *corpus, size_t len)
{
    return build(corpus, len, false, "char");
}

gl_tokenizer *gl_tokenizer_char_parse(const char *s, size_t len)
{
    size_t m = sizeof MAGIC - 1;
    if (len < m || memcmp(s, MAGIC, m) != 0)
        return gl_error_null(GL_EFORMAT, "char_from_string: not a serialized char vocabulary (it must start with "
                                         "\"genlab-char/1\\n\")");
    return build(s + m, len - m, true, "char_from_string");
}

/* A short printable form of the character at s (itself, or an escape). */
static const char *show(const char *s, int k, char *buf)
{
    unsigned char c = (unsigned char)s[0];
    if (k == 1 && (c < 0x20 || c == 0x7F)) {
        static const char *names[] = {[9] = "\\t", [10] = "\\n", [13] = "\\r"};
        const char *n = c < 14 ? names[c] : NULL;
        if (n) return n;
        buf[0] = '?', buf[1] = '\0';
        return buf;
    }
    memcpy(buf, s, (size_t)k);
    buf[k] = '\0';
    return buf;
}

gl_status gl_char_encode(gl_tokenizer *tok, const char *text, size_t len, gl_idbuf *out)
{
    gl_status st = gl_idbuf_reserve(out, (int64_t)len);
    if (st) return st;
    int64_t pos = 0;
    for (size_t i = 0; i < len; pos++) {
        uint32_t cp;
        int k = gl_utf8_decode((const unsigned char *)text + i, len - i, &cp);
        if (!k) return gl_error(GL_EINVAL, "char: the text is not valid UTF-8 at byte %zu", i + 1);
        int64_t id = gl_strtab_find(&tok->pieces, text + i, (size_t)k);
        if (id < 0) {
            char buf[8];
            return gl_error(GL_EINVAL, "char: character '%s' (U+%04X) at position %lld (byte %zu) is not in the vocabulary",
                            show(text + i, k, buf), (unsigned)cp, (long long)pos + 1, i + 1);
        }
        out->v[out->n++] = (int32_t)id;
        i += (size_t)k;
    }
    return GL_OK;
}
