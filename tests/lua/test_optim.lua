-- gl.optim: SGD, Adam and AdamW against torch.optim's formulas, parameter
-- groups, frozen parameters, state dicts, clip_grad_norm and schedules.
-- Group numbers typed in Lua (opt:lr(2)) are 1-based; the names inside
-- state dicts count from 0 ("state.0.exp_avg", "group.0.lr").
local T = require "tap"
local gl = require "genlab"

-- Rounds x to float32, to replay torch's float32 arithmetic op by op.
local function f(x) return (string.unpack("f", string.pack("f", x))) end
-- a * b + c rounded once, as ATen's FMA kernels: the product of two floats is
-- exact in a double, so only the sum rounds (twice, harmless for this data).
local function fma(a, b, c) return f(a * b + c) end

local function values(t)
  local out = {}
  for i = 1, t:numel() do out[i] = t:getflat(i) end
  return out
end

-- Gradient g = c * p + d from backward of sum(c p^2 / 2 + d p), so it changes every step.
gl.seed(42)
local C = gl.rand(2, 32) * 2 - 0.5
local D = gl.randn(2, 32)
local P0 = gl.randn(2, 32)
local function backward_quadratic(p)
  local loss = ((p * p) * C * 0.5 + p * D):sum()
  loss:backward()
end

local function new_param()
  return gl.tensor(P0:tolist(), { requires_grad = true })
end

-- Steps opt on p three times; ref(p_values, g_values) advances the reference in
-- place. Returns the largest difference between the two over all steps.
local function replay(p, opt, ref, steps)
  local want, worst = values(p), 0
  for _ = 1, steps or 3 do
    opt:zero_grad()
    backward_quadratic(p)
    ref(want, values(p.grad))
    opt:step()
    for i = 1, #want do worst = math.max(worst, math.abs(p:getflat(i) - want[i])) end
  end
  return worst
end

-- torch.optim.SGD's _single_tensor_sgd (torch 1.13) in float32
local function sgd_ref(h)
  local buf
  local wd, mom, damp, neg_lr = f(h.weight_decay or 0), f(h.momentum or 0), f(1 - (h.dampening or 0)), f(-h.lr)
  return function(p, g)
    local fresh = buf == nil
    buf = buf or {}
    for i = 1, #p do
      local d = g[i]
      if wd ~= 0 then d = fma(wd, p[i], d) end                     -- grad.add(p, alpha=wd)
      if mom ~= 0 then
        buf[i] = fresh and d or fma(damp, d, f(buf[i] * mom))      -- buf.mul_(mom).add_(d, alpha=1-damp)
        d = h.nesterov and fma(mom, buf[i], d) or buf[i]          -- d.add(buf, alpha=mom)
      end
      p[i] = fma(neg_lr, d, p[i])                                 -- p.add_(d, alpha=-lr)
    end
  end
end

-- torch.optim.Adam / AdamW (_single_tensor_adam(w), torch 1.13) in float32;
-- bias corrections in double as Python computes them
local function adam_ref(h, decoupled)
  local m, v, t = {}, {}, 0
  local b1, b2, lr, wd, eps = h.betas[1], h.betas[2], h.lr, h.weight_decay, h.eps
  return function(p, g)
    t = t + 1
    local bc1, bc2 = 1 - b1 ^ t, 1 - b2 ^ t
    local neg_step, bc2_sqrt = f(-(lr / bc1)), f(math.sqrt(bc2))
    for i = 1, #p do
      m[i], v[i] = m[i] or 0, v[i] or 0
      if decoupled then p[i] = f(p[i] * f(1 - lr * wd)) end     -- p.mul_(1 - lr*wd)
      local d = g[i]
      if not decoupled and wd ~= 0 then d = fma(f(wd), p[i], d) end
      m[i] = fma(f(1 - b1), d, f(m[i] * f(b1)))                 -- m.mul_(b1).add_(d, alpha=1-b1)
      v[i] = fma(f(f(1 - b2) * d), d, f(v[i] * f(b2)))          -- v.mul_(b2).addcmul_(d, d, value=1-b2)
      local denom = f(f(f(math.sqrt(v[i])) / bc2_sqrt) + f(eps))  -- (v.sqrt() / bc2_sqrt).add_(eps)
      p[i] = f(p[i] + f(f(neg_step * m[i]) / denom))            -- p.addcdiv_(m, denom, value=-step_size)
    end
  end
end

