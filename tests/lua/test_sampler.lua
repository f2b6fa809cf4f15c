-- The token sampler (gl.sample, gl.sampler, gl.topk_probs): each filter on
-- hand-made distributions, their order, the repetition penalty's arithmetic,
-- seeding and empirical frequencies. Sampled ids are 0-based.
local T = require "tap"
local gl = require "genlab"

local function logits_of(probs) -- log-probabilities as an f32 row
  local l = {}
  for i, p in ipairs(probs) do l[i] = p > 0 and math.log(p) or -math.huge end
  return gl.tensor(l)
end

-- The sorted set of ids drawn in n seeded draws, as "a,b,c".
local function support(logits, opts, n)
  opts.seed = opts.seed or 7
  local s = gl.sampler(opts)
  local seen, ids = {}, {}
  for _ = 1, n or 3000 do seen[s:sample(logits)] = true end
  for id in pairs(seen) do ids[#ids + 1] = id end
  table.sort(ids)
  return table.concat(ids, ",")
end

-- greedy is the argmax (lowest id on ties); temperature 0 and top_k = 1 are greedy too
gl.seed(11)
local all_greedy, all_t0, all_k1, all_cold = true, true, true, true
for trial = 1, 20 do
  local l = gl.randn{50} * 3
  local want = gl.argmax(l):item()
  all_greedy = all_greedy and gl.sample(l, {greedy = true}) == want
  all_t0 = all_t0 and gl.sample(l, {temperature = 0}) == want
  all_k1 = all_k1 and gl.sample(l, {top_k = 1, seed = trial}) == want
  all_cold = all_cold and gl.sample(l, {temperature = 1e-4, seed = trial}) == want
end
T.ok(all_greedy, "greedy = argmax on 20 random rows")
T.ok(all_t0, "temperature = 0 is greedy")
T.ok(all_k1, "top_k = 1 is greedy")
T.ok(all_cold, "temperature -> 0 (1e-4) draws the argmax")
T.eq(gl.sample(gl.tensor{1, 3, 3, 2}, {greedy = true}), 1, "greedy ties go to the lowest id (0-based)")
T.eq(gl.sample(gl.tensor{2, 5, 1}, {greedy = true, top_k = 3, top_p = 0.1, min_p = 0.9, temperature = 9}), 1,
  "greedy ignores temperature and filters")
do
  gl.seed(5)
  local before = gl.rand{4}
  gl.seed(5)
  gl.sample(gl.tensor{1, 2, 3}, {greedy = true})
  T.near(gl.rand{4}, before, 0, "greedy draws nothing from the genlab stream")
end

-- top_k, top_p and min_p keep exact candidate sets (probabilities by id)
local p = {0.07, 0.5, 0.03, 0.25, 0.15} -- sorted: 1 (.5), 3 (.25), 4 (.15), 0 (.07), 2 (.03)
local lp = logits_of(p)
T.eq(support(lp, {}), "0,1,2,3,4", "no filter: every id is drawn")
T.eq(support(lp, {top_k = 2}), "1,3", "top_k = 2 keeps the two most probable")
T.eq(support(lp, {top_k = 4}), "0,1,3,4", "top_k = 4 drops the least probable")
T.eq(support(lp, {top_k = 99}), "0,1,2,3,4", "top_k above V keeps everything")
T.eq(support(lp, {top_p = 0.4}), "1", "top_p = 0.4: the first token already covers it")
T.eq(support(lp, {top_p = 0.7}), "1,3", "top_p = 0.7 keeps .5 + .25")
T.eq(support(lp, {top_p = 0.8}), "1,3,4", "top_p = 0.8 keeps .5 + .25 + .15")
T.eq(support(lp, {top_p = 0.95}), "0,1,3,4", "top_p = 0.95 cuts only the .03 tail")
T.eq(support(lp, {min_p = 0.2}), "1,3,4", "min_p = 0.2 keeps p >= 0.1")
T.eq(support(lp, {min_p = 0.45}), "1,3", "min_p = 0.45 keeps p >= 0.225")
T.eq(support(lp, {min_p = 1}), "1", "min_p = 1 keeps only the most probable")
-- order: top_k renormalizes before top_p (.5/.75 = .667 >= .6), top_p before min_p
T.eq(support(lp, {top_p = 0.6}), "1,3", "top_p = 0.6 alone keeps two")
T.eq(support(lp, {top_k = 2, top_p = 0.6}), "1", "top_k = 2 then top_p = 0.6 keeps one (top_p sees renormalized mass)")
T.eq(support(lp, {top_p = 0.95, min_p = 0.2}), "1,3,4", "top_p then min_p: the tighter one wins")
-- temperature flattens before top_p: at T = 3 the sorted probabilities become ~ .296 .235 .198 .154 .116
T.eq(support(lp, {top_p = 0.76}), "1,3,4", "top_p = 0.76 at T = 1 keeps three")
T.eq(support(lp, {temperature = 3, top_p = 0.76}), "0,1,3,4", "temperature is applied before top_p (T = 3 keeps four)")
T.eq(support(logits_of{0, 0.5, 0, 0.5}, {}), "1,3", "-inf logits are never drawn")

-- the repetition penalty (CTRL / HF): positive logits divided, negative multiplied, once per distinct id
local function pick(l, pen, hist) return gl.sample(gl.tensor(l), {greedy = true, repetition_penalty = pen, history = hist}) end
T.eq(pick({2.0, 1.5}, 1, {0}), 0, "penalty 1 is off")
T.eq(pick({2.0, 1.5}, 2, {0}), 1, "positive logit 2 / 2 = 1 < 1.5")
T.eq(pick({2.0, 1.5}, 1.2, {0}), 0, "positive logit 2 / 1.2 = 1.67 > 1.5")
T.eq(pick({2.0, 1.5}, 1.2, {0, 0, 0}), 0, "a repeated history id is penalized once (2 / 1.2^3 would be < 1.5)")
T.eq(pick({-1.0, -1.5}, 2, {0}), 1, "negative logit -1 * 2 = -2 < -1.5")
T.eq(pick({-1.0, -1.5}, 1.4, {0}), 0, "negative logit -1 * 1.4 = -1.4 > -1.5")
T.eq(pick({-1.0, -1.5}, 1.4, gl.tensor({0, 0}, {dtype = "i64"})), 0, "history as a tensor, duplicates once")
T.eq(pick({1.0, 1.5, 1.2}, 2, {1}), 2, "only history ids are penalized (1.5 / 2 < 1.2)")
T.eq(pick({1.0, 1.5, 1.2}, 0.5, {0}), 0, "a penalty below 1 favours history ids (1 / 0.5 = 2)")
T.raises(function() pick({1, 2}, 2, {5}) end, "history id 5", "history ids outside the vocabulary are an error")
do -- the sampler object keeps its history; repetition_window limits it
  local s = gl.sampler{greedy = true, repetition_penalty = 10}
  local l = gl.tensor{3, 2.9, 2.8, 1}
  T.eq(s:sample(l), 0, "sampler: nothing accepted yet")
  s:accept(0)
  T.eq(s:sample(l), 1, "sampler: accepted 0 is penalized")
  s:accept{1, 2}
  T.eq(s:sample(l), 3, "sampler: accepted 0, 1, 2 are penalized (.3 .29 .28 < 1)")
  s:reset()
  T.eq(s:sample(l), 0, "sampler:reset forgets the history")
  local w = gl.sampler{greedy = true, repetition_penalty = 10, repetition_window = 2}
  w:accept{0, 1, 2}
  T.eq(w:sample(l), 0, "repetition_window = 2 penalizes only the last two accepted ids")
  for _ = 1, 40 do w:accept(3) end
  T.eq(w:sample(l), 0, "the window keeps sliding after many accepts")
end

-- seeding
do
  local l = gl.randn{100}
  local a, b = {}, {}
  local sa, sb = gl.sampler{seed = 42}, gl.sampler{seed = 42}
  for i = 1, 50 do a[i], b[i] = sa:sample(l), sb:sample(l) end
  T.eq(table.concat(a, ","), table.concat(b, ","), "two samplers with the same seed draw the same sequence")
  local sc = gl.sampler{seed = 43}
  local c = {}
  for i = 1, 50 do c[i] = sc:sample(l) end
  T.ok(table.concat(a, ",") ~= table.concat(c, ","), "another seed draws another sequence")
  T.eq(gl.sample(l, {seed = 9}), gl.sample(l, {seed = 9}), "gl.sample with the same seed gives the same id")

  gl.seed(1)
  local want = gl.rand{6}
  gl.seed(1)
  gl.sample(l, {seed = 9})
  gl.sampler{seed = 3}:sample(l)
  T.near(gl.rand{6}, want, 0, "seeded draws leave the genlab stream untouched")

  gl.seed(2)
  local x1 = {}
  for i = 1, 20 do x1[i] = gl.sample(l) end
  gl.seed(2)
  local x2 = {}
  for i = 1, 20 do x2[i] = gl.sample(l) end
  T.eq(table.concat(x1, ","), table.concat(x2, ","), "unseeded draws follow gl.seed")
  gl.seed(2)
  local r1 = gl.rand{1}:item()
  gl.seed(2)
  gl.sample(l)
  T.ok(gl.rand{1}:item() ~= r1, "an unseeded draw advances the genlab stream")
end

-- empirical frequencies match softmax(logits / T)
local function freqs(l, opts, n)
  local s, count = gl.sampler(opts), {}
  for _ = 1, n do
    local id = s:sample(l)
    count[id] = (count[id] or 0) + 1
  end
  return count
end
do
  local q = {0.4, 0.3, 0.2, 0.1}
  local n = 40000
  local c = freqs(logits_of(q), {seed = 123}, n)
  local err = 0
  for i, pi in ipairs(q) do err = math.max(err, math.abs((c[i - 1] or 0) / n - pi)) end
  T.ok(err < 0.012, ("frequencies match softmax within 0.012 over %d draws (max err %.4f)"):format(n, err))
  -- T = 2: p_i ~ q_i^(1/2)
  local c2 = freqs(logits_of(q), {seed = 321, temperature = 2}, n)
  local z = 0
  for _, pi in ipairs(q) do z = z + math.sqrt(pi) end
  err = 0
  for i, pi in ipairs(q) do err = math.max(err, math.abs((c2[i - 1] or 0) / n - math.sqrt(pi) / z)) end
  T.ok(err < 0.012, ("temperature 2 frequencies match softmax(l / 2) (max err %.4f)"):format(err))
  -- top_k = 2 renormalizes: .4/.7 and .3/.7
  local c3 = freqs(logits_of(q), {seed = 5, top_k = 2}, n)
  err = math.max(math.abs((c3[0] or 0) / n - 4 / 7), math.abs((c3[1] or 0) / n - 3 / 7))
  T.ok(err < 0.012 and c3[2] == nil and c3[3] == nil, ("top_k = 2 frequencies are renormalized (max err %.4f)"):format(err))
end

-- gl.topk_probs: the k most probable tokens of softmax(logits)
do
  local l = gl.randn{30}
  local probs, ids = gl.topk_probs(l, 5)
  local sp = gl.softmax(l, -1)
  local wantv, wanti = gl.topk(sp, 5)
  T.near(probs, wantv, 1e-6, "topk_probs: probabilities = topk of softmax")
  T.near(ids, wanti, 0, "topk_probs: ids = topk indices (0-based)")
  T.eq(ids:dtype(), "i64", "topk_probs ids are i64")
  T.raises(function() gl.topk_probs(l, 31) end, "out of range", "topk_probs: k > V is an error")
end

-- argument errors name the option
local l4 = gl.tensor{1, 2, 3, 4}
T.raises(function() gl.sample(l4, {top_p = 1.5}) end, "top_p must be in (0, 1]", "top_p out of range")
T.raises(function() gl.sample(l4, {top_p = 0}) end, "top_p", "top_p = 0 is out of range")
T.raises(function() gl.sample(l4, {top_k = -1}) end, "top_k must be >= 0", "negative top_k")
T.raises(function() gl.sample(l4, {top_k = 1.5}) end, "top_k must be an integer", "fractional top_k")
T.raises(function() gl.sample(l4, {temperature = -1}) end, "temperature", "negative temperature")
T.raises(function() gl.sample(l4, {min_p = 2}) end, "min_p", "min_p out of range")
T.raises(function() gl.sample(l4, {repetition_penalty = 0}) end, "repetition_penalty", "zero penalty")
T.raises(function() gl.sample(l4, {topk = 3}) end, "unknown option 'topk'", "unknown options are errors")
T.raises(function() gl.sampler{history = {1}} end, "unknown option 'history'", "a sampler keeps history by accept")
T.raises(function() gl.sample(gl.zeros(2, 4)) end, "one f32 row [V], got f32 [2,4]", "two rows are an error")
T.raises(function() gl.sample(gl.tensor{1, 0 / 0, 2}) end, "logit 1 is NaN", "NaN logits are an error")
T.raises(function() gl.sample(logits_of{0, 0}) end, "every logit is -inf", "all -inf is an error")
T.raises(function() gl.sample(logits_of{0, 0}, {greedy = true}) end, "every logit is -inf", "all -inf is an error (greedy)")
do
  local s = gl.sampler{}
  s:free()
  T.raises(function() s:sample(l4) end, "freed sampler", "use after free raises")
  T.ok(tostring(gl.sampler{top_k = 40, seed = 1}):find("temperature=1 -> top_k=40 -> top_p=1 -> min_p=0 -> sample", 1, true),
    "describe lists the filters in their order")
end

-- a GPT-2-sized vocabulary: top_p sorts only what it needs, and stays exact
do
  gl.seed(3)
  local V = 50257
  local l = gl.randn{V} * 4
  local sorted = gl.sort(gl.softmax(l, -1), -1, {descending = true})
  local cum, nucleus = 0, 0
  repeat
    nucleus = nucleus + 1
    cum = cum + sorted:getflat(nucleus)
  until cum >= 0.9
  local s = gl.sampler{top_p = 0.9, seed = 1}
  local probs = gl.softmax(l, -1)
  local threshold = sorted:getflat(nucleus)
  local inside = true
  local t0 = gl.clock()
  for _ = 1, 100 do inside = inside and probs:getflat(s:sample(l) + 1) >= threshold end
  local per = (gl.clock() - t0) / 100
  T.ok(inside, ("V = %d, top_p = 0.9: every draw is inside the %d-token nucleus"):format(V, nucleus))
  local sk = gl.sampler{top_k = 40, top_p = 0.95, seed = 1}
  t0 = gl.clock()
  for _ = 1, 100 do sk:sample(l) end
  local per_k = (gl.clock() - t0) / 100
  T.ok(per < 0.05 and per_k < 0.05, ("V = %d: %.2f ms per top_p draw, %.2f ms per top_k+top_p draw"):format(V, per * 1e3, per_k * 1e3))
end

-- plain sampling (no top_k/top_p/min_p) takes a shortcut in C; top_k = V takes the general
-- path with nothing filtered, term for term the same arithmetic: the same seed must give the
-- same ids, with -inf logits, temperatures and ties included
do
  local V = 300
  local same, n = true, 0
  for trial = 1, 20 do
    local l = gl.randn{V} * (trial % 4 + 1)
    if trial % 3 == 0 then
      for i = 1, V, 7 do l:setflat(i, -math.huge) end
    end
    if trial % 5 == 0 then l = gl.zeros{V} end -- ties everywhere
    local t = ({ 1, 0.7, 2.5 })[trial % 3 + 1]
    local a, b = gl.sampler{temperature = t, seed = trial}, gl.sampler{temperature = t, top_k = V, seed = trial}
    for _ = 1, 25 do
      local x, y = a:sample(l), b:sample(l)
      same = same and x == y
      n = n + 1
    end
  end
  T.ok(same, ("plain sampling draws the ids of the general path (%d draws)"):format(n))
  local l = gl.full({ 5 }, -math.huge)
  l:setflat(4, 0)
  local one = true
  local s = gl.sampler{seed = 1}
  for _ = 1, 20 do one = one and s:sample(l) == 3 end
  T.ok(one, "plain sampling: the only finite logit (id 3) is always drawn")
  T.raises(function() gl.sampler{seed = 1}:sample(gl.full({ 5 }, -math.huge)) end, "every logit is -inf",
    "plain sampling: every logit -inf is an error")
  -- frequencies of plain sampling follow softmax
  local p = gl.tensor{ 0.0, math.log(2), math.log(5), -math.huge }
  local counts, N = { 0, 0, 0, 0 }, 8000
  local sp = gl.sampler{seed = 77}
  for _ = 1, N do local id = sp:sample(p) counts[id + 1] = counts[id + 1] + 1 end
  T.ok(math.abs(counts[1] / N - 1 / 8) < 0.02 and math.abs(counts[2] / N - 2 / 8) < 0.025
    and math.abs(counts[3] / N - 5 / 8) < 0.025 and counts[4] == 0,
    ("plain sampling frequencies follow softmax (1/8, 2/8, 5/8, 0): %d %d %d %d"):format(table.unpack(counts)))
end

T.done()
