-- Malformed or hostile model and tokenizer files (found by fuzzing the
-- loaders): each gives one clear error line naming the file and the problem,
-- or loads quickly, never a crash, a hang or a huge allocation.
local T = require "tap"
local gl = require "genlab"
local tk = gl.tokenizer

local F = require "files"
local spit, slurp = F.spit, F.slurp

local dir, path = F.tmpdir()

-- fn must raise a one-line error containing want.
local function bad(fn, want, name)
  local ok, err = pcall(fn)
  err = tostring(err)
  T.ok(not ok and err:find(want, 1, true) ~= nil and not err:find("\n"), name,
    ok and "it loaded" or ("message was: " .. err))
end

-- llama2.c tokenizer.bin: u32 max length, then per piece f32 score, i32 length, bytes.
local function l2c_tok(max_len, pieces)
  local parts = { string.pack("<I4", max_len) }
  for _, p in ipairs(pieces) do parts[#parts + 1] = string.pack("<fi4", p[2] or 0, #p[1]) .. p[1] end
  return table.concat(parts)
end

-- ---------------------------------------------------------------- tokenizer.bin
do
  -- One 100 kB piece: rebuilding merges from scores hashed both halves of
  -- every split (quadratic: about 16 s); now splits with no piece of their
  -- length are skipped.
  local p = spit(path("long.bin"), l2c_tok(0xFFFFFFFF, { { "<unk>" }, { "\n<s>\n" }, { "\n</s>\n" },
    { ("a"):rep(100000), -1 }, { "a", -2 } }))
  local t0 = os.clock()
  local tok = tk.llama2c(p)
  local dt = os.clock() - t0
  T.eq(tok:vocab_size(), 5, "llama2c: a 100 kB piece loads (vocab size 5)")
  T.ok(dt < 3, "llama2c: a 100 kB piece loads in linear time", ("took %.2f s of CPU"):format(dt))
  T.eq(tok:id("a"), 4, "llama2c: the short piece keeps its id")
end

do
  -- Every prefix of one 2000-byte string: each split of each piece passes the
  -- length test, so the rebuild would hash about N^3 / 3 bytes (seconds to
  -- minutes); it is refused up front, by its count.
  local long = ("abcdefghij"):rep(200)
  local pieces = { { "<unk>" }, { "\n<s>\n" }, { "\n</s>\n" } }
  for l = 1, #long do pieces[#pieces + 1] = { long:sub(1, l), -l } end
  local p = spit(path("prefixes.bin"), l2c_tok(#long, pieces))
  bad(function() tk.llama2c(p) end, "llama2c: rebuilding the merges would hash",
    "llama2c: a vocabulary of every prefix of a long string is refused, not rebuilt in cubic time")
end

-- ---------------------------------------------------------------- strings of the file in messages
-- Pieces, merges and config strings are echoed in errors: control bytes
-- (a newline inside a merge) broke the one-line message; now they are
-- escaped and long ones cut.
do
  local bytes = {}
  for b = 0x21, 0x7E do bytes[#bytes + 1] = ('"%s": %d'):format(b == 0x22 and '\\"' or b == 0x5C and "\\\\" or string.char(b), #bytes) end
  local function tj(merges)
    return spit(path("tok.json"), '{"pre_tokenizer": {"type": "ByteLevel"}, "model": {"type": "BPE", "vocab": {' ..
      table.concat(bytes, ", ") .. '}, "merges": ' .. merges .. "}}")
  end
  bad(function() tk.from_json(tj('["o \\n"]')) end, 'merge 1 ("o" "\\n") uses a piece not in the vocab',
    "tokenizer.json: a newline in a merge is escaped in the message")
  bad(function() tk.from_json(tj('["\\t\\u0001"]')) end, 'merge 1 "\\t\\x01" is not "left right"',
    "tokenizer.json: control bytes in a malformed merge are escaped")
  bad(function() tk.from_json(tj('["' .. ("x"):rep(300) .. ' y"]')) end, 'xxx..." "y") uses a piece',
    "tokenizer.json: a long merge is cut in the message")
  bad(function() tk.from_json(spit(path("wp.json"), '{"model": {"type": "Word\\nPiece"}}')) end,
    'model.type is "Word\\nPiece"; only BPE', "tokenizer.json: a newline in model.type is escaped")
  local enc = spit(path("encoder.json"), '{"a\\nb": 0, "c": 0}')
  bad(function() tk.gpt2 { encoder = enc, vocab = spit(path("v.bpe"), "") } end, 'token "c" has id out of range',
    "encoder.json: a repeated id names the token")
  spit(enc, '{"a\\nb": 7}')
  bad(function() tk.gpt2 { encoder = enc, vocab = spit(path("v.bpe"), "") } end, 'token "a\\nb" has id',
    "encoder.json: a newline in a token is escaped in the message")
  spit(enc, '{"a": 0, "b": 1}')
  bad(function() tk.gpt2 { encoder = enc, vocab = spit(path("v.bpe"), "a\rx b\n") } end,
    'line 1: merge "a\\rx b" uses a token not in the encoder', "vocab.bpe: a carriage return inside a line is escaped")
end

-- A tensor name of the file with a newline and an escape sequence.
do
  local src = "../fixtures/models/gpt2/"
  local d = path("hf-name")
  assert(os.execute("mkdir -p '" .. d .. "'"))
  local t = gl.load(src .. "model.safetensors")
  t["evil\n\27[31mname"] = gl.zeros { 1 }
  gl.save(d .. "/model.safetensors", t)
  spit(d .. "/config.json", slurp(src .. "config.json"))
  bad(function() gl.models.load(d) end, "unexpected tensor 'evil\\n\\x1B[31mname' for a gpt2 model",
    "hf: an unexpected tensor's name is escaped in the message")
end

-- ---------------------------------------------------------------- HF config.json
-- A config.json that claims a far larger model than model.safetensors holds
-- used to build (allocate and randomly initialize) the whole model before
-- noticing; now the size is checked first.
do
  local src = "../fixtures/models/gpt2/"
  local d = path("hf-big")
  assert(os.execute("mkdir -p '" .. d .. "'"))
  spit(d .. "/model.safetensors", slurp(src .. "model.safetensors"))
  local cfg = slurp(src .. "config.json")
  spit(d .. "/config.json", (cfg:gsub('"n_inner": null', '"n_inner": 65536'):gsub('"n_layer": 2', '"n_layer": 16')))
  bad(function() gl.models.load(d) end, "model.safetensors: config.json implies at least",
    "hf: a config.json with far more weights than the file is refused before allocating")
  spit(d .. "/config.json", (cfg:gsub('"n_positions": 64', '"n_positions": 16777216')))
  bad(function() gl.models.load(d) end, "config.json implies at least",
    "hf: a 16M-position wpe the file does not hold is refused before allocating")
  spit(d .. "/config.json", (cfg:gsub('"vocab_size": 96', '"vocab_size": 2147483647')))
  bad(function() gl.models.load(d) end, "'transformer.wte.weight' has shape [96,32], config expects [2147483647,32]",
    "hf: a vocab_size that disagrees with the embedding is named before allocating")
  spit(d .. "/config.json", (cfg:gsub('"gpt2"', '"gpt2\\nx"')))
  bad(function() gl.models.load(d) end, "model_type 'gpt2\\nx' is not supported", "hf: a newline in model_type is escaped")
  spit(d .. "/config.json", (cfg:gsub('"gpt2"', '"' .. "x" .. ("\u{2581}"):rep(30) .. '"')))
  local _, err = pcall(gl.models.load, d)
  T.ok(tostring(err):find("...' is not supported", 1, true) and utf8.len(tostring(err)),
    "hf: a long model_type is cut before a whole UTF-8 character", tostring(err))
  spit(d .. "/config.json", (cfg:gsub('"gelu_new"', '"\\u0007gelu"')))
  bad(function() gl.models.load(d) end, "activation_function '\\x07gelu' is not supported",
    "hf: a control byte in activation_function is escaped")
  -- 1e300 was cast to int64_t before the range check (undefined; caught by UBSan)
  spit(d .. "/config.json", (cfg:gsub('"n_layer": 2', '"n_layer": 1e300')))
  bad(function() gl.models.load(d) end, "'n_layer' must be an integer", "hf: n_layer 1e300 is not an integer")
  spit(d .. "/config.json", cfg)
  T.eq(gl.models.load(d):config().n_layer, 2, "hf: the unmodified fixture still loads")
end

-- GPT-Neo attention_types [[kinds, count], ...]: a missing or huge count was
-- cast from NaN / 1e300 to int (undefined: in practice no layers, so the
-- model silently loaded with every layer global).
do
  local src = "../fixtures/models/gpt_neo/"
  local d = path("neo")
  assert(os.execute("mkdir -p '" .. d .. "'"))
  spit(d .. "/model.safetensors", slurp(src .. "model.safetensors"))
  local cfg = slurp(src .. "config.json"):gsub('"attention_layers":%s*%b[],', "")
  local function types(t) return (cfg:gsub('"attention_types":%s*%b[]', '"attention_types": ' .. t)) end
  spit(d .. "/config.json", types('[[["global", "local"], 1]]'))
  T.eq(gl.models.load(d):config().n_layer, 2, "neo: attention_types alone loads")
  spit(d .. "/config.json", types('[[["global", "local"]]]'))
  bad(function() gl.models.load(d) end, "attention layers list 0 entries for 2 layers",
    "neo: attention_types without a count is refused")
  spit(d .. "/config.json", types('[[["global", "local"], 1e300]]'))
  bad(function() gl.models.load(d) end, "entries for 2 layers", "neo: attention_types with a count of 1e300 is refused")
  spit(d .. "/config.json", types('[[["global", "local"], "x"]]'))
  bad(function() gl.models.load(d) end, "attention layers list 0 entries for 2 layers",
    "neo: attention_types with a string count is refused")
end

F.remove(dir)
T.done()
