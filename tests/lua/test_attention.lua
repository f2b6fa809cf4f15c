-- Fused attention (gl.attention), the KV-cache decode kernel
-- (gl._attention_decode, internal) and rotary embeddings (gl.rope), against
-- references composed from matmul, masked_fill and softmax, hand-written Lua
-- loops and finite differences. Shapes with T <= 64 take the register-tile
-- kernel, longer ones the GEMM one (row blocks of 32); both are covered.
local T = require "tap"
local G = require "gradcheck"
local gl = require "genlab"

gl.seed(4242)

local function maxdiff(a, b) return (a - b):abs():max():item() end

-- u8 [T,S]: 1 where query i (absolute position i + S - T) must NOT see key j.
local function mask_of(Tq, S, causal, window)
  local m = gl.zeros({Tq, S}, {dtype = "u8"})
  for i = 0, Tq - 1 do
    local ip = i + S - Tq
    for j = 0, S - 1 do
      local hidden = (causal and j > ip) or (window > 0 and ip - j >= window)
      if hidden then m:setflat(i * S + j + 1, 1) end
    end
  end
  return m
end

-- Reference: expand the kv heads, q k^T * scale, masked_fill(-inf), softmax,
-- o.keep (a 0/1 mask, scaled by 1/(1-o.dropout)), @ v.
local function ref_attention(q, k, v, o)
  o = o or {}
  local B, NH, Tq, HS = table.unpack(q:shape())
  local KVH, S = k:size(2), k:size(3)
  local scale = o.scale or 1 / math.sqrt(HS)
  local causal = o.causal ~= false
  local G_ = NH // KVH
  if G_ > 1 then
    k = k:reshape{B, KVH, 1, S, HS}:expand{B, KVH, G_, S, HS}:reshape{B, NH, S, HS}
    v = v:reshape{B, KVH, 1, S, HS}:expand{B, KVH, G_, S, HS}:reshape{B, NH, S, HS}
  end
  local att = q:matmul(k:transpose(3, 4)) * scale
  att = att:masked_fill(mask_of(Tq, S, causal, o.window or 0), -math.huge)
  att = gl.softmax(att, -1)
  if o.keep then att = att * o.keep * (1 / (1 - o.dropout)) end
  return att:matmul(v)
end

local function qkv(B, NH, KVH, Tq, S, HS)
  return G.input{B, NH, Tq, HS}, G.input{B, KVH, S, HS}, G.input{B, KVH, S, HS}
end

-- Forward and all three gradients of gl.attention against the reference.
local function compare(name, dims, o)
  local q, k, v = qkv(table.unpack(dims))
  local out = gl.attention(q, k, v, o)
  local R = gl.randn(out:shape())
  out:backward(R)
  local gq, gk, gv = q.grad, k.grad, v.grad
  q.grad, k.grad, v.grad = nil, nil, nil
  local want = ref_attention(q, k, v, o)
  want:backward(R)
  T.ok(maxdiff(out, want) < 2e-6, name .. ": forward equals the composed reference", maxdiff(out, want))
  local e = math.max(maxdiff(gq, q.grad), maxdiff(gk, k.grad), maxdiff(gv, v.grad))
  T.ok(e < 1e-5, ("%s: dq, dk, dv equal the reference's (max err %.2g)"):format(name, e), e)
end

