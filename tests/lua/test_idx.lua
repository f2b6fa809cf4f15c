-- IDX (MNIST-format) files and gl.data.mnist: files written here with
-- string.pack, the committed gzip fixture (tests/fixtures/images/make.py),
-- bad files of every kind, the loader's batching and seeded shuffling, and
-- the real Fashion-MNIST (Debian's dataset-fashion-mnist) when installed.
local T = require "tap"
local gl = require "genlab"
require "genlab.data_image"

local FIX = "../fixtures/images/mnist"
local FASHION = "/usr/share/datasets/fashion-mnist"
local tmp = os.tmpname()
os.remove(tmp)
assert(os.execute("mkdir -p " .. tmp))

local function write(name, bytes)
  local path = tmp .. "/" .. name
  local f = assert(io.open(path, "wb"))
  f:write(bytes)
  f:close()
  return path
end

local function header(dims, dtype)
  local h = string.pack("BBBB", 0, 0, dtype or 8, #dims)
  for _, d in ipairs(dims) do h = h .. string.pack(">I4", d) end
  return h
end

local function bytes(n, fn)
  local t = {}
  for i = 0, n - 1 do t[#t + 1] = string.char(fn(i)) end
  return table.concat(t)
end

-- ---- reading ---------------------------------------------------------------------------

local p = write("a-idx3", header { 2, 3, 4 } .. bytes(24, function(i) return (i * 11) % 256 end))
local x = gl._image.idx_read(p)
T.eq(table.concat(x:shape(), ","), "2,3,4", "idx: plain file shape from the header")
T.eq(x:dtype(), "u8", "idx: u8 elements")
local same = true
for i = 1, 24 do same = same and x:getflat(i) == ((i - 1) * 11) % 256 end
T.ok(same, "idx: every byte in row-major order")

local l = gl._image.idx_read(write("l-idx1", header { 5 } .. "\9\0\1\2\255"))
T.eq(table.concat(l:tolist(), ","), "9,0,1,2,255", "idx: a 1-D label file")

local g = gl._image.idx_read(FIX .. "/train-images-idx3-ubyte.gz")
T.eq(table.concat(g:shape(), ","), "6,2,3", "idx: gzip fixture shape")
same = true
for i = 1, 36 do same = same and g:getflat(i) == ((i - 1) * 7) % 256 end
T.ok(same, "idx: gzip fixture values (7 * i mod 256)")

-- ---- bad files: one-line errors naming the file and the reason ------------------------------

local function bad(name, content, want, what)
  local path = content and write(name, content) or tmp .. "/" .. name
  local ok, msg = pcall(gl._image.idx_read, path)
  T.ok(not ok and msg:find(path, 1, true) and msg:find(want, 1, true) and not msg:find("\n"),
       "idx error: " .. what, "message was: " .. tostring(msg))
end

bad("missing", nil, "No such file", "missing file")
bad("empty", "", "too short for the 4-byte magic", "empty file")
bad("magic", "\1\2\8\1" .. string.pack(">I4", 1) .. "x", "bad magic 01 02 08 01", "wrong magic")
bad("html", "<html><body>404</body></html>", "bad magic", "a web page saved as the file")
bad("float", header({ 1 }, 0x0D) .. "abcd", "element type 0x0d (float) is not supported", "float elements")
bad("ndim0", "\0\0\8\0", "0 dimensions", "no dimensions")
bad("ndim9", "\0\0\8\9", "9 dimensions", "too many dimensions")
bad("hdr", "\0\0\8\3" .. string.pack(">I4", 2), "truncated header", "header cut short")
bad("short", header { 2, 3, 4 } .. bytes(23, function() return 1 end), "truncated", "data one byte short")
bad("long", header { 2, 3 } .. bytes(7, function() return 1 end), "trailing bytes", "one byte too many")
bad("huge", header { 4294967295, 4294967295, 4294967295 }, "overflow", "sizes whose product overflows")
bad("big", header { 4294967295, 65535 }, "truncated", "sizes far beyond the file (refused before allocating)")
local dir_ok, dir_msg = pcall(gl._image.idx_read, tmp)
T.ok(not dir_ok and dir_msg:find(tmp, 1, true), "idx error: a directory", dir_msg)

-- gzip damage: cut short, and garbage inside the compressed stream
local gz = assert(io.open(FIX .. "/train-images-idx3-ubyte.gz", "rb")):read("a")
bad("cut.gz", gz:sub(1, #gz - 20), "truncated", "gzip stream cut short")
bad("corrupt.gz", gz:sub(1, 20) .. string.rep("\255", 30) .. gz:sub(51), "idx:", "gzip stream with garbage")
bad("big.gz", gz:sub(1, 10), "", "gzip header only")

-- ---- gl.data.mnist on the fixture (6 images of 2x3, labels 5..0) ---------------------------------

local m = gl.data.mnist { dir = FIX, batch = 4, shuffle = false }
T.eq(table.concat(m.images:shape(), ","), "6,1,2,3", "mnist: images [N,1,H,W]")
T.eq(m.images:dtype(), "f32", "mnist: images are f32")
T.near(m.images:getflat(2), 7 / 255, 1e-7, "mnist: pixels scaled to [0,1]")
T.eq(m.labels:dtype(), "i64", "mnist: labels are i64")
T.eq(table.concat(m.labels:tolist(), ","), "5,4,3,2,1,0", "mnist: labels in file order")
T.eq(m.n, 6, "mnist: n counts the images")
T.eq(#m, 6, "mnist: #loader")
T.eq(m.num_classes, 6, "mnist: num_classes = max label + 1")
T.eq(m:num_batches(), 2, "mnist: 6 images in batches of 4 make 2 batches")
local x1, y1 = m:next()
T.eq(table.concat(x1:shape(), ","), "4,1,2,3", "mnist: next() x [B,1,H,W]")
T.eq(table.concat(y1:tolist(), ","), "5,4,3,2", "mnist: next() y in order without shuffle")
T.near(x1:getflat(7), 6 * 7 / 255, 1e-7, "mnist: batch pixels come from the right image")
local x2, y2 = m:next()
T.eq(x2:size(1), 2, "mnist: the last batch of a pass is smaller")
T.eq(table.concat(y2:tolist(), ","), "1,0", "mnist: the last batch holds the rest")
local _, y3 = m:next()
T.eq(table.concat(y3:tolist(), ","), "5,4,3,2", "mnist: next() starts a new pass after the last batch")

local sizes = {}
for bx, by in m:epoch() do sizes[#sizes + 1] = bx:size(1) .. "/" .. by:size(1) end
T.eq(table.concat(sizes, " "), "4/4 2/2", "mnist: epoch() iterates one pass")
local _, y4 = m:next()
T.eq(table.concat(y4:tolist(), ","), "1,0", "mnist: epoch() leaves next()'s stream alone")

local flat = gl.data.mnist { dir = FIX, batch = 3, flatten = true, drop_last = true, shuffle = false }
T.eq(table.concat(flat:next():shape(), ","), "3,6", "mnist: flatten gives [B,H*W]")
local count = 0
for _ in flat:epoch() do count = count + 1 end
T.eq(count, 2, "mnist: drop_last with 6 images, batch 3")
local tanh = gl.data.mnist { dir = FIX, range = "tanh", shuffle = false }
T.near(tanh:next():getflat(2), -1 + 2 * 7 / 255, 1e-6, "mnist: range tanh maps 0..255 to [-1,1] in batches")
T.near(tanh.images:getflat(1), -1, 0, "mnist: and in loader.images")
local lim = gl.data.mnist { dir = FIX, limit = 4, shuffle = false }
T.eq(lim.n, 4, "mnist: limit keeps the first N")

-- seeded shuffling: reproducible, a permutation, and different for other seeds
local function order(loader)
  local ys = {}
  for _, by in loader:epoch() do
    for _, v in ipairs(by:tolist()) do ys[#ys + 1] = v end
  end
  return table.concat(ys, ",")
end
local a = order(gl.data.mnist { dir = FIX, batch = 4, seed = 7 })
local b = order(gl.data.mnist { dir = FIX, batch = 4, seed = 7 })
T.eq(a, b, "mnist: the same seed gives the same order")
local sorted = {}
for v in a:gmatch("%d+") do sorted[#sorted + 1] = tonumber(v) end
table.sort(sorted)
T.eq(table.concat(sorted, ","), "0,1,2,3,4,5", "mnist: a shuffled pass holds every image once")
local differs = false
for s = 8, 20 do differs = differs or order(gl.data.mnist { dir = FIX, batch = 4, seed = s }) ~= a end
T.ok(differs, "mnist: other seeds give other orders")
local own = gl.data.mnist { dir = FIX, seed = 3 }
gl.seed(1)
local before = gl.rand({ 1 }):item()
gl.seed(1)
order(own)
T.eq(gl.rand({ 1 }):item(), before, "mnist: a seeded loader leaves the genlab generator alone")
gl.seed(42)
local g1 = order(gl.data.mnist { dir = FIX })
gl.seed(42)
T.eq(order(gl.data.mnist { dir = FIX }), g1, "mnist: without seed, gl.seed fixes the order")

-- uncompressed files are found too
write("train-images-idx3-ubyte", header { 2, 1, 1 } .. "\0\255")
write("train-labels-idx1-ubyte", header { 2 } .. "\1\0")
local plain = gl.data.mnist { dir = tmp, shuffle = false }
T.eq(plain.images:getflat(2), 1.0, "mnist: reads uncompressed files")

-- errors
T.raises(function() gl.data.mnist { dir = tmp .. "/nowhere" } end,
  "gl.data.mnist: " .. tmp .. "/nowhere/train-images-idx3-ubyte.gz not found", "mnist: missing files named")
T.raises(function() gl.data.mnist { dir = FIX, split = "test" } end,
  "t10k-images-idx3-ubyte.gz not found", "mnist: the test split's file named")
T.raises(function() gl.data.mnist { dir = FIX, split = "val" } end, 'split must be "train" or "test"', "mnist: bad split")
T.raises(function() gl.data.mnist { dir = FIX, bacth = 3 } end, "unknown option 'bacth'", "mnist: unknown option")
T.raises(function() gl.data.mnist { dir = FIX, batch = 0 } end, "batch must be a positive integer", "mnist: batch 0")
write("train-labels-idx1-ubyte", header { 3 } .. "\1\0\2")
T.raises(function() gl.data.mnist { dir = tmp } end, "holds 3 labels for the 2 images", "mnist: label count mismatch")
write("train-labels-idx1-ubyte", "garbage!")
T.raises(function() gl.data.mnist { dir = tmp } end, "gl.data.mnist: " .. tmp .. "/train-labels-idx1-ubyte: bad magic",
  "mnist: a bad label file named")

-- ---- the real Fashion-MNIST -----------------------------------------------------------------
-- Reference numbers from numpy on the same files (gzip + frombuffer):
--   train: labels[0:10] = 9 0 0 3 0 2 7 2 5 5, sum(image 0) = 76247, sum(image 59999) = 16684,
--          6000 of each class; t10k: labels[0:10] = 9 2 1 1 6 1 4 6 5 7, sum(image 0) = 33456
local function sum255(img) return math.floor(img:sum():item() * 255 + 0.5) end
if io.open(FASHION .. "/train-images-idx3-ubyte.gz") then
  local t0 = gl.clock()
  local tr = gl.data.mnist { seed = 1 }
  local secs = gl.clock() - t0
  T.ok(true, ("# loaded the 60000 training images in %.3f s"):format(secs))
  T.ok(secs < 10, "fashion-mnist: loads in seconds, not minutes")
  T.eq(table.concat(tr.images:shape(), ","), "60000,1,28,28", "fashion-mnist: train images [60000,1,28,28]")
  T.eq(table.concat(tr.labels:narrow(1, 1, 10):tolist(), ","), "9,0,0,3,0,2,7,2,5,5", "fashion-mnist: first labels")
  T.eq(sum255(tr.images[1]), 76247, "fashion-mnist: pixel sum of image 0 (numpy: 76247)")
  T.eq(sum255(tr.images[60000]), 16684, "fashion-mnist: pixel sum of the last image (numpy: 16684)")
  T.eq(tr.labels:eq(9):float():sum():item(), 6000, "fashion-mnist: 6000 ankle boots")
  T.eq(tr.classes[10], "Ankle boot", "fashion-mnist: class names")
  local bx, by = tr:next()
  T.eq(table.concat(bx:shape(), ",") .. " " .. by:size(1), "128,1,28,28 128", "fashion-mnist: default batch 128")
  local te = gl.data.mnist { split = "test", batch = 1000, shuffle = false }
  T.eq(te.n, 10000, "fashion-mnist: 10000 test images")
  T.eq(table.concat(te.labels:narrow(1, 1, 10):tolist(), ","), "9,2,1,1,6,1,4,6,5,7", "fashion-mnist: first test labels")
  T.eq(sum255(te:next()[1]), 33456, "fashion-mnist: pixel sum of test image 0 (numpy: 33456)")
else
  T.ok(true, "# SKIP " .. FASHION .. " not installed (Debian package dataset-fashion-mnist)")
  T.raises(function() gl.data.mnist {} end, "install the Debian package dataset-fashion-mnist",
    "mnist: the missing default names the Debian package")
end

os.execute("rm -rf " .. tmp)
T.done()
