-- genlab bench: what this machine does with genlab. Run by `genlab bench`
-- (and `make bench`): sgemm GFLOP/s, then the throughput of whole training
-- steps (forward, backward, AdamW) of a small MLP and of a char-level
-- transformer built here from genlab ops, then peak memory. Two subcommands
-- measure the C GPT model (gl.models.gpt), see "train-gpt and generate" below:
--
--   genlab bench [--quick] [--threads N] [--json] [--[no-]reference] [--rounds N]
--   genlab bench train-gpt | generate [same options] [--only NAME]
--   genlab bench images [same options] [--only NAME]   (lua/genlab/bench_images.lua)
--
-- Times are wall-clock (gl.clock, monotonic): os.clock sums CPU time over
-- threads. Each measurement warms up, then repeats until it has run for a
-- minimum time, so small and large cases are timed equally well.
--
-- The reference is bench/torch_reference.py: the same models and timings
-- in PyTorch, run by /usr/bin/python3 in a child process with the same
-- thread count. Rounds alternate reference and genlab and keep the best of
-- each, so a change in the machine's load hits both sides alike. `bench
-- generate` also compiles and runs bench/llama2c_reference.c, llama2.c's
-- forward pass, for its stories15M / stories110M rows.
local gl = require "genlab"

local M = {}

local usage = [[
usage: genlab bench [--quick] [--threads N] [--json] [--[no-]reference] [--rounds N]
       genlab bench train-gpt [same options] [--only nanogpt|baby]
       genlab bench generate [same options] [--only stories15M|stories110M|char|baby-char]
       genlab bench images [same options] [--only vae|dcgan|unet|ddim]
  (none)          sgemm, an MLP and a Lua-composed char transformer
  train-gpt       training steps of the C GPT: nanoGPT's CPU configuration and
                  the baby GPT (ms/iteration, tokens/s, GFLOP/s, peak RSS)
  generate        tokens/s generating 256 tokens: llama2.c stories15M/110M
                  shapes, the char GPT and the baby GPT with their KV caches
  images          images/s of training steps of the MLP VAE, the 28x28 DCGAN
                  and the small UNet, and of DDIM sampling (16 images, 50
                  steps); lua/genlab/bench_images.lua, bench/torch_images.py
  --quick         small sizes and short timings (seconds, for tests); the
                  subcommands skip the baby GPT and stories110M
  --threads N     OpenMP + BLAS threads (default: GENLAB_THREADS or all cores;
                  the subcommands: GENLAB_THREADS, else both 1 and 2)
  --only NAME     subcommands: measure that model only
  --json          print the results as one JSON line instead of a table
  --reference     also run the PyTorch reference and print genlab/PyTorch ratios
                  (the default without --quick when /usr/bin/python3 has torch);
                  generate: llama2.c's forward pass beside the stories rows
  --no-reference  do not run it
  --rounds N      measure N times, alternating with the reference; keep the best
                  (default: 2 with the reference, else 1)
environment: GENLAB_BENCH_REFERENCE (path of torch_reference.py),
             GENLAB_BENCH_IMAGES_REFERENCE (path of torch_images.py),
             GENLAB_BENCH_PYTHON (interpreter, default /usr/bin/python3),
             GENLAB_BENCH_LLAMA2C (path of llama2c_reference.c),
             CC (its C compiler, default cc)
]]

local function parse(args, sub)
  local o = { quick = false, json = false }
  local i = 1
  while args[i] do
    local a = args[i]
    if sub and a == "--only" then
      if not args[i + 1] then return nil, "--only needs a model name" end
      o.only = args[i + 1]
      i = i + 1
    elseif sub and a == "--child" then
      o.child = true -- internal: measure --only in this process, print one JSON line
    elseif a == "--quick" then
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

-- Runs warm (default fn) once to warm up, then fn repeatedly until min_time
-- seconds have passed (at least min_reps times). Returns seconds per call,
-- and the CPU seconds per wall second from the warm-up on.
local function time(fn, min_time, min_reps, warm)
  local w0, c0 = gl.clock(), os.clock()
  ;(warm or fn)()
  local reps, t0 = 0, gl.clock()
  local elapsed
  repeat
    fn()
    reps = reps + 1
    elapsed = gl.clock() - t0
  until reps >= min_reps and elapsed >= min_time
  return elapsed / reps, (os.clock() - c0) / (gl.clock() - w0)
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

-- A reference script: the path in environment variable env, else
-- bench/<name> in the source tree this file is in (lua/genlab/). Returns
-- its path, or nil and why not.
local function reference_script(env, name)
  local path = os.getenv(env)
  if not path or path == "" then
    local file = debug.getinfo(1, "S").source:match("^@(.*)$")
    if not file then return nil, ("bench/%s not found (set %s)"):format(name, env) end
    path = (file:match("^(.*)/") or ".") .. "/../../bench/" .. name
  end
  local f = io.open(path)
  if not f then return nil, ("%s not found (set %s)"):format(path, env) end
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

-- Runs command (its arguments quoted) in a child process that prints one
-- JSON line {..., "results": [{flat}, ...]} (torch_reference.py, or genlab
-- bench --child). Returns the top-level fields and the list of results, or
-- nil and why; what names the program in messages, missing is the message
-- when the shell cannot find it.
local function run_json_child(command, what, missing)
  local f = io.popen(command .. " 2>&1")
  local out = f:read("a")
  local _, how, code = f:close()
  if how == "exit" and code == 127 then return nil, missing end
  local line
  for l in out:gmatch("[^\n]+") do
    if l:sub(1, 1) == "{" then line = l end
  end
  if not line then
    local last = out:match("([^\n]+)\n*$")
    return nil, ("%s failed (%s %s)%s"):format(what, how == "signal" and "signal" or "exit status", code,
                                               last and ": " .. last or "")
  end
  local top = read_flat((line:gsub("%b[]", "")))
  if top.error then return nil, top.error end
  local results = {}
  for obj in (line:match('"results":%s*(%b[])') or ""):gmatch("%b{}") do results[#results + 1] = read_flat(obj) end
  return top, results
end

local function python_path() return os.getenv("GENLAB_BENCH_PYTHON") or "/usr/bin/python3" end

-- Runs the reference once in a child process (extra: more arguments, quoted).
-- Returns the top-level fields and the results, or nil and why.
local function run_torch(script, o, threads, extra)
  local python = python_path()
  return run_json_child(("%s %s%s --threads %d%s"):format(shell_quote(python), shell_quote(script), extra or "",
                                                          threads, o.quick and " --quick" or ""),
                        python .. " " .. script, python .. " not found (set GENLAB_BENCH_PYTHON)")
end

-- Runs the default reference once. Returns { torch, threads,
-- results = { ["name|config"] = { value, params, loss } } }, or nil and why.
local function run_reference(script, o, threads)
  local top, results = run_torch(script, o, threads)
  if not top then return nil, results end
  local ref = { torch = top.torch, threads = top.threads, results = {} }
  for _, r in ipairs(results) do ref.results[r.name .. "|" .. r.config] = r end
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

-- ---- train-gpt and generate: the C GPT model (gl.models.gpt) ----------------------
--
-- Each measurement (one model, one side, one thread count) runs in a fresh
-- child process, so the peak RSS (VmHWM) it reports is that model's alone:
-- `genlab bench <sub> --child --only NAME --threads N` (this binary, found
-- through /proc) for genlab, `torch_reference.py <sub> --only NAME --threads N`
-- for PyTorch. Per model and thread count, rounds alternate PyTorch and
-- genlab (A B A B) and keep the best of each side; the "best" row compares
-- each side at its best thread count.
--
-- train-gpt: nanoGPT's train.py step on a fixed random batch: forward + loss,
-- backward, clip_grad_norm(1.0), AdamW (lr 1e-3, betas 0.9/0.99, weight decay
-- 0.1 on 2-D parameters only), zero_grad. GPT-2 layout as nanoGPT: biases,
-- exact GELU, tied head. Achieved GFLOP/s uses nanoGPT's estimate_mfu count,
-- per step (6 N + 12 L C T) * T * B, N the parameters without the position
-- embedding (the tied head counted once): 6 N for the forward and backward
-- matmuls over the weights, 12 L C T for attention's QK^T and AV products,
-- counted over the full T x T square although the causal half is masked.
--
-- generate: gl.generate from a one-token prompt, 256 new tokens, temperature
-- 1 without filters (with random weights the distribution is near uniform,
-- where top-p would sort the whole vocabulary: not what trained weights cost).
-- tokens/s = tokens / (prompt + generation time). The char models have a
-- shorter context than 256: gl.generate refills the cache with its last
-- half when full, and torch_reference.py does the same with a hand-written
-- cache. The llama2.c rows' reference is bench/llama2c_reference.c (see
-- llama2c_reference below), run in the same rounds; issue 3's static run.c
-- -Ofast figures (trained stories15M / stories110M checkpoints on this
-- machine's kind) are shown beside it, and judge the goals when it cannot run.
--
-- --json prints {system, subcommand, quick, rounds, threads = {...}, genlab
-- (the executable), reference = {torch, error}, llama2c = {compiler, error}
-- (generate, with the references on, for llama2.c rows), goals = {{goal,
-- met, value}} (full sizes only), results = {row...}}; a row is {model,
-- label, config, threads (a count, or "best": each side at its best count),
-- genlab = side, pytorch = side, llama2c = side (the llama2.c reference),
-- ratio (tokens/s, genlab / the reference: PyTorch, or llama2.c), mem_ratio
-- (peak RSS, likewise), static_ratio and static_mem_ratio (train-gpt without
-- the reference: against PyTorch's static figures), llama2c_static (issue
-- 3's run.c tokens/s, full sizes), error}, a side {tokens_per_s, ms (per
-- step or per generation), gflops, peak_rss_mib, tensor_peak_mib (train-gpt:
-- the peak of live tensor bytes), params, loss (first step), threads, cpu
-- (CPU seconds per wall second while measured)}.

local GPT_TINY = { n_layer = 2, n_head = 2, n_embd = 32, block = 16, batch = 4, vocab = 65, dropout = 0 }
local LLAMA_TINY = { arch = "llama", vocab = 512, block = 64, n_layer = 2, n_head = 4, n_embd = 64, n_hidden = 128,
                     tie_head = true }

-- Sizes and timings mirror GPT_MODELS / TRAIN_TIMING in torch_reference.py.
-- torch_static: PyTorch 1.13's figures on this machine's kind (issue 3),
-- against which the goals are judged when the reference cannot run here
-- (ms per step at its best thread count; peak RSS, 8 GB read as 8e9 bytes).
local GPT_TRAIN = {
  { name = "nanogpt", label = "nanoGPT CPU config", min_time = 3, min_reps = 10, reference = true,
    torch_static = { ms = 53 },
    cfg = { n_layer = 4, n_head = 4, n_embd = 128, block = 64, batch = 12, vocab = 65, dropout = 0 } },
  -- PyTorch takes ~16 s a step: a warm-up and 2 timed steps
  { name = "baby", label = "baby GPT", min_time = 0, min_reps = 2, reference = true, slow = true,
    torch_static = { ms = 15800, rss_mib = 8e9 / 2 ^ 20 },
    cfg = { n_layer = 6, n_head = 6, n_embd = 384, block = 256, batch = 64, vocab = 65, dropout = 0.2 } },
}
local function train_cfg(name)
  for _, m in ipairs(GPT_TRAIN) do
    if m.name == name then return m.cfg end
  end
end

-- llama2c: a llama2.c shape, which llama2c_reference runs; the numbers are
-- issue 3's run.c tokens/s by thread count (static figures).
local GPT_GENERATE = {
  { name = "stories15M", label = "llama2.c stories15M shape", tokens = 256, llama2c = { 325, 490 },
    tiny = LLAMA_TINY, tiny_tokens = 32,
    cfg = { arch = "llama", vocab = 32000, block = 256, n_layer = 6, n_head = 6, n_embd = 288, n_hidden = 768,
            tie_head = true } },
  { name = "stories110M", label = "llama2.c stories110M shape", tokens = 256, llama2c = { 52, 79 }, slow = true,
    cfg = { arch = "llama", vocab = 32000, block = 1024, n_layer = 12, n_head = 12, n_embd = 768, n_hidden = 2048,
            tie_head = true } },
  { name = "char", label = "char GPT (nanoGPT CPU config), KV cache", tokens = 256, reference = true,
    tiny = GPT_TINY, tiny_tokens = 40, cfg = train_cfg("nanogpt") },
  { name = "baby-char", label = "baby GPT, KV cache", tokens = 256, reference = true, slow = true,
    cfg = train_cfg("baby") },
}

local function gpt_config_str(c)
  if c.arch == "llama" then
    return ("llama L%d NH%d C%d F%d T%d V%d"):format(c.n_layer, c.n_head, c.n_embd, c.n_hidden, c.block, c.vocab)
  end
  return ("L%d NH%d C%d T%d B%d V%d dropout %g"):format(c.n_layer, c.n_head, c.n_embd, c.block, c.batch, c.vocab,
                                                        c.dropout)
end

local function gpt_model(c)
  local cfg = {}
  for k, v in pairs(c) do
    if k ~= "batch" then cfg[k] = v end
  end
  return gl.models.gpt(cfg)
end

-- The child's measurements: { ms, value (tokens/s), params [, loss, flops] }.
local function child_train(m, o)
  local c = o.quick and GPT_TINY or m.cfg
  local model = gpt_model(c)
  local decay, rest = {}, {}
  for _, p in ipairs(model:parameters()) do
    local list = p:dim() >= 2 and decay or rest
    list[#list + 1] = p
  end
  local opt = gl.optim.adamw({ { params = decay, weight_decay = 0.1 }, { params = rest, weight_decay = 0 } },
                             { lr = 1e-3, betas = { 0.9, 0.99 } })
  local B, T, V = c.batch, c.block, c.vocab
  local x, y = gl.randint(0, V, { B, T }), gl.randint(0, V, { B, T })
  local first
  local s, cpu = time(function()
    local loss = model:forward_backward(x, y) -- as gl.train steps a GPT
    first = first or loss
    gl.optim.clip_grad_norm(model, 1.0)
    opt:step()
    opt:zero_grad()
  end, o.quick and 0.1 or m.min_time, o.quick and 1 or m.min_reps)
  local params = model:num_parameters()
  local n = params - T * c.n_embd -- without the position embedding
  return { config = gpt_config_str(c), ms = s * 1e3, value = B * T / s, params = params, loss = first,
           flops = (6 * n + 12 * c.n_layer * c.n_embd * T) * T * B, cpu = cpu,
           tensor_peak_mib = gl.memory().peak / 2 ^ 20 }
end

-- A generate model's config, new tokens and minimum timing for options o.
local function generate_shape(m, o)
  if o.quick then return m.tiny, m.tiny_tokens, 0.05 end
  return m.cfg, m.tokens, 1
end

local function child_generate(m, o)
  local c, n, min_time = generate_shape(m, o)
  local model = gpt_model(c)
  model:eval()
  local prompt = { c.arch == "llama" and 1 or 0 } -- llama2.c starts from BOS (1)
  local s, cpu = time(function() gl.generate(model, prompt, { max_new = n, seed = 1 }) end, min_time, 1)
  return { config = ("%s, %d tokens"):format(gpt_config_str(c), n), ms = s * 1e3, value = n / s,
           params = model:num_parameters(), cpu = cpu }
end

-- ---- generate's llama2.c reference ---------------------------------------------------
--
-- bench/llama2c_reference.c (or GENLAB_BENCH_LLAMA2C) is run.c's forward
-- pass and sampling on random weights of a llama2.c row's shape, timed as
-- child_generate times gl.generate. It is compiled once per bench run the
-- way issue 3's figures were built, with $CC (a command line, as make takes
-- it; default cc), into a temporary directory.
local LLAMA2C_FLAGS = "-Ofast -march=native -fopenmp"

-- Compiles the reference with cc (the compiler's command line). Returns
-- the temporary directory and the executable, or nil and a one-line reason.
local function llama2c_build(cc)
  local src, why = reference_script("GENLAB_BENCH_LLAMA2C", "llama2c_reference.c")
  if not src then return nil, why end
  local f = io.popen("mktemp -d 2>/dev/null")
  local dir = f:read("l")
  f:close()
  if not dir or dir == "" then return nil, "mktemp -d failed" end
  local exe = dir .. "/llama2c_reference"
  local command = ("%s %s -o %s %s -lm"):format(cc, LLAMA2C_FLAGS, shell_quote(exe), shell_quote(src))
  f = io.popen(("sh -c %s 2>&1"):format(shell_quote(command))) -- a shell error in cc is output too
  local out = f:read("a")
  local _, how, code = f:close()
  if how == "exit" and code == 0 then return dir, exe end
  os.remove(dir)
  if how == "exit" and code == 127 then return nil, cc .. " not found (set CC)" end
  local line = out:match("[^\n]*error[^\n]*") or out:match("([^\n]+)\n*$")
  return nil, ("%s %s failed%s"):format(cc, LLAMA2C_FLAGS, line and ": " .. line or "")
end

-- The llama2.c reference as measure_rounds' native argument: run(m, t)
-- compiles the program on first use, then measures model m on t threads
-- (OMP_NUM_THREADS) and returns run_json_child's answer; nothing for a
-- model without a llama2.c shape. close() removes the program.
local function llama2c_reference(o)
  local cc = os.getenv("CC") or "cc"
  local ref = { label = "llama2.c", compiler = cc .. " " .. LLAMA2C_FLAGS }
  local dir, exe -- after a failed build: nil, and the reason in exe
  function ref.run(m, t)
    if not m.llama2c then return end
    if exe == nil then dir, exe = llama2c_build(cc) end
    if not dir then return nil, exe end
    local c, n, min_time = generate_shape(m, o)
    return run_json_child(("OMP_NUM_THREADS=%d %s %d %d %d %d %d %d %d %g"):format(t, shell_quote(exe), c.n_embd,
      c.n_hidden, c.n_layer, c.n_head, c.vocab, c.block, n, min_time), "llama2c_reference", exe .. " not found")
  end
  function ref.close()
    if dir then
      os.remove(exe)
      os.remove(dir)
    end
  end
  return ref
end

-- This program's executable (the shell's parent, $PPID, is this process),
-- or nil and why. The children are `genlab bench`, so a Lua interpreter
-- that loaded genlab as a module cannot start them.
local function self_exe()
  local f = io.popen("readlink /proc/$PPID/exe 2>/dev/null")
  local path = f and f:read("l")
  if f then f:close() end
  if not path or path == "" then return nil, "cannot find the genlab executable in /proc" end
  if not path:match("genlab[^/]*$") then return nil, "run by " .. path .. ", not genlab: run `genlab bench`" end
  return path
end

-- Folds one child's result r into best: the run with the highest value, the
-- highest peak RSS of all runs, the first params and loss.
local function fold(best, r, threads)
  if r.value and (not best.value or r.value > best.value) then
    best.value, best.ms, best.flops, best.threads, best.cpu = r.value, r.ms, r.flops, threads, r.cpu
  end
  if r.rss_mib and (not best.rss_mib or r.rss_mib > best.rss_mib) then best.rss_mib = r.rss_mib end
  if r.tensor_peak_mib and (not best.tensor_mib or r.tensor_peak_mib > best.tensor_mib) then
    best.tensor_mib = r.tensor_peak_mib
  end
  best.params, best.loss, best.config = best.params or r.params, best.loss or r.loss, best.config or r.config
end

-- A side of a result row, with the names the JSON output documents.
local function side(b)
  if not b or not b.value then return nil end
  return { tokens_per_s = b.value, ms = b.ms, gflops = b.flops and b.flops / (b.ms / 1e3) / 1e9,
           peak_rss_mib = b.rss_mib, tensor_peak_mib = b.tensor_mib, params = b.params, loss = b.loss,
           threads = b.threads, cpu = b.cpu }
end

local function best_of(per_thread, threads)
  local best = {}
  for _, t in ipairs(threads) do
    local b = per_thread[t]
    if b and b.value and (not best.value or b.value > best.value) then best = b end
  end
  return best
end

local function suite_models(sub, o)
  local list, names = {}, {}
  for _, m in ipairs(sub == "train-gpt" and GPT_TRAIN or GPT_GENERATE) do
    names[#names + 1] = m.name
    if (o.only == m.name) or (not o.only and not (o.quick and m.slow)) then list[#list + 1] = m end
  end
  if o.only and #list == 0 then return nil, ("unknown model '%s' (%s)"):format(o.only, table.concat(names, ", ")) end
  if o.only and o.quick and list[1].slow then return nil, o.only .. " has no --quick size" end
  return list
end

local function print_gpt_table(sub, info, rows)
  print(info.system)
  print(("genlab %s: each model, side and thread count in a fresh process; best of %d round%s%s")
    :format(sub, info.rounds, info.rounds > 1 and "s" or "", info.quick and "   (--quick: tiny sizes)" or ""))
  local ref, l2 = info.reference, info.llama2c
  if ref and ref.torch then
    print(("reference: PyTorch %s, rounds alternate PyTorch and genlab; speed = genlab / PyTorch tokens/s (> 1: "
      .. "genlab faster)%s"):format(ref.torch, sub == "train-gpt" and ", memory = genlab / PyTorch peak RSS" or ""))
  end
  if ref and ref.error then print("reference: " .. (ref.torch and "a run failed: " or "not run: ") .. ref.error) end
  if l2 then
    local ran = false
    for _, r in ipairs(rows) do ran = ran or r.llama2c ~= nil end
    if ran then
      print(("reference: llama2.c's forward pass for its shapes (bench/llama2c_reference.c, %s), rounds "
        .. "alternate it and genlab; speed = genlab / llama2.c tokens/s"):format(l2.compiler))
    end
    if l2.error then print(("reference: llama2.c %s: %s"):format(ran and "a run failed" or "not run", l2.error)) end
  end
  print()
  local hdr, fmt
  if sub == "train-gpt" then
    fmt = "%-10s %-9s | %9s %9s %8s %8s %4s | %9s %9s %8s %8s %4s | %6s %6s"
    hdr = fmt:format("model", "threads", "ms/it", "tokens/s", "GFLOP/s", "RSS MiB", "CPU", "ms/it", "tokens/s",
                     "GFLOP/s", "RSS MiB", "CPU", "speed", "memory")
    print(("%-20s | %-43s | %-43s |"):format("", "genlab", "PyTorch"))
  else
    fmt = "%-12s %-9s | %9s %8s %4s | %-8s %9s %8s %4s | %6s | %s"
    hdr = fmt:format("model", "threads", "tokens/s", "RSS MiB", "CPU", "which", "tokens/s", "RSS MiB", "CPU", "speed",
                     "tokens/s")
    print(("%-22s | %-23s | %-32s |        | %s"):format("", "genlab", "reference", "llama2.c, issue 3"))
  end
  print(hdr)
  print((hdr:gsub("[^|]", "-")))
  for _, r in ipairs(rows) do
    local g, p = r.genlab or {}, r.pytorch or r.llama2c or {}
    local th = tostring(r.threads)
    if r.threads == "best" then th = ("best %s/%s"):format(g.threads or "-", p.threads or "-") end
    local gv = r.error and "failed" or num(g.tokens_per_s)
    if sub == "train-gpt" then
      print(fmt:format(r.model, th, num(g.ms), gv, num(g.gflops, "%.2f"), num(g.peak_rss_mib, "%.0f"),
                       num(g.cpu, "%.2f"), num(p.ms), num(p.tokens_per_s), num(p.gflops, "%.2f"),
                       num(p.peak_rss_mib, "%.0f"), num(p.cpu, "%.2f"), num(r.ratio, "%.2f"), num(r.mem_ratio, "%.3f")))
    else
      local which = r.pytorch and "PyTorch" or r.llama2c and "llama2.c" or "-"
      print(fmt:format(r.model, th, gv, num(g.peak_rss_mib, "%.0f"), num(g.cpu, "%.2f"), which, num(p.tokens_per_s),
                       num(p.peak_rss_mib, "%.0f"), num(p.cpu, "%.2f"), num(r.ratio, "%.2f"),
                       num(r.llama2c_static, "%.0f")))
    end
    if r.error then print("  error: " .. r.error) end
  end
  for _, r in ipairs(rows) do
    if r.static_ratio then
      print(("%-10s %-9s | PyTorch not run; against its static figures (issue 3): speed %.2f%s"):format(r.model,
        tostring(r.threads), r.static_ratio, r.static_mem_ratio and (", memory %.3f"):format(r.static_mem_ratio) or ""))
    end
  end
  print()
  print(sub == "train-gpt" and "models (params; loss of the first step at initialisation, near ln 65 = 4.17):"
    or "models (params):")
  local seen = {}
  for _, r in ipairs(rows) do
    if not seen[r.model] then
      seen[r.model] = true
      local g, p = r.genlab or {}, r.pytorch or r.llama2c or {}
      local s = ("  %-11s %s: %s; genlab %s"):format(r.model, r.label, r.config, num(g.params, "%d"))
      if g.loss then s = s .. (", %.4f"):format(g.loss) end
      if g.tensor_peak_mib then s = s .. (", tensors' peak %.0f MiB"):format(g.tensor_peak_mib) end
      if p.params then
        s = s .. ("; %s %d"):format(r.pytorch and "PyTorch" or "llama2.c", p.params)
        if p.loss then s = s .. (", %.4f"):format(p.loss) end
        if p.params ~= g.params and g.params then s = s .. "  PARAMETER COUNTS DIFFER" end
      end
      print(s)
    end
  end
  if #info.threads > 1 then print("  best G/R: each side at its best thread count, genlab's G, the reference's R") end
  print("  CPU: the process's CPU seconds per wall second while measured (1 = one busy core; under 1 thread's"
    .. " count: the machine's load took the rest)")
  if sub == "train-gpt" then
    print("  GFLOP/s: nanoGPT's estimate, (6 N + 12 L C T) T B per step, N = parameters without wpe")
  else
    print("  generation: one-token prompt, the new tokens above, temperature 1, no top-k/top-p; llama2.c, issue 3:"
      .. " run.c -Ofast on trained weights, 1 / 2 threads")
  end
  if info.goals then
    print()
    for _, g in ipairs(info.goals) do print(("goal: %-58s %s"):format(g.goal, g.met and "met" or "NOT met")) end
  end
end

-- The interleaved measurement of the subcommands (train-gpt, generate,
-- images): each model on each thread count for `rounds` rounds, the PyTorch
-- reference (when script is set and ref_args(m) gives its arguments) and
-- genlab alternating, each in a fresh process, every side's best kept in
-- best[model name][side][threads]. A failing reference stops the others.
-- native (generate only; see llama2c_reference) is a second reference,
-- run before PyTorch in each round: its best goes to side "native", and a
-- failure stops it and sets native.error.
-- Returns best, threads, rounds, exe, and the reference's torch and why.
local function measure_rounds(sub, models, o, script, why, ref_args, unit, fmt, native)
  local threads
  if o.threads then
    threads = { o.threads }
  elseif math.tointeger(tonumber(os.getenv("GENLAB_THREADS") or "")) then
    threads = { gl.threads() }
  else
    threads = { 1, 2 }
  end
  local exe, why_exe = self_exe()
  if not exe then
    io.stderr:write("genlab bench ", sub, ": ", why_exe, "\n")
    os.exit(1)
  end
  local rounds = o.rounds or (((script or native) and not o.quick) and 2 or 1)
  local torch
  local best = {}
  for _, m in ipairs(models) do
    best[m.name] = { genlab = {}, pytorch = {}, native = {} }
    for _, t in ipairs(threads) do
      local bg, bp, bn = {}, {}, {}
      best[m.name].genlab[t], best[m.name].pytorch[t], best[m.name].native[t] = bg, bp, bn
      for round = 1, rounds do
        local line = {}
        if native and not native.error then
          local top, res = native.run(m, t)
          if top then
            fold(bn, res[1] or {}, t)
            line[#line + 1] = ("%s %s %s"):format(native.label, num(res[1] and res[1].value, fmt), unit)
          elseif res then
            native.error = res
          end
        end
        local extra = script and ref_args(m)
        if extra then
          local top, res = run_torch(script, o, t, extra)
          if top then
            torch = torch or top.torch
            fold(bp, res[1] or {}, t)
            line[#line + 1] = ("PyTorch %s %s"):format(num(res[1] and res[1].value, fmt), unit)
          else
            script, why = nil, res
          end
        end
        local top, res = run_json_child(("%s bench %s --child --only %s --threads %d%s"):format(
          shell_quote(exe), sub, shell_quote(m.name), t, o.quick and " --quick" or ""), "genlab bench --child",
          exe .. " not found")
        if top then
          fold(bg, res[1] or {}, t)
          line[#line + 1] = ("genlab %s %s"):format(num(res[1] and res[1].value, fmt), unit)
        else
          bg.error = res
          line[#line + 1] = "genlab failed: " .. res
        end
        if not o.quick then
          io.stderr:write(("bench %s: %s, %d thread%s, round %d: %s\n"):format(sub, m.name, t, t > 1 and "s" or "",
                                                                             round, table.concat(line, ", ")))
        end
      end
    end
  end
  return best, threads, rounds, exe, torch, why
end

local function gpt_suite(sub, args)
  local o, err = parse(args, sub)
  if not o or o.help then
    io.stderr:write(err and ("genlab bench " .. sub .. ": " .. err .. "\n") or "", usage)
    os.exit(o and 0 or 2)
  end
  local models
  models, err = suite_models(sub, o)
  if not models then
    io.stderr:write("genlab bench ", sub, ": ", err, "\n")
    os.exit(2)
  end

  if o.child then -- one model, in this process
    if not o.only then
      io.stderr:write("genlab bench ", sub, ": --child needs --only\n")
      os.exit(2)
    end
    if o.threads then gl.threads(o.threads) end
    gl.seed(1337)
    local r = (sub == "train-gpt" and child_train or child_generate)(models[1], o)
    r.name = o.only
    r.rss_mib = (peak_rss() or 0) / 2 ^ 20
    print(json_value{ threads = gl.threads(), results = { r } })
    return
  end

  local script, why, native
  if o.reference or (o.reference == nil and not o.quick) then
    script, why = reference_script("GENLAB_BENCH_REFERENCE", "torch_reference.py")
    for _, m in ipairs(models) do
      if m.llama2c then
        native = llama2c_reference(o)
        break
      end
    end
  end
  local best, threads, rounds, exe, torch
  best, threads, rounds, exe, torch, why = measure_rounds(sub, models, o, script, why, function(m)
    return m.reference and (" " .. sub .. " --only " .. shell_quote(m.name))
  end, "tokens/s", nil, native)
  if native then native.close() end

  local rows, goals, failed = {}, {}, 0
  local function row(m, t, g, p, n)
    local r = { model = m.name, label = m.label, config = g.config or p.config or gpt_config_str(m.cfg),
                threads = t, genlab = side(g), pytorch = side(p), llama2c = side(n),
                error = not g.value and g.error or nil }
    local ref = r.pytorch or r.llama2c
    if r.genlab and ref then
      r.ratio = r.genlab.tokens_per_s / ref.tokens_per_s
      if r.genlab.peak_rss_mib and ref.peak_rss_mib then r.mem_ratio = r.genlab.peak_rss_mib / ref.peak_rss_mib end
    end
    local ts = m.torch_static
    if ts and r.genlab and not r.pytorch and not o.quick then
      local c = m.cfg
      r.static_ratio = r.genlab.tokens_per_s / (c.batch * c.block / (ts.ms / 1e3))
      if ts.rss_mib and r.genlab.peak_rss_mib then r.static_mem_ratio = r.genlab.peak_rss_mib / ts.rss_mib end
    end
    if m.llama2c and not o.quick then
      r.llama2c_static = t == "best" and math.max(table.unpack(m.llama2c)) or m.llama2c[t]
    end
    rows[#rows + 1] = r
    return r
  end
  -- issue 3: at least llama2.c's tokens/s on each thread count; issue 3's
  -- figures when it did not run.
  local function llama2c_goal(m, r)
    local ref, what = r.llama2c and r.llama2c.tokens_per_s, "llama2.c's (run here)"
    if not ref and r.llama2c_static then
      ref, what = r.llama2c_static, ("llama2.c's static %d"):format(r.llama2c_static)
    end
    if not (ref and r.genlab) then return end
    goals[#goals + 1] = { goal = ("%s, %d thread%s: tokens/s at least %s"):format(m.name, r.threads,
                          r.threads > 1 and "s" or "", what), met = r.genlab.tokens_per_s >= ref,
                          value = r.genlab.tokens_per_s / ref }
  end
  for _, m in ipairs(models) do
    local b = best[m.name]
    local last
    for _, t in ipairs(threads) do
      last = row(m, t, b.genlab[t], b.pytorch[t], b.native[t])
      if last.error then failed = failed + 1 end
      if m.llama2c and not o.quick then llama2c_goal(m, last) end
    end
    if #threads > 1 then
      last = row(m, "best", best_of(b.genlab, threads), best_of(b.pytorch, threads), best_of(b.native, threads))
    end
    if not o.quick then
      local ratio, mem, static = last.ratio, last.mem_ratio, ""
      if not ratio and last.static_ratio then
        ratio, mem, static = last.static_ratio, last.static_mem_ratio, " (static figures)"
      end
      if sub == "train-gpt" and ratio then
        goals[#goals + 1] = { goal = m.name .. ": tokens/s at least 1.5x PyTorch's" .. static, met = ratio >= 1.5,
                              value = ratio }
      end
      if m.name == "baby" and mem then
        goals[#goals + 1] = { goal = "baby: peak RSS under a quarter of PyTorch's" .. static, met = mem < 0.25,
                              value = mem }
      end
      if m.name == "char" and last.genlab then
        goals[#goals + 1] = { goal = "char: at least 10000 tokens/s with the KV cache",
                              met = last.genlab.tokens_per_s >= 10000, value = last.genlab.tokens_per_s }
      end
    end
  end

  local info = { system = gl.system_info(), subcommand = sub, quick = o.quick, rounds = rounds, threads = threads,
                 genlab = exe, goals = #goals > 0 and goals or nil, results = rows }
  if torch or why then info.reference = { torch = torch, error = why } end
  if why and o.json then io.stderr:write("genlab bench: reference: ", why, "\n") end
  if native then
    info.llama2c = { compiler = native.compiler, error = native.error }
    if native.error and o.json then io.stderr:write("genlab bench: llama2.c reference: ", native.error, "\n") end
  end
  if o.json then
    print(json_value(info))
  else
    print_gpt_table(sub, info, rows)
  end
  if failed > 0 then
    io.stderr:write(("genlab bench %s: %d of %d measurements failed\n"):format(sub, failed, #models * #threads))
    os.exit(1, true)
  end
end

function M.main(args)
  args = args or {}
  if args[1] == "train-gpt" or args[1] == "generate" then
    return gpt_suite(args[1], table.move(args, 2, #args, 1, {}))
  end
  if args[1] == "images" then -- the same scheme as gpt_suite, with its helpers
    return require("genlab.bench_images").main(table.move(args, 2, #args, 1, {}), {
      parse = parse, best_of = best_of, measure_rounds = measure_rounds, peak_rss = peak_rss,
      json_value = json_value, num = num, usage = usage, reference_script = reference_script, time = time })
  end
  local o, err = parse(args)
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
  if o.reference or (o.reference == nil and not o.quick) then script, why = reference_script("GENLAB_BENCH_REFERENCE", "torch_reference.py") end
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
