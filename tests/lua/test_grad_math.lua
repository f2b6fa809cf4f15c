-- Finite-difference gradient checks for the math area: binary ops (with
-- broadcasting), unary ops, reductions and softmax; then the PyTorch
-- conventions at kinks and ties, which finite differences cannot check.
local T = require "tap"
local G = require "gradcheck"
local gl = require "genlab"

gl.seed(2)
local input = G.input

-- A leaf whose values are at least `gap` from zero (away from the kinks of abs/relu/sign).
local function away(shape, gap)
  local x = gl.rand(shape)
  for i = 1, x:numel() do
    local u = x:getflat(i)
    x:setflat(i, (i % 2 == 0 and 1 or -1) * ((gap or 0.2) + (1 - (gap or 0.2)) * u))
  end
  return x:requires_grad_()
end

-- A leaf of distinct values 0.1 apart in scrambled order, so no max/min or
-- |x| tie is within reach of the finite-difference step.
local function distinct(shape)
  local x = gl.zeros(shape)
  local n = x:numel()
  for i = 1, n do x:setflat(i, ((i * 37) % n - n / 2) * 0.1 + 0.05) end
  return x:requires_grad_()
end

local function leaf(values) return gl.tensor(values, {requires_grad = true}) end

local rows = {
  -- binary, with broadcasting
  {"add [2,3] + [3]", gl.add, {input{2, 3}, input{3}}},
  {"add [2,3] + 0-dim", gl.add, {input{2, 3}, gl.tensor(0.5, {requires_grad = true})}},
  {"sub [2,1] - [1,4]", gl.sub, {input{2, 1}, input{1, 4}}},
  {"sub [3] - [2,3]", gl.sub, {input{3}, input{2, 3}}},
  {"mul [2,3] * [3]", gl.mul, {input{2, 3}, input{3}}},
  {"mul [2,1] * [1,4]", gl.mul, {input{2, 1}, input{1, 4}}},
  {"mul x * x (gradient accumulates)", function(x) return gl.mul(x, x) end, {input{5}}},
  {"div [2,3] / [3]", gl.div, {input{2, 3}, input({3}, 0.5, 2)}},
  {"div [2,1] / [1,4]", gl.div, {input{2, 1}, input({1, 4}, 0.5, 2)}},
  {"div 0-dim / [2,3]", gl.div, {gl.tensor(1.5, {requires_grad = true}), input({2, 3}, 0.5, 2)}},
  {"pow [2,3] ^ [3]", gl.pow, {input({2, 3}, 0.5, 2), input({3}, -1, 2)}},
  {"pow [2,1] ^ [1,4]", gl.pow, {input({2, 1}, 0.5, 2), input({1, 4}, -1, 2)}},
  {"maximum [2,3] with [3]", gl.maximum, {leaf{{-0.9, 0.3, 0.8}, {0.1, -0.4, 0.6}}, leaf{0.5, -0.2, 0.2}}},
  {"minimum [2,1] with [1,4]", gl.minimum, {leaf{{-0.5}, {0.35}}, leaf{{-0.8, 0.1, 0.6, 0.9}}}},
  -- tensor with number: the affine / pow_scalar paths and number-first operands
  {"x * 3 + 1", function(x) return x * 3 + 1 end, {input{2, 3}}},
  {"5 - x", function(x) return 5 - x end, {input{4}}},
  {"x - 5", function(x) return x - 5 end, {input{4}}},
  {"x / 4", function(x) return x / 4 end, {input{4}}},
  {"2 / x", function(x) return 2 / x end, {input({4}, 0.5, 2)}},
  {"2 ^ x", function(x) return 2 ^ x end, {input{4}}},
  {"-x", function(x) return -x end, {input{4}}},
  {"maximum(x, 0.1)", function(x) return gl.maximum(x, 0.1) end, {away{6}}},
  -- unary
  {"neg", gl.neg, {input{2, 3}}},
  {"exp", gl.exp, {input{2, 3}}},
  {"log", gl.log, {input({2, 3}, 0.5, 2)}},
  {"sqrt", gl.sqrt, {input({2, 3}, 0.5, 2)}},
  {"rsqrt", gl.rsqrt, {input({2, 3}, 0.5, 2)}},
  {"abs", gl.abs, {away{2, 3}}},
  {"sin", gl.sin, {input({2, 3}, -3, 3)}},
  {"cos", gl.cos, {input({2, 3}, -3, 3)}},
  {"tanh", gl.tanh, {input({2, 3}, -2, 2)}},
  {"sigmoid", gl.sigmoid, {input({2, 3}, -3, 3)}},
  {"relu", gl.relu, {away{2, 3}}},
  {"leaky_relu 0.1", function(x) return gl.leaky_relu(x, 0.1) end, {away{2, 3}}},
  {"gelu", gl.gelu, {input({2, 3}, -3, 3)}},
  {"gelu tanh", function(x) return gl.gelu(x, {approximate = "tanh"}) end, {input({2, 3}, -3, 3)}},
  {"silu", gl.silu, {input({2, 3}, -3, 3)}},
  {"softplus", gl.softplus, {input({2, 3}, -3, 3)}},
  {"softplus beta=2 threshold=1 (both branches)", function(x) return gl.softplus(x, {beta = 2, threshold = 1}) end,
   {leaf{-1.5, -0.3, 0.2, 0.9, 1.4}}},
  {"clamp(-0.5, 0.5)", function(x) return gl.clamp(x, -0.5, 0.5) end, {leaf{-0.9, -0.3, 0.1, 0.4, 0.8}}},
  {"pow_scalar 3", function(x) return x ^ 3 end, {input{2, 3}}},
  {"pow_scalar 2", function(x) return x ^ 2 end, {input{2, 3}}},
  {"pow_scalar 0.5", function(x) return x ^ 0.5 end, {input({2, 3}, 0.5, 2)}},
  {"pow_scalar -1.5", function(x) return x ^ -1.5 end, {input({2, 3}, 0.5, 2)}},
  -- reductions
  {"sum all", gl.sum, {input{2, 3}}},
  {"sum dim 1", function(x) return x:sum(1) end, {input{2, 3}}},
  {"sum dim 2 keepdim", function(x) return x:sum(2, true) end, {input{2, 3}}},
  {"sum dim 2 of [2,3,4]", function(x) return x:sum(2) end, {input{2, 3, 4}}},
  {"mean all", gl.mean, {input{2, 3}}},
  {"mean dim -1", function(x) return x:mean(-1) end, {input{3, 4}}},
  {"var all", gl.var, {input{2, 3}}},
  {"var dim 1", function(x) return x:var(1) end, {input{3, 4}}},
  {"var dim 2 keepdim correction 0", function(x) return x:var(2, true, {correction = 0}) end, {input{3, 4}}},
  {"std all", gl.std, {input{2, 3}}},
  {"std dim 2", function(x) return x:std(2) end, {input{3, 4}}},
  {"std dim 2 of [2,3,4]", function(x) return x:std(2) end, {input{2, 3, 4}}},
  {"max dim 2", function(x) return (x:max(2)) end, {distinct{3, 4}}},
  {"min dim 1 keepdim", function(x) return (x:min(1, true)) end, {distinct{3, 4}}},
  {"max dim 2 of [2,3,40]", function(x) return (x:max(2)) end, {distinct{2, 3, 40}}},
  {"max all", gl.max, {distinct{3, 4}}},
  {"min all", gl.min, {distinct{3, 4}}},
  {"logsumexp dim 2", function(x) return x:logsumexp(2) end, {input{3, 4}}},
  {"logsumexp dim 1 of [3,2,5]", function(x) return x:logsumexp(1, true) end, {input{3, 2, 5}}},
  {"norm all", gl.norm, {input{2, 3}}},
  {"norm p=2 dim 2", function(x) return x:norm(2, 2) end, {input{3, 4}}},
  {"norm p=1 dim 1", function(x) return x:norm(1, 1) end, {away{3, 4}}},
  {"norm p=3 dim 2", function(x) return x:norm(3, 2) end, {away{3, 4}}},
  {"norm p=inf dim 2", function(x) return x:norm(math.huge, 2) end, {distinct{3, 4}}},
  {"norm p=-inf all", function(x) return x:norm(-math.huge) end, {distinct{3, 4}}},
  {"softmax dim 2", function(x) return x:softmax(2) end, {input({3, 4}, -2, 2)}},
  {"softmax dim 1", function(x) return x:softmax(1) end, {input({3, 4}, -2, 2)}},
  {"softmax dim 2 of [2,3,40]", function(x) return x:softmax(2) end, {input({2, 3, 40}, -2, 2)}},
  {"log_softmax dim 2", function(x) return x:log_softmax(2) end, {input({3, 4}, -2, 2)}},
  {"log_softmax dim 1 of [3,2,5]", function(x) return x:log_softmax(1) end, {input({3, 2, 5}, -2, 2)}},
  {"log_softmax dim 2 of [2,3,40]", function(x) return x:log_softmax(2) end, {input({2, 3, 40}, -2, 2)}},
  -- a composition: the chain rule across several of these ops
  {"composite: mean(softmax(x * w) * tanh(x))", function(x, w)
    return gl.mean(gl.softmax(x * w, -1) * gl.tanh(x))
  end, {input{3, 4}, input{4}}},
}
G.run(T, rows)

