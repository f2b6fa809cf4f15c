-- gl.models.dcgan (lua/genlab/gan.lua): golden generator / discriminator
-- outputs, both losses and the gradients of both players against PyTorch on
-- small random weights (tests/fixtures/gen/dcgan{28,32}.safetensors, made by
-- tests/fixtures/make_gen_fixtures.py), batch-norm running statistics, shapes
-- for 28/32/64, option errors, and a tiny training run. Dims typed here are 1-based.
local T = require "tap"
local gl = require "genlab"

local function shape_str(t) return "[" .. table.concat(t:shape(), ",") .. "]" end

if not (gl.nn.Conv2d and gl.nn.ConvTranspose2d and gl.nn.BatchNorm2d) then
  T.raises(function() gl.models.dcgan {} end, "needs gl.nn.Conv2d", "dcgan says what it needs")
  T.ok(true, "# SKIP gl.nn.Conv2d / ConvTranspose2d / BatchNorm2d missing")
  T.done()
end

local function rel(want) return 1e-4 * math.max(1, want:abs():max():item()) end

local function golden(name)
  local F, meta = gl.load("../fixtures/gen/" .. name .. ".safetensors")
  local gan = gl.models.dcgan { size = tonumber(meta.size), channels = tonumber(meta.channels), nz = tonumber(meta.nz),
    ngf = tonumber(meta.ngf), ndf = tonumber(meta.ndf) }
  local sd = {}
  for k, v in pairs(F) do
    if k:match("^[GD]%.") then sd[k] = v:clone() end
  end
  gan:load_state_dict(sd)
  local fake = gan:generate(F.z)
  T.near(fake, F.fake, 1e-4, name .. ": G(z) in training mode matches PyTorch")
  for k, v in pairs(F) do
    local bn = k:match("^after%.(.*)$")
    if bn then T.near(gan:state_dict()[bn], v, 1e-5, name .. ": " .. bn .. " after one forward") end
  end
  local r = gan:discriminate(F.real)
  local f = gan:discriminate(fake:detach())
  T.near(r, F.d_real, 1e-4, name .. ": D(real) matches")
  T.near(f, F.d_fake, 1e-4, name .. ": D(G(z)) matches")
  local loss_d = gan:d_loss(r, f)
  T.near(loss_d:item(), F.loss_d:item(), 1e-5 * math.max(1, math.abs(F.loss_d:item())), name .. ": ragan_ls D loss")
  T.near(gan:g_loss(r, f):item(), F.loss_g:item(), 1e-5 * math.max(1, math.abs(F.loss_g:item())),
    name .. ": ragan_ls G loss")
  T.near(gan:d_loss(r, f, "ns"):item(), F.ns_d:item(), 1e-5, name .. ": ns D loss")
  T.near(gan:g_loss(r, f, "ns"):item(), F.ns_g:item(), 1e-5, name .. ": ns G loss")
  loss_d:backward()
  for _, e in ipairs(gan.D:named_parameters()) do
    local want = F["grad_d." .. e[1]]
    T.near(e[2].grad, want, rel(want), name .. ": D grad " .. e[1])
  end
  gan.D:zero_grad()
  local loss_g = gan:g_loss(r:detach(), gan:discriminate(fake))
  loss_g:backward()
  for _, e in ipairs(gan.G:named_parameters()) do
    local want = F["grad_g." .. e[1]]
    T.near(e[2].grad, want, rel(want), name .. ": G grad " .. e[1])
  end
end

golden("dcgan28")
golden("dcgan32")

-- shapes and init
gl.seed(3)
for _, c in ipairs { { 28, 1 }, { 32, 3 }, { 64, 3 } } do
  local gan = gl.models.dcgan { size = c[1], channels = c[2], nz = 8, ngf = 4, ndf = 4 }
  local s = gan:sample(2)
  T.eq(shape_str(s), ("[2,%d,%d,%d]"):format(c[2], c[1], c[1]), ("size %d: sample(2) shape"):format(c[1]))
  T.ok(s:min():item() >= -1 and s:max():item() <= 1, ("size %d: samples in [-1,1]"):format(c[1]))
  T.eq(shape_str(gan:discriminate(s)), "[2]", ("size %d: D gives one logit per image"):format(c[1]))
end
local big = gl.models.dcgan { size = 64, channels = 3 }
local w = big.D:state_dict()["2.weight"]
T.near(w:std():item(), 0.02, 0.002, "conv weights drawn N(0, 0.02)")
T.near(big.G:state_dict()["1.weight"]:mean():item(), 1, 0.01, "batch-norm weights drawn N(1, 0.02)")
T.eq(big.G:num_parameters(), 3576704, "64x64 generator: 3576704 parameters (as PyTorch's DCGAN)")
T.eq(big.D:num_parameters(), 2765568, "64x64 discriminator: 2765568 parameters")

-- errors
T.raises(function() gl.models.dcgan { size = 48 } end, "size must be 28, 32 or 64 (got 48)", "bad size")
T.raises(function() gl.models.dcgan { loss = "wgan" } end, 'loss must be "ragan_ls" or "ns"', "bad loss")
T.raises(function() gl.models.dcgan { channels = 2 } end, "channels must be 1 or 3", "bad channels")
T.raises(function() gl.models.dcgan { nzz = 2 } end, "unknown option 'nzz'", "unknown option")
local small = gl.models.dcgan { size = 28, channels = 1, nz = 8, ngf = 8, ndf = 8 }
T.raises(function() small:generate(gl.randn { 2, 7 }) end, "dcgan.generate: z must be [B,8] or [B,8,1,1] (got [2,7])",
  "generate checks z")
T.raises(function() small:discriminate(gl.randn { 2, 3, 28, 28 }) end,
  "dcgan.discriminate: expected images [B,1,28,28] (got [2,3,28,28])", "discriminate checks images")
T.raises(function() small:fit { data = 5 } end, "data must be a loader", "fit needs a loader")

-- tiny training: real images are a fixed bright square; D must learn to tell
-- them from G's first outputs, then G moves towards them
do
  gl.seed(11)
  local real = gl.full({ 8, 1, 28, 28 }, -1)
  for b = 0, 7 do
    for r = 8, 20 do
      for c = 8, 20 do real:setflat(b * 784 + (r - 1) * 28 + c, 1) end
    end
  end
  local loader = { next = function() return real end }
  local gan = gl.models.dcgan { size = 28, channels = 1, nz = 8, ngf = 8, ndf = 8, lr = 2e-3 }
  local dist0 = (gan:sample(8) - real):abs():mean():item()
  local hist = gan:fit { data = loader, steps = 60, every = 60, samples = 4, log = false, range = "tanh" }
  local dist1 = (gan:sample(8) - real):abs():mean():item()
  T.ok(hist.loss_d[60] < hist.loss_d[1], ("D loss falls (%.3f -> %.3f)"):format(hist.loss_d[1], hist.loss_d[60]))
  T.ok(dist1 < 0.7 * dist0, ("G's samples move towards the data (mean |G(z) - x| %.3f -> %.3f)"):format(dist0, dist1))
end

T.done()
