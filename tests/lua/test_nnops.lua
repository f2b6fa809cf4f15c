-- Network ops and losses against hand-computed numbers and plain Lua
-- reference loops. Ids and targets are 0-based values, as in PyTorch.
local T = require "tap"
local gl = require "genlab"

local function shape_of(t) return table.concat(t:shape(), ",") end
local function i64(v) return gl.tensor(v, {dtype = "i64"}) end

-- Reference: a[..., M, K] @ b[..., K, N] with both batch shapes already equal to bshape
-- after broadcasting (sizes 1 repeat), elementwise through getflat.
local function ref_matmul(a, b)
  local as, bs = a:shape(), b:shape()
  local M, K, N = as[#as - 1], as[#as], bs[#bs]
  local na, nb = #as - 2, #bs - 2
  local nd = math.max(na, nb)
  local bshape = {}
  for k = 1, nd do
    local da = as[k - (nd - na)] or 1
    local db = bs[k - (nd - nb)] or 1
    if k - (nd - na) < 1 then da = 1 end
    if k - (nd - nb) < 1 then db = 1 end
    bshape[k] = math.max(da, db)
  end
  local out, total = {}, 1
  for k = 1, nd do total = total * bshape[k] end
  for ob = 0, total - 1 do
    -- batch index of a and b for output batch ob
    local rem, ia, ib, sa, sb = ob, 0, 0, 1, 1
    local idx = {}
    for k = nd, 1, -1 do idx[k] = rem % bshape[k]; rem = rem // bshape[k] end
    for k = nd, 1, -1 do
      local ka, kb = k - (nd - na), k - (nd - nb)
      local da = ka >= 1 and as[ka] or 1
      local db = kb >= 1 and bs[kb] or 1
      if da > 1 then ia = ia + idx[k] * sa end
      if db > 1 then ib = ib + idx[k] * sb end
      sa = sa * da; sb = sb * db
    end
    for i = 0, M - 1 do
      for j = 0, N - 1 do
        local s = 0
        for k = 0, K - 1 do
          s = s + a:getflat(ia * M * K + i * K + k + 1) * b:getflat(ib * K * N + k * N + j + 1)
        end
        out[#out + 1] = s
      end
    end
  end
  return gl.tensor(out)
end

gl.seed(42)

-- matmul ------------------------------------------------------------------
local a = gl.tensor{{1, 2}, {3, 4}}
local b = gl.tensor{{5, 6}, {7, 8}}
T.near(gl.matmul(a, b), gl.tensor{19, 22, 43, 50}, 0, "matmul 2x2 by hand")
T.near(a:matmul(b), gl.tensor{19, 22, 43, 50}, 0, "a:matmul(b) is the same op")
local d = gl.matmul(gl.tensor{1, 2, 3}, gl.tensor{4, 5, 6})
T.ok(d:dim() == 0 and d:item() == 32, "1-D . 1-D is a 0-dim dot product (32)")
local v = gl.matmul(gl.tensor{1, 2}, gl.tensor{{1, 2, 3}, {4, 5, 6}})
T.eq(shape_of(v), "3", "1-D @ 2-D drops the promoted dim")
T.near(v, gl.tensor{9, 12, 15}, 0, "1-D @ 2-D values")
local mv = gl.matmul(gl.tensor{{1, 2, 3}, {4, 5, 6}}, gl.tensor{1, 0, -1})
T.eq(shape_of(mv), "2", "2-D @ 1-D is a matrix-vector product")
T.near(mv, gl.tensor{-2, -2}, 0, "2-D @ 1-D values")

local cases = {
  {{2, 1, 3, 4}, {5, 4, 2}, "2,5,3,2", "batch dims broadcast both ways"},
  {{2, 3, 5, 4}, {2, 3, 4, 5}, "2,3,5,5", "[B,H,T,D] @ [B,H,D,T] (attention scores)"},
  {{2, 3, 4}, {4, 6}, "2,3,6", "[B,T,C] @ [C,N] is one GEMM"},
  {{3, 4}, {2, 4, 5}, "2,3,5", "a shared by every batch of b"},
  {{1, 3, 4}, {2, 1, 4, 2}, "2,1,3,2", "size-1 batch dims on both sides"},
  {{40, 3, 4}, {40, 4, 2}, "40,3,2", "many batches run in parallel"},
}
for _, c in ipairs(cases) do
  local x, y = gl.randn(c[1]), gl.randn(c[2])
  local z = gl.matmul(x, y)
  T.eq(shape_of(z), c[3], "matmul shape: " .. c[4])
  T.near(z, ref_matmul(x, y), 1e-4, "matmul values: " .. c[4])
end
local bv = gl.matmul(gl.randn(2, 3, 4), gl.randn(4))
T.eq(shape_of(bv), "2,3", "batched @ 1-D drops the vector's dim")
local vb = gl.matmul(gl.randn(4), gl.randn(2, 4, 3))
T.eq(shape_of(vb), "2,3", "1-D @ batched drops the vector's dim")
T.eq(shape_of(gl.matmul(gl.zeros(3, 0), gl.zeros(0, 2))), "3,2", "K = 0 gives zeros of the output shape")
T.eq(gl.matmul(gl.ones(3, 0), gl.ones(0, 2)):getflat(6), 0, "K = 0 output is zero")

T.raises(function() gl.matmul(gl.zeros(12, 64), gl.zeros(32, 128)) end,
  "matmul: shapes [12,64] and [32,128] do not align (64 != 32)", "matmul misalignment names both shapes")
T.raises(function() gl.matmul(gl.zeros(2, 3, 4), gl.zeros(3, 4, 5)) end,
  "matmul: batch dims of shapes [2,3,4] and [3,4,5] cannot broadcast (2 vs 3)", "matmul batch mismatch")
T.raises(function() gl.matmul(gl.tensor(2), gl.zeros(3)) end, "at least 1 dim", "matmul of a 0-dim tensor")
T.raises(function() gl.matmul(gl.zeros({2, 2}, {dtype = "i64"}), gl.zeros(2, 2)) end, "expected f32",
  "matmul of integer tensors")

-- linear ----------------------------------------------------------------------
local x = gl.tensor{{1, 2, 3}, {4, 5, 6}}
local w = gl.tensor{{1, 0, 0}, {0, 1, 0}, {0, 0, 1}, {1, 1, 1}}
local bias = gl.tensor{0.5, -0.5, 0, 1}
T.near(gl.linear(x, w, bias), gl.tensor{1.5, 1.5, 3, 7, 4.5, 4.5, 6, 16}, 1e-6, "linear = x @ w^T + b by hand")
T.near(gl.linear(x, w), gl.tensor{1, 2, 3, 6, 4, 5, 6, 15}, 1e-6, "linear without bias")
local x3, w3, b3 = gl.randn(2, 5, 7), gl.randn(3, 7), gl.randn(3)
local y3 = gl.linear(x3, w3, b3)
T.eq(shape_of(y3), "2,5,3", "linear keeps leading dims")
local want = {}
for r = 0, 9 do
  for o = 0, 2 do
    local s = b3:getflat(o + 1)
    for i = 0, 6 do s = s + x3:getflat(r * 7 + i + 1) * w3:getflat(o * 7 + i + 1) end
    want[#want + 1] = s
  end
end
T.near(y3, gl.tensor(want), 1e-5, "linear of a 3-D input against a loop")
T.eq(shape_of(gl.linear(gl.randn(7), w3)), "3", "linear of a 1-D input")
T.raises(function() gl.linear(gl.zeros(2, 5), gl.zeros(3, 4)) end,
  "linear: x of shape [2,5] does not match weight [3,4] (last dim must be 4)", "linear feature mismatch")
T.raises(function() gl.linear(gl.zeros(2, 4), gl.zeros(3, 4), gl.zeros(4)) end,
  "linear: bias of shape [4] does not match weight [3,4] (expected [3])", "linear bias mismatch")

-- layer_norm / rms_norm -------------------------------------------------------------
local ln = gl.layer_norm(gl.tensor{1, 2, 3, 4})
local r = 1 / math.sqrt(1.25 + 1e-5)
T.near(ln, gl.tensor{-1.5 * r, -0.5 * r, 0.5 * r, 1.5 * r}, 1e-6, "layer_norm of 1,2,3,4 by hand")
local xs = gl.randn(6, 32) * 3 + 2
local n = gl.layer_norm(xs)
local worst_m, worst_v = 0, 0
for row = 0, 5 do
  local m, s2 = 0, 0
  for i = 1, 32 do m = m + n:getflat(row * 32 + i) end
  m = m / 32
  for i = 1, 32 do s2 = s2 + (n:getflat(row * 32 + i) - m) ^ 2 end
  worst_m = math.max(worst_m, math.abs(m))
  worst_v = math.max(worst_v, math.abs(s2 / 32 - 1))
end
T.ok(worst_m < 1e-5, "layer_norm rows have mean 0", worst_m)
T.ok(worst_v < 1e-3, "layer_norm rows have (population) variance 1", worst_v)
local lw, lb = gl.tensor{1, 2, 3, 4}, gl.tensor{0, 1, 0, -1}
T.near(gl.layer_norm(gl.tensor{1, 2, 3, 4}, lw, lb), gl.tensor{-1.5 * r, -1 * r + 1, 1.5 * r, 6 * r - 1}, 1e-6,
  "layer_norm applies weight and bias")
T.near(gl.layer_norm(gl.tensor{1, 2, 3, 4}, nil, nil, 0.5), gl.tensor{-1.5, -0.5, 0.5, 1.5} / math.sqrt(1.75),
  1e-6, "layer_norm eps argument")
local rr = 1 / math.sqrt(7.5 + 1e-6)
T.near(gl.rms_norm(gl.tensor{1, 2, 3, 4}, gl.tensor{1, 1, 2, 0.5}), gl.tensor{rr, 2 * rr, 6 * rr, 2 * rr}, 1e-6,
  "rms_norm: x * rsqrt(mean(x^2) + eps) * w")
T.near(gl.rms_norm(gl.tensor{{3, 4}}), gl.tensor{3, 4} / math.sqrt(12.5 + 1e-6), 1e-6, "rms_norm without weight")
T.raises(function() gl.layer_norm(gl.zeros(2, 4), gl.zeros(5)) end,
  "layer_norm: weight of shape [5] does not match the last dim of x [2,4] (expected [4])", "layer_norm weight shape")
T.raises(function() gl.rms_norm(gl.zeros(2, 4), gl.zeros(3)) end, "rms_norm: weight of shape [3]", "rms_norm weight shape")

-- embedding -----------------------------------------------------------------------
local E = gl.tensor{{0, 1}, {10, 11}, {20, 21}, {30, 31}}
local e = gl.embedding(E, i64{{3, 0, 1}, {2, 2, 0}})
T.eq(shape_of(e), "2,3,2", "embedding appends the channel dim to the ids' shape")
T.near(e, gl.tensor{30, 31, 0, 1, 10, 11, 20, 21, 20, 21, 0, 1}, 0, "embedding picks rows by 0-based id")
T.near(gl.embedding(E, gl.tensor({1, 3}, {dtype = "i32"})), gl.tensor{10, 11, 30, 31}, 0, "embedding accepts i32 ids")
T.eq(shape_of(gl.embedding(E, gl.tensor(2, {dtype = "i64"}))), "2", "embedding of a 0-dim id is one row")
T.raises(function() gl.embedding(E, i64{1, 4}) end, "embedding: id 4 (at position 2 of ids [2]) is out of range for 4 rows of weight [4,2]",
  "embedding names the bad id and V")
T.raises(function() gl.embedding(E, i64{-1}) end, "id -1", "embedding rejects negative ids")
T.raises(function() gl.embedding(E, gl.tensor{1}) end, "ids must be i64 or i32", "embedding rejects float ids")

-- dropout ---------------------------------------------------------------------------
local dx = gl.randn(100, 100)
T.near(gl.dropout(dx, 0, true), dx, 0, "dropout with p = 0 is the identity")
T.near(gl.dropout(dx, 0.5, false), dx, 0, "dropout in eval mode is the identity")
gl.seed(3); local before = gl.rand(1):item()
gl.seed(3); gl.dropout(dx, 0.5, false); local after = gl.rand(1):item()
T.eq(before, after, "eval-mode dropout draws nothing from the RNG")
local ones = gl.ones(100, 100)
local dropped, scaled_ok = 0, true
local o = gl.dropout(ones, 0.25, true)
for i = 1, o:numel() do
  local val = o:getflat(i)
  if val == 0 then dropped = dropped + 1
  elseif math.abs(val - 1 / 0.75) > 1e-6 then scaled_ok = false end
end
T.ok(scaled_ok, "kept elements are scaled by 1 / (1 - p)")
T.ok(math.abs(dropped / 10000 - 0.25) < 0.02, "about p of the elements are dropped", dropped)
gl.seed(11); local d1 = gl.dropout(dx, 0.3, true)
gl.seed(11); local d2 = gl.dropout(dx, 0.3, true)
T.near(d1, d2, 0, "the same seed gives the same mask")
local threads = gl.threads()
gl.threads(1); gl.seed(11); local d3 = gl.dropout(dx, 0.3, true)
gl.threads(math.max(2, threads)); gl.seed(11); local d4 = gl.dropout(dx, 0.3, true)
gl.threads(threads)
T.near(d3, d4, 0, "the mask does not depend on the thread count")
T.near(d3, d1, 0, "the mask does not depend on the thread count (default threads)")
T.raises(function() gl.dropout(dx, 1, true) end, "dropout: p must be in [0, 1), got 1", "dropout rejects p = 1")
T.raises(function() gl.dropout(dx, -0.1, true) end, "p must be in [0, 1)", "dropout rejects negative p")
do -- dropout_add: the residual x + dropout(f), one mask stream with dropout
  local f = gl.randn(dx:shape())
  gl.seed(11); local fused = gl.dropout_add(dx, f, 0.3, true)
  gl.seed(11); local composed = dx + gl.dropout(f, 0.3, true)
  T.near(fused, composed, 0, "dropout_add equals x + dropout(f) under the same seed")
  T.near(gl.dropout_add(dx, f, 0.3, false), dx + f, 0, "dropout_add in eval mode is x + f")
  T.raises(function() gl.dropout_add(dx, gl.zeros{3}, 0.3, true) end, "dropout_add",
    "dropout_add rejects operands of different shapes")
end

-- cross_entropy / nll_loss ------------------------------------------------------------
for _, C in ipairs{2, 10, 50257} do
  local l = gl.cross_entropy(gl.zeros(3, C), i64{0, 1, C - 1})
  T.near(l:item(), math.log(C), 1e-5, "cross_entropy of uniform logits is log(C), C = " .. C)
end
local lse = math.log(math.exp(1) + math.exp(2) + math.exp(3))
local logits = gl.tensor{{1, 2, 3}, {1, 2, 3}, {3, 2, 1}}
T.near(gl.cross_entropy(gl.tensor{1, 2, 3}, gl.tensor(2, {dtype = "i64"})):item(), lse - 3, 1e-6,
  "cross_entropy of [C] logits and a 0-dim target")
local none = gl.cross_entropy(logits, i64{2, 0, 0}, {reduction = "none"})
T.near(none, gl.tensor{lse - 3, lse - 1, lse - 3}, 1e-6, "cross_entropy reduction none per row")
T.near(gl.cross_entropy(logits, i64{2, 0, 0}, {reduction = "sum"}):item(), 3 * lse - 7, 1e-5, "reduction sum")
T.near(gl.cross_entropy(logits, i64{2, -100, 0}):item(), lse - 3, 1e-6,
  "ignore_index -100 rows are skipped and the mean is over the rest")
T.near(gl.cross_entropy(logits, i64{2, 1, 1}, {ignore_index = 1}):item(), lse - 3, 1e-6, "a custom ignore_index")
T.near(gl.cross_entropy(logits, i64{2, -100, 0}, {reduction = "none"}), gl.tensor{lse - 3, 0, lse - 3}, 1e-6,
  "ignored rows have loss 0 with reduction none")
local smooth = 0.9 * (lse - 3) + 0.1 * (lse - 2)
T.near(gl.cross_entropy(gl.tensor{{1, 2, 3}}, i64{2}, {label_smoothing = 0.1}):item(), smooth, 1e-6,
  "label smoothing 0.1 (PyTorch's formula: 0.9 nll + 0.1 mean(-logp))")
T.near(gl.cross_entropy(gl.tensor{{1, 2, 3}, {0, 0, 0}}, i64{2, -100}, {label_smoothing = 0.1}):item(), smooth, 1e-6,
  "label smoothing skips ignored rows")
local btv = gl.randn(2, 3, 5)
local btt = i64{{0, 4, 2}, {1, 1, 3}}
local flat = gl.cross_entropy(btv, btt, {reduction = "none"})
T.eq(shape_of(flat), "2,3", "[B,T,V] logits with [B,T] targets give [B,T] losses")
local rows_ok = true
for i = 0, 5 do
  local m, s = -math.huge, 0
  for c = 1, 5 do m = math.max(m, btv:getflat(i * 5 + c)) end
  for c = 1, 5 do s = s + math.exp(btv:getflat(i * 5 + c) - m) end
  local want_l = m + math.log(s) - btv:getflat(i * 5 + btt:getflat(i + 1) + 1)
  if math.abs(flat:getflat(i + 1) - want_l) > 1e-5 then rows_ok = false end
end
T.ok(rows_ok, "[B,T,V] cross_entropy rows against a Lua log-softmax")
T.near(gl.cross_entropy(gl.tensor{{1000, 0}, {-1000, 0}}, i64{1, 0}, {reduction = "none"}), gl.tensor{1000, 1000}, 1e-3,
  "cross_entropy is stable for huge logits")
T.near(gl.cross_entropy(gl.tensor{{-math.huge, 0, 0}}, i64{1}):item(), math.log(2), 1e-6,
  "a -inf (masked) logit has probability 0")
-- wide logits exercise the vectorized exp over its whole range
local W, Cw = 6, 97
local wide = gl.rand(W, Cw):requires_grad_()
gl.no_grad(function() for i = 1, wide:numel() do wide:setflat(i, 170 * wide:getflat(i) - 85) end end)
local wt = gl.randint(0, Cw, {W})
local wl = gl.cross_entropy(wide, wt, {reduction = "sum"})
wl:backward()
local want_wl, worst_p = 0, 0
for r = 0, W - 1 do
  local m, s = -math.huge, 0
  for c = 1, Cw do m = math.max(m, wide:getflat(r * Cw + c)) end
  for c = 1, Cw do s = s + math.exp(wide:getflat(r * Cw + c) - m) end
  local lse_r = m + math.log(s)
  want_wl = want_wl + lse_r - wide:getflat(r * Cw + wt:getflat(r + 1) + 1)
  for c = 1, Cw do
    local p = math.exp(wide:getflat(r * Cw + c) - lse_r) - (c - 1 == wt:getflat(r + 1) and 1 or 0)
    worst_p = math.max(worst_p, math.abs(wide.grad:getflat(r * Cw + c) - p))
  end
end
T.near(wl:item(), want_wl, 1e-4 * math.abs(want_wl), "cross_entropy of logits in [-85, 85] against Lua")
T.ok(worst_p < 1e-6, "its gradient is softmax - onehot", worst_p)
local onehot = gl.tensor{{0, 0, 1}, {1, 0, 0}}
T.near(gl.cross_entropy(gl.tensor{{1, 2, 3}, {1, 2, 3}}, onehot):item(), lse - 2, 1e-6,
  "probability targets: one-hot equals class ids")
T.near(gl.cross_entropy(gl.tensor{{1, 2, 3}}, gl.tensor{{0.5, 0.5, 0}}):item(), lse - 1.5, 1e-6,
  "probability targets: soft labels")
local logp = gl.tensor{{-1, -2, -3}, {-0.5, -1.5, -2.5}}
T.near(gl.nll_loss(logp, i64{1, 2}):item(), (2 + 2.5) / 2, 1e-6, "nll_loss = -logp[target], mean")
T.near(gl.nll_loss(logp, i64{1, -100}, {reduction = "sum"}):item(), 2, 1e-6, "nll_loss sum with ignore_index")
T.raises(function() gl.cross_entropy(logits, i64{0, 3, 1}) end,
  "cross_entropy: target 3 (at position 2) is out of range for 3 classes", "out-of-range target")
T.raises(function() gl.cross_entropy(logits, i64{0, 1}) end,
  "cross_entropy: targets of shape [2] do not match input [3,3] (expected [3])", "target shape mismatch")
T.raises(function() gl.cross_entropy(logits, i64{0, 1, 2}, {ignore = 1}) end, "cross_entropy: unknown option 'ignore'",
  "unknown option keys are errors")
T.raises(function() gl.cross_entropy(logits, i64{0, 1, 2}, {reduction = "avg"}) end,
  "cross_entropy: unknown reduction 'avg' (use mean, sum, none)", "unknown reduction names are errors")
T.raises(function() gl.cross_entropy(logits, i64{0, 1, 2}, {label_smoothing = 1.5}) end, "label_smoothing must be in [0, 1]",
  "label_smoothing range")
T.raises(function() gl.nll_loss(logp, gl.tensor{1, 2}) end, "targets must be i64 or i32 class ids, got f32",
  "nll_loss wants class ids")

-- pointwise losses ----------------------------------------------------------------
local p3, q3 = gl.tensor{1, 2, 3}, gl.tensor{1, 1, 1}
T.near(gl.mse_loss(p3, q3):item(), 5 / 3, 1e-6, "mse_loss mean")
T.near(gl.mse_loss(p3, q3, {reduction = "sum"}):item(), 5, 1e-6, "mse_loss sum")
T.near(gl.mse_loss(p3, q3, {reduction = "none"}), gl.tensor{0, 1, 4}, 0, "mse_loss none")
T.near(gl.l1_loss(p3, gl.tensor{2, 2, 0}):item(), 4 / 3, 1e-6, "l1_loss mean")
T.near(gl.binary_cross_entropy(gl.tensor{0.5, 0.9}, gl.tensor{1, 0}):item(), (math.log(2) + math.log(10)) / 2, 1e-6,
  "binary_cross_entropy by hand")
T.near(gl.binary_cross_entropy(gl.tensor{0, 1}, gl.tensor{1, 0}, {reduction = "none"}), gl.tensor{100, 100}, 0,
  "binary_cross_entropy clamps log at -100")
T.near(gl.binary_cross_entropy_with_logits(gl.tensor{0, 100, -100}, gl.tensor{1, 0, 1}, {reduction = "none"}),
  gl.tensor{math.log(2), 100, 100}, 1e-5, "binary_cross_entropy_with_logits is stable for large logits")
local lg = gl.tensor{0.3, -1.2}
local want_bce = 0
for i, yv in ipairs{1, 0} do
  local s = 1 / (1 + math.exp(-lg:getflat(i)))
  want_bce = want_bce - (yv * math.log(s) + (1 - yv) * math.log(1 - s))
end
T.near(gl.binary_cross_entropy_with_logits(lg, gl.tensor{1, 0}, {reduction = "sum"}):item(), want_bce, 1e-6,
  "binary_cross_entropy_with_logits = bce(sigmoid(x))")
local kl = 0.5 * math.log(2) + 0.5 * math.log(2 / 3)
local logq = gl.tensor{{math.log(0.25), math.log(0.75)}}
T.near(gl.kl_div(logq, gl.tensor{{0.5, 0.5}}, {reduction = "sum"}):item(), kl, 1e-6, "kl_div sum = KL(p || q)")
T.near(gl.kl_div(logq, gl.tensor{{0.5, 0.5}}):item(), kl / 2, 1e-6, "kl_div mean is over elements")
T.near(gl.kl_div(logq, gl.tensor{{0.5, 0.5}}, {reduction = "batchmean"}):item(), kl, 1e-6,
  "kl_div batchmean divides by the batch size")
T.near(gl.kl_div(logq, gl.tensor{{math.log(0.5), math.log(0.5)}}, {reduction = "sum", log_target = true}):item(), kl,
  1e-6, "kl_div with log_target")
T.near(gl.kl_div(logq, gl.tensor{{0, 1}}, {reduction = "none"}), gl.tensor{0, -math.log(0.75)}, 1e-6,
  "kl_div terms with target 0 are 0")
T.raises(function() gl.mse_loss(p3, gl.zeros(3, 1)) end, "mse_loss: input of shape [3] and target of shape [3,1] differ",
  "pointwise losses need equal shapes")
T.raises(function() gl.mse_loss(p3, q3, {reduction = "batchmean"}) end, "unknown reduction 'batchmean'",
  "batchmean is only for kl_div")
T.raises(function() gl.kl_div(logq, logq, {log_targets = true}) end, "kl_div: unknown option 'log_targets'",
  "kl_div rejects unknown options")
T.raises(function() gl.binary_cross_entropy(gl.tensor{1.5}, gl.tensor{1}) end, "input values must be probabilities in [0, 1]",
  "binary_cross_entropy checks its input range")

T.done()
