-- gl.models.gpt: the GPT family (gpt2, neo, llama) built from nn layers;
-- forward, loss, training, gradients, the KV-cache session, config errors.
-- Token ids and targets are 0-based; layer numbers (local_layers) 1-based.
local T = require "tap"
local G = require "gradcheck"
local gl = require "genlab"

local function shape_of(t) return table.concat(t:shape(), ",") end

local function max_abs_diff(a, b) return (a - b):abs():max():item() end

local tiny = require "tiny_gpt"

gl.seed(42)

-- shapes, names, config -------------------------------------------------------------
do
  local m = gl.models.gpt{ vocab = 65, n_layer = 4, n_head = 4, n_embd = 128, block = 64 }
  local ids = gl.randint(0, 65, { 3, 20 })
  local logits, loss = m:forward(ids, ids)
  T.eq(shape_of(logits), "3,20,65", "forward: logits are [B,T,V]")
  T.eq(loss:numel(), 1, "forward: loss is a scalar")
  T.eq(shape_of(m:forward(gl.randint(0, 65, { 7 }))), "7,65", "forward: 1-D ids give [T,V]")
  T.eq(shape_of(m(ids)), "3,20,65", "model(ids) calls forward")
  local c = m:config()
  T.ok(c.arch == "gpt2" and c.n_hidden == 512 and c.bias and c.tie_head and not c.gelu_tanh,
    "config: gpt2 defaults (n_hidden 4C, biases, tied head, exact GELU)")
  local sd = m:state_dict()
  T.ok(sd["transformer.h.3.attn.c_attn.weight"] and shape_of(sd["transformer.h.3.attn.c_attn.weight"]) == "384,128",
    "names: transformer.h.N.attn.c_attn.weight [3C, C]")
  T.ok(sd["transformer.wpe.weight"] and sd["transformer.h.0.mlp.c_fc.bias"] and sd["transformer.ln_f.bias"],
    "names: wpe, mlp.c_fc, ln_f as in HF GPT-2")
  -- tied head: one tensor under two names, counted once
  gl.no_grad(function() m.lm_head.weight:fill_(0.5) end)
  T.eq(sd["transformer.wte.weight"]:getflat(1), 0.5, "tie_head: lm_head.weight is transformer.wte.weight")
  T.eq(m:num_parameters(), 65 * 128 + 64 * 128 + 4 * (12 * 128 * 128 + 13 * 128) + 2 * 128,
    "num_parameters counts the tied head once")
  T.ok(tostring(m):find("arch=gpt2", 1, true) ~= nil, "summary names the arch")

  local l = gl.models.gpt{ arch = "llama", vocab = 32, block = 16, n_layer = 1, n_head = 4, n_kv_head = 2, n_embd = 32 }
  local lsd = l:state_dict()
  T.ok(lsd["model.layers.0.self_attn.k_proj.weight"] and shape_of(lsd["model.layers.0.self_attn.k_proj.weight"]) == "16,32",
    "llama names: model.layers.N.self_attn.k_proj [KVH*HS, C]")
  T.eq(l:config().n_hidden, 256, "llama default hidden: 2/3 of 4C rounded up to 256")
  T.ok(lsd["lm_head.weight"] ~= lsd["model.embed_tokens.weight"] and l:config().tie_head == false,
    "llama head is untied by default")
  T.ok(gl.models.summary(l):find("kv 2", 1, true) ~= nil, "models.summary shows GQA")
  local n = tiny("neo", { n_layer = 4 })
  T.eq(table.concat(n:config().local_layers, ","), "2,4", "neo: every second layer is local by default")
end

-- loss at init and learning ------------------------------------------------------------
do
  local m = gl.models.gpt{ vocab = 65, n_layer = 2, n_head = 2, n_embd = 32, block = 32 }
  local x, y = gl.randint(0, 65, { 8, 32 }), gl.randint(0, 65, { 8, 32 })
  local _, loss = m:forward(x, y)
  T.near(loss:item(), math.log(65), 0.15, "loss at init is about ln V")
  local ym = y:clone()
  for i = 1, 32 do ym:setflat(i, -1) end
  local _, l2 = m:forward(x, ym)
  T.ok(math.abs(l2:item() - math.log(65)) < 0.2, "targets of -1 are ignored")
end

do
  gl.seed(3)
  local text = ("abcdefgh"):rep(8)
  local ids = {}
  for i = 1, #text do ids[i] = text:byte(i) - 97 end
  local x = gl.tensor(ids, { dtype = "i64" })
  local inp = x:narrow(1, 1, 32):reshape{ 1, 32 }
  local tgt = x:narrow(1, 2, 32):reshape{ 1, 32 }
  local m = gl.models.gpt{ vocab = 8, block = 32, n_layer = 1, n_head = 2, n_embd = 32 }
  local opt = gl.optim.adamw(m:parameters(), { lr = 1e-2, weight_decay = 0 })
  local first, last
  for step = 1, 80 do
    opt:zero_grad()
    local _, loss = m:forward(inp, tgt)
    if step == 1 then first = loss:item() end
    last = loss:item()
    loss:backward()
    opt:step()
  end
  T.ok(first > 1.5 and last < 0.05, ("training on a repeated string drives the loss near 0 (%.3f -> %.4f)"):format(first, last))
