-- gl.chain: a prompt, a language model and its options, invoked as one.
--
--   local c = gl.chain{prompt = p, llm = llm, options = {max_tokens = 64, temperature = 0, stop = {...}},
--                      parse = nil, output_key = "text", memory = nil, memory_key = "history", input_key = nil}
--     prompt: a gl.prompt object or a template string; llm: anything with
--     llm:chat(messages, opts, on_token) -> {text, finish_reason, tokens_in, tokens_out, seconds}
--     (gl.llm.local_model, gl.llm.openai). parse(text) -> value turns the text into
--     the chain's result. With a memory, the prompt's `memory_key` variable (a
--     placeholder) is the conversation so far, and each invoke appends the
--     user's input (variable `input_key`, by default the one other variable)
--     and the answer.
--   c:invoke(vars [, {on_token = fn, ...option overrides}]) -> result, meta
--     meta: tokens_in, tokens_out, seconds, finish_reason, prompt_text, messages, text
--   c:render(vars) -> messages, prompt_text   exactly what the model sees (the
--     llm's chat template applied; llms without llm:render show the plain form)
--   c.variables   the variables invoke needs
--
--   gl.chain.sequence{c1, c2, ...} (also c1 .. c2) -> a chain whose steps run in
--     order; every step's result is stored as its output_key, and each step takes
--     the variables its prompt uses from the inputs and the results before it.
--     invoke(vars) -> the last result, meta with steps = {meta, ...}, outputs =
--     {key = result}, tokens and seconds summed, the last step's finish_reason.
--
--   gl.chain.memory{max_messages = nil} -> a conversation memory:
--     m:add(role, content), m:add_user(text), m:add_ai(text), m:messages()
--     (a copy, the last max_messages when set), m:clear(), #m (messages kept)
local gl = require "genlab"
local options = require "genlab.options"
local prompt = require "genlab.prompt"
local ct = require "genlab.chat_template"

local M = {}

local function fail(fmt, ...) error(("chain: " .. fmt):format(...), 3) end

-- (a call, not a tail call: the error level counts this frame)
local function check_keys(t, allowed, op) options.keys(op, t, allowed, 3) end

---------------------------------------------------------------------------
-- Memory

local Memory = {}
Memory.__index = Memory

local ROLES = { system = "system", user = "user", human = "user", assistant = "assistant", ai = "assistant" }

function M.memory(opts)
  opts = opts or {}
  check_keys(opts, { max_messages = true }, "chain.memory")
  local max = opts.max_messages
  if max ~= nil and (math.type(max) ~= "integer" or max < 1) then
    fail("memory: max_messages must be an integer >= 1, got %s", tostring(max))
  end
  return setmetatable({ list = {}, max = max }, Memory)
end

function Memory:add(role, content)
  if not ROLES[role] then fail("memory: unknown role '%s'", tostring(role)) end
  if type(content) ~= "string" then fail("memory: content must be a string, got %s", type(content)) end
  self.list[#self.list + 1] = { role = ROLES[role], content = content }
  if self.max then
    while #self.list > self.max do table.remove(self.list, 1) end
  end
end

function Memory:add_user(text) self:add("user", text) end
function Memory:add_ai(text) self:add("assistant", text) end
function Memory:clear() self.list = {} end
function Memory:__len() return #self.list end

function Memory:messages()
  local out = {}
  for i, m in ipairs(self.list) do out[i] = { role = m.role, content = m.content } end
  return out
end

---------------------------------------------------------------------------
-- Chains

local Chain = {}
Chain.__index = Chain
local Sequence = {}
Sequence.__index = Sequence

local OPTION_KEYS = { max_tokens = true, temperature = true, top_p = true, top_k = true, stop = true, seed = true }

local function check_options(o, op)
  if o == nil then return {} end
  if type(o) ~= "table" then fail("%s: options must be a table", op) end
  check_keys(o, OPTION_KEYS, op)
  return o
end

local function new_chain(_, spec)
  if type(spec) ~= "table" then fail("expected {prompt=, llm=, ...}") end
  check_keys(spec, { prompt = true, llm = true, options = true, parse = true, output_key = true, memory = true,
    memory_key = true, input_key = true }, "chain")
  local p = spec.prompt
  if type(p) == "string" then p = prompt.template(p) end
  if not prompt.is_prompt(p) then fail("prompt must be a gl.prompt object or a template string, got %s", type(p)) end
  local llm = spec.llm
  if llm == nil or type(llm.chat) ~= "function" then fail("llm must have a chat(messages, opts, on_token) method") end
  if spec.parse ~= nil and type(spec.parse) ~= "function" then fail("parse must be a function(text) -> value") end
  local out_key = spec.output_key or "text"
  if type(out_key) ~= "string" then fail("output_key must be a string") end
  local c = setmetatable({ prompt = p, llm = llm, options = check_options(spec.options, "chain options"),
    parse = spec.parse, output_key = out_key, memory = spec.memory }, Chain)
  local vars = {}
  if c.memory then
    if type(c.memory.messages) ~= "function" or type(c.memory.add) ~= "function" then
      fail("memory must be a gl.chain.memory() (with messages() and add())")
    end
    c.memory_key = spec.memory_key or "history"
    local has = false
    for _, n in ipairs(p.variables) do
      if n == c.memory_key then has = true else vars[#vars + 1] = n end
    end
    if not has then fail("memory: the prompt has no '%s' placeholder (set memory_key)", c.memory_key) end
    c.input_key = spec.input_key or (#vars == 1 and vars[1]) or nil
    if not c.input_key then
      fail("memory: set input_key to the variable saved as the user's turn (the prompt uses: %s)",
        table.concat(vars, ", "))
    end
  else
    if spec.memory_key or spec.input_key then fail("memory_key and input_key need a memory") end
    for i, n in ipairs(p.variables) do vars[i] = n end
  end
  c.variables = vars
  return c
end

setmetatable(M, { __call = new_chain })

-- The prompt's variables for these inputs (the memory's turns added).
function Chain:_vars(vars)
  vars = vars or {}
  if type(vars) ~= "table" then fail("invoke: variables must be a table, got %s", type(vars)) end
  if not self.memory then return vars end
  if vars[self.memory_key] ~= nil then fail("'%s' comes from the chain's memory; do not pass it", self.memory_key) end
  local out = {}
  for k, v in pairs(vars) do out[k] = v end
  out[self.memory_key] = self.memory:messages()
  return out
end

local function prompt_text(llm, messages)
  if type(llm.render) == "function" then return (llm:render(messages)) end
  return (ct.render(messages, "plain"))
end

function Chain:render(vars)
  local messages = self.prompt:messages(self:_vars(vars))
  return messages, prompt_text(self.llm, messages)
end

function Chain:invoke(vars, opts)
  opts = opts or {}
  if type(opts) ~= "table" then fail("invoke: options must be a table") end
  local on_token = opts.on_token
  if on_token ~= nil and type(on_token) ~= "function" then fail("invoke: on_token must be a function") end
  local merged = {}
  for k, v in pairs(self.options) do merged[k] = v end
  for k, v in pairs(opts) do
    if k ~= "on_token" then
      if not OPTION_KEYS[k] then fail("invoke: unknown option '%s'", tostring(k)) end
      merged[k] = v
    end
  end
  local messages, text = self:render(vars)
  local r = self.llm:chat(messages, merged, on_token)
  if type(r) ~= "table" or type(r.text) ~= "string" then fail("llm:chat must return a table with a text string") end
  if self.memory then
    self.memory:add("user", tostring(vars[self.input_key]))
    self.memory:add("assistant", r.text)
  end
  local meta = { tokens_in = r.tokens_in, tokens_out = r.tokens_out, seconds = r.seconds,
    finish_reason = r.finish_reason, prompt_text = text, messages = messages, text = r.text }
  local result = r.text
  if self.parse then result = self.parse(r.text) end
  return result, meta
end

function Chain:__tostring()
  return ("Chain(%s -> %s)"):format(table.concat(self.variables, ", "), self.output_key)
end

---------------------------------------------------------------------------
-- Sequences

local function steps_of(x, out)
  if getmetatable(x) == Sequence then
    for _, s in ipairs(x.steps) do out[#out + 1] = s end
  elseif getmetatable(x) == Chain then
    out[#out + 1] = x
  else
    fail("sequence: a step must be a chain, got %s", type(x))
  end
end

-- The inputs a sequence needs: the variables of its steps no earlier step produces.
local function sequence_vars(steps)
  local made, seen, vars = {}, {}, {}
  for _, s in ipairs(steps) do
    for _, n in ipairs(s.variables) do
      if not made[n] and not seen[n] then vars[#vars + 1], seen[n] = n, true end
    end
    made[s.output_key] = true
  end
  return vars
end

function M.sequence(list)
  if type(list) ~= "table" then fail("sequence: expected a list of chains") end
  local steps = {}
  for _, x in ipairs(list) do steps_of(x, steps) end
  if #steps < 1 then fail("sequence: no chains") end
  local s = setmetatable({ steps = steps, variables = sequence_vars(steps), output_key = steps[#steps].output_key },
    Sequence)
  return s
end

local function concat(a, b) return M.sequence { a, b } end
Chain.__concat, Sequence.__concat = concat, concat

function Sequence:invoke(vars, opts)
  vars = vars or {}
  if type(vars) ~= "table" then fail("sequence: variables must be a table, got %s", type(vars)) end
  local need = {}
  for _, n in ipairs(self.variables) do need[n] = true end
  local missing = {}
  for _, n in ipairs(self.variables) do
    if vars[n] == nil then missing[#missing + 1] = n end
  end
  if #missing > 0 then fail("sequence: missing variables: %s", table.concat(missing, ", ")) end
  for k in pairs(vars) do
    if not need[k] then fail("sequence: unknown variable '%s' (the sequence uses: %s)", tostring(k),
        table.concat(self.variables, ", ")) end
  end
  local known, outputs, metas = {}, {}, {}
  for k, v in pairs(vars) do known[k] = v end
  local total = { tokens_in = 0, tokens_out = 0, seconds = 0 }
  local result, meta
  for i, step in ipairs(self.steps) do
    local mine = {}
    for _, n in ipairs(step.variables) do mine[n] = known[n] end
    result, meta = step:invoke(mine, opts)
    known[step.output_key], outputs[step.output_key], metas[i] = result, result, meta
    for k in pairs(total) do total[k] = total[k] + (meta[k] or 0) end
  end
  total.finish_reason, total.prompt_text, total.text = meta.finish_reason, meta.prompt_text, meta.text
  total.steps, total.outputs = metas, outputs
  return result, total
end

function Sequence:__tostring()
  local names = {}
  for i, s in ipairs(self.steps) do names[i] = s.output_key end
  return ("Sequence(%s -> %s)"):format(table.concat(self.variables, ", "), table.concat(names, " -> "))
end

gl.chain = M
return M
