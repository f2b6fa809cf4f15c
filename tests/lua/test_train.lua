-- gl.train on a tiny Lua model: loss falls, learning-rate schedule, gradient
-- accumulation, clipping, weight-decay groups, JSON-lines log, evaluation,
-- exact resume from a checkpoint, and a step interrupted half-way.
local T = require "tap"
local gl = require "genlab"

T.eq(require "genlab.train", gl.train, "require 'genlab.train' is gl.train")

local V, D = 8, 16

-- Embedding -> LayerNorm -> (dropout) -> Linear; forward(x, y) -> logits, loss.
-- hook(self), when set, runs at the start of every forward.
local Tiny = gl.nn.Module {
  name = "Tiny",
  init = function(self, p)
    self.emb = gl.nn.Embedding { num = V, dim = D }
    self.ln = gl.nn.LayerNorm { dim = D }
    self.head = gl.nn.Linear { in_features = D, out_features = V }
    self.p = p or 0
  end,
  forward = function(self, x, y)
    if self.hook then self.hook(self) end
    local h = self.ln(self.emb(x))
    if self.p > 0 then h = gl.dropout(h, self.p, self:training()) end
    local logits = self.head(h)
    return logits, gl.cross_entropy(logits:reshape { -1, V }, y:reshape { -1 })
  end,
}

-- A stream with structure to learn: mostly a fixed cycle of the 8 tokens.
local function corpus(n)
  gl.seed(77)
  local perm, r = { 3, 6, 0, 5, 7, 1, 4, 2 }, gl.rand { n }:tolist()
  local ids, cur = {}, 0
  for i = 1, n do
    cur = r[i] < 0.9 and perm[cur + 1] or (cur + 3) % V
    ids[i] = cur
  end
  return gl.tensor(ids, { dtype = "i64" })
end
local IDS = corpus(4000)

local function dataset(opts)
  local o = { block = 8, batch = 4 }
  for k, v in pairs(opts or {}) do o[k] = v end
  return gl.data.tokens(IDS, o)
end

local function model(seed, p)
  gl.seed(seed)
  return Tiny(p)
end

local function params_copy(m)
  local out = {}
  for i, p in ipairs(m:parameters()) do out[i] = p:clone() end
  return out
end

local function max_diff(a, b)
  local d = 0
  for i = 1, #a do
    for j = 1, a[i]:numel() do d = math.max(d, math.abs(a[i]:getflat(j) - b[i]:getflat(j))) end
  end
  return d
end

-- ---- loss falls ------------------------------------------------------------------------

do
  local m = model(1)
  local run = gl.train { model = m, data = dataset { batch = 16 }, lr = 3e-2, max_steps = 80, quiet = true }
  local first = run:step().loss
  local last = run:fit()
  T.eq(run.step_count, 80, "fit() trains up to max_steps")
  T.ok(first > 1.9, "the untrained model's loss is above 1.9 (ln 8 = 2.08)", first)
  T.ok(last.loss < 0.9, ("the loss falls: %.3f -> %.3f (< 0.9)"):format(first, last.loss), last.loss)
  T.eq(run:step(5), nil, "step() past max_steps trains nothing")
  T.eq(run.step_count, 80, "and leaves step_count at max_steps")
end

-- ---- learning-rate schedule ------------------------------------------------------------------

do
  local lrs = {}
  local run = gl.train { model = model(1), data = dataset(), lr = 0.01, min_lr = 0.001, warmup = 4, max_steps = 20,
                         quiet = true, on_step = function(info) lrs[info.step] = info.lr end }
  run:fit()
  T.near(lrs[1], 0.01 * 1 / 5, 1e-12, "warmup: step 1 uses lr * 1 / (warmup + 1)")
  T.near(lrs[4], 0.01 * 4 / 5, 1e-12, "warmup: step 4 uses lr * 4 / (warmup + 1)")
  T.near(lrs[5], 0.01, 1e-12, "step warmup + 1 uses the peak lr")
  local function cosine(s) return 0.001 + 0.009 * 0.5 * (1 + math.cos(math.pi * (s - 4) / 16)) end
  T.near(lrs[12], cosine(11), 1e-12, "step 12 is on the cosine from lr to min_lr")
  T.near(lrs[20], cosine(19), 1e-12, "the last step is near min_lr")
  T.near(run.opt:lr(2), lrs[20], 1e-12, "the schedule sets every group's lr")

  local c = gl.train { model = model(1), data = dataset(), lr = 0.01, schedule = "constant", max_steps = 3, quiet = true }
  T.eq(c:fit().lr, 0.01, "schedule = \"constant\" keeps lr")
  local f = gl.train { model = model(1), data = dataset(), schedule = function(s) return 0.1 / (s + 1) end, quiet = true }
  f:step(2)
  T.near(f.last.lr, 0.05, 1e-12, "a schedule function gets the steps already taken")
  local d = gl.train { model = model(1), data = dataset(), lr = 0.02, max_steps = 4, quiet = true }
  T.near(d:fit().lr, 0.002 + 0.018 * 0.5 * (1 + math.cos(math.pi * 3 / 4)), 1e-12,
    "max_steps alone means cosine without warmup down to min_lr = lr / 10")
