-- A tiny random GPT of each arch for the model tests: vocab 11, block 48,
-- 2 layers, 4 heads, 16 wide; llama with 2 KV heads, neo with a window of
-- 5. Keys of extra replace or add to the config.
local gl = require "genlab"

return function(arch, extra)
  local cfg = { arch = arch, vocab = 11, block = 48, n_layer = 2, n_head = 4, n_embd = 16 }
  if arch == "llama" then cfg.n_kv_head = 2 end
  if arch == "neo" then cfg.window = 5 end
  for k, v in pairs(extra or {}) do cfg[k] = v end
  return gl.models.gpt(cfg)
end