-- ---- the update rules, step by step --------------------------------------------------------------
do
  local cases = {
    { "SGD", { lr = 0.1 } },
    { "SGD with weight decay", { lr = 0.1, weight_decay = 0.05 } },
    { "SGD with momentum and dampening", { lr = 0.1, momentum = 0.9, dampening = 0.3, weight_decay = 0.01 } },
    { "SGD with nesterov momentum", { lr = 0.05, momentum = 0.8, nesterov = true, weight_decay = 0.02 } },
  }
  for _, case in ipairs(cases) do
    local p = new_param()
    local worst = replay(p, gl.optim.sgd({ p }, case[2]), sgd_ref(case[2]))
    T.ok(worst == 0, case[1] .. " matches torch's formula in float32 exactly over 3 steps", worst)
  end
  local adam_cases = {
    { "Adam", { lr = 0.01, betas = { 0.9, 0.999 }, eps = 1e-8, weight_decay = 0 }, false },
    { "Adam with L2 weight decay", { lr = 0.02, betas = { 0.8, 0.99 }, eps = 1e-6, weight_decay = 0.1 }, false },
    { "Adam with beta1 0.3", { lr = 0.02, betas = { 0.3, 0.9 }, eps = 1e-8, weight_decay = 0.05 }, false },
    { "AdamW", { lr = 0.01, betas = { 0.9, 0.999 }, eps = 1e-8, weight_decay = 0.1 }, true },
    { "AdamW with beta1 0.3", { lr = 0.05, betas = { 0.3, 0.95 }, eps = 1e-7, weight_decay = 0.01 }, true },
  }
  for _, case in ipairs(adam_cases) do
    local p = new_param()
    local make = case[3] and gl.optim.adamw or gl.optim.adam
    local worst = replay(p, make({ p }, case[2]), adam_ref(case[2], case[3]))
    T.ok(worst == 0, case[1] .. " matches torch's formula in float32 exactly over 3 steps", worst)
  end
  -- Independently of the float32 replay: Adam's first step moves each weight by about lr against its gradient.
  local p = new_param()
  local before = values(p)
  local opt = gl.optim.adam({ p }, { lr = 0.01 })
  backward_quadratic(p)
  local g = values(p.grad)
  opt:step()
  local ok = true
  for i = 1, p:numel() do
    local moved = p:getflat(i) - before[i]
    ok = ok and math.abs(math.abs(moved) - 0.01) < 1e-6 and (moved > 0) == (g[i] < 0)
  end
  T.ok(ok, "Adam's first step is -lr * sign(g) (bias corrections applied)")
  local sd = gl.optim.adamw({ new_param() }):state_dict()
  T.eq(sd.scalars["group.0.weight_decay"], 0.01, "AdamW's default weight_decay is 0.01 as torch's")
  T.eq(sd.scalars["group.0.lr"], 0.001, "default lr is 1e-3")
  T.eq(sd.scalars["group.0.beta2"], 0.999, "default betas are (0.9, 0.999)")
end

-- ---- what a step touches ----------------------------------------------------------------------
do
  local a, b, unused = new_param(), new_param(), new_param()
  local opt = gl.optim.sgd({ a, b, unused }, { lr = 0.1, momentum = 0.9 })
  backward_quadratic(a)
  backward_quadratic(b)
  b.requires_grad = false -- frozen after it got a gradient
  local b0, u0, a0 = values(b), values(unused), a:getflat(1)
  opt:step()
  T.ok(a:getflat(1) ~= a0, "a parameter with a gradient moves")
  T.eq(table.concat(values(b), ","), table.concat(b0, ","), "a frozen parameter is skipped even with a gradient")
  T.eq(table.concat(values(unused), ","), table.concat(u0, ","), "a parameter without gradient is skipped")
  local st = opt:state_dict().tensors
  T.ok(st["state.0.momentum_buffer"] and not st["state.1.momentum_buffer"] and not st["state.2.momentum_buffer"],
    "only stepped parameters get state")
  opt:zero_grad()
  T.ok(a.grad == nil and b.grad == nil, "zero_grad drops the gradients")

  gl.seed(1)
  local lin = gl.nn.Linear { in_features = 3, out_features = 2 }
  lin.weight.requires_grad = false
  local w0, bias0 = values(lin.weight), lin.bias:getflat(1)
  local o2 = gl.optim.adam(lin, { lr = 0.1 })
  lin(gl.randn(4, 3)):sum():backward()
  o2:step()
  T.eq(table.concat(values(lin.weight), ","), table.concat(w0, ","), "a frozen module weight stays as it was")
  T.ok(lin.bias:getflat(1) ~= bias0, "the rest of the module trains")
