-- Finite-difference checks of every differentiable input of the network ops
-- and losses (matmul, linear, norms, embedding, dropout, losses).
local T = require "tap"
local G = require "gradcheck"
local gl = require "genlab"

gl.seed(2024)
local input = G.input
local function i64(v) return gl.tensor(v, {dtype = "i64"}) end
local targets = i64{0, 4, 2, 2}
local ignored = i64{1, -100, 3, -100}
local bt_targets = i64{{0, 3, 1}, {2, 2, 0}}
local ln_x = G.input{4, 3}:detach() -- needs no gradient
local ids = i64{{1, 4, 1}, {0, 1, 3}} -- id 1 repeats: its rows add up

G.run(T, {
  -- matmul
  {"matmul [3,4] @ [4,5]", gl.matmul, {input{3, 4}, input{4, 5}}},
  {"matmul 1-D . 1-D", gl.matmul, {input{5}, input{5}}},
  {"matmul 1-D @ 2-D", gl.matmul, {input{4}, input{4, 3}}},
  {"matmul 2-D @ 1-D", gl.matmul, {input{3, 4}, input{4}}},
  {"matmul broadcast batches [2,1,3,4] @ [3,4,2]", gl.matmul, {input{2, 1, 3, 4}, input{3, 4, 2}}},
  {"matmul [B,H,T,D] @ [B,H,D,T]", gl.matmul, {input{2, 2, 3, 4}, input{2, 2, 4, 3}}},
  {"matmul [B,T,C] @ [C,N] (one GEMM)", gl.matmul, {input{2, 3, 4}, input{4, 5}}},
  {"matmul shared [M,K] @ [B,K,N]", gl.matmul, {input{3, 4}, input{2, 4, 5}}},
  {"matmul 1-D @ batched", gl.matmul, {input{4}, input{2, 4, 3}}},
  -- linear
  {"linear x, w, b", gl.linear, {input{2, 3, 4}, input{5, 4}, input{5}}},
  {"linear without bias", gl.linear, {input{3, 4}, input{2, 4}}},
  {"linear 1-D x", gl.linear, {input{4}, input{3, 4}, input{3}}},
  -- normalizations
  {"layer_norm x, w, b", function(x, w, b) return gl.layer_norm(x, w, b) end, {input{3, 6}, input{6}, input{6}}},
  {"layer_norm x only", function(x) return gl.layer_norm(x) end, {input{2, 2, 5}}},
  {"layer_norm w, b with fixed x", function(w, b) return gl.layer_norm(ln_x, w, b) end, {input{3}, input{3}}},
  {"rms_norm x, w", function(x, w) return gl.rms_norm(x, w) end, {input{3, 6}, input{6}}},
  {"rms_norm x only", function(x) return gl.rms_norm(x) end, {input{2, 7}}},
  -- embedding and dropout
  {"embedding weight (repeated ids)", function(w) return gl.embedding(w, ids) end, {input{5, 3}}},
  {"dropout p = 0.4 (reseeded, so the mask repeats)", function(x) gl.seed(7); return gl.dropout(x, 0.4, true) end,
    {input{4, 5}}},
  {"dropout eval mode", function(x) return gl.dropout(x, 0.4, false) end, {input{6}}},
  {"dropout_add p = 0.3 (reseeded): x and f",
    function(x, f) gl.seed(7); return gl.dropout_add(x, f, 0.3, true) end, {input{4, 5}, input{4, 5}}},
  {"dropout_add eval mode", function(x, f) return gl.dropout_add(x, f, 0.3, false) end, {input{6}, input{6}}},
  -- class-index losses
  {"cross_entropy mean", function(x) return gl.cross_entropy(x, targets) end, {input({4, 5}, -2, 2)}},
  {"cross_entropy sum", function(x) return gl.cross_entropy(x, targets, {reduction = "sum"}) end, {input({4, 5}, -2, 2)}},
  {"cross_entropy none", function(x) return gl.cross_entropy(x, targets, {reduction = "none"}) end, {input{4, 5}}},
  {"cross_entropy ignore_index", function(x) return gl.cross_entropy(x, ignored) end, {input({4, 5}, -2, 2)}},
  {"cross_entropy label_smoothing 0.2", function(x) return gl.cross_entropy(x, targets, {label_smoothing = 0.2}) end,
    {input({4, 5}, -2, 2)}},
  {"cross_entropy ignore_index + label_smoothing",
    function(x) return gl.cross_entropy(x, ignored, {label_smoothing = 0.1, reduction = "sum"}) end, {input{4, 5}}},
  {"cross_entropy [B,T,V]", function(x) return gl.cross_entropy(x, bt_targets) end, {input({2, 3, 4}, -2, 2)}},
  {"cross_entropy probability targets (logits and targets)",
    function(x, t) return gl.cross_entropy(x, t, {label_smoothing = 0.1}) end, {input{3, 4}, input({3, 4}, 0, 1)}},
  {"nll_loss mean with ignore_index", function(x) return gl.nll_loss(x, ignored) end, {input({4, 5}, -3, -0.1)}},
  {"nll_loss none", function(x) return gl.nll_loss(x, targets, {reduction = "none"}) end, {input({4, 5}, -3, -0.1)}},
  -- pointwise losses
  {"mse_loss input and target", gl.mse_loss, {input{3, 4}, input{3, 4}}},
  {"mse_loss none", function(x, y) return gl.mse_loss(x, y, {reduction = "none"}) end, {input{5}, input{5}}},
  {"l1_loss input and target", gl.l1_loss, {input({3, 4}, 1, 2), input({3, 4}, -1, 0)}},
  {"binary_cross_entropy input and target", gl.binary_cross_entropy, {input({6}, 0.1, 0.9), input({6}, 0, 1)}},
  {"binary_cross_entropy_with_logits", function(x, y) return gl.binary_cross_entropy_with_logits(x, y, {reduction = "sum"}) end,
    {input({2, 3}, -3, 3), input({2, 3}, 0, 1)}},
  {"kl_div input and target", gl.kl_div, {input({2, 4}, -2, -0.1), input({2, 4}, 0.1, 1)}},
  {"kl_div batchmean, log_target",
    function(x, y) return gl.kl_div(x, y, {reduction = "batchmean", log_target = true}) end,
    {input({2, 4}, -2, -0.1), input({2, 4}, -2, -0.1)}},
})

