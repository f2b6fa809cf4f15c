-- gl.models.dcgan: the DCGAN of the chapter's §6.5 (a), with the seed's
-- relativistic average least-squares loss or the standard non-saturating one.
--
--   local gan = gl.models.dcgan{size = 64, channels = 3}
--   for step = 1, 1000 do local s = gan:step(real) end   -- real: [B, C, S, S] in [-1, 1]
--
-- Options: size = 28 | 32 | 64, nz = 100, ngf = 64, ndf = 64, channels = 1 | 3,
-- loss = "ragan_ls" | "ns", lr = 1e-4, betas = {0.5, 0.999} (Adam, both players).
-- Children G and D are gl.nn.Sequential, so state dict names are
-- "G.0.weight", ..., as the PyTorch nn.Sequential of
-- tests/fixtures/make_gen_fixtures.py. With n = 2, 3, 4 upsamplings for size
-- 28, 32, 64 and k0 = 7 for 28 (else 4):
--   G: ConvTranspose2d(nz, ngf*2^(n-1), k0, 1, 0), BN, ReLU, then n-1 times
--      ConvTranspose2d(c, c/2, 4, 2, 1), BN, ReLU, then ConvTranspose2d(ngf, C, 4, 2, 1), Tanh
--   D: Conv2d(C, ndf, 4, 2, 1), LeakyReLU 0.2, then n-1 times
--      Conv2d(c, 2c, 4, 2, 1), BN, LeakyReLU 0.2, then Conv2d(ndf*2^(n-1), 1, k0, 1, 0)
-- Convolutions have no bias; weights are drawn as DCGAN does: N(0, 0.02),
-- batch-norm weights N(1, 0.02), biases 0. D outputs one logit per image.
--
-- Losses, with r = D(x) and f = D(G(z)) (vectors [B]):
--   ragan_ls  D: (mean((r - mean f - 1)^2) + mean((f - mean r + 1)^2)) / 2
--             G: (mean((r - mean f + 1)^2) + mean((f - mean r - 1)^2)) / 2
--   ns        D: BCE(sigmoid r, 1) + BCE(sigmoid f, 0);  G: BCE(sigmoid f, 1)
--
-- Methods:
--   generate(z | n) -> images [B, C, S, S] in [-1, 1]  (z: [B, nz] or [B, nz, 1, 1];
--                     runs in the current mode and records; sample(n) does not)
--   sample(n [, z]) -> images, in eval mode without recording
--   discriminate(x) -> logits [B]
--   d_loss(r, f [, loss]), g_loss(r, f [, loss]) -> 0-dim tensors (the losses
--                     above; loss defaults to the model's)
--   step(real) -> {loss_d, loss_g, d_real, d_fake}: one D update then one G
--     update on the same fake batch. d_real / d_fake are mean sigmoid(D) for
--     "ns" (D's probability that the input is real) and, for "ragan_ls",
--     mean sigmoid(r - mean f) / sigmoid(f - mean r) (the relativistic
--     probability that real is more real than fake, and the reverse).
--   fit{data = loader, steps = ..., ...} (see below)
local gl = require "genlab"
local options = require "genlab.options"
local check_opts = options.check
local positive_int = options.positive_int

gl.models = gl.models or {}

local function shape_str(t) return "[" .. table.concat(t:shape(), ",") .. "]" end

local function layers(cfg)
  local n = ({ [28] = 2, [32] = 3, [64] = 4 })[cfg.size]
  local k0 = cfg.size == 28 and 7 or 4
  local up, down = { stride = 2, padding = 1, bias = false }, { stride = 2, padding = 1, bias = false }
  local c = cfg.ngf * 2 ^ (n - 1) // 1
  local g = { gl.nn.ConvTranspose2d(cfg.nz, c, k0, { stride = 1, padding = 0, bias = false }),
    gl.nn.BatchNorm2d(c), gl.nn.ReLU() }
  for _ = 1, n - 1 do
    g[#g + 1] = gl.nn.ConvTranspose2d(c, c // 2, 4, up)
    g[#g + 1] = gl.nn.BatchNorm2d(c // 2)
    g[#g + 1] = gl.nn.ReLU()
    c = c // 2
  end
  g[#g + 1] = gl.nn.ConvTranspose2d(c, cfg.channels, 4, up)
  g[#g + 1] = gl.nn.Tanh()
  local d = { gl.nn.Conv2d(cfg.channels, cfg.ndf, 4, down), gl.nn.LeakyReLU { slope = 0.2 } }
  c = cfg.ndf
  for _ = 1, n - 1 do
    d[#d + 1] = gl.nn.Conv2d(c, 2 * c, 4, down)
    d[#d + 1] = gl.nn.BatchNorm2d(2 * c)
    d[#d + 1] = gl.nn.LeakyReLU { slope = 0.2 }
    c = 2 * c
  end
  d[#d + 1] = gl.nn.Conv2d(c, 1, k0, { stride = 1, padding = 0, bias = false })
  return gl.nn.Sequential(g), gl.nn.Sequential(d)
end

-- DCGAN's weights_init.
local function dcgan_init(net)
  gl.no_grad(function()
    for _, e in ipairs(net:named_parameters()) do
      local name, p = e[1], e[2]
      if name:match("weight$") and #p:shape() == 4 then
        gl.nn.init.normal_(p, 0, 0.02)
      elseif name:match("weight$") then
        gl.nn.init.normal_(p, 1, 0.02)
      else
        gl.nn.init.zeros_(p)
      end
    end
  end)
end

local DCGAN = gl.nn.Module { name = "DCGAN" }

function DCGAN:init(cfg)
  rawset(self, "cfg", cfg)
  local G, D = layers(cfg)
  dcgan_init(G)
  dcgan_init(D)
  self.G, self.D = G, D
  local adam = { lr = cfg.lr, betas = cfg.betas }
  rawset(self, "opt_g", gl.optim.adam(G:parameters(), adam))
  rawset(self, "opt_d", gl.optim.adam(D:parameters(), adam))
end

function DCGAN:extra_repr()
  local c = self.cfg
  return ("size=%d, channels=%d, nz=%d, ngf=%d, ndf=%d, loss=%s"):format(c.size, c.channels, c.nz, c.ngf, c.ndf, c.loss)
end

function DCGAN:_noise(z, op)
  local nz = self.cfg.nz
  if math.type(z) == "integer" then
    if z < 1 then error(op .. ": n must be a positive integer", 3) end
    return gl.randn { z, nz, 1, 1 }
  end
  if not gl.is_tensor(z) then error(op .. ": expected a count n or noise z [B," .. nz .. "]", 3) end
  local s = z:shape()
  if not ((#s == 2 and s[2] == nz) or (#s == 4 and s[2] == nz and s[3] == 1 and s[4] == 1)) then
    error(("%s: z must be [B,%d] or [B,%d,1,1] (got %s)"):format(op, nz, nz, shape_str(z)), 3)
  end
  return z:reshape { s[1], nz, 1, 1 }
end

function DCGAN:generate(z) return self.G(self:_noise(z, "dcgan.generate")) end

function DCGAN:sample(n, z)
  local was = self.G:training()
  self.G:eval()
  local out = gl.no_grad(function() return self.G(self:_noise(z or n, "dcgan.sample")) end)
  self.G:train(was)
  return out
end

function DCGAN:discriminate(x)
  local c = self.cfg
  local s = x:shape()
  if #s ~= 4 or s[2] ~= c.channels or s[3] ~= c.size or s[4] ~= c.size then
    error(("dcgan.discriminate: expected images [B,%d,%d,%d] (got %s)"):format(c.channels, c.size, c.size,
      shape_str(x)), 2)
  end
  return self.D(x):reshape { s[1] }
end

local function ls(a, b, target) return (a - b:mean() - target):pow(2):mean() end

function DCGAN:d_loss(r, f, kind)
  if (kind or self.cfg.loss) == "ns" then
    return gl.binary_cross_entropy_with_logits(r, gl.ones(r:shape()))
        + gl.binary_cross_entropy_with_logits(f, gl.zeros(f:shape()))
  end
  return (ls(r, f, 1) + ls(f, r, -1)) * 0.5
end

function DCGAN:g_loss(r, f, kind)
  if (kind or self.cfg.loss) == "ns" then
    return gl.binary_cross_entropy_with_logits(f, gl.ones(f:shape()))
  end
  return (ls(r, f, -1) + ls(f, r, 1)) * 0.5
end

function DCGAN:step(real)
  local B = real:shape()[1]
  self.G:train()
  self.D:train()
  local fake = self:generate(B)
  -- D: real and fake in separate batches (their own batch statistics)
  self.opt_d:zero_grad()
  local r = self:discriminate(real)
  local f = self:discriminate(fake:detach())
  local loss_d = self:d_loss(r, f)
  loss_d:backward()
  self.opt_d:step()
  local d_real, d_fake
  if self.cfg.loss == "ns" then
    d_real, d_fake = r:detach():sigmoid():mean():item(), f:detach():sigmoid():mean():item()
  else
    local rd, fd = r:detach(), f:detach()
    d_real = (rd - fd:mean()):sigmoid():mean():item()
    d_fake = (fd - rd:mean()):sigmoid():mean():item()
  end
  -- G: through the updated D; D's gradients from this pass are cleared by the next D step
  self.opt_g:zero_grad()
  local rg = self.cfg.loss == "ns" and r:detach() or self:discriminate(real):detach()
  local loss_g = self:g_loss(rg, self:discriminate(fake))
  loss_g:backward()
  self.opt_g:step()
  return { loss_d = loss_d:item(), loss_g = loss_g:item(), d_real = d_real, d_fake = d_fake }
end

local fit_keys = {
  data = true, steps = true, every = true, samples = true, dir = true, log = true, show = true, run = true,
  on_grid = true, seconds = true, range = true,
}

-- gan:fit{data = loader (gl.data.images / gl.data.mnist style: :next() -> x [, y]),
--   steps = 1000, seconds = nil (stop after this much wall time too),
--   every = 100 (log a line and make a fixed-noise grid every N steps),
--   samples = 64 (grid size), dir = nil (saves dir/step_<N>.png), log = print
--   (false: quiet), show = false (print grids as text; the workbench's Image
--   pane always updates), run = "dcgan" (gl.metrics run name),
--   on_grid = function(step, grid) end, range = "unit" | "tanh" (the loader's
--   values: [0, 1], mapped to [-1, 1] here, or already [-1, 1])} Returns the history
-- {loss_d = {...}, loss_g = {...}, d_real = {...}, d_fake = {...}} per step.
function DCGAN:fit(opts)
  opts = check_opts("dcgan.fit", opts, fit_keys, 2)
  local data = opts.data
  if type(data) ~= "table" and type(data) ~= "userdata" or type(data.next) ~= "function" then
    error("dcgan.fit: data must be a loader with :next() (gl.data.images{...} or gl.data.mnist{...})", 2)
  end
  local steps = positive_int("dcgan.fit", "steps", opts.steps, 1000)
  local every = positive_int("dcgan.fit", "every", opts.every, 100)
  local nsamples = opts.samples == nil and 64 or opts.samples
  local log = opts.log == nil and print or opts.log or function() end
  local run = opts.run or "dcgan"
  local fixed = nsamples > 0 and gl.randn { nsamples, self.cfg.nz, 1, 1 } or nil
  if opts.range ~= nil and opts.range ~= "unit" and opts.range ~= "tanh" then
    error(("dcgan.fit: range must be \"unit\" or \"tanh\" (got %s)"):format(tostring(opts.range)), 2)
  end
  local tanh = opts.range == "tanh"
  local hist = { loss_d = {}, loss_g = {}, d_real = {}, d_fake = {} }
  local t0 = gl.clock()
  for step = 1, steps do
    local x = data:next()
    if not tanh then x = x * 2 - 1 end
    local s = self:step(x)
    for k, v in pairs(s) do hist[k][step] = v end
    gl.metrics.log(run, step, s)
    gl.yield_ui()
    local last = step == steps or (opts.seconds and gl.clock() - t0 >= opts.seconds)
    if step % every == 0 or last then
      log(("step %5d  loss D %.4f  G %.4f  D(x) %.3f  D(G(z)) %.3f  (%.1f s)"):format(step, s.loss_d, s.loss_g,
        s.d_real, s.d_fake, gl.clock() - t0))
      if fixed then
        local grid = (self:sample(nil, fixed) + 1) * 0.5
        if opts.dir then gl.image.save(grid, ("%s/step_%d.png"):format(opts.dir, step), { nrow = 8 }) end
        gl.image.preview(grid, ("%s: samples at step %d"):format(run, step), opts.show)
        if opts.on_grid then opts.on_grid(step, grid) end
      end
    end
    if last then break end
  end
  return hist
end

local keys = {
  size = true, nz = true, ngf = true, ndf = true, channels = true, loss = true, lr = true, betas = true,
}

function gl.models.dcgan(opts)
  opts = check_opts("models.dcgan", opts, keys, 2)
  if not (gl.nn.Conv2d and gl.nn.ConvTranspose2d and gl.nn.BatchNorm2d) then
    error("models.dcgan: needs gl.nn.Conv2d, ConvTranspose2d and BatchNorm2d", 2)
  end
  local cfg = {
    size = opts.size or 64,
    nz = positive_int("models.dcgan", "nz", opts.nz, 100),
    ngf = positive_int("models.dcgan", "ngf", opts.ngf, 64),
    ndf = positive_int("models.dcgan", "ndf", opts.ndf, 64),
    channels = opts.channels or 3,
    loss = opts.loss or "ragan_ls",
    lr = opts.lr or 1e-4,
    betas = opts.betas or { 0.5, 0.999 },
  }
  if cfg.size ~= 28 and cfg.size ~= 32 and cfg.size ~= 64 then
    error(("models.dcgan: size must be 28, 32 or 64 (got %s)"):format(tostring(cfg.size)), 2)
  end
  if cfg.channels ~= 1 and cfg.channels ~= 3 then
    error(("models.dcgan: channels must be 1 or 3 (got %s)"):format(tostring(cfg.channels)), 2)
  end
  if cfg.loss ~= "ragan_ls" and cfg.loss ~= "ns" then
    error(("models.dcgan: loss must be \"ragan_ls\" or \"ns\" (got %s)"):format(tostring(cfg.loss)), 2)
  end
  return DCGAN(cfg)
end

return gl.models.dcgan
