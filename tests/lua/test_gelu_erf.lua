-- Exact GELU (x Phi(x), Phi from erf) against a double-precision reference on
-- a dense grid: the kernels use their own vectorizable erf and exp (see
-- src/ops/unary.c), which must stay within float rounding of the exact values,
-- across the switch between their two erf formulas (|x| = sqrt 2) and the
-- cut-off where erf rounds to 1 (|x| = 4 sqrt 2), for the value and the gradient.
local T = require "tap"
local gl = require "genlab"

-- erf(a) = 2/sqrt(pi) e^(-a^2) sum_n 2^n a^(2n+1) / (1*3*...*(2n+1)): all terms
-- positive, so no cancellation anywhere (double precision, ~1e-15).
local function erf(a)
  if a < 0 then return -erf(-a) end
  local term, s, n = a, a, 0
  repeat
    n = n + 1
    term = term * 2 * a * a / (2 * n + 1)
    s = s + term
  until term <= s * 1e-17
  return 2 / math.sqrt(math.pi) * math.exp(-a * a) * s
end

local xs = {}
for i = -2560, 2560 do xs[#xs + 1] = i / 256 end -- -10 .. 10, exact in f32
for _, c in ipairs { math.sqrt(2), 4 * math.sqrt(2) } do -- the seams, and floats around them
  for k = -20, 20 do xs[#xs + 1] = c * (1 + k * 2 ^ -22); xs[#xs + 1] = -c * (1 + k * 2 ^ -22) end
end
gl.seed(3)
local r = gl.rand { 4000 }
for i = 1, 4000 do xs[#xs + 1] = (r:getflat(i) - 0.5) * 12 end

local x = gl.tensor(xs):requires_grad_()
local y = gl.gelu(x)
y:sum():backward()
local g = x.grad

local worst_y, worst_g, at_y, at_g = 0, 0, 0, 0
for i = 1, #xs do
  local v = x:getflat(i) -- the f32 value the kernel saw
  local phi = 0.5 * (1 + erf(v / math.sqrt(2)))
  local want_y, want_g = v * phi, phi + v * math.exp(-0.5 * v * v) / math.sqrt(2 * math.pi)
  local scale = math.max(1, math.abs(v))
  local ey = math.abs(y:getflat(i) - want_y) / scale
  local eg = math.abs(g:getflat(i) - want_g) / scale
  if ey > worst_y then worst_y, at_y = ey, v end
  if eg > worst_g then worst_g, at_g = eg, v end
end
-- float rounding of 0.5 x (1 + erf) alone reaches ~1.3e-7 |x|; a 1e-6 erf would not pass
T.ok(worst_y <= 1.5e-7, ("gelu within 1.5e-7 * max(1,|x|) of exact on %d points (worst %.3g at x = %.9g)")
  :format(#xs, worst_y, at_y))
T.ok(worst_g <= 1.5e-7, ("gelu gradient within 1.5e-7 * max(1,|x|) of Phi(x) + x phi(x) (worst %.3g at x = %.9g)")
  :format(worst_g, at_g))

-- Special values as PyTorch: gelu(-inf) = 0 * -inf = nan, gelu'(+-inf) = nan.
local inf = math.huge
local s = gl.tensor { 0, -0.0, inf, -inf, 0 / 0, 50, -50, 1e-30 }:requires_grad_()
local sy = gl.gelu(s)
sy:sum():backward()
local function is_nan(v) return v ~= v end
T.ok(sy:getflat(1) == 0 and sy:getflat(3) == inf and is_nan(sy:getflat(4)) and is_nan(sy:getflat(5)),
  "gelu(0) = 0, gelu(inf) = inf, gelu(-inf) and gelu(nan) are nan")
T.ok(sy:getflat(6) == 50 and sy:getflat(7) == 0 and math.abs(sy:getflat(8) - 5e-31) < 1e-37,
  "gelu(50) = 50, gelu(-50) = 0, gelu(1e-30) = 5e-31")
local sg = s.grad
T.ok(sg:getflat(1) == 0.5 and sg:getflat(6) == 1 and sg:getflat(7) == 0 and is_nan(sg:getflat(3))
  and is_nan(sg:getflat(4)) and is_nan(sg:getflat(5)), "gelu'(0) = 0.5, gelu'(50) = 1, gelu'(-50) = 0, nan at +-inf")
T.done()
