-- The faster gradient paths of the training step: a backward whose input
-- gradient buffer is new WRITES it (no zero fill, no add), reshape and
-- add/sub hand their output gradient over to an input that has none yet,
-- and permute walks merged dims with an odometer. Each is checked where
-- the fresh/shared buffer meets a later accumulation: an input used twice,
-- x + x, x - x, slices of one tensor, a leaf over two backward calls.
local T = require "tap"
local G = require "gradcheck"
local gl = require "genlab"

gl.seed(5)
local I = G.input

G.run(T, {
  {"x + x (add hands g to a, then adds into it)", function(x) return x + x end, {I{3, 4}}},
  {"x - x (gradient 0)", function(x) return x - x end, {I{3, 4}}},
  {"(x + y) - y * 2 (same-shape add and sub)", function(x, y) return (x + y) - y * 2 end, {I{2, 5}, I{2, 5}}},
  {"reshape used twice", function(x) return x:reshape(6) * 2 + x:reshape(6):gelu() end, {I{2, 3}}},
  {"reshape of a reshape", function(x) return x:reshape(3, 2):reshape(6):tanh() end, {I{2, 3}}},
  {"gelu of x plus x (unary writes, add accumulates)", function(x) return x:gelu() + x end, {I{4, 3}}},
  {"layer_norm used twice", function(x, w, b)
     return gl.layer_norm(x, w, b) + gl.layer_norm(x, w, b):sigmoid() end, {I{3, 4}, I{4}, I{4}}},
  {"linear with its weight shared", function(x, w, b) return gl.linear(gl.linear(x, w, b), w) end,
   {I{2, 3}, I{3, 3}, I{3}}},
  {"q, k, v selects of one permute (the GPT split)", function(x)
     local p = x:reshape(2, 3, 3, 2, 2):permute(3, 1, 4, 2, 5)
     return p:select(1, 1) * p:select(1, 2) + p:select(1, 3) end, {I{2, 3, 12}}},
  {"one narrow of a copy (zeros outside the slice)", function(x) return x:narrow(2, 2, 2):exp() end, {I{3, 5}}},
  {"transpose back and forth", function(x) return x:transpose(1, 2):sin():transpose(1, 2) end, {I{3, 4}}},
})

-- A leaf whose first gradient was handed over (reshape, add) accumulates on the next backward.
local x = gl.tensor { 1, 2, 3, 4 }:requires_grad_()
for _ = 1, 2 do (x:reshape(2, 2) + gl.ones { 2, 2 }):sum():backward() end
T.ok(x.grad:getflat(1) == 2 and x.grad:getflat(4) == 2, "leaf grad accumulates over two backward calls",
  ("got %g, %g"):format(x.grad:getflat(1), x.grad:getflat(4)))
local w = gl.tensor { 1, 2 }:requires_grad_()
local y = w + w
y:sum():backward()
T.ok(w.grad:getflat(1) == 2 and w.grad:getflat(2) == 2, "w + w gives gradient 2")

-- permute against a plain index loop: dims of size 1, dims that merge, a
-- 5-D split bigger than the parallel threshold and the 64-row chunks, i64.
local function strides(shape)
  local st, s = {}, 1
  for k = #shape, 1, -1 do st[k] = s; s = s * shape[k] end
  return st
end
local function check_permute(shape, perm, dtype, name)
  local n = 1
  for _, d in ipairs(shape) do n = n * d end
  local x = dtype == "i64" and gl.arange(n, { dtype = "i64" }):reshape(shape) or gl.randn(shape)
  local p = x:permute(perm)
  local pshape, sst = p:shape(), strides(shape)
  local pst = strides(pshape)
  local bad = 0
  for i = 0, n - 1 do
    local rem, src = i, 0
    for k = 1, #pshape do
      local ik = rem // pst[k]
      rem = rem % pst[k]
      src = src + ik * sst[perm[k]]
    end
    if p:getflat(i + 1) ~= x:getflat(src + 1) then bad = bad + 1 end
  end
  T.ok(bad == 0, ("permute %s: every element in place (%d wrong)"):format(name, bad))
end
check_permute({ 2, 1, 3, 1, 4 }, { 5, 2, 1, 4, 3 }, "f32", "with size-1 dims")
check_permute({ 2, 3, 4, 5 }, { 1, 3, 4, 2 }, "f32", "with dims 3,4 merging")
check_permute({ 3, 70, 3, 4, 16 }, { 3, 1, 4, 2, 5 }, "f32", "[3,70,3,4,16] -> qkv split (parallel, chunked)")
check_permute({ 4, 9, 7 }, { 3, 1, 2 }, "i64", "i64 with a strided last dim")
check_permute({ 5 }, { 1 }, "f32", "1-D identity")
T.done()
