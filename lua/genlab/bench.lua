-- genlab bench: what this machine does with genlab. Run by `genlab bench`
-- (and `make bench`): sgemm GFLOP/s, then the throughput of whole training
-- steps (forward, backward, AdamW) of a small MLP and of a char-level
-- transformer built here from genlab ops, then peak memory.
--
--   genlab bench [--quick] [--threads N] [--json] [--[no-]reference] [--rounds N]
--
-- Times are wall-clock (gl.clock, monotonic): os.clock sums CPU time over
-- threads. Each measurement warms up, then repeats until it has run for a
-- minimum time, so small and large cases are timed equally well.
--
-- The reference is bench/torch_reference.py: the same models and timings
-- in PyTorch, run by /usr/bin/python3 in a child process with the same
-- thread count. Rounds alternate reference and genlab and keep the best of
-- each, so a change in the machine's load hits both sides alike.
local gl = require "genlab"

local M = {}

local usage = [[
usage: genlab bench [--quick] [--threads N] [--json] [--[no-]reference] [--rounds N]
  --quick         small sizes and short timings (seconds, for tests)
  --threads N     OpenMP + BLAS threads (default: GENLAB_THREADS or all cores)
  --json          print the results as one JSON line instead of a table
  --reference     also run the PyTorch reference and print genlab/PyTorch ratios
                  (the default without --quick when /usr/bin/python3 has torch)
  --no-reference  do not run it
  --rounds N      measure N times, alternating with the reference; keep the best
                  (default: 2 with the reference, else 1)
environment: GENLAB_BENCH_REFERENCE (path of torch_reference.py),
             GENLAB_BENCH_PYTHON (interpreter, default /usr/bin/python3)
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
    elseif a == "--reference" or a == "--no-reference" then
      o.reference = a == "--reference"
    elseif a == "--threads" or a == "--rounds" then
      local n = math.tointeger(tonumber(args[i + 1]))
      if not n or n < 1 then return nil, a .. " needs a positive integer" end
      o[a:sub(3)] = n
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

local function count(params)
  local n = 0
  for _, p in ipairs(params) do n = n + p:numel() end
  return n
end

-- One training step of loss_fn. first.loss keeps the loss of the first call
-- (the warm-up, at initialisation): with the parameter count it shows that
-- the reference trains the same model.
local function train_step(opt, loss_fn, first)
  return function()
    opt:zero_grad()
    local loss = loss_fn()
    if not first.loss then first.loss = loss:item() end
    loss:backward()
    opt:step()
  end
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
  local params = { w1, b1, w2, b2 }
  local opt = adamw(params)
  local x, y = gl.randn{ B, D }, gl.randint(0, K, { B })
  local first = {}
  local step = train_step(opt, function()
    return gl.cross_entropy(gl.linear(gl.relu(gl.linear(x, w1, b1)), w2, b2), y)
  end, first)
  local s = time(step, o.quick and 0.1 or 2, o.quick and 1 or 10)
  return B / s, count(params), first.loss
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
  local first = {}
  local step = train_step(opt, function() return gpt_loss(p, cfg, idx, targets, pos, mask) end, first)
  local s = time(step, o.quick and 0.1 or 3, o.quick and 1 or 10)
  return cfg.B * cfg.T / s, count(list), first.loss
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

-- ---- the PyTorch reference ------------------------------------------------------------

-- The reference script: GENLAB_BENCH_REFERENCE, else bench/torch_reference.py
-- in the source tree this file is in (lua/genlab/bench.lua). Returns its
-- path, or nil and why not.
local function reference_script()
  local path = os.getenv("GENLAB_BENCH_REFERENCE")
  if not path or path == "" then
    local src = debug.getinfo(1, "S").source
    local file = src:sub(1, 1) == "@" and src:sub(2)
    if not file then return nil, "bench/torch_reference.py not found (set GENLAB_BENCH_REFERENCE)" end
    path = (file:match("^(.*)/") or ".") .. "/../../bench/torch_reference.py"
  end
  local f = io.open(path)
  if not f then return nil, path .. " not found (set GENLAB_BENCH_REFERENCE)" end
  f:close()
  return path
end

local function shell_quote(s)
  return "'" .. s:gsub("'", [['\'']]) .. "'"
end

-- The reference prints flat objects of strings and numbers (see
-- torch_reference.py), which patterns read.
local function read_flat(obj)
  local t = {}
  for k, v in obj:gmatch('"([%w_]+)":%s*"([^"]*)"') do t[k] = v end
  for k, v in obj:gmatch('"([%w_]+)":%s*([-+%d.eE]+)') do t[k] = tonumber(v) end
  return t
end

-- Runs the reference once in a child process. Returns { torch, threads,
-- results = { ["name|config"] = { value, params, loss } } }, or nil and why.
local function run_reference(script, o, threads)
  local python = os.getenv("GENLAB_BENCH_PYTHON") or "/usr/bin/python3"
  local f = io.popen(("%s %s --threads %d%s 2>&1"):format(shell_quote(python), shell_quote(script), threads,
                                                          o.quick and " --quick" or ""))
  local out = f:read("a")
  local _, how, code = f:close()
  if how == "exit" and code == 127 then return nil, python .. " not found (set GENLAB_BENCH_PYTHON)" end
  local line
  for l in out:gmatch("[^\n]+") do
    if l:sub(1, 1) == "{" then line = l end
  end
  if not line then
    local last = out:match("([^\n]+)\n*$")
    return nil, ("%s %s failed (%s %s)%s"):format(python, script, how == "signal" and "signal" or "exit status", code,
                                                  last and ": " .. last or "")
  end
  local top = read_flat((line:gsub("%b[]", "")))
  if top.error then return nil, top.error end
  local ref = { torch = top.torch, threads = top.threads, results = {} }
  for obj in (line:match('"results":%s*(%b[])') or ""):gmatch("%b{}") do
    local r = read_flat(obj)
    ref.results[r.name .. "|" .. r.config] = r
  end
  return ref
end

-- Folds one run into best: the highest value, the first params and loss.
local function keep_best(best, value, params, loss)
  if value and (not best.value or value > best.value) then best.value = value end
  best.params, best.loss = best.params or params, best.loss or loss
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
  elseif math.type(v) == "integer" then
    return tostring(v)
  elseif type(v) == "number" then
    return (v ~= v or v == math.huge or v == -math.huge) and "null" or ("%.6g"):format(v)
  end
  return tostring(v)
end

local function num(v, f)
  return v and (f or "%.1f"):format(v) or "-"
end

local function print_table(info, rows)
  print(info.system)
  print(("threads: %d%s"):format(info.threads, info.quick and "   (--quick: short timings)" or ""))
  local ref = info.reference
  local with_ref = ref and ref.torch
  if with_ref then
    print(("reference: PyTorch %s (threads %d), best of %d alternating rounds; ratio = genlab / PyTorch, > 1: genlab faster")
      :format(ref.torch, ref.threads, info.rounds))
  end
  if ref and ref.error then print("reference: " .. (with_ref and "a round failed: " or "not run: ") .. ref.error) end
  print()
  local fmt = with_ref and "%-28s %-22s %12s %12s %6s  %s" or "%-28s %-22s %12s  %s"
  local function line(name, config, value, unit, r, ratio)
    if with_ref then return fmt:format(name, config, value, r, ratio, unit) end
    return fmt:format(name, config, value, unit)
  end
  print(line("benchmark", "config", with_ref and "genlab" or "result", "unit", "PyTorch", "ratio"))
  print(line(("-"):rep(28), ("-"):rep(22), ("-"):rep(12), ("-"):rep(9), ("-"):rep(12), ("-"):rep(6)))
  for _, r in ipairs(rows) do
    local rv = r.reference and r.reference.value
    if r.error then
      print(line(r.name, r.config, "failed", r.error, num(rv), "-"))
    else
      print(line(r.name, r.config, num(r.value), r.unit, num(rv), num(r.ratio, "%.2f")))
    end
  end
  -- The same model has the same parameter count, and at initialisation a
  -- loss near ln(classes) (ln 10 = 2.30, ln 65 = 4.17) on random targets.
  print()
  print("model check: parameters, loss of the first step (at initialisation)")
  for _, r in ipairs(rows) do
    if r.params then
      local s = ("  %-26s genlab %9d, %s"):format(r.name, r.params, num(r.loss, "%.4f"))
      local rr = r.reference
      if rr and rr.params then
        s = s .. ("   PyTorch %9d, %s"):format(rr.params, num(rr.loss, "%.4f"))
        if rr.params ~= r.params then s = s .. "   PARAMETER COUNTS DIFFER" end
      end
      print(s)
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

  -- Without --quick the reference runs unless --no-reference; with it, only on --reference.
  local script, why
  if o.reference or (o.reference == nil and not o.quick) then script, why = reference_script() end
  local rounds = o.rounds or ((script and not o.quick) and 2 or 1)
  local best, ref = {}, nil
  for i = 1, #cases do best[i] = {} end
  local round = 1
  while round <= rounds do
    if script then
      local r, e = run_reference(script, o, info.threads)
      if r then
        ref = ref or { torch = r.torch, threads = r.threads, results = {} }
        for key, row in pairs(r.results) do
          ref.results[key] = ref.results[key] or {}
          keep_best(ref.results[key], row.value, row.params, row.loss)
        end
      else
        script, why = nil, e
        if not ref and not o.rounds then rounds = 1 end
      end
    end
    for i, c in ipairs(cases) do
      local ok, value, params, loss = pcall(c.run)
      collectgarbage()
      if ok then keep_best(best[i], value, params, loss) else best[i].error = tostring(value) end
    end
    round = round + 1
  end
  info.rounds = rounds
  if ref or why then info.reference = { torch = ref and ref.torch, threads = ref and ref.threads, error = why } end
  if why and o.json then io.stderr:write("genlab bench: reference: ", why, "\n") end

  local rows, failed = {}, 0
  local function add(row, rate)
    local r = ref and ref.results[row.name .. "|" .. row.config]
    if r then
      row.reference = { value = r.value, params = r.params, loss = r.loss }
      if rate and row.value and r.value > 0 then row.ratio = row.value / r.value end
    end
    rows[#rows + 1] = row
  end
  for i, c in ipairs(cases) do
    local b = best[i]
    local row = { name = c.name, config = c.config, unit = c.unit, value = b.value, params = b.params, loss = b.loss }
    if not b.value then
      row.error = b.error
      failed = failed + 1
    end
    add(row, true)
  end
  local rss, peak = peak_rss(), gl.memory().peak
  if rss then add{ name = "peak RSS", config = "VmHWM", value = rss / 2 ^ 20, unit = "MiB" } end
  add{ name = "peak tensor memory", config = "gl.memory().peak", value = peak / 2 ^ 20, unit = "MiB" }
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