-- The checker itself must be able to fail: x * detach(x) has forward x^2 but
-- backward x, half the true gradient.
local _, pass = G.compare(function(x) return x * x:detach() end, {input({4}, 0.5, 1)})
T.ok(not pass, "gradcheck fails for a wrong backward")

-- Kinks and ties (PyTorch conventions) -------------------------------------------
local function grad_of(fn, values)
  local x = leaf(values)
  fn(x):sum():backward()
  local g = {}
  for i = 1, x:numel() do g[i] = ("%.4g"):format(x.grad:getflat(i)) end
  return table.concat(g, ",")
end
T.eq(grad_of(gl.relu, {-1, 0, 1}), "0,0,1", "relu'(0) = 0")
T.eq(grad_of(gl.abs, {-1, 0, 1}), "-1,0,1", "abs'(0) = 0")
T.eq(grad_of(function(x) return gl.clamp(x, 0, 1) end, {-1, 0, 0.5, 1, 2}), "0,1,1,1,0",
     "clamp passes the gradient where lo <= x <= hi")
T.eq(grad_of(function(x) return gl.clamp(x, nil, 1) end, {-5, 1, 2}), "1,1,0", "clamp with only a max")
T.eq(grad_of(function(x) return gl.leaky_relu(x, 0.5) end, {-1, 0, 1}), "0.5,0.5,1", "leaky_relu'(0) = slope")
T.eq(grad_of(function(x) return x ^ 0 end, {0, 2}), "0,0", "pow_scalar with p = 0 has zero gradient")
T.eq(grad_of(function(x) return (x:max(1)) end, {{1, 5}, {5, 2}}), "0,1,1,0", "max over a dim: ties go to the first index")
T.eq(grad_of(gl.max, {3, 1, 3}), "0.5,0,0.5", "max of all shares the gradient among ties")
T.eq(grad_of(gl.min, {1, 1, 3, 1}), "0.3333,0.3333,0,0.3333", "min of all shares among ties")
T.eq(grad_of(gl.norm, {0, 0}), "0,0", "norm at zero has zero gradient, not NaN")
T.eq(grad_of(function(x) return x:std(1) end, {2, 2}), "0,0", "std of constant values has zero gradient")
T.eq(grad_of(function(x) return gl.maximum(x, gl.tensor{1, 1}) end, {1, 2}), "1,1", "maximum: ties go to the first operand")
T.eq(grad_of(function(x) return x:logsumexp(1) end, {-math.huge, 0}), "0,1", "logsumexp with a -inf entry")

-- Recording follows the grad mode; index outputs never require grad.
local x = input{3}
T.ok(not gl.no_grad(function() return x:exp() end).requires_grad, "ops inside no_grad do not record")
T.eq(x:exp():grad_fn(), "exp", "grad_fn names the op")
T.eq((x * 2):grad_fn(), "affine", "tensor * number records the affine op")
local _, ids = x:max(1)
T.ok(not ids.requires_grad and not x:argmax().requires_grad, "indices do not require grad")

T.done()
