-- gl.prompt: prompt templates and chat prompts, named as LangChain names them.
--
--   gl.prompt.template(text [, {partial = {name = value|function}}]) -> a string template
--     {name} is a variable; {{ and }} are literal braces, so JSON in a prompt
--     is written {{"key": "{value}"}}. A lone brace is an error.
--   gl.prompt.chat{entry, ...} -> a chat prompt; each entry is
--     {role, text}            role system | human/user | ai/assistant; text a
--                             template string or a template object
--     {role = r, content = s} a literal message (its braces are not variables)
--     gl.prompt.placeholder(name [, {optional = false}])
--                             a list of messages given as variable `name`:
--                             {{role=, content=}, ...}, {{role, content}, ...}
--                             or a memory (anything with :messages())
--     gl.prompt.few_shot{...} with a chat example_prompt: the examples as turns
--   gl.prompt.few_shot{examples = {{...}, ...}, example_prompt = template | chat,
--       prefix = "", suffix = "", separator = "\n\n", partial = {}}
--     with a string example_prompt: a string template whose text is prefix,
--     the examples in order and suffix joined by separator (empty parts are
--     left out); its variables are those of prefix and suffix.
--     with a chat example_prompt: a block of messages for gl.prompt.chat.
--
-- Every prompt p has
--   p.variables          the variable names still to give, in order of appearance
--   p:format(vars)       -> string (a chat prompt: "System: ...\nUser: ..." lines)
--   p:messages(vars)     -> {{role = "system"|"user"|"assistant", content = ...}, ...}
--                           (a string template is one user message)
--   p:partial(vars)      -> a new prompt with some variables fixed
-- Missing variables and variables no part of the prompt uses are errors that
-- name them. Values are strings or numbers; partial values may be functions
-- called at format time.
local gl = require "genlab"
local options = require "genlab.options"

local M = {}

local ROLES = { system = "system", user = "user", human = "user", assistant = "assistant", ai = "assistant" }

local function fail(fmt, ...) error(("prompt: " .. fmt):format(...), 3) end

-- (a call, not a tail call: the error level counts this frame)
local function check_keys(t, allowed, op) options.keys(op, t, allowed, 3) end

