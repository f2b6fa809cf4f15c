-- gl.diffusion: schedules and single steps against PyTorch fixtures
-- (tests/fixtures/make_diffusion_fixtures.py writes diffusion/diffusion.safetensors),
-- and the loss and both samplers driven by an oracle noise predictor.
--
-- The oracle knows the data: every image of class c is the constant
-- value(c) (value(null) = 0 for the unconditional model), so the exact noise
-- estimate is eps = (x_t - sqrt(ab_t) value) / sqrt(1 - ab_t). With it
-- the loss is zero, DDIM (eta 0) and DDPM return value(c) exactly, and with
-- guidance g the x0 estimate is g * value(c), so DDIM returns g * value(c).
-- Timesteps are 0-based (as in diffusers); labels are 0-based class ids.
local T = require "tap"
local gl = require "genlab"
require "genlab.diffusion"

local F = gl.load("../fixtures/diffusion/diffusion.safetensors")

-- ---- schedules and steps against the fixtures ----------------------------------------

for _, kind in ipairs { "linear", "scaled_linear", "cosine" } do
  local s = gl.diffusion.ddpm { schedule = kind }
  T.near(s.betas, F["sched." .. kind .. ".betas"], 1e-7, kind .. " betas match")
  T.near(s.alphas_cumprod, F["sched." .. kind .. ".alphas_cumprod"], 1e-6, kind .. " alphas_cumprod match")
end

local xt, eps, noise = F["step.xt"], F["step.eps"], F["step.noise"]
local lin = gl.diffusion.ddpm { schedule = "linear" }
T.near(lin:ddpm_step(eps, 500, xt, { noise = noise }), F["step.ddpm_500_499"], 1e-5, "DDPM posterior step 500 -> 499")
T.near(lin:ddpm_step(eps, 500, xt, { prev_t = 450, noise = noise }), F["step.ddpm_500_450"], 1e-5,
  "DDPM posterior step 500 -> 450 (20-step spacing)")
T.near(lin:add_noise(xt, { 10, 990 }, noise), F["step.add_noise_10_990"], 1e-5, "add_noise at timesteps 10 and 990")
local cos = gl.diffusion.ddim { schedule = "cosine" }

-- The DDIM step element by element in double precision from the fixture's
-- inputs and alphas_cumprod: x0 clipped to [-1, 1], the noise direction
-- re-derived from the clipped x0; then against the PyTorch fixture, which
-- does the same (make_diffusion_fixtures.py).
local function ddim_reference(t, prev, eta)
  local acp = F["sched.cosine.alphas_cumprod"]
  local ab, abp = acp:getflat(t + 1), acp:getflat(prev + 1)
  local std = eta * math.sqrt((1 - abp) / (1 - ab) * (1 - ab / abp))
  local out, clipped = {}, 0
  for i = 1, xt:numel() do
    local x, e = xt:getflat(i), eps:getflat(i)
    local x0 = (x - math.sqrt(1 - ab) * e) / math.sqrt(ab)
    if math.abs(x0) > 1 then clipped = clipped + 1 end
    x0 = math.max(-1, math.min(1, x0))
    e = (x - math.sqrt(ab) * x0) / math.sqrt(1 - ab)
    out[i] = math.sqrt(abp) * x0 + math.sqrt(1 - abp - std * std) * e + std * noise:getflat(i)
  end
  return gl.tensor(out):reshape(xt:shape()), clipped
end
local want0, clipped = ddim_reference(600, 580, 0)
T.ok(clipped > 0, ("the fixture's x0 estimates leave [-1, 1] (%d of %d), so clipping is exercised"):format(clipped,
  xt:numel()))
T.near(cos:ddim_step(eps, 600, 580, xt), want0, 1e-5, "DDIM step 600 -> 580, eta 0, eps re-derived from the clipped x0")
T.near(cos:ddim_step(eps, 600, 580, xt, { eta = 0.5, noise = noise }), (ddim_reference(600, 580, 0.5)), 1e-5,
  "DDIM step 600 -> 580, eta 0.5")
T.near(cos:ddim_step(eps, 600, 580, xt), F["step.ddim_600_580_eta0"], 1e-5, "DDIM step 600 -> 580 matches PyTorch")
T.near(cos:ddim_step(eps, 600, 580, xt, { eta = 0.5, noise = noise }), F["step.ddim_600_580_eta05"], 1e-5,
  "DDIM step 600 -> 580, eta 0.5, matches PyTorch")
do -- without clipping the step is eq. 12 with the model's eps
  local raw = gl.diffusion.ddim { schedule = "cosine", clip_sample = false }
  local ab, abp = raw:alpha_bar(600), raw:alpha_bar(580)
  local x0 = (xt - eps * math.sqrt(1 - ab)) * (1 / math.sqrt(ab))
  T.near(raw:ddim_step(eps, 600, 580, xt), x0 * math.sqrt(abp) + eps * math.sqrt(1 - abp), 1e-5,
    "clip_sample = false: DDIM step with the model's eps")
end

local ts = cos:timesteps(4)
T.eq(table.concat(ts, ","), "750,500,250,0", "4 DDIM steps of 1000 use the leading spacing 750..0")
T.raises(function() gl.diffusion.ddpm { schedule = "quadratic" } end, "unknown schedule 'quadratic'", "bad schedule")
T.raises(function() gl.diffusion.ddim { step = 10 } end, "unknown option 'step'", "unknown option")

-- ---- the oracle model --------------------------------------------------------------------

local NC = 3
local function value(c) return c == NC and 0 or 0.1 * (c + 1) end

