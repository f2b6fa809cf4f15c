-- Golden tests against PyTorch: every op of tests/fixtures/ops.safetensors
-- is recomputed here, then backward(R) runs, and the output and each input's
-- gradient are compared with the stored ones (the fixture's references are
-- float64 results rounded to f32; see tests/fixtures/make_fixtures.py, which
-- also names the scalar arguments repeated below). Then 5 AdamW steps of the
-- MLP of mlp.safetensors are compared loss by loss and parameter by parameter.
-- Dims: the fixture script uses PyTorch's 0-based dims; here they are
-- 1-based (PyTorch dim d is Lua dim d + 1; negative dims are the same).
-- Index tensors (ids, targets) hold 0-based values in both.
local T = require "tap"
local gl = require "genlab"

if not gl.load then
  print("ok 1 - # SKIP gl.load is missing: cannot read the fixtures")
  print("1..1")
  os.exit(0)
end

local F = gl.load("../fixtures/ops.safetensors")

-- Shapes must match exactly; then elementwise max abs error within tol.
local near = T.near_tensor

-- Tolerances: the references are exact to f32 rounding, so what remains is
-- genlab's own f32 rounding. 1e-5 absolute covers values of magnitude up to
-- ~20 with a few ulps (exp of randn reaches e^2.5). Sums of products (matmul,
-- linear) and normalizations (mean, variance, rsqrt chains) accumulate in a
-- different order than float64; 1e-4 covers their ~K ulps at |values| < 10.
local TOL, TOL_ACC = 1e-5, 1e-4

-- case(name, args, grads, fn, tol, label): args are the fixture names of
-- fn's inputs in order, grads the ones whose gradient is checked; label
-- tells apart two ways of computing the same case.
local function case(name, args, grads, fn, tol, label)
  tol = tol or TOL
  local title = label and (name .. " (" .. label .. ")") or name
  local ins, by = {}, {}
  for i, a in ipairs(args) do
    ins[i] = F[name .. "." .. a]
    if not ins[i] then return T.ok(false, name .. ": fixture has " .. name .. "." .. a) end
    by[a] = ins[i]
  end
  for _, g in ipairs(grads) do
    by[g]:requires_grad_(true)
    by[g].grad = nil -- a case may run twice on the same inputs
  end
  local okay, out = pcall(fn, table.unpack(ins))
  if not okay then return T.ok(false, title .. " runs", out) end
  near(out, F[name .. ".out"], tol, title .. " output")
  local okb, err = pcall(out.backward, out, F[name .. ".R"])
  if not okb then return T.ok(false, title .. " backward runs", err) end
  for _, g in ipairs(grads) do
    near(by[g].grad, F[name .. ".grad." .. g], tol, title .. " grad " .. g)
  end
end

-- Elementwise binary with broadcasting.
case("add", {"a", "b"}, {"a", "b"}, function(a, b) return gl.add(a, b) end)
case("mul", {"a", "b"}, {"a", "b"}, function(a, b) return gl.mul(a, b) end)
case("div", {"a", "b"}, {"a", "b"}, function(a, b) return gl.div(a, b) end)
case("pow", {"a", "b"}, {"a", "b"}, function(a, b) return gl.pow(a, b) end)
case("pow_scalar", {"x"}, {"x"}, function(x) return gl.pow(x, 2.5) end)
-- Same through the operators.
case("add", {"a", "b"}, {"a", "b"}, function(a, b) return a + b end, TOL, "a + b")
case("mul", {"a", "b"}, {"a", "b"}, function(a, b) return a * b end, TOL, "a * b")
case("div", {"a", "b"}, {"a", "b"}, function(a, b) return a / b end, TOL, "a / b")
case("pow_scalar", {"x"}, {"x"}, function(x) return x ^ 2.5 end, TOL, "x ^ 2.5")

-- Elementwise unary.
for _, op in ipairs {"exp", "log", "tanh", "sigmoid", "relu", "gelu", "silu", "softplus"} do
  case(op, {"x"}, {"x"}, function(x) return gl[op](x) end)
end
case("gelu_tanh", {"x"}, {"x"}, function(x) return gl.gelu(x, {approximate = "tanh"}) end)

-- Reductions over one dim (1-based here).
case("sum", {"x"}, {"x"}, function(x) return gl.sum(x, 2) end)
case("mean", {"x"}, {"x"}, function(x) return gl.mean(x, 3) end)
case("var", {"x"}, {"x"}, function(x) return gl.var(x, 2) end, TOL_ACC)
case("max", {"x"}, {"x"}, function(x) return (gl.max(x, 1)) end)
case("logsumexp", {"x"}, {"x"}, function(x) return gl.logsumexp(x, 2) end)
case("softmax", {"x"}, {"x"}, function(x) return gl.softmax(x, 2) end)
case("log_softmax", {"x"}, {"x"}, function(x) return gl.log_softmax(x, -1) end)

-- Matrix products.
case("matmul", {"a", "b"}, {"a", "b"}, function(a, b) return gl.matmul(a, b) end, TOL_ACC)
case("matmul_batched", {"a", "b"}, {"a", "b"}, function(a, b) return gl.matmul(a, b) end, TOL_ACC)
case("linear", {"x", "weight", "bias"}, {"x", "weight", "bias"}, function(x, w, b) return gl.linear(x, w, b) end,
  TOL_ACC)