end

-- ---- parameter groups and learning rates ----------------------------------------------------------
do
  local p1, p2 = new_param(), new_param()
  local opt = gl.optim.sgd({ { params = { p1 } }, { params = { p2 }, lr = 0.01 } }, { lr = 0.1 })
  T.eq(opt:num_groups(), 2, "two groups")
  T.eq(opt:lr(1), 0.1, "a group without lr takes the default")
  T.eq(opt:lr(2), 0.01, "a group's own lr wins")
  backward_quadratic(p1)
  backward_quadratic(p2)
  local g = p1.grad:getflat(1)
  local x1, x2 = p1:getflat(1), p2:getflat(1)
  opt:step()
  T.near(x1 - p1:getflat(1), 0.1 * g, 1e-6, "group 1 steps with lr 0.1")
  T.near(x2 - p2:getflat(1), 0.01 * g, 1e-6, "group 2 steps with lr 0.01")
  opt:set_lr(0.5, 2)
  T.ok(opt:lr(1) == 0.1 and opt:lr(2) == 0.5, "set_lr(x, g) sets one group")
  opt:set_lr(0.2)
  T.ok(opt:lr(1) == 0.2 and opt:lr(2) == 0.2, "set_lr(x) sets every group")
  T.raises(function() opt:lr(3) end, "group 3 out of range 1..2", "group numbers are checked")
  T.raises(function() opt:set_lr(-1) end, "lr must be >= 0", "set_lr checks the value")
  local s = tostring(opt)
  T.ok(s:find("SGD(params=2, groups=2)", 1, true) and s:find("group 2: params=1, lr=0.2", 1, true),
    "tostring shows the groups", s)
  local dup = new_param()
  local seen = gl.optim.adam({ dup, dup }, { lr = 0.1 })
  T.eq(tostring(seen):match("params=(%d+)"), "1", "a tensor repeated in one group is stepped once")
end

-- ---- constructor checks --------------------------------------------------------------------------
do
  local p = new_param()
  T.raises(function() gl.optim.sgd({}, { lr = 0.1 }) end, "sgd: got an empty parameter list", "empty list")
  T.raises(function() gl.optim.adam({ p }, { lr = 0.1, beta = 0.9 }) end, "adam: unknown option 'beta'", "unknown option")
  T.raises(function() gl.optim.adam({ p }, { betas = { 0.9 } }) end, "betas must be a table of two numbers", "betas shape")
  T.raises(function() gl.optim.adamw({ p }, { betas = { 0.9, 1.0 } }) end, "adamw: beta2 must be in [0, 1) (got 1)",
    "betas range")
  T.raises(function() gl.optim.sgd({ p }, { lr = 0.1, nesterov = true }) end, "nesterov needs momentum > 0",
    "nesterov needs momentum")
  T.raises(function() gl.optim.sgd({ p }, { lr = -1 }) end, "sgd: lr must be >= 0", "negative lr")
  T.raises(function() gl.optim.sgd({ p, "x" }, { lr = 0.1 }) end, "params[2] is a string, not a tensor", "non-tensors")
  T.raises(function() gl.optim.sgd({ { params = { p } }, { params = { p } } }, { lr = 0.1 }) end,
    "parameter 1 is already in group 1", "a tensor in two groups")
  T.raises(function() gl.optim.sgd({ { params = { p }, betas = { 0.9, 0.9 } } }) end, "sgd: unknown option 'betas'",
    "group options are checked")
  T.raises(function() gl.optim.sgd({ gl.zeros({ 2 }, { dtype = "i64" }) }) end, "only f32 tensors can be optimized",
    "int tensors")
end

-- ---- state dicts -----------------------------------------------------------------------------------
local function roundtrip(make, name)
  local pa = new_param()
  local oa = make({ pa })
  for _ = 1, 2 do
    oa:zero_grad(); backward_quadratic(pa); oa:step()
  end
  local sd = oa:state_dict()
  local pb = gl.tensor(pa:tolist(), { requires_grad = true })
  local ob = make({ pb }, 0.5) -- another lr, which the state restores
  ob:load_state_dict(sd)
  T.eq(ob:lr(), oa:lr(), name .. ": load_state_dict restores the group hyperparameters")
  local same = true
  for _ = 1, 3 do
    oa:zero_grad(); backward_quadratic(pa); oa:step()
    ob:zero_grad(); backward_quadratic(pb); ob:step()
    for i = 1, pa:numel() do same = same and pa:getflat(i) == pb:getflat(i) end
  end
  T.ok(same, name .. ": a state_dict round trip gives identical later steps")
  return sd
