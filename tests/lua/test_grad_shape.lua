-- Finite-difference gradient checks for the differentiable shape ops:
-- views (reshape, narrow/select of dim 1) and copies alike.
local T = require "tap"
local G = require "gradcheck"
local gl = require "genlab"

gl.seed(11)
local I = G.input
local function ids(t) return gl.tensor(t, {dtype = "i64"}) end
-- Well-separated values (gaps far above the finite-difference step) so that
-- topk/sort keep their order while an element is nudged.
local function spread(rows)
  local t = gl.tensor(rows)
  return t:requires_grad_()
end

local mask = gl.tensor({{1, 0, 0, 1}, {0, 1, 0, 0}, {0, 0, 0, 1}}, {dtype = "u8"})
local cond = gl.tensor({1, 0, 1, 1}, {dtype = "u8"})

G.run(T, {
  {"reshape (a view)", function(x) return x:reshape(4, -1) end, {I{2, 3, 2}}},
  {"view then transpose", function(x) return x:view(3, 4):t() end, {I{12}}},
  {"flatten", function(x) return x:flatten(2) end, {I{2, 2, 3}}},
  {"squeeze / unsqueeze", function(x) return x:squeeze():unsqueeze(-1) end, {I{1, 3, 1}}},
  {"transpose(1, 3)", function(x) return x:transpose(1, 3) end, {I{2, 3, 4}}},
  {"t", function(x) return x:t() end, {I{3, 4}}},
  {"permute(3, 1, 2)", function(x) return x:permute(3, 1, 2) end, {I{2, 3, 4}}},
  {"narrow dim 1 (a view)", function(x) return x:narrow(1, 2, 2) end, {I{4, 3}}},
  {"narrow dim 2 (a copy)", function(x) return x:narrow(2, 2, 3) end, {I{3, 5}}},
  {"select dim 1 (a view)", function(x) return x:select(1, 2) end, {I{3, 4}}},
  {"select dim 2 (a copy)", function(x) return x:select(2, -1) end, {I{3, 4}}},
  {"t[i][j] chain", function(x) return x[2][3] end, {I{3, 4, 2}}},
  {"index with repeated ids", function(x) return x:index(2, ids{3, 0, 3, 1}) end, {I{2, 4, 2}}},
  {"cat of two along dim 2", function(a, b) return gl.cat({a, b}, 2) end, {I{2, 3}, I{2, 1}}},
  {"cat of one tensor twice", function(a) return gl.cat({a, a}) end, {I{2, 2}}},
  {"cat of six (grouped nodes)", function(a, b, c, d, e, f) return gl.cat({a, b, c, d, e, f}, 1) end,
    {I{1, 2}, I{2, 2}, I{1, 2}, I{1, 2}, I{3, 2}, I{1, 2}}},
  {"stack along dim 2", function(a, b, c) return gl.stack({a, b, c}, 2) end, {I{2, 3}, I{2, 3}, I{2, 3}}},
  {"split piece", function(x) return x:split(2, 2)[2] end, {I{2, 5}}},
  {"chunk piece", function(x) return x:chunk(2)[1] end, {I{3, 2}}},
  {"expand", function(x) return x:expand(2, 3, 4) end, {I{3, 1}}},
  {"gather dim 2, repeated ids", function(x) return x:gather(2, ids{{0, 0, 2}, {1, 3, 1}}) end, {I{2, 4}}},
  {"gather dim 1", function(x) return x:gather(1, ids{{2, 0}}) end, {I{3, 2}}},
  {"scatter_add x and src", function(x, s) return x:scatter_add(2, ids{{1, 1}, {0, 2}}, s) end, {I{2, 3}, I{2, 2}}},
  {"scatter_add src larger than ids", function(x, s) return x:scatter_add(1, ids{{1, 0}}, s) end, {I{2, 3}, I{2, 3}}},
  {"masked_fill (grad 0 where filled)", function(x) return x:masked_fill(mask, -5) end, {I{3, 4}}},
  {"masked_fill broadcast mask", function(x) return x:masked_fill(cond, 0) end, {I{2, 4}}},
  {"where a and b", function(a, b) return gl.where(mask, a, b) end, {I{3, 4}, I{3, 4}}},
  {"where broadcast a and b", function(a, b) return gl.where(cond, a, b) end, {I{3, 1}, I{4}}},
  {"where with a number", function(a) return gl.where(cond, a, 2) end, {I{2, 4}}},
  {"tril(0)", function(x) return x:tril() end, {I{2, 3, 3}}},
  {"tril(-1)", function(x) return x:tril(-1) end, {I{3, 4}}},
  {"triu(1)", function(x) return x:triu(1) end, {I{4, 3}}},
  {"clone", function(x) return x:clone() end, {I{5}}},
  {"topk largest along dim 2", function(x) return (x:topk(2, 2)) end,
    {spread{{0.5, -0.3, 0.9, 0.1}, {-0.7, 0.4, 0.2, 0.8}}}},
  {"topk smallest along dim 1", function(x) return (x:topk(2, 1, {largest = false})) end,
    {spread{{0.5, -0.3}, {0.9, 0.1}, {-0.7, 0.4}}}},
  {"sort descending", function(x) return (x:sort(-1, {descending = true})) end,
    {spread{{0.3, -0.6, 0.8, 0.0}, {0.7, 0.2, -0.4, -0.9}}}},
})

-- A view's gradient reaches the original, and accumulates with a direct use.
do
  local x = gl.ones(2, 3):requires_grad_()
  local y = x:reshape(6)
  gl.cat({y, x:flatten()}):backward(gl.arange(12):float())
  T.eq(table.concat(x.grad:tolist()[2], ","), "12.0,14.0,16.0", "gradients of a view and a copy of the same tensor add up")
end
T.done()