-- dims: B, NH, KVH, T, S, HS
compare("MHA causal, tiles", {2, 2, 2, 5, 5, 4})
compare("MHA causal, tiles, T=40", {2, 2, 2, 40, 40, 8})
compare("MHA causal, tiles, T=64 HS=32 (whole tiles)", {2, 2, 2, 64, 64, 32})
compare("MHA causal T=70 (3 row blocks)", {1, 2, 2, 70, 70, 16})
compare("GQA NH=4 KVH=2, tiles", {2, 4, 2, 6, 6, 4})
compare("GQA NH=4 KVH=2, tiles, T=36", {2, 4, 2, 36, 36, 8})
compare("GQA NH=4 KVH=2, GEMM", {1, 4, 2, 68, 68, 8})
compare("GQA NH=4 KVH=1 (multi-query), tiles", {1, 4, 1, 7, 7, 4})
compare("GQA NH=4 KVH=1 (multi-query), tiles, T=33", {2, 4, 1, 33, 33, 4})
compare("window 3, tiles", {2, 2, 2, 7, 7, 4}, {window = 3})
compare("window 10, GEMM (keys start after 0)", {1, 2, 2, 70, 70, 8}, {window = 10})
compare("window 1 (only itself)", {1, 1, 1, 6, 6, 4}, {window = 1})
compare("unscaled (scale = 1, GPT-Neo)", {2, 2, 2, 6, 6, 8}, {scale = 1})
compare("tiles, T = 8", {2, 2, 1, 8, 8, 4})
compare("GEMM, one short block (T = 65)", {1, 2, 1, 65, 65, 4})
compare("tiles, key prefix and window, T = 12", {1, 2, 2, 12, 20, 4}, {window = 6})
compare("GEMM, key prefix and window, T = 66", {1, 2, 2, 66, 80, 4}, {window = 20})
compare("unscaled tiles + window (GPT-Neo local)", {1, 2, 2, 40, 40, 8}, {scale = 1, window = 16})
compare("key prefix S > T, tiles", {2, 2, 2, 3, 7, 4})
compare("key prefix S > T, tiles, T=33", {1, 2, 2, 33, 50, 8})
compare("key prefix S > T, GEMM", {1, 2, 2, 65, 90, 8})
compare("key prefix + window + GQA", {1, 4, 2, 5, 12, 4}, {window = 4})
compare("one query over a prefix (T = 1)", {2, 2, 1, 1, 9, 4})
compare("non-causal", {2, 2, 2, 5, 7, 4}, {causal = false})
compare("non-causal tiles", {1, 2, 2, 40, 40, 8}, {causal = false})
compare("non-causal GEMM", {1, 2, 2, 70, 70, 8}, {causal = false})
compare("non-causal + window", {1, 2, 2, 6, 6, 4}, {causal = false, window = 2})

-- Dropout. With HS = S and v = identity the output is the dropped-out
-- probability matrix itself, which shows the keep mask the kernel draws after
-- a seed; the reference applies that mask to its own softmax.
local function compare_dropout(name, dims, p)
  local B, NH, KVH, Tq, S = table.unpack(dims)
  local q, k, v = qkv(B, NH, KVH, Tq, S, S)
  local eye = gl.eye(S):reshape{1, 1, S, S}:expand{B, KVH, S, S}
  local o = {dropout = p, training = true}
  gl.seed(99)
  local pd = gl.no_grad(function() return gl.attention(q, k, eye, o) end)
  local keep = gl.ne(pd, 0):float()
  local P = gl.no_grad(function() return ref_attention(q, k, eye) end)
  local err = maxdiff(pd, P * keep * (1 / (1 - p)))
  T.ok(err < 2e-6, name .. ": kept probabilities are scaled by 1/(1-p), the rest are 0", err)
  local visible = gl.ne(P, 0):float():sum():item()
  local dropped = visible - keep:sum():item()
  T.ok(math.abs(dropped / visible - p) < 4 * math.sqrt(p * (1 - p) / visible),
    ("%s: %d of %d visible probabilities dropped (p = %.2f)"):format(name, dropped, visible, p))
  gl.seed(99)
  local out = gl.attention(q, k, v, o)
  local want = ref_attention(q, k, v, {keep = keep, dropout = p})
  T.ok(maxdiff(out, want) < 2e-6, name .. ": forward equals the reference with the same mask", maxdiff(out, want))
  local R = gl.randn(out:shape())
  out:backward(R)
  local gq, gk, gv = q.grad, k.grad, v.grad
  q.grad, k.grad, v.grad = nil, nil, nil
  want:backward(R)
  local e = math.max(maxdiff(gq, q.grad), maxdiff(gk, k.grad), maxdiff(gv, v.grad))
  T.ok(e < 1e-5, ("%s: gradients equal the reference's (max err %.2g)"):format(name, e), e)
end
compare_dropout("dropout 0.3, tiles", {2, 2, 2, 6, 6}, 0.3)
compare_dropout("dropout 0.3, tiles, GQA", {1, 4, 2, 40, 40}, 0.3)
compare_dropout("dropout 0.3, GEMM, GQA", {1, 4, 2, 70, 70}, 0.3)
compare_dropout("dropout 0.5, key prefix", {2, 2, 1, 5, 9}, 0.5)

do
  local q, k, v = qkv(1, 2, 2, 6, 6, 4)
  gl.seed(5); local a = gl.attention(q, k, v, {dropout = 0.5, training = true})
  gl.seed(5); local b = gl.attention(q, k, v, {dropout = 0.5, training = true})
  gl.seed(6); local c = gl.attention(q, k, v, {dropout = 0.5, training = true})
  T.eq(maxdiff(a, b), 0, "dropout: same seed, same result")
  T.ok(maxdiff(a, c) > 0, "dropout: another seed, another mask")
  local plain = gl.attention(q, k, v)
  T.eq(maxdiff(gl.attention(q, k, v, {dropout = 0.5}), plain), 0, "dropout without training is the identity")
  T.ok(maxdiff(a, plain) > 0, "dropout in training changes the output")
