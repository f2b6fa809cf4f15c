-- Normalizations of channels-first feature maps: gl.batch_norm, gl.group_norm
-- and the modules BatchNorm1d/2d, GroupNorm, InstanceNorm2d, LayerNorm2d.
-- Golden values come from tests/fixtures/norm2d.safetensors (made by
-- make_norm2d_fixtures.py with PyTorch 1.13, which names the scalar arguments
-- repeated here); then finite-difference gradient checks in training and eval
-- mode, module semantics (state dict, train/eval, running statistics) and
-- the errors for bad input.
local T = require "tap"
local G = require "gradcheck"
local gl = require "genlab"

local F = gl.load("../fixtures/norm2d.safetensors")
local TOL = 1e-4

local function shape_str(t) return "[" .. table.concat(t:shape(), ",") .. "]" end

local function near(got, want, name) return T.near_tensor(got, want, TOL, name) end

-- Runs fn on the case's inputs (clones, so in-place running stats stay local),
-- compares the output, the gradients of grads after backward(R), and the
-- values of the stats inputs after the call.
local function case(name, args, grads, fn, stats)
  local by, ins = {}, {}
  for i, a in ipairs(args) do
    by[a] = F[name .. "." .. a]:clone()
    ins[i] = by[a]
  end
  for _, g in ipairs(grads) do by[g]:requires_grad_(true) end
  local okay, out = pcall(fn, table.unpack(ins))
  if not okay then return T.ok(false, name .. " runs", out) end
  near(out, F[name .. ".out"], name .. " output")
  out:backward(F[name .. ".R"])
  for _, g in ipairs(grads) do near(by[g].grad, F[name .. ".grad." .. g], name .. " grad " .. g) end
  for arg, stored in pairs(stats or {}) do near(by[arg], F[name .. "." .. stored], name .. " " .. stored) end
end

local BN_ARGS, BN_GRADS = {"x", "rm", "rv", "w", "b"}, {"x", "w", "b"}
local STATS = {rm = "running_mean", rv = "running_var"}
local function bn(training)
  return function(x, rm, rv, w, b)
    return gl.batch_norm(x, rm, rv, w, b, {training = training, momentum = 0.1, eps = 1e-5})
  end
end

-- ---- golden: ops ------------------------------------------------------------------
case("bn2d_train", BN_ARGS, BN_GRADS, bn(true), STATS)
case("bn2d_eval", BN_ARGS, BN_GRADS, bn(false))
case("bn1d_train", BN_ARGS, BN_GRADS, bn(true), STATS)
case("bn1d_eval", BN_ARGS, BN_GRADS, bn(false))
case("bn1d_seq_train", BN_ARGS, BN_GRADS, bn(true), STATS)
case("gn", {"x", "w", "b"}, {"x", "w", "b"}, function(x, w, b) return gl.group_norm(x, 2, w, b, {eps = 1e-5}) end)
case("gn_one_group", {"x", "w", "b"}, {"x", "w", "b"}, function(x, w, b) return x:group_norm(1, w, b) end)
case("instance_norm", {"x"}, {"x"}, function(x) return gl.nn.InstanceNorm2d(3)(x) end)

-- layer_norm_2d through the module: its parameters are replaced by the fixture's.
local function ln2d(x, w, b, eps)
  local m = gl.nn.LayerNorm2d(x:shape()[2], {eps = eps})
  m.weight, m.bias = w, b
  return m(x)
end
case("ln2d", {"x", "w", "b"}, {"x", "w", "b"}, ln2d)
case("ln2d_wide", {"x", "w", "b"}, {"x", "w", "b"}, ln2d)

-- ---- golden: BatchNorm2d, 3 training steps then eval ------------------------------------
do
  local P = "bn2d_module."
  local m = gl.nn.BatchNorm2d(3)
  gl.no_grad(function()
    m.weight:copy_(F[P .. "weight"])
    m.bias:copy_(F[P .. "bias"])
  end)
  local y
  for k = 1, 3 do y = m(F[P .. "x" .. k]) end
  near(y, F[P .. "out"], "BatchNorm2d step 3 output")
  y:backward(F[P .. "R"])
  near(m.weight.grad, F[P .. "grad.weight"], "BatchNorm2d step 3 grad weight")
  near(m.bias.grad, F[P .. "grad.bias"], "BatchNorm2d step 3 grad bias")
  near(m.running_mean, F[P .. "running_mean"], "BatchNorm2d running_mean after 3 steps")
  near(m.running_var, F[P .. "running_var"], "BatchNorm2d running_var after 3 steps")
  T.eq(m.num_batches_tracked:item(), F[P .. "num_batches_tracked"]:item(), "num_batches_tracked after 3 steps is 3")
  m:eval()
  local before = m.running_mean:clone()
  near(m(F[P .. "xe"]), F[P .. "eval_out"], "BatchNorm2d eval output uses running stats")
  near(m.running_mean, before, "eval leaves running_mean alone")
  T.eq(m.num_batches_tracked:item(), 3, "eval does not count batches")