end

-- ---- gradient accumulation and clipping (SGD with lr 1: the update is -grad) -------------------

do
  local function one_step(batch, accum, clip)
    local m = model(5)
    local before = params_copy(m)
    local run = gl.train { model = m, data = dataset { batch = batch }, opt = gl.optim.sgd(m, { lr = 1 }),
                           schedule = "constant", grad_accum = accum, clip = clip, quiet = true }
    gl.seed(9)
    local info = run:step()
    return info, before, params_copy(m)
  end
  local big, b0, b1 = one_step(8, 1)
  local acc, a0, a1 = one_step(4, 2)
  T.near(acc.loss, big.loss, 1e-6, "grad_accum = 2 of batch 4: the loss of one batch of 8")
  T.near(acc.grad_norm, big.grad_norm, 1e-6, "and the same gradient norm")
  T.ok(max_diff(a0, b0) == 0, "(both start from the same parameters)")
  T.near(max_diff(a1, b1), 0, 1e-6, "and the same update")
  T.eq(acc.tokens, 64, "tokens count every micro-batch (2 x 4 x 8)")

  local clipped, c0, c1 = one_step(8, 1, 0.05)
  T.ok(clipped.grad_norm > 0.05, "the gradient norm before clipping is reported", clipped.grad_norm)
  local sq = 0
  for i = 1, #c0 do sq = sq + ((c1[i] - c0[i]) ^ 2):sum():item() end
  T.near(math.sqrt(sq), 0.05, 1e-5, "clip = 0.05 scales the update to norm 0.05")
  T.near(max_diff(c1, c0) / max_diff(b1, b0), 0.05 / big.grad_norm, 1e-4, "by max_norm / norm")
end

-- ---- weight-decay groups ----------------------------------------------------------------------------

do
  local run = gl.train { model = model(1), data = dataset(), weight_decay = 0.2, quiet = true }
  local sc = run.opt:state_dict().scalars
  T.eq(run.opt:num_groups(), 2, "the default AdamW has two groups")
  T.eq(sc["group.0.params"], 2, "decay group: the 2-D weights (embedding and linear)")
  T.near(sc["group.0.weight_decay"], 0.2, 1e-12, "with weight_decay 0.2")
  T.eq(sc["group.1.params"], 3, "no-decay group: linear bias, norm weight and bias")
  T.eq(sc["group.1.weight_decay"], 0, "with weight_decay 0")
  T.near(sc["group.0.beta2"], 0.95, 1e-12, "betas default to {0.9, 0.95}")
  local m = model(1)
  m.ln:requires_grad_(false)
  local frozen = gl.train { model = m, data = dataset(), quiet = true }
  T.eq(frozen.opt:state_dict().scalars["group.1.params"], 1, "frozen parameters are left out")
end

-- ---- evaluation --------------------------------------------------------------------------------------

