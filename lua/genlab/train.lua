-- gl.train: the training loop as a steppable object.
--
--   local run = gl.train{model = gpt, data = ds, lr = 1e-3, max_steps = 2000, warmup = 100,
--                        clip = 1.0, eval_every = 250, checkpoint = "ckpt.safetensors"}
--   run:step(100)     -- trains 100 steps, returns the last step's info
--   run:fit()         -- trains up to max_steps
--   print(run:eval().val)
--
-- model: any module whose forward(x, y) returns logits, loss (a 0-dim tensor).
-- data: a dataset with batch("train" | "val") -> x, y (gl.data); its
-- state()/set_state()/reset() are used when present.
-- Options (unknown ones are errors):
--   opt             an optimizer; default AdamW with two groups: weight_decay on
--                   parameters of 2 or more dims (matmul weights and
--                   embeddings), none on biases and norm weights
--   lr (1e-3, or opt's), weight_decay (0.1), betas ({0.9, 0.95})   for the default AdamW
--   schedule        "cosine" (default when max_steps is set) | "constant" | a
--                   function(step) -> lr, step counting steps already taken
--   warmup (0), min_lr (lr / 10), max_steps   the cosine schedule, as nanoGPT's
--                   get_lr: lr * (s + 1) / (warmup + 1) while s < warmup, then
--                   cosine down to min_lr at max_steps
--   clip            max gradient norm (none by default; the norm is reported anyway)
--   grad_accum (1)  micro-batches per step; their gradients add up as one batch
--   eval_every, eval_iters (20)   periodic loss estimate on both splits
--   sample_every    periodic sample: sample_fn(model, run) -> string, or
--                   sample = {prompt = "\n", max_new = 200, temperature =, top_k =}
--                   (the default prompt is a newline, or token 0 where the
--                   vocabulary has no newline)
--                   through model:generate(prompt, {tokenizer = data.tokenizer, ...})
--                   (gl.generate's convention: a string prompt gives the new text)
--   checkpoint, checkpoint_every   path and period of atomic checkpoints
--                   (also written when the run reaches max_steps)
--   meta            a table of strings / numbers / booleans saved with every
--                   checkpoint (under extra "meta.<key>")
--   resume          checkpoint to continue from: the same losses follow as if
--                   the run had never stopped
--   log             JSON-lines file: one object per step (step, loss, lr,
--                   tokens_per_s, grad_norm, ms, elapsed; train_loss and
--                   val_loss when evaluated), and {step, sample} objects
--   quiet           no console output; print_every (10) period of the plain
--                   progress lines when stdout is not a terminal
--   on_step         function(info, run) called after every step
--   name            the run's name in gl.metrics (default "run1", "run2", ... in
--                   the order runs are made): every step logs loss, lr,
--                   tokens_per_s, grad_norm there, and train_loss, val_loss
--                   when it evaluates. A new run (not resumed) clears the
--                   metrics of its name first, so re-running a notebook cell
--                   starts its curve again.
--
-- run:step(n) calls gl.yield_ui() after each step: inside a notebook job
-- (gl.notebook) the UI gets control back between steps; elsewhere it does
-- nothing.
--
-- Evaluation and sampling run on fixed seeds and put the random streams back
-- as they were, so they change nothing in training. A step that fails (Ctrl-C
-- raises "interrupted" from a kernel) leaves the model, the optimizer, the
-- random streams and the step count as they were after the last complete
-- step, clears the gradients, and raises the error again.
local gl = require "genlab"
local metrics = require "genlab.metrics"

local EVAL_SEED, SAMPLE_SEED = 0x5EED, 0x5A3

local Run = {}
Run.__index = Run
Run.__name = "Run"

-- ---- JSON lines -----------------------------------------------------------------------

local escapes = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }

local function json_value(v)
  local ty = type(v)
  if ty == "number" then
    if math.type(v) == "integer" then return string.format("%d", v) end
    if v ~= v or v == math.huge or v == -math.huge then return "null" end
    local s
    for digits = 15, 17 do -- the shortest form that reads back exactly
      s = string.format("%." .. digits .. "g", v)
      if tonumber(s) == v then break end
    end
    return s
  elseif ty == "boolean" then
    return tostring(v)
  end
  return '"' .. tostring(v):gsub('[%c"\\]', function(c) return escapes[c] or string.format("\\u%04x", c:byte()) end) .. '"'
