/* gl.tokenizer: the tokenizers of src/text (tokenizer.lua adds gpt2{} and load()).
 *
 *   gl.tokenizer.char(corpus)               -- vocabulary = sorted unique characters
 *   gl.tokenizer.char_from_string(s)        -- from tok:serialize()
 *   gl.tokenizer.gpt2_files(encoder_json, vocab_bpe)
 *   gl.tokenizer.from_json(path)            -- Hugging Face tokenizer.json (BPE)
 *   gl.tokenizer.llama2c(path)              -- llama2.c tokenizer.bin
 *
 * Methods of a tokenizer:
 *   tok:encode(text [, {bos=false, eos=false, allow_special=false}]) -> i64 tensor [n]
 *   tok:decode(ids [, {keep_prefix_space=false}]) -> string; ids: a tensor or a list
 *   tok:vocab_size(), tok:kind() ("char", "gpt2", "sentencepiece"), tok:source()
 *   tok:piece(id) -> vocabulary string; tok:id(piece) -> id or nil
 *   tok:bos_id(), eos_id(), pad_id(), unk_id() -> id or nil when the vocabulary has none
 *   tok:score(id) (sentencepiece), tok:free()
 *   tok:serialize() (alias to_string) -> a string for checkpoint metadata: a char
 *     vocabulary itself, else a reference to the file it came from; read back
 *     with gl.tokenizer.from_string (tokenizer.lua)
 * Ids are token ids as stored in tensors: 0-based. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lua/binding.h"
#include "text/tokenizer.h"

#define GL_LUA_TOKENIZER "genlab.Tokenizer"

typedef struct {
    gl_tokenizer *tok; /* NULL once freed */
} tok_ud;

static gl_tokenizer *check_tok(lua_State *L, int idx)
{
    tok_ud *u = luaL_checkudata(L, idx, GL_LUA_TOKENIZER);
    if (!u->tok) luaL_error(L, "attempt to use a freed tokenizer");
    return u->tok;
}

/* The userdata is pushed (closed) before the C object exists, so a raised
 * error never leaks the tokenizer. */
static tok_ud *new_ud(lua_State *L)
{
    tok_ud *u = lua_newuserdatauv(L, sizeof *u, 0);
    u->tok = NULL;
    luaL_setmetatable(L, GL_LUA_TOKENIZER);
    return u;
}

static int fill(lua_State *L, tok_ud *u, gl_tokenizer *tok)
{
    if (!tok) return gl_lua_fail(L);
    u->tok = tok;
    return 1;
}

static int l_char(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    tok_ud *u = new_ud(L);
    return fill(L, u, gl_tokenizer_char_new(s, len));
}

static int l_char_from_string(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    tok_ud *u = new_ud(L);
    return fill(L, u, gl_tokenizer_char_parse(s, len));
}

static int l_gpt2_files(lua_State *L)
{
    const char *enc = luaL_checkstring(L, 1), *bpe = luaL_checkstring(L, 2);
    tok_ud *u = new_ud(L);
    return fill(L, u, gl_tokenizer_gpt2_load(enc, bpe));
}

static int l_from_json(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    tok_ud *u = new_ud(L);
    return fill(L, u, gl_tokenizer_json_load(path));
}

static int l_llama2c(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    tok_ud *u = new_ud(L);
    return fill(L, u, gl_tokenizer_llama2c_load(path));
}

static int t_encode(lua_State *L)
{
    static const char *const opts[] = {"bos", "eos", "allow_special", NULL};
    gl_tokenizer *tok = check_tok(L, 1);
    size_t len;
    const char *s = luaL_checklstring(L, 2, &len);
    if (!lua_isnoneornil(L, 3)) luaL_checktype(L, 3, LUA_TTABLE);
    gl_lua_check_options(L, 3, "encode", opts);
    int flags = (gl_lua_optfield_bool(L, 3, "bos", false) ? GL_TOKENIZE_BOS : 0) |
                (gl_lua_optfield_bool(L, 3, "eos", false) ? GL_TOKENIZE_EOS : 0) |
                (gl_lua_optfield_bool(L, 3, "allow_special", false) ? GL_TOKENIZE_SPECIAL : 0);
    return gl_lua_push(L, gl_tokenizer_encode(tok, s, len, flags));
}

/* One id from a number; raises unless it is an integer. */
static int64_t check_id(lua_State *L, double v, int64_t pos)
{
    if (!(v == floor(v)) || fabs(v) > 9.0e15)
        gl_lua_errorf(L, "decode: element %lld is %g, not a token id", (long long)pos, v);
    return (int64_t)v;
}

static int t_decode(lua_State *L)
{
    static const char *const opts[] = {"keep_prefix_space", NULL};
    gl_tokenizer *tok = check_tok(L, 1);
    if (!lua_isnoneornil(L, 3)) luaL_checktype(L, 3, LUA_TTABLE);
    gl_lua_check_options(L, 3, "decode", opts);
    int flags = gl_lua_optfield_bool(L, 3, "keep_prefix_space", false) ? GL_DETOKENIZE_KEEP_PREFIX : 0;
    gl_tensor *t = gl_lua_totensor(L, 2);
    int64_t n;
    if (t) n = t->numel;
    else if (lua_istable(L, 2)) n = (int64_t)luaL_len(L, 2);
    else return luaL_error(L, "decode: ids must be a tensor or a list of integers, got a %s", luaL_typename(L, 2));
    int64_t *ids = lua_newuserdatauv(L, (size_t)n * sizeof *ids + 1, 0); /* owned by the stack */
    for (int64_t i = 0; i < n; i++) {
        if (t) {
            ids[i] = t->dtype == GL_I64 ? ((const int64_t *)gl_tensor_data(t))[i] : check_id(L, gl_tensor_get(t, i), i + 1);
        } else {
            lua_geti(L, 2, i + 1);
            int ok;
            lua_Integer v = lua_tointegerx(L, -1, &ok);
            ids[i] = ok ? (int64_t)v : check_id(L, lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : NAN, i + 1);
            lua_pop(L, 1);
        }
    }
    size_t len;
    char *s = gl_tokenizer_decode(tok, ids, n, flags, &len);
    if (!s) return gl_lua_fail(L);
    lua_pushlstring(L, s, len);
    free(s);
    return 1;
}

