/* GPT-2's pre-tokenizer: the regex of openai/gpt-2's encoder.py (and
 * tiktoken's "gpt2" pat_str), run by PCRE2 with Unicode properties and its
 * JIT. The caller validates UTF-8 once; matching then skips PCRE2's per-call
 * check, which would otherwise rescan the rest of the text at every match. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdlib.h>

#include "text/tokenizer_impl.h"

static const char GPT2_PATTERN[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

struct gl_pretok {
    pcre2_code *re;
    pcre2_match_data *md;
};

gl_pretok *gl_pretok_new(void)
{
    int err;
    PCRE2_SIZE at;
    gl_pretok *p = calloc(1, sizeof *p);
    if (!p) return gl_error_null(GL_ENOMEM, "pretokenize: out of memory");
    p->re = pcre2_compile((PCRE2_SPTR)GPT2_PATTERN, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &err, &at, NULL);
    if (!p->re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        free(p);
        return gl_error_null(GL_EINVAL, "pretokenize: PCRE2 rejects the GPT-2 pattern at %zu: %s", (size_t)at,
                             (const char *)msg);
    }
    pcre2_jit_compile(p->re, PCRE2_JIT_COMPLETE); /* without JIT, pcre2_match interprets: same result */
    if (!(p->md = pcre2_match_data_create_from_pattern(p->re, NULL))) {
        gl_pretok_free(p);
        return gl_error_null(GL_ENOMEM, "pretokenize: out of memory");
    }
    return p;
}

void gl_pretok_free(gl_pretok *p)
{
    if (!p) return;
    pcre2_match_data_free(p->md);
    pcre2_code_free(p->re);
    free(p);
}

/* The alternatives cover every character, so matches tile the text; a gap
 * (never seen) would become a pre-token of its own rather than be lost. */
bool gl_pretok_next(gl_pretok *p, const char *text, size_t len, size_t *pos, size_t *start, size_t *end)
{
    if (*pos >= len) return false;
    int rc = pcre2_match(p->re, (PCRE2_SPTR)text, len, *pos, PCRE2_NO_UTF_CHECK, p->md, NULL);
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(p->md);
    if (rc < 0 || ov[1] <= ov[0]) {
        *start = *pos, *end = len;
    } else if (ov[0] > *pos) {
        *start = *pos, *end = ov[0];
    } else {
        *start = ov[0], *end = ov[1];
    }
    *pos = *end;
    return true;
}