-- Pieces of a template text: strings and {var = name}; names in order, once each.
local function parse(text)
  local pieces, names, seen, buf = {}, {}, {}, {}
  local i, n = 1, #text
  while i <= n do
    local c = text:sub(i, i)
    if c == "{" and text:sub(i + 1, i + 1) == "{" then
      buf[#buf + 1], i = "{", i + 2
    elseif c == "}" and text:sub(i + 1, i + 1) == "}" then
      buf[#buf + 1], i = "}", i + 2
    elseif c == "{" then
      local name, e = text:match("^([%a_][%w_]*)}()", i + 1)
      if not name then
        fail("bad '{' at byte %d of %q: a variable is {name} (letters, digits, _); write {{ for a literal brace",
          i, text)
      end
      if #buf > 0 then pieces[#pieces + 1], buf = table.concat(buf), {} end
      pieces[#pieces + 1] = { var = name }
      if not seen[name] then names[#names + 1], seen[name] = name, true end
      i = e
    elseif c == "}" then
      fail("lone '}' at byte %d of %q; write }} for a literal brace", i, text)
    else
      local j = text:find("[{}]", i) or n + 1
      buf[#buf + 1], i = text:sub(i, j - 1), j
    end
  end
  if #buf > 0 then pieces[#pieces + 1] = table.concat(buf) end
  return pieces, names
end

local function value_text(name, v)
  if type(v) == "function" then v = v() end
  if type(v) == "number" then return tostring(v) end
  if type(v) ~= "string" then fail("variable '%s' must be a string or a number, got %s", name, type(v)) end
  return v
end

local function sorted_keys(set)
  local out = {}
  for k in pairs(set) do out[#out + 1] = tostring(k) end
  table.sort(out)
  return out
end

-- Raises when vars lacks one of `names` (not in partial) or holds a key outside `names`.
local function check_vars(vars, names, partial)
  if type(vars) ~= "table" then fail("variables must be a table, got %s", type(vars)) end
  local want, missing = {}, {}
  for _, name in ipairs(names) do
    want[name] = true
    if vars[name] == nil and partial[name] == nil then missing[#missing + 1] = name end
  end
  if #missing > 0 then fail("missing variable%s: %s", #missing > 1 and "s" or "", table.concat(missing, ", ")) end
  local unknown = {}
  for k in pairs(vars) do
    if not want[k] then unknown[k] = true end
  end
  local list = sorted_keys(unknown)
  if #list > 0 then
    fail("unknown variable%s: %s (the prompt uses: %s)", #list > 1 and "s" or "", table.concat(list, ", "),
      #names > 0 and table.concat(names, ", ") or "none")
  end
end

local function lookup(vars, partial, name)
  local v = vars[name]
  if v == nil then v = partial[name] end
  return v
end

-- The names of `all` not fixed by `partial`.
local function open_names(all, partial)
  local out = {}
  for _, n in ipairs(all) do
    if partial[n] == nil then out[#out + 1] = n end
  end
  return out
end

local function merged(a, b)
  local out = {}
  for k, v in pairs(a) do out[k] = v end
  for k, v in pairs(b) do out[k] = v end
  return out
end

local function check_partial(partial, all, op)
  if partial == nil then return {} end
  if type(partial) ~= "table" then fail("%s: partial must be a table", op) end
  local known = {}
  for _, n in ipairs(all) do known[n] = true end
  for k in pairs(partial) do
    if not known[k] then fail("%s: partial variable '%s' is not in the prompt", op, tostring(k)) end
  end
  return partial
end

---------------------------------------------------------------------------
-- String templates

local Template = { kind = "template" }
Template.__index = Template

-- A template from parsed pieces; render(vars, partial) is the text.
local function new_template(all, partial, render, source)
  return setmetatable({ all = all, partial_values = partial, variables = open_names(all, partial), render = render,
    source = source }, Template)
end

function Template:format(vars)
  vars = vars or {}
  check_vars(vars, self.all, self.partial_values)
  return self.render(vars, self.partial_values)
end

-- Formats without the unknown-variable check: used inside chat prompts, whose
-- variables are shared among their messages.
function Template:fill(vars, partial)
  return self.render(vars, merged(self.partial_values, partial or {}))
end

function Template:messages(vars) return { { role = "user", content = self:format(vars) } } end

function Template:partial(vars)
  return new_template(self.all, merged(self.partial_values, check_partial(vars, self.all, "partial")), self.render,
    self.source)
end

function Template:__tostring() return ("PromptTemplate(%s)"):format(table.concat(self.variables, ", ")) end

local function render_pieces(pieces)
  return function(vars, partial)
    local out = {}
    for i, p in ipairs(pieces) do
      if type(p) == "string" then
        out[i] = p
      else
        local v = lookup(vars, partial, p.var)
        if v == nil then fail("missing variable: %s", p.var) end
        out[i] = value_text(p.var, v)
      end
    end
    return table.concat(out)
  end
end

function M.template(text, opts)
  if type(text) ~= "string" then fail("template: expected a string, got %s", type(text)) end
  opts = opts or {}
  check_keys(opts, { partial = true }, "prompt.template")
  local pieces, names = parse(text)
  return new_template(names, check_partial(opts.partial, names, "template"), render_pieces(pieces), text)
end

local function as_template(x, op)
  if type(x) == "string" then return M.template(x) end
  if getmetatable(x) == Template then return x end
  fail("%s: expected a template string or gl.prompt.template, got %s", op, type(x))
end

---------------------------------------------------------------------------
-- Chat prompts

local Chat = { kind = "chat" }
Chat.__index = Chat

local Placeholder = { kind = "placeholder" }
Placeholder.__index = Placeholder

function M.placeholder(name, opts)
  if type(name) ~= "string" or not name:match("^[%a_][%w_]*$") then
    fail("placeholder: name must be an identifier, got %s", tostring(name))
  end
  opts = opts or {}
  check_keys(opts, { optional = true }, "prompt.placeholder")
  return setmetatable({ name = name, optional = opts.optional == true }, Placeholder)
end

-- The messages a placeholder value stands for.
local function history_messages(name, v)
  if type(v) == "table" and type(v.messages) == "function" then v = v:messages() end
  if type(v) ~= "table" then fail("placeholder '%s' must be a list of messages or a memory, got %s", name, type(v)) end
  local out = {}
  for i, m in ipairs(v) do
    if type(m) ~= "table" then fail("placeholder '%s': message %d must be a table, got %s", name, i, type(m)) end
    local role, content = m.role or m[1], m.content or m[2]
    if not ROLES[role] then fail("placeholder '%s': message %d has unknown role '%s'", name, i, tostring(role)) end
    if type(content) ~= "string" then fail("placeholder '%s': message %d content must be a string", name, i) end
    out[i] = { role = ROLES[role], content = content }
  end
  return out
end

-- A few-shot block of turns (few_shot with a chat example_prompt).
local Shots = { kind = "shots" }
Shots.__index = Shots

-- The example's values for names (examples may carry more keys than a prompt uses).
local function pick(ex, names)
  local out = {}
  for _, n in ipairs(names) do out[n] = ex[n] end
  return out
end

function Shots:fill()
  local out = {}
  for _, ex in ipairs(self.examples) do
    for _, m in ipairs(self.example_prompt:messages(pick(ex, self.example_prompt.variables))) do out[#out + 1] = m end
  end
  return out
end

-- Entries: {kind = "message", role, template} | {kind = "literal", role, content}
-- | placeholder | shots.
local function chat_entry(e, i)
  local mt = getmetatable(e)
  if mt == Placeholder or mt == Shots then return e end
  if type(e) ~= "table" then fail("chat: entry %d must be a table, got %s", i, type(e)) end
  if e.role ~= nil then
    if not ROLES[e.role] then fail("chat: entry %d has unknown role '%s'", i, tostring(e.role)) end
    if type(e.content) ~= "string" then fail("chat: entry %d content must be a string", i) end
    return { kind = "literal", role = ROLES[e.role], content = e.content }
  end
  local role = ROLES[e[1]]
  if not role then
    fail("chat: entry %d has unknown role '%s' (system, human/user, ai/assistant)", i, tostring(e[1]))
  end
  if e[2] == nil then fail("chat: entry %d (%s) has no text", i, role) end
  return { kind = "message", role = role, template = as_template(e[2], "chat") }
end

local function chat_names(entries)
  local names, seen = {}, {}
  local function add(n)
    if not seen[n] then names[#names + 1], seen[n] = n, true end
  end
  for _, e in ipairs(entries) do
    if e.kind == "message" then
      for _, n in ipairs(e.template.variables) do add(n) end
    elseif getmetatable(e) == Placeholder then
      add(e.name)
    end
  end
  return names
end

local function new_chat(entries, partial)
  local all = chat_names(entries)
  partial = check_partial(partial, all, "chat")
  return setmetatable({ entries = entries, all = all, partial_values = partial, variables = open_names(all, partial) },
    Chat)
end

function M.chat(list)
  if type(list) ~= "table" then fail("chat: expected a list of messages, got %s", type(list)) end
  local entries = {}
  for i, e in ipairs(list) do entries[i] = chat_entry(e, i) end
  for k in pairs(list) do
    if math.type(k) ~= "integer" then fail("chat: unexpected key '%s' (entries are a list)", tostring(k)) end
  end
  return new_chat(entries, nil)
end

function Chat:messages(vars)
  vars = vars or {}
  -- optional placeholders may be left out; they are not missing
  local relaxed = {}
  for k, v in pairs(self.partial_values) do relaxed[k] = v end
  for _, e in ipairs(self.entries) do
    if getmetatable(e) == Placeholder and e.optional and relaxed[e.name] == nil then relaxed[e.name] = false end
  end
  check_vars(vars, self.all, relaxed)
  local out = {}
  for _, e in ipairs(self.entries) do
    local mt = getmetatable(e)
    if mt == Placeholder then
      local v = lookup(vars, self.partial_values, e.name)
      if v ~= nil then
        for _, m in ipairs(history_messages(e.name, v)) do out[#out + 1] = m end
      end
    elseif mt == Shots then
      for _, m in ipairs(e:fill()) do out[#out + 1] = m end
    elseif e.kind == "literal" then
      out[#out + 1] = { role = e.role, content = e.content }
    else
      out[#out + 1] = { role = e.role, content = e.template:fill(vars, self.partial_values) }
    end
  end
  return out
end

local LABEL = { system = "System", user = "Human", assistant = "AI" }

function Chat:format(vars)
  local lines = {}
  for i, m in ipairs(self:messages(vars)) do lines[i] = LABEL[m.role] .. ": " .. m.content end
  return table.concat(lines, "\n")
end

function Chat:partial(vars)
  return new_chat(self.entries, merged(self.partial_values, check_partial(vars, self.all, "partial")))
end

function Chat:__tostring() return ("ChatPromptTemplate(%s)"):format(table.concat(self.variables, ", ")) end

---------------------------------------------------------------------------
-- Few-shot prompts

function M.few_shot(opts)
  if type(opts) ~= "table" then fail("few_shot: expected an options table") end
  check_keys(opts, { examples = true, example_prompt = true, prefix = true, suffix = true, separator = true,
    partial = true }, "prompt.few_shot")
  local examples = opts.examples
  if type(examples) ~= "table" or #examples == 0 then fail("few_shot: examples must be a non-empty list of tables") end
  for i, ex in ipairs(examples) do
    if type(ex) ~= "table" then fail("few_shot: example %d must be a table of variables, got %s", i, type(ex)) end
  end
  local ep = opts.example_prompt
  if getmetatable(ep) == Chat then
    if opts.prefix or opts.suffix or opts.separator or opts.partial then
      fail("few_shot: prefix, suffix, separator and partial apply to string examples; put chat turns around the block")
    end
    local shots = setmetatable({ examples = examples, example_prompt = ep }, Shots)
    shots:fill() -- a missing variable is an error now, not at first use
    return shots
  end
  ep = as_template(ep, "few_shot: example_prompt")
  local sep = opts.separator or "\n\n"
  if type(sep) ~= "string" then fail("few_shot: separator must be a string") end
  local shots = {}
  for i, ex in ipairs(examples) do shots[i] = ep:format(pick(ex, ep.variables)) end
  local prefix, suffix = as_template(opts.prefix or ""), as_template(opts.suffix or "")
  local names, seen = {}, {}
  for _, t in ipairs { prefix, suffix } do
    for _, n in ipairs(t.all) do
      if not seen[n] then names[#names + 1], seen[n] = n, true end
    end
  end
  local function render(vars, partial)
    local parts = {}
    local function add(s)
      if s ~= "" then parts[#parts + 1] = s end
    end
    add(prefix:fill(vars, partial))
    for _, s in ipairs(shots) do add(s) end
    add(suffix:fill(vars, partial))
    return table.concat(parts, sep)
  end
  return new_template(names, check_partial(opts.partial, names, "few_shot"), render, nil)
end

-- Is x a prompt of this module?
function M.is_prompt(x)
  local mt = getmetatable(x)
  return mt == Template or mt == Chat
end

gl.prompt = M
return M
