-- gl.models.unet against the same network in PyTorch
-- (tests/fixtures/make_diffusion_fixtures.py, CONFIGS there = CONFIGS here):
-- with the fixture's random weights loaded by name, the forward output and
-- the gradients of L = sum(out * R) match to 1e-4 (references are float64
-- rounded to f32 once). Then shapes at 28x28 and 32x32, and config errors.
-- Labels are 0-based class ids; the id num_classes is the null class.
local T = require "tap"
local gl = require "genlab"

if not (gl.conv2d and gl.group_norm and gl.upsample and gl.nn.Conv2d and gl.nn.GroupNorm) then
  print("ok 1 - # SKIP conv2d / group_norm / upsample are not built yet")
  print("1..1")
  os.exit(0)
end
require "genlab.unet"

local F = gl.load("../fixtures/diffusion/diffusion.safetensors")
local TOL = 1e-4

local CONFIGS = {
  cond = { channels = 1, size = 8, base = 8, mults = { 1, 2 }, blocks = 1, attn_res = { 4 }, time_dim = 16,
    num_classes = 3, groups = 2, heads = 2 },
  plain = { channels = 3, size = 12, base = 4, mults = { 1, 2, 2 }, blocks = 2, attn_res = {}, time_dim = 12,
    groups = 2, heads = 1 },
}

local function shape_str(t) return "[" .. table.concat(t:shape(), ",") .. "]" end

for _, name in ipairs { "cond", "plain" } do
  local pre = "unet_" .. name .. "."
  local m = gl.models.unet(CONFIGS[name])
  local sd, n = {}, 0
  for k, v in pairs(F) do
    local p = k:match("^" .. pre:gsub("%.", "%%.") .. "param%.(.*)$")
    if p then sd[p], n = v, n + 1 end
  end
  local missing, unexpected = m:load_state_dict(sd, { strict = false })
  T.ok(#missing == 0 and #unexpected == 0 and n == #m:named_tensors(),
    name .. ": parameter names and count match PyTorch's (" .. n .. ")",
    "missing: " .. table.concat(missing, " ") .. "; unexpected: " .. table.concat(unexpected, " "))
  local out = m(F[pre .. "x"], F[pre .. "t"], F[pre .. "labels"])
  T.eq(shape_str(out), shape_str(F[pre .. "out"]), name .. ": output shape")
  T.near(out, F[pre .. "out"], TOL, name .. ": forward matches PyTorch")
  ;(out * F[pre .. "R"]):sum():backward()
  local params = {}
  for _, e in ipairs(m:named_parameters()) do params[e[1]] = e[2] end
  local grads = {}
  for k in pairs(F) do
    local g = k:match("^" .. pre:gsub("%.", "%%.") .. "grad%.(.*)$")
    if g then grads[#grads + 1] = g end
  end
  table.sort(grads)
  for _, g in ipairs(grads) do T.near(params[g].grad, F[pre .. "grad." .. g], TOL, name .. ": gradient of " .. g) end
end

-- 28x28 (Fashion-MNIST) and 32x32 run through and keep their shape.
gl.seed(1)
for _, c in ipairs { { size = 28, attn = { 7 } }, { size = 32, attn = { 8, 16 } } } do
  local m = gl.models.unet { channels = 1, size = c.size, base = 8, mults = { 1, 2, 2 }, attn_res = c.attn,
    num_classes = 10, groups = 4, dropout = 0.1 }
  local x = gl.randn { 2, 1, c.size, c.size }
  local y = m(x, gl.tensor { 10, 900 }, gl.tensor({ 3, 10 }, { dtype = "i64" }))
  T.eq(shape_str(y), shape_str(x), ("%dx%d: output shape is the input's"):format(c.size, c.size))
  m:eval()
  local a = m(x, gl.tensor { 10, 900 }, gl.tensor({ 3, 3 }, { dtype = "i64" }))
  local b = m(x, gl.tensor { 10, 900 }, gl.tensor({ 4, 4 }, { dtype = "i64" }))
  T.ok((a - b):abs():max():item() > 1e-6, ("%dx%d: the class label changes the output"):format(c.size, c.size))
end

-- Sampling again takes next to no new memory from the kernel: the forward
-- frees its intermediates as it goes and the storage cache serves its large
-- tensors (1 MB and up) from the first sampling's blocks. Each sampling of 8
-- images with this network faulted in some 7,000 pages before, 0-200 now
-- (malloc's heap and Lua's still grow now and then).
do
  local function minor_faults() -- field 10 of /proc/self/stat
    local f = io.open("/proc/self/stat")
    if not f then return nil end
    local s = f:read("a")
    f:close()
    return tonumber(s:match("%) " .. ("%S+ "):rep(7) .. "(%d+)"))
  end
  if not minor_faults() or os.getenv("GENLAB_ASAN") == "yes" then
    T.ok(true, "# SKIP no /proc/self/stat, or AddressSanitizer's quarantine")
  else
    require "genlab.diffusion"
    local m = gl.models.unet { channels = 1, size = 28, base = 32, mults = { 1, 2, 2 }, attn_res = { 7 },
      num_classes = 10, groups = 8 }
    local ddim = gl.diffusion.ddim {}
    local function sample() ddim:sample(m, 8, { steps = 2, labels = 3, seed = 1 }):free() end
    sample()
    local f0 = minor_faults()
    sample()
    local n = minor_faults() - f0
    T.ok(n < 1000, "a second DDIM sampling faults in next to no new memory", n .. " page faults")
  end
end

T.raises(function() gl.models.unet { size = 28, mults = { 1, 2, 2, 2 } } end, "size 28 does not halve evenly",
  "a size that does not halve through the levels is rejected")
T.raises(function() gl.models.unet { chanels = 1 } end, "unknown option 'chanels'", "unknown option")
T.raises(function() gl.models.unet { base = 8, heads = 3 } end, "do not split into 3 heads", "heads must divide channels")
local plain = gl.models.unet { size = 8, base = 8, mults = { 1, 2 }, groups = 2 }
T.raises(function() plain(gl.zeros { 1, 1, 8, 8 }, gl.zeros { 1 }, gl.zeros({ 1 }, { dtype = "i64" })) end,
  "labels given to a model without num_classes", "labels need a conditional model")

T.done()