end

-- One line; keys in the order given, then the rest sorted.
local function json_object(t, order)
  local parts, done = {}, {}
  for _, k in ipairs(order) do
    if t[k] ~= nil then
      parts[#parts + 1] = json_value(k) .. ":" .. json_value(t[k])
      done[k] = true
    end
  end
  local rest = {}
  for k, v in pairs(t) do
    if not done[k] and type(v) ~= "table" and type(v) ~= "function" and type(v) ~= "userdata" then rest[#rest + 1] = k end
  end
  table.sort(rest)
  for _, k in ipairs(rest) do parts[#parts + 1] = json_value(k) .. ":" .. json_value(t[k]) end
  return "{" .. table.concat(parts, ",") .. "}"
end

local LOG_ORDER = { "step", "loss", "lr", "tokens_per_s", "grad_norm", "ms", "elapsed", "train_loss", "val_loss" }

-- ---- options ------------------------------------------------------------------------------

local options = {
  model = true, data = true, opt = true, lr = true, weight_decay = true, betas = true, clip = true, warmup = true,
  max_steps = true, min_lr = true, schedule = true, grad_accum = true, eval_every = true, eval_iters = true,
  sample_every = true, sample_fn = true, sample = true, checkpoint_every = true, checkpoint = true, log = true,
  resume = true, quiet = true, on_step = true, print_every = true, meta = true, name = true,
}

local unnamed = 0 -- runs made without a name

local function fail(msg, ...) error("train: " .. msg:format(...), 0) end

-- Only a GPT (a C module of that class) has forward_backward; a Lua
-- module's own loss or forward_backward may mean something else.
local function is_gpt(model) return gl.nn._is_cmodule(model) and model.forward_backward ~= nil end

local function opt_int(o, key, def, min)
  local v = o[key]
  if v == nil then return def end
  if math.type(v) ~= "integer" or v < min then fail("%s must be an integer >= %d (got %s)", key, min, tostring(v)) end
  return v
end

local function opt_number(o, key, def)
  local v = o[key]
  if v == nil then return def end
  if type(v) ~= "number" or v ~= v or v < 0 then fail("%s must be a number >= 0 (got %s)", key, tostring(v)) end
  return v
end

local function opt_type(o, key, ty)
  if o[key] ~= nil and type(o[key]) ~= ty then fail("%s must be a %s (got a %s)", key, ty, type(o[key])) end
  return o[key]
end

-- AdamW with decay on parameters of 2+ dims only (nanoGPT's configure_optimizers).
local function default_optimizer(model, lr, wd, betas)
  local decay, no_decay = {}, {}
  for _, p in ipairs(model:parameters()) do
    if p.requires_grad then
      local list = p:dim() >= 2 and decay or no_decay
      list[#list + 1] = p
    end
  end
  local groups = {}
  if #decay > 0 then groups[#groups + 1] = { params = decay, weight_decay = wd } end
  if #no_decay > 0 then groups[#groups + 1] = { params = no_decay, weight_decay = 0 } end
  if #groups == 0 then fail("the model has no trainable parameters") end
  return gl.optim.adamw(groups, { lr = lr, betas = betas })
end

local function make_schedule(o, lr, max_steps)
  local sched = o.schedule or (max_steps and "cosine" or "constant")
  if type(sched) == "function" then return sched end
  if type(sched) == "userdata" or (type(sched) == "table" and getmetatable(sched)) then
    return function(s) return sched(s) end
  end
  if sched == "constant" then return function() return lr end end
  if sched ~= "cosine" then fail("schedule must be \"cosine\", \"constant\" or a function (got %s)", tostring(sched)) end
  if not max_steps then fail("the cosine schedule needs max_steps") end
  local warmup = opt_int(o, "warmup", 0, 0)
  if warmup > max_steps then fail("warmup (%d) exceeds max_steps (%d)", warmup, max_steps) end
  local min_lr = opt_number(o, "min_lr", lr / 10)
  local s = gl.optim.schedule.cosine { lr = lr, max_steps = max_steps, warmup = warmup, min_lr = min_lr,
                                       start_lr = lr / (warmup + 1) }
  return function(step) return s(step) end
end

local function is_tty()
  local ok = os.execute("test -t 1")
  return ok == true
end

-- ---- construction ---------------------------------------------------------------------------

local function new(o)
  if type(o) ~= "table" then error("train: expected an options table", 3) end
  for k in pairs(o) do
    if not options[k] then error(("train: unknown option '%s'"):format(tostring(k)), 3) end
  end
  if not gl.nn.is_module(o.model) then fail("model must be a module (got a %s)", type(o.model)) end
  if o.data == nil or type(o.data.batch) ~= "function" then fail("data must be a dataset with batch(split)") end
  local self = setmetatable({ model = o.model, data = o.data }, Run)

  if o.opt then
    if o.weight_decay ~= nil or o.betas ~= nil then
      fail("weight_decay and betas configure the default optimizer; set them on the opt you pass")
    end
    self.opt = o.opt
  end
  local lr = opt_number(o, "lr", self.opt and self.opt:lr() or 1e-3)
  self.opt = self.opt or default_optimizer(o.model, lr, opt_number(o, "weight_decay", 0.1), o.betas or { 0.9, 0.95 })
  self.max_steps = opt_int(o, "max_steps", nil, 0)
  self.schedule = make_schedule(o, lr, self.max_steps)
  self.clip = o.clip ~= nil and opt_number(o, "clip") or nil
  self.grad_accum = opt_int(o, "grad_accum", 1, 1)
  self.eval_every = opt_int(o, "eval_every", nil, 1)
  self.eval_iters = opt_int(o, "eval_iters", 20, 1)
  self.sample_every = opt_int(o, "sample_every", nil, 1)
  self.sample_fn = opt_type(o, "sample_fn", "function")
  self.sample = opt_type(o, "sample", "table") or {}
  if self.sample_fn and o.sample then fail("give sample_fn or sample, not both") end
  for k in pairs(self.sample) do
    if k ~= "prompt" and k ~= "max_new" and k ~= "temperature" and k ~= "top_k" then
      fail("unknown sample option '%s' (use prompt, max_new, temperature, top_k)", tostring(k))
    end
  end
  self.checkpoint_every = opt_int(o, "checkpoint_every", nil, 1)
  self.checkpoint = opt_type(o, "checkpoint", "string")
  if self.checkpoint_every and not self.checkpoint then fail("checkpoint_every needs a checkpoint path") end
  self.meta = opt_type(o, "meta", "table") or {}
  self.on_step = opt_type(o, "on_step", "function")
  self.name = opt_type(o, "name", "string")
  if self.name == "" then fail("name must not be empty") end
  if not self.name then
    unnamed = unnamed + 1
    self.name = "run" .. unnamed
  end
  self.quiet = o.quiet and true or false
  self.print_every = opt_int(o, "print_every", 10, 1)
  self.tty = not self.quiet and is_tty()

  self.params = {}
  for _, p in ipairs(o.model:parameters()) do
    if p.requires_grad then self.params[#self.params + 1] = p end
  end
  self.step_count, self.tokens, self.elapsed = 0, 0, 0

  if o.resume then
    opt_type(o, "resume", "string")
    self:_restore(o.resume)
  end
  if not o.resume then metrics.clear(self.name) end
  if o.log then
    opt_type(o, "log", "string")
    local f, err = io.open(o.log, o.resume and "a" or "w")
    if not f then fail("cannot open the log: %s", tostring(err)) end
    self._log = f
  end
  return self
end

-- ---- random streams ------------------------------------------------------------------------

local function data_state(data) return data.state and data:state() or nil end

local function snapshot(self) return { rng = gl.rng_state(), data = data_state(self.data) } end

local function put_back(self, snap)
  gl.set_rng_state(snap.rng)
  if snap.data then self.data:set_state(snap.data) end
end

-- Runs fn(...) on fixed seeds, then puts the random streams back.
local function on_seed(self, seed, fn, ...)
  local snap = snapshot(self)
  gl.seed(seed)
  if self.data.reset then self.data:reset(seed) end
  local res = table.pack(pcall(fn, ...))
  put_back(self, snap)
  if not res[1] then error(res[2], 0) end
  return table.unpack(res, 2, res.n)
end

-- ---- evaluation and samples -----------------------------------------------------------------

local function has_split(data, split)
  if not data.size then return split == "train" end
  return data:size(split) > (data.block or 0)
end

-- Mean loss over eval_iters batches of each split, in eval mode without
-- gradients; the mode is put back after.
function Run:eval(iters)
  iters = iters or self.eval_iters
  local model, data = self.model, self.data
  local was_training = model:training()
  model:eval()
  local ok, res = pcall(on_seed, self, EVAL_SEED, gl.no_grad, function()
    local out = {}
    for _, split in ipairs { "train", "val" } do
      if has_split(data, split) then
        local sum = 0
        for _ = 1, iters do
          local x, y = data:batch(split)
          if is_gpt(model) then
            sum = sum + model:loss(x, y)
          else
            local _, loss = model:forward(x, y)
            sum = sum + loss:item()
          end
        end
        out[split] = sum / iters
      end
    end
    return out
  end)
  model:train(was_training)
  if not ok then error(res, 0) end
  return res
end

-- The text of one sample: sample_fn, or model:generate from the prompt.
function Run:sample_text()
  if self.sample_fn then return on_seed(self, SAMPLE_SEED, self.sample_fn, self.model, self) end
  local model, tok = self.model, self.data.tokenizer
  if not model.generate then return nil end
  if not tok then fail("sampling needs the data's tokenizer (or give sample_fn)") end
  local s = self.sample
  local prompt = s.prompt
  if not prompt then -- a newline where the vocabulary has one, else its first token
    prompt = pcall(tok.encode, tok, "\n") and "\n" or tok:decode({ 0 })
  end
  local was_training = model:training()
  model:eval()
  local ok, out = pcall(on_seed, self, SAMPLE_SEED, function()
    return model:generate(prompt, { tokenizer = tok, max_new = s.max_new or 200, temperature = s.temperature,
                                    top_k = s.top_k })
  end)
  model:train(was_training)
  if not ok then error(out, 0) end
  return prompt .. out
end

-- ---- output ------------------------------------------------------------------------------------

local function clock_str(s)
  s = math.floor(s + 0.5)
  if s >= 3600 then return ("%d:%02d:%02d"):format(s // 3600, s // 60 % 60, s % 60) end
  return ("%d:%02d"):format(s // 60, s % 60)
end

-- ms/it and tok/s are smoothed (an exponential average) so the line is readable.
local function progress_line(self, info)
  self._ms = self._ms and 0.9 * self._ms + 0.1 * info.ms or info.ms
  local of = self.max_steps and ("/" .. self.max_steps) or ""
  return ("step %d%s | loss %.4f | lr %.2e | %.0f tok/s | %.1f ms/it | norm %.3f | %s"):format(
    info.step, of, info.loss, info.lr, info.tokens_per_s * info.ms / self._ms, self._ms, info.grad_norm,
    clock_str(info.elapsed))
end

-- A transient line (on a terminal) is overwritten by the next one.
function Run:_print(line, transient)
  if self.quiet then return end
  if self.tty then
    io.stdout:write("\r", line, "\27[K", transient and "" or "\n")
    self._open = transient
  elseif not transient then
    io.stdout:write(line, "\n")
  end
  io.stdout:flush()
end

function Run:_logline(t)
  if not self._log then return end
  self._log:write(json_object(t, LOG_ORDER), "\n")
  self._log:flush()
end

-- ---- one step -------------------------------------------------------------------------------------

-- Forward, backward, clip and update; returns loss, grad norm, tokens.
-- A GPT runs forward and backward in one call that splits the batch's
-- rows between the threads (model:forward_backward).
local function update(self)
  local model, accum = self.model, self.grad_accum
  local total, tokens = 0, 0
  for _ = 1, accum do
    local x, y = self.data:batch("train")
    if is_gpt(model) then
      total = total + model:forward_backward(x, y, 1 / accum)
    else
      local _, loss = model:forward(x, y)
      if not gl.is_tensor(loss) then fail("model:forward(x, y) must return logits, loss") end
      total = total + loss:item()
      if accum > 1 then loss = loss * (1 / accum) end
      loss:backward()
    end
    tokens = tokens + y:numel()
  end
  local norm = gl.optim.clip_grad_norm(self.params, self.clip or math.huge)
  self.opt:step()
  return total / accum, norm, tokens
end

local function due(every, step) return every and step % every == 0 end

function Run:_one()
  local t0 = gl.clock()
  local lr = self.schedule(self.step_count)
  local snap = snapshot(self)
  self.opt:set_lr(lr)
  self.model:zero_grad()
  local ok, loss, norm, tokens = pcall(update, self)
  self.model:zero_grad()
  if not ok then
    put_back(self, snap)
    error(loss, 0)
  end
  self.step_count = self.step_count + 1
  local step = self.step_count
  local dt = gl.clock() - t0
  self.tokens = self.tokens + tokens
  local info = { step = step, loss = loss, lr = lr, grad_norm = norm, tokens = self.tokens,
                 tokens_per_s = tokens / dt, ms = dt * 1000 }
  self.last = info
  -- logged at once, so that an interrupt from here on (the workbench's
  -- Ctrl-C) leaves the step count and the logged steps in agreement
  metrics.log(self.name, step, { loss = loss, lr = lr, tokens_per_s = info.tokens_per_s, grad_norm = norm })

  local done = self.max_steps and step >= self.max_steps
  local eval_ok, err = pcall(function()
    if due(self.eval_every, step) or (done and self.eval_every) then
      local e = self:eval()
      info.train_loss, info.val_loss = e.train, e.val
    end
  end)
  self.elapsed = self.elapsed + (gl.clock() - t0)
  info.elapsed = self.elapsed
  self:_logline(info)
  if not eval_ok then error(err, 0) end
  if info.train_loss then metrics.log(self.name, step, { train_loss = info.train_loss, val_loss = info.val_loss }) end

  if self.tty then
    self:_print(progress_line(self, info), true)
  elseif step % self.print_every == 0 or step == 1 or done then
    self:_print(progress_line(self, info))
  end
  if info.train_loss then
    self:_print(("step %d: train loss %.4f, val loss %s"):format(step, info.train_loss,
      info.val_loss and ("%.4f"):format(info.val_loss) or "-"))
  end
  if due(self.sample_every, step) then
    local text = self:sample_text()
    if text then
      self:_print(("step %d sample:\n%s"):format(step, text))
      self:_logline { step = step, sample = text }
    end
  end
  if self.checkpoint and (due(self.checkpoint_every, step) or done) then self:save(self.checkpoint) end
  if self.on_step then self.on_step(info, self) end
  return info
end

-- Trains n steps (1 by default; stops at max_steps); returns the last info.
function Run:step(n)
  n = n or 1
  if math.type(n) ~= "integer" or n < 0 then error("step: n must be an integer >= 0", 2) end
  local info
  for _ = 1, n do
    if self.max_steps and self.step_count >= self.max_steps then break end
    info = self:_one()
    gl.yield_ui()
  end
  if self._open then
    io.stdout:write("\n")
    io.stdout:flush()
    self._open = false
  end
  return info
end

-- Trains until max_steps; returns the last info.
function Run:fit()
  if not self.max_steps then error("fit: the run has no max_steps (use step(n))", 2) end
  return self:step(self.max_steps - self.step_count)
end

-- ---- checkpoints -------------------------------------------------------------------------------------

function Run:save(path)
  local extra = { tokens = self.tokens, elapsed = self.elapsed }
  local ds = data_state(self.data)
  for k, v in pairs(ds or {}) do extra["data." .. k] = v end
  local tok = self.data.tokenizer
  if tok and tok.serialize then extra.tokenizer = tok:serialize() end
  for k, v in pairs(self.meta) do extra["meta." .. k] = v end
  -- with the model's configuration, gl.models.load can open the checkpoint
  local has_config, config = pcall(function() return self.model:config() end)
  if has_config and type(config) == "table" then extra.model_config = gl.json.encode(config) end
  gl.checkpoint.save(path or self.checkpoint, { model = self.model, optim = self.opt, step = self.step_count,
                                                extra = extra })
end

function Run:_restore(path)
  local step, extra = gl.checkpoint.load(path, { model = self.model, optim = self.opt })
  self.step_count = step or 0
  self.tokens = math.tointeger(extra.tokens) or 0
  self.elapsed = extra.elapsed or 0
  if self.data.set_state then
    local st = {}
    for k, v in pairs(extra) do
      if k:sub(1, 5) == "data." then st[k:sub(6)] = v end
    end
    if next(st) then self.data:set_state(st) end
  end
end

function Run:close()
  if self._log then self._log:close() self._log = nil end
end

function Run:__tostring()
  return ("Run(step %d%s, %d tokens, %s)"):format(self.step_count, self.max_steps and ("/" .. self.max_steps) or "",
    self.tokens, clock_str(self.elapsed))
end

return setmetatable({ Run = Run }, { __call = function(_, o) return new(o) end })
