-- max_pool2d, avg_pool2d and upsample: PyTorch fixtures (tests/fixtures/conv.safetensors,
-- made by make_conv_fixtures.py, which names each case's options), finite-difference
-- gradient checks, the MaxPool2d / AvgPool2d / Upsample modules and the error messages.
-- Sizes are numbers or {h, w}, as in torch (h first).
local T = require "tap"
local G = require "gradcheck"
local gl = require "genlab"

gl.seed(12)
local F = gl.load("../fixtures/conv.safetensors")

local function shape_str(t) return "[" .. table.concat(t:shape(), ",") .. "]" end

local near = T.near_tensor

-- The fixture's input x through fn, output and gradient compared to 1e-4.
local function golden(name, fn)
  local x = F[name .. ".x"]:requires_grad_(true)
  x.grad = nil
  local okay, out = pcall(fn, x)
  if not okay then return T.ok(false, name .. " runs", out) end
  near(out, F[name .. ".out"], 1e-4, name .. " output")
  out:backward(F[name .. ".R"])
  near(x.grad, F[name .. ".grad.x"], 1e-4, name .. " grad x")
end

golden("maxpool_k3s2p1", function(x) return gl.max_pool2d(x, 3, {stride = 2, padding = 1}) end)
golden("maxpool_k2", function(x) return gl.max_pool2d(x, 2) end)
golden("maxpool_rect", function(x) return x:max_pool2d({2, 3}, {stride = {1, 2}, padding = {1, 1}}) end)
golden("avgpool_k3s2p1", function(x) return gl.avg_pool2d(x, 3, {stride = 2, padding = 1}) end)
golden("avgpool_k2", function(x) return gl.avg_pool2d(x, 2) end)
golden("up_nearest2", function(x) return gl.upsample(x, {scale = 2}) end)
golden("up_nearest_size", function(x) return gl.upsample(x, {size = {7, 5}, mode = "nearest"}) end)
golden("up_bilinear2", function(x) return gl.upsample(x, {scale = 2, mode = "bilinear"}) end)
golden("up_bilinear_ac", function(x) return x:upsample({size = {7, 9}, mode = "bilinear", align_corners = true}) end)
golden("up_bilinear15", function(x) return gl.upsample(x, {scale = 1.5, mode = "bilinear"}) end)

-- Negative control: align_corners changes bilinear results, and the fixture sees it.
do
  local x = F["up_bilinear_ac.x"]:detach()
  local y = gl.upsample(x, {size = {7, 9}, mode = "bilinear"})
  local want, worst = F["up_bilinear_ac.out"], 0
  for i = 1, y:numel() do worst = math.max(worst, math.abs(y:getflat(i) - want:getflat(i))) end
  T.ok(worst > 0.05,
    ("negative control: align_corners=false differs from the align_corners fixture (%.3g)"):format(worst))
end

-- Max pooling needs inputs without near ties (finite differences of 1e-2
-- must not change the argmax): a shuffled ramp with steps of 0.05.
local function distinct(shape)
  local x = gl.zeros(shape)
  local n, keys, order = x:numel(), gl.rand{x:numel()}, {}
  for i = 1, n do order[i] = i end
  table.sort(order, function(a, b) return keys:getflat(a) < keys:getflat(b) end)
  gl.no_grad(function()
    for rank, i in ipairs(order) do x:setflat(i, (rank - n / 2) * 0.05) end
  end)
  return x:requires_grad_()
end

local input = G.input
G.run(T, {
  {"max_pool2d k 3, stride 2, padding 1, odd 7x5",
    function(x) return gl.max_pool2d(x, 3, {stride = 2, padding = 1}) end,
    {distinct{2, 2, 7, 5}}},
  {"max_pool2d k 2 (overlapping windows: stride 1)", function(x) return gl.max_pool2d(x, 2, {stride = 1}) end,
    {distinct{1, 2, 4, 5}}},
  {"max_pool2d k {3,2}, stride {2,1}", function(x) return gl.max_pool2d(x, {3, 2}, {stride = {2, 1}}) end,
    {distinct{1, 3, 7, 4}}},
  {"avg_pool2d k 3, stride 2, padding 1", function(x) return gl.avg_pool2d(x, 3, {stride = 2, padding = 1}) end,
    {input{2, 2, 7, 5}}},
  {"avg_pool2d k 2, odd 5x5", function(x) return gl.avg_pool2d(x, 2) end, {input{1, 3, 5, 5}}},
  {"upsample nearest scale 2", function(x) return gl.upsample(x, {scale = 2}) end, {input{2, 2, 3, 3}}},
  {"upsample nearest size {5,7}", function(x) return gl.upsample(x, {size = {5, 7}}) end, {input{1, 2, 3, 4}}},
  {"upsample bilinear scale 2", function(x) return gl.upsample(x, {scale = 2, mode = "bilinear"}) end,
    {input{2, 2, 3, 4}}},
  {"upsample bilinear align_corners size {5,6}",
    function(x) return gl.upsample(x, {size = {5, 6}, mode = "bilinear", align_corners = true}) end,
    {input{1, 2, 3, 4}}},
  {"upsample bilinear downscale size {2,3}",
    function(x) return gl.upsample(x, {size = {2, 3}, mode = "bilinear"}) end, {input{1, 1, 5, 5}}},
})

-- Ties: the gradient goes to the first maximum of the window only, as torch.
do
  local x = gl.ones{1, 1, 2, 2}:requires_grad_()
  gl.max_pool2d(x, 2):sum():backward()
  T.eq(("%g,%g,%g,%g"):format(x.grad:getflat(1), x.grad:getflat(2), x.grad:getflat(3), x.grad:getflat(4)), "1,0,0,0",
    "max_pool2d tie: gradient to the first maximum")
end

-- Modules.
do
  local mp = gl.nn.MaxPool2d(2)
  local x = gl.randn{2, 3, 8, 7}
  T.eq(shape_str(mp(x)), "[2,3,4,3]", "MaxPool2d(2): stride defaults to the kernel")
  T.near(mp(x), gl.max_pool2d(x, 2), 0, "MaxPool2d module == gl.max_pool2d")
  T.eq(#mp:parameters(), 0, "MaxPool2d has no parameters")
  local ap = gl.nn.AvgPool2d(3, {stride = 2, padding = 1})
  T.near(ap(x), gl.avg_pool2d(x, 3, {stride = 2, padding = 1}), 0, "AvgPool2d module == gl.avg_pool2d")
  T.eq(tostring(ap):match("^[^\n]*"), "AvgPool2d(kernel_size=3, stride=2, padding=1)", "AvgPool2d repr")
  local up = gl.nn.Upsample{scale = 2, mode = "bilinear"}
  T.near(up(x), gl.upsample(x, {scale = 2, mode = "bilinear"}), 0, "Upsample module == gl.upsample")
  T.eq(shape_str(gl.nn.Upsample{size = {5, 9}}(x)), "[2,3,5,9]", "Upsample{size = {5, 9}}")
  T.eq(tostring(up):match("^[^\n]*"), "Upsample(scale_factor=2, mode=bilinear)", "Upsample repr")
  T.eq(shape_str(gl.nn.Upsample()(x)), "[2,3,16,14]", "Upsample() defaults to scale 2, nearest")
end

-- Errors.
local x = gl.randn{2, 3, 4, 4}
T.raises(function() gl.max_pool2d(gl.randn{3, 4, 4}, 2) end, "max_pool2d: input must be 4-D [N,C,H,W], got [3,4,4]",
  "error: 3-D input")
T.raises(function() gl.max_pool2d(x, 3, {padding = 2}) end,
  "max_pool2d: need kernel >= 1, stride >= 1 and 0 <= padding <= kernel / 2", "error: padding over half the kernel")
T.raises(function() gl.avg_pool2d(x, 6, {padding = 0}) end,
  "avg_pool2d: kernel 6x6 is larger than the padded input 4x4 (input [2,3,4,4])", "error: kernel too large")
T.raises(function() gl.avg_pool2d(x, 2, {strides = 1}) end, "avg_pool2d: unknown option 'strides'",
  "error: unknown option")
T.raises(function() gl.upsample(x, {scale = 2, size = {8, 8}}) end, "upsample: give either 'scale' or 'size', not both",
  "error: scale and size")
T.raises(function() gl.upsample(x, {mode = "bicubic"}) end,
  "upsample: unknown mode 'bicubic' (use nearest or bilinear)",
  "error: unknown mode")
T.raises(function() gl.upsample(x, {align_corners = true}) end,
  "upsample: align_corners applies to mode bilinear only, not nearest", "error: align_corners with nearest")
T.raises(function() gl.upsample(x, {scale = 0.1}) end, "upsample: input [2,3,4,4] gives an empty output 0x0",
  "error: empty output")
T.raises(function() gl.nn.MaxPool2d(2, {stride = 0}) end, "MaxPool2d: need kernel >= 1, stride >= 1",
  "error: MaxPool2d stride 0")

T.done()
