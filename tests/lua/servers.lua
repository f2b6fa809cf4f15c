-- Servers for the Lua tests that talk HTTP over loopback (test_http.lua,
-- test_openai.lua): started in the background, waited for, always stopped.
local gl = require "genlab"

local S = {}

S.PYTHON = "/usr/bin/python3"

-- Runs cmd in the background with its output in a file, and waits for the
-- URL it prints on its first line. Returns url (nil on failure), pid, log path.
function S.spawn(cmd)
  local log = os.tmpname()
  local p = io.popen(("%s > %s 2>&1 & echo $!"):format(cmd, log))
  local pid = p:read("l")
  p:close()
  local t0 = gl.clock()
  while gl.clock() - t0 < 15 do
    local f = io.open(log)
    local line = f and f:read("l")
    if f then f:close() end
    if line and line:match("^https?://") then return line, pid, log end
    if not os.execute("kill -0 " .. pid .. " 2>/dev/null") then break end
    gl.http.sleep(0.05)
  end
  return nil, pid, log
end

-- Runs body(url) while the server started by cmd runs, and stops it even
-- when body raises (which counts as one failure of T).
function S.with_server(T, cmd, what, body)
  local url, pid, log = S.spawn(cmd)
  if url then
    local ok, err = pcall(body, url)
    if not ok then T.ok(false, what .. ": tests ran to the end", err) end
  else
    local f = io.open(log)
    T.ok(false, what .. " starts", f and f:read("a"))
    if f then f:close() end
  end
  os.execute("kill " .. pid .. " 2>/dev/null")
  os.remove(log)
end

-- The genlab program running the tests ($GENLAB under make check).
function S.genlab_binary()
  local exe = os.getenv("GENLAB")
  if exe then return exe end
  local p = io.popen("readlink /proc/$PPID/exe")
  exe = p:read("l")
  p:close()
  return exe
end

-- Whether exe has a `serve` command (genlab built without it says no).
function S.serve_available(exe)
  local h = exe and io.popen(exe .. " serve --help 2>&1")
  local help = h and h:read("a") or ""
  if h then h:close() end
  return help:find("chat/completions", 1, true) ~= nil
end

-- Saves a tiny random char GPT (seed 7) with its tokenizer for `genlab serve
-- --model`; returns its path and a cleanup function.
function S.tiny_model()
  gl.seed(7)
  local tok = gl.tokenizer.char("abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ.,:!?'\n<>|/_")
  local model = gl.models.gpt { vocab = tok:vocab_size(), block = 64, n_layer = 1, n_head = 2, n_embd = 16 }
  local stem = os.tmpname() -- creates the file
  local path = stem .. ".safetensors"
  gl.models.save(model, path, { tokenizer = tok })
  return path, function()
    os.remove(path)
    os.remove(stem)
  end
end

return S
