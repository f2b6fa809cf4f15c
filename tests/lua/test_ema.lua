-- gl.ema (lua/genlab/ema.lua): exponential moving averages of parameters,
-- checked against numbers worked out by hand; buffers are copied, not averaged.
local T = require "tap"
local gl = require "genlab"
require "genlab.ema" -- sets gl.ema

local function set(t, values) gl.no_grad(function() t:copy_(gl.tensor(values)) end) end

-- Linear(2 -> 1) then BatchNorm1d(1): parameters 0.weight, 0.bias, 1.weight,
-- 1.bias and buffers 1.running_mean, 1.running_var, 1.num_batches_tracked.
local function model()
  local m = gl.nn.Sequential {gl.nn.Linear {in_features = 2, out_features = 1}, gl.nn.BatchNorm1d(1)}
  set(m[1].weight, {{1, 2}})
  set(m[1].bias, {0})
  return m
end

do
  local m = model()
  local e = gl.ema(m, {decay = 0.9})
  T.eq(e.decay, 0.9, "decay is kept")
  local sd = e:state_dict()
  T.near(sd["0.weight"], gl.tensor {{1, 2}}, 0, "the shadow starts as the module's weights")
  T.ok(not sd["0.weight"].requires_grad, "shadow tensors do not require grad")
  set(m[1].weight, {{2, 4}})
  T.near(sd["0.weight"], gl.tensor {{1, 2}}, 0, "the shadow is a copy, not the module's tensor")
  e:update(m)
  -- 0.9 * 1 + 0.1 * 2 = 1.1; 0.9 * 2 + 0.1 * 4 = 2.2
  T.near(sd["0.weight"], gl.tensor {{1.1, 2.2}}, 1e-6, "update: 0.9 * shadow + 0.1 * param")
  set(m[1].weight, {{3, -1}})
  e:update(m)
  -- 0.9 * 1.1 + 0.1 * 3 = 1.29; 0.9 * 2.2 + 0.1 * -1 = 1.88
  T.near(sd["0.weight"], gl.tensor {{1.29, 1.88}}, 1e-6, "second update: 0.9 * 1.1 + 0.1 * 3 = 1.29")
  T.near(sd["0.bias"], gl.tensor {0}, 0, "an unchanged parameter stays put")

  -- Buffers: one training step moves running_mean and counts the batch; update copies them.
  m(gl.tensor {{1, 0}, {0, 1}, {1, 1}}) -- Linear outputs 3, -1, 2: mean 4/3
  e:update(m)
  T.near(sd["1.running_mean"], gl.tensor {0.1 * 4 / 3}, 1e-6, "running_mean is copied, not averaged")
  T.eq(sd["1.num_batches_tracked"]:item(), 1, "num_batches_tracked is copied")
  -- 0.9 * 1.29 + 0.1 * 3 = 1.461
  T.near(sd["0.weight"], gl.tensor {{1.461, 1.592}}, 1e-6, "third update")

  -- copy_to loads the averages (and buffers) into a module of the same architecture.
  local other = model()
  e:copy_to(other)
  T.near(other[1].weight, gl.tensor {{1.461, 1.592}}, 1e-6, "copy_to writes the averaged weights")
  T.near(other[2].running_mean, gl.tensor {0.4 / 3}, 1e-6, "copy_to writes the buffers")
  T.ok(other[1].weight.requires_grad, "copy_to keeps the parameters trainable")
  T.near(m[1].weight, gl.tensor {{3, -1}}, 0, "the source module keeps its own weights")
  T.raises(function() return e:module() end, "ema:module(): genlab cannot clone a module",
    "module() without a copy says what to do")
end

-- decay 0 follows the module; decay 1 never moves.
do
  local m = model()
  local follow, frozen = gl.ema(m, {decay = 0}), gl.ema(m, {decay = 1})
  set(m[1].weight, {{5, 6}})
  follow:update(m)
  frozen:update(m)
  T.near(follow:state_dict()["0.weight"], gl.tensor {{5, 6}}, 0, "decay 0: the shadow is the parameter")
  T.near(frozen:state_dict()["0.weight"], gl.tensor {{1, 2}}, 0, "decay 1: the shadow never moves")
  T.eq(gl.ema(m).decay, 0.999, "default decay is 0.999")
end

-- With {copy = second instance}, the averages live in that module.
do
  local m, c = model(), model()
  set(c[1].weight, {{9, 9}})
  local e = gl.ema(m, {decay = 0.5, copy = c})
  T.near(c[1].weight, gl.tensor {{1, 2}}, 0, "copy starts from the module's weights")
  set(m[1].weight, {{3, 0}})
  e:update(m)
  T.ok(rawequal(e:module(), c), "module() returns the copy")
  T.near(c[1].weight, gl.tensor {{2, 1}}, 1e-6, "the copy holds 0.5 * shadow + 0.5 * param")
  local y = gl.no_grad(function() return e:module():eval()(gl.tensor {{1, 1}}) end)
  -- Linear: 2 + 1 + 0 = 3; BatchNorm eval with running stats 0, 1: 3 / sqrt(1 + 1e-5)
  T.near(y, gl.tensor {{3 / math.sqrt(1 + 1e-5)}}, 1e-5, "the copy runs with the EMA weights")
end

-- Bad input.
do
  local m = model()
  T.raises(function() return gl.ema(m, {decay = 0.9, beta = 1}) end, "ema: unknown option 'beta'",
    "unknown options are rejected")
  T.raises(function() return gl.ema(m, {decay = 1.5}) end, "ema: decay must be a number in [0, 1], got 1.5",
    "decay out of range")
  T.raises(function() return gl.ema({}) end, "ema: expected a module", "a non-module is rejected")
  local e = gl.ema(m)
  T.raises(function() return e:update(gl.nn.Linear {in_features = 2, out_features = 1}) end,
    "ema:update: the module has no '0.weight'", "update with another architecture")
  local wider = gl.nn.Sequential {gl.nn.Linear {in_features = 3, out_features = 1}, gl.nn.BatchNorm1d(1)}
  T.raises(function() return e:copy_to(wider) end, "ema:copy_to: '0.weight' is [1,3] in the module, [1,2] in the EMA",
    "copy_to checks shapes")
  T.raises(function() return gl.ema(m, {copy = wider}) end, "ema: copy has [1,3] for '0.weight', the module [1,2]",
    "a copy of another shape is rejected")
end

T.done()
