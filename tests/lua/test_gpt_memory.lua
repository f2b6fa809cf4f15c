-- What a GPT training step keeps for backward, and that the kernels which
-- keep less (attention recomputing its probabilities, dropout regenerating
-- its masks, linears recomputing their normed / GELU / attention input)
-- still give the true gradients, with dropout on, reproducibly.
--
-- The model recomputes only tensors of 4 MiB and more (GENLAB_RECOMPUTE_MIN
-- bytes): this file runs once as is (small tensors: the composed ops) and
-- once more, in a child process, with GENLAB_RECOMPUTE_MIN=0 (every fused
-- path), where the memory bound applies.
local T = require "tap"
local G = require "gradcheck"
local gl = require "genlab"
local forced = os.getenv("GENLAB_RECOMPUTE_MIN") == "0"
local mode = forced and " [recompute all]" or ""

local function max_abs_diff(a, b) return (a - b):abs():max():item() end

local function tiny(extra)
  local cfg = { vocab = 11, block = 16, n_layer = 2, n_head = 2, n_embd = 8 }
  for k, v in pairs(extra or {}) do cfg[k] = v end
  return gl.models.gpt(cfg)
end

gl.seed(7)

-- Finite differences through the whole model with dropout active: the loss
-- function reseeds, so every evaluation draws the same masks (attention,
-- residual and embedding dropout), and the recorded step must match them.
do
  local m = tiny{ dropout = 0.3 }
  local sd = m:state_dict()
  local ids, targets = gl.randint(0, 11, { 2, 9 }), gl.randint(0, 11, { 2, 9 })
  local function lossfn()
    gl.seed(99)
    local _, loss = m:forward(ids, targets)
    return loss
  end
  local rows = {}
  for _, name in ipairs{ "transformer.h.0.attn.c_attn.weight", "transformer.h.1.attn.c_attn.bias",
                         "transformer.h.0.ln_1.weight", "transformer.h.1.ln_2.bias",
                         "transformer.h.0.mlp.c_fc.weight", "transformer.h.1.mlp.c_proj.weight",
                         "transformer.h.1.mlp.c_proj.bias", "transformer.wpe.weight",
                         "transformer.wte.weight" } do
    rows[#rows + 1] = { "dropout 0.3 loss wrt " .. name .. mode, lossfn, { sd[name] }, { eps = 2e-3, atol = 1e-3, rtol = 2e-2 } }
  end
  G.run(T, rows)
end

-- gelu_tanh (GPT-2's GELU) goes through the same recomputed linear.
do
  local m = tiny{ gelu_tanh = true }
  local sd = m:state_dict()
  local ids = gl.randint(0, 11, { 2, 7 })
  G.run(T, {
    { "gelu_tanh loss wrt mlp.c_proj.weight" .. mode,
      function() local _, l = m:forward(ids, ids); return l end, { sd["transformer.h.0.mlp.c_proj.weight"] },
      { eps = 2e-3, atol = 1e-3, rtol = 2e-2 } },
    { "gelu_tanh loss wrt mlp.c_fc.bias" .. mode,
      function() local _, l = m:forward(ids, ids); return l end, { sd["transformer.h.1.mlp.c_fc.bias"] },
      { eps = 2e-3, atol = 1e-3, rtol = 2e-2 } },
  })
end

-- The recorded step and the no_grad forward compute the same loss (the
-- fused path and the composed one), with dropout, for each architecture.
for _, arch in ipairs{ "gpt2", "neo", "llama" } do
  local m = tiny{ arch = arch, dropout = arch == "llama" and 0 or 0.2, n_kv_head = arch == "llama" and 1 or nil }
  local ids = gl.randint(0, 11, { 3, 12 })
  gl.seed(5)
  local _, rec = m:forward(ids, ids)
  gl.seed(5)
  local norec = gl.no_grad(function() local _, l = m:forward(ids, ids); return l end)
  T.ok(rec.requires_grad and rec:item() == norec:item(),
    ("%s: the recorded loss equals the no_grad one (%.7f, %.7f)"):format(arch, rec:item(), norec:item()))
end

-- Dropout is seeded: the same seed gives the same loss and gradients, at 1
-- and at 2 threads; another seed another loss.
do
  local m = tiny{ dropout = 0.2, block = 40 }
  local ids = gl.randint(0, 11, { 2, 40 })
  local w = m:state_dict()["transformer.h.0.attn.c_attn.weight"]
  local function step(seed, threads)
    local saved = gl.threads()
    gl.threads(threads)
    m:zero_grad()
    gl.seed(seed)
    local _, loss = m:forward(ids, ids)
    loss:backward()
    gl.threads(saved)
    return loss:item(), w.grad:clone()
  end
  local l1, g1 = step(3, 1)
  local l2, g2 = step(3, 2)
  local l3 = step(4, 1)
  T.ok(l1 == l2 and max_abs_diff(g1, g2) == 0, "dropout: one seed, same loss and gradients at 1 and 2 threads")
  T.ok(l1 ~= l3, "dropout: another seed, another loss")
end

-- Memory: a training step's graph keeps about 8.4 [B,T,C] activations per
-- layer (the residual stream after the MLP, q/k/v, the attention output,
-- the MLP's 4C hidden layer; the stream after attention is recomputed) and
-- nothing of size
-- B*NH*T*T. With T = 128 and C = 32, one layer's attention probabilities
-- alone (B*NH*T*T) would be 16 [B,T,C] tensors.
do
  local B, Tn, C, NH, L = 2, 128, 32, 4, 3
  local m = gl.models.gpt{ vocab = 11, block = Tn, n_layer = L, n_head = NH, n_embd = C, dropout = 0.1 }
  local ids = gl.randint(0, 11, { B, Tn })
  local function step()
    local _, loss = m:forward(ids, ids)
    loss:backward()
  end
  step() -- allocates the parameters' gradients
  collectgarbage()
  local before = gl.memory().live
  local logits, loss = m:forward(ids, ids)
  local kept = gl.memory().live - before
  local btc = B * Tn * C * 4
  local per_layer = ("a step's graph keeps %.1f [B,T,C] per layer (B*NH*T*T is %d)"):format(kept / btc / L,
    B * NH * Tn * Tn * 4 // btc)
  if forced then
    T.ok(kept <= (8 * L + 2) * btc, per_layer .. ", at most 8 + 2/L" .. mode)
  else
    T.ok(true, "# SKIP " .. per_layer .. ": small tensors are kept, not recomputed")
  end
  loss:backward()
  logits, loss = nil, nil
  collectgarbage()
  T.eq(gl.memory().live - before, 0, "backward frees the graph")
  step()
  collectgarbage()
  T.eq(gl.memory().live - before, 0, "memory stays flat over steps")
end

-- Again with every fused path, in a child process (this executable, found
-- through /proc as `genlab bench` finds itself).
if not forced then
  local f = io.popen("readlink /proc/$PPID/exe 2>/dev/null")
  local exe = f and f:read("l")
  if f then f:close() end
  local src = debug.getinfo(1, "S").source:match("^@(.*)$")
  if not exe or not exe:match("genlab[^/]*$") or not src then
    T.ok(true, "# SKIP not run by the genlab executable: cannot rerun with GENLAB_RECOMPUTE_MIN=0")
  else
    local p = io.popen(("GENLAB_RECOMPUTE_MIN=0 '%s' run '%s' 2>&1"):format(exe, src))
    local out = p:read("a")
    p:close()
    local _, oks = out:gsub("\nok ", "")
    local _, bad = out:gsub("not ok ", "")
    oks = oks + (out:match("^ok ") and 1 or 0)
    T.ok(bad == 0 and oks >= 19, ("with GENLAB_RECOMPUTE_MIN=0: %d checks pass, %d fail"):format(oks, bad),
      bad > 0 and out or nil)
  end
end

T.done()
