-- genlab bench: what this machine does with genlab. Run by `genlab bench`
-- (and `make bench`): sgemm GFLOP/s, then the throughput of whole training
-- steps (forward, backward, AdamW) of a small MLP and of a char-level
-- transformer built here from genlab ops, then peak memory.
--
--   genlab bench [--quick] [--threads N] [--json]
--
-- Times are wall-clock (gl.clock, monotonic): os.clock sums CPU time over
-- threads. Each measurement warms up, then repeats until it has run for a
-- minimum time, so small and large cases are timed equally well.
local gl = require "genlab"

local M = {}

local usage = [[
usage: genlab bench [--quick] [--threads N] [--json]
  --quick      small sizes and short timings (seconds, for tests)
  --threads N  OpenMP + BLAS threads (default: GENLAB_THREADS or all cores)
  --json       print the results as one JSON line instead of a table
]]

local function parse(args)
  local o = { quick = false, json = false }
  local i = 1
  while args[i] do
    local a = args[i]
    if a == "--quick" then
      o.quick = true
    elseif a == "--json" then
      o.json = true
    elseif a == "--threads" then
      o.threads = math.tointeger(tonumber(args[i + 1]))
      if not o.threads or o.threads < 1 then return nil, "--threads needs a positive integer" end
      i = i + 1
    elseif a == "--help" or a == "-h" then
      o.help = true
    else
      return nil, "unknown option '" .. a .. "'"
    end
    i = i + 1
  end
  return o
end

-- Runs fn once to warm up, then repeatedly until min_time seconds have
-- passed (at least min_reps times). Returns seconds per call.
local function time(fn, min_time, min_reps)
  fn()
  local reps, t0 = 0, gl.clock()
  local elapsed
  repeat
    fn()
    reps = reps + 1
    elapsed = gl.clock() - t0
  until reps >= min_reps and elapsed >= min_time
  return elapsed / reps
end

-- Leaf parameters: normal(0, std^2) entries, or a constant.
local function param(shape, std)
  local p = gl.randn(shape) * std
  return p:requires_grad_()
end

local function const(shape, value)
  return gl.full(shape, value):requires_grad_()
end

local function adamw(params)
  if not (gl.optim and gl.optim.adamw) then error("needs gl.optim.adamw", 0) end
  return gl.optim.adamw(params, { lr = 1e-3, weight_decay = 0.1 })
end

-- ---- sgemm -------------------------------------------------------------------------

local function bench_sgemm(n, o)
  local a, b = gl.randn{ n, n }, gl.randn{ n, n }
  local s = time(function() gl.matmul(a, b):free() end, o.quick and 0.05 or 0.5, o.quick and 1 or 3)
  a:free(); b:free()
  return 2 * n ^ 3 / s / 1e9
end

-- ---- MLP: 784 -> 256 -> 10, batch 128 ------------------------------------------------

local function bench_mlp(o)
  local B, D, H, K = 128, 784, 256, 10
  local w1, b1 = param({ H, D }, 1 / math.sqrt(D)), const({ H }, 0)
  local w2, b2 = param({ K, H }, 1 / math.sqrt(H)), const({ K }, 0)
  local opt = adamw{ w1, b1, w2, b2 }
  local x, y = gl.randn{ B, D }, gl.randint(0, K, { B })
  local function step()
    opt:zero_grad()
    local loss = gl.cross_entropy(gl.linear(gl.relu(gl.linear(x, w1, b1)), w2, b2), y)
    loss:backward()
    opt:step()
  end
  local s = time(step, o.quick and 0.1 or 2, o.quick and 1 or 10)
  return B / s
end

-- ---- transformer: char-level GPT, pre-LayerNorm, GELU MLP, learned positions ---------

local GPT = { L = 4, C = 128, NH = 4, T = 64, B = 12, V = 65 }
local GPT_QUICK = { L = 2, C = 64, NH = 4, T = 32, B = 4, V = 65 }

