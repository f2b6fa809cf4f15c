-- gl.notebook: notebooks that are plain Lua files.
--
-- A notebook is a .lua file cut into cells by marker lines:
--
--   --%% [markdown]
--   -- # A title
--   -- Text lines are comments; "-- " is stripped for display.
--   --%% optional title of a code cell
--   x = gl.randn{3, 3}
--   x:sum()
--
-- A line that starts with "--%%" followed by the end of the line, a space or
-- "[" begins a cell; "--%% [markdown]" begins a text cell. Text before the
-- first marker is a code cell without a marker (so a file without markers is
-- one code cell), or, when blank, kept as it is. The markers are comments:
-- `genlab run NOTEBOOK.lua` runs the file as a script, with the same results.
-- Saving writes back the exact bytes read, edits aside.
--
--   nb = gl.notebook.open(path)   parse path (a missing file: one empty code
--                                 cell; save() creates it) and attach the
--                                 outputs saved beside it
--   nb.cells[i] = {
--     kind = "code" | "markdown", source = string (without trailing blank
--     lines), title = the marker's text, status = "idle" | "running" | "ok" |
--     "error", elapsed = seconds of the last run (nil before), stale = true
--     when the outputs came from another version of the source,
--     outputs = { {type = "text" | "value" | "error" | "chart" | "image",
--                  text = string [, summary = string (images)]}, ... } }
--   nb.version    grows on every change a view shows (edits, outputs, status)
--   nb.dirty      the source changed since it was opened or saved
--   nb.path, nb.env (the cells' globals: a table over _G, with gl, display)
--
--   nb:run(i) -> ok               run code cell i to the end (markdown: no-op)
--   nb:run_all() -> ok, i         run the code cells in order; stop at the
--                                 first error (i: the failed cell)
--   nb:run_async(i), nb:run_all_async() -> job: the same, in a coroutine
--     job:resume([budget]) -> done   runs until the cells finish, or until a
--                                 yield point (gl.yield_ui, which run:step
--                                 calls between steps) after `budget` seconds
--                                 (default 0: the first yield point); a UI
--                                 calls it once per frame
--     job:cancel()                stop now: the cell ends with an error "cancelled"
--     job.done, job.ok, job.failed (index), job.cell (the cell table running)
--   nb:restart()                  fresh globals, outputs cleared (cancels a job)
--   nb:set_source(i, text), nb:insert(i, kind [, source]) -> cell, nb:delete(i)
--   nb:text()                     the file's text as save() writes it
--   nb:save()                     write the .lua file and the outputs, each
--                                 atomically (temp file + rename)
--   nb:save_outputs()             the outputs only: PATH.outputs
--   gl.notebook.run_file(path [, {save = true}]) -> nb, ok   open, run all,
--                                 save the outputs (the notebook's source is
--                                 not rewritten)
--   gl.notebook.markdown_text(source), gl.notebook.markdown_source(text)
--                                 between a text cell's source and its display
--
-- While a cell runs, print() in it (in code defined by any cell) adds text to
-- its outputs, the value of a final expression (the whole cell, or its last
-- lines after statements, as in Jupyter) becomes a "value" output, and an error
-- an "error" output with the traceback; line numbers are the file's. A cell's
-- text outputs are capped at M.max_output bytes (1 MiB).
--
--   gl.display(x [, kind])  a rich output: a string ("text", or "chart" when
--     kind is "chart", e.g. from gl.plot), a tensor (its summary; an image
--     when kind is "image" or it is u8 [H, W] / [H, W, 1|3]: the text of
--     gl.plot_image(x) with the summary), or any value (shown as the REPL
--     would). Outside a running cell it prints the text, so a notebook run as
--     a script shows the same. `display` is also a global of the cells.
--   gl.yield_ui()  inside a job: gives control back to the UI once the
--     job's budget is spent; anywhere else (scripts, nb:run) it does nothing.
--     Long loops in cells call it to keep the UI live.
--
-- The outputs file (PATH.outputs) is a text format read without running
-- code: a magic line "genlab notebook outputs 1", then per cell
--   "cell KIND HASH STATUS ELAPSED NOUT\n", per output "output NFIELDS\n",
--   per field "KEY LEN\n" LEN bytes "\n".
-- HASH (FNV-1a 64 of the source) ties outputs to the source they came from:
-- on open, a cell takes the outputs of a record with its hash, else those of
-- the record in its position, marked stale. A damaged file is ignored
-- (nb.outputs_error says why); it never stops the notebook from opening.
local gl = require "genlab"

local M = { max_output = 1 << 20 }

local MAGIC = "genlab notebook outputs 1"
local CODE_MARKER, MARKDOWN_MARKER = "--%%\n", "--%% [markdown]\n"

local Notebook = {}
Notebook.__index = Notebook
Notebook.__name = "Notebook"

-- ---- small helpers ---------------------------------------------------------------

local function fail(op, msg, ...) error(("notebook.%s: " .. msg):format(op, ...), 3) end

-- FNV-1a, 64 bits, as 16 hex digits.
local function hash(s)
  local h = 0xcbf29ce484222325
  for i = 1, #s do h = (h ~ s:byte(i)) * 0x100000001b3 end
  return ("%016x"):format(h)
end

local function count_lines(s)
  local _, n = s:gsub("\n", "")
  return n
end

local function write_atomic(path, text, op)
  local tmp = path .. ".tmp"
  local f, err = io.open(tmp, "wb")
  if not f then fail(op, "cannot write %s: %s", path, tostring(err)) end
  local ok, werr = f:write(text)
  if ok then ok, werr = f:flush() end
  local closed, cerr = f:close()
  if not ok or not closed then
    os.remove(tmp)
    fail(op, "cannot write %s: %s", path, tostring(werr or cerr))
  end
  local renamed, rerr = os.rename(tmp, path)
  if not renamed then
    os.remove(tmp)
    fail(op, "cannot rename %s to %s: %s", tmp, path, tostring(rerr))
  end
end

local function changed(nb) nb.version = nb.version + 1 end

-- ---- values as text -------------------------------------------------------------------

local MAX_ITEMS = 20

-- Plain tables as {a = 1, b = "x"} (one level); the rest through tostring.
local function show(v, nested)
  local ty = type(v)
  if ty == "string" then
    return nested and ("%q"):format(v):gsub("\\\n", "\\n") or v
  elseif ty ~= "table" or getmetatable(v) then
    return tostring(v)
  elseif nested then
    return next(v) == nil and "{}" or "{...}"
  end
  local parts, n = {}, #v
  for i = 1, math.min(n, MAX_ITEMS) do parts[#parts + 1] = show(v[i], true) end
  local keys = {}
  for k in pairs(v) do
    if not (math.type(k) == "integer" and k >= 1 and k <= n) then keys[#keys + 1] = k end
  end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  for j = 1, math.min(#keys, MAX_ITEMS) do
    local k = keys[j]
    local key = (type(k) == "string" and k:match("^[%a_][%w_]*$")) and k or ("[" .. show(k, true) .. "]")
    parts[#parts + 1] = key .. " = " .. show(v[k], true)
  end
  local more = math.max(0, n - MAX_ITEMS) + math.max(0, #keys - MAX_ITEMS)
  if more > 0 then parts[#parts + 1] = ("... %d more"):format(more) end
  return "{" .. table.concat(parts, ", ") .. "}"
end

-- ---- parsing ----------------------------------------------------------------------------

local function is_marker(line)
  return line:match("^%-%-%%%%$") ~= nil or line:match("^%-%-%%%%[%s%[]") ~= nil
end

local function kind_of(head)
  return head:match("^%-%-%%%%%s*%[markdown%]") and "markdown" or "code"
end

local function title_of(head)
  local rest = head:match("^%-%-%%%%(.-)%s*$") or ""
  return (rest:gsub("^%s*%[markdown%]", ""):match("^%s*(.-)$"))
end

-- A cell from its marker line (with its newline, "" for none) and the raw
-- text up to the next marker: trailing whitespace is kept apart in `trail`.
local function new_cell(kind, head, raw)
  local trail = raw:match("%s*$")
  return { kind = kind, head = head, title = title_of(head), source = raw:sub(1, #raw - #trail), trail = trail,
           outputs = {}, status = "idle" }
end

local function parse(text)
  local marks, s = {}, 1
  while s <= #text do
    local e = text:find("\n", s, true) or #text + 1
    if is_marker(text:sub(s, e - 1)) then marks[#marks + 1] = { s = s, e = e } end
    s = e + 1
  end
  local cells, prefix = {}, ""
  local first = marks[1] and marks[1].s or #text + 1
  local pre = text:sub(1, first - 1)
  if pre:find("%S") or not marks[1] then
    cells[1] = new_cell("code", "", pre)
  else
    prefix = pre
  end
  for j, m in ipairs(marks) do
    local head = text:sub(m.s, math.min(m.e, #text))
    local stop = marks[j + 1] and marks[j + 1].s or #text + 1
    cells[#cells + 1] = new_cell(kind_of(head), head, text:sub(m.e + 1, stop - 1))
  end
  return cells, prefix
end

function M.markdown_text(source)
  local lines = {}
  for line in (source .. "\n"):gmatch("(.-)\n") do lines[#lines + 1] = line:match("^%-%- ?(.*)$") or line end
  return table.concat(lines, "\n")
end

function M.markdown_source(text)
  local lines = {}
  for line in (text .. "\n"):gmatch("(.-)\n") do lines[#lines + 1] = line == "" and "--" or ("-- " .. line) end
  return table.concat(lines, "\n")
end

-- ---- the outputs file ------------------------------------------------------------------------

local function encode_outputs(nb)
  local out = { MAGIC, "\n" }
  for _, c in ipairs(nb.cells) do
    local status = c.status == "running" and "idle" or c.status
    out[#out + 1] = ("cell %s %s %s %s %d\n"):format(c.kind, c.hash or hash(c.source), status,
      c.elapsed and ("%.17g"):format(c.elapsed) or "-", #c.outputs)
    for _, o in ipairs(c.outputs) do
      local keys = {}
      for k in pairs(o) do keys[#keys + 1] = k end
      table.sort(keys)
      out[#out + 1] = ("output %d\n"):format(#keys)
      for _, k in ipairs(keys) do
        local v = tostring(o[k])
        out[#out + 1] = ("%s %d\n"):format(k, #v)
        out[#out + 1] = v
        out[#out + 1] = "\n"
      end
    end
  end
  return table.concat(out)
end

local STATUSES = { idle = true, ok = true, error = true }

-- Records {kind, hash, status, elapsed, outputs}; raises on any damage.
local function decode_outputs(text)
  local pos = 1
  local function bad(what) error(("byte %d: %s"):format(pos, what), 0) end
  local function line()
    local e = text:find("\n", pos, true)
    if not e then bad("unexpected end of file") end
    local l = text:sub(pos, e - 1)
    pos = e + 1
    return l
  end
  if line() ~= MAGIC then error("not a genlab outputs file (no '" .. MAGIC .. "')", 0) end
  local records = {}
  while pos <= #text do
    local kind, h, status, elapsed, nout = line():match("^cell (%a+) (%x+) (%a+) (%S+) (%d+)$")
    if not kind or (kind ~= "code" and kind ~= "markdown") or not STATUSES[status] then bad("bad cell line") end
    local rec = { kind = kind, hash = h, status = status, elapsed = tonumber(elapsed), outputs = {} }
    for _ = 1, tonumber(nout) do
      local nf = line():match("^output (%d+)$")
      if not nf then bad("bad output line") end
      local o = {}
      for _ = 1, tonumber(nf) do
        local key, len = line():match("^([%w_]+) (%d+)$")
        if not key then bad("bad field line") end
        len = tonumber(len)
        if pos + len > #text or text:sub(pos + len, pos + len) ~= "\n" then bad("field '" .. key .. "' overruns") end
        o[key] = text:sub(pos, pos + len - 1)
        pos = pos + len + 1
      end
      if type(o.type) ~= "string" or type(o.text) ~= "string" then bad("an output needs type and text") end
      rec.outputs[#rec.outputs + 1] = o
    end
    records[#records + 1] = rec
  end
  return records
end

local function restore(cell, rec, stale)
  cell.outputs, cell.status, cell.elapsed, cell.stale, cell.hash = rec.outputs, rec.status, rec.elapsed, stale, rec.hash
end

-- Outputs by source hash first, then by position (stale).
local function attach(nb, records)
  local used, taken = {}, {}
  for i, cell in ipairs(nb.cells) do
    if cell.kind == "code" then
      local h = hash(cell.source)
      for j, rec in ipairs(records) do
        if not used[j] and rec.kind == "code" and rec.hash == h then
          restore(cell, rec, false)
          used[j], taken[i] = true, true
          break
        end
      end
    end
  end
  for i, cell in ipairs(nb.cells) do
    local rec = records[i]
    if cell.kind == "code" and not taken[i] and rec and not used[i] and rec.kind == "code" and #rec.outputs > 0 then
      restore(cell, rec, true)
      used[i] = true
    end
  end
end

-- ---- opening and editing ---------------------------------------------------------------------

local function outputs_path(nb) return nb.path .. ".outputs" end

local function read_all(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local text = f:read("a")
  f:close()
  return text
end

local ENOENT = 2

function M.open(path)
  if type(path) ~= "string" or path == "" then fail("open", "expected a path (got %s)", tostring(path)) end
  local f, err, code = io.open(path, "rb")
  local text
  if f then
    text, err = f:read("a")
    f:close()
    if not text then fail("open", "cannot read %s: %s", path, tostring(err)) end
  elseif code ~= ENOENT then -- a missing file is a new notebook
    fail("open", "%s", tostring(err))
  end
  local nb = setmetatable({ path = path, version = 0, dirty = false }, Notebook)
  nb.cells, nb.prefix = parse(text or "")
  nb:_new_env()
  local saved = read_all(outputs_path(nb))
  if saved then
    local ok, records = pcall(decode_outputs, saved)
    if ok then
      attach(nb, records)
    else
      nb.outputs_error = outputs_path(nb) .. ": " .. records
    end
  end
  return nb
end

local function check_index(nb, i, op, extra)
  if math.type(i) ~= "integer" or i < 1 or i > #nb.cells + (extra or 0) then
    fail(op, "no cell %s (the notebook has %d)", tostring(i), #nb.cells)
  end
  return i
end

function Notebook:set_source(i, text)
  check_index(self, i, "set_source")
  if type(text) ~= "string" then fail("set_source", "the source must be a string (got %s)", type(text)) end
  local cell = self.cells[i]
  local source = text:match("^(.-)%s*$")
  if source == cell.source then return end
  cell.source = source
  if #cell.outputs > 0 then cell.stale = true end
  self.dirty = true
  changed(self)
end

function Notebook:insert(i, kind, source)
  check_index(self, i, "insert", 1)
  if kind ~= "code" and kind ~= "markdown" then
    fail("insert", "kind must be \"code\" or \"markdown\" (got %s)", tostring(kind))
  end
  if source ~= nil and type(source) ~= "string" then fail("insert", "the source must be a string") end
  local cell = new_cell(kind, kind == "code" and CODE_MARKER or MARKDOWN_MARKER, "\n")
  cell.source = (source or ""):match("^(.-)%s*$")
  table.insert(self.cells, i, cell)
  self.dirty = true
  changed(self)
  return cell
end

function Notebook:delete(i)
  check_index(self, i, "delete")
  table.remove(self.cells, i)
  self.dirty = true
  changed(self)
end

-- Cells after the first need a marker, and so does a text cell.
local function head_of(cell, i)
  local head = cell.head
  if head == "" and (i > 1 or cell.kind == "markdown") then
    head = cell.kind == "code" and CODE_MARKER or MARKDOWN_MARKER
  end
  if head ~= "" and cell.source ~= "" and head:sub(-1) ~= "\n" then head = head .. "\n" end
  return head
end

local function trail_of(nb, cell, i)
  if i < #nb.cells and not cell.trail:find("\n", 1, true) then return cell.trail .. "\n" end
  return cell.trail
end

function Notebook:text()
  local parts = { self.prefix }
  for i, cell in ipairs(self.cells) do
    parts[#parts + 1] = head_of(cell, i)
    parts[#parts + 1] = cell.source
    parts[#parts + 1] = trail_of(self, cell, i)
  end
  return table.concat(parts)
end

-- The line of the file on which cell i's source begins.
local function first_line(nb, i)
  local n = 1 + count_lines(nb.prefix)
  for j = 1, i - 1 do
    local c = nb.cells[j]
    n = n + count_lines(head_of(c, j)) + count_lines(c.source) + count_lines(trail_of(nb, c, j))
  end
  return n + count_lines(head_of(nb.cells[i], i))
end

function Notebook:save_outputs()
  write_atomic(outputs_path(self), encode_outputs(self), "save")
end

function Notebook:save()
  write_atomic(self.path, self:text(), "save")
  self.dirty = false
  self:save_outputs()
  changed(self)
end

function Notebook:__tostring()
  return ("Notebook(%s, %d cells)"):format(self.path, #self.cells)
end

-- ---- running -----------------------------------------------------------------------------------

-- The cell being run: { nb, cell, bytes (text output so far), t0 }. A job keeps
-- its own while it is suspended, so text printed elsewhere never lands in it.
local current

-- Consecutive prints join one text output up to this size, then a new one
-- starts (a loop printing many lines would otherwise copy its text each time).
local MERGE_LIMIT = 4096

local function emit(out)
  local ctx = current
  local outputs = ctx.cell.outputs
  if out.type == "text" then
    if ctx.bytes >= M.max_output then return end
    local room = M.max_output - ctx.bytes
    local text = #out.text > room and (out.text:sub(1, room) .. "\n[output truncated]\n") or out.text
    ctx.bytes = ctx.bytes + #out.text
    local last = outputs[#outputs]
    if last and last.type == "text" and #last.text < MERGE_LIMIT then
      last.text = last.text .. text
    else
      outputs[#outputs + 1] = { type = "text", text = text }
    end
  else
    outputs[#outputs + 1] = out
  end
  changed(ctx.nb)
end

local function captured_print(...)
  if not current then return print(...) end
  if current.bytes >= M.max_output then return end
  local parts = table.pack(...)
  for k = 1, parts.n do parts[k] = tostring(parts[k]) end
  emit { type = "text", text = table.concat(parts, "\t", 1, parts.n) .. "\n" }
end

local function is_image(t)
  local shape = t:shape()
  return t:dtype() == "u8" and (#shape == 2 or (#shape == 3 and (shape[3] == 1 or shape[3] == 3)))
end

function gl.display(x, kind)
  if kind ~= nil and kind ~= "text" and kind ~= "chart" and kind ~= "image" then
    error(("display: kind must be \"text\", \"chart\" or \"image\" (got %s)"):format(tostring(kind)), 2)
  end
  local out
  if gl.is_tensor(x) then
    if kind == "image" or (kind == nil and is_image(x)) then
      local summary = tostring(x)
      out = { type = "image", text = gl.plot_image and gl.plot_image(x) or summary, summary = summary }
    else
      out = { type = "value", text = tostring(x) }
    end
  elseif kind == "image" then
    error("display: an image is a tensor (got a " .. type(x) .. ")", 2)
  elseif type(x) == "string" then
    out = { type = kind == "chart" and "chart" or "text", text = x }
  elseif kind == "chart" then
    error("display: a chart is a string, as gl.plot returns (got a " .. type(x) .. ")", 2)
  else
    out = { type = "value", text = show(x) }
  end
  if current then
    if out.type == "text" and out.text:sub(-1) ~= "\n" then out.text = out.text .. "\n" end
    emit(out)
  else
    io.stdout:write(out.text, out.text:sub(-1) == "\n" and "" or "\n")
    io.stdout:flush()
  end
end

local jobs = setmetatable({}, { __mode = "k" }) -- coroutine -> job

function gl.yield_ui()
  local job = jobs[coroutine.running()]
  if job and coroutine.isyieldable() and gl.clock() >= job.deadline then coroutine.yield() end
end

function Notebook:_new_env()
  self.env = setmetatable({ gl = gl, print = captured_print, display = gl.display, arg = { [0] = self.path } },
                          { __index = _G })
end

-- The traceback down to the cell's own frames.
local function traceback(e)
  local tb = debug.traceback(type(e) == "string" and e or tostring(e), 2)
  local cut = tb:find("\n%s*%[C%]: in function 'xpcall'")
  return cut and tb:sub(1, cut - 1) or tb
end

local function index_of(nb, cell)
  for i, c in ipairs(nb.cells) do
    if c == cell then return i end
  end
end

local TAIL_LINES = 20
-- Tokens that both begin an expression and continue the one before them.
local CONTINUES = "^%s*[%(%{'\"%[%-~]"

local function has_code(text)
  return text:gsub("%-%-[^\n]*", ""):find("%S") ~= nil
end

local function compiles(text) return load(text, "=check", "t", {}) ~= nil end

-- Compiles cell i, padded so that line numbers are the file's. Like the REPL,
-- a cell is first tried as `return <source>`; then, as a notebook shows the
-- last expression, as statements followed by `return <last lines>`; then as
-- it is. The split is taken only where both halves compile on their own (so
-- it is not inside a long string or comment), and, when the cell compiles as
-- it is, not before a token that could continue the statement above.
local function compile(nb, i)
  local src = nb.cells[i].source
  local pad = ("\n"):rep(first_line(nb, i) - 1)
  local name = "@" .. nb.path
  local function try(text) return load(text, name, "t", nb.env) end
  local fn = try("return " .. pad .. src)
  if fn then return fn end
  local plain, err = try(pad .. src)
  local lines = {}
  for line in (src .. "\n"):gmatch("(.-)\n") do lines[#lines + 1] = line end
  for k = #lines, math.max(2, #lines - TAIL_LINES + 1), -1 do
    local head, tail = table.concat(lines, "\n", 1, k - 1), table.concat(lines, "\n", k)
    if has_code(tail) and not (plain and tail:find(CONTINUES)) and compiles("return " .. tail) and compiles(head) then
      fn = try(pad .. head .. "\nreturn " .. tail)
      if fn then return fn end
    end
  end
  return plain, err
end

-- Runs one cell to the end (yielding at gl.yield_ui inside a job); true when it did not fail.
local function execute(nb, cell)
  local i = index_of(nb, cell)
  if not i or cell.kind ~= "code" then return true end
  cell.outputs, cell.stale, cell.status, cell.elapsed = {}, false, "running", nil
  cell.hash = hash(cell.source)
  local t0 = gl.clock()
  changed(nb)
  local prev = current
  current = { nb = nb, cell = cell, bytes = 0, t0 = t0 }
  local fn, err = compile(nb, i)
  local res
  if fn then
    res = table.pack(xpcall(fn, traceback))
  else
    res = { false, err, n = 2 }
  end
  if res[1] and res.n > 1 then
    local parts = {}
    for k = 2, res.n do parts[#parts + 1] = show(res[k]) end
    emit { type = "value", text = table.concat(parts, "\t") }
  elseif not res[1] then
    emit { type = "error", text = tostring(res[2]) }
  end
  current = prev
  cell.elapsed = gl.clock() - t0
  cell.status = res[1] and "ok" or "error"
  changed(nb)
  return res[1]
end

local function check_idle(nb, op)
  if nb.job and not nb.job.done then fail(op, "a job is running (resume it to the end or cancel it)") end
end

function Notebook:run(i)
  check_index(self, i, "run")
  check_idle(self, "run")
  return execute(self, self.cells[i])
end

function Notebook:run_all()
  check_idle(self, "run_all")
  for _, cell in ipairs(table.move(self.cells, 1, #self.cells, 1, {})) do
    if not execute(self, cell) then return false, index_of(self, cell) end
  end
  return true
end

local Job = {}
Job.__index = Job
Job.__name = "NotebookJob"

local function new_job(nb, cells)
  local job = setmetatable({ nb = nb, done = false, deadline = 0 }, Job)
  job.co = coroutine.create(function()
    for _, cell in ipairs(cells) do
      job.cell = cell
      if not execute(nb, cell) then
        job.ok, job.failed = false, index_of(nb, cell)
        return
      end
    end
    job.ok = true
  end)
  jobs[job.co] = job
  nb.job = job
  return job
end

local function finish(job)
  job.done, job.cell = true, nil
  jobs[job.co] = nil
  if job.nb.job == job then job.nb.job = nil end
end

function Job:resume(budget)
  if self.done then return true end
  if budget ~= nil and (type(budget) ~= "number" or budget < 0) then
    error("job:resume: budget must be a number of seconds >= 0", 2)
  end
  self.deadline = gl.clock() + (budget or 0)
  local outer = current
  current = self.ctx
  local ok, err = coroutine.resume(self.co)
  self.ctx = current
  current = outer
  if not ok then -- execute catches the cells' errors: this is a bug here
    finish(self)
    error(err, 0)
  end
  if coroutine.status(self.co) == "dead" then finish(self) end
  return self.done
end

function Job:cancel()
  if self.done then return end
  coroutine.close(self.co)
  local ctx = self.ctx
  if ctx then
    local outer = current
    current = ctx
    emit { type = "error", text = "cancelled" }
    current = outer
    ctx.cell.status, ctx.cell.elapsed = "error", gl.clock() - ctx.t0
    self.failed = index_of(self.nb, ctx.cell)
  end
  self.ok = false
  finish(self)
  changed(self.nb)
end

function Notebook:run_async(i)
  check_index(self, i, "run_async")
  check_idle(self, "run_async")
  return new_job(self, { self.cells[i] })
end

function Notebook:run_all_async()
  check_idle(self, "run_all_async")
  return new_job(self, table.move(self.cells, 1, #self.cells, 1, {}))
end

function Notebook:restart()
  if self.job then self.job:cancel() end
  self:_new_env()
  for _, cell in ipairs(self.cells) do
    cell.outputs, cell.status, cell.elapsed, cell.stale = {}, "idle", nil, false
  end
  changed(self)
end

function M.run_file(path, opts)
  opts = opts or {}
  for k in pairs(opts) do
    if k ~= "save" then fail("run_file", "unknown option '%s'", tostring(k)) end
  end
  local nb = M.open(path)
  local ok = nb:run_all()
  if opts.save then nb:save_outputs() end
  return nb, ok
end

M.Notebook, M.Job = Notebook, Job

return M
