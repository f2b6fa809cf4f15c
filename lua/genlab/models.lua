-- gl.models: Lua conveniences over the C GPT family (src/lua/l_models.c).
--
--   gl.models.gpt{...}                      build (see l_models.c for the keys)
--   gl.models.load(path [, opts]) -> model, info
--       path: a Hugging Face directory (config.json + model.safetensors) or one
--       of its files, a llama2.c .bin, a genlab checkpoint (.safetensors), or
--       a Trainer checkpoint of a GPT (gl.train's checkpoint option).
--       info = {format = "hf" | "llama2c" | "genlab", dir = ..., tokenizer = ...}:
--       tokenizer is the tokenizer stored with a genlab checkpoint (its text, or
--       the object gl.tokenizer.from_string makes of it when that exists), else
--       the one gl.tokenizer.load finds next to the weights (tokenizer.json,
--       GPT-2's encoder.json + vocab.bpe, tokenizer.bin), when there is one.
--       opts: {tokenizer = false} skips the tokenizer search; {tokenizer = path}
--       names the file.
--   gl.models.save(model, path [, {tokenizer = string}])   genlab checkpoint
--   gl.models.export(model, dir [, {format = "hf"}])       HF GPT-2 / LLaMA layout
--   gl.models.summary(model) -> string                     one screen of facts
local gl = require "genlab"
local options = require "genlab.options"

local M = gl.models
local C = { load = M._load, save = M._save, export_hf = M._export_hf }

-- The tokenizer named by want (a path: errors propagate), or the one
-- gl.tokenizer.load finds in dir (tokenizer.json, GPT-2's pair, tokenizer.bin), or nil.
local function find_tokenizer(dir, want)
  local load = gl.tokenizer and gl.tokenizer.load
  if not load then return nil end
  if type(want) == "string" then
    local ok, tok = pcall(load, want)
    if not ok then error("models.load: tokenizer: " .. tostring(tok), 3) end
    return tok, want
  end
  local ok, tok = pcall(load, dir)
  if ok and tok then return tok, dir end
  return nil
end

-- A Trainer checkpoint (gl.checkpoint format) of a GPT: the model is built
-- from the configuration the Trainer saved with it. nil when path is not one.
local function load_trainer_checkpoint(path)
  local ok, tensors, meta = pcall(gl.load, path)
  if not ok or type(meta) ~= "table" or meta.format ~= "genlab-checkpoint" then return nil end
  if not meta["extra.model_config"] then
    error(("models.load: %s is a training checkpoint without the model's configuration "
      .. "(saved by an older genlab, or not of a GPT): load it with gl.checkpoint.load into a model you build"):format(path), 3)
  end
  local config = gl.json.decode(gl.json.decode(meta["extra.model_config"]))
  local model = gl.models.gpt(config)
  local state = {}
  for k, t in pairs(tensors) do
    if k:sub(1, 6) == "model." then state[k:sub(7)] = t end
  end
  model:load_state_dict(state)
  local info = { format = "genlab-checkpoint", config = model:config() }
  local tok = meta["extra.tokenizer"] and gl.json.decode(meta["extra.tokenizer"])
  if tok and gl.tokenizer and gl.tokenizer.from_string then
    local ok_tok, t = pcall(gl.tokenizer.from_string, tok)
    if ok_tok and t then info.tokenizer_text, info.tokenizer = tok, t end
  end
  return model, info
end

function M.load(path, opts)
  if type(path) ~= "string" then error("models.load: path must be a string", 2) end
  opts = options.check("models.load", opts, { tokenizer = true }, 2)
  local from_trainer, trainer_info = load_trainer_checkpoint(path)
  if from_trainer then return from_trainer, trainer_info end
  local model, info = C.load(path)
  if info.tokenizer then
    local from = gl.tokenizer and gl.tokenizer.from_string
    if from then
      local ok, tok = pcall(from, info.tokenizer)
      if ok and tok then info.tokenizer_text, info.tokenizer = info.tokenizer, tok end
    end
  elseif opts.tokenizer ~= false then
    info.tokenizer, info.tokenizer_path = find_tokenizer(info.dir or ".", opts.tokenizer)
  end
  return model, info
end

function M.save(model, path, opts)
  opts = options.check("models.save", opts, { tokenizer = true }, 2)
  local tok = opts.tokenizer
  if tok ~= nil and type(tok) ~= "string" then
    if type(tok) == "userdata" or type(tok) == "table" then
      local ok, s = pcall(function() return tok:to_string() end)
      if not ok or type(s) ~= "string" then error("models.save: tokenizer must be a string (or have :to_string())", 2) end
      tok = s
    else
      error("models.save: tokenizer must be a string", 2)
    end
  end
  C.save(model, path, tok)
end

function M.export(model, dir, opts)
  opts = options.check("models.export", opts, { format = true }, 2)
  local format = opts.format or "hf"
  if format ~= "hf" then error(("models.export: unknown format '%s' (hf)"):format(tostring(format)), 2) end
  C.export_hf(model, dir)
end

local function human(n)
  if n >= 1e9 then return ("%.2fB"):format(n / 1e9) end
  if n >= 1e6 then return ("%.2fM"):format(n / 1e6) end
  if n >= 1e3 then return ("%.1fK"):format(n / 1e3) end
  return tostring(n)
end

function M.summary(model)
  local c = model:config()
  local lines = {
    ("GPT (%s): %s parameters"):format(c.arch, human(model:num_parameters())),
    ("  layers %d, heads %d%s, embedding %d, MLP %d, vocab %d, context %d"):format(c.n_layer, c.n_head,
      c.n_kv_head ~= c.n_head and (" (kv " .. c.n_kv_head .. ")") or "", c.n_embd, c.n_hidden, c.vocab_size,
      c.block_size),
  }
  local extra = {}
  if c.arch ~= "llama" then extra[#extra + 1] = c.gelu_tanh and "GELU (tanh)" or "GELU" end
  if c.arch == "llama" then extra[#extra + 1] = ("RoPE theta %g"):format(c.rope_theta) end
  if c.arch == "neo" and #c.local_layers > 0 then
    extra[#extra + 1] = ("local attention (window %d) in layers %s"):format(c.window, table.concat(c.local_layers, ","))
  end
  extra[#extra + 1] = c.tie_head and "tied head" or "separate head"
  extra[#extra + 1] = c.bias and "biases" or "no biases"
  if c.dropout > 0 then extra[#extra + 1] = ("dropout %g"):format(c.dropout) end
  lines[#lines + 1] = "  " .. table.concat(extra, ", ")
  return table.concat(lines, "\n")
end

return M
