-- Where the GPT recomputes rather than keeps (tensors of 4 MiB and more),
-- a block's residual stream between attention and MLP is not kept for
-- backward: the MLP's norm-linear computes it again from the attention, a
-- GEMM block of rows at a time, as the forward did (src/models/gpt.c,
-- drop_stream and stream_rows). A batch that large (several GEMM blocks,
-- whose edges fall inside the backward's blocks of rows) gives the gradients
-- of its sub-batches, small enough for every tensor to be kept, on average.
local T = require "tap"
local gl = require "genlab"

gl.seed(3)
local B, Tn, C, F, L, parts = 32, 128, 256, 768, 2, 8
local m = gl.models.gpt{ vocab = 17, block = Tn, n_layer = L, n_head = 4, n_embd = C, n_hidden = F }
local ids, targets = gl.randint(0, 17, { B, Tn }), gl.randint(0, 17, { B, Tn })
local sd = m:state_dict()
local names = { "transformer.h.0.ln_2.weight", "transformer.h.1.ln_2.bias", "transformer.h.0.mlp.c_fc.weight",
                "transformer.h.1.attn.c_proj.weight", "transformer.h.0.attn.c_attn.weight", "transformer.wte.weight" }

local function grads()
  local g = {}
  for _, n in ipairs(names) do g[n] = sd[n].grad:clone() end
  return g
end

local function step(x, y, scale)
  local _, loss = m:forward(x, y)
  if scale then loss = loss * scale end
  loss:backward()
end

step(ids, targets) -- allocates the gradients
m:zero_grad()
collectgarbage()
local before = gl.memory().live
local _, loss = m:forward(ids, targets)
local kept = (gl.memory().live - before) / (B * Tn * C * 4)
-- per layer: the block's input, qkv (3) and the MLP's hidden layer (F / C); not the stream after attention
local bound = L * (1 + 3 + F / C) + 1.5
T.ok(kept <= bound, ("the graph keeps %.2f [B,T,C], at most %.1f (not the stream after attention)"):format(kept, bound))
loss:backward()
loss = nil
local whole = grads()

m:zero_grad()
local b = B // parts
for k = 0, parts - 1 do step(ids:narrow(1, k * b + 1, b), targets:narrow(1, k * b + 1, b), 1 / parts) end
local split = grads()
for _, n in ipairs(names) do
  local err = (whole[n] - split[n]):abs():max():item() / split[n]:abs():max():item()
  T.ok(err < 1e-4, ("%s: the batch's gradient is its sub-batches' (relative error %.1e)"):format(n, err))
end

T.done()
