-- gl.notebook: parsing (markers, text cells, no markers, byte-exact round
-- trip), running cells (shared globals, print, values, errors with the
-- file's line numbers, display), run_all / restart / edits, outputs saved
-- beside the notebook and reloaded (stale after an edit), jobs that yield to
-- the UI through gl.yield_ui (a loop, and the Trainer's step).
local T = require "tap"
local gl = require "genlab"
local NB = gl.notebook

T.eq(require "genlab.notebook", NB, "require 'genlab.notebook' is gl.notebook")

local base = os.tmpname()
local made = { base }
local function path(name)
  local p = base .. "-" .. name
  made[#made + 1] = p
  made[#made + 1] = p .. ".outputs"
  return p
end
local function write(p, text)
  local f = assert(io.open(p, "wb"))
  f:write(text)
  f:close()
end
local function read(p)
  local f = io.open(p, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end
local function open_text(name, text)
  local p = path(name)
  write(p, text)
  return NB.open(p), p
end
local function outputs_of(cell, ty)
  local list = {}
  for _, o in ipairs(cell.outputs) do
    if o.type == ty then list[#list + 1] = o.text end
  end
  return table.concat(list, "|")
end

-- ---- parsing ---------------------------------------------------------------------------------

local SAMPLE = table.concat({
  "--%% [markdown]",
  "-- # Title",
  "-- some *text*",
  "--",
  "",
  "--%% setup",
  "x = 41",
  "",
  "--%%",
  "x + 1",
  "--%%",
  "print('a', 2)",
  "print('b')",
  "--%%",
  "local y = nil",
  "y.z = 1",
  "",
}, "\n")

local nb, p = open_text("parse.lua", SAMPLE)
T.eq(#nb.cells, 5, "five cells")
T.eq(nb.cells[1].kind, "markdown", "--%% [markdown] makes a text cell")
T.eq(nb.cells[2].kind, "code", "--%% makes a code cell")
T.eq(nb.cells[2].title, "setup", "the marker's text is the title")
T.eq(nb.cells[3].title, "", "a bare marker has no title")
T.eq(nb.cells[2].source, "x = 41", "the source without trailing blank lines")
T.eq(nb.cells[4].source, "print('a', 2)\nprint('b')", "a multi-line source")
T.eq(NB.markdown_text(nb.cells[1].source), "# Title\nsome *text*\n", "markdown_text strips '-- ' and '--'")
T.eq(NB.markdown_source("# A\n\nb"), "-- # A\n--\n-- b", "markdown_source adds the comment prefix")
T.eq(nb:text(), SAMPLE, "text() is the file, byte for byte")
T.eq(nb.cells[1].status, "idle", "cells start idle")
T.ok(not nb.dirty, "a fresh notebook is not dirty")

local round_trips = {
  ["no markers"] = "local a = 1\nprint(a)\n",
  ["no final newline"] = "--%%\nx = 1\n--%%\ny = 2",
  ["blank prefix"] = "\n\n--%%\nx = 1\n",
  ["code before the first marker"] = "-- a header\nlocal q = 1\n\n--%% [markdown]\n-- text\n",
  ["marker at the end"] = "x = 1\n--%%",
  ["CRLF lines"] = "--%%\r\nx = 1\r\n--%% [markdown]\r\n-- t\r\n",
  ["trailing spaces"] = "--%%\nx = 1   \n\t\n--%%\n",
  ["empty file"] = "",
  ["not markers"] = "--%%x = 1\n --%%\n-- %%\n",
}
for name, text in pairs(round_trips) do
  local n = open_text("rt.lua", text)
  T.eq(n:text(), text, "round trip: " .. name)
end
T.eq(#open_text("nm.lua", "local a = 1\nprint(a)\n").cells, 1, "a file without markers is one code cell")
local nm = open_text("nm2.lua", "--%%x = 1\n --%%\n-- %%\n")
T.ok(#nm.cells == 1 and nm.cells[1].kind == "code", "--%%x, ' --%%' and '-- %%' are not markers")
local pre = open_text("pre.lua", "-- a header\nlocal q = 1\n\n--%% [markdown]\n-- text\n")
T.ok(#pre.cells == 2 and pre.cells[1].kind == "code" and pre.cells[1].source == "-- a header\nlocal q = 1",
     "code before the first marker is a cell of its own")

for _, name in ipairs { "welcome.lua", "char_gpt.lua", "tour.lua" } do
  local src = read("../../examples/" .. name)
  if src then
    local n = open_text("ex.lua", src)
    T.eq(n:text(), src, "round trip of examples/" .. name)
  else
    T.ok(true, "# SKIP examples/" .. name .. " not found from here")
  end
end
local welcome = read("../../examples/welcome.lua")
if welcome then
  local n = open_text("w.lua", welcome)
  local kinds = {}
  for _, c in ipairs(n.cells) do kinds[#kinds + 1] = c.kind end
  T.eq(kinds[1], "markdown", "the welcome notebook starts with text")
  T.ok(#n.cells >= 5, "the welcome notebook has its cells (" .. #n.cells .. ")")
else
  T.ok(true, "# SKIP examples/welcome.lua not found from here")
end

T.raises(function() NB.open("") end, "expected a path", "open needs a path")
T.raises(function() NB.open("/") end, "cannot read /", "a directory is not a notebook")
local missing = NB.open(path("new.lua"))
T.ok(#missing.cells == 1 and missing.cells[1].source == "", "a missing file opens as one empty cell")

-- ---- running ------------------------------------------------------------------------------------

T.ok(nb:run(1), "running a text cell does nothing and succeeds")
T.eq(#nb.cells[1].outputs, 0, "a text cell has no outputs")
T.ok(nb:run(2), "run returns true for a cell that succeeds")
T.eq(nb.cells[2].status, "ok", "status ok")
T.ok(type(nb.cells[2].elapsed) == "number" and nb.cells[2].elapsed >= 0, "elapsed is recorded")
T.eq(#nb.cells[2].outputs, 0, "an assignment has no output")
T.eq(rawget(_G, "x"), nil, "cells do not write the real globals")
T.eq(nb.env.x, 41, "cells write the notebook's globals")
nb:run(3)
T.eq(outputs_of(nb.cells[3], "value"), "42", "a final expression's value; globals are shared between cells")
nb:run(4)
T.eq(outputs_of(nb.cells[4], "text"), "a\t2\nb\n", "print is captured, consecutive prints in one text output")
T.eq(#nb.cells[4].outputs, 1, "print(...) calls make one output")
T.ok(not nb:run(5), "run returns false for a cell that fails")
T.eq(nb.cells[5].status, "error", "status error")
local err = outputs_of(nb.cells[5], "error")
T.ok(err:find(p .. ":16: attempt to index a nil value", 1, true), "errors name the file's own line", err)
T.ok(err:find("stack traceback", 1, true), "errors carry a traceback")
T.ok(not err:find("notebook.lua", 1, true), "the traceback stops at the cell", err)

local v = open_text("values.lua", table.concat({
  "--%%", "return 1, nil, 'two'",
  "--%%", "{a = 1, b = 'x', 3}",
  "--%%", "gl.zeros{2, 2}",
  "--%%", "x = ",
  "--%%", "function f() print('from f') end",
  "--%%", "f()",
  "--%%", "error({})",
  "--%%", "-- only a comment\nnil",
  "--%%", "local n = 5\nn * 2",
  "--%%", "local n = 3\nn\n-- a closing comment",
  "--%%", "t = tostring\n{1}",
  "--%%", "local q = {\n  1,\n  2,\n}\n#q",
  "--%%", "print(1)\nreturn 7",
  "--%%", "s = [[\nabc\n]]",
  "--%%", "u = 1\n--[[\n2\n]]",
  "--%%", "w = 5\n- 2",
}, "\n"))
v:run_all()
T.eq(outputs_of(v.cells[1], "value"), "1\tnil\ttwo", "several values, tab-separated, nil included")
T.eq(outputs_of(v.cells[2], "value"), '{3, a = 1, b = "x"}', "a plain table shows its fields")
T.eq(outputs_of(v.cells[3], "value"), tostring(gl.zeros { 2, 2 }), "a tensor shows its summary")
T.ok(outputs_of(v.cells[4], "error"):find("values.lua:8:", 1, true), "a syntax error names the line",
     outputs_of(v.cells[4], "error"))
v:run(5)
v:run(6)
T.eq(outputs_of(v.cells[6], "text"), "from f\n", "print in a function defined by another cell is captured")
v:run(7)
T.ok(outputs_of(v.cells[7], "error"):find("table", 1, true), "a non-string error is shown")
v:run(8)
T.eq(outputs_of(v.cells[8], "value"), "nil", "an expression after a comment is a value")
for i = 9, 13 do v:run(i) end
T.eq(outputs_of(v.cells[9], "value"), "10", "the last line's expression after statements is the value")
T.eq(outputs_of(v.cells[10], "value"), "3", "a closing comment is not the last expression")
T.ok(type(v.env.t) == "string" and outputs_of(v.cells[11], "value") == "",
     "a line that continues a call is not split off (t = tostring{1})")
T.eq(outputs_of(v.cells[12], "value"), "2", "the value after a multi-line statement")
T.eq(outputs_of(v.cells[13], "value"), "7", "an explicit return shows its value")
for i = 14, 16 do v:run(i) end
T.eq(v.env.s, "abc\n", "no split inside a long string")
T.ok(v.env.u == 1 and v.cells[15].status == "ok" and #v.cells[15].outputs == 0, "no split inside a long comment")
T.eq(v.env.w, 3, "a line starting with '-' continues the statement above")

-- display
local d = open_text("display.lua", table.concat({
  "--%%", "display('hello')",
  "--%%", "display('*\\n**', 'chart')",
  "--%%", "display(gl.zeros{4, 5, 3}:to('u8'))",
  "--%%", "display(gl.rand{3, 3}, 'image')",
  "--%%", "display(gl.ones{2})",
  "--%%", "gl.display({1, 2})",
  "--%%", "display('x', 'video')",
  "--%%", "display(5, 'chart')",
}, "\n"))
d:run_all()
for i = 1, 8 do d:run(i) end
T.eq(outputs_of(d.cells[1], "text"), "hello\n", "display(string) is text")
T.eq(outputs_of(d.cells[2], "chart"), "*\n**", "display(string, 'chart') is a chart")
local img = d.cells[3].outputs[1]
T.ok(img and img.type == "image", "a u8 [H, W, 3] tensor displays as an image")
T.ok(img and img.summary == tostring(gl.zeros { 4, 5, 3 }:to("u8")), "an image keeps the tensor's summary")
if gl.plot_image then
  T.ok(img and img.text ~= img.summary, "the image's text is gl.plot_image's")
else
  T.ok(img and img.text == img.summary, "# SKIP gl.plot_image missing: the image's text is its summary")
end
T.eq(d.cells[4].outputs[1] and d.cells[4].outputs[1].type, "image", "display(t, 'image') for f32")
T.eq(outputs_of(d.cells[5], "value"), tostring(gl.ones { 2 }), "display(other tensor) is its summary")
T.eq(outputs_of(d.cells[6], "value"), "{1, 2}", "gl.display is the same function")
T.ok(outputs_of(d.cells[7], "error"):find("kind must be", 1, true), "display checks the kind")
T.ok(outputs_of(d.cells[8], "error"):find("a chart is a string", 1, true), "a chart is a string")

-- output cap
local saved_cap = NB.max_output
NB.max_output = 100
local cap = open_text("cap.lua", "for i = 1, 100 do print(('x'):rep(20)) end\n")
cap:run(1)
local capped = outputs_of(cap.cells[1], "text")
T.ok(#capped < 200 and capped:find("[output truncated]", 1, true), "text outputs are capped (" .. #capped .. " bytes)")
NB.max_output = saved_cap

-- run_all, restart, edits
local r = open_text("runall.lua", "--%%\na = 1\n--%%\nerror('stop here')\n--%%\nb = 2\n")
local ok, failed = r:run_all()
T.ok(not ok and failed == 2, "run_all stops at the first error and names it")
T.eq(r.env.b, nil, "cells after the error do not run")
T.eq(r.cells[3].status, "idle", "and stay idle")
r:restart()
T.eq(r.env.a, nil, "restart gives fresh globals")
T.ok(#r.cells[2].outputs == 0 and r.cells[2].status == "idle", "restart clears outputs and status")
local ver = r.version
r:set_source(2, "a = a + 1\n\n")
T.eq(r.cells[2].source, "a = a + 1", "set_source drops trailing blank lines")
T.ok(r.dirty and r.version > ver, "an edit makes the notebook dirty and bumps the version")
ok = r:run_all()
T.ok(ok and r.env.a == 2 and r.env.b == 2, "run_all runs every code cell in order")
r:set_source(1, "a = 1\nprint(a)")
r:run(1)
r:set_source(1, "a = 10")
T.ok(r.cells[1].stale, "editing a cell with outputs marks them stale")
local c = r:insert(2, "markdown", "-- # Note")
T.ok(c.kind == "markdown" and r.cells[2] == c, "insert puts a cell at the index")
r:insert(#r.cells + 1, "code", "c = 3")
r:delete(4)
T.eq(#r.cells, 4, "delete removes a cell")
T.raises(function() r:insert(9, "code") end, "no cell 9", "insert checks the index")
T.raises(function() r:insert(1, "python") end, "kind must be", "insert checks the kind")
T.raises(function() r:run(0) end, "no cell 0", "run checks the index")
T.eq(r:text(), "--%%\na = 10\n--%% [markdown]\n-- # Note\n--%%\na = a + 1\n--%%\nc = 3\n",
     "edits are written with markers")
r:save()
T.ok(not r.dirty, "save clears dirty")
local r2 = NB.open(r.path)
T.eq(#r2.cells, 4, "the saved notebook parses back")
T.eq(r2.cells[4].source, "c = 3", "with its edits")

-- a markerless notebook gains markers when cells are added
local one = open_text("one.lua", "x = 1")
one:insert(1, "code", "y = 2")
T.eq(one:text(), "--%%\ny = 2\n--%%\nx = 1", "cells after the first get markers")

-- ---- outputs beside the notebook --------------------------------------------------------------

local s, sp = open_text("saved.lua", "--%% [markdown]\n-- hi\n--%%\nprint('one')\n--%%\n6 * 7\n--%%\nerror('bad')\n")
s:run_all()
s:save()
T.ok(read(sp .. ".outputs"), "save writes PATH.outputs")
T.eq(read(sp .. ".outputs"):sub(1, 25), "genlab notebook outputs 1", "the outputs file starts with its magic")
local s2 = NB.open(sp)
T.eq(outputs_of(s2.cells[2], "text"), "one\n", "printed text is reloaded")
T.eq(outputs_of(s2.cells[3], "value"), "42", "values are reloaded")
T.eq(s2.cells[3].status, "ok", "status is reloaded")
T.eq(s2.cells[4].status, "error", "an error status is reloaded")
T.ok(outputs_of(s2.cells[4], "error"):find("bad", 1, true), "error text is reloaded")
T.near(s2.cells[3].elapsed, s.cells[3].elapsed, 1e-12, "elapsed is reloaded exactly")
T.ok(not s2.cells[2].stale and not s2.cells[3].stale, "unchanged cells are not stale")

-- the file edited elsewhere: the changed cell's outputs are stale, a moved one still matches
write(sp, "--%% [markdown]\n-- hi\n--%%\n6 * 7\n--%%\nprint('two')\n--%%\nerror('bad')\n")
local s3 = NB.open(sp)
T.eq(outputs_of(s3.cells[2], "value"), "42", "outputs follow a cell that moved (matched by source)")
T.ok(not s3.cells[2].stale, "a moved cell's outputs are not stale")
T.eq(outputs_of(s3.cells[3], "value"), "", "a changed cell does not take another's outputs")
T.ok(not s3.cells[4].stale and s3.cells[4].status == "error", "an unchanged cell keeps its outputs")
write(sp, "--%% [markdown]\n-- hi\n--%%\nprint('three')\n--%%\n6 * 7\n--%%\nerror('bad')\n")
local s4 = NB.open(sp)
T.ok(s4.cells[2].stale and outputs_of(s4.cells[2], "text") == "one\n",
     "an edited cell keeps its old outputs, marked stale")
s4:run(2)
T.ok(not s4.cells[2].stale and outputs_of(s4.cells[2], "text") == "three\n", "running it clears stale")

-- binary-safe and damaged files
local bin = open_text("bin.lua", "print('a\\0b\\ncell 1 x\\noutput 9')\n")
bin:run(1)
bin:save_outputs()
T.eq(outputs_of(NB.open(bin.path).cells[1], "text"), "a\0b\ncell 1 x\noutput 9\n",
     "outputs with NUL and record-like lines read back exactly")
local damaged = read(sp .. ".outputs")
for _, bad in ipairs { damaged:sub(1, #damaged - 5), "genlab notebook outputs 2\n", "junk", (damaged:gsub("text 4", "text 999")) } do
  write(sp .. ".outputs", bad)
  local okopen, dn = pcall(NB.open, sp)
  T.ok(okopen and dn.outputs_error and #dn.cells[2].outputs == 0, "a damaged outputs file is ignored, with a reason",
       okopen and dn.outputs_error or dn)
end

-- run_file
local rf = path("runfile.lua")
write(rf, "--%%\nprint('ran')\n--%%\n1 + 1\n")
local rnb, rok = NB.run_file(rf, { save = true })
T.ok(rok and outputs_of(rnb.cells[2], "value") == "2", "run_file runs every cell")
T.ok(read(rf .. ".outputs") and outputs_of(NB.open(rf).cells[1], "text") == "ran\n", "run_file{save=true} saves outputs")
T.eq(read(rf), "--%%\nprint('ran')\n--%%\n1 + 1\n", "run_file leaves the source as it was")
T.raises(function() NB.run_file(rf, { safe = true }) end, "unknown option 'safe'", "run_file checks its options")

-- ---- jobs: cells in the background of a UI loop ---------------------------------------------

gl.yield_ui() -- outside a job: nothing happens
T.ok(true, "gl.yield_ui outside a job returns at once")

local j = open_text("job.lua", table.concat({
  "--%%", "progress = 0",
  "--%%", "for i = 1, 5 do\n  progress = i\n  print('at ' .. i)\n  gl.yield_ui()\nend\n'finished'",
  "--%%", "after = true",
}, "\n"))
local job = j:run_all_async()
T.ok(not job.done, "a job starts suspended")
local trace = {}
for _ = 1, 3 do
  job:resume()
  trace[#trace + 1] = tostring(j.env.progress)
end
T.eq(table.concat(trace, ","), "1,2,3", "each resume runs to the next yield point")
T.eq(j.cells[2].status, "running", "the cell is running while suspended")
T.eq(outputs_of(j.cells[2], "text"), "at 1\nat 2\nat 3\n", "outputs appear while the cell runs")
T.raises(function() j:run(1) end, "a job is running", "no second run while a job is suspended")
T.eq(j.env.after, nil, "later cells wait")
local rounds = 0
while not job:resume() do rounds = rounds + 1 end
T.eq(rounds, 2, "the loop ends after its five yields")
T.ok(job.done and job.ok, "the job finishes ok")
T.eq(j.env.after, true, "later cells then run")
T.eq(outputs_of(j.cells[2], "value"), "finished", "the cell's value")
T.eq(j.cells[2].status, "ok", "status ok")

local big = j:run_async(2)
T.ok(big:resume(60), "with a budget, resume runs past yield points until the budget is spent")

-- text printed by the UI between frames does not land in a suspended cell
local quiet = open_text("quiet.lua", "print('in cell')\ngl.yield_ui()\nprint('again')\n")
local qj = quiet:run_async(1)
qj:resume()
gl.display("# from the UI side")
qj:resume()
T.eq(outputs_of(quiet.cells[1], "text"), "in cell\nagain\n", "display outside the job goes elsewhere")

-- cancel
local cj = j:run_async(2)
cj:resume()
cj:cancel()
T.ok(cj.done and not cj.ok, "cancel ends the job")
T.eq(j.cells[2].status, "error", "a cancelled cell ends in error")
T.ok(outputs_of(j.cells[2], "error"):find("cancelled", 1, true), "with the error 'cancelled'")
T.ok(j:run(1), "the notebook runs again after a cancel")

-- a failing cell in a job
local fj = open_text("fail.lua", "--%%\ngl.yield_ui()\nerror('late')\n--%%\nnever = 1\n")
local fjob = fj:run_all_async()
while not fjob:resume() do end
T.ok(not fjob.ok and fjob.failed == 1, "a job stops at a failing cell and names it")
T.ok(outputs_of(fj.cells[1], "error"):find("fail.lua:3: late", 1, true), "with the file's line in the error")
T.eq(fj.env.never, nil, "later cells do not run")

-- restart cancels a running job
local rj = j:run_async(2)
rj:resume()
j:restart()
T.ok(rj.done and j.job == nil and j.env.progress == nil, "restart cancels the job and clears the globals")

-- the Trainer yields between steps inside a job
local V = 5
local tiny = gl.nn.Module {
  name = "TinyNB",
  init = function(self)
    self.emb = gl.nn.Embedding { num = V, dim = 8 }
    self.head = gl.nn.Linear { in_features = 8, out_features = V }
  end,
  forward = function(self, x, y)
    local logits = self.head(self.emb(x))
    return logits, gl.cross_entropy(logits:reshape { -1, V }, y:reshape { -1 })
  end,
}
gl.seed(5)
local ids = {}
for i = 1, 400 do ids[i] = (i * 3) % V end
local tj = open_text("train.lua", "--%%\nrun = gl.train{model = model, data = data, lr = 1e-2, quiet = true, name = 'nb'}\n" ..
                                  "--%%\nrun:step(4)\nrun.step_count")
tj.env.model = tiny()
tj.env.data = gl.data.tokens(gl.tensor(ids, { dtype = "i64" }), { block = 6, batch = 2, vocab_size = V })
T.ok(tj:run(1), "a Trainer made in a cell")
local tjob = tj:run_async(2)
local steps = {}
while not tjob:resume() do steps[#steps + 1] = tj.env.run.step_count end
T.eq(table.concat(steps, ","), "1,2,3,4", "run:step(4) in a job gives control back after every step")
T.eq(outputs_of(tj.cells[2], "value"), "4", "and finishes the cell")
T.eq(#gl.metrics.series("nb", "loss"), 4, "the UI sees the loss of every step in gl.metrics")
T.ok(tj:run(2) and tj.env.run.step_count == 8, "run:step outside a job runs straight through")

for _, f in ipairs(made) do os.remove(f) end
T.done()
