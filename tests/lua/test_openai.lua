-- gl.llm.openai (lua/genlab/openai.lua) against `genlab serve` over loopback,
-- and against tests/fixtures/http_stub.py for what the real server will not
-- do on demand (429, 5xx, dropped connections, slow answers, a server that
-- repeats the API key in its error).
local T = require "tap"
local gl = require "genlab"
require "genlab.openai"

local S = require "servers"
local PYTHON = S.PYTHON
local function with_server(cmd, what, body) return S.with_server(T, cmd, what, body) end
local SECRET = "sk-genlab-test-5ecret"

local EXE = S.genlab_binary()

-- Runs a Lua snippet in a child genlab with env set (this process cannot set
-- its own environment); returns its output lines.
local function run_child(env, code)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write('local gl = require "genlab"\nrequire "genlab.openai"\n', code)
  f:close()
  local p = io.popen(("%s %s run %s 2>&1"):format(env, EXE, path))
  local lines = {}
  for l in p:lines() do lines[#lines + 1] = l end
  p:close()
  os.remove(path)
  return lines
end

local hi = { { role = "system", content = "Be brief." }, { role = "human", content = "hello there world" } }

-- Construction and argument checks.
T.raises(function() gl.llm.openai { bogus = 1 } end, "llm.openai: unknown option 'bogus'", "unknown option rejected")
T.raises(function() gl.llm.openai { base_url = "ftp://x" } end, "base_url must be an http:// or https:// URL", "bad base_url")
T.raises(function() gl.llm.openai { retries = 1.5 } end, "retries must be an integer >= 0", "bad retries")
local nomodel = gl.llm.openai { base_url = "http://127.0.0.1:9/v1", api_key_env = false }
T.raises(function() nomodel:chat(hi) end, "no model", "chat needs a model")
local m = gl.llm.openai { base_url = "http://127.0.0.1:9/v1/", model = "x", api_key_env = false }
T.eq(m.base_url, "http://127.0.0.1:9/v1", "trailing slash dropped from base_url")
T.raises(function() m:chat(hi, { max_token = 3 }) end, "openai: chat: unknown option 'max_token'", "unknown chat option rejected")
T.raises(function() m:chat({ { role = "robot", content = "x" } }) end, "message 1 has role robot", "bad role rejected")

-- Connection refused: retried with backoff, then one line.
m = gl.llm.openai { base_url = "http://127.0.0.1:9/v1", model = "x", api_key_env = false, retries = 2, backoff = 0.05 }
local t0 = gl.clock()
local ok, err = pcall(m.chat, m, hi)
local took = gl.clock() - t0
T.eq(err, "openai: POST http://127.0.0.1:9/v1/chat/completions: connection refused (3 attempts)",
  "connection refused after retries")
T.ok(took >= 0.15 and took < 2, "backoff 0.05 s then 0.1 s", ("took %.2f s"):format(took))

if not io.open(PYTHON) then
  T.ok(true, "# SKIP stub tests: no " .. PYTHON)
else with_server(PYTHON .. " ../fixtures/http_stub.py", "stub", function(base)
  local function client(prefix, extra)
    local o = { base_url = base .. prefix, model = "stub-model", api_key_env = false, retries = 3, backoff = 0.01 }
    for k, v in pairs(extra or {}) do o[k] = v end
    return gl.llm.openai(o)
  end
  local r = client("/v1"):chat(hi, { max_tokens = 8, temperature = 0, stop = "\n" })
  T.eq(r.text, "echo: hello there world", "stub: plain chat text")
  T.ok(r.finish_reason == "stop" and r.tokens_in == 7 and r.tokens_out == 4, "stub: finish reason and usage",
    ("%s %s %s"):format(r.finish_reason, r.tokens_in, r.tokens_out))
  T.ok(type(r.seconds) == "number" and r.seconds > 0, "stub: seconds measured")

  -- Streaming through 7-byte writes: events and lines split across chunks.
  local pieces = {}
  r = client("/v1"):chat(hi, {}, function(p) pieces[#pieces + 1] = p end)
  T.eq(table.concat(pieces, "|"), "echo:| hello| there| world", "stub: streamed pieces in order")
  T.ok(r.text == "echo: hello there world" and r.finish_reason == "length", "stub: streamed text and finish reason")
  T.ok(r.tokens_in == 7 and r.tokens_out == 4, "stub: usage from the stream's last event")
  pieces = {}
  r = client("/v1", { model = "crlf" }):chat(hi, {}, function(p) pieces[#pieces + 1] = p end)
  T.eq(table.concat(pieces, "|"), "echo:| hello| there| world", "stub: CRLF lines and multi-line data events")

  r = client("/flaky/a/500/2/v1"):chat(hi)
  T.eq(r.text, "echo: hello there world", "retried through two 500s")
  r = client("/flaky/b/429/1/v1"):chat(hi, {}, function() end)
  T.eq(r.text, "echo: hello there world", "retried a 429 (Retry-After: 0), streaming")
  r = client("/flaky/c/0/1/v1"):chat(hi)
  T.eq(r.text, "echo: hello there world", "retried a dropped connection")
  local c = client("/flaky/d/503/9/v1", { retries = 1 })
  ok, err = pcall(c.chat, c, hi)
  T.eq(err, ("openai: POST %s/flaky/d/503/9/v1/chat/completions: HTTP 503: stub flaky 503 (2 of 9) (2 attempts)"):format(base),
    "gives up after retries with the server's message")
  c = client("/flaky/e/400/9/v1")
  ok, err = pcall(c.chat, c, hi)
  T.eq(err, ("openai: POST %s/flaky/e/400/9/v1/chat/completions: HTTP 400: stub flaky 400 (1 of 9)"):format(base),
    "a 400 is not retried and names the server's message")

  c = client("/slow/3", { timeout = 0.3, retries = 1 })
  t0 = gl.clock()
  ok, err = pcall(c.chat, c, hi)
  T.eq(err, ("openai: POST %s/slow/3/chat/completions: timed out after 0.3 s (2 attempts)"):format(base),
    "timeout message")
  T.ok(gl.clock() - t0 < 1.5, "timeouts honoured")

  -- An error in on_token stops the stream and comes out as itself, not retried.
  local calls = 0
  c = client("/v1")
  T.raises(function() c:chat(hi, {}, function() calls = calls + 1; error("enough") end) end, "enough",
    "on_token error propagates")
  T.eq(calls, 1, "on_token error not retried")

  T.eq(table.concat(client("/v1"):models(), ","), "stub-model", "stub: models()")

  -- The key: sent, but never shown, even when the server repeats it.
  local out = run_child("STUB_KEY=" .. SECRET, ([[
local llm = gl.llm.openai { base_url = %q, model = "stub-model", api_key_env = "STUB_KEY", retries = 0 }
print("tostring " .. tostring(llm))
local leaky = gl.llm.openai { base_url = %q, model = "leaky", api_key_env = "STUB_KEY", retries = 0 }
print("error " .. select(2, pcall(leaky.chat, leaky, { { role = "user", content = "x" } })))
for k, v in pairs(llm) do print("field " .. tostring(k) .. "=" .. tostring(v)) end
]]):format(base .. "/v1", base .. "/v1"))
  local text = table.concat(out, "\n")
  T.ok(#out > 2 and not text:find(SECRET, 1, true), "key appears in no output, error or field", text)
  T.ok(text:find("error openai: POST " .. base .. "/v1/chat/completions: HTTP 401: Incorrect API key provided: ***", 1, true),
    "a server's echo of the key is cut out", text)
  T.ok(text:find("tostring openai llm stub-model at " .. base .. "/v1 (with API key)", 1, true), "tostring", text)

  gl.http.request { url = base .. "/quit" }
end) end

-- The real server.
if not S.serve_available(EXE) then
  T.ok(true, "# SKIP genlab serve is not available")
else
  local path, remove_model = S.tiny_model()
  local serve = ("%s serve --model %s --name tiny --port 0"):format(EXE, path)
  with_server(serve, "genlab serve", function(base)
    local llm = gl.llm.openai { base_url = base .. "/v1", model = "tiny", api_key_env = false, timeout = 20 }
    T.eq(table.concat(llm:models(), ","), "tiny", "serve: models()")
    local r = llm:chat(hi, { max_tokens = 6, temperature = 0 })
    T.ok(type(r.text) == "string" and #r.text > 0, "serve: chat returns text", r.text)
    T.ok(r.tokens_out == 6 and r.finish_reason == "length", "serve: max_tokens respected",
      ("%s %s"):format(r.tokens_out, r.finish_reason))
    T.ok(type(r.tokens_in) == "number" and r.tokens_in > 0, "serve: tokens_in reported")
    local pieces = {}
    local s = llm:chat(hi, { max_tokens = 6, temperature = 0 }, function(p) pieces[#pieces + 1] = p end)
    T.eq(s.text, r.text, "serve: greedy streamed text equals the plain reply")
    T.eq(table.concat(pieces), s.text, "serve: pieces add up to the text")
    T.ok(#pieces >= 2 and s.tokens_out == 6 and s.tokens_in == r.tokens_in, "serve: streamed usage",
      ("%d pieces, %s in, %s out"):format(#pieces, s.tokens_in, s.tokens_out))
    local bad = gl.llm.openai { base_url = base .. "/v1", model = "nope", api_key_env = false }
    local ok, err = pcall(bad.chat, bad, hi)
    T.eq(err, ("openai: POST %s/v1/chat/completions: HTTP 404: model 'nope' does not exist (this server has 'tiny')"):format(base),
      "serve: unknown model is a one-line 404")
  end)

  -- With an API key required: right key served, wrong key refused, key never shown.
  with_server(("SERVE_KEY=%s %s --api-key-env SERVE_KEY"):format(SECRET, serve), "genlab serve --api-key-env", function(base)
    local code = ([[
for _, env in ipairs { "GOOD_KEY", "BAD_KEY" } do
  local llm = gl.llm.openai { base_url = %q, model = "tiny", api_key_env = env, retries = 0 }
  local ok, r = pcall(llm.chat, llm, { { role = "user", content = "hi" } }, { max_tokens = 2 })
  print(env .. " " .. (ok and ("text " .. #r.text) or r))
end
]]):format(base .. "/v1")
    local out = run_child("GOOD_KEY=" .. SECRET .. " BAD_KEY=sk-wrong", code)
    local text = table.concat(out, "\n")
    T.ok(text:find("GOOD_KEY text 2", 1, true), "serve: the right key is accepted", text)
    T.ok(text:find("BAD_KEY openai: POST " .. base .. "/v1/chat/completions: HTTP 401", 1, true), "serve: a wrong key gets 401", text)
    T.ok(not text:find(SECRET, 1, true) and not text:find("sk-wrong", 1, true), "serve: keys never in output", text)
  end)
  remove_model()
end

T.done()
