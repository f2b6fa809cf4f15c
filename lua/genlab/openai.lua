-- gl.llm.openai: a chat backend for any OpenAI-compatible endpoint (genlab
-- serve, llama.cpp, vLLM, OpenAI itself), over gl.http.
--
--   llm = gl.llm.openai{base_url = "http://127.0.0.1:8080/v1", model = "name",
--                       api_key_env = "OPENAI_API_KEY", timeout = 60, retries = 3, backoff = 0.5}
--   llm:chat(messages, opts, on_token) -> {text =, finish_reason = "stop" | "length" | ...,
--                                          tokens_in =, tokens_out =, seconds =}
--   llm:models() -> {"id", ...}
--
-- messages: {{role = "system" | "user" | "assistant", content = "..."}, ...}
-- (human -> user, ai -> assistant). opts: max_tokens, temperature, top_p,
-- top_k, stop (a string or a list), seed. With on_token(piece) the reply
-- streams (server-sent events) and each piece is passed on as it arrives.
--
-- The API key is read from the environment variable api_key_env when the
-- backend is made (false: send none), kept outside the object and sent only
-- as "Authorization: Bearer"; it is cut out of every error message, even one
-- in which a server repeats it. Connection failures, timeouts, 429 and 5xx
-- are retried `retries` times, waiting backoff * 2^(attempt - 1) seconds (or
-- what a 429's Retry-After asks, up to 30 s); a stream that has already
-- passed pieces on is never retried. Other statuses raise at once, one line:
--   openai: POST http://127.0.0.1:8080/v1/chat/completions: HTTP 404: model 'x' does not exist
-- tokens_in and tokens_out come from the server's usage report; when a
-- stream has none, tokens_out counts the streamed pieces and tokens_in is nil.
local gl = require "genlab"
local options = require "genlab.options"

gl.llm = gl.llm or {}

local Client = { __name = "genlab.llm.openai" }
Client.__index = Client

local keys = setmetatable({}, { __mode = "k" }) -- client -> API key, never on the object

local ROLE_ALIASES = { human = "user", ai = "assistant" }
local ROLES = { system = true, user = true, assistant = true }
local CHAT_OPTIONS = { max_tokens = true, temperature = true, top_p = true, top_k = true, stop = true, seed = true }
local MAX_RETRY_AFTER = 30

-- (a call, not a tail call: the error level counts this frame)
local function check_keys(op, t, allowed) options.keys(op, t, allowed, 3) end

local function check_number(op, name, v, lo)
  if type(v) ~= "number" or v ~= v or v < lo then
    error(("%s: %s must be a number >= %g"):format(op, name, lo), 3)
  end
end

function gl.llm.openai(opts)
  local op = "llm.openai"
  if type(opts) ~= "table" then error(op .. ": expects an options table {base_url=, model=, ...}", 2) end
  check_keys(op, opts, { base_url = true, model = true, api_key_env = true, timeout = true, retries = true,
                         backoff = true })
  local self = setmetatable({
    base_url = (opts.base_url or "http://127.0.0.1:8080/v1"):gsub("/+$", ""),
    model = opts.model,
    timeout = opts.timeout or 60,
    retries = opts.retries or 3,
    backoff = opts.backoff or 0.5,
  }, Client)
  if type(self.base_url) ~= "string" or not (self.base_url:match("^[hH][tT][tT][pP][sS]?://")) then
    error(op .. ": base_url must be an http:// or https:// URL", 2)
  end
  if self.model ~= nil and type(self.model) ~= "string" then error(op .. ": model must be a string", 2) end
  check_number(op, "timeout", self.timeout, 0.001)
  check_number(op, "backoff", self.backoff, 0)
  if math.type(self.retries) ~= "integer" or self.retries < 0 then
    error(op .. ": retries must be an integer >= 0", 2)
  end
  local env = opts.api_key_env
  if env == nil then env = "OPENAI_API_KEY" end
  if env ~= false then
    if type(env) ~= "string" then error(op .. ": api_key_env must be a variable name or false", 2) end
    local key = os.getenv(env)
    if key and key ~= "" then keys[self] = key end
  end
  return self
end

function Client:__tostring()
  return ("openai llm %s at %s%s"):format(self.model or "(no model)", self.base_url,
    keys[self] and " (with API key)" or "")
end

-- msg with the API key cut out.
local function scrub(self, msg)
  local key = keys[self]
  msg = tostring(msg)
  if not key then return msg end
  local out, pos = {}, 1
  while true do
    local i, j = msg:find(key, pos, true)
    if not i then break end
    out[#out + 1] = msg:sub(pos, i - 1) .. "***"
    pos = j + 1
  end
  out[#out + 1] = msg:sub(pos)
  return table.concat(out)
end

-- The server's own words from an error body: {"error": {"message": ...}} and
-- its variants, else the start of the body, on one line.
local function server_message(body)
  local ok, v = pcall(gl.json.decode, body)
  local msg
  if ok and type(v) == "table" then
    local e = v.error
    msg = (type(e) == "table" and e.message) or (type(e) == "string" and e) or v.message or v.detail
  end
  if type(msg) ~= "string" then msg = body ~= "" and body:sub(1, 200) or "(empty body)" end
  return (msg:gsub("%s+", " "))
end

-- A parser for server-sent events: feed(chunk) takes bytes as they come (a
-- line may be split anywhere), finish() ends the stream; each event's data
-- (its "data:" lines joined by newlines) goes to on_event.
local function sse_parser(on_event)
  local buf, data = "", nil
  local function line(l)
    if l == "" then
      if data then
        local d = data
        data = nil
        on_event(d)
      end
    elseif l:sub(1, 1) ~= ":" then -- ":" starts a comment
      local field, value = l:match("^([^:]*):? ?(.*)$")
      if field == "data" then data = data and (data .. "\n" .. value) or value end
    end
  end
  local p = {}
  function p.feed(chunk)
    buf = buf .. chunk
    local pos = 1
    while true do
      local i = buf:find("\n", pos, true)
      if not i then break end
      line((buf:sub(pos, i - 1):gsub("\r$", "")))
      pos = i + 1
    end
    buf = buf:sub(pos)
  end
  function p.finish()
    if buf ~= "" then line((buf:gsub("\r$", ""))) end
    buf = ""
    line("")
  end
  return p
end

-- One HTTP exchange with retries. Returns the response of a 2xx; raises
-- otherwise. stream, when given, is {on_data = fn, pieces = fn -> count, reset = fn}.
function Client:_call(method, path, body, stream)
  local url = self.base_url .. path
  local headers = { Accept = stream and "text/event-stream" or "application/json" }
  if body then headers["Content-Type"] = "application/json" end
  if keys[self] then headers.Authorization = "Bearer " .. keys[self] end
  local attempts, why = self.retries + 1, nil
  for attempt = 1, attempts do
    if stream then stream.reset() end
    local ok, res = pcall(gl.http.request, {
      method = method, url = url, headers = headers, body = body, timeout = self.timeout,
      connect_timeout = math.min(self.timeout, 10), on_data = stream and stream.on_data,
    })
    local wait = self.backoff * 2 ^ (attempt - 1)
    if ok and res.status >= 200 and res.status < 300 then
      return res
    elseif ok and (res.status == 429 or res.status >= 500) then
      why = ("HTTP %d: %s"):format(res.status, server_message(res.body))
      local after = tonumber(res.headers["retry-after"] or "")
      if res.status == 429 and after then wait = math.min(math.max(after, 0), MAX_RETRY_AFTER) end
    elseif ok then
      error(scrub(self, ("openai: %s %s: HTTP %d: %s"):format(method, url, res.status, server_message(res.body))), 0)
    else
      res = tostring(res)
      -- Only network failures ("http: METHOD URL: reason") are worth another try.
      if not res:find("^http: ") or res:find(": interrupted$") then error(scrub(self, res), 0) end
      why = res:gsub("^http: [A-Z]+ %S+: ", "")
    end
    if stream and stream.pieces() > 0 then
      error(scrub(self, ("openai: %s %s: the stream broke after %d pieces: %s"):format(method, url,
        stream.pieces(), why)), 0)
    end
    if attempt < attempts then gl.http.sleep(wait) end
  end
  local tries = attempts > 1 and (" (%d attempts)"):format(attempts) or ""
  error(scrub(self, ("openai: %s %s: %s%s"):format(method, url, why, tries)), 0)
end

local function check_messages(messages)
  if type(messages) ~= "table" then error("openai: chat: messages must be a list of {role=, content=}", 3) end
  local out = {}
  for i, m in ipairs(messages) do
    local role = type(m) == "table" and m.role
    role = ROLE_ALIASES[role] or role
    if not ROLES[role] then
      error(("openai: chat: message %d has role %s (system, user or assistant)"):format(i, tostring(role)), 3)
    end
    if type(m.content) ~= "string" then error(("openai: chat: message %d has no string content"):format(i), 3) end
    out[i] = { role = role, content = m.content }
  end
  return gl.json.array(out)
end

function Client:chat(messages, opts, on_token)
  opts = opts or {}
  if type(opts) ~= "table" then error("openai: chat: opts must be a table", 2) end
  check_keys("openai: chat", opts, CHAT_OPTIONS)
  if on_token ~= nil and type(on_token) ~= "function" then error("openai: chat: on_token must be a function", 2) end
  if not self.model then error("openai: chat: no model (give gl.llm.openai{model = ...})", 2) end
  local req = { model = self.model, messages = check_messages(messages) }
  for k in pairs(CHAT_OPTIONS) do req[k] = opts[k] end
  if type(req.stop) == "string" then req.stop = { req.stop } end
  if req.stop then req.stop = gl.json.array(req.stop) end
  if on_token then
    req.stream = true
    req.stream_options = { include_usage = true }
  end
  local t0 = gl.clock()

  if not on_token then
    local res = self:_call("POST", "/chat/completions", gl.json.encode(req))
    local ok, v = pcall(gl.json.decode, res.body)
    local choice = ok and type(v) == "table" and type(v.choices) == "table" and v.choices[1]
    local msg = type(choice) == "table" and type(choice.message) == "table" and choice.message
    if not msg then error(scrub(self, "openai: chat: the server's reply has no choices[1].message: " .. res.body:sub(1, 200)), 2) end
    local usage = type(v.usage) == "table" and v.usage or {}
    return {
      text = type(msg.content) == "string" and msg.content or "",
      finish_reason = type(choice.finish_reason) == "string" and choice.finish_reason or "stop",
      tokens_in = usage.prompt_tokens, tokens_out = usage.completion_tokens, seconds = gl.clock() - t0,
    }
  end

  -- Streaming: pieces go to on_token from inside on_data. An error there
  -- (on_token's own, or a bad event) stops the transfer and is raised as is.
  local parts, pieces, finish, usage, done, failure, parser
  local function on_event(data)
    if data == "[DONE]" then
      done = true
      return
    end
    local ok, v = pcall(gl.json.decode, data)
    if not ok or type(v) ~= "table" then error("openai: chat: a streamed event is not JSON: " .. data:sub(1, 200), 0) end
    if v.error then error("openai: chat: the server failed mid-stream: " .. server_message(data), 0) end
    if type(v.usage) == "table" then usage = v.usage end
    local choice = type(v.choices) == "table" and v.choices[1]
    if type(choice) ~= "table" then return end
    if type(choice.finish_reason) == "string" then finish = choice.finish_reason end
    local piece = type(choice.delta) == "table" and choice.delta.content
    if type(piece) == "string" and piece ~= "" then
      parts[#parts + 1] = piece
      pieces = pieces + 1
      on_token(piece)
    end
  end
  local stream = {
    reset = function()
      parts, pieces, finish, usage, done, failure = {}, 0, nil, nil, false, nil
      parser = sse_parser(on_event)
    end,
    pieces = function() return pieces end,
    on_data = function(chunk)
      local ok, err = pcall(parser.feed, chunk)
      if not ok then failure = err end
      return ok
    end,
  }
  self:_call("POST", "/chat/completions", gl.json.encode(req), stream)
  if not failure then
    local ok, err = pcall(parser.finish)
    if not ok then failure = err end
  end
  if failure then error(type(failure) == "string" and scrub(self, failure) or failure, 0) end
  if not done and not finish then
    error(("openai: POST %s/chat/completions: the stream ended without [DONE]"):format(self.base_url), 2)
  end
  usage = usage or {}
  return {
    text = table.concat(parts), finish_reason = finish or "stop",
    tokens_in = usage.prompt_tokens, tokens_out = usage.completion_tokens or pieces, seconds = gl.clock() - t0,
  }
end

function Client:models()
  local res = self:_call("GET", "/models")
  local ok, v = pcall(gl.json.decode, res.body)
  if not ok or type(v) ~= "table" or type(v.data) ~= "table" then
    error(scrub(self, "openai: models: the server's reply has no data list: " .. res.body:sub(1, 200)), 2)
  end
  local ids = {}
  for _, m in ipairs(v.data) do
    if type(m) == "table" and type(m.id) == "string" then ids[#ids + 1] = m.id end
  end
  return ids
end

return gl.llm.openai