end

do
  local adam = function(params, lr) return gl.optim.adamw(params, { lr = lr or 0.05, weight_decay = 0.1 }) end
  local sd = roundtrip(adam, "AdamW")
  T.eq(sd.scalars["state.0.step"], 2, "step counts are in the scalars")
  T.ok(math.type(sd.scalars["state.0.step"]) == "integer", "counts are integers")
  T.ok(gl.is_tensor(sd.tensors["state.0.exp_avg"]) and gl.is_tensor(sd.tensors["state.0.exp_avg_sq"]),
    "moments are in the tensors")
  T.eq(sd.scalars["group.0.params"], 1, "group sizes are recorded")
  roundtrip(function(params, lr) return gl.optim.sgd(params, { lr = lr or 0.05, momentum = 0.9, nesterov = true }) end,
    "SGD with momentum")

  local p = new_param()
  local sgd = gl.optim.sgd({ p }, { lr = 0.1, momentum = 0.9 })
  backward_quadratic(p); sgd:step()
  local adam2 = gl.optim.adam({ new_param() })
  T.raises(function() adam2:load_state_dict(sgd:state_dict()) end, "unexpected key", "an SGD state does not load into Adam")
  local bad = { tensors = { ["state.0.exp_avg"] = gl.zeros(3), ["state.0.exp_avg_sq"] = gl.zeros(2, 32) },
    scalars = { ["state.0.step"] = 1, ["group.0.params"] = 1 } }
  T.raises(function() adam2:load_state_dict(bad) end, "'state.0.exp_avg' is f32 [3] in the file, parameter 1 is f32 [2,32]",
    "a state of the wrong shape is rejected")
  bad.tensors = { ["state.0.exp_avg"] = gl.zeros(2, 32) }
  T.raises(function() adam2:load_state_dict(bad) end, "state of parameter 1 is incomplete", "partial state is rejected")
  local two = gl.optim.adam({ { params = { new_param() } }, { params = { new_param() } } })
  T.raises(function() two:load_state_dict(gl.optim.adam({ new_param() }):state_dict()) end, "no 'group.1.params'",
    "a state with fewer groups is rejected")
  T.raises(function() adam2:load_state_dict({ tensors = {}, scalars = { ["group.0.params"] = 3 } }) end,
    "group 1 has 3 parameters in the file, 1 in the optimizer", "group sizes must match")
  T.raises(function() adam2:load_state_dict({ tensors = {}, scalar = {} }) end, "unknown option 'scalar'",
    "state dict keys are checked")
end

-- through a checkpoint file, as the Trainer resumes
if gl.checkpoint and gl.save then
  local pa = new_param()
  local oa = gl.optim.adam({ pa }, { lr = 0.03, weight_decay = 0.01 })
  oa:zero_grad(); backward_quadratic(pa); oa:step()
  local path = os.tmpname()
  gl.checkpoint.save(path, { optim = oa, step = 1 })
  local pb = gl.tensor(pa:tolist(), { requires_grad = true })
  local ob = gl.optim.adam({ pb }, { lr = 0.03, weight_decay = 0.01 })
  gl.checkpoint.load(path, { optim = ob })
  os.remove(path)
  oa:zero_grad(); backward_quadratic(pa); oa:step()
  ob:zero_grad(); backward_quadratic(pb); ob:step()
  T.eq(table.concat(values(pb), ","), table.concat(values(pa), ","), "optimizer state survives a checkpoint file")
end

