-- Elementwise math, reductions, softmax and the arithmetic operators:
-- values against hand-computed numbers and against plain Lua reference loops.
-- Dims given from Lua are 1-based; index results (max/min/argmax) are 0-based.
local T = require "tap"
local gl = require "genlab"

gl.seed(1)

local function flat(t)
  local r = {}
  for i = 1, t:numel() do r[i] = t:getflat(i) end
  return r
end

-- |t - want| elementwise (want: flat Lua list), same count.
local function near(t, want, tol, name)
  local err = t:numel() == #want and 0 or math.huge
  for i = 1, math.min(t:numel(), #want) do
    local d = math.abs(t:getflat(i) - want[i])
    if d ~= d then d = (t:getflat(i) ~= t:getflat(i) and want[i] ~= want[i]) and 0 or math.huge end
    err = math.max(err, d)
  end
  return T.ok(err <= (tol or 1e-5), name .. (" (max err %.3g)"):format(err),
              "got {" .. table.concat(flat(t), ", ") .. "}")
end

local function shape(t) return "[" .. table.concat(t:shape(), ",") .. "]" end

local x = gl.tensor{{1, 2, 3}, {4, 5, 6}}

-- binary ops and broadcasting ------------------------------------------------
near(gl.add(x, gl.tensor{10, 20, 30}), {11, 22, 33, 14, 25, 36}, 0, "add [2,3] + [3] broadcasts rows")
local col, row = gl.tensor{{1}, {2}}, gl.tensor{{1, 10, 100, 1000}}
local outer = gl.mul(col, row)
T.eq(shape(outer), "[2,4]", "mul [2,1] * [1,4] gives [2,4]")
near(outer, {1, 10, 100, 1000, 2, 20, 200, 2000}, 0, "mul [2,1] * [1,4] is the outer product")
near(gl.sub(x, gl.tensor(1)), {0, 1, 2, 3, 4, 5}, 0, "sub with a 0-dim tensor")
near(gl.div(gl.tensor{1, 2, 3}, gl.tensor{2, 4, 8}), {0.5, 0.5, 0.375}, 0, "div")
near(gl.pow(gl.tensor{2, 3, 4}, gl.tensor{3, 2, 0.5}), {8, 9, 2}, 1e-6, "pow tensor ^ tensor")
near(gl.maximum(gl.tensor{1, 5, 3}, gl.tensor{4, 2, 3}), {4, 5, 3}, 0, "maximum")
near(gl.minimum(gl.tensor{1, 5, 3}, gl.tensor{4, 2, 3}), {1, 2, 3}, 0, "minimum")
near(gl.maximum(gl.tensor{-1, 0.5, 2}, 0), {0, 0.5, 2}, 0, "maximum with a number")
near(gl.add(5, gl.tensor{1, 2}), {6, 7}, 0, "gl.add(number, tensor)")
near(x:mul(2), {2, 4, 6, 8, 10, 12}, 0, "x:mul(number) as a method")
T.raises(function() gl.add(gl.ones(2, 3), gl.ones(4)) end, "add: shapes [2,3] and [4] cannot broadcast",
         "shape mismatch names both shapes")
T.raises(function() gl.mul(gl.arange(3), gl.ones(3)) end, "mul: expected f32 tensors, got i64 and f32",
         "int tensors are rejected by binary ops")
T.raises(function() return gl.arange(3) + 1 end, "add: expected f32 tensors, got i64",
         "int tensor + number names the op, not the fast path")
T.raises(function() gl.add(x, "a") end, "tensor expected", "a string operand is a type error")

-- operators -------------------------------------------------------------------
near(x + 1, {2, 3, 4, 5, 6, 7}, 0, "tensor + number")
near(1 + x, {2, 3, 4, 5, 6, 7}, 0, "number + tensor")
near(x - 1, {0, 1, 2, 3, 4, 5}, 0, "tensor - number")
near(10 - x, {9, 8, 7, 6, 5, 4}, 0, "number - tensor")
near(x * 3, {3, 6, 9, 12, 15, 18}, 0, "tensor * number")
near(3 * x, {3, 6, 9, 12, 15, 18}, 0, "number * tensor")
near(x / 2, {0.5, 1, 1.5, 2, 2.5, 3}, 1e-7, "tensor / number")
near(12 / x, {12, 6, 4, 3, 2.4, 2}, 1e-6, "number / tensor")
near(x ^ 2, {1, 4, 9, 16, 25, 36}, 0, "tensor ^ number")
near(x ^ 0.5, {1, math.sqrt(2), math.sqrt(3), 2, math.sqrt(5), math.sqrt(6)}, 1e-6, "tensor ^ 0.5")
near(2 ^ x, {2, 4, 8, 16, 32, 64}, 1e-5, "number ^ tensor")
near(-x, {-1, -2, -3, -4, -5, -6}, 0, "unary minus")
near(x + x * x, {2, 6, 12, 20, 30, 42}, 0, "tensor op tensor")
near(x - gl.tensor{1, 1, 1}, {0, 1, 2, 3, 4, 5}, 0, "operators broadcast")
T.ok(x == x and (x + 0) ~= x, "== is identity, not elementwise")
T.raises(function() return x + gl.ones(4) end, "add: shapes [2,3] and [4] cannot broadcast", "operator shape error")

-- unary ops -------------------------------------------------------------------
local v = gl.tensor{-2, -0.5, 0, 0.5, 2}
local function map(f) local r = {} for i, a in ipairs({-2, -0.5, 0, 0.5, 2}) do r[i] = f(a) end return r end
local function sig(a) return 1 / (1 + math.exp(-a)) end
local function erf(a) -- Taylor series, accurate to ~1e-15 for |a| <= 3
  local s, term, k = 0, a, 0
  repeat s = s + term / (2 * k + 1); k = k + 1; term = -term * a * a / k until math.abs(term) < 1e-16
  return 2 / math.sqrt(math.pi) * s
end
near(v:neg(), map(function(a) return -a end), 0, "neg")
near(v:exp(), map(math.exp), 1e-6, "exp")
near(gl.tensor{0.5, 1, 4}:log(), {math.log(0.5), 0, math.log(4)}, 1e-6, "log")
near(gl.tensor{0.25, 4}:sqrt(), {0.5, 2}, 0, "sqrt")
near(gl.tensor{0.25, 4}:rsqrt(), {2, 0.5}, 1e-6, "rsqrt")
near(v:abs(), {2, 0.5, 0, 0.5, 2}, 0, "abs")
near(v:sin(), map(math.sin), 1e-6, "sin")
near(v:cos(), map(math.cos), 1e-6, "cos")
near(v:tanh(), map(function(a) return (math.exp(2 * a) - 1) / (math.exp(2 * a) + 1) end), 1e-6, "tanh")
near(v:sigmoid(), map(sig), 1e-6, "sigmoid")
near(v:relu(), {0, 0, 0, 0.5, 2}, 0, "relu")
near(v:leaky_relu(), {-0.02, -0.005, 0, 0.5, 2}, 1e-7, "leaky_relu default slope 0.01")
near(v:leaky_relu(0.2), {-0.4, -0.1, 0, 0.5, 2}, 1e-7, "leaky_relu(x, 0.2)")
near(v:gelu(), map(function(a) return 0.5 * a * (1 + erf(a / math.sqrt(2))) end), 1e-6, "gelu (exact, erf)")
near(v:gelu{approximate = "tanh"}, map(function(a)
  local u = math.sqrt(2 / math.pi) * (a + 0.044715 * a ^ 3)
  return 0.5 * a * (1 + (math.exp(2 * u) - 1) / (math.exp(2 * u) + 1))
end), 1e-6, "gelu approximate='tanh'")
near(gl.tensor{1}:gelu(), {0.8413447}, 1e-6, "gelu(1) = Phi(1)")
near(gl.tensor{1}:gelu{approximate = "tanh"}, {0.8411920}, 1e-6, "gelu_tanh(1) = 0.841192")
near(v:silu(), map(function(a) return a * sig(a) end), 1e-6, "silu")
near(v:softplus(), map(function(a) return math.log(1 + math.exp(a)) end), 1e-6, "softplus")
near(gl.tensor{1, 30}:softplus{beta = 2, threshold = 20}, {math.log(1 + math.exp(2)) / 2, 30}, 1e-6,
     "softplus beta=2, linear above threshold")
near(gl.tensor{100}:softplus(), {100}, 0, "softplus does not overflow")
near(v:clamp(-1, 1), {-1, -0.5, 0, 0.5, 1}, 0, "clamp(x, -1, 1)")
near(v:clamp(nil, 0.5), {-2, -0.5, 0, 0.5, 0.5}, 0, "clamp(x, nil, max)")
near(v:clamp(0), {0, 0, 0, 0.5, 2}, 0, "clamp(x, min)")
T.raises(function() v:clamp() end, "clamp: at least one of min and max", "clamp needs a bound")
T.raises(function() v:softplus{beat = 1} end, "softplus: unknown option 'beat'", "softplus rejects unknown options")
T.raises(function() v:gelu{approximate = "fast"} end, 'approximate must be "none" or "tanh"', "gelu names the choices")
T.raises(function() gl.exp(gl.arange(3)) end, "exp: expected an f32 tensor, got i64", "unary ops reject int tensors")
local nan = gl.tensor{0 / 0}
T.ok(nan:relu():getflat(1) ~= nan:relu():getflat(1), "relu propagates NaN")
T.ok(nan:clamp(0, 1):getflat(1) ~= nan:clamp(0, 1):getflat(1), "clamp propagates NaN")

-- sum, mean, var, std -----------------------------------------------------------
T.eq(x:sum():item(), 21, "sum of all")
T.eq(x:sum():dim(), 0, "sum of all is 0-dim")
near(x:sum(1), {5, 7, 9}, 0, "sum over dim 1")
near(x:sum(2), {6, 15}, 0, "sum over dim 2")
near(x:sum(-1), {6, 15}, 0, "sum over dim -1 is the last")
T.eq(shape(x:sum(2, true)), "[2,1]", "keepdim keeps a size-1 dim")
T.eq(shape(x:sum(1)), "[3]", "without keepdim the dim goes")
T.eq(x:mean():item(), 3.5, "mean of all")
near(x:mean(1), {2.5, 3.5, 4.5}, 0, "mean over dim 1")
near(x:var(), {3.5}, 1e-6, "var of all, unbiased (correction 1)")
near(x:var{correction = 0}, {35 / 12}, 1e-6, "var of all, correction 0")
near(x:var(2), {1, 1}, 1e-6, "var over dim 2")
near(x:var(1, true, {correction = 0}), {2.25, 2.25, 2.25}, 1e-6, "var over dim 1, keepdim, correction 0")
T.eq(shape(x:var(1, true, {correction = 0})), "[1,3]", "var keepdim shape")
near(x:std(1), {math.sqrt(4.5), math.sqrt(4.5), math.sqrt(4.5)}, 1e-6, "std over dim 1")
near(x:std(), {math.sqrt(3.5)}, 1e-6, "std of all")
T.ok(gl.tensor{5}:var():item() ~= gl.tensor{5}:var():item(), "var of one element with correction 1 is NaN")
T.eq(gl.tensor{1e4 + 1, 1e4 + 2, 1e4 + 3}:var():item(), 1, "var is stable with a large mean")
T.raises(function() x:var{correction = 0.5} end, "var: correction must be an integer", "fractional correction")
T.raises(function() x:var(1, {corection = 0}) end, "var: unknown option 'corection'", "var rejects unknown options")
T.raises(function() x:sum(3) end, "sum: dim 3 out of range for shape [2,3]", "bad dim names the shape")
T.raises(function() x:softmax(0) end, "softmax: dim 0 out of range", "dim 0 is out of range (dims are 1-based)")
T.raises(function() gl.arange(4):sum() end, "sum: expected an f32 tensor, got i64", "reductions reject int tensors")
T.eq(gl.tensor(3):sum(1):item(), 3, "sum over dim 1 of a 0-dim tensor")
T.eq(gl.zeros(0):sum():item(), 0, "sum of an empty tensor is 0")

-- max, min, argmax, argmin ----------------------------------------------------------
local m = gl.tensor{{3, 9, 1}, {7, 2, 7}}
T.eq(m:max():item(), 9, "max of all")
T.eq(m:min():item(), 1, "min of all")
local vals, idx = m:max(2)
near(vals, {9, 7}, 0, "max over dim 2: values")
T.eq(idx:dtype(), "i64", "max indices are i64")
T.eq(table.concat(flat(idx), ","), "1,0", "max over dim 2: 0-based indices, first of ties")
vals, idx = m:min(1, true)
near(vals, {3, 2, 1}, 0, "min over dim 1: values")
T.eq(table.concat(flat(idx), ","), "0,1,0", "min over dim 1: 0-based indices")
T.eq(shape(vals) .. shape(idx), "[1,3][1,3]", "min keepdim shapes")
near(m:max(gl.tensor{5, 5, 5}), {5, 9, 5, 7, 5, 7}, 0, "max(x, tensor) is elementwise maximum")
T.eq(m:argmax():item(), 1, "argmax of all is 0-based in the flattened tensor")
T.eq(m:argmin():item(), 2, "argmin of all")
T.eq(table.concat(flat(m:argmax(2)), ","), "1,0", "argmax over dim 2, 0-based")
T.eq(table.concat(flat(m:argmin(1)), ","), "0,1,0", "argmin over dim 1, 0-based")
T.eq(shape(m:argmax(2, true)), "[2,1]", "argmax keepdim")
T.eq(gl.tensor{1, 0 / 0, 3}:max():item() ~= gl.tensor{1, 0 / 0, 3}:max():item(), true, "max propagates NaN")
T.raises(function() gl.zeros(2, 0):max(2) end, "max: cannot reduce an empty dim (shape [2,0])", "max of an empty dim")

-- logsumexp, norm -------------------------------------------------------------------
near(x:logsumexp(2), {3 + math.log(1 + math.exp(-1) + math.exp(-2)), 6 + math.log(1 + math.exp(-1) + math.exp(-2))},
     1e-6, "logsumexp over dim 2")
near(gl.tensor{1000, 1000}:logsumexp(1), {1000 + math.log(2)}, 1e-3, "logsumexp is stable for large inputs")
near(gl.tensor{-1000, -1000}:logsumexp(1), {-1000 + math.log(2)}, 1e-3, "logsumexp is stable for very negative inputs")
T.eq(gl.tensor{-math.huge, -math.huge}:logsumexp(1):item(), -math.huge, "logsumexp of all -inf is -inf")
T.eq(shape(x:logsumexp(1, true)), "[1,3]", "logsumexp keepdim")
near(gl.tensor{3, -4}:norm(), {5}, 1e-6, "norm, p = 2 by default")
near(gl.tensor{3, -4}:norm(1), {7}, 0, "norm p = 1")
near(gl.tensor{3, -4}:norm(math.huge), {4}, 0, "norm p = inf")
near(gl.tensor{3, -4}:norm(-math.huge), {3}, 0, "norm p = -inf")
near(gl.tensor{1, -2, 3}:norm(3), {36 ^ (1 / 3)}, 1e-5, "norm p = 3")
near(gl.tensor{{3, 4}, {6, 8}}:norm(2, 2), {5, 10}, 1e-6, "norm over dim 2")
T.eq(shape(gl.tensor{{3, 4}, {6, 8}}:norm(2, 1, true)), "[1,2]", "norm keepdim")
near(gl.tensor{3e30, 4e30}:norm(), {5e30}, 1e25, "norm does not overflow for large f32 values")

-- softmax, log_softmax --------------------------------------------------------------
local s = x:softmax(2)
local e1, e2 = math.exp(-2), math.exp(-1)
local z = 1 + e1 + e2
near(s, {e1 / z, e2 / z, 1 / z, e1 / z, e2 / z, 1 / z}, 1e-6, "softmax over dim 2")
near(s:sum(2), {1, 1}, 1e-6, "softmax rows sum to 1")
near(x:softmax(1), {1 / (1 + math.exp(3)), 1 / (1 + math.exp(3)), 1 / (1 + math.exp(3)),
                    1 / (1 + math.exp(-3)), 1 / (1 + math.exp(-3)), 1 / (1 + math.exp(-3))}, 1e-6, "softmax over dim 1")
near(gl.tensor{1000, 1001, 1002}:softmax(1), {e1 / z, e2 / z, 1 / z}, 1e-6, "softmax is stable for large inputs")
near(x:log_softmax(2), {-2 - math.log(z), -1 - math.log(z), -math.log(z), -2 - math.log(z), -1 - math.log(z),
                        -math.log(z)}, 1e-6, "log_softmax over dim 2")
near(gl.tensor{-1e4, 0}:log_softmax(1), {-1e4, 0}, 1e-3, "log_softmax keeps tiny probabilities finite")
near(gl.tensor{2, 2, 2, 2}:softmax(-1), {0.25, 0.25, 0.25, 0.25}, 1e-7, "softmax of equal values is uniform")

-- every dim of 3-D tensors against plain Lua loops (inner sizes below and above one block of 32)
local function ref_reduce(t, d, f, init)
  local sh = t:shape()
  local outer, n, inner = 1, sh[d], 1
  for k = 1, d - 1 do outer = outer * sh[k] end
  for k = d + 1, #sh do inner = inner * sh[k] end
  local out = {}
  for o = 0, outer - 1 do
    for i = 0, inner - 1 do
      local acc = init
      for k = 0, n - 1 do acc = f(acc, t:getflat((o * n + k) * inner + i + 1), k) end
      out[#out + 1] = acc
    end
  end
  return out
end

for _, sh in ipairs({{3, 37, 5}, {2, 3, 70}, {70, 2, 3}}) do
  local r = gl.randn(sh)
  local tag = table.concat(sh, "x")
  for d = 1, 3 do
    near(r:sum(d), ref_reduce(r, d, function(a, b) return a + b end, 0), 1e-4, ("sum dim %d of %s"):format(d, tag))
    near(r:max(d), ref_reduce(r, d, function(a, b) return math.max(a, b) end, -math.huge), 0, ("max dim %d of %s"):format(d, tag))
    local _, id = r:max(d)
    local want = ref_reduce(r, d, function(a, b, k)
      if type(a) ~= "table" then a = {-math.huge, 0} end
      if b > a[1] then return {b, k} end
      return a
    end, nil)
    local ids = {}
    for k, p in ipairs(want) do ids[k] = p[2] end
    near(id, ids, 0, ("max indices dim %d of %s"):format(d, tag))
    local lse = ref_reduce(r, d, function(a, b) return a + math.exp(b) end, 0)
    for k = 1, #lse do lse[k] = math.log(lse[k]) end
    near(r:logsumexp(d), lse, 1e-5, ("logsumexp dim %d of %s"):format(d, tag))
    local sm = r:softmax(d)
    local ones = {}
    for k = 1, r:numel() // sh[d] do ones[k] = 1 end
    near(sm:sum(d), ones, 1e-5, ("softmax dim %d of %s sums to 1"):format(d, tag))
    near(r:log_softmax(d):exp(), flat(sm), 1e-6, ("exp(log_softmax) = softmax, dim %d of %s"):format(d, tag))
  end
end

-- whole-tensor reductions over long rows use fixed chunks: check the exact answers
local big = gl.ones(300001)
T.eq(big:sum():item(), 300001, "sum of 300001 ones is exact")
T.eq(big:mean():item(), 1, "mean of 300001 ones")
local ramp = gl.arange(0, 300001, 1, {dtype = "f32"})
ramp:setflat(200000, 1e9)
T.eq(ramp:max():item(), 1e9, "max of a long row")
T.eq(ramp:argmax():item(), 199999, "argmax of a long row is 0-based")
T.eq(ramp:argmin():item(), 0, "argmin of a long row")
near(gl.full({1000, 1000}, 2):norm(), {2000}, 1e-3, "norm of a million elements")

T.done()