end

-- Unrecorded calls use per-thread scratch instead of saving P: same numbers.
do
  for _, dims in ipairs{{2, 4, 2, 6, 6, 4}, {2, 4, 2, 40, 40, 8}} do
    local q, k, v = qkv(table.unpack(dims))
    for _, o in ipairs{{}, {dropout = 0.2, training = true}} do
      gl.seed(3); local rec = gl.attention(q, k, v, o)
      gl.seed(3); local norec = gl.no_grad(function() return gl.attention(q, k, v, o) end)
      T.ok(rec.requires_grad and not norec.requires_grad and maxdiff(rec, norec) == 0,
        ("no_grad path equals the recorded one (T=%d, dropout %s)"):format(dims[4], tostring(o.dropout or 0)))
    end
  end
end

-- Same bits whatever the thread count, forward and backward, with dropout.
do
  local q, k, v = qkv(4, 4, 2, 48, 48, 16)
  local function run(n)
    local saved = gl.threads()
    gl.threads(n)
    q.grad, k.grad, v.grad = nil, nil, nil
    gl.seed(11)
    local out = gl.attention(q, k, v, {dropout = 0.1, training = true})
    gl.seed(12)
    out:backward(gl.randn(out:shape()))
    gl.threads(saved)
    return out, q.grad, k.grad, v.grad
  end
  local o1, q1, k1, v1 = run(1)
  local o2, q2, k2, v2 = run(3)
  T.ok(maxdiff(o1, o2) == 0 and maxdiff(q1, q2) == 0 and maxdiff(k1, k2) == 0 and maxdiff(v1, v2) == 0,
    "1 and 3 threads give identical output and gradients")
end

-- Finite differences for q, k and v in each mode (both kernels).
local function fn(o, seed)
  return function(q, k, v)
    if seed then gl.seed(seed) end
    return gl.attention(q, k, v, o)
  end
end
local input = G.input
G.run(T, {
  {"attention MHA causal (tiles)", fn(), {input{1, 2, 4, 3}, input{1, 2, 4, 3}, input{1, 2, 4, 3}}},
  {"attention MHA causal (tiles, T=33)", fn(), {input{1, 1, 33, 2}, input{1, 1, 33, 2}, input{1, 1, 33, 2}}},
  {"attention MHA causal (GEMM, T=65)", fn(), {input{1, 1, 65, 2}, input{1, 1, 65, 2}, input{1, 1, 65, 2}}},
  {"attention GQA NH=4 KVH=2", fn(), {input{1, 4, 3, 2}, input{1, 2, 3, 2}, input{1, 2, 3, 2}}},
  {"attention GQA NH=4 KVH=1", fn(), {input{1, 4, 3, 2}, input{1, 1, 3, 2}, input{1, 1, 3, 2}}},
  {"attention GQA KVH=1 (tiles, T=32)", fn(), {input{1, 2, 32, 2}, input{1, 1, 32, 2}, input{1, 1, 32, 2}}},
  {"attention window 2", fn{window = 2}, {input{1, 2, 5, 3}, input{1, 2, 5, 3}, input{1, 2, 5, 3}}},
  {"attention tiles T=9 window 3 prefix", fn{window = 3}, {input{1, 1, 9, 2}, input{1, 1, 11, 2}, input{1, 1, 11, 2}}},
  {"attention window 5 (tiles, T=34)", fn{window = 5}, {input{1, 1, 34, 2}, input{1, 1, 34, 2}, input{1, 1, 34, 2}}},
  {"attention unscaled", fn{scale = 1}, {input{1, 2, 4, 3}, input{1, 2, 4, 3}, input{1, 2, 4, 3}}},
  {"attention key prefix S=6 > T=3", fn(), {input{2, 1, 3, 3}, input{2, 1, 6, 3}, input{2, 1, 6, 3}}},
  {"attention non-causal", fn{causal = false}, {input{1, 2, 3, 3}, input{1, 2, 4, 3}, input{1, 2, 4, 3}}},
  {"attention dropout 0.3 (reseeded)", fn({dropout = 0.3, training = true}, 7),
    {input{1, 2, 4, 3}, input{1, 2, 4, 3}, input{1, 2, 4, 3}}},
  {"attention dropout 0.3 tiles (reseeded)", fn({dropout = 0.3, training = true}, 7),
    {input{1, 1, 32, 2}, input{1, 1, 32, 2}, input{1, 1, 32, 2}}},
  {"attention only k requires grad", function(k) return gl.attention(gl.ones{1, 2, 3, 2}, k, gl.ones{1, 1, 3, 2}) end,
    {input{1, 1, 3, 2}}},
})