end

-- gradients ---------------------------------------------------------------------------------
for _, arch in ipairs{ "gpt2", "neo", "llama" } do
  local m = tiny(arch, { dropout = 0 })
  local x, y = gl.randint(0, 11, { 2, 12 }), gl.randint(0, 11, { 2, 12 })
  local _, loss = m:forward(x, y)
  loss:backward()
  local missing = {}
  for _, p in ipairs(m:named_parameters()) do
    local g = p[2].grad
    if not g or g:abs():max():item() == 0 then missing[#missing + 1] = p[1] end
  end
  T.ok(#missing == 0, arch .. ": every parameter gets a nonzero gradient", table.concat(missing, " "))
end

-- finite differences on a tiny model with large weights (so gradients are not tiny)
for _, arch in ipairs{ "gpt2", "neo", "llama" } do
  gl.seed(7)
  local m = gl.models.gpt{ arch = arch, vocab = 7, block = 8, n_layer = 1, n_head = 2, n_embd = 8,
    n_kv_head = arch == "llama" and 1 or nil, window = 3, local_layers = arch == "neo" and { 1 } or nil }
  gl.no_grad(function()
    for _, p in ipairs(m:named_parameters()) do
      local t = p[2]
      local r = gl.randn(t:shape())
      for i = 1, t:numel() do t:setflat(i, (p[1]:find("ln") or p[1]:find("norm")) and 1 + 0.2 * r:getflat(i) or 0.4 * r:getflat(i)) end
    end
  end)
  local x, y = gl.randint(0, 7, { 2, 6 }), gl.randint(0, 7, { 2, 6 })
  local function lossfn() local _, l = m:forward(x, y) return l end
  local sd = m:state_dict()
  local rows = {}
  local pick = arch == "llama"
      and { "model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.weight",
        "model.layers.0.mlp.gate_proj.weight", "model.layers.0.input_layernorm.weight" }
      or { "transformer.h.0.attn.c_attn.weight", "transformer.h.0.mlp.c_fc.bias", "transformer.wpe.weight",
        "transformer.h.0.ln_1.weight" }
  for _, name in ipairs(pick) do
    rows[#rows + 1] = { arch .. " loss wrt " .. name, lossfn, { sd[name] }, { eps = 1e-2, atol = 3e-3, rtol = 3e-2 } }
  end
  G.run(T, rows)
end

-- dropout ----------------------------------------------------------------------------------------
do
  local m = tiny("gpt2", { dropout = 0.5 })
  local x = gl.randint(0, 11, { 2, 10 })
  local a, b = m:forward(x), m:forward(x)
  T.ok(max_abs_diff(a, b) > 1e-3, "dropout is active in training mode")
  m:eval()
  a, b = m:forward(x), m:forward(x)
  T.eq(max_abs_diff(a, b), 0, "dropout is off in eval mode")
end

-- session == forward -------------------------------------------------------------------------------
for _, arch in ipairs{ "gpt2", "neo", "llama" } do
  local m = tiny(arch, { dropout = 0.1 })
  m:eval()
  local ids = gl.randint(0, 11, { 40 }) -- longer than the session's 32-token chunk and the neo window
  local ref = m:forward(ids)
  local s = m:session()
  T.eq(s:capacity(), 48, arch .. ": session capacity defaults to block_size")
  local all = s:append(ids, { all = true })
  T.eq(shape_of(all), "40,11", arch .. ": append{all=true} gives [n,V]")
  T.ok(max_abs_diff(all, ref) <= 1e-4, arch .. ": session logits (prefill) equal forward logits",
    max_abs_diff(all, ref))
  T.eq(s:length(), 40, arch .. ": length counts appended tokens")
  s:reset()
  local list, worst = ids:tolist(), 0
  s:append({ list[1], list[2], list[3] })
  for t = 4, 40 do
    local lg = s:append({ list[t] })
    worst = math.max(worst, max_abs_diff(lg, ref:select(1, t)))
  end
  T.ok(worst <= 1e-4, ("%s: session logits (token by token) equal forward logits (%.2g)"):format(arch, worst))
  T.raises(function() s:append(gl.randint(0, 11, { 9 })) end, "exceeds the capacity 48",
    arch .. ": appending past the capacity fails")
  T.eq(s:length(), 40, arch .. ": a failed append appends nothing")
  T.raises(function() s:append({ 11 }) end, "outside the vocabulary", arch .. ": bad token id is an error")
  s:free()
  T.raises(function() s:length() end, "freed session", arch .. ": use after free raises")
end

-- errors ------------------------------------------------------------------------------------------------
do
  T.raises(function() gl.models.gpt{ vocab = 10, block = 8, n_head = 3, n_embd = 16 } end,
    "n_embd 16 is not a multiple of n_head 3", "config: n_embd must divide by n_head")
  T.raises(function() gl.models.gpt{ vocab = 10, block = 8, colour = 1 } end, "unknown option 'colour'",
    "config: unknown keys are rejected")
  T.raises(function() gl.models.gpt{ block = 8 } end, "vocab_size (or vocab) is required", "config: vocab required")
  T.raises(function() gl.models.gpt{ arch = "bert", vocab = 4, block = 4 } end, "unknown arch 'bert'",
    "config: unknown arch")
  T.raises(function() gl.models.gpt{ arch = "llama", vocab = 4, block = 4, n_head = 4, n_kv_head = 3 } end,
    "not a multiple of n_kv_head 3", "config: n_kv_head must divide n_head")
  T.raises(function() gl.models.gpt{ vocab = 4, block = 4, n_kv_head = 2 } end, "grouped-query attention is LLaMA's",
    "config: GQA only for llama")
  T.raises(function() gl.models.gpt{ vocab = 4, block = 4, dropout = 1 } end, "dropout must be in [0, 1)",
    "config: dropout range")
  T.raises(function() gl.models.gpt{ vocab = 4, block = 4, n_layer = 2, local_layers = { 3 } } end,
    "local_layers[1] must be a layer number in 1..2", "config: local_layers range")
  local m = gl.models.gpt{ vocab = 10, block = 8, n_layer = 1, n_head = 2, n_embd = 8 }
  T.raises(function() m:forward(gl.randint(0, 10, { 1, 9 })) end, "sequence length 9 exceeds block_size 8",
    "forward: too-long input")
  T.raises(function() m:forward(gl.randint(0, 10, { 1, 4 }), gl.randint(0, 10, { 1, 5 })) end,
    "targets [1,5] do not match ids [1,4]", "forward: targets shape must match")
  T.raises(function() m:forward(gl.rand{ 1, 4 }) end, "ids must be i64 or i32", "forward: ids dtype")
  T.raises(function() m:session(9) end, "capacity 9 is outside 1..block_size 8", "session: capacity range")
end

-- the matrix-vector kernel of a decode step: widths that are not a multiple of 8 or 32, a vocab
-- that is not a multiple of 4 (a padded last block of rows), and a head big enough to be split
-- across threads, which must give the same logits bit for bit as one thread
do
  gl.seed(21)
  local m = gl.models.gpt{ arch = "llama", vocab = 1301, block = 16, n_layer = 1, n_head = 3, n_embd = 108,
                           n_hidden = 44 }
  m:eval()
  local ids = gl.randint(0, 1301, { 6 })
  local ref = m:forward(ids)
  local list = ids:tolist()
  local before = gl.threads()
  local rows = {}
  for _, th in ipairs{ 1, 2 } do
    gl.threads(th)
    local s = m:session()
    local worst, lg = 0, nil
    for t = 1, 6 do
      lg = s:append({ list[t] })
      worst = math.max(worst, max_abs_diff(lg, ref:select(1, t)))
    end
    rows[th] = lg
    T.ok(worst <= 1e-4, ("decode kernel, C 108 F 44 V 1301, %d thread(s): logits equal forward (%.2g)"):format(th, worst))
    s:free()
  end
  gl.threads(before)
  T.eq(max_abs_diff(rows[1], rows[2]), 0, "decode logits are the same bit for bit with 1 and 2 threads")
end

-- Weights over 16 MB stream from memory through the four-row kernel (rows
-- far apart read together): odd widths and row counts, GPT-2 and LLaMA, at
-- 1 and 2 threads, token-by-token decode against the full forward.
for _, c in ipairs{
  { arch = "llama", vocab = 41003, block = 24, n_layer = 2, n_head = 2, n_embd = 100, n_hidden = 270 },
  { vocab = 40003, block = 24, n_layer = 2, n_head = 2, n_embd = 108, dropout = 0 },
} do
  gl.seed(7)
  local m = gl.models.gpt(c)
  m:eval()
  local ids = gl.randint(0, c.vocab, { 12 })
  local ref = m:forward(ids)
  local list, before, last = ids:tolist(), gl.threads(), {}
  for _, th in ipairs{ 1, 2 } do
    gl.threads(th)
    local s, worst = m:session(), 0
    for t = 1, #list do
      last[th] = s:append({ list[t] })
      worst = math.max(worst, max_abs_diff(last[th], ref:select(1, t)))
    end
    s:free()
    T.ok(worst <= 1e-4, ("streamed decode, %s C %d V %d, %d thread(s): logits equal forward (%.2g)"):format(
      c.arch or "gpt2", c.n_embd, c.vocab, th, worst))
  end
  gl.threads(before)
  T.eq(max_abs_diff(last[1], last[2]), 0, ("streamed decode, %s: the same bits with 1 and 2 threads"):format(
    c.arch or "gpt2"))
end

T.done()
