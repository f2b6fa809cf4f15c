-- The chapter's relativistic DCGAN (§6.5 a) on a folder of 64x64 images:
-- generator of transposed convolutions + batch norm + ReLU + tanh,
-- discriminator of strided convolutions + batch norm + LeakyReLU 0.2,
-- relativistic average least-squares losses, Adam 1e-4 betas (0.5, 0.999),
-- batch 64. Logs D and G losses and D(x) / D(G(z)) and saves a grid of the
-- same 64 noise vectors every N steps (DIR/step_<N>.png).
--
--   genlab run examples/dcgan.lua [FOLDER] [--steps 2000] [--every 100] [--dir dcgan_samples]
--                                 [--loss ragan_ls|ns] [--seed 1] [--show]
--
-- FOLDER defaults to Debian's oxygen icons (/usr/share/icons/oxygen/base/64x64,
-- package oxygen-icon-theme) or ~/.genlab/data/oxygen-icons-64; without
-- either it trains a 28x28 DCGAN on Fashion-MNIST instead, and says so.
local gl = require "genlab"

local opts = { steps = 2000, every = 100, dir = "dcgan_samples", loss = "ragan_ls", seed = 1 }
local folder
local args = arg or {}
local i = 1
while i <= #args do
  local a = args[i]
  if a == "--show" then
    opts.show = true
  elseif a:match("^%-%-") then
    local key = a:sub(3)
    if opts[key] == nil then error("dcgan: unknown flag " .. a) end
    i = i + 1
    opts[key] = args[i] or error("dcgan: " .. a .. " needs a value")
  else
    folder = a
  end
  i = i + 1
end
for _, k in ipairs { "steps", "every", "seed" } do
  opts[k] = math.tointeger(tonumber(opts[k])) or error(("dcgan: --%s must be an integer"):format(k))
end

gl.seed(opts.seed)
local candidates = folder and { folder } or { "/usr/share/icons/oxygen/base/64x64",
  (os.getenv("HOME") or ".") .. "/.genlab/data/oxygen-icons-64" }
local data, size, channels, why
for _, dir in ipairs(candidates) do
  local ok, loader = pcall(gl.data.images, dir, { size = 64, channels = 3, batch = 64, range = "tanh", drop_last = true })
  if ok then
    data, size, channels = loader, 64, 3
    print(("images: %d PNG files under %s, 64x64 RGB"):format(loader.n, dir))
    break
  end
  why = loader
end
if not data then
  if folder then error("dcgan: " .. tostring(why)) end
  print("dcgan: no icon folder found (install oxygen-icon-theme, or give a folder of PNG images);")
  print("       training a 28x28 DCGAN on Fashion-MNIST instead")
  data = gl.data.mnist { split = "train", batch = 64, drop_last = true }
  size, channels = 28, 1
end

local gan = gl.models.dcgan { size = size, channels = channels, loss = opts.loss }
print(("DCGAN %dx%dx%d, loss %s: G %d, D %d parameters; batch 64, Adam 1e-4 betas (0.5, 0.999), %d thread(s)")
  :format(channels, size, size, opts.loss, gan.G:num_parameters(), gan.D:num_parameters(), gl.threads()))
os.execute(("mkdir -p '%s'"):format(opts.dir:gsub("'", "'\\''")))
gan:fit { data = data, steps = opts.steps, every = opts.every, dir = opts.dir, show = opts.show,
  range = size == 64 and "tanh" or "unit" }
print("sample grids in " .. opts.dir .. "/")
