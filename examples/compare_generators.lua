-- VAE, GAN and diffusion side by side on Fashion-MNIST (the chapter's §6.5
-- discussion): each family trains for the same wall-clock budget, then draws
-- samples that genlab's own Fashion-MNIST classifier (gl.eval.classifier,
-- trained once and cached) scores. Prints one table and saves the three
-- sample grids side by side in one PNG.
--
--   genlab run examples/compare_generators.lua [--minutes 2] [--samples 500]
--        [--out compare_generators.png] [--seed 1] [--models vae,dcgan,ddpm]
--
--   FD        Fréchet distance between the classifier's penultimate features
--             (64) of the samples and of as many real test images (lower is better)
--   coverage  fraction of the 10 classes the classifier assigns to at least one sample
--   train     seconds of training (the budget) and the optimizer steps it allowed
--   sample    seconds to draw the samples (DDIM, 50 steps, for the diffusion model)
-- The diffusion model needs gl.diffusion and gl.models.unet; without them its row is left out.
local gl = require "genlab"

local opts = { minutes = 2, samples = 500, out = "compare_generators.png", seed = 1, models = "vae,dcgan,ddpm" }
local args = arg or {}
local i = 1
while i <= #args do
  local key = args[i]:match("^%-%-(.*)$")
  if not key or opts[key] == nil then error("compare_generators: unknown argument " .. args[i]) end
  opts[key] = args[i + 1] or error("compare_generators: " .. args[i] .. " needs a value")
  i = i + 2
end
local budget = tonumber(opts.minutes) * 60
local nsamples = math.tointeger(tonumber(opts.samples)) or error("compare_generators: --samples must be an integer")
gl.seed(math.tointeger(tonumber(opts.seed)))
local want = {}
for name in opts.models:gmatch("[^,]+") do want[name] = true end

local clf = gl.eval.classifier()
print(("classifier: %s, test accuracy %.2f%%"):format(clf.arch, 100 * clf.accuracy))
local train = gl.data.mnist { split = "train", batch = 128 }
local test = gl.data.mnist { split = "test", shuffle = false }
local real = test.images:narrow(1, 1, math.min(nsamples, test.n))

-- Runs step() until the budget is spent; returns seconds and steps.
local function train_for(name, step)
  local t0, n = gl.clock(), 0
  while gl.clock() - t0 < budget do
    step()
    n = n + 1
    if n % 100 == 0 then
      io.write(("\r%s: %d steps, %.0f s"):format(name, n, gl.clock() - t0))
      io.flush()
      gl.yield_ui()
    end
  end
  io.write("\r")
  return gl.clock() - t0, n
end

-- Draws n images in [0,1] with draw(k) (k at a time); returns them and the seconds taken.
local function sample_all(n, chunk, draw)
  local t0, parts, done = gl.clock(), {}, 0
  while done < n do
    local k = math.min(chunk, n - done)
    parts[#parts + 1] = draw(k):clamp(0, 1)
    done = done + k
  end
  return gl.cat(parts, 1), gl.clock() - t0
end

local rows = {}

if want.vae then
  local vae = gl.models.vae { kind = "mlp" }
  local opt = gl.optim.adam(vae:parameters(), { lr = 1e-3 })
  local secs, steps = train_for("vae", function()
    local x = train:next()
    opt:zero_grad()
    vae:loss(x):backward()
    opt:step()
  end)
  vae:eval()
  local s, st = sample_all(nsamples, 500, function(k) return vae:sample(k) end)
  rows[#rows + 1] = { name = "VAE (MLP 784-400-20)", model = vae, train = secs, steps = steps, samples = s, sample_time = st }
end

if want.dcgan then
  local gan = gl.models.dcgan { size = 28, channels = 1, ngf = 32, ndf = 32 }
  local data = gl.data.mnist { split = "train", batch = 64, drop_last = true }
  local secs, steps = train_for("dcgan", function() gan:step(data:next() * 2 - 1) end)
  local s, st = sample_all(nsamples, 250, function(k) return (gan:sample(k) + 1) * 0.5 end)
  rows[#rows + 1] = { name = "DCGAN 28x28 (ragan_ls)", model = gan, train = secs, steps = steps, samples = s, sample_time = st }
end

if want.ddpm and gl.diffusion and gl.models.unet then
  local unet = gl.models.unet { channels = 1, size = 28, base = 32, mults = { 1, 2, 2 }, attn_res = { 7 } }
  local ddpm = gl.diffusion.ddpm { steps = 1000, schedule = "linear" }
  local opt = gl.optim.adam(unet:parameters(), { lr = 2e-4 })
  local secs, steps = train_for("ddpm", function()
    local x = train:next()
    opt:zero_grad()
    ddpm:loss(unet, x * 2 - 1):backward()
    opt:step()
  end)
  local ddim = gl.diffusion.ddim { steps = 1000, schedule = "linear" }
  local s, st = sample_all(nsamples, 100, function(k) return (ddim:sample(unet, k, { steps = 50 }) + 1) * 0.5 end)
  rows[#rows + 1] = { name = "DDPM UNet (DDIM 50 steps)", model = unet, train = secs, steps = steps, samples = s, sample_time = st }
elseif want.ddpm then
  print("(no gl.diffusion / gl.models.unet in this build: the diffusion row is left out)")
end

local real_fd = gl.eval.image_fid(test.images:narrow(1, test.n - nsamples + 1, nsamples), real, { classifier = clf })
print(("\n%d samples each; budget %.1f min per model; %d thread(s)"):format(nsamples, budget / 60, gl.threads()))
print(("%-28s %10s %8s %7s %10s %8s %9s"):format("model", "parameters", "train s", "steps", "sample s", "FD", "coverage"))
local grids = {}
for _, r in ipairs(rows) do
  local fd = gl.eval.image_fid(r.samples, real, { classifier = clf })
  local cov = gl.eval.class_coverage(r.samples, { classifier = clf })
  print(("%-28s %10d %8.1f %7d %10.2f %8.3f %8.0f%%"):format(r.name, r.model:num_parameters(), r.train, r.steps,
    r.sample_time, fd, 100 * cov))
  grids[#grids + 1] = gl.image.grid(r.samples:narrow(1, 1, math.min(64, nsamples)), { nrow = 8, padding = 2 })
end
print(("%-28s %10s %8s %7s %10s %8.3f %9s"):format("(real test images)", "-", "-", "-", "-", real_fd, "-"))
if #grids > 0 then
  local parts = {}
  for k, g in ipairs(grids) do
    if k > 1 then parts[#parts + 1] = gl.ones { 1, g:shape()[2], 8 } end
    parts[#parts + 1] = g
  end
  gl.image.save(gl.cat(parts, 3), opts.out)
  print("grids (left to right: " .. table.concat((function()
    local names = {}
    for k, r in ipairs(rows) do names[k] = r.name end
    return names
  end)(), ", ") .. ") saved to " .. opts.out)
end
