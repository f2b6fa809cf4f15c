-- Tensor life cycle, constructors, properties, printing and indexing.
local T = require "tap"
local gl = require "genlab"

gl.seed(1)
local z = gl.zeros(2, 3)
T.eq(z:numel(), 6, "zeros(2, 3) has 6 elements")
T.eq(table.concat(z:shape(), ","), "2,3", "shape() is a table of sizes")
T.eq(gl.ones{4}:dtype(), "f32", "f32 is the default dtype")
T.eq(gl.zeros({2}, {dtype = "i64"}):dtype(), "i64", "dtype option")
T.raises(function() gl.zeros({2}, {dtpye = "i64"}) end, "unknown option 'dtpye'", "unknown options are rejected")
T.raises(function() gl.zeros({2}, {dtype = "f16"}) end, "unknown dtype 'f16'", "unknown dtype names the dtype")
local t = gl.tensor{{1, 2, 3}, {4, 5, 6}}
T.eq(t[2][3], 6, "t[i][j] indexes 1-based")
T.eq(t[-1][1], 4, "negative positions count from the end")
T.eq(#t, 2, "# is the size of the first dim")
T.raises(function() return t[3] end, "out of range for dim 1", "out-of-range index raises")
T.raises(function() gl.tensor{{1, 2}, {3}} end, "ragged", "ragged nested tables are rejected")
T.eq(t:tolist()[2][1], 4, "tolist round-trips")
t[1] = 0
T.eq(t[1][2], 0, "t[i] = number fills a slice")
t[2] = gl.tensor{7, 8, 9}
T.eq(t[2][1], 7, "t[i] = tensor copies into a slice")
T.eq(gl.tensor(3.5):item(), 3.5, "0-dim tensor item()")
T.raises(function() t:item() end, "has 6 elements, expected 1", "item() of many elements raises")
T.eq(gl.arange(5):dtype(), "i64", "arange of integers is i64")
T.eq(gl.arange(0, 1, 0.25):numel(), 4, "arange with a float step")
T.eq(gl.linspace(0, 1, 5):getflat(5), 1, "linspace ends at stop")
T.eq(gl.eye(3):getflat(5), 1, "eye has ones on the diagonal")
local r = gl.randint(0, 10, {1000})
local lo, hi = math.huge, -math.huge
for i = 1, r:numel() do lo = math.min(lo, r:getflat(i)); hi = math.max(hi, r:getflat(i)) end
T.ok(lo == 0 and hi == 9, "randint covers [low, high)")
T.eq(gl.tensor{1.7, -1.7}:long():getflat(2), -1, "float to i64 truncates toward zero")

gl.seed(7); local a = gl.randn(5)
gl.seed(7); local b = gl.randn(5)
T.eq(a:getflat(3), b:getflat(3), "same seed gives the same numbers")

local s = tostring(gl.tensor{{1.5, 2}, {3, 4}})
T.ok(s:find("tensor%(%[%[1%.5000, 2%.0000%],") and s:find("shape=%[2,2%], dtype=f32"), "prints like PyTorch", s)
local big = tostring(gl.zeros(100, 100))
T.ok(big:find("...", 1, true) and #big < 2000, "large tensors print summarized")

local f = gl.ones(3)
f:free()
T.raises(function() return f:numel() end, "attempt to use a freed tensor", "use after free raises")
f:free()
T.ok(true, "free is idempotent")
do
  local c <close> = gl.ones(10)
  T.eq(c:numel(), 10, "to-be-closed tensors work")
end
T.eq(gl.is_tensor(gl.ones(1)), true, "is_tensor")
T.raises(function() gl.ones(1):backward() end, "does not require grad", "backward without grad raises")

local w = gl.tensor({2, 3}, {requires_grad = true})
T.ok(w.requires_grad, "requires_grad option")
T.raises(function() gl.tensor({1}, {dtype = "i64", requires_grad = true}) end, "only f32", "int tensors cannot require grad")

-- The graph is freed by backward unless retained; a second pass says so.
local p = gl.tensor({1, 2, 3}, {requires_grad = true})
local loss = (p * p):sum()
loss:backward({retain_graph = true})
loss:backward()
T.eq(p.grad:getflat(2), 8, "retain_graph lets backward run twice and gradients accumulate")
T.raises(function() loss:backward() end, "already freed", "a third backward on a freed graph raises")
p.grad = nil
T.eq(p.grad, nil, "t.grad = nil drops the gradient")
T.raises(function() p:fill_(0) end, "fill_: in-place change of a tensor that requires grad", "in-place ops refuse tracked tensors")
T.raises(function() p:setflat(1, 0) end, "setflat: in-place change", "setflat refuses tracked tensors")
gl.no_grad(function() p:copy_(gl.zeros(3)) end)
T.eq(p:getflat(2), 0, "in-place writes work inside no_grad")
T.raises(function() gl.full(2, 2, 7) end, "shape must be a table", "full takes its shape as a table")
T.raises(function() gl.randn({2}, {dtype = "i64"}) end, "unknown option 'dtype'", "randn draws f32 only")
T.raises(function() gl.arange(3, {foo = 1}) end, "unknown option 'foo'", "arange checks its options")
T.eq(gl.randint(0, 5, {3}, {dtype = "i32"}):dtype(), "i32", "randint takes a dtype")
T.done()
