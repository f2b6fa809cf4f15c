-- The KV-cache decode kernel (gl._attention_decode, internal) on the shapes
-- its vectorized path takes (head size a multiple of 16, at most 256 keys a
-- query: every key count modulo 4, GQA, windows, several query rows) and on
-- the plain path's (other head sizes, more keys), against gl.attention's
-- last rows. The vectorized path computes the plain loop's numbers bit for
-- bit; these tests hold it to the same tolerance as the plain one.
local T = require "tap"
local G = require "gradcheck"
local gl = require "genlab"

gl.seed(777)

local function maxdiff(a, b) return (a - b):abs():max():item() end

-- q [n,NH,HS] of the last n of S positions, caches [KVH, S + 3, HS] with junk past S.
local function check(name, NH, KVH, S, HS, n, o)
  o = o or {}
  local q, k, v = G.input{1, NH, n, HS}:detach(), G.input{1, KVH, S, HS}:detach(), G.input{1, KVH, S, HS}:detach()
  local want = gl.attention(q, k, v, o):reshape{NH, n, HS}:transpose(1, 2)
  local junk = gl.full({KVH, 3, HS}, 1e3)
  local kc = gl.cat({k:reshape{KVH, S, HS}, junk}, 2)
  local vc = gl.cat({v:reshape{KVH, S, HS}, junk}, 2)
  local got = gl._attention_decode(q:reshape{NH, n, HS}:transpose(1, 2), kc, vc,
                                   {scale = o.scale, window = o.window, length = S})
  local d = maxdiff(got, want)
  T.ok(d < 2e-6, name .. ": equals the full attention's last rows", d)
end

for _, S in ipairs{1, 2, 3, 4, 5, 6, 7, 8, 9, 33, 64} do
  check(("char GPT head: NH=4 HS=32, S=%d keys"):format(S), 4, 4, S, 32, 1)
end
check("HS=16, S=13", 2, 2, 13, 16, 1)
check("HS=48 (stories15M), S=30", 6, 6, 30, 48, 1)
check("HS=64, S=21", 2, 2, 21, 64, 1)
check("GQA NH=8 KVH=2, HS=32, S=19", 8, 2, 19, 32, 1)
check("window 5 of S=40, HS=32", 2, 2, 40, 32, 1, {window = 5})
check("unscaled, window 6 of S=11, HS=16", 2, 1, 11, 16, 1, {scale = 1, window = 6})
check("256 keys (one chunk), HS=32", 2, 2, 256, 32, 1)
check("257 keys (two chunks: plain path), HS=32", 2, 2, 257, 32, 1)
check("HS=24 (plain path), S=10", 2, 2, 10, 24, 1)
check("prefill rows n=5 of S=9, HS=32", 4, 2, 9, 32, 5)
check("prefill rows n=S=12, window 4, HS=16", 2, 2, 12, 16, 12, {window = 4})
-- small heads (the plain path), more keys than a chunk, a parallel call
check("decode step MHA, HS=8", 6, 6, 17, 8, 1)
check("decode step GQA 4/2, HS=8", 4, 2, 9, 8, 1)
check("decode step KVH=1, HS=4", 4, 1, 9, 4, 1)
check("decode step S=600 (3 chunks), HS=16", 2, 2, 600, 16, 1)
check("decode step S=600 window 300, HS=8", 2, 1, 600, 8, 1, {window = 300})
check("decode step unscaled window 4, HS=8", 2, 2, 20, 8, 1, {scale = 1, window = 4})
check("decode step NH=8 KVH=2 S=600 HS=64 (parallel over heads)", 8, 2, 600, 64, 1)
check("prefill n=7 of S=10, HS=8", 4, 2, 10, 8, 7)
check("prefill n=S=12 window 5, HS=8", 2, 2, 12, 8, 12, {window = 5})
T.raises(function() gl._attention_decode(gl.zeros{1, 3, 4}, gl.zeros{2, 5, 4}, gl.zeros{2, 5, 4}) end,
  "attention_decode: bad sizes", "decode rejects NH not a multiple of KVH")
T.raises(function() gl._attention_decode(gl.zeros{1, 2, 4}, gl.zeros{2, 5, 4}, gl.zeros{2, 5, 4}, {length = 6}) end,
  "attention_decode: bad sizes", "decode rejects a length beyond the capacity")

-- Large scores: the softmax must subtract the maximum (exp would overflow).
do
  local NH, HS, S = 2, 32, 10
  local q = (G.input{1, NH, 1, HS} * 40):detach()
  local k, v = G.input{1, NH, S, HS}:detach(), G.input{1, NH, S, HS}:detach()
  local want = gl.attention(q, k, v):reshape{NH, 1, HS}:transpose(1, 2)
  local got = gl._attention_decode(q:reshape{NH, 1, HS}:transpose(1, 2), k:reshape{NH, S, HS}, v:reshape{NH, S, HS})
  T.ok(maxdiff(got, want) < 2e-6, "large scores stay finite and match", maxdiff(got, want))
end

T.done()
