-- gl.data: splits, batches shifted by one, reproducible streams, sequential
-- epochs, gzip input and option checking.
local T = require "tap"
local gl = require "genlab"

local function write(path, bytes)
  local f = assert(io.open(path, "wb"))
  f:write(bytes)
  f:close()
end

local function same(a, b)
  if a:numel() ~= b:numel() then return false end
  for i = 1, a:numel() do
    if a:getflat(i) ~= b:getflat(i) then return false end
  end
  return true
end

-- ---- splits and shapes -------------------------------------------------------------------

local ids = gl.arange(1000)
local ds = gl.data.tokens(ids, { block = 8, batch = 4 })
T.eq(ds:size("train"), 900, "split 0.9 puts the first 900 of 1000 tokens in train")
T.eq(ds:size("val"), 100, "and the last 100 in val")
T.eq(ds:vocab_size(), 1000, "without a tokenizer the vocabulary is max id + 1")
T.eq(gl.data.tokens(ids, { block = 8, batch = 4, split = 0.75 }):size("train"), 750, "split = 0.75: 750 train tokens")

gl.seed(3)
local x, y = ds:batch("train")
T.eq(table.concat(x:shape(), ","), "4,8", "x is [batch, block]")
T.eq(table.concat(y:shape(), ","), "4,8", "y is [batch, block]")
T.eq(x:dtype(), "i64", "x holds i64 ids")
local shifted, consecutive, in_train = true, true, true
for b = 1, 4 do
  for t = 1, 8 do
    local xv, yv = x[b][t], y[b][t]
    if yv ~= xv + 1 then shifted = false end -- the data is 0, 1, 2, ...: the next token is x + 1
    if t > 1 and xv ~= x[b][t - 1] + 1 then consecutive = false end
    if yv >= 900 then in_train = false end
  end
end
T.ok(shifted, "y is x shifted by one token")
T.ok(consecutive, "a row is a contiguous run of the data")
T.ok(in_train, "train rows (targets included) stay inside the first 900 tokens")
local vx = ds:batch("val")
local in_val = true
for i = 1, vx:numel() do
  if vx:getflat(i) < 900 then in_val = false end
end
T.ok(in_val, "val rows come from the last 100 tokens")

-- ---- reproducibility ---------------------------------------------------------------------------

gl.seed(11)
local a1 = ds:batch("train")
gl.seed(11)
local a2 = ds:batch("train")
T.ok(same(a1, a2), "gl.seed fixes the random offsets")
local a3 = ds:batch("train")
T.ok(not same(a2, a3), "the next batch differs")

local own = gl.data.tokens(ids, { block = 8, batch = 4, seed = 42 })
gl.seed(1)
local o1 = own:batch("train")
local g1 = gl.rand { 3 }
gl.seed(2)
local own2 = gl.data.tokens(ids, { block = 8, batch = 4, seed = 42 })
local o2 = own2:batch("train")
T.ok(same(o1, o2), "seed = 42 gives the dataset its own stream, whatever gl.seed says")
gl.seed(1)
T.ok(same(gl.rand { 3 }, g1), "and drawing from it leaves the genlab stream alone")

local st = own:state()
local b1, b2 = own:batch("train"), own:batch("train")
own:set_state(st)
T.ok(same(own:batch("train"), b1) and same(own:batch("train"), b2), "set_state(state()) replays the own stream")
own:reset()
T.ok(same(own:batch("train"), o1), "reset() restarts the own stream from its seed")

gl.seed(8)
local gst = ds:state()
local r1 = ds:batch("train")
ds:set_state(gst)
gl.seed(8)
T.ok(same(ds:batch("train"), r1), "without a seed the genlab state is the stream's state")
T.raises(function() ds:set_state(own:state()) end, "random stream", "set_state rejects the state of a seeded dataset")

-- ---- sequential epochs -----------------------------------------------------------------------

local seq = gl.data.tokens(gl.arange(1000), { block = 10, batch = 7, mode = "sequential", split = 0.5 })
local windows = (500 - 1) // 10 -- 49 windows of 10 + 1 tokens in the 500 train tokens
T.eq(seq:num_batches("train"), 7, "49 windows in batches of 7: 7 batches an epoch")
local seen, count, rows, last_rows = {}, 0, 0, nil
for bx, by in seq:batches("train") do
  count = count + 1
  rows = rows + bx:size(1)
  last_rows = bx:size(1)
  for i = 1, bx:numel() do
    local v = bx:getflat(i)
    seen[v] = (seen[v] or 0) + 1
    if by:getflat(i) ~= v + 1 then seen.bad = true end
  end
end
T.eq(count, 7, "batches() yields num_batches batches")
T.eq(rows, windows, "and one row per window")
local covered = not seen.bad
for v = 0, windows * 10 - 1 do
  if seen[v] ~= 1 then covered = false end
end
T.ok(covered, "an epoch covers tokens 0..489 exactly once, targets shifted by one")

