-- gl.data: token streams for language-model training, as nanoGPT feeds them.
--
--   local ds = gl.data.text("input.txt", {tokenizer = "char", block = 64, batch = 12})
--   local x, y = ds:batch("train")        -- x, y: [batch, block] i64; y is x shifted by one
--
-- gl.data.text(path, opts) reads a text file (gzip-compressed files too, such
-- as dictd's .dz), encodes it once and splits the ids by position: the first
-- `split` of them train, the rest validate. Options:
--   tokenizer  "char" (default: a char vocabulary built from the file) or a
--              tokenizer object (encode(text) -> 1-D ids tensor, vocab_size())
--   block      tokens per row (required)      batch  rows per batch (required)
--   split      fraction for training (0.9)
--   mode       "random": rows start at uniform random offsets (nanoGPT's
--              get_batch), or "sequential": the split cut into consecutive
--              non-overlapping windows of block + 1 tokens, taken in order,
--              epoch after epoch
--   seed       give the dataset its own random stream; without it, offsets
--              are drawn from the genlab generator (gl.seed fixes them and
--              checkpoints carry them)
-- gl.data.tokens(ids, opts) builds the same dataset from a 1-D integer tensor
-- of ids (same options; tokenizer optional, vocab_size = n to declare the
-- vocabulary when there is no tokenizer).
--
-- Methods of a dataset:
--   batch(split)       the next x, y of "train" or "val"
--   batches(split)     iterator over one sequential epoch of split (x, y per
--                      batch; the last batch may have fewer rows); leaves the
--                      stream of batch() alone
--   num_batches(split) batches in a sequential epoch; epoch(split) the epoch
--                      batch() is in (sequential mode, 1 first)
--   size(split)        tokens in split        vocab_size()
--   state(), set_state(st)  the stream position (a flat table of numbers and
--                      tensors, for checkpoints); reset([seed]) rewinds the
--                      sequential cursors and reseeds the own stream
-- Fields: tokenizer, block, batch_size, mode.
local gl = require "genlab"

local M = {}

local function check_options(opts, allowed, op)
  if type(opts) ~= "table" then error(op .. ": expected an options table, got a " .. type(opts), 3) end
  for k in pairs(opts) do
    if not allowed[k] then error(("%s: unknown option '%s'"):format(op, tostring(k)), 3) end
  end
end

local function positive_int(v, name, op)
  if math.type(v) ~= "integer" or v < 1 then
    error(("%s: %s must be a positive integer (got %s)"):format(op, name, tostring(v)), 4)
  end
  return v
end

-- ---- reading files ---------------------------------------------------------------------

-- The bytes of path, gunzipped when it is gzip (gl.read_file, zlib).
local function read_file(path)
  local ok, text = pcall(gl.read_file, path)
  if not ok then error("data.text: " .. tostring(text), 3) end
  return text
end

-- ---- the dataset ---------------------------------------------------------------------------

local Dataset = {}
Dataset.__index = Dataset
Dataset.__name = "Dataset"

local SPLITS = { train = true, val = true }

local function split_data(self, split, op)
  if not SPLITS[split] then
    error(("%s: split must be \"train\" or \"val\" (got %s)"):format(op, tostring(split)), 3)
  end
  local d = self._data[split]
  if not d then
    error(("%s: the %s split holds %d tokens; a row needs block + 1 = %d"):format(
      op, split, self._sizes[split], self.block + 1), 3)
  end
  return d
end

-- Runs fn with the dataset's own generator in place of the genlab one.
local function with_own_rng(self, fn)
  if not self._rng then return fn() end
  local saved = gl.rng_state()
  gl.set_rng_state(self._rng)
  local ok, a, b = pcall(fn)
  self._rng = gl.rng_state()
  gl.set_rng_state(saved)
  if not ok then error(a, 0) end
  return a, b
end

-- x, y of the rows of d starting at the 0-based offsets.
local function rows_at(self, d, offsets)
  local rows = {}
  for i, off in ipairs(offsets) do rows[i] = d:narrow(1, off + 1, self.block + 1) end
  local xy = gl.stack(rows)
  return xy:narrow(2, 1, self.block), xy:narrow(2, 2, self.block)
end

-- Rows k..k+count-1 (0-based windows) of a sequential epoch.
local function windows(self, d, first, count)
  local offsets = {}
  for i = 1, count do offsets[i] = (first + i - 1) * self.block end
  return rows_at(self, d, offsets)
end

local function num_windows(self, split) return (self._sizes[split] - 1) // self.block end

function Dataset:batch(split)
  local d = split_data(self, split, "batch")
  if self.mode == "random" then
    local n = self._sizes[split]
    local ids = with_own_rng(self, function() return gl.randint(0, n - self.block, { self.batch_size }) end)
    return rows_at(self, d, ids:tolist())
  end
  local nw = num_windows(self, split)
  local pos = self._pos[split]
  if pos >= nw then
    pos = 0
    self._epoch[split] = self._epoch[split] + 1
  end
  local count = math.min(self.batch_size, nw - pos)
  self._pos[split] = pos + count
  return windows(self, d, pos, count)
end

function Dataset:num_batches(split)
  split_data(self, split, "num_batches")
  return (num_windows(self, split) + self.batch_size - 1) // self.batch_size
end

function Dataset:batches(split)
  local d = split_data(self, split, "batches")
  local nw, pos = num_windows(self, split), 0
  return function()
    if pos >= nw then return nil end
    local count = math.min(self.batch_size, nw - pos)
    local first = pos
    pos = pos + count
    return windows(self, d, first, count)
  end
end

function Dataset:size(split)
  if not SPLITS[split] then error(("size: split must be \"train\" or \"val\" (got %s)"):format(tostring(split)), 2) end
  return self._sizes[split]
end

function Dataset:vocab_size() return self._vocab end

-- The epoch a sequential split is in (1 first).
function Dataset:epoch(split) return self._epoch[split] end

function Dataset:state()
  return { train_pos = self._pos.train, val_pos = self._pos.val, train_epoch = self._epoch.train,
           val_epoch = self._epoch.val, rng = self._rng }
end

function Dataset:set_state(st)
  if type(st) ~= "table" then error("set_state: expected the table that state() returned", 2) end
  for _, k in ipairs { "train_pos", "val_pos", "train_epoch", "val_epoch" } do
    if math.type(st[k]) ~= "integer" then error(("set_state: '%s' must be an integer"):format(k), 2) end
  end
  if (st.rng ~= nil) ~= (self._rng ~= nil) then
    error("set_state: the state " .. (st.rng and "carries" or "lacks") .. " a random stream this dataset "
      .. (self._rng and "has" or "does not have"), 2)
  end
  self._pos = { train = st.train_pos, val = st.val_pos }
  self._epoch = { train = st.train_epoch, val = st.val_epoch }
  self._rng = st.rng
end

function Dataset:reset(seed)
  self._pos, self._epoch = { train = 0, val = 0 }, { train = 1, val = 1 }
  if self._rng then
    local saved = gl.rng_state()
    gl.seed(seed or self._seed)
    self._rng = gl.rng_state()
    gl.set_rng_state(saved)
  end
end

function Dataset:__tostring()
  return ("Dataset(train=%d tokens, val=%d tokens, vocab=%d, block=%d, batch=%d, mode=%s)"):format(
    self._sizes.train, self._sizes.val, self._vocab, self.block, self.batch_size, self.mode)
end

-- ---- constructors ---------------------------------------------------------------------------

local token_options = { tokenizer = true, block = true, batch = true, split = true, mode = true, seed = true,
                        vocab_size = true }

local function build(ids, opts, op)
  if not gl.is_tensor(ids) or ids:dim() ~= 1 or not (ids:dtype() == "i64" or ids:dtype() == "i32") then
    error(op .. ": ids must be a 1-D i64 or i32 tensor", 3)
  end
  local block = positive_int(opts.block, "block", op)
  local batch = positive_int(opts.batch, "batch", op)
  local split = opts.split or 0.9
  if type(split) ~= "number" or split <= 0 or split > 1 then
    error(("%s: split must be a number in (0, 1] (got %s)"):format(op, tostring(split)), 3)
  end
  local mode = opts.mode or "random"
  if mode ~= "random" and mode ~= "sequential" then
    error(("%s: mode must be \"random\" or \"sequential\" (got %s)"):format(op, tostring(mode)), 3)
  end
  if opts.seed ~= nil and math.type(opts.seed) ~= "integer" then error(op .. ": seed must be an integer", 3) end
  local tok = opts.tokenizer
  local vocab = opts.vocab_size or (tok and tok:vocab_size())
  if not vocab then -- max id + 1; f32 holds ids below 2^24 exactly
    vocab = ids:numel() > 0 and math.tointeger(ids:float():max():item()) + 1 or 0
  end

  ids = ids:long()
  local n = ids:numel()
  local n_train = math.floor(n * split)
  local sizes = { train = n_train, val = n - n_train }
  local data = {}
  if sizes.train > block then data.train = ids:narrow(1, 1, sizes.train) end
  if sizes.val > block then data.val = ids:narrow(1, n_train + 1, sizes.val) end
  if not data.train then
    error(("%s: the train split holds %d tokens; a row needs block + 1 = %d"):format(op, sizes.train, block + 1), 3)
  end
  local self = setmetatable({ tokenizer = tok, block = block, batch_size = batch, mode = mode,
                              _data = data, _sizes = sizes, _vocab = vocab, _seed = opts.seed }, Dataset)
  if opts.seed then self._rng = gl.rng_state() end -- a placeholder that reset() replaces
  self:reset()
  return self
end

function M.tokens(ids, opts)
  check_options(opts, token_options, "data.tokens")
  return build(ids, opts, "data.tokens")
end

local text_options = { tokenizer = true, block = true, batch = true, split = true, mode = true, seed = true }

function M.text(path, opts)
  if type(path) ~= "string" then error("data.text: path must be a string, got a " .. type(path), 2) end
  check_options(opts, text_options, "data.text")
  local text = read_file(path)
  local tok = opts.tokenizer or "char"
  if tok == "char" then
    tok = gl.tokenizer.char(text)
  elseif type(tok) == "string" then
    error(("data.text: unknown tokenizer '%s' (use \"char\" or a tokenizer object)"):format(tok), 2)
  elseif type(tok) ~= "table" and type(tok) ~= "userdata" then
    error("data.text: tokenizer must be \"char\" or a tokenizer object", 2)
  end
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  o.tokenizer = tok
  return build(tok:encode(text), o, "data.text")
end

M.Dataset = Dataset

return M
