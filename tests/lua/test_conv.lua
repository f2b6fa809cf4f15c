-- conv2d and conv_transpose2d: PyTorch fixtures (tests/fixtures/conv.safetensors,
-- made by make_conv_fixtures.py, which names each case's options), finite-
-- difference gradient checks, plain reference loops for each kernel path,
-- the Conv2d / ConvTranspose2d modules (shapes, init ranges, state-dict
-- names, repr) and the error messages.
-- Sizes are numbers or {h, w}, as in torch (h first).
local T = require "tap"
local G = require "gradcheck"
local gl = require "genlab"

gl.seed(11)
local F = gl.load("../fixtures/conv.safetensors")

local function shape_str(t) return "[" .. table.concat(t:shape(), ",") .. "]" end

local near = T.near_tensor

-- Runs fn on the fixture inputs args (grads: those whose gradient is checked),
-- backward with NAME.R, and compares output and gradients to 1e-4.
local function golden(name, args, grads, fn)
  local ins, by = {}, {}
  for i, a in ipairs(args) do
    ins[i] = F[name .. "." .. a]
    by[a] = ins[i]
  end
  for _, g in ipairs(grads) do by[g]:requires_grad_(true); by[g].grad = nil end
  local okay, out = pcall(fn, table.unpack(ins))
  if not okay then return T.ok(false, name .. " runs", out) end
  near(out, F[name .. ".out"], 1e-4, name .. " output")
  out:backward(F[name .. ".R"])
  for _, g in ipairs(grads) do near(by[g].grad, F[name .. ".grad." .. g], 1e-4, name .. " grad " .. g) end
end

-- The options are the ones make_conv_fixtures.py names for each case.
golden("conv_pad", {"x", "w", "b"}, {"x", "w", "b"}, function(x, w, b) return gl.conv2d(x, w, b, {padding = 1}) end)
golden("conv_s2", {"x", "w", "b"}, {"x", "w", "b"},
  function(x, w, b) return gl.conv2d(x, w, b, {stride = 2, padding = 1}) end)
golden("conv_dil_groups", {"x", "w", "b"}, {"x", "w", "b"},
  function(x, w, b) return gl.conv2d(x, w, b, {stride = {1, 2}, padding = {2, 1}, dilation = 2, groups = 2}) end)
golden("conv_1x1", {"x", "w"}, {"x", "w"}, function(x, w) return gl.conv2d(x, w) end)
golden("conv_rect", {"x", "w"}, {"x", "w"},
  function(x, w) return x:conv2d(w, nil, {stride = {2, 1}, padding = {0, 1}}) end)
golden("convt_s2", {"x", "w", "b"}, {"x", "w", "b"},
  function(x, w, b) return gl.conv_transpose2d(x, w, b, {stride = 2, padding = 1, output_padding = 1}) end)
golden("convt_dil_groups", {"x", "w", "b"}, {"x", "w", "b"}, function(x, w, b)
  return gl.conv_transpose2d(x, w, b, {stride = {2, 1}, padding = {1, 0}, output_padding = {1, 0}, groups = 2,
    dilation = 2})
end)
golden("convt_plain", {"x", "w"}, {"x", "w"}, function(x, w) return gl.conv_transpose2d(x, w) end)

-- Negative control: the fixture tells cross-correlation (torch's conv2d) from
-- true convolution, so a kernel flipped in both axes must not match.
do
  local x, w, b = F["conv_pad.x"]:detach(), F["conv_pad.w"]:detach(), F["conv_pad.b"]:detach()
  local flipped = gl.zeros(w:shape())
  for o = 0, 3 do for c = 0, 2 do for i = 0, 2 do for j = 0, 2 do
    flipped:setflat(((o * 3 + c) * 3 + i) * 3 + j + 1, w:getflat(((o * 3 + c) * 3 + (2 - i)) * 3 + (2 - j) + 1))
  end end end end
  local y = gl.conv2d(x, flipped, b, {padding = 1})
  local worst = 0
  for i = 1, y:numel() do worst = math.max(worst, math.abs(y:getflat(i) - F["conv_pad.out"]:getflat(i))) end
  T.ok(worst > 0.1, ("negative control: a flipped kernel differs from the fixture (max err %.3g)"):format(worst))
end

-- Finite differences (inputs in [-1, 1]).
local input = G.input
G.run(T, {
  {"conv2d padding 1, odd 5x4", function(x, w, b) return gl.conv2d(x, w, b, {padding = 1}) end,
    {input{2, 2, 5, 4}, input{3, 2, 3, 3}, input{3}}},
  {"conv2d stride 2, padding 1, kernel 4", function(x, w, b) return gl.conv2d(x, w, b, {stride = 2, padding = 1}) end,
    {input{2, 2, 7, 6}, input{3, 2, 4, 4}, input{3}}},
  {"conv2d dilation 2, padding 2", function(x, w) return gl.conv2d(x, w, nil, {dilation = 2, padding = 2}) end,
    {input{1, 2, 5, 5}, input{2, 2, 3, 3}}},
  {"conv2d groups 2, stride {2,1}", function(x, w, b) return gl.conv2d(x, w, b, {groups = 2, stride = {2, 1}}) end,
    {input{2, 4, 5, 4}, input{4, 2, 2, 3}, input{4}}},
  {"conv2d 1x1 (no im2col)", function(x, w) return gl.conv2d(x, w) end, {input{2, 3, 3, 3}, input{2, 3, 1, 1}}},
  {"conv_transpose2d stride 2, padding 1, output_padding 1",
    function(x, w, b) return gl.conv_transpose2d(x, w, b, {stride = 2, padding = 1, output_padding = 1}) end,
    {input{2, 3, 3, 4}, input{3, 2, 4, 4}, input{2}}},
  {"conv_transpose2d groups 2, dilation 2",
    function(x, w) return gl.conv_transpose2d(x, w, nil, {groups = 2, dilation = 2, padding = 1}) end,
    {input{1, 4, 3, 3}, input{4, 1, 3, 3}}},
  {"conv_transpose2d odd 3x5, stride {1,2}",
    function(x, w, b) return gl.conv_transpose2d(x, w, b, {stride = {1, 2}}) end,
    {input{2, 2, 3, 5}, input{2, 3, 2, 3}, input{3}}},
})

-- Plain loops over torch's definitions, beside the im2col / GEMM kernels: y,
-- and dx, dw for the output gradient R (flat Lua arrays, 1-based). conv2d:
-- y[n,o,oh,ow] += x[n,c,oh s - p + ki d, ...] w[o,c',ki,kj]; conv_transpose2d
-- is its adjoint: y[n,o,h s - p + ki d, ...] += x[n,c,h,w] w[c,o',ki,kj].
local function pair(v) if type(v) == "table" then return v[1], v[2] end return v, v end
local function reference(x, w, R, o, transpose)
  local N, C, H, W = table.unpack(x:shape())
  local _, wc, kh, kw = table.unpack(w:shape())
  local sh, sw = pair(o.stride or 1)
  local ph, pw = pair(o.padding or 0)
  local dh, dw = pair(o.dilation or 1)
  local G = o.groups or 1
  local y, O, OH, OW = {}, nil, nil, nil
  if transpose then
    local oph, opw = pair(o.output_padding or 0)
    O, OH, OW = wc * G, (H - 1) * sh - 2 * ph + dh * (kh - 1) + oph + 1, (W - 1) * sw - 2 * pw + dw * (kw - 1) + opw + 1
  else
    O, OH, OW = w:shape()[1], (H + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (W + 2 * pw - dw * (kw - 1) - 1) // sw + 1
  end
  local X, Wt, dx, dwt = {}, {}, {}, {}
  for i = 1, x:numel() do X[i], dx[i] = x:getflat(i), 0 end
  for i = 1, w:numel() do Wt[i], dwt[i] = w:getflat(i), 0 end
  for i = 1, N * O * OH * OW do y[i] = 0 end
  -- the small grid (conv2d's output, conv_transpose2d's input) against the big one
  local SH, SW, BH, BW = OH, OW, H, W
  if transpose then SH, SW, BH, BW = H, W, OH, OW end
  local Cg, Og = C // G, O // G
  for n = 0, N - 1 do for g = 0, G - 1 do for cl = 0, Cg - 1 do for ol = 0, Og - 1 do
    local c, oc = g * Cg + cl, g * Og + ol
    local wi = transpose and ((c * Og + ol) * kh) or ((oc * Cg + cl) * kh)
    for ki = 0, kh - 1 do for kj = 0, kw - 1 do
      local wk = (wi + ki) * kw + kj + 1
      for a = 0, SH - 1 do
        local bh = a * sh - ph + ki * dh
        if bh >= 0 and bh < BH then
          for b = 0, SW - 1 do
            local bw = b * sw - pw + kj * dw
            if bw >= 0 and bw < BW then
              local xi, yi
              if transpose then
                xi, yi = ((n * C + c) * H + a) * W + b + 1, ((n * O + oc) * OH + bh) * OW + bw + 1
              else
                xi, yi = ((n * C + c) * H + bh) * W + bw + 1, ((n * O + oc) * OH + a) * OW + b + 1
              end
              y[yi] = y[yi] + X[xi] * Wt[wk]
              local r = R:getflat(yi)
              dx[xi] = dx[xi] + r * Wt[wk]
              dwt[wk] = dwt[wk] + r * X[xi]
            end
          end
        end
      end
    end end
  end end end end
  return y, dx, dwt, { N, O, OH, OW }
end

local function max_err(t, ref)
  if t == nil then return math.huge end
  if t:numel() ~= #ref then return math.huge end
  local e = 0
  for i = 1, #ref do e = math.max(e, math.abs(t:getflat(i) - ref[i])) end
  return e
end

-- Each case takes a path of its own: the padded copy at odd sizes, stride 3,
-- dilation, groups, dx by the flipped kernel (stride 1) or by col2im (padding
-- over d (k - 1), stride 2), im2col as the identity (1x1; a kernel as large
-- as the image, in both directions), images of 1 row or column.
local ref_cases = {
  {"conv2d padding 1, 3x3 on odd 7x5", {3, 4, 7, 5}, {6, 4, 3, 3}, {padding = 1}},
  {"conv2d padding {2,1}, 5x3 kernel on 3x7", {2, 2, 3, 7}, {3, 2, 5, 3}, {padding = {2, 1}}},
  {"conv2d stride 3, padding 1", {2, 2, 8, 7}, {3, 2, 3, 3}, {stride = 3, padding = 1}},
  {"conv2d stride 2, padding 1 on odd 9x9 (dx by col2im)", {3, 3, 9, 9}, {4, 3, 3, 3}, {stride = 2, padding = 1}},
  {"conv2d groups 2, dilation {1,2}, padding {1,2} (dx by the flipped kernel)", {2, 4, 5, 6}, {4, 2, 3, 3},
    {groups = 2, dilation = {1, 2}, padding = {1, 2}}},
  {"conv2d padding 3 > k - 1 (dx by col2im at stride 1)", {2, 2, 4, 4}, {2, 2, 3, 3}, {padding = 3}},
  {"conv2d kernel as large as the image (no im2col)", {3, 3, 4, 5}, {2, 3, 4, 5}, {}},
  {"conv2d 1x1 groups 3 (no im2col)", {2, 6, 3, 4}, {3, 2, 1, 1}, {groups = 3}},
  {"conv2d 1-row image, padding {0,1}", {2, 3, 1, 9}, {2, 3, 1, 3}, {padding = {0, 1}}},
  {"conv2d 5x5 padding 2 on 9x8 (im2col rows as one copy, wrapped columns zeroed)", {2, 3, 9, 8}, {2, 3, 5, 5},
    {padding = 2}},
  {"conv2d 3x3 padding {0,1} on 6x7 (one copy, rows cut at the top and bottom)", {1, 2, 6, 7}, {3, 2, 3, 3},
    {padding = {0, 1}}},
  {"conv_transpose2d from 1x1, kernel 4 (no col2im)", {3, 5, 1, 1}, {5, 4, 4, 4}, {}, true},
  {"conv_transpose2d stride 2, padding 1, output_padding 1 on 3x5", {2, 3, 3, 5}, {3, 2, 4, 4},
    {stride = 2, padding = 1, output_padding = 1}, true},
  {"conv_transpose2d 1x1, dilation 2, output_padding 1", {2, 2, 3, 3}, {2, 3, 1, 1},
    {dilation = 2, output_padding = 1}, true},
  {"conv_transpose2d groups 2, stride {1,3}, padding {1,0}", {2, 4, 4, 3}, {4, 3, 3, 2},
    {groups = 2, stride = {1, 3}, padding = {1, 0}}, true},
}
for _, c in ipairs(ref_cases) do
  local name, xs, ws, o, transpose = table.unpack(c)
  local x, w = G.input(xs), G.input(ws)
  local op = transpose and gl.conv_transpose2d or gl.conv2d
  local okay, y = pcall(op, x, w, nil, o)
  if not okay then
    T.ok(false, name .. " runs", y)
  else
    local R = gl.randn(y:shape())
    local ry, rdx, rdw, rshape = reference(x, w, R, o, transpose)
    T.eq(shape_str(y), "[" .. table.concat(rshape, ",") .. "]", name .. ": shape")
    y:backward(R)
    local ey, ex, ew = max_err(y, ry), max_err(x.grad, rdx), max_err(w.grad, rdw)
    T.ok(math.max(ey, ex, ew) <= 1e-4,
      ("%s: y, dx, dw match the plain loops (max abs err %.2g, %.2g, %.2g)"):format(name, ey, ex, ew))
  end
end

-- Samples split across threads give the same result bit for bit as one
-- thread (dw is summed over a fixed partition of the samples): a stride-2
-- conv2d (dx by col2im), a stride-1 one (dx by the flipped kernel), a
-- conv_transpose2d from 1x1 (no col2im), 19 samples (uneven blocks), and one
-- sample, whose output blocks the threads share (a 17x16 grid: direct_dw
-- where the CPU has AVX2 and FMA).
for _, c in ipairs {
  {"conv2d stride 2", gl.conv2d, {5, 3, 6, 6}, {4, 3, 3, 3}, {padding = 1, stride = 2}},
  {"conv2d stride 1", gl.conv2d, {5, 3, 6, 6}, {4, 3, 3, 3}, {padding = 1}},
  {"conv_transpose2d from 1x1", gl.conv_transpose2d, {5, 3, 1, 1}, {3, 4, 4, 4}, {}},
  {"conv2d, 19 samples", gl.conv2d, {19, 2, 5, 5}, {3, 2, 3, 3}, {padding = 1}},
  {"conv2d, 1 sample", gl.conv2d, {1, 3, 17, 16}, {6, 3, 3, 3}, {padding = 1}},
} do
  local name, op, xs, ws, o = table.unpack(c)
  local x, w = G.input(xs), G.input(ws)
  local function run(threads)
    gl.threads(threads)
    x.grad, w.grad = nil, nil
    local y = op(x, w, nil, o)
    y:backward(gl.ones(y:shape()))
    return y:detach(), x.grad, w.grad
  end
  local before = gl.threads()
  local y1, gx1, gw1 = run(1)
  local y2, gx2, gw2 = run(2)
  gl.threads(before)
  T.near(y2, y1, 0, name .. " forward: 2 threads give exactly 1 thread's values")
  T.near(gx2, gx1, 0, name .. " grad x: 2 threads give exactly 1 thread's values")
  T.near(gw2, gw1, 0, name .. " grad w: 2 threads give exactly 1 thread's values")
end

-- Modules: parameter shapes, PyTorch init ranges, state-dict names, forward.
do
  local m = gl.nn.Conv2d(8, 16, 3, {stride = 2, padding = 1})
  local sd = m:state_dict()
  T.eq(shape_str(sd.weight), "[16,8,3,3]", "Conv2d weight [cout, cin, kh, kw]")
  T.eq(shape_str(sd.bias), "[16]", "Conv2d bias [cout]")
  local bound = 1 / math.sqrt(8 * 9) -- kaiming_uniform(a = sqrt 5): U(+-1/sqrt(fan_in))
  local wmax, bmax = sd.weight:abs():max():item(), sd.bias:abs():max():item()
  T.ok(wmax <= bound and wmax > 0.95 * bound, ("Conv2d weight fills U(+-%.4f) (max |w| %.4f)"):format(bound, wmax))
  T.ok(bmax <= bound and bmax > 0.5 * bound, ("Conv2d bias within U(+-%.4f) (max |b| %.4f)"):format(bound, bmax))
  local y = m(gl.randn{2, 8, 9, 9})
  T.eq(shape_str(y), "[2,16,5,5]", "Conv2d forward shape (stride 2, padding 1)")
  T.eq(tostring(m):match("^[^\n]*"), "Conv2d(8, 16, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1))  " ..
    "weight [16,8,3,3]  bias [16]", "Conv2d repr like torch")

  local t = gl.nn.ConvTranspose2d(16, 6, {4, 2}, {stride = 2, padding = 1, groups = 2, bias = false})
  local tsd = t:state_dict()
  T.eq(shape_str(tsd.weight), "[16,3,4,2]", "ConvTranspose2d weight [cin, cout/groups, kh, kw]")
  T.eq(tsd.bias, nil, "ConvTranspose2d bias = false: no bias entry")
  -- fan_in from weight dim 1, as torch: (cout / groups) * kh * kw = 3 * 8
  local tbound = 1 / math.sqrt(3 * 8)
  local tmax = tsd.weight:abs():max():item()
  T.ok(tmax <= tbound and tmax > 0.9 * tbound,
    ("ConvTranspose2d weight fills U(+-1/sqrt(24)) = %.4f (max %.4f)"):format(tbound, tmax))
  -- (5 - 1) * 2 - 2 + k: 10 rows (k 4), 8 columns (k 2)
  T.eq(shape_str(t(gl.randn{1, 16, 5, 5})), "[1,6,10,8]", "ConvTranspose2d output [1,6,10,8] (k {4,2}, s 2, p 1)")
  local tb = gl.nn.ConvTranspose2d(4, 6, 3)
  local tbb = 1 / math.sqrt(6 * 9)
  local tbmax = tb:state_dict().bias:abs():max():item()
  T.ok(tbmax <= tbb, ("ConvTranspose2d bias within U(+-1/sqrt(54)) (max %.4f)"):format(tbmax))

  -- A module computes what the functional op does with its parameters.
  local x = gl.randn{2, 8, 6, 6}
  T.near(m(x), gl.conv2d(x, sd.weight, sd.bias, {stride = 2, padding = 1}), 1e-6, "Conv2d module == gl.conv2d")
  -- Sequential, backward reaches the parameters.
  local seq = gl.nn.Sequential{gl.nn.Conv2d(1, 2, 3, {padding = 1}), gl.nn.ReLU(),
    gl.nn.ConvTranspose2d(2, 1, 2, {stride = 2})}
  local out = seq(gl.randn{3, 1, 4, 4})
  T.eq(shape_str(out), "[3,1,8,8]", "Sequential(Conv2d, ReLU, ConvTranspose2d) shape")
  out:sum():backward()
  local got = 0
  for _, p in ipairs(seq:parameters()) do if p.grad then got = got + 1 end end
  T.eq(got, 4, "backward reaches all 4 parameters of the Sequential")
end

-- Errors name the op and the shapes.
local x = gl.randn{2, 3, 8, 8}
T.raises(function() gl.conv2d(x, gl.randn{4, 2, 3, 3}) end,
  "conv2d: input [2,3,8,8] has 3 channels, weight [4,2,3,3] expects 2 x groups 1", "error: channel mismatch")
T.raises(function() gl.conv2d(gl.randn{3, 8, 8}, gl.randn{4, 3, 3, 3}) end,
  "conv2d: input must be 4-D [N,C,H,W], got [3,8,8]", "error: 3-D input")
T.raises(function() gl.conv2d(x, gl.randn{5, 1, 3, 3}, nil, {groups = 3}) end,
  "conv2d: groups 3 does not divide the 5 output channels of weight [5,1,3,3]", "error: groups vs out channels")
T.raises(function() gl.conv2d(gl.randn{1, 1, 2, 2}, gl.randn{1, 1, 5, 5}, nil, {padding = 1}) end,
  "conv2d: kernel 5x5 (dilation 1x1) does not fit the padded input 4x4 (input [1,1,2,2], padding 1x1)",
  "error: kernel larger than the padded input")
T.raises(function() gl.conv2d(x, gl.randn{4, 3, 3, 3}, gl.randn{3}) end,
  "conv2d: bias [3] does not match the 4 output channels of weight [4,3,3,3]", "error: bias shape")
T.raises(function() gl.conv2d(x, gl.randn{4, 3, 3, 3}, nil, {stride = 0}) end,
  "conv2d: stride and dilation must be >= 1", "error: stride 0")
T.raises(function() gl.conv2d(x, gl.randn{4, 3, 3, 3}, nil, {pad = 1}) end,
  "conv2d: unknown option 'pad'", "error: unknown option")
T.raises(function() gl.conv2d(x, gl.randn{4, 3, 3, 3}, nil, {stride = {1, 2, 3}}) end,
  "conv2d: option 'stride' must be an integer or {h, w}", "error: stride of 3 numbers")
T.raises(function() gl.conv_transpose2d(x, gl.randn{4, 3, 3, 3}) end,
  "conv_transpose2d: input [2,3,8,8] has 3 channels, weight [4,3,3,3] expects 4", "error: transpose channels")
T.raises(function() gl.conv_transpose2d(x, gl.randn{3, 2, 3, 3}, nil, {stride = 2, output_padding = 2}) end,
  "conv_transpose2d: output_padding 2x2 must be smaller than stride 2x2 or dilation 1x1", "error: output_padding")
T.raises(function() gl.nn.Conv2d(3, 4, 3, {groups = 2}) end,
  "Conv2d: groups 2 must divide in_channels 3 and out_channels 4", "error: module groups")
T.raises(function() gl.nn.Conv2d(3, 4, 3, {output_padding = 1}) end,
  "Conv2d: unknown option 'output_padding'", "error: Conv2d has no output_padding")
T.raises(function() gl.nn.Conv2d(3, 4, 3)(gl.randn{1, 2, 5, 5}) end,
  "conv2d: input [1,2,5,5] has 2 channels, weight [4,3,3,3] expects 3 x groups 1", "error: module input channels")

T.done()