-- ---- clip_grad_norm ---------------------------------------------------------------------------------
do
  local a = gl.tensor({ 1, 2, 3 }, { requires_grad = true })
  local b = gl.tensor({ { 1, 1 }, { 1, 1 } }, { requires_grad = true })
  local frozen = gl.tensor({ 5 }, { requires_grad = true })
  local ca, cb = gl.tensor { 3, 0, -4 }, gl.tensor { { 1, -2 }, { 2, 1 } }
  local function grads()
    a.grad, b.grad, frozen.grad = nil, nil, nil
    ((a * ca):sum() + (b * cb):sum() + (frozen * 100):sum()):backward()
  end
  grads()
  frozen.requires_grad = false
  local total = math.sqrt(9 + 16 + 1 + 4 + 4 + 1)
  local n = gl.optim.clip_grad_norm({ a, b, frozen }, 100)
  T.near(n, total, 1e-6, "clip_grad_norm returns the 2-norm of all gradients (frozen left out)")
  T.eq(a.grad:getflat(1), 3, "gradients under max_norm are unchanged")
  n = gl.optim.clip_grad_norm({ a, b, frozen }, 1.0)
  local coef = f(f(1.0) / f(f(total) + f(1e-6)))
  T.near(n, total, 1e-6, "the returned norm is the norm before clipping")
  T.eq(a.grad:getflat(3), f(-4 * coef), "gradients are scaled by max_norm / (norm + 1e-6), in float32 as torch")
  T.near(gl.optim.clip_grad_norm({ a, b }, 10), 1.0, 1e-5, "after clipping the norm is max_norm")
  T.eq(frozen.grad:getflat(1), 100, "a frozen parameter's gradient is left alone")
  grads()
  T.near(gl.optim.clip_grad_norm({ a, b }, 100, { norm_type = math.huge }), 4, 0, "norm_type = math.huge is the max-abs norm")
  T.near(gl.optim.clip_grad_norm({ a, b }, 100, { norm_type = 1 }), 7 + 6, 1e-6, "norm_type = 1")
  T.raises(function() gl.optim.clip_grad_norm({ a }, 1, { norm = 2 }) end, "unknown option 'norm'", "options are checked")
  gl.seed(2)
  local lin = gl.nn.Linear { in_features = 3, out_features = 2 }
  lin(gl.randn(4, 3)):sum():backward()
  local want = 0
  for _, p in ipairs(lin:parameters()) do
    for i = 1, p:numel() do want = want + p.grad:getflat(i) ^ 2 end
  end
  T.near(gl.optim.clip_grad_norm(lin, 1e9), math.sqrt(want), 1e-5, "clip_grad_norm takes a module")
end

-- ---- schedules ---------------------------------------------------------------------------------------
do
  local S = gl.optim.schedule
  local c = S.constant { lr = 0.1 }
  T.ok(c(0) == 0.1 and c(12345) == 0.1, "constant")
  local st = S.step { lr = 1, step_size = 3, gamma = 0.5 }
  T.ok(st(0) == 1 and st(2) == 1 and st(3) == 0.5 and st(5) == 0.5 and st(6) == 0.25, "step: lr * gamma^floor(s / step_size)")
  T.eq(S.step { lr = 2, step_size = 1 }(1), 0.2, "step's gamma defaults to 0.1")
  local cos = S.cosine { lr = 1, warmup = 10, max_steps = 110, min_lr = 0.1 }
  T.eq(cos(0), 0, "cosine starts warmup at 0")
  T.near(cos(5), 0.5, 1e-12, "warmup is linear")
  T.eq(cos(10), 1, "warmup ends at lr")
  T.near(cos(35), 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.25)), 1e-12, "cosine decay a quarter of the way")
  T.near(cos(60), 0.55, 1e-12, "half way is (lr + min_lr) / 2")
  T.near(cos(110), 0.1, 1e-12, "max_steps reaches min_lr")
  T.eq(cos(1000), 0.1, "after max_steps stays at min_lr")
  T.eq(cos:lr(10), cos(10), "sched:lr(s) is sched(s)")
  local warm = S.cosine { lr = 1, warmup = 4, max_steps = 8, start_lr = 0.2 }
  T.ok(warm(0) == 0.2 and math.abs(warm(2) - 0.6) < 1e-12, "warmup from start_lr")
  T.eq(S.cosine { lr = 0.5, max_steps = 10 }(0), 0.5, "no warmup starts at lr")
  T.raises(function() S.cosine { lr = 1, warmup = 10, max_steps = 5 } end, "cosine: max_steps (5) must be >= warmup (10)",
    "cosine checks its steps")
  T.raises(function() S.cosine { lr = 1 } end, "cosine: 'max_steps' must be an integer", "max_steps is required")
  T.raises(function() S.step { lr = 1, step_size = 2, gama = 0.5 } end, "step: unknown option 'gama'", "unknown option")
  T.ok(tostring(cos):find("schedule.cosine{lr=1, warmup=10, max_steps=110", 1, true), "tostring of a schedule")
  local p = new_param()
  local opt = gl.optim.sgd({ p }, { lr = 1 })
  for s = 0, 20 do opt:set_lr(cos(s)) end
  T.eq(opt:lr(), cos(20), "schedules drive set_lr")
end

T.done()
