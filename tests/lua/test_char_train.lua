-- A short char-level GPT run with the nanoGPT CPU configuration (4 layers,
-- 4 heads, 128 wide, block 64, batch 12, lr 1e-3) on tiny Shakespeare from
-- ../shared/data when present, else Debian's Devil's Dictionary: the loss
-- must fall well below its starting ln(vocab). The full 2000-step run
-- (val loss <= 1.90) is a benchmark: examples/char_gpt.lua train --small.
local T = require "tap"
local gl = require "genlab"

local top = os.getenv("top_srcdir") or "../.."
local candidates = { top .. "/../shared/data/tinyshakespeare.txt", "/usr/share/dictd/devil.dict.dz" }
local path
for _, p in ipairs(candidates) do
  local f = io.open(p, "rb")
  if f then f:close(); path = p; break end
end
if not path then
  T.ok(true, "# SKIP neither tiny Shakespeare nor dict-devil is available")
  T.done()
end

gl.seed(1337)
local data = gl.data.text(path, { tokenizer = "char", block = 64, batch = 12 })
local model = gl.models.gpt{ vocab = data:vocab_size(), block = 64, n_layer = 4, n_head = 4, n_embd = 128,
  dropout = 0 }
local run = gl.train{ model = model, data = data, lr = 1e-3, max_steps = 60, warmup = 10, min_lr = 1e-4,
  betas = { 0.9, 0.99 }, weight_decay = 0.1, clip = 1.0, quiet = true }
local first = run:step(1).loss
local last = run:step(59).loss
local name = path:match("[^/]+$")
T.ok(math.abs(first - math.log(data:vocab_size())) < 0.3,
  ("%s: the first loss %.3f is near ln(%d) = %.3f"):format(name, first, data:vocab_size(), math.log(data:vocab_size())))
T.ok(last < first - 1.0, ("%s: 60 steps take the loss from %.3f to %.3f"):format(name, first, last))
local val = run:eval(5).val
T.ok(val < first - 1.0, ("%s: the val loss follows (%.3f)"):format(name, val))
T.done()
