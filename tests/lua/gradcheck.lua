-- Finite-difference gradient checks. check(T, name, fn, inputs, opts)
-- compares the gradient that backward() computes for every input that
-- requires grad against central differences of L = sum(fn(...) * R), with
-- R a fixed random tensor so that every output element matters.
local gl = require "genlab"
local G = {}

local function weighted_sum(out, R)
  local s = 0
  for i = 1, out:numel() do s = s + out:getflat(i) * R:getflat(i) end
  return s
end

-- Returns the max abs error and whether all elements passed.
function G.compare(fn, inputs, opts)
  opts = opts or {}
  local eps, atol, rtol = opts.eps or 1e-2, opts.atol or 2e-3, opts.rtol or 2e-2
  for _, x in ipairs(inputs) do if x.requires_grad then x.grad = nil end end
  local out = fn(table.unpack(inputs))
  local R = opts.weights and opts.weights(out) or gl.randn(out:shape())
  out:backward(R)
  local worst, pass = 0, true
  for _, x in ipairs(inputs) do
    if x.requires_grad then
      local analytic = x.grad
      if not analytic then return math.huge, false, "no gradient reached an input" end
      for i = 1, x:numel() do
        local v = x:getflat(i)
        local plus, minus
        gl.no_grad(function()
          x:setflat(i, v + eps); plus = weighted_sum(fn(table.unpack(inputs)), R)
          x:setflat(i, v - eps); minus = weighted_sum(fn(table.unpack(inputs)), R)
          x:setflat(i, v)
        end)
        local numeric = (plus - minus) / (2 * eps)
        local a = analytic:getflat(i)
        local err = math.abs(a - numeric)
        if err > worst then worst = err end
        if err > atol + rtol * math.abs(numeric) then pass = false end
      end
    end
  end
  return worst, pass
end

-- One TAP line per row: rows are {name, fn, inputs[, opts]}.
function G.run(T, rows)
  for _, row in ipairs(rows) do
    local name, fn, inputs, opts = row[1], row[2], row[3], row[4]
    local okay, worst, pass, why = pcall(G.compare, fn, inputs, opts)
    if not okay then
      T.ok(false, "gradcheck " .. name, worst)
    else
      T.ok(pass, ("gradcheck %s (max abs err %.2g)"):format(name, worst), why)
    end
  end
end

-- A leaf input for a check: f64-ish values away from kinks, requiring grad.
function G.input(shape, lo, hi)
  local x = gl.rand(shape)
  lo, hi = lo or -1, hi or 1
  gl.no_grad(function()
    for i = 1, x:numel() do x:setflat(i, lo + (hi - lo) * x:getflat(i)) end
  end)
  return x:requires_grad_()
end

return G