do
  local m = model(3, 0.2)
  local run = gl.train { model = m, data = dataset(), lr = 1e-2, eval_iters = 5, quiet = true }
  run:step(3)
  local e1 = run:eval()
  T.ok(e1.train > 0 and e1.val > 0, "eval() returns {train =, val =}")
  T.eq(run:eval().val, e1.val, "eval batches are fixed: the same model gives the same estimate")
  T.ok(m:training(), "eval() puts the model back in train mode")
  m:eval()
  run:eval()
  T.ok(not m:training(), "and leaves a model in eval mode in eval mode")
  m:train()
  T.ok(gl.is_grad_enabled(), "gradients are enabled again after eval")
  local nograd = true
  for _, p in ipairs(m:parameters()) do
    if p.grad ~= nil then nograd = false end
  end
  T.ok(nograd, "eval leaves no gradients")

  local function losses(with_eval)
    local mm = model(3, 0.2)
    gl.seed(4)
    local r = gl.train { model = mm, data = dataset(), lr = 1e-2, eval_iters = 3, quiet = true }
    local out = {}
    for i = 1, 4 do
      out[i] = r:step().loss
      if with_eval then r:eval() end
    end
    return out
  end
  local a, b = losses(false), losses(true)
  T.ok(a[1] == b[1] and a[4] == b[4], "evaluating between steps changes no training loss (dropout and data)")

  local ev = gl.train { model = model(3), data = dataset(), eval_every = 2, eval_iters = 2, max_steps = 5, quiet = true }
  local infos = {}
  ev.on_step = function(info) infos[info.step] = info end
  ev:fit()
  T.ok(infos[2].val_loss and infos[4].val_loss and not infos[3].val_loss, "eval_every = 2 evaluates at steps 2 and 4")
  T.ok(infos[5].val_loss ~= nil, "and at the last step")
end

-- ---- JSON lines log and console lines -------------------------------------------------------------