-- The decode kernel (gl._attention_decode): test_attention_decode.lua.

-- Empty shapes give empty results (and gradients).
do
  local q, k, v = G.input{1, 2, 0, 4}, G.input{1, 2, 3, 4}, G.input{1, 2, 3, 4}
  local out = gl.attention(q, k, v)
  T.eq(table.concat(out:shape(), ","), "1,2,0,4", "T = 0 gives an empty [B,NH,0,HS]")
  out:backward(gl.zeros{1, 2, 0, 4})
  T.ok(k.grad and k.grad:abs():sum():item() == 0, "T = 0: k gets a zero gradient")
  T.eq(gl.attention(gl.zeros{0, 2, 3, 4}, gl.zeros{0, 1, 3, 4}, gl.zeros{0, 1, 3, 4}):numel(), 0,
    "B = 0 gives an empty result")
  local q2, k2, v2 = qkv(1, 2, 2, 4, 4, 8)
  T.eq(maxdiff(gl.attention(q2, k2, v2), gl.attention(q2, k2, v2, {scale = 1 / math.sqrt(8)})), 0,
    "the default scale is 1/sqrt(HS)")
end

-- Errors name the op and the shapes.
T.raises(function() gl.attention(gl.zeros{1, 3, 4, 2}, gl.zeros{1, 2, 4, 2}, gl.zeros{1, 2, 4, 2}) end,
  "attention: query heads (3) must be a multiple of kv heads (2)", "NH must be a multiple of KVH")
T.raises(function() gl.attention(gl.zeros{1, 2, 5, 2}, gl.zeros{1, 2, 4, 2}, gl.zeros{1, 2, 4, 2}) end,
  "attention: causal attention needs at least as many keys as queries (q [1,2,5,2], k [1,2,4,2])",
  "causal needs S >= T")
T.raises(function() gl.attention(gl.zeros{1, 2, 4, 2}, gl.zeros{1, 2, 4, 3}, gl.zeros{1, 2, 4, 3}) end,
  "attention: q [1,2,4,2] and k [1,2,4,3] differ in batch or head size", "head sizes must match")
T.raises(function() gl.attention(gl.zeros{1, 2, 4, 2}, gl.zeros{1, 2, 4, 2}, gl.zeros{1, 2, 3, 2}) end,
  "attention: k [1,2,4,2] and v [1,2,3,2] must have the same shape", "k and v shapes must match")
T.raises(function() gl.attention(gl.zeros{2, 4, 2}, gl.zeros{2, 4, 2}, gl.zeros{2, 4, 2}) end,
  "attention: expected q [B,NH,T,HS]", "3-D inputs are rejected")
T.raises(function() gl.attention(gl.zeros{1, 1, 2, 2}, gl.zeros{1, 1, 2, 2}, gl.zeros{1, 1, 2, 2}, {windw = 2}) end,
  "attention: unknown option 'windw'", "unknown options are rejected")
T.raises(function() gl.attention(gl.zeros{1, 1, 2, 2}, gl.zeros{1, 1, 2, 2}, gl.zeros{1, 1, 2, 2}, {dropout = 1}) end,
  "attention: dropout must be in [0, 1)", "dropout 1 is rejected")

