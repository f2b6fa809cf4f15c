-- Chat templates: how a list of role-tagged messages becomes the one string a
-- language model reads. The server (src/serve) and gl.llm.local_model use them.
--
--   ct.render(messages [, name [, opts]]) -> prompt_text, stop_strings
--     messages: {{role = "system"|"user"|"assistant", content = string}, ...}
--       (roles "human" and "ai" are aliases of "user" and "assistant").
--     name: "chatml" (default), "llama2" or "plain".
--     opts: {generation = true}: end with the opening of the assistant's turn,
--       so the model's continuation is the answer (false: just the turns).
--     stop_strings: the strings that end the assistant's turn; generation
--       stops at them and they are not part of the answer.
--   ct.names() -> {"chatml", "llama2", "plain"}
--   ct.default_for(model) -> "chatml" when the model's tokenizer has the
--     <|im_start|> token, else "plain" (a base model reads plain text best;
--     name "llama2" explicitly for Llama-2-chat weights).
--
-- The three formats, for system S, user U, assistant A, then user V:
--   chatml  <|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n
--           <|im_start|>assistant\nA<|im_end|>\n<|im_start|>user\nV<|im_end|>\n
--           <|im_start|>assistant\n
--   llama2  <s>[INST] <<SYS>>\nS\n<</SYS>>\n\nU [/INST] A </s><s>[INST] V [/INST]
--           (Meta's Llama-2-chat format as Hugging Face's template writes it,
--           contents stripped; the system message joins the first user turn;
--           user and assistant must alternate and the last turn is the user's)
--   plain   System: S\nUser: U\nAssistant: A\nUser: V\nAssistant:
local M = {}

local ROLES = { system = "system", user = "user", assistant = "assistant", human = "user", ai = "assistant" }

local function fail(fmt, ...) error(("chat_template: " .. fmt):format(...), 3) end

-- The messages with roles resolved, checked.
local function normalize(messages)
  if type(messages) ~= "table" then fail("messages must be a list, got %s", type(messages)) end
  local out = {}
  for i, m in ipairs(messages) do
    if type(m) ~= "table" then fail("message %d must be a table {role=, content=}, got %s", i, type(m)) end
    local role = ROLES[m.role]
    if not role then
      fail("message %d has unknown role '%s' (system, user/human, assistant/ai)", i, tostring(m.role))
    end
    if type(m.content) ~= "string" then
      fail("message %d (%s) content must be a string, got %s", i, role, type(m.content))
    end
    out[i] = { role = role, content = m.content }
  end
  if #out == 0 then fail("no messages") end
  return out
end

local function strip(s) return (s:gsub("^%s+", ""):gsub("%s+$", "")) end

local formats = {}

function formats.chatml(msgs, generation)
  local parts = {}
  for _, m in ipairs(msgs) do parts[#parts + 1] = "<|im_start|>" .. m.role .. "\n" .. m.content .. "<|im_end|>\n" end
  if generation then parts[#parts + 1] = "<|im_start|>assistant\n" end
  return table.concat(parts), { "<|im_end|>", "<|im_start|>" }
end

function formats.llama2(msgs, generation)
  local sys, first = nil, 1
  if msgs[1].role == "system" then sys, first = strip(msgs[1].content), 2 end
  local parts, want = {}, "user"
  for i = first, #msgs do
    local m = msgs[i]
    if m.role ~= want then
      fail("llama2: message %d is %s, expected %s (after an optional system message, user and assistant alternate)",
        i, m.role, want)
    end
    if m.role == "user" then
      local text = strip(m.content)
      if i == first and sys then text = "<<SYS>>\n" .. sys .. "\n<</SYS>>\n\n" .. text end
      parts[#parts + 1] = "<s>[INST] " .. text .. " [/INST]"
      want = "assistant"
    else
      parts[#parts + 1] = " " .. strip(m.content) .. " </s>"
      want = "user"
    end
  end
  if generation and want ~= "assistant" then
    fail("llama2: the last message must be the user's to generate an answer")
  end
  if #parts == 0 then fail("llama2: a system message needs a user message after it") end
  return table.concat(parts), { "</s>", "[INST]" }
end

local LABEL = { system = "System", user = "User", assistant = "Assistant" }

function formats.plain(msgs, generation)
  local parts = {}
  for _, m in ipairs(msgs) do parts[#parts + 1] = LABEL[m.role] .. ": " .. m.content .. "\n" end
  if generation then parts[#parts + 1] = "Assistant:" end
  return table.concat(parts), { "\nUser:", "\nSystem:" }
end

local NAMES = { "chatml", "llama2", "plain" }

function M.names()
  local out = {}
  for i, n in ipairs(NAMES) do out[i] = n end
  return out
end

function M.render(messages, name, opts)
  name = name or "chatml"
  local f = formats[name]
  if not f then fail("unknown template '%s' (%s)", tostring(name), table.concat(NAMES, ", ")) end
  opts = opts or {}
  for k in pairs(opts) do
    if k ~= "generation" then fail("unknown option '%s'", tostring(k)) end
  end
  local generation = opts.generation ~= false
  local text, stops = f(normalize(messages), generation)
  return text, stops
end

function M.default_for(model)
  local ok, id = pcall(function() return model.tokenizer:id("<|im_start|>") end)
  if ok and id then return "chatml" end
  return "plain"
end

return M
