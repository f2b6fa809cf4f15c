-- gl.models.vae (lua/genlab/vae.lua): golden forward, loss and gradients
-- against PyTorch on small random weights (tests/fixtures/gen/vae_*.safetensors,
-- made by tests/fixtures/make_gen_fixtures.py), shapes of encode / decode /
-- sample / reconstruct / interpolate, option errors, and a tiny training run
-- whose loss must fall. Dims typed here are 1-based.
local T = require "tap"
local gl = require "genlab"

local TOL = 1e-4

local function shape_str(t) return "[" .. table.concat(t:shape(), ",") .. "]" end

local function golden(kind)
  local path = "../fixtures/gen/vae_" .. kind .. ".safetensors"
  if kind == "conv" and not (gl.nn.Conv2d and gl.nn.ConvTranspose2d) then
    T.ok(true, "# SKIP conv VAE golden: gl.nn.Conv2d / ConvTranspose2d missing")
    return
  end
  local F, meta = gl.load(path)
  local opts = { kind = kind, size = tonumber(meta.size), latent = tonumber(meta.latent) }
  if kind == "mlp" then opts.hidden = tonumber(meta.hidden) else opts.width = tonumber(meta.width) end
  local vae = gl.models.vae(opts)
  local sd = {}
  for k, v in pairs(F) do
    local name = k:match("^p%.(.*)$")
    if name then sd[name] = v end
  end
  vae:load_state_dict(sd)
  local mu, logvar = vae:encode(F.x)
  T.near(mu, F.mu, TOL, kind .. ": encode mu matches PyTorch")
  T.near(logvar, F.logvar, TOL, kind .. ": encode logvar matches PyTorch")
  local recon = vae:forward(F.x, F.eps)
  T.eq(shape_str(recon), shape_str(F.recon), kind .. ": recon shape")
  T.near(recon, F.recon, TOL, kind .. ": recon (given eps) matches PyTorch")
  local loss, bce, kl = vae:loss(F.x, F.eps)
  T.near(loss:item(), F.loss:item(), 1e-5 * math.abs(F.loss:item()), kind .. ": loss (BCE sum + KL) matches")
  T.near(bce:item(), F.bce:item(), 1e-5 * math.abs(F.bce:item()), kind .. ": BCE term matches")
  T.near(kl:item(), F.kl:item(), 1e-4, kind .. ": KL term matches")
  loss:backward()
  local n = 0
  for _, e in ipairs(vae:named_parameters()) do
    local want = F["grad." .. e[1]]
    if want then
      n = n + 1
      T.near(e[2].grad, want, 1e-4 * math.max(1, want:abs():max():item()), kind .. ": grad " .. e[1])
    end
  end
  T.eq(n, #vae:parameters(), kind .. ": every parameter has a reference gradient")
end

golden("mlp")
golden("conv")

-- shapes
gl.seed(1)
local vae = gl.models.vae { kind = "mlp", size = 8, hidden = 16, latent = 4 }
local x = gl.rand { 6, 1, 8, 8 }
local mu, logvar = vae:encode(x)
T.eq(shape_str(mu) .. shape_str(logvar), "[6,4][6,4]", "encode -> mu, logvar [B, latent]")
T.eq(shape_str(vae:encode(x:reshape { 6, 64 })), "[6,4]", "encode accepts flat [B, 64]")
T.eq(shape_str(vae:decode(gl.randn { 3, 4 })), "[3,1,8,8]", "decode -> [B,1,8,8]")
local s = vae:sample(5)
T.eq(shape_str(s), "[5,1,8,8]", "sample(5) -> [5,1,8,8]")
T.ok(s:min():item() >= 0 and s:max():item() <= 1, "samples lie in [0,1] (sigmoid)")
T.ok(not s.requires_grad, "sample records nothing")
T.eq(shape_str(vae:reconstruct(x)), "[6,1,8,8]", "reconstruct keeps the shape")
local path = vae:interpolate(x:select(1, 1), x:select(1, 2), 7)
T.eq(shape_str(path), "[7,1,8,8]", "interpolate(x1, x2, 7) -> [7,1,8,8]")
T.near(path:select(1, 1), vae:reconstruct(x:select(1, 1):reshape { 1, 1, 8, 8 }):select(1, 1), 1e-6,
  "interpolation starts at reconstruct(x1)")
T.near(path:select(1, 7), vae:reconstruct(x:select(1, 2):reshape { 1, 1, 8, 8 }):select(1, 1), 1e-6,
  "interpolation ends at reconstruct(x2)")
T.eq(vae:num_parameters(), (64 * 16 + 16) + 2 * (16 * 4 + 4) + (4 * 16 + 16) + (16 * 64 + 64), "parameter count")
T.eq(gl.models.vae():num_parameters(), 652824, "the seed's 784-400-20 VAE has 652824 parameters")

-- errors
T.raises(function() gl.models.vae { kind = "flow" } end, 'kind must be "mlp" or "conv"', "bad kind")
T.raises(function() gl.models.vae { latnet = 3 } end, "unknown option 'latnet'", "unknown option")
T.raises(function() gl.models.vae { latent = 0 } end, "latent must be a positive integer", "latent 0")
T.raises(function() gl.models.vae { kind = "mlp", width = 3 } end, "width is for kind=\"conv\"", "width on mlp")
T.raises(function() vae:encode(gl.rand { 2, 1, 7, 7 }) end, "vae.encode: expected images [B,1,8,8] or [B,64] (got [2,1,7,7])",
  "encode names the expected and the given shape")
T.raises(function() vae:decode(gl.randn { 2, 5 }) end, "vae.decode: z must be [B,4] (got [2,5])", "decode checks z")
T.raises(function() vae:fit { train = {} } end, "train must be a data loader", "fit needs a loader")
T.raises(function() vae:fit { train = {}, epoch = 3 } end, "unknown option 'epoch'", "fit rejects unknown options")

-- a tiny training run: 4 fixed "images" (two bars patterns), the loss must fall
do
  gl.seed(7)
  local data = gl.zeros { 16, 1, 8, 8 }
  for i = 1, 16 do
    for r = 1, 8 do
      for c = 1, 8 do
        local on = (i % 2 == 0) and (c <= 4) or (r <= 4)
        data:setflat(((i - 1) * 64) + (r - 1) * 8 + c, on and 0.95 or 0.05)
      end
    end
  end
  local loader = { epoch = function() local done = false return function()
    if done then return nil end
    done = true
    return data
  end end }
  local m = gl.models.vae { kind = "mlp", size = 8, hidden = 32, latent = 2 }
  local seen = {}
  local hist = m:fit { train = loader, test = loader, epochs = 60, lr = 1e-2, samples = 4, log = false,
    on_epoch = function(e, tr, te, grid) seen[#seen + 1] = grid and shape_str(grid) end }
  T.ok(hist.train[60] < 0.8 * hist.train[1], ("training loss falls (%.2f -> %.2f per image)"):format(hist.train[1], hist.train[60]))
  T.ok(hist.test[60] < hist.test[1], ("test loss falls (%.2f -> %.2f)"):format(hist.test[1], hist.test[60]))
  T.eq(seen[1], "[4,1,8,8]", "fit hands a grid of samples to on_epoch")
end

T.done()