-- Normalizations and embedding.
case("layer_norm", {"x", "w", "b"}, {"x", "w", "b"}, function(x, w, b) return gl.layer_norm(x, w, b, 1e-5) end,
  TOL_ACC)
case("rms_norm", {"x", "w"}, {"x", "w"}, function(x, w) return gl.rms_norm(x, w, 1e-6) end, TOL_ACC)
-- genlab's argument order is (weight, ids), PyTorch's F.embedding(input, weight).
case("embedding", {"input", "weight"}, {"weight"}, function(ids, w) return gl.embedding(w, ids) end)

-- Losses.
case("cross_entropy", {"input", "target"}, {"input"}, function(x, y) return gl.cross_entropy(x, y) end)
case("cross_entropy_ignore", {"input", "target"}, {"input"},
  function(x, y) return gl.cross_entropy(x, y, {ignore_index = -100}) end)
case("cross_entropy_smooth", {"input", "target"}, {"input"},
  function(x, y) return gl.cross_entropy(x, y, {label_smoothing = 0.1}) end)
case("cross_entropy_sum", {"input", "target"}, {"input"},
  function(x, y) return gl.cross_entropy(x, y, {reduction = "sum"}) end)
case("cross_entropy_none", {"input", "target"}, {"input"},
  function(x, y) return gl.cross_entropy(x, y, {reduction = "none"}) end)
case("mse", {"input", "target"}, {"input", "target"}, function(x, y) return gl.mse_loss(x, y) end)
case("l1", {"input", "target"}, {"input", "target"}, function(x, y) return gl.l1_loss(x, y) end)
case("bce", {"input", "target"}, {"input"}, function(x, y) return gl.binary_cross_entropy(x, y) end)
case("bce_with_logits", {"input", "target"}, {"input"},
  function(x, y) return gl.binary_cross_entropy_with_logits(x, y) end)
case("kl_div", {"input", "target"}, {"input"}, function(x, y) return gl.kl_div(x, y, {reduction = "sum"}) end)

-- Shape and indexing.
case("transpose", {"x"}, {"x"}, function(x) return gl.transpose(x, 1, 3) end)
case("permute", {"x"}, {"x"}, function(x) return gl.permute(x, {3, 1, 2}) end)
case("cat", {"a", "b"}, {"a", "b"}, function(a, b) return gl.cat({a, b}, 2) end)
case("gather", {"x", "index"}, {"x"}, function(x, ids) return gl.gather(x, 2, ids) end)
case("masked_fill", {"x", "mask"}, {"x"}, function(x, m) return gl.masked_fill(x, m, -2.5) end)
case("where", {"cond", "a", "b"}, {"a", "b"}, function(c, a, b) return gl.where(c, a, b) end)
case("tril", {"x"}, {"x"}, function(x) return gl.tril(x) end)
case("tril_k1", {"x"}, {"x"}, function(x) return gl.tril(x, -1) end)

-- The MLP: 8 -> 16 -> tanh -> 4, cross-entropy, 5 AdamW steps.
local M = gl.load("../fixtures/mlp.safetensors")
local okm, why = pcall(function()
  local fc1 = gl.nn.Linear{in_features = 8, out_features = 16}
  local fc2 = gl.nn.Linear{in_features = 16, out_features = 4}
  fc1:load_state_dict{weight = M["mlp.init.fc1.weight"], bias = M["mlp.init.fc1.bias"]}
  fc2:load_state_dict{weight = M["mlp.init.fc2.weight"], bias = M["mlp.init.fc2.bias"]}
  local params = {}
  for _, m in ipairs {fc1, fc2} do
    for _, p in ipairs(m:parameters()) do params[#params + 1] = p end
  end
  local opt = gl.optim.adamw(params, {lr = 1e-2, betas = {0.9, 0.999}, eps = 1e-8, weight_decay = 0.1})
  local want = M["mlp.loss"]
  for step = 1, 5 do
    opt:zero_grad()
    local loss = gl.cross_entropy(fc2(gl.tanh(fc1(M["mlp.x"]))), M["mlp.y"])
    loss:backward()
    opt:step()
    -- The loss is a mean of 6 log-softmax terms of O(1): a few ulps.
    T.near(loss:item(), want:getflat(step), 1e-5, ("mlp loss at step %d"):format(step))
  end
  -- Adam moves each entry by lr * m / (sqrt(v) + eps), so f32 rounding of
  -- a gradient g (~1e-8 absolute) shifts a step by lr * 1e-8 / |g|. The
  -- smallest |g| in these 5 steps is 3e-5 (float64 run), which bounds the
  -- drift near 5 * lr * 3e-4 = 1.5e-5; 2e-5 keeps a margin for other BLAS
  -- kernels, while a wrong lr, beta, decay or bias correction moves
  -- parameters by > 1e-3.
  for _, n in ipairs {"fc1", "fc2"} do
    local m = n == "fc1" and fc1 or fc2
    near(m.weight, M["mlp.final." .. n .. ".weight"], 2e-5, "mlp final " .. n .. ".weight")
    near(m.bias, M["mlp.final." .. n .. ".bias"], 2e-5, "mlp final " .. n .. ".bias")
  end
end)
T.ok(okm, "mlp trains with gl.nn.Linear and gl.optim.adamw", why)
T.done()
