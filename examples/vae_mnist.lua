-- The chapter's MLP VAE (§6.5 b) on Fashion-MNIST: 784-400-20 with ReLU and
-- a sigmoid output, loss = BCE summed over pixels + KL divergence, batch 128,
-- Adam 1e-3. Prints the training and test loss per image for every epoch and
-- saves a grid of 64 samples per epoch (DIR/sample_<epoch>.png).
--
--   genlab run examples/vae_mnist.lua [EPOCHS] [--dir DIR] [--data DIR] [--seed N]
--                                     [--kind mlp|conv] [--show]
--
-- EPOCHS defaults to 10. --data names a folder of IDX files (default: Debian's
-- dataset-fashion-mnist, /usr/share/datasets/fashion-mnist); --dir defaults to
-- vae_samples; --show prints each grid as text (the workbench's Image pane
-- shows it anyway). bench/torch_vae.py is the same run in PyTorch.
local gl = require "genlab"

local opts = { epochs = 10, dir = "vae_samples", seed = 1, kind = "mlp" }
local args = arg or {}
local i = 1
while i <= #args do
  local a = args[i]
  if a == "--show" then
    opts.show = true
  elseif a:match("^%-%-") then
    local key = a:sub(3)
    if opts[key] == nil and key ~= "data" then error("vae_mnist: unknown flag " .. a) end
    i = i + 1
    opts[key] = args[i] or error("vae_mnist: " .. a .. " needs a value")
  else
    opts.epochs = math.tointeger(tonumber(a)) or error("vae_mnist: EPOCHS must be an integer (got " .. a .. ")")
  end
  i = i + 1
end
opts.seed = math.tointeger(tonumber(opts.seed))

gl.seed(opts.seed)
local train = gl.data.mnist { dir = opts.data, split = "train", batch = 128, shuffle = true, seed = opts.seed }
local test = gl.data.mnist { dir = opts.data, split = "test", batch = 128, shuffle = false }
local vae = gl.models.vae { kind = opts.kind }
os.execute(("mkdir -p '%s'"):format(opts.dir:gsub("'", "'\\''")))
print(("%s VAE, %d parameters; Fashion-MNIST %d train / %d test; batch 128, Adam 1e-3, %d thread(s), seed %d")
  :format(opts.kind, vae:num_parameters(), train.images:shape()[1], test.images:shape()[1], gl.threads(), opts.seed))
local hist = vae:fit { train = train, test = test, epochs = opts.epochs, lr = 1e-3, dir = opts.dir, show = opts.show }
print(("final test loss %.4f per image; sample grids in %s/"):format(hist.test[#hist.test], opts.dir))