end

-- ---- gradient checks ---------------------------------------------------------------------
gl.seed(7)
local function pos(shape) return G.input(shape, 0.5, 2.0):detach() end
local rm, rv = G.input({3}, -0.5, 0.5):detach(), pos {3}
G.run(T, {
  {"batch_norm train [N,C,H,W]", function(x, w, b) return gl.batch_norm(x, nil, nil, w, b) end,
   {G.input {3, 3, 2, 3}, G.input {3}, G.input {3}}},
  {"batch_norm train [N,C]", function(x, w, b) return gl.batch_norm(x, nil, nil, w, b) end,
   {G.input {5, 4}, G.input {4}, G.input {4}}},
  {"batch_norm eval", function(x, w, b) return gl.batch_norm(x, rm, rv, w, b, {training = false}) end,
   {G.input {2, 3, 2, 2}, G.input {3}, G.input {3}}},
  {"batch_norm train, no affine", function(x) return gl.batch_norm(x, nil, nil, nil, nil) end,
   {G.input {4, 2, 3}}},
  {"group_norm 2 groups", function(x, w, b) return gl.group_norm(x, 2, w, b) end,
   {G.input {2, 4, 2, 3}, G.input {4}, G.input {4}}},
  {"group_norm as instance norm, no affine", function(x) return gl.group_norm(x, 3) end, {G.input {2, 3, 3, 2}}},
  {"layer_norm_2d", ln2d, {G.input {2, 3, 2, 3}, G.input {3}, G.input {3}}},
  -- two blocks of positions; eps 0.5 keeps positions whose 4 values nearly agree well conditioned
  {"layer_norm_2d, S > 128", function(x, w, b) return ln2d(x, w, b, 0.5) end,
   {G.input {1, 4, 13, 11}, G.input {4}, G.input {4}}},
})

-- The checker must be able to fail: the eval-mode gradient (stats held
-- constant) is not the training-mode one, so checking a function that
-- normalizes with its batch stats against eval's backward fails.
do
  local x = G.input {4, 2, 3}
  local okv, _, pass = pcall(G.compare, function(t)
    local mean, var = gl.no_grad(function()
      local flat = t:permute {2, 1, 3}:reshape {2, 12}
      return flat:mean(2), flat:var(2, {correction = 0})
    end)
    return gl.batch_norm(t, mean, var, nil, nil, {training = false, eps = 1e-5})
  end, {x})
  T.ok(okv and pass == false, "gradcheck fails for eval backward on a function of the batch stats")
end