static int t_vocab_size(lua_State *L)
{
    lua_pushinteger(L, gl_tokenizer_vocab_size(check_tok(L, 1)));
    return 1;
}

static int t_kind(lua_State *L)
{
    lua_pushstring(L, gl_tokenizer_kind_name(check_tok(L, 1)));
    return 1;
}

static int t_source(lua_State *L)
{
    const char *s = gl_tokenizer_source(check_tok(L, 1));
    if (s) lua_pushstring(L, s);
    else lua_pushnil(L);
    return 1;
}

static int64_t check_vocab_id(lua_State *L, gl_tokenizer *tok, int idx, const char *op)
{
    lua_Integer id = luaL_checkinteger(L, idx);
    int64_t n = gl_tokenizer_vocab_size(tok);
    if (id < 0 || id >= n) gl_lua_errorf(L, "%s: id %lld is outside the vocabulary [0, %lld)", op, (long long)id, (long long)n);
    return id;
}

static int t_piece(lua_State *L)
{
    gl_tokenizer *tok = check_tok(L, 1);
    size_t len;
    const char *p = gl_tokenizer_piece(tok, check_vocab_id(L, tok, 2, "piece"), &len);
    lua_pushlstring(L, p, len);
    return 1;
}

static int t_id(lua_State *L)
{
    gl_tokenizer *tok = check_tok(L, 1);
    size_t len;
    const char *p = luaL_checklstring(L, 2, &len);
    int64_t id = gl_tokenizer_id(tok, p, len);
    if (id < 0) lua_pushnil(L);
    else lua_pushinteger(L, id);
    return 1;
}

static int t_score(lua_State *L)
{
    gl_tokenizer *tok = check_tok(L, 1);
    lua_pushnumber(L, gl_tokenizer_score(tok, check_vocab_id(L, tok, 2, "score")));
    return 1;
}

static int push_role(lua_State *L, gl_token_role role)
{
    int64_t id = gl_tokenizer_special_id(check_tok(L, 1), role);
    if (id < 0) lua_pushnil(L);
    else lua_pushinteger(L, id);
    return 1;
}

static int t_bos_id(lua_State *L) { return push_role(L, GL_TOKEN_BOS); }
static int t_eos_id(lua_State *L) { return push_role(L, GL_TOKEN_EOS); }
static int t_pad_id(lua_State *L) { return push_role(L, GL_TOKEN_PAD); }
static int t_unk_id(lua_State *L) { return push_role(L, GL_TOKEN_UNK); }

static int t_serialize(lua_State *L)
{
    size_t len;
    char *s = gl_tokenizer_serialize(check_tok(L, 1), &len);
    if (!s) return gl_lua_fail(L);
    lua_pushlstring(L, s, len);
    free(s);
    return 1;
}

/* __gc, __close and :free() are this one idempotent function. */
static int t_free(lua_State *L)
{
    tok_ud *u = luaL_checkudata(L, 1, GL_LUA_TOKENIZER);
    gl_tokenizer_free(u->tok);
    u->tok = NULL;
    return 0;
}

static int t_tostring(lua_State *L)
{
    tok_ud *u = luaL_checkudata(L, 1, GL_LUA_TOKENIZER);
    if (!u->tok) lua_pushliteral(L, "Tokenizer(freed)");
    else lua_pushfstring(L, "Tokenizer(%s, %I tokens)", gl_tokenizer_kind_name(u->tok),
                         (lua_Integer)gl_tokenizer_vocab_size(u->tok));
    return 1;
}

static const luaL_Reg methods[] = {
    {"encode", t_encode}, {"decode", t_decode}, {"vocab_size", t_vocab_size}, {"kind", t_kind},
    {"source", t_source}, {"piece", t_piece},   {"id", t_id},                 {"score", t_score},
    {"bos_id", t_bos_id}, {"eos_id", t_eos_id}, {"pad_id", t_pad_id},         {"unk_id", t_unk_id},
    {"serialize", t_serialize}, {"to_string", t_serialize}, {"free", t_free}, {NULL, NULL},
};

static const luaL_Reg meta[] = {
    {"__gc", t_free}, {"__close", t_free}, {"__tostring", t_tostring}, {NULL, NULL},
};

static const luaL_Reg constructors[] = {
    {"char", l_char}, {"char_from_string", l_char_from_string}, {"gpt2_files", l_gpt2_files},
    {"from_json", l_from_json}, {"llama2c", l_llama2c}, {NULL, NULL},
};

void gl_lua_open_text(lua_State *L, int module_idx)
{
    module_idx = lua_absindex(L, module_idx);
    luaL_newmetatable(L, GL_LUA_TOKENIZER);
    luaL_setfuncs(L, meta, 0);
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    luaL_newlib(L, constructors);
    lua_setfield(L, module_idx, "tokenizer");
}