-- A small JSON reader for the flat objects of the log.
local function json_decode(s)
  local pos = 1
  local function ws() pos = s:find("[^ \t]", pos) or #s + 1 end
  local function value()
    ws()
    local c = s:sub(pos, pos)
    if c == '"' then
      local out, i = {}, pos + 1
      while true do
        local ch = s:sub(i, i)
        if ch == "" then error("unterminated string") end
        if ch == '"' then break end
        if ch == "\\" then
          local e = s:sub(i + 1, i + 1)
          local map = { n = "\n", t = "\t", r = "\r", ['"'] = '"', ["\\"] = "\\", ["/"] = "/" }
          if e == "u" then
            out[#out + 1] = utf8.char(tonumber(s:sub(i + 2, i + 5), 16))
            i = i + 6
          else
            out[#out + 1] = assert(map[e], "bad escape")
            i = i + 2
          end
        else
          out[#out + 1] = ch
          i = i + 1
        end
      end
      pos = i + 1
      return table.concat(out)
    end
    for lit, v in pairs { ["true"] = true, ["false"] = false, null = "null" } do
      if s:sub(pos, pos + #lit - 1) == lit then
        pos = pos + #lit
        return v
      end
    end
    local num = s:match("^-?%d+%.?%d*[eE]?[-+]?%d*", pos)
    if not num then error("bad value at " .. pos) end
    pos = pos + #num
    return tonumber(num)
  end
  ws()
  if s:sub(pos, pos) ~= "{" then error("not an object") end
  pos = pos + 1
  local obj = {}
  ws()
  if s:sub(pos, pos) == "}" then return obj end
  while true do
    local k = value()
    ws()
    if s:sub(pos, pos) ~= ":" then error("expected ':' at " .. pos) end
    pos = pos + 1
    obj[k] = value()
    ws()
    local c = s:sub(pos, pos)
    pos = pos + 1
    if c == "}" then break end
    if c ~= "," then error("expected ',' or '}' at " .. pos) end
  end
  ws()
  if pos <= #s then error("trailing text") end
  return obj
end

do
  local log = os.tmpname()
  local infos = {}
  local run = gl.train { model = model(2), data = dataset(), lr = 1e-2, max_steps = 6, eval_every = 3, eval_iters = 2,
                         sample_every = 3, sample_fn = function() gl.rand { 5 } return "a \"sample\"\n" end,
                         log = log, quiet = true, on_step = function(info) infos[#infos + 1] = info end }
  run:fit()
  run:close()
  local lines, objs, bad = 0, {}, nil
  for line in io.lines(log) do
    lines = lines + 1
    local ok, obj = pcall(json_decode, line)
    if ok then objs[#objs + 1] = obj else bad = bad or (line .. ": " .. obj) end
  end
  T.ok(bad == nil, "every log line is a JSON object", bad)
  T.eq(lines, 8, "6 step lines and 2 sample lines")
  local steps, samples = {}, {}
  for _, o in ipairs(objs) do
    if o.sample then samples[#samples + 1] = o else steps[#steps + 1] = o end
  end
  local keys_ok = true
  for _, o in ipairs(steps) do
    for _, k in ipairs { "step", "loss", "lr", "tokens_per_s", "grad_norm", "elapsed" } do
      if type(o[k]) ~= "number" then keys_ok = false end
    end
  end
  T.ok(keys_ok, "step lines carry step, loss, lr, tokens_per_s, grad_norm, elapsed")
  T.eq(steps[4].loss, infos[4].loss, "logged losses read back exactly")
  T.ok(steps[3].val_loss and steps[6].val_loss and not steps[2].val_loss, "val_loss appears on evaluated steps")
  T.eq(samples[1].step, 3, "samples are logged with their step")
  T.eq(samples[2].sample, 'a "sample"\n', "sample text round-trips through the escapes")
  os.remove(log)

  local printed = {}
  local real = io.stdout
  io.stdout = { write = function(_, ...) for _, s in ipairs { ... } do printed[#printed + 1] = s end end,
                flush = function() end }
  local ok, err = pcall(function()
    local r = gl.train { model = model(2), data = dataset(), max_steps = 10, print_every = 5 }
    r.tty = false
    r:fit()
  end)
  io.stdout = real
  T.ok(ok, "a run that prints", err)
  local out = table.concat(printed)
  local n = select(2, out:gsub("step %d+/10 | loss", ""))
  T.eq(n, 3, "without a terminal: plain lines at step 1 and every print_every steps")
  T.ok(out:find("step 10/10 | loss %d%.%d+ | lr ") ~= nil, "a line shows step, loss and lr", out)
end

-- ---- exact resume ---------------------------------------------------------------------------------------

local function resume_case(name, data_opts, dropout, build)
  local ckpt = os.tmpname()
  local function make(seed, resume)
    local m = build and build(seed) or model(seed, dropout)
    return gl.train { model = m, data = dataset(data_opts), lr = 1e-2, warmup = 2, max_steps = 10, clip = 1.0,
                      eval_every = 3, eval_iters = 2, sample_every = 4, sample_fn = function() gl.rand { 3 } return "" end,
                      checkpoint = ckpt, checkpoint_every = 5, resume = resume, quiet = true }
  end
  gl.seed(100)
  local full = make(1)
  local want = {}
  full.on_step = function(info) want[info.step] = info.loss end
  full:fit()
  local want_params = params_copy(full.model)
  -- the checkpoint at step 5 was overwritten at step 10: make it again
  gl.seed(100)
  local half = make(1)
  half.checkpoint_every = nil
  half:step(5)
  half:save(ckpt)

  gl.seed(12345) -- a different seed and init: the checkpoint must restore everything
  local resumed = make(2, ckpt)
  T.eq(resumed.step_count, 5, name .. ": resume starts at the checkpoint's step")
  local got, same = {}, true
  resumed.on_step = function(info) got[info.step] = info.loss end
  resumed.checkpoint = nil
  resumed:fit()
  for s = 6, 10 do
    if got[s] ~= want[s] then same = false end
  end
  T.ok(same, name .. ": steps 6..10 after resuming give exactly the uninterrupted losses",
    ("step 10: %s vs %s"):format(tostring(got[10]), tostring(want[10])))
  T.eq(max_diff(params_copy(resumed.model), want_params), 0, name .. ": and exactly the same parameters")
  os.remove(ckpt)
end

resume_case("random offsets, dropout", {}, 0.2)
resume_case("own data seed", { seed = 7 }, 0.1)
resume_case("sequential", { mode = "sequential" }, 0)
if gl.models and gl.models.gpt then
  resume_case("GPT with dropout", {}, nil, function(seed)
    gl.seed(seed)
    return gl.models.gpt { vocab_size = V, block_size = 8, n_layer = 1, n_head = 2, n_embd = 16, dropout = 0.1 }
  end)
else
  T.ok(true, "# SKIP gl.models.gpt is not built")
end

-- ---- an interrupted step ------------------------------------------------------------------------------------

do
  local function build()
    local m = model(6, 0.1)
    gl.seed(60)
    return gl.train { model = m, data = dataset(), lr = 1e-2, grad_accum = 2, quiet = true }, m
  end
  local ref = build()
  local want = {}
  for i = 1, 4 do want[i] = ref:step().loss end

  local run, m = build()
  run:step(2)
  local before = params_copy(m)
  local calls = 0
  m.hook = function()
    calls = calls + 1
    if calls == 2 then gl.interrupt() end -- the second micro-batch: the first one's gradients are in
  end
  local ok, err = pcall(run.step, run)
  m.hook = nil
  T.ok(not ok and tostring(err):find("interrupted", 1, true), "an interrupt in a kernel raises out of step()", err)
  T.eq(run.step_count, 2, "the interrupted step is not counted")
  T.eq(max_diff(params_copy(m), before), 0, "the parameters are those after the last complete step")
  local clean = true
  for _, p in ipairs(m:parameters()) do
    if p.grad ~= nil then clean = false end
  end
  T.ok(clean, "no gradient is left behind")
  T.ok(m:training(), "the model is still in train mode")
  local l3, l4 = run:step().loss, run:step().loss
  T.ok(l3 == want[3] and l4 == want[4], "continuing gives the losses of a run never interrupted",
    ("%s %s vs %s %s"):format(l3, l4, want[3], want[4]))
end

-- ---- options ---------------------------------------------------------------------------------------------------

do
  local m, ds = model(1), dataset()
  T.raises(function() gl.train { model = m, data = ds, lrate = 1 } end, "unknown option 'lrate'", "unknown options are errors")
  T.raises(function() gl.train { data = ds } end, "model must be a module", "model is required")
  T.raises(function() gl.train { model = m } end, "data must be a dataset", "data is required")
  T.raises(function() gl.train { model = m, data = ds, opt = gl.optim.sgd(m, { lr = 1 }), weight_decay = 0.1 } end,
    "set them on the opt you pass", "weight_decay with an opt is an error")
  T.raises(function() gl.train { model = m, data = ds, schedule = "cosine" } end, "needs max_steps",
    "cosine needs max_steps")
  T.raises(function() gl.train { model = m, data = ds, max_steps = 5, warmup = 6 } end, "warmup (6) exceeds max_steps (5)",
    "warmup beyond max_steps")
  T.raises(function() gl.train { model = m, data = ds, checkpoint_every = 5 } end, "needs a checkpoint path",
    "checkpoint_every needs a path")
  T.raises(function() gl.train { model = m, data = ds, grad_accum = 0 } end, "grad_accum must be an integer >= 1",
    "grad_accum >= 1")
  T.raises(function() gl.train { model = m, data = ds, sample = { prompt = "a", length = 3 } } end,
    "unknown sample option 'length'", "sample options are checked")
  T.raises(function() gl.train { model = m, data = ds, quiet = true }:fit() end, "no max_steps", "fit needs max_steps")
  local r = gl.train { model = m, data = ds, lr = 1e-2, quiet = true }
  T.ok(tostring(r):find("Run(step 0", 1, true) ~= nil, "tostring shows the step", tostring(r))
end

-- A Trainer checkpoint of a GPT opens with gl.models.load (configuration and
-- tokenizer travel with it), and sampling works on a corpus without newlines.
do
  local text = os.tmpname()
  local f = assert(io.open(text, "w"))
  f:write(("abcdefgh "):rep(200))
  f:close()
  local ckpt = os.tmpname()
  gl.seed(7)
  local data = gl.data.text(text, { tokenizer = "char", block = 16, batch = 4 })
  local gpt = gl.models.gpt { vocab_size = data:vocab_size(), block_size = 16, n_layer = 1, n_head = 2, n_embd = 16 }
  local samples = {}
  local run = gl.train { model = gpt, data = data, lr = 1e-3, quiet = true, checkpoint = ckpt, checkpoint_every = 4,
                         sample_every = 4, sample = { max_new = 5 } }
  local ok, err = pcall(function() run:step(4) end)
  T.ok(ok, "sampling with the default prompt works on a corpus without newlines", err)
  local loaded, info = gl.models.load(ckpt)
  T.eq(info.format, "genlab-checkpoint", "gl.models.load opens a Trainer checkpoint")
  T.ok(info.tokenizer ~= nil, "its tokenizer comes with it")
  local want = gpt:generate("abc", { tokenizer = data.tokenizer, max_new = 6, greedy = true })
  T.eq(loaded:generate("abc", { tokenizer = info.tokenizer, max_new = 6, greedy = true }), want,
    "the loaded model generates what the trained one does")
  local plain = os.tmpname()
  gl.checkpoint.save(plain, { model = gpt, step = 1 })
  T.raises(function() gl.models.load(plain) end, "without the model's configuration",
    "a checkpoint without a configuration names what is missing")
  os.remove(text) os.remove(ckpt) os.remove(plain)
end

T.done()
