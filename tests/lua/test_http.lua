-- gl.http.request (src/io/http.c, src/lua/l_http.c) over loopback: against
-- tests/fixtures/http_stub.py for what a real server will not do on demand
-- (slow answers, dripped bodies, error statuses), and against `genlab serve`.
local T = require "tap"
local gl = require "genlab"

local S = require "servers"
local PYTHON = S.PYTHON
local function with_server(cmd, what, body) return S.with_server(T, cmd, what, body) end

local function open_fds() -- of this process (the shell's parent), but pipes: popen races on those
  local p = io.popen("ls -l /proc/$PPID/fd | grep -vc pipe:")
  local n = tonumber(p:read("a"))
  p:close()
  return n
end

-- Arguments are checked before anything goes on the wire.
T.raises(function() gl.http.request { url = "http://127.0.0.1:9/", bogus = 1 } end,
  "http.request: unknown option 'bogus'", "unknown option rejected")
T.raises(function() gl.http.request { method = "GET" } end, "http.request: url is required", "url required")
T.raises(function() gl.http.request { url = "ftp://127.0.0.1/x" } end,
  "http: GET ftp://127.0.0.1/x: only http:// and https:// URLs are supported", "only http and https")
T.raises(function() gl.http.request { method = "PATCH", url = "http://127.0.0.1:9/" } end,
  "http: method 'PATCH' is not one of GET, POST, PUT, DELETE", "unknown method rejected")
T.raises(function() gl.http.request { url = "http://127.0.0.1:9/", body = "x" } end,
  "a GET request has no body", "GET with a body rejected")
T.raises(function() gl.http.request { url = "http://127.0.0.1:9/", headers = { ["X-A"] = "1\r\nX-B: 2" } } end,
  "is not one 'Name: value' line", "header injection rejected")
T.raises(function() gl.http.request { url = "http://127.0.0.1:9/", timeout = -1 } end,
  "http.request: timeout must be > 0 seconds", "negative timeout rejected")

-- Network failures: one line naming method and URL, without credentials or query.
local ok, err = pcall(gl.http.request, { method = "POST", url = "http://127.0.0.1:9/v1/chat/completions", body = "{}" })
T.eq(err, "http: POST http://127.0.0.1:9/v1/chat/completions: connection refused", "connection refused message")
ok, err = pcall(gl.http.request, { url = "http://user:sk-hidden@127.0.0.1:9/v1/models?key=sk-hidden2" })
T.eq(err, "http: GET http://127.0.0.1:9/v1/models?...: connection refused", "credentials and query left out of errors")

if not io.open(PYTHON) then
  T.ok(true, "# SKIP stub tests: no " .. PYTHON)
else with_server(PYTHON .. " ../fixtures/http_stub.py", "stub", function(base)
  local r = gl.http.request { url = base .. "/echo", headers = { ["X-Test"] = "hello", Accept = "application/json" } }
  local echo = gl.json.decode(r.body)
  T.eq(r.status, 200, "GET status")
  T.eq(echo.method, "GET", "GET sent as GET")
  T.eq(echo.headers["x-test"], "hello", "request header sent")
  T.eq(echo.headers.accept, "application/json", "request header replaces curl's default")
  T.eq(r.headers["x-stub"], "yes", "response header, name lowercased")
  T.eq(r.headers["x-multi"], "a, b", "repeated response header comma-joined")
  T.eq(r.headers["content-type"], "application/json", "content-type read")
  T.eq(r.aborted, false, "not aborted")

  local big = ("0123456789abcdef"):rep(8192) -- 128 KiB: curl would otherwise wait for 100-continue
  local t0 = gl.clock()
  r = gl.http.request { method = "POST", url = base .. "/echo", body = big, headers = { ["Content-Type"] = "text/plain" } }
  echo = gl.json.decode(r.body)
  T.eq(echo.method, "POST", "POST sent as POST")
  T.ok(echo.body == big, "128 KiB body arrives whole", ("got %d bytes"):format(#echo.body))
  T.eq(echo.headers.expect, nil, "no Expect: 100-continue")
  T.ok(gl.clock() - t0 < 0.9, "big POST does not stall")
  for _, m in ipairs { "PUT", "DELETE" } do
    r = gl.http.request { method = m, url = base .. "/echo", body = "b" }
    echo = gl.json.decode(r.body)
    T.ok(echo.method == m and echo.body == "b", m .. " sent with its body")
  end

  r = gl.http.request { url = base .. "/status/404" }
  T.eq(r.status, 404, "a 404 is a response, not an error")
  T.eq(gl.json.decode(r.body).error.message, "stub status 404", "error body readable")

  t0 = gl.clock()
  ok, err = pcall(gl.http.request, { url = base .. "/slow/3", timeout = 0.5 })
  local took = gl.clock() - t0
  T.eq(err, "http: GET " .. base .. "/slow/3: timed out after 0.5 s", "timeout message")
  T.ok(took > 0.4 and took < 1.5, "timeout honoured", ("took %.2f s"):format(took))

  -- Streaming: chunks as they come, body left empty.
  local chunks = {}
  r = gl.http.request { url = base .. "/drip/5", on_data = function(c) chunks[#chunks + 1] = c end }
  T.eq(table.concat(chunks), "line 1\nline 2\nline 3\nline 4\nline 5\n", "on_data receives the whole body")
  T.ok(#chunks >= 2, "body arrives in several chunks", #chunks)
  T.eq(r.body, "", "body empty when on_data is given")
  T.eq(r.aborted, false, "complete stream not aborted")

  local calls = 0
  t0 = gl.clock()
  r = gl.http.request { url = base .. "/drip/200", on_data = function() calls = calls + 1; return false end }
  T.eq(calls, 1, "on_data returning false stops the stream")
  T.eq(r.aborted, true, "aborted reported")
  T.eq(r.status, 200, "status of the aborted response")
  T.ok(gl.clock() - t0 < 1, "abort returns at once (the stub drips for 4 s)")

  -- Ctrl-C (gl.interrupt does what the signal handler does) stops a transfer and a sleep.
  calls = 0
  ok, err = pcall(gl.http.request, { url = base .. "/drip/200", on_data = function()
    calls = calls + 1
    if calls == 1 then gl.interrupt() end
  end })
  T.eq(err, "http: GET " .. base .. "/drip/200: interrupted", "Ctrl-C stops a transfer")
  T.ok(calls <= 2, "no more chunks after Ctrl-C", calls)
  gl.interrupt()
  t0 = gl.clock()
  T.raises(function() gl.http.sleep(5) end, "http.sleep: interrupted", "Ctrl-C stops http.sleep")
  T.ok(gl.clock() - t0 < 0.5, "at once")

  calls = 0
  r = gl.http.request { url = base .. "/status/500", on_data = function() calls = calls + 1 end }
  T.ok(calls == 0 and r.status == 500 and r.body:find("stub status 500", 1, true),
    "a 500 body is collected, not streamed")

  -- Errors raised in on_data come out as themselves, leaving nothing open.
  T.raises(function() gl.http.request { url = base .. "/drip/3", on_data = function() error("boom in on_data") end } end,
    "boom in on_data", "on_data error propagates")
  local obj = {}
  ok, err = pcall(gl.http.request, { url = base .. "/drip/3", on_data = function() error(obj) end })
  T.ok(not ok and err == obj, "on_data error object propagates unchanged")
  local function failing() pcall(gl.http.request, { url = base .. "/drip/50", on_data = function() error("x") end }) end
  failing()
  collectgarbage()
  local before = open_fds()
  for _ = 1, 30 do
    failing()
  end
  collectgarbage()
  T.eq(open_fds(), before, "no descriptors leaked by 30 failed streams")

  gl.http.request { url = base .. "/quit" }
end) end

-- The real server: `genlab serve` on a tiny model made here.
local exe = S.genlab_binary()
if not S.serve_available(exe) then
  T.ok(true, "# SKIP genlab serve is not available")
else
  local path, remove_model = S.tiny_model()
  with_server(("%s serve --model %s --name tiny --port 0"):format(exe, path), "genlab serve", function(base)
    local r = gl.http.request { url = base .. "/health", timeout = 10 }
    T.eq(r.status, 200, "serve: /health answers 200")
    r = gl.http.request { url = base .. "/v1/models", timeout = 10 }
    T.eq(gl.json.decode(r.body).data[1].id, "tiny", "serve: /v1/models names the model")
    local req = { model = "tiny", messages = { { role = "user", content = "hi" } }, max_tokens = 4, stream = true }
    local chunks = {}
    r = gl.http.request { method = "POST", url = base .. "/v1/chat/completions", body = gl.json.encode(req),
      headers = { ["Content-Type"] = "application/json" }, timeout = 10,
      on_data = function(c) chunks[#chunks + 1] = c end }
    local events = select(2, table.concat(chunks):gsub("data: {", ""))
    T.ok(r.status == 200 and events >= 5, "serve: streamed chat completion arrives as events", events)
    T.ok(table.concat(chunks):find("data: [DONE]", 1, true), "serve: stream ends with [DONE]")
    r = gl.http.request { method = "POST", url = base .. "/v1/chat/completions", body = "{not json", timeout = 10 }
    T.eq(r.status, 400, "serve: malformed JSON answers 400")
    r = gl.http.request { url = base .. "/health", timeout = 10 }
    T.eq(r.status, 200, "serve: still serving afterwards")
  end)
  remove_model()
end

T.done()
