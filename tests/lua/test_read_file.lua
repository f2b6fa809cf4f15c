-- gl.read_file: plain files as they are, gzip (and dictzip) gunzipped, bad
-- input as one clear error. And model(ids, targets) through __call.
local T = require "tap"
local gl = require "genlab"

local dir = os.tmpname()
os.remove(dir)
os.execute("mkdir -p " .. dir)
local plain = dir .. "/plain.txt"
local f = assert(io.open(plain, "wb"))
f:write("hello\0world\n")
f:close()
T.eq(gl.read_file(plain), "hello\0world\n", "plain files come back byte for byte")
os.execute("gzip -c " .. plain .. " > " .. dir .. "/plain.gz")
T.eq(gl.read_file(dir .. "/plain.gz"), "hello\0world\n", "gzip files are gunzipped")
local gz = assert(io.open(dir .. "/plain.gz", "rb")):read("a")
f = assert(io.open(dir .. "/cut.gz", "wb"))
f:write(gz:sub(1, #gz - 6))
f:close()
T.raises(function() gl.read_file(dir .. "/cut.gz") end, "truncated gzip data", "a truncated gzip file is an error")
T.raises(function() gl.read_file(dir .. "/missing") end, "read_file: " .. dir .. "/missing: No such file",
  "a missing file names the path and the reason")
T.raises(function() gl.read_file(dir) end, "read_file: " .. dir, "a directory is an error")
local devil = "/usr/share/dictd/devil.dict.dz"
local probe = io.open(devil, "rb")
if probe then
  probe:close()
  T.ok(gl.read_file(devil):find("DEVIL'S DICTIONARY", 1, true), "reads Debian's dictzip corpus")
else
  T.ok(true, "# SKIP dict-devil is not installed")
end
os.execute("rm -rf " .. dir)

gl.seed(5)
local m = gl.models.gpt{vocab = 11, block = 8, n_layer = 1, n_head = 2, n_embd = 8}
local ids = gl.randint(0, 11, {2, 8})
local logits, loss = m(ids, ids)
local l2, loss2 = m:forward(ids, ids)
T.eq(table.concat(logits:shape(), ","), "2,8,11", "model(ids) calls the model's own forward")
T.eq(loss:item(), loss2:item(), "model(ids, targets) returns the loss like model:forward")
local lin = gl.nn.Linear{in_features = 3, out_features = 2}
T.eq(lin(gl.ones(4, 3)):shape()[2], 2, "plain modules still take one tensor")
T.done()
