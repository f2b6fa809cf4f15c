/* Tokenizers: text <-> token ids, one object for three kinds.
 *
 *  - GL_TOKENIZER_CHAR: one token per Unicode code point of a vocabulary of
 *    sorted unique characters built from a corpus (nanoGPT's shakespeare_char).
 *  - GL_TOKENIZER_GPT2: GPT-2 byte-level BPE (encoder.json + vocab.bpe, or a
 *    Hugging Face tokenizer.json with a ByteLevel pre-tokenizer). Ids equal
 *    tiktoken's "gpt2" encoding.
 *  - GL_TOKENIZER_SPM: SentencePiece-style BPE with byte fallback (LLaMA), from
 *    a llama2.c tokenizer.bin or a Hugging Face tokenizer.json. Ids equal
 *    llama-tokenizer-js (the HF LLaMA tokenizer): a dummy "▁" before the text,
 *    spaces as "▁", characters missing from the vocabulary as <0xNN> byte
 *    tokens, then merges in the order of the merge list (from tokenizer.bin:
 *    merged-piece score descending, then left id, then right id), equal merges
 *    left to right.
 *
 * encode() mutates caches and scratch buffers: use one tokenizer from one
 * thread at a time. Everything that reads a file validates it and fails with
 * GL_EFORMAT and a message naming the file and the offending entry. */
#ifndef GL_TEXT_TOKENIZER_H
#define GL_TEXT_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "core/tensor.h"

typedef struct gl_tokenizer gl_tokenizer;

typedef enum { GL_TOKENIZER_CHAR, GL_TOKENIZER_GPT2, GL_TOKENIZER_SPM } gl_tokenizer_kind;

/* encode flags */
enum {
    GL_TOKENIZE_BOS = 1,    /* prepend the BOS id (an error when there is none) */
    GL_TOKENIZE_EOS = 2,    /* append the EOS id (an error when there is none) */
    GL_TOKENIZE_SPECIAL = 4 /* recognize added special tokens (<|endoftext|>, <s>) in the text;
                             * without it they are encoded as plain text */
};

/* decode flags */
enum {
    GL_DETOKENIZE_KEEP_PREFIX = 1 /* SPM: keep the dummy-prefix space that decode strips from a
                                   * first piece (at the start or right after BOS) */
};

typedef enum { GL_TOKEN_BOS, GL_TOKEN_EOS, GL_TOKEN_PAD, GL_TOKEN_UNK } gl_token_role;

/* A char tokenizer over the sorted unique code points of corpus (valid UTF-8). */
gl_tokenizer *gl_tokenizer_char_new(const char *corpus, size_t len);
/* Back from gl_tokenizer_serialize's string. */
gl_tokenizer *gl_tokenizer_char_parse(const char *s, size_t len);
/* GPT-2 files: encoder.json (piece -> id) and vocab.bpe (merges in rank order). */
gl_tokenizer *gl_tokenizer_gpt2_load(const char *encoder_json_path, const char *vocab_bpe_path);
/* llama2.c tokenizer.bin: u32 max piece length, then per piece f32 score,
 * i32 byte length, bytes. Ids 0/1/2 are <unk>/<s>/</s>, ids of "<0xNN>" pieces
 * are byte-fallback tokens. */
gl_tokenizer *gl_tokenizer_llama2c_load(const char *path);
/* Hugging Face tokenizer.json with model.type "BPE": GPT2 when the
 * pre-tokenizer is ByteLevel, SPM when byte_fallback is set or "▁" stands for
 * spaces (Metaspace, or a normalizer that replaces " " with "▁"). */
gl_tokenizer *gl_tokenizer_json_load(const char *path);
void gl_tokenizer_free(gl_tokenizer *tok);

gl_tokenizer_kind gl_tokenizer_kind_of(const gl_tokenizer *tok);
/* "char", "gpt2" or "sentencepiece". */
const char *gl_tokenizer_kind_name(const gl_tokenizer *tok);
int64_t gl_tokenizer_vocab_size(const gl_tokenizer *tok);
/* The id playing role, or -1 when the vocabulary has none. */
int64_t gl_tokenizer_special_id(const gl_tokenizer *tok, gl_token_role role);
/* The path the tokenizer was loaded from (NULL for char tokenizers). */
const char *gl_tokenizer_source(const gl_tokenizer *tok);

/* text[0..len) -> an i64 tensor [n] of ids. NULL with an error on unknown
 * characters (char), invalid UTF-8 (char, gpt2) or a missing BOS/EOS. */
gl_tensor *gl_tokenizer_encode(gl_tokenizer *tok, const char *text, size_t len, int flags);
/* ids -> bytes (malloc'd, NUL-terminated, length in *len). NULL with an error
 * on an id out of range. Byte tokens may leave partial UTF-8 when the ids are
 * a slice of a longer sequence. */
char *gl_tokenizer_decode(const gl_tokenizer *tok, const int64_t *ids, int64_t n, int flags, size_t *len);

/* The vocabulary string of id ("Ġthe", "▁the", "<0x0A>", "e"), NULL when out
 * of range. Not NUL-terminated: its length is in *len. */
const char *gl_tokenizer_piece(const gl_tokenizer *tok, int64_t id, size_t *len);
/* The id of a vocabulary string, -1 when absent. */
int64_t gl_tokenizer_id(const gl_tokenizer *tok, const char *piece, size_t len);
/* SPM piece score (llama2.c's), 0 for other kinds or out of range. */
float gl_tokenizer_score(const gl_tokenizer *tok, int64_t id);

/* A string that stands for the tokenizer, for checkpoint metadata: a char
 * vocabulary is "genlab-char/1\n" + its characters (gl_tokenizer_char_parse
 * reads it back); a loaded one is "genlab-tokenizer-file/1\n" + the path it
 * came from. malloc'd, NUL-terminated. */
char *gl_tokenizer_serialize(const gl_tokenizer *tok, size_t *len);

/* s[0..len) made safe for a one-line error message: control bytes as \n,
 * \t, \r or \xNN, cut with "..." to fit buf (cap >= 8). Returns buf. */
const char *gl_text_show(const char *s, size_t len, char *buf, size_t cap);

#endif