-- ---- group_norm {silu = true}: silu(group_norm(x)) in one pass --------------------------------
-- The same bits as the two ops in turn, forward and backward, with and
-- without affine parameters, across SiLU's range (|x| past 87 included: the
-- scale of 40 and the bias of 3 put normalized values out to about +-150),
-- on more values than norm2d.c's PAR_MIN so that threads share the groups.
do
  local function grads(f, x, w, b, R)
    for _, t in ipairs {x, w, b} do t.grad = nil end
    local y = f()
    gl.sum(y * R):backward()
    return y, {x.grad:clone(), w.grad and w.grad:clone(), b.grad and b.grad:clone()}
  end
  for _, affine in ipairs {true, false} do
    local x = (gl.randn {4, 8, 32, 33} * 2):requires_grad_(true)
    local w = affine and (gl.randn {8} * 40):requires_grad_(true) or nil
    local b = affine and (gl.randn {8} * 3):requires_grad_(true) or nil
    local R = gl.randn {4, 8, 32, 33}
    local leaves = {x, w or x, b or x}
    local y1, g1 = grads(function() return gl.group_norm(x, 4, w, b):silu() end, x, leaves[2], leaves[3], R)
    local y2, g2 = grads(function() return gl.group_norm(x, 4, w, b, {silu = true}) end, x, leaves[2], leaves[3], R)
    local tag = affine and "" or ", no affine"
    T.eq((y1 - y2):abs():max():item(), 0, "group_norm silu = silu(group_norm)" .. tag)
    if affine then T.ok(y2:abs():max():item() > 87, "the silu case reaches past |87|") end
    for i, name in ipairs {"x", "weight", "bias"} do
      if affine or i == 1 then
        T.eq((g1[i] - g2[i]):abs():max():item(), 0, "group_norm silu grad " .. name .. " = unfused" .. tag)
      end
    end
  end
  G.run(T, {
    {"group_norm with silu", function(x, w, b) return gl.group_norm(x, 2, w, b, {silu = true}) end,
     {G.input {2, 4, 2, 3}, G.input {4}, G.input {4}}},
    {"group_norm with silu, no affine", function(x) return gl.group_norm(x, 1, nil, nil, {silu = true}) end,
     {G.input {2, 3, 3, 2}}},
  })
  local x = gl.randn {2, 4, 3, 3}:requires_grad_(true)
  local y = gl.no_grad(function() return gl.group_norm(x, 2, nil, nil, {silu = true}) end)
  T.ok(not y.requires_grad, "group_norm silu under no_grad records nothing")
  T.raises(function() return gl.group_norm(x, 2, nil, nil, {silu = true, act = 1}) end,
    "group_norm: unknown option 'act'", "group_norm rejects unknown options")
end

-- ---- running statistics, momentum, eps --------------------------------------------------
do
  local x = gl.tensor({{1, 10}, {3, 20}, {5, 60}})
  local m, v = gl.zeros {2}, gl.ones {2}
  local y = gl.batch_norm(x, m, v, nil, nil, {momentum = 0.5})
  -- channel 1: mean 3, unbiased var 4; channel 2: mean 30, unbiased var 700
  T.near(m, gl.tensor {1.5, 15}, 1e-5, "running_mean = 0.5 * 0 + 0.5 * batch mean")
  T.near(v, gl.tensor {2.5, 350.5}, 1e-3, "running_var takes the unbiased batch variance")
  -- normalized with the biased variance 8/3 and 2600/3
  T.near(y:select(2, 1), gl.tensor {-2 / math.sqrt(8 / 3 + 1e-5), 0, 2 / math.sqrt(8 / 3 + 1e-5)}, 1e-5,
    "training normalizes with the biased variance")
  gl.no_grad(function() gl.batch_norm(x, m, v) end)
  T.near(m, gl.tensor {1.5 * 0.9 + 0.3, 15 * 0.9 + 3}, 1e-4,
    "no_grad still updates running stats (default momentum 0.1)")
  local e = gl.batch_norm(x, gl.tensor {1, 2}, gl.tensor {4, 9}, gl.tensor {2, 1}, gl.tensor {0, 1},
    {training = false, eps = 0})
  T.near(e:select(1, 1), gl.tensor {(1 - 1) / 2 * 2, (10 - 2) / 3 + 1}, 1e-5, "eval: (x - rm) / sqrt(rv + eps) * w + b")
end