-- The checker itself must be able to fail: without reseeding, each call of
-- dropout draws a new mask, so the differences cannot match the gradient.
local worst, pass = G.compare(function(x) return gl.dropout(x, 0.5, true) end, {input{20}})
T.ok(not pass and worst > 0.1, "gradcheck catches a gradient that does not match the function", worst)

-- Gradients accumulate across backward calls and into every use of a leaf.
local w = gl.randn(4, 3):requires_grad_()
local x = gl.randn(2, 3)
gl.linear(x, w):backward(gl.ones(2, 4))
gl.linear(x, w):backward(gl.ones(2, 4))
local want = x:getflat(1) + x:getflat(4) -- dw[0,0] = sum over rows of x[:,0] per call
T.near(w.grad:getflat(1), 2 * want, 1e-5, "linear backward adds into an existing gradient")
local tied = gl.randn(5, 3):requires_grad_()
local h = gl.embedding(tied, i64{2, 2, 4})
gl.cross_entropy(gl.linear(h, tied), i64{1, 0, 3}):backward()
T.ok(tied.grad ~= nil and tied.grad:numel() == 15, "a tied weight (embedding + head) gets one summed gradient")

-- Big enough to take the parallel paths (several threads, many batches).
local big = {
  {"matmul many small batches in parallel", gl.matmul, {input{32, 3, 4}, input{32, 4, 2}}},
  {"matmul broadcast a over many batches", gl.matmul, {input{1, 3, 2}, input{24, 2, 3}}},
  {"layer_norm over many rows (block sums of dw, db)", function(x, w, b) return gl.layer_norm(x, w, b) end,
    {input{40, 8}, input{8}, input{8}}},
}
G.run(T, big)

-- The fused kernels give the same bits whatever the thread count: weight,
-- bias and embedding sums run in a fixed order. (OpenBLAS's GEMMs do not
-- promise that, so the inputs here do not pass through one.)
local function grads_with(threads)
  local saved = gl.threads()
  gl.threads(threads)
  gl.seed(99)
  local x, w, b = gl.randn(300, 200):requires_grad_(), gl.randn(200):requires_grad_(), gl.randn(200):requires_grad_()
  local emb, z = gl.randn(50, 200):requires_grad_(), gl.randn(300, 50):requires_grad_()
  local lb = gl.randn(200):requires_grad_()
  local tok = gl.randint(0, 50, {300})
  gl.layer_norm(x, w, b):backward(gl.randn(300, 200))
  gl.embedding(emb, tok):backward(gl.randn(300, 200))
  local loss = gl.cross_entropy(z, tok, {label_smoothing = 0.1})
  loss:backward()
  gl.linear(gl.zeros(300, 0), gl.zeros(200, 0), lb):backward(gl.randn(300, 200))
  gl.threads(saved)
  return {x.grad, w.grad, b.grad, emb.grad, loss, z.grad, lb.grad}
end
local g1, g2 = grads_with(1), grads_with(math.max(2, gl.threads()))
local names = {"layer_norm dx", "layer_norm dw", "layer_norm db", "embedding dweight", "cross_entropy loss",
  "cross_entropy dlogits", "linear dbias"}
for i, name in ipairs(names) do T.near(g2[i], g1[i], 0, name .. " is identical with 1 and several threads") end

T.done()