-- RoPE against a hand-written HF rotate_half reference (double precision angles).
local function ref_rope(x, offset, theta)
  local shape = x:shape()
  local HS, Tn = shape[#shape], shape[#shape - 1]
  local half = HS // 2
  local out = x:detach():clone()
  for r = 0, x:numel() // HS - 1 do
    local pos = offset + r % Tn
    for i = 0, half - 1 do
      local a = pos * theta ^ (-2 * i / HS)
      local x0, x1 = x:getflat(r * HS + i + 1), x:getflat(r * HS + i + half + 1)
      out:setflat(r * HS + i + 1, x0 * math.cos(a) - x1 * math.sin(a))
      out:setflat(r * HS + i + half + 1, x1 * math.cos(a) + x0 * math.sin(a))
    end
  end
  return out
end

do
  local x = gl.randn{2, 3, 5, 8}
  T.ok(maxdiff(gl.rope(x), ref_rope(x, 0, 10000)) < 2e-6, "rope [B,H,T,HS] equals the rotate_half reference")
  T.ok(maxdiff(gl.rope(x, {offset = 37, theta = 500000}), ref_rope(x, 37, 500000)) < 1e-5,
    "rope with offset 37 and theta 5e5 equals the reference")
  local y = gl.randn{4, 6}
  T.ok(maxdiff(gl.rope(y, {offset = 3}), ref_rope(y, 3, 10000)) < 2e-6, "rope on [T,HS]")
  T.eq(maxdiff(gl.rope(x):select(3, 1), x:select(3, 1)), 0, "rope leaves position 0 unchanged")
  -- relative property: <rope(q, m), rope(k, n)> depends on m - n only
  local q, k = gl.randn{1, 1, 1, 8}, gl.randn{1, 1, 1, 8}
  local d1 = (gl.rope(q, {offset = 5}) * gl.rope(k, {offset = 2})):sum():item()
  local d2 = (gl.rope(q, {offset = 13}) * gl.rope(k, {offset = 10})):sum():item()
  T.near(d1, d2, 1e-5, "rope: q.k depends only on the relative position")
  T.raises(function() gl.rope(gl.zeros{2, 3}) end, "rope: head size (last dim) must be even, got shape [2,3]",
    "rope rejects an odd head size")
  T.raises(function() gl.rope(gl.zeros{2, 4}, {offset = -1}) end, "rope: offset must be >= 0",
    "rope rejects negative offsets")
end
G.run(T, {
  {"rope", function(x) return gl.rope(x) end, {input{2, 2, 3, 4}}},
  {"rope offset 5, theta 100", function(x) return gl.rope(x, {offset = 5, theta = 100}) end, {input{3, 6}}},
})

-- gl.attention_qkv: GPT-2's fused projection [B,T,3C] straight into attention,
-- against splitting into heads, gl.attention and merging the heads.
local function split_attention(x, NH, o)
  local B, Tq, C3 = table.unpack(x:shape())
  local C = C3 // 3
  local function heads(i)
    return x:narrow(3, i * C + 1, C):reshape{B, Tq, NH, C // NH}:transpose(2, 3)
  end
  return gl.attention(heads(0), heads(1), heads(2), o):transpose(2, 3):reshape{B, Tq, C}
end
for _, case in ipairs{
  {"attention_qkv, tiles", {2, 5, 3 * 8}, 2},
  {"attention_qkv, tiles, T=40", {1, 40, 3 * 16}, 4},
  {"attention_qkv, tiles, T=64 HS=32 (whole tiles)", {2, 64, 3 * 64}, 2},
  {"attention_qkv, GEMM blocks", {1, 70, 3 * 16}, 4},
  {"attention_qkv, window 6, unscaled", {1, 12, 3 * 8}, 2, {window = 6, scale = 1}},
} do
  local name, shape, NH, o = table.unpack(case)
  local x = G.input(shape)
  local out = gl.attention_qkv(x, NH, o)
  local R = gl.randn(out:shape())
  out:backward(R)
  local got = x.grad
  x.grad = nil
  local want = split_attention(x, NH, o)
  want:backward(R)
  T.ok(maxdiff(out, want) < 2e-6, name .. ": forward equals split + attention + merge", maxdiff(out, want))
  T.ok(maxdiff(got, x.grad) < 1e-5, name .. ": dqkv equals the composed reference's", maxdiff(got, x.grad))
end
-- A gradient that exists already is added into (the kernels write fresh ones).
for _, case in ipairs{{"tiles", {2, 16, 3 * 16}, 2}, {"GEMM", {1, 66, 3 * 8}, 2}} do
  local name, shape, NH = table.unpack(case)
  local x = G.input(shape)
  local R = gl.randn{shape[1], shape[2], shape[3] // 3}
  gl.attention_qkv(x, NH):backward(R)
  local once = x.grad:clone()
  gl.attention_qkv(x, NH):backward(R)
  T.ok(maxdiff(x.grad, once * 2) < 1e-6, "attention_qkv, " .. name .. ": a second backward adds into the gradient",
    maxdiff(x.grad, once * 2))
end
T.raises(function() gl.attention_qkv(gl.zeros{1, 4, 10}, 2) end, "does not split into 3 x 2 heads",
  "attention_qkv names a last dim that does not split into heads")
T.raises(function() gl.attention_qkv(gl.zeros{1, 4, 12}, 2, {bogus = 1}) end, "bogus",
  "attention_qkv rejects unknown options")
G.run(T, {
  {"attention_qkv", function(x) return gl.attention_qkv(x, 2) end, {input{1, 4, 12}}},
})

T.done()