local Oracle = gl.nn.Module {
  name = "Oracle",
  init = function(self, sched)
    self.sched, self.num_classes, self.channels, self.size = sched, NC, 1, 4
    self.seen = {}
  end,
  forward = function(self, x, t, labels)
    local B = x:shape()[1]
    local a, s, v = {}, {}, {}
    for i = 1, B do
      local ab = self.sched:alpha_bar(math.tointeger(t:getflat(i)))
      local c = labels and labels:getflat(i) or NC
      self.seen[#self.seen + 1] = c
      a[i], s[i], v[i] = math.sqrt(ab), math.sqrt(1 - ab), value(c)
    end
    local function col(l) return gl.tensor(l):reshape { B, 1, 1, 1 } end
    return (x - col(a) * col(v)) / col(s)
  end,
}

local function constant_batch(labels)
  local xs = {}
  for i, c in ipairs(labels) do xs[i] = gl.full({ 1, 1, 4, 4 }, value(c)) end
  return gl.cat(xs, 1), gl.tensor(labels, { dtype = "i64" })
end

gl.seed(7)
local sched = gl.diffusion.ddpm { steps = 100, p_uncond = 0 }
local oracle = Oracle(sched)
local x0, y = constant_batch { 0, 1, 2, 0 }
T.near(sched:loss(oracle, x0, y):item(), 0, 1e-8, "loss of the exact noise predictor is zero")
T.eq(table.concat(oracle.seen, ","), "0,1,2,0", "p_uncond 0 passes the labels through")
local drop = gl.diffusion.ddpm { steps = 100, p_uncond = 1 }
oracle.seen = {}
local x0u = gl.zeros { 4, 1, 4, 4 }
T.near(drop:loss(oracle, x0u, y):item(), 0, 1e-8, "with p_uncond 1 the model sees the null class (loss zero on its data)")
T.eq(table.concat(oracle.seen, ","), "3,3,3,3", "p_uncond 1 replaces every label by num_classes")
T.ok(sched:loss(oracle, x0, gl.tensor({ 1, 1, 1, 1 }, { dtype = "i64" })):item() > 1e-3,
  "loss is positive when the labels are wrong")

local function max_err(x, want)
  local e = 0
  for i = 1, x:numel() do
    local n = x:numel() // #want
    e = math.max(e, math.abs(x:getflat(i) - want[(i - 1) // n + 1]))
  end
  return e
end

local ddim = gl.diffusion.ddim { steps = 100 }
local ddim_oracle = Oracle(ddim)
local out = ddim:sample(ddim_oracle, 3, { labels = { 0, 1, 2 }, guidance = 1, steps = 10 })
T.eq(table.concat(out:shape(), ","), "3,1,4,4", "sample shape comes from model.channels and model.size")
T.ok(max_err(out, { 0.1, 0.2, 0.3 }) < 1e-5, "DDIM (eta 0) with the exact predictor returns the data",
  max_err(out, { 0.1, 0.2, 0.3 }))
out = ddim:sample(ddim_oracle, 3, { labels = { 0, 1, 2 }, guidance = 3, steps = 10 })
T.ok(max_err(out, { 0.3, 0.6, 0.9 }) < 1e-5, "guidance 3 triples the class offset (eps_u + 3 (eps_c - eps_u))",
  max_err(out, { 0.3, 0.6, 0.9 }))
out = ddim:sample(ddim_oracle, 2, { steps = 10 })
T.ok(max_err(out, { 0, 0 }) < 1e-5, "without labels the null class is sampled")
oracle.seen = {}
out = sched:sample(oracle, 2, { labels = 1, guidance = 1 })
T.ok(max_err(out, { 0.2, 0.2 }) < 1e-4, "DDPM over the whole schedule returns the data", max_err(out, { 0.2, 0.2 }))
T.eq(#oracle.seen, 200, "DDPM visits all 100 timesteps (2 samples each)")

-- Stochastic sampling: seeds reproduce and leave the global generator alone.
local a = ddim:sample(ddim_oracle, 2, { labels = 0, steps = 5, eta = 1, seed = 3, guidance = 1 })
gl.seed(11)
local before = gl.rand { 1 }:item()
gl.seed(11)
local b = ddim:sample(ddim_oracle, 2, { labels = 0, steps = 5, eta = 1, seed = 3, guidance = 1 })
T.eq(gl.rand { 1 }:item(), before, "sample{seed=} restores the global generator")
T.near(a, b, 0, "the same seed gives the same samples")
local x, inter = ddim:sample(ddim_oracle, 1, { labels = 2, steps = 5, return_intermediates = { 1, 5 }, guidance = 1 })
T.eq(#inter, 2, "return_intermediates keeps the requested steps")
T.ok(inter[1].step == 1 and inter[1].t == 80 and inter[2].t == 0, "intermediates carry step and timestep")
T.near(inter[2].x, x, 0, "the last intermediate is the result")
T.ok(oracle:training(), "sample leaves the model in its training mode")
T.raises(function() ddim:sample(ddim_oracle, 2, { labels = { 0 } }) end, "1 labels for 2 samples", "label count checked")
T.raises(function() ddim:sample(ddim_oracle, 1, { labels = 4 }) end, "label 4 out of range", "label range checked")
T.raises(function() ddim:sample(ddim_oracle, 1, { steps = 1001 }) end, "steps must be an integer in 1..100",
  "sampler steps bounded by the schedule")
T.raises(function() sched:sample(oracle, 1, { eta = 1 }) end, "eta is an option of the DDIM sampler", "DDPM has no eta")
T.raises(function() ddim:sample(ddim_oracle, 1, { guidence = 2 }) end, "unknown option 'guidence'", "unknown sample option")

T.done()
