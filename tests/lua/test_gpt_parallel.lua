-- model:forward_backward and model:loss: the batch's rows split between the
-- threads, each share run single-threaded (src/models/gpt_parallel.c). The
-- reference is the serial forward + backward on the whole batch.
local T = require "tap"
local gl = require "genlab"

local saved_threads = gl.threads()

-- block 16: the error checks below pass a sequence of 17
local function tiny(arch, extra)
  local cfg = { block = 16 }
  for k, v in pairs(extra or {}) do cfg[k] = v end
  return require "tiny_gpt"(arch, cfg)
end

local function grads(m)
  local out = {}
  for i, e in ipairs(m:named_parameters()) do out[i] = e[2].grad and e[2].grad:clone() or false end
  return out
end

-- The largest difference between two gradient lists; math.huge when one has a gradient the other lacks.
local function grad_diff(a, b)
  local worst = 0
  for i = 1, math.max(#a, #b) do
    if not a[i] or not b[i] then
      if a[i] ~= b[i] then return math.huge end
    else
      worst = math.max(worst, (a[i] - b[i]):abs():max():item())
    end
  end
  return worst
end

local function serial(m, x, y)
  gl.threads(1)
  m:zero_grad()
  local _, loss = m:forward(x, y)
  loss:backward()
  return loss:item(), grads(m)
end

gl.seed(7)

-- every arch, shares of unequal size (5 rows on 2 and 3 threads) ------------------------
for _, arch in ipairs { "gpt2", "neo", "llama" } do
  local m = tiny(arch)
  local x, y = gl.randint(0, 11, { 5, 16 }), gl.randint(0, 11, { 5, 16 })
  local want_loss, want = serial(m, x, y)
  for _, n in ipairs { 2, 3 } do
    gl.threads(n)
    m:zero_grad()
    local loss = m:forward_backward(x, y)
    T.near(loss, want_loss, 1e-5, ("%s, %d threads: the loss is the whole batch's"):format(arch, n))
    T.ok(grad_diff(grads(m), want) <= 1e-5, ("%s, %d threads: gradients match the serial step"):format(arch, n),
      ("max abs difference %g"):format(grad_diff(grads(m), want)))
  end
end

-- ignored targets: each share's mean is weighted by its counted targets ------------------
do
  local m = tiny("gpt2")
  local x, y = gl.randint(0, 11, { 4, 16 }), gl.randint(0, 11, { 4, 16 })
  for r = 0, 1 do -- the first half keeps 4 targets a row, the second all 16
    for t = 4, 15 do y:setflat(r * 16 + t + 1, -1) end
  end
  local want_loss, want = serial(m, x, y)
  gl.threads(2)
  m:zero_grad()
  T.near(m:forward_backward(x, y), want_loss, 1e-5, "targets of -1: the loss is the mean over counted targets")
  T.ok(grad_diff(grads(m), want) <= 1e-5, "targets of -1: gradients match the serial step")
  for r = 0, 3 do
    for t = 0, 15 do y:setflat(r * 16 + t + 1, -1) end
  end
  local _, loss = m:forward(x, y)
  local all_ignored = m:forward_backward(x, y)
  T.ok(all_ignored ~= all_ignored and loss:item() ~= loss:item(), "every target -1: NaN, as the serial step")
end

-- a share whose targets are all -1 adds nothing (its mean would be NaN)
do
  local m = tiny("gpt2")
  local x, y = gl.randint(0, 11, { 2, 16 }), gl.randint(0, 11, { 2, 16 })
  for t = 1, 16 do y:setflat(16 + t, -1) end
  local want_loss, want = serial(m, x, y)
  gl.threads(2)
  m:zero_grad()
  T.near(m:forward_backward(x, y), want_loss, 1e-5, "a share with every target -1: the loss is the other's")
  T.ok(grad_diff(grads(m), want) <= 1e-5, "a share with every target -1: gradients match the serial step")
  T.near(m:loss(x, y), want_loss, 1e-5, "a share with every target -1: loss likewise")
end

-- scale, accumulation, frozen parameters, evaluation -----------------------------------
do
  local m = tiny("llama")
  local x, y = gl.randint(0, 11, { 6, 16 }), gl.randint(0, 11, { 6, 16 })
  local _, want = serial(m, x, y)
  gl.threads(2)
  m:zero_grad()
  m:forward_backward(x, y, 0.25)
  m:forward_backward(x, y, 0.75)
  T.ok(grad_diff(grads(m), want) <= 1e-5, "scale: two calls add 0.25 and 0.75 of the gradient into the grads")

  m:zero_grad()
  local frozen = m:named_parameters()[1][2]
  frozen:requires_grad_(false)
  m:forward_backward(x, y)
  T.ok(frozen.grad == nil, "a frozen parameter gets no gradient")
  frozen:requires_grad_(true)

  m:zero_grad()
  local _, loss = m:forward(x, y)
  T.near(m:loss(x, y), loss:item(), 1e-5, "loss: the forward's mean over split rows")
  T.ok(grads(m)[1] == false, "loss records nothing: no gradients afterwards")
end

-- dropout: each share draws its own masks, reproducibly from the seed ----------------------
do
  local m = tiny("gpt2", { dropout = 0.3 })
  local x, y = gl.randint(0, 11, { 4, 16 }), gl.randint(0, 11, { 4, 16 })
  gl.threads(2)
  local function run()
    gl.seed(123)
    m:zero_grad()
    return m:forward_backward(x, y), grads(m)
  end
  local l1, g1 = run()
  local l2, g2 = run()
  T.ok(l1 == l2 and grad_diff(g1, g2) == 0, "dropout: one seed gives the same loss and gradients")
  m:eval()
  T.near(m:loss(x, y), (select(2, m:forward(x, y))):item(), 1e-5, "dropout: eval mode drops nothing")
  m:train()
  local l3 = run()
  T.ok(l3 == l1 and l1 > 0, "dropout: training mode again, same masks from the same seed")
end

-- bad input: one clear error, from whichever share meets it --------------------------------
do
  local m = tiny("gpt2")
  gl.threads(2)
  local x, y = gl.randint(0, 11, { 4, 16 }), gl.randint(0, 11, { 4, 16 })
  T.raises(function() m:forward_backward(x, gl.randint(0, 11, { 4, 15 })) end, "targets [4,15] do not match ids [4,16]",
    "mismatched targets are refused")
  x:setflat(3 * 16 + 6, 99) -- only the second share sees it, on another thread
  m:zero_grad()
  T.raises(function() m:forward_backward(x, y) end, "99", "an id out of range in the second share: its error")
  T.raises(function() m:loss(x, y) end, "99", "the same from loss")
  T.raises(function() m:forward_backward(gl.randint(0, 11, { 4, 17 }), gl.randint(0, 11, { 4, 17 })) end,
    "exceeds block_size", "too long a sequence is refused")
  x:setflat(3 * 16 + 6, 1)
  T.ok(pcall(m.forward_backward, m, x, y), "the model works again after an error")
end

-- gl.train takes this path for GPTs only: a Lua module's own loss method is not model:loss
do
  local V, D = 8, 16
  local Tiny = gl.nn.Module {
    name = "Tiny",
    init = function(self)
      self.emb = gl.nn.Embedding { num = V, dim = D }
      self.head = gl.nn.Linear { in_features = D, out_features = V }
    end,
    forward = function(self, x, y)
      local logits = self.head(self.emb(x))
      return logits, self:loss(logits, y)
    end,
    loss = function(_, logits, y) return gl.cross_entropy(logits:reshape { -1, V }, y:reshape { -1 }) end,
  }
  gl.threads(2)
  local run = gl.train { model = Tiny(), data = gl.data.tokens(gl.randint(0, V, { 2000 }), { block = 8, batch = 4 }),
                         quiet = true }
  local ok, res = pcall(function()
    run:step(1)
    return run:eval(2)
  end)
  T.ok(ok and res.train > 0, "gl.train: a Lua model with a loss helper trains and evaluates", tostring(res))
end

gl.threads(saved_threads)
T.done()