local s1 = seq:batch("train")
T.eq(s1[1][1], 0, "batch() in sequential mode starts at the first token")
T.eq(s1[2][1], 10, "rows are consecutive windows")
for _ = 2, 7 do seq:batch("train") end
T.eq(seq:epoch("train"), 1, "seven batches stay in epoch 1")
local wrap = seq:batch("train")
T.eq(wrap[1][1], 0, "the eighth batch starts the data again")
T.eq(seq:epoch("train"), 2, "in epoch 2")
local sst = seq:state()
local n1 = seq:batch("train")
seq:set_state(sst)
T.ok(same(seq:batch("train"), n1), "state()/set_state() keep the sequential position")
local v1 = seq:batch("val")
T.eq(v1[1][1], 500, "the val cursor is separate and starts at the val split")

-- ---- text files, char tokenizer and gzip -------------------------------------------------------

local text = ("the quick brown fox jumps over the lazy dog. "):rep(40)
local path = os.tmpname()
write(path, text)
gl.seed(5)
local tds = gl.data.text(path, { block = 16, batch = 3 })
T.eq(tds:size("train") + tds:size("val"), #text, "text: every character becomes one token")
T.eq(tds:vocab_size(), tds.tokenizer:vocab_size(), "vocab_size is the tokenizer's")
T.eq(tds:vocab_size(), 28, "the char vocabulary is built from the corpus (26 letters, space, dot)")
local tx, ty = tds:batch("train")
local row, nxt = tds.tokenizer:decode(tx[1]), tds.tokenizer:decode(ty[1])
T.ok(text:find(row, 1, true) ~= nil, "a decoded row is a substring of the file", row)
T.eq(row:sub(2), nxt:sub(1, -2), "decoded targets are the row moved one character on")

local gz = path .. ".gz"
os.execute("gzip -c " .. path .. " > " .. gz)
gl.seed(5)
local gds = gl.data.text(gz, { block = 16, batch = 3 })
T.eq(gds:size("train"), tds:size("train"), "a gzip-compressed file reads as its content")
T.ok(same(gds:batch("train"), tx), "and gives the same batches")
os.remove(gz)

local devil = "/usr/share/dictd/devil.dict.dz"
if io.open(devil, "rb") then
  local dd = gl.data.text(devil, { block = 32, batch = 2 })
  T.ok(dd:size("train") + dd:size("val") > 300000, "dictd's devil.dict.dz (dictzip) reads in full")
else
  T.ok(true, "# SKIP dict-devil not installed")
end

local bytes = { -- a tokenizer object: any table with encode and vocab_size
  encode = function(_, s)
    local t = {}
    for i = 1, #s do t[i] = s:byte(i) end
    return gl.tensor(t, { dtype = "i64" })
  end,
  vocab_size = function() return 256 end,
}
local bds = gl.data.text(path, { tokenizer = bytes, block = 4, batch = 2 })
T.eq(bds:vocab_size(), 256, "a tokenizer object is used as given")
T.eq(bds.tokenizer, bytes, "and kept as ds.tokenizer")

-- ---- options and errors ---------------------------------------------------------------------------

T.raises(function() gl.data.text(path, { block = 4, batch = 2, shuffle = true }) end, "unknown option 'shuffle'",
  "data.text rejects unknown options")
T.raises(function() gl.data.tokens(ids, { block = 4, batch = 2, bogus = 1 }) end, "unknown option 'bogus'",
  "data.tokens rejects unknown options")
T.raises(function() gl.data.tokens(ids, { batch = 2 }) end, "block must be a positive integer",
  "block is required")
T.raises(function() gl.data.tokens(ids, { block = 4, batch = 0 }) end, "batch must be a positive integer",
  "batch must be positive")
T.raises(function() gl.data.tokens(ids, { block = 4, batch = 2, split = 1.5 }) end, "split must be a number in (0, 1]",
  "split is a fraction")
T.raises(function() gl.data.tokens(ids, { block = 4, batch = 2, mode = "shuffled" }) end, "mode must be",
  "mode is random or sequential")
T.raises(function() gl.data.text(path, { tokenizer = "bpe", block = 4, batch = 2 }) end, "unknown tokenizer 'bpe'",
  "an unknown tokenizer name is an error")
T.raises(function() gl.data.text(path .. ".missing", { block = 4, batch = 2 }) end, "No such file or directory",
  "a missing file is an error")
local small_val = gl.data.tokens(gl.arange(100), { block = 16, batch = 2 })
T.raises(function() small_val:batch("val") end, "the val split holds 10 tokens; a row needs block + 1 = 17",
  "a val split shorter than a row raises when used")
T.raises(function() ds:batch("test") end, 'split must be "train" or "val"', "an unknown split name raises")
T.raises(function() gl.data.tokens(gl.arange(10), { block = 16, batch = 2 }) end, "the train split holds 9 tokens",
  "a train split shorter than a row raises at once")
os.remove(path)

T.done()
