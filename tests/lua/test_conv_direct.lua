-- conv2d's path without a column matrix (src/ops/conv.c, direct_conv: used
-- with AVX2 + FMA) against plain loops, over the geometries its padded layout
-- must get right (padding wider than the kernel reaches, rectangular kernels,
-- dilation, groups, output channels not a multiple of 4, grids of 1 to 3
-- vectors, strides through phase planes, one a phase no tap reads); its dx and dw
-- (direct_dw, from 256 grid positions) against finite differences; and the
-- bias per sample [N, O]. (test_conv.lua checks one sample split among
-- threads with the other thread-independence cases.)
local T = require "tap"
local G = require "gradcheck"
local gl = require "genlab"

gl.seed(5)

-- y[n][o][oh][ow] = b + sum over c, ki, kj of w x, as the definition reads.
local function reference(x, w, b, o)
  local N, C, H, W = table.unpack(x:shape())
  local O, Cg, kh, kw = table.unpack(w:shape())
  local ph, pw, dh, dw, groups = o.ph or 0, o.pw or 0, o.dh or 1, o.dw or 1, o.groups or 1
  local sh, sw = o.sh or 1, o.sw or 1
  local OH, OW = (H + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (W + 2 * pw - dw * (kw - 1) - 1) // sw + 1
  local Og = O // groups
  local X, Wt, B = x:tolist(), w:tolist(), b and b:tolist()
  local y = {}
  for n = 1, N do
    for oc = 1, O do
      local g = (oc - 1) // Og
      for oh = 1, OH do
        for ow = 1, OW do
          local s = B and (b:dim() == 2 and B[n][oc] or B[oc]) or 0
          for c = 1, Cg do
            for ki = 1, kh do
              for kj = 1, kw do
                local ih, iw = (oh - 1) * sh + (ki - 1) * dh - ph, (ow - 1) * sw + (kj - 1) * dw - pw
                if ih >= 0 and ih < H and iw >= 0 and iw < W then
                  s = s + Wt[oc][c][ki][kj] * X[n][g * Cg + c][ih + 1][iw + 1]
                end
              end
            end
          end
          y[#y + 1] = s
        end
      end
    end
  end
  return gl.tensor(y):reshape { N, O, OH, OW }
end

local cases = {
  { "3x3 padding 1, 7x7 (3 grid vectors)", { 2, 3, 7, 7 }, { 8, 3, 3, 3 }, { ph = 1, pw = 1 } },
  { "3x3 padding 1, 28x28, C 1 (the UNet's first layer)", { 2, 1, 28, 28 }, { 4, 1, 3, 3 }, { ph = 1, pw = 1 } },
  { "3x3 padding 1, O 1 (zero rows in the last block)", { 2, 5, 6, 9 }, { 1, 5, 3, 3 }, { ph = 1, pw = 1 } },
  { "3x3 padding 0, O 6", { 3, 4, 8, 5 }, { 6, 4, 3, 3 }, {} },
  { "3x5 padding {2,1}, dilation {1,2}", { 2, 4, 10, 11 }, { 9, 4, 3, 5 }, { ph = 2, pw = 1, dw = 2 } },
  { "2x2 padding 3 (wider than the kernel reaches)", { 2, 3, 5, 6 }, { 3, 3, 2, 2 }, { ph = 3, pw = 3 } },
  { "5x1 padding {2,0}, 13x3", { 3, 7, 13, 3 }, { 5, 7, 5, 1 }, { ph = 2 } },
  { "3x3 groups 2, padding 1, 7x9", { 2, 6, 7, 9 }, { 6, 3, 3, 3 }, { ph = 1, pw = 1, groups = 2 } },
  { "3x3 dilation 2, padding 1", { 2, 3, 6, 6 }, { 2, 3, 3, 3 }, { ph = 1, pw = 1, dh = 2, dw = 2 } },
  { "3x3 stride 2 padding 1, 28x28 (the UNet's downsampling)", { 2, 5, 28, 28 }, { 6, 5, 3, 3 },
    { ph = 1, pw = 1, sh = 2, sw = 2 } },
  { "3x3 stride 2 padding 1, 7x7", { 2, 4, 7, 7 }, { 4, 4, 3, 3 }, { ph = 1, pw = 1, sh = 2, sw = 2 } },
  { "4x4 stride 2 padding 1 (DCGAN's), 9x10", { 2, 3, 9, 10 }, { 5, 3, 4, 4 }, { ph = 1, pw = 1, sh = 2, sw = 2 } },
  { "3x3 stride {2,3}, dilation 2, padding {2,0}", { 2, 3, 13, 16 }, { 3, 3, 3, 3 }, { ph = 2, sh = 2, sw = 3, dh = 2, dw = 2 } },
  { "2x2 stride 3 (a phase no tap reads)", { 1, 2, 8, 9 }, { 3, 2, 2, 2 }, { sh = 3, sw = 3 } },
  { "1x1 stride 2, groups 2", { 2, 4, 7, 6 }, { 4, 2, 1, 1 }, { sh = 2, sw = 2, groups = 2 } },
}

local function opts(o)
  return { padding = { o.ph or 0, o.pw or 0 }, dilation = { o.dh or 1, o.dw or 1 }, groups = o.groups or 1,
    stride = { o.sh or 1, o.sw or 1 } }
end

for _, threads in ipairs { 1, gl.threads() } do
  local saved = gl.threads()
  gl.threads(threads)
  for _, c in ipairs(cases) do
    local x, w, b = gl.randn(c[2]), gl.randn(c[3]), gl.randn { c[3][1] }
    local y = gl.conv2d(x, w, b, opts(c[4]))
    T.near_tensor(y, reference(x, w, b, c[4]), 1e-4, ("%s, %d thread%s"):format(c[1], threads, threads > 1 and "s" or ""))
  end
  gl.threads(saved)
end

-- A bias per sample and channel: the same as adding it after the convolution.
local x, w = gl.randn { 3, 4, 6, 5 }, gl.randn { 6, 4, 3, 3 }
local bs = gl.randn { 3, 6 }
T.near_tensor(gl.conv2d(x, w, bs, { padding = 1 }), gl.conv2d(x, w, nil, { padding = 1 }) + bs:reshape { 3, 6, 1, 1 },
              1e-5, "bias [N, O]: a bias per sample")
T.near_tensor(gl.conv2d(x, w, bs, { stride = 2 }), gl.conv2d(x, w, nil, { stride = 2 }) + bs:reshape { 3, 6, 1, 1 },
              1e-5, "bias [N, O] with stride 2")
T.raises(function() gl.conv2d(x, w, gl.randn { 2, 6 }) end, "bias [2,6] does not match the 6 output channels",
         "error: bias [N, O] with another N")

local input = G.input
G.run(T, {
  { "direct conv2d 3x3 padding 1, 7x7, O 5", function(x, w, b) return gl.conv2d(x, w, b, { padding = 1 }) end,
    { input { 2, 3, 7, 7 }, input { 5, 3, 3, 3 }, input { 5 } } },
  { "direct conv2d 3x2 padding {2,1}, dilation {2,1}",
    function(x, w) return gl.conv2d(x, w, nil, { padding = { 2, 1 }, dilation = { 2, 1 } }) end,
    { input { 2, 2, 5, 4 }, input { 3, 2, 3, 2 } } },
  -- dw takes direct_dw from 256 grid positions on (x needs no grad here)
  { "direct dw 3x3 padding 1, 16x17, O 5", function(x, w, b) return gl.conv2d(x, w, b, { padding = 1 }) end,
    { gl.randn { 2, 3, 16, 17 }, input { 5, 3, 3, 3 }, input { 5 } } },
  { "direct dw 3x5 padding {2,1}, dilation {1,2}, 15x20, groups 2",
    function(x, w) return gl.conv2d(x, w, nil, { padding = { 2, 1 }, dilation = { 1, 2 }, groups = 2 }) end,
    { gl.randn { 2, 4, 15, 20 }, input { 6, 2, 3, 5 } } },
  { "direct dw 2x2 padding 3 (4 taps), 20x18", function(x, w) return gl.conv2d(x, w, nil, { padding = 3 }) end,
    { gl.randn { 2, 2, 20, 18 }, input { 3, 2, 2, 2 } } },
  { "direct conv2d 3x3 stride 2 padding 1, 7x8", function(x, w, b) return gl.conv2d(x, w, b, { stride = 2, padding = 1 }) end,
    { input { 2, 3, 7, 8 }, input { 5, 3, 3, 3 }, input { 5 } } },
  { "conv2d bias [N, O]", function(x, w, b) return gl.conv2d(x, w, b, { padding = 1 }) end,
    { input { 2, 2, 4, 5 }, input { 3, 2, 3, 3 }, input { 2, 3 } } },
  { "conv2d bias [N, O], groups 2, stride 2",
    function(x, w, b) return gl.conv2d(x, w, b, { stride = 2, groups = 2 }) end,
    { input { 2, 4, 5, 5 }, input { 4, 2, 3, 3 }, input { 2, 4 } } },
})

T.done()
