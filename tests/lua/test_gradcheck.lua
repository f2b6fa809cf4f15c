-- The gradient checker checks itself: a Lua Function with a correct backward
-- passes, the same function with a deliberately wrong backward must fail.
local T = require "tap"
local G = require "gradcheck"
local gl = require "genlab"

-- Elementwise through getflat/setflat so this test needs no other op.
local function map(x, f)
  local y = gl.zeros(x:shape())
  for i = 1, x:numel() do y:setflat(i, f(x:getflat(i), i)) end
  return y
end

local function cube_with(backward_factor)
  return gl.Function{
    forward = function(ctx, x) ctx.x = x; return map(x, function(v) return v * v * v end) end,
    backward = function(ctx, g)
      return map(g, function(gv, i) local v = ctx.x:getflat(i); return gv * backward_factor * v * v end)
    end,
  }
end

gl.seed(3)
local right, wrong = cube_with(3), cube_with(2) -- d/dx x^3 = 3x^2; 2x^2 is the planted bug
local x = G.input({3, 4}, -1.5, 1.5)
local worst, pass = G.compare(function(t) return right(t) end, {x})
T.ok(pass, ("correct backward passes (max abs err %.2g)"):format(worst))
worst, pass = G.compare(function(t) return wrong(t) end, {x})
T.ok(not pass, ("wrong backward is caught (max abs err %.2g)"):format(worst))

-- Functions compose with the tape: gradients flow through them into leaves.
local y = right(x)
T.eq(y:grad_fn(), "Function", "a Function output records a node")
x.grad = nil
y:backward(gl.ones(3, 4))
T.near(x.grad:getflat(5), 3 * x:getflat(5) ^ 2, 1e-5, "gradient reaches the leaf")

local bad = gl.Function{
  forward = function(ctx, t) return t end,
  backward = function(ctx, g) return gl.zeros(2) end,
}
local z = bad(x)
T.raises(function() z:backward(gl.ones(3, 4)) end, "gradient 1 must be an f32 tensor of shape [3,4]",
  "a gradient of the wrong shape is an error")
T.raises(function() gl.Function{forward = print} end, "must be functions", "Function needs both functions")
T.raises(function() gl.Function{forward = print, backward = print, other = 1} end, "unknown option 'other'",
  "Function rejects unknown keys")
T.done()
