-- gl.llm: language-model backends with one method,
--   llm:chat(messages, opts, on_token) -> {text, finish_reason = "stop"|"length", tokens_in, tokens_out, seconds}
--     opts: max_tokens = 256, temperature = 1 (0: greedy), top_p, top_k, stop
--     (a string or a list, added to the template's own), seed; on_token(piece)
--     is called with each piece of text as it is generated (streaming).
--
--   gl.llm.local_model(model [, {template = name, tokenizer = tok, name = s}]) -> llm
--     model: a genlab language model (or a path gl.models.load reads);
--     template: a chat template name (lua/genlab/chat_template.lua), by default
--     chat_template.default_for(model); tokenizer: by default model.tokenizer
--     (or the one found next to the weights).
--     llm:render(messages) -> prompt_text, stop_strings   what the model reads
--     llm:encode(text) -> ids (a list, 0-based)           how it reads it
--     llm.model, llm.tokenizer, llm.template, llm.name
--   gl.llm.openai{...}: the OpenAI-compatible client (lua/genlab/openai.lua),
--     loaded the first time it is used.
local gl = require "genlab"
local options = require "genlab.options"
local ct = require "genlab.chat_template"
local gen = require "genlab.generate"

local M = {}

local function fail(fmt, ...) error(("llm: " .. fmt):format(...), 3) end

-- (a call, not a tail call: the error level counts this frame)
local function check_keys(t, allowed, op) options.keys(op, t, allowed, 3) end

-- The ids of text as the model reads it. genlab tokenizers parse the
-- template's special tokens (<|im_start|>, <s>) as such; a SentencePiece
-- model gets BOS first unless the text starts with <s> already.
function M.encode(tok, text)
  local ids
  if type(tok) == "userdata" then
    local bos = tok:kind() == "sentencepiece" and tok:bos_id() ~= nil and text:sub(1, 3) ~= "<s>"
    ids = tok:encode(text, { bos = bos, allow_special = true })
  else
    ids = tok:encode(text)
  end
  if gl.is_tensor(ids) then ids = ids:tolist() end
  return ids
end

local Local = {}
Local.__index = Local

local CHAT_KEYS = { max_tokens = true, temperature = true, top_p = true, top_k = true, stop = true, seed = true }

function M.local_model(model, opts)
  opts = opts or {}
  if type(opts) ~= "table" then fail("local_model: options must be a table") end
  check_keys(opts, { template = true, tokenizer = true, name = true }, "llm.local_model")
  local tok, name = opts.tokenizer, opts.name
  if type(model) == "string" then
    local info
    name = name or model
    model, info = gl.models.load(model)
    tok = tok or info.tokenizer
  end
  if model == nil then fail("local_model: no model") end
  if not tok then
    local ok, t = pcall(function() return model.tokenizer end)
    tok = ok and t or nil
  end
  if not tok then fail("local_model: the model has no tokenizer; pass {tokenizer = ...}") end
  local template = opts.template or ct.default_for({ tokenizer = tok })
  ct.render({ { role = "user", content = "" } }, template) -- an unknown name fails here
  return setmetatable({ model = model, tokenizer = tok, template = template, name = name or "local" }, Local)
end

function Local:render(messages) return ct.render(messages, self.template) end

function Local:encode(text) return M.encode(self.tokenizer, text) end

local function stop_list(template_stops, extra)
  local out = {}
  for _, s in ipairs(template_stops) do out[#out + 1] = s end
  if type(extra) == "string" then extra = { extra } end
  if extra ~= nil and type(extra) ~= "table" then fail("chat: stop must be a string or a list of strings") end
  for _, s in ipairs(extra or {}) do out[#out + 1] = s end
  return out
end

function Local:chat(messages, opts, on_token)
  opts = opts or {}
  if type(opts) ~= "table" then fail("chat: options must be a table") end
  check_keys(opts, CHAT_KEYS, "llm.chat")
  if on_token ~= nil and type(on_token) ~= "function" then fail("chat: on_token must be a function") end
  local text, stops = self:render(messages)
  local ids = self:encode(text)
  local cb
  if on_token then
    cb = function(piece)
      if piece and piece ~= "" then on_token(piece) end
    end
  end
  local _, info = gen.generate(self.model, ids, {
    max_new = opts.max_tokens or 256, temperature = opts.temperature, top_p = opts.top_p, top_k = opts.top_k,
    seed = opts.seed, stop = stop_list(stops, opts.stop), tokenizer = self.tokenizer, on_token = cb,
  })
  return { text = info.text, finish_reason = info.finish_reason, tokens_in = info.tokens_in,
    tokens_out = info.tokens_out, seconds = info.prompt_seconds + info.seconds }
end

function Local:__tostring() return ("LocalLLM(%s, template %s)"):format(self.name, self.template) end

-- gl.llm.openai comes from genlab.openai when it is first asked for.
local function load_openai()
  local ok, mod = pcall(require, "genlab.openai")
  if not ok then
    if tostring(mod):find("module 'genlab.openai' not found", 1, true) then return nil end
    error(mod, 0)
  end
  local f = rawget(M, "openai")
  if f then return f end
  if type(mod) == "function" then return mod end
  if type(mod) == "table" then
    if mod.openai then return mod.openai end
    local mt = getmetatable(mod)
    if mt and mt.__call then return mod end
    return mod.new
  end
end

setmetatable(M, { __index = function(t, k)
  if k ~= "openai" then return nil end
  local f = load_openai()
  rawset(t, "openai", f)
  return f
end })

gl.llm = M
return M
