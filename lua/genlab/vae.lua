-- gl.models.vae: variational autoencoders (the chapter's §6.5 (b)).
--
--   local vae = gl.models.vae{kind = "mlp"}           -- the seed's 784-400-20 MLP VAE
--   local vae = gl.models.vae{kind = "conv", latent = 16, channels = 1, size = 28}
--
-- Options: kind = "mlp" | "conv"; latent = 20; channels = 1 and size = 28
-- (images are [B, channels, size, size] in [0, 1]); for "mlp" hidden = 400;
-- for "conv" width = 32 (channels of the first convolution; size must be a
-- multiple of 4).
--   mlp:  fc1 (D -> hidden), ReLU, fc21 / fc22 (hidden -> latent: mu, logvar);
--         fc3 (latent -> hidden), ReLU, fc4 (hidden -> D), sigmoid.
--   conv: enc = Conv2d(C, w, 4, s2, p1), ReLU, Conv2d(w, 2w, 4, s2, p1), ReLU;
--         fc_mu / fc_logvar (2w*(S/4)^2 -> latent); dec_fc (latent -> 2w*(S/4)^2), ReLU;
--         dec = ConvTranspose2d(2w, w, 4, s2, p1), ReLU, ConvTranspose2d(w, C, 4, s2, p1); sigmoid.
-- Parameter names are those of the PyTorch modules of
-- tests/fixtures/make_gen_fixtures.py, so weights move both ways.
--
-- Methods (x: [B, C, H, W], or [B, C*H*W] for the MLP; images come back [B, C, H, W]):
--   encode(x) -> mu, logvar          decode(z) -> images
--   forward(x [, eps]) -> recon, mu, logvar  (z = mu + eps * exp(logvar / 2), eps ~ N(0, 1)
--                                     unless given)
--   loss(x [, eps]) -> loss, bce, kl        BCE summed over pixels and batch + KL summed
--                                     (the seed's loss_function; divide by B for a mean)
--   sample(n) -> images              decode of z ~ N(0, 1), without recording
--   reconstruct(x) -> images         decode(mu), without recording
--   interpolate(x1, x2, steps) -> [steps, C, H, W]  decode along the line from mu(x1) to mu(x2)
--   fit{train = loader, test = loader, epochs = 10, ...} -> history   (see fit below)
local gl = require "genlab"
local options = require "genlab.options"
local check_opts = options.check
local positive_int = options.positive_int

gl.models = gl.models or {}

local function shape_str(t) return "[" .. table.concat(t:shape(), ",") .. "]" end

local function linear(i, o) return gl.nn.Linear { in_features = i, out_features = o } end

local VAE = gl.nn.Module { name = "VAE" }

function VAE:init(cfg)
  local C, S = cfg.channels, cfg.size
  rawset(self, "cfg", cfg)
  if cfg.kind == "mlp" then
    local D = C * S * S
    self.fc1 = linear(D, cfg.hidden)
    self.fc21 = linear(cfg.hidden, cfg.latent)
    self.fc22 = linear(cfg.hidden, cfg.latent)
    self.fc3 = linear(cfg.latent, cfg.hidden)
    self.fc4 = linear(cfg.hidden, D)
  else
    local w, s4 = cfg.width, S // 4
    local flat = 2 * w * s4 * s4
    local conv = { stride = 2, padding = 1 }
    self.enc = gl.nn.Sequential {
      gl.nn.Conv2d(C, w, 4, conv), gl.nn.ReLU(), gl.nn.Conv2d(w, 2 * w, 4, conv), gl.nn.ReLU(),
    }
    self.fc_mu = linear(flat, cfg.latent)
    self.fc_logvar = linear(flat, cfg.latent)
    self.dec_fc = linear(cfg.latent, flat)
    self.dec = gl.nn.Sequential {
      gl.nn.ConvTranspose2d(2 * w, w, 4, conv), gl.nn.ReLU(), gl.nn.ConvTranspose2d(w, C, 4, conv),
    }
  end
end

function VAE:extra_repr()
  local c = self.cfg
  return ("kind=%s, latent=%d, image=[%d,%d,%d]"):format(c.kind, c.latent, c.channels, c.size, c.size)
end

-- x as the encoder wants it: [B, D] for the MLP, [B, C, S, S] for the conv VAE.
function VAE:_input(x, op)
  local c, shape = self.cfg, x:shape()
  local D = c.channels * c.size * c.size
  if shape[1] == nil or x:numel() ~= shape[1] * D or (#shape ~= 2 and #shape ~= 4) then
    error(("%s: expected images [B,%d,%d,%d] or [B,%d] (got %s)")
      :format(op, c.channels, c.size, c.size, D, shape_str(x)), 3)
  end
  if c.kind == "mlp" then return x:reshape { shape[1], D } end
  return x:reshape { shape[1], c.channels, c.size, c.size }
end

function VAE:encode(x)
  x = self:_input(x, "vae.encode")
  if self.cfg.kind == "mlp" then
    local h = self.fc1(x):relu()
    return self.fc21(h), self.fc22(h)
  end
  local h = self.enc(x):flatten(2)
  return self.fc_mu(h), self.fc_logvar(h)
end

function VAE:decode(z)
  local c = self.cfg
  local shape = z:shape()
  if #shape ~= 2 or shape[2] ~= c.latent then
    error(("vae.decode: z must be [B,%d] (got %s)"):format(c.latent, shape_str(z)), 2)
  end
  local out
  if c.kind == "mlp" then
    out = self.fc4(self.fc3(z):relu())
  else
    local s4 = c.size // 4
    out = self.dec(self.dec_fc(z):relu():reshape { shape[1], 2 * c.width, s4, s4 })
  end
  return out:sigmoid():reshape { shape[1], c.channels, c.size, c.size }
end

-- eps (optional, [B, latent]): the noise, to reproduce a reference run.
function VAE:reparameterize(mu, logvar, eps)
  return mu + (eps or gl.randn(mu:shape())) * (logvar * 0.5):exp()
end

function VAE:forward(x, eps)
  local mu, logvar = self:encode(x)
  return self:decode(self:reparameterize(mu, logvar, eps)), mu, logvar
end

-- The seed's loss: BCE(recon, x) summed + KL(N(mu, sigma^2) || N(0, 1)) summed.
function VAE:loss(x, eps)
  local recon, mu, logvar = self:forward(x, eps)
  local bce = gl.binary_cross_entropy(recon, x:reshape(recon:shape()), { reduction = "sum" })
  local kl = (1 + logvar - mu:pow(2) - logvar:exp()):sum() * -0.5
  return bce + kl, bce, kl
end

function VAE:sample(n)
  if math.type(n) ~= "integer" or n < 1 then error("vae.sample: n must be a positive integer", 2) end
  return gl.no_grad(function() return self:decode(gl.randn { n, self.cfg.latent }) end)
end

function VAE:reconstruct(x)
  return gl.no_grad(function() return self:decode((self:encode(x))) end)
end

-- x1, x2: one image each ([C, H, W], [1, C, H, W] or flat); steps >= 2 points
-- from x1's mean code to x2's, both ends included.
function VAE:interpolate(x1, x2, steps)
  steps = steps or 8
  if math.type(steps) ~= "integer" or steps < 2 then
    error("vae.interpolate: steps must be an integer >= 2", 2)
  end
  local D = self.cfg.channels * self.cfg.size * self.cfg.size
  for i, x in ipairs { x1, x2 } do
    if not gl.is_tensor(x) or x:numel() ~= D then
      error(("vae.interpolate: x%d must be one image of %d values"):format(i, D), 2)
    end
  end
  return gl.no_grad(function()
    local m1 = self:encode(x1:reshape { 1, D })
    local m2 = self:encode(x2:reshape { 1, D })
    local t = gl.linspace(0, 1, steps):reshape { steps, 1 }
    return self:decode(m1 * (1 - t) + m2 * t)
  end)
end

local fit_keys = {
  train = true, test = true, epochs = true, lr = true, opt = true, samples = true, dir = true,
  log = true, show = true, run = true, on_epoch = true, max_batches = true,
}

-- vae:fit{train = loader, test = loader|nil, epochs = 10, lr = 1e-3, opt = an optimizer
--   (default Adam(lr)), samples = 64 (grid size; 0: none), dir = nil (a folder:
--   saves dir/sample_<epoch>.png per epoch with gl.image.save), log = print
--   (false: quiet), show = false (print the grid as text; in the workbench the
--   Image pane always updates), run = "vae" (gl.metrics run name),
--   on_epoch = function(epoch, train_loss, test_loss, grid) end,
--   max_batches = nil (per epoch; for quick runs)}
-- loaders: gl.data.mnist-style, with :epoch() iterating (x, y) batches.
-- Losses are per image (the summed loss over the set / its size), as the seed
-- prints them. Returns {train = {...}, test = {...}, seconds = {...}}.
function VAE:fit(opts)
  opts = check_opts("vae.fit", opts, fit_keys, 2)
  if not opts.train or type(opts.train.epoch) ~= "function" then
    error("vae.fit: train must be a data loader with :epoch() (gl.data.mnist{...})", 2)
  end
  local epochs = positive_int("vae.fit", "epochs", opts.epochs, 10)
  local nsamples = opts.samples == nil and 64 or opts.samples
  local log = opts.log == nil and print or opts.log or function() end
  local run = opts.run or "vae"
  local opt = opts.opt or gl.optim.adam(self:parameters(), { lr = opts.lr or 1e-3 })
  local fixed = nsamples > 0 and gl.randn { nsamples, self.cfg.latent } or nil
  local hist = { train = {}, test = {}, seconds = {} }
  local step = 0
  for epoch = 1, epochs do
    local t0 = gl.clock()
    self:train()
    local total, count, nb = 0, 0, 0
    for x in opts.train:epoch() do
      opt:zero_grad()
      local loss = self:loss(x)
      loss:backward()
      opt:step()
      local v, b = loss:item(), x:shape()[1]
      total, count, step, nb = total + v, count + b, step + 1, nb + 1
      if step % 20 == 0 then
        gl.metrics.log(run, step, { loss = v / b })
        gl.yield_ui()
      end
      if opts.max_batches and nb >= opts.max_batches then break end
    end
    local train_loss = total / count
    local test_loss
    self:eval()
    if opts.test then
      local tt, tc, tb = 0, 0, 0
      gl.no_grad(function()
        for x in opts.test:epoch() do
          tt, tc, tb = tt + self:loss(x):item(), tc + x:shape()[1], tb + 1
          if opts.max_batches and tb >= opts.max_batches then break end
        end
      end)
      test_loss = tt / tc
    end
    hist.train[epoch], hist.test[epoch], hist.seconds[epoch] = train_loss, test_loss, gl.clock() - t0
    gl.metrics.log(run, step, { train_loss = train_loss, val_loss = test_loss or (0 / 0) })
    log(("epoch %2d  train loss %.4f  test loss %s  (%.1f s)"):format(epoch, train_loss,
      test_loss and ("%.4f"):format(test_loss) or "-", hist.seconds[epoch]))
    local grid
    if fixed then
      grid = gl.no_grad(function() return self:decode(fixed) end)
      if opts.dir then
        local path = ("%s/sample_%d.png"):format(opts.dir, epoch)
        gl.image.save(grid, path, { nrow = 8 })
      end
      gl.image.preview(grid, ("%s: samples after epoch %d"):format(run, epoch), opts.show)
    end
    if opts.on_epoch then opts.on_epoch(epoch, train_loss, test_loss, grid) end
  end
  return hist
end

local vae_keys = { kind = true, latent = true, channels = true, size = true, hidden = true, width = true }

function gl.models.vae(opts)
  opts = check_opts("models.vae", opts, vae_keys, 2)
  local kind = opts.kind or "mlp"
  if kind ~= "mlp" and kind ~= "conv" then
    error(("models.vae: kind must be \"mlp\" or \"conv\" (got %s)"):format(tostring(kind)), 2)
  end
  local cfg = {
    kind = kind,
    latent = positive_int("models.vae", "latent", opts.latent, 20),
    channels = positive_int("models.vae", "channels", opts.channels, 1),
    size = positive_int("models.vae", "size", opts.size, 28),
  }
  if kind == "mlp" then
    if opts.width then error("models.vae: width is for kind=\"conv\"", 2) end
    cfg.hidden = positive_int("models.vae", "hidden", opts.hidden, 400)
  else
    if opts.hidden then error("models.vae: hidden is for kind=\"mlp\"", 2) end
    if not gl.nn.Conv2d or not gl.nn.ConvTranspose2d then
      error("models.vae: kind=\"conv\" needs gl.nn.Conv2d and gl.nn.ConvTranspose2d", 2)
    end
    cfg.width = positive_int("models.vae", "width", opts.width, 32)
    if cfg.size % 4 ~= 0 then
      error(("models.vae: a conv VAE needs size divisible by 4 (got %d)"):format(cfg.size), 2)
    end
  end
  return VAE(cfg)
end

return gl.models.vae