local function gpt_params(cfg)
  local C, std = cfg.C, 0.02
  local p = {
    wte = param({ cfg.V, C }, std), wpe = param({ cfg.T, C }, std),
    lnf_w = const({ C }, 1), lnf_b = const({ C }, 0),
    head = param({ cfg.V, C }, std), -- untied from wte
    layers = {},
  }
  local proj_std = std / math.sqrt(2 * cfg.L) -- GPT-2's scaled residual projections
  for l = 1, cfg.L do
    p.layers[l] = {
      ln1_w = const({ C }, 1), ln1_b = const({ C }, 0),
      qkv_w = param({ 3 * C, C }, std), qkv_b = const({ 3 * C }, 0),
      proj_w = param({ C, C }, proj_std), proj_b = const({ C }, 0),
      ln2_w = const({ C }, 1), ln2_b = const({ C }, 0),
      fc_w = param({ 4 * C, C }, std), fc_b = const({ 4 * C }, 0),
      fc2_w = param({ C, 4 * C }, proj_std), fc2_b = const({ C }, 0),
    }
  end
  local list = { p.wte, p.wpe, p.lnf_w, p.lnf_b, p.head }
  for _, layer in ipairs(p.layers) do
    for _, k in ipairs{ "ln1_w", "ln1_b", "qkv_w", "qkv_b", "proj_w", "proj_b",
                        "ln2_w", "ln2_b", "fc_w", "fc_b", "fc2_w", "fc2_b" } do
      list[#list + 1] = layer[k]
    end
  end
  return p, list
end

-- idx, targets: i64 [B, T] -> mean cross-entropy. Dropout is present with p = 0.
local function gpt_loss(p, cfg, idx, targets, pos, mask)
  local B, T, C, NH = cfg.B, cfg.T, cfg.C, cfg.NH
  local HS = C // NH
  local x = gl.dropout(gl.embedding(p.wte, idx) + gl.embedding(p.wpe, pos), 0) -- [B, T, C]
  for _, l in ipairs(p.layers) do
    local h = gl.layer_norm(x, l.ln1_w, l.ln1_b)
    local q, k, v = table.unpack(gl.split(gl.linear(h, l.qkv_w, l.qkv_b), C, -1))
    q = q:reshape{ B, T, NH, HS }:transpose(2, 3) -- [B, NH, T, HS]
    k = k:reshape{ B, T, NH, HS }:transpose(2, 3)
    v = v:reshape{ B, T, NH, HS }:transpose(2, 3)
    local att = gl.matmul(q, k:transpose(-2, -1)) * (1 / math.sqrt(HS)) -- [B, NH, T, T]
    att = gl.dropout(gl.softmax(gl.masked_fill(att, mask, -math.huge), -1), 0)
    local y = gl.matmul(att, v):transpose(2, 3):reshape{ B, T, C }
    x = x + gl.dropout(gl.linear(y, l.proj_w, l.proj_b), 0)
    h = gl.layer_norm(x, l.ln2_w, l.ln2_b)
    x = x + gl.dropout(gl.linear(gl.gelu(gl.linear(h, l.fc_w, l.fc_b)), l.fc2_w, l.fc2_b), 0)
  end
  local logits = gl.linear(gl.layer_norm(x, p.lnf_w, p.lnf_b), p.head) -- [B, T, V]
  return gl.cross_entropy(logits:reshape{ B * T, cfg.V }, targets:reshape{ B * T })
end

local function bench_gpt(cfg, o)
  local p, list = gpt_params(cfg)
  local opt = adamw(list)
  local idx, targets = gl.randint(0, cfg.V, { cfg.B, cfg.T }), gl.randint(0, cfg.V, { cfg.B, cfg.T })
  local pos = gl.arange(cfg.T, { dtype = "i64" })
  local mask = gl.triu(gl.ones{ cfg.T, cfg.T }, 1) -- 1 above the diagonal: the future
  local function step()
    opt:zero_grad()
    gpt_loss(p, cfg, idx, targets, pos, mask):backward()
    opt:step()
  end
  local s = time(step, o.quick and 0.1 or 3, o.quick and 1 or 10)
  return cfg.B * cfg.T / s
end

-- ---- memory -------------------------------------------------------------------------------

-- Peak resident set size in bytes (Linux), or nil.
local function peak_rss()
  local f = io.open("/proc/self/status")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  local kb = s:match("VmHWM:%s*(%d+)%s*kB")
  return kb and tonumber(kb) * 1024 or nil
end

-- ---- output ------------------------------------------------------------------------------

local function json_value(v)
  if type(v) == "table" then
    local parts = {}
    if #v > 0 then
      for i = 1, #v do parts[i] = json_value(v[i]) end
      return "[" .. table.concat(parts, ",") .. "]"
    end
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    table.sort(keys)
    for i, k in ipairs(keys) do parts[i] = json_value(k) .. ":" .. json_value(v[k]) end
    return "{" .. table.concat(parts, ",") .. "}"
  elseif type(v) == "string" then
    return '"' .. v:gsub('[%c"\\]', function(c)
      return c == '"' and '\\"' or c == "\\" and "\\\\" or ("\\u%04x"):format(c:byte())
    end) .. '"'
  elseif type(v) == "number" then
    return v ~= v and "null" or ("%.6g"):format(v)
  end
  return tostring(v)
end

local function print_table(info, rows)
  print(info.system)
  print(("threads: %d%s"):format(info.threads, info.quick and "   (--quick: short timings)" or ""))
  print()
  local fmt = "%-28s %-22s %12s  %s"
  print(fmt:format("benchmark", "config", "result", "unit"))
  print(fmt:format(("-"):rep(28), ("-"):rep(22), ("-"):rep(12), ("-"):rep(9)))
  for _, r in ipairs(rows) do
    if r.error then
      print(fmt:format(r.name, r.config, "failed", r.error))
    else
      print(fmt:format(r.name, r.config, ("%.1f"):format(r.value), r.unit))
    end
  end
end

function M.main(args)
  local o, err = parse(args or {})
  if not o or o.help then
    io.stderr:write(err and ("genlab bench: " .. err .. "\n") or "", usage)
    os.exit(o and 0 or 2)
  end
  if o.threads then gl.threads(o.threads) end
  local info = { system = gl.system_info(), threads = gl.threads(), quick = o.quick }
  local cases = {}
  local sizes = o.quick and { 256, 512, 1024 } or { 256, 512, 1024, 2048 }
  for _, n in ipairs(sizes) do
    cases[#cases + 1] = { name = "sgemm", config = ("%dx%dx%d"):format(n, n, n), unit = "GFLOP/s",
                          run = function() return bench_sgemm(n, o) end }
  end
  cases[#cases + 1] = { name = "mlp train step (AdamW)", config = "784-256-10 B128", unit = "samples/s",
                        run = function() return bench_mlp(o) end }
  local gpt = o.quick and GPT_QUICK or GPT
  cases[#cases + 1] = {
    name = "gpt train step (AdamW)", unit = "tokens/s",
    config = ("L%d C%d NH%d T%d B%d V%d"):format(gpt.L, gpt.C, gpt.NH, gpt.T, gpt.B, gpt.V),
    run = function() return bench_gpt(gpt, o) end,
  }
  local rows, failed = {}, 0
  for _, c in ipairs(cases) do
    local ok, value = pcall(c.run)
    collectgarbage()
    local row = { name = c.name, config = c.config, unit = c.unit }
    if ok then
      row.value = value
    else
      row.error = tostring(value)
      failed = failed + 1
    end
    rows[#rows + 1] = row
  end
  local rss, peak = peak_rss(), gl.memory().peak
  if rss then rows[#rows + 1] = { name = "peak RSS", config = "VmHWM", value = rss / 2 ^ 20, unit = "MiB" } end
  rows[#rows + 1] = { name = "peak tensor memory", config = "gl.memory().peak", value = peak / 2 ^ 20, unit = "MiB" }
  if o.json then
    info.results = rows
    print(json_value(info))
  else
    print_table(info, rows)
  end
  if failed > 0 then
    io.stderr:write(("genlab bench: %d of %d benchmarks failed\n"):format(failed, #cases))
    os.exit(1, true)
  end
end

return M
