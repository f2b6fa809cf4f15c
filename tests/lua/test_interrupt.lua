-- gl.interrupt(): what Ctrl-C does to C kernels. The next op that polls
-- raises "<op>: interrupted"; the interrupt is then spent.
local T = require "tap"
local gl = require "genlab"

local a = gl.tensor{{1, 2}, {3, 4}}
local b = gl.tensor{{5, 6}, {7, 8}}

gl.interrupt()
T.raises(function() return gl.matmul(a, b) end, "matmul: interrupted", "a pending interrupt makes the next op raise, naming it")
local c = gl.matmul(a, b)
T.eq(c[2][1], 43, "the op after the interrupted one runs (matmul [2][1] = 43)")
T.eq(a[1][2], 2, "the interrupted op left its input untouched")

gl.interrupt()
gl.interrupt()
T.raises(function() return gl.exp(a) end, "interrupted", "two requests before an op are one interrupt (exp raises)")
T.near(gl.exp(a)[1][1], math.exp(1), 1e-6, "and the op after it runs (exp)")

-- Lua code between the request and the op does not spend it: only an op does.
gl.interrupt()
local s = 0
for i = 1, 1000 do s = s + i end
T.eq(s, 500500, "plain Lua runs while an interrupt is pending")
local ok, msg = pcall(gl.matmul, a, b)
T.ok(not ok and tostring(msg):find("interrupted", 1, true), "the pending interrupt still stops the next op", msg)

-- backward polls too: interrupted in matmul's backward, nothing reaches w.grad.
local w = gl.tensor{{0.5, -1}, {2, 0.25}}
w:requires_grad_()
local loss = gl.matmul(a, w):sum()
gl.interrupt()
T.raises(function() loss:backward() end, "matmul backward: interrupted", "backward raises at the interrupted node")
T.ok(w.grad == nil, "an interrupted backward adds no gradient to the leaf")

T.done()