-- ---- modules -------------------------------------------------------------------------
do
  local bn2 = gl.nn.BatchNorm2d(4)
  local names = {}
  for _, p in ipairs(bn2:named_tensors()) do names[#names + 1] = p[1] end
  T.eq(table.concat(names, " "), "weight bias running_mean running_var num_batches_tracked",
    "BatchNorm2d state dict names are PyTorch's")
  T.eq(bn2.num_batches_tracked:dtype(), "i64", "num_batches_tracked is i64")
  T.eq(#bn2.num_batches_tracked:shape(), 0, "num_batches_tracked has shape []")
  T.near(bn2.running_var, gl.ones {4}, 0, "running_var starts at 1")
  T.eq(bn2:num_parameters(), 8, "BatchNorm2d(4) has 8 parameters")
  T.eq(gl.nn.BatchNorm2d(4, {affine = false}):num_parameters(), 0, "affine=false: no parameters")
  T.eq(gl.nn.InstanceNorm2d(4):num_parameters(), 0, "InstanceNorm2d is not affine by default")
  T.eq(gl.nn.InstanceNorm2d(4, {affine = true}):num_parameters(), 8, "InstanceNorm2d affine=true")
  T.eq(gl.nn.GroupNorm(2, 6):num_parameters(), 12, "GroupNorm(2, 6) has 12 parameters")
  T.eq(gl.nn.LayerNorm2d(5):num_parameters(), 10, "LayerNorm2d(5) has 10 parameters")

  -- train()/eval() through a Sequential reach the BatchNorm.
  gl.seed(3)
  local seq = gl.nn.Sequential {gl.nn.BatchNorm1d(3), gl.nn.ReLU()}
  local x = gl.randn {8, 3} * 2 + 1
  seq(x)
  local rm1 = seq[1].running_mean:clone()
  T.ok(rm1:abs():sum():item() > 0, "training step in a Sequential updates running_mean")
  seq:eval()
  local a, b = seq(x), seq(x)
  T.near(a, b, 0, "eval mode is deterministic")
  T.near(seq[1].running_mean, rm1, 0, "eval in a Sequential leaves running stats alone")
  local one = seq(gl.randn {1, 3})
  T.eq(shape_str(one), "[1,3]", "eval mode accepts a batch of 1")
  T.ok(math.abs(a:sum():item() - gl.batch_norm(x, nil, nil):relu():sum():item()) > 1e-3,
    "eval output differs from batch-stat output")
end

-- ---- errors ----------------------------------------------------------------------------
do
  local x = gl.randn {2, 3, 4, 4}
  T.raises(function() return gl.nn.BatchNorm2d(4)(x) end, "BatchNorm2d: x [2,3,4,4] has 3 channels, the layer 4",
    "BatchNorm2d rejects the wrong channel count")
  T.raises(function() return gl.nn.BatchNorm2d(3)(gl.randn {2, 3}) end,
    "BatchNorm2d: expected x [N, C, H, W], got [2,3]", "BatchNorm2d rejects [N,C]")
  T.raises(function() return gl.nn.BatchNorm1d(3)(gl.randn {1, 3}) end,
    "batch_norm: expected more than 1 value per channel when training, got x [1,3]", "batch of 1 in training")
  T.raises(function() return gl.batch_norm(x, gl.zeros {4}, gl.ones {4}) end,
    "batch_norm: running_mean f32 [4] does not match the 3 channels of x [2,3,4,4]", "running stats of the wrong size")
  T.raises(function() return gl.batch_norm(x, nil, nil, gl.ones {2}) end,
    "batch_norm: weight [2] does not match the 3 channels of x [2,3,4,4]", "weight of the wrong size")
  T.raises(function() return gl.batch_norm(x, nil, nil, nil, nil, {training = false}) end,
    "batch_norm: eval mode (training=false) needs running_mean and running_var", "eval without running stats")
  T.raises(function() return gl.batch_norm(x, gl.zeros {3}) end, "give both running_mean and running_var",
    "running_mean without running_var")
  T.raises(function() return gl.batch_norm(x, nil, nil, nil, nil, {moment = 0.1}) end,
    "batch_norm: unknown option 'moment'", "batch_norm rejects unknown options")
  T.raises(function() return gl.group_norm(x, 2) end,
    "group_norm: 2 groups do not divide the 3 channels of x [2,3,4,4]", "group_norm: groups must divide C")
  T.raises(function() return gl.nn.GroupNorm(4, 6) end, "GroupNorm: 4 groups do not divide 6 channels",
    "GroupNorm constructor checks groups")
  T.raises(function() return gl.nn.GroupNorm(3, 6)(x) end, "GroupNorm: x [2,3,4,4] has 3 channels, the layer 6",
    "GroupNorm rejects the wrong channel count")
  T.raises(function() return gl.nn.LayerNorm2d(4)(x) end, "LayerNorm2d: x [2,3,4,4] has 3 channels, the layer 4",
    "LayerNorm2d rejects the wrong channel count")
  T.raises(function() return gl.nn.InstanceNorm2d(3, {momentum = 0.1}) end, "InstanceNorm2d: unknown option 'momentum'",
    "InstanceNorm2d rejects unknown options")
  T.raises(function() return gl.group_norm(gl.randn {4}, 1) end, "group_norm: x must be [N, C, ...], got [4]",
    "group_norm rejects 1-d input")
end

T.done()
