-- gl.data.mnist and gl.data.images: image data sets held in memory as one
-- tensor, served in (shuffled) batches of f32 tensors.
--
--   local train = gl.data.mnist{split = "train", batch = 128, seed = 1}
--   local x, y = train:next()          -- x [128,1,28,28] f32 in [0,1], y [128] i64
--   for x, y in train:epoch() do ... end
--   local icons = gl.data.images("/usr/share/icons/oxygen/base/64x64", {size = 64, range = "tanh"})
--
-- gl.data.mnist{...} reads MNIST-format IDX files ({train,t10k}-{images-idx3,
-- labels-idx1}-ubyte, gzip-compressed or not). Options:
--   dir       folder of the files (default /usr/share/datasets/fashion-mnist,
--             the Debian package dataset-fashion-mnist)
--   split     "train" (default) or "test"
--   flatten   x as [B,784] instead of [B,1,28,28] (false)
-- gl.data.images(dir, {...}) reads every PNG under dir (subfolders too, each
-- file once however many links reach it, in path order). Options:
--   size      N: shorter side resized to N, centre cropped to N x N (64)
--   channels  1, 3 (default) or 4; alpha is composited over background
--   background  0 (black) .. 1 (white, default), behind transparent pixels
-- Options of both:
--   range     "unit" (x in [0,1], default) or "tanh" ([-1,1], for tanh generators)
--   batch     images a batch (mnist 128, images 64)
--   shuffle   a new random order each pass (true); false keeps file order
--   seed      the loader's own random stream; without it, orders are drawn
--             from the genlab generator (gl.seed fixes them)
--   drop_last leave out the last, smaller batch of a pass (false)
--   limit     keep only the first N images
--
-- A loader has fields images (all of them, [N,C,H,W] f32, made on first
-- use), labels ([N] i64, mnist only, 0-based class ids), n (the image count),
-- batch_size, range, num_classes and classes (names, for Fashion-MNIST),
-- files (mnist) or paths (images), and methods:
--   next()         the next batch x[, y] of an endless stream of passes
--   epoch()        iterator over one fresh pass (x[, y] per batch); leaves
--                  next()'s stream alone
--   num_batches()  batches in a pass
local gl = require "genlab"
require "genlab.image"
local C = gl._image

local DEFAULT_MNIST = "/usr/share/datasets/fashion-mnist"
local FASHION_CLASSES = { "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                          "Bag", "Ankle boot" }

-- An error message without the "file:line: " where it was raised.
local function strip(msg) return (tostring(msg):gsub("^[^\n]-:%d+: ", "")) end

local function check_options(opts, allowed, op)
  if opts == nil then return {} end
  if type(opts) ~= "table" then error(op .. ": expected an options table, got a " .. type(opts), 3) end
  for k in pairs(opts) do
    if not allowed[k] then error(("%s: unknown option '%s'"):format(op, tostring(k)), 3) end
  end
  return opts
end

-- level: as error()'s, counted from the caller of this helper
local function positive_int(v, name, op, level)
  local n = type(v) == "number" and math.tointeger(v)
  if not n or n < 1 then
    error(("%s: %s must be a positive integer (got %s)"):format(op, name, tostring(v)), level + 1)
  end
  return n
end

local function boolean(v, def, name, op)
  if v == nil then return def end
  if type(v) ~= "boolean" then error(("%s: %s must be true or false (got %s)"):format(op, name, tostring(v)), 4) end
  return v
end

-- ---- the loader -------------------------------------------------------------------------

-- The pixels stay as loaded (u8 for IDX files: a quarter of the memory, and
-- no 188 MB of fresh pages to fault in for Fashion-MNIST) and become f32 a
-- batch at a time; loader.images converts them all on first use.
local Loader = {}
Loader.__name = "ImageLoader"

local function to_float(self, x)
  if x:dtype() ~= "u8" then return x end
  if self.range == "tanh" then return C.unit(x, -1, 1) end
  return C.unit(x)
end

function Loader.__index(self, k)
  if k == "images" then
    local all = to_float(self, self._data)
    rawset(self, "images", all)
    return all
  end
  return Loader[k]
end

-- Runs fn with the loader's own generator in place of the genlab one.
local function with_own_rng(self, fn)
  if not self._rng then return fn() end
  local saved = gl.rng_state()
  gl.set_rng_state(self._rng)
  local ok, r = pcall(fn)
  self._rng = gl.rng_state()
  gl.set_rng_state(saved)
  if not ok then error(r, 0) end
  return r
end

-- The order of a new pass: 0-based image ids.
local function new_order(self)
  if not self.shuffle then return self._identity end
  return with_own_rng(self, function() return C.randperm(self.n) end)
end

local function batch_at(self, order, pos, count)
  local ids = order:narrow(1, pos + 1, count)
  local x = to_float(self, gl.index(self._data, 1, ids))
  if self.flatten then x = x:reshape { count, -1 } end
  if self.labels then return x, gl.index(self.labels, 1, ids) end
  return x
end

-- Size of the batch starting at pos, or nil at the end of the pass.
local function batch_count(self, pos)
  local count = math.min(self.batch_size, self.n - pos)
  if count <= 0 or (self.drop_last and count < self.batch_size) then return nil end
  return count
end

function Loader:num_batches()
  return self.drop_last and self.n // self.batch_size or (self.n + self.batch_size - 1) // self.batch_size
end

function Loader:next()
  local count = batch_count(self, self._pos)
  if not count then
    self._order, self._pos = new_order(self), 0
    count = batch_count(self, 0)
  end
  local pos = self._pos
  self._pos = pos + count
  return batch_at(self, self._order, pos, count)
end

function Loader:epoch()
  local order, pos = new_order(self), 0
  return function()
    local count = batch_count(self, pos)
    if not count then return nil end
    local first = pos
    pos = pos + count
    return batch_at(self, order, first, count)
  end
end

function Loader:__len() return self.n end

function Loader:__tostring()
  local s = self._data:shape()
  return ("ImageLoader(%s, n=%d, image=[%d,%d,%d], batch=%d%s)"):format(self.name, self.n, s[2], s[3], s[4],
    self.batch_size, self.shuffle and ", shuffled" or "")
end

local function new_loader(fields, opts, default_batch, op)
  local self = setmetatable(fields, Loader)
  self.batch_size = positive_int(opts.batch or default_batch, "batch", op, 3)
  self.shuffle = boolean(opts.shuffle, true, "shuffle", op)
  self.drop_last = boolean(opts.drop_last, false, "drop_last", op)
  self.flatten = boolean(opts.flatten, false, "flatten", op)
  self.n = self._data:size(1)
  if self.drop_last and self.n < self.batch_size then
    error(("%s: drop_last with %d images and batch %d leaves no batch"):format(op, self.n, self.batch_size), 3)
  end
  if opts.seed ~= nil then
    if math.type(opts.seed) ~= "integer" then error(op .. ": seed must be an integer", 3) end
    local saved = gl.rng_state()
    gl.seed(opts.seed)
    self._rng = gl.rng_state()
    gl.set_rng_state(saved)
  end
  self._identity = gl.arange(0, self.n):long()
  self._order, self._pos = new_order(self), 0
  return self
end

local function limit_of(opts, op)
  if opts.limit == nil then return nil end
  return positive_int(opts.limit, "limit", op, 3)
end

-- ---- MNIST-format files -------------------------------------------------------------------

local function file_exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

-- dir/name.gz, or dir/name when only the uncompressed file is there.
local function idx_path(dir, name, op)
  local gz = dir .. "/" .. name .. ".gz"
  if file_exists(gz) then return gz end
  if file_exists(dir .. "/" .. name) then return dir .. "/" .. name end
  local hint = dir == DEFAULT_MNIST and "install the Debian package dataset-fashion-mnist"
    or "dir must hold MNIST-format files; the Debian package dataset-fashion-mnist installs them in " .. DEFAULT_MNIST
  error(("%s: %s not found (%s)"):format(op, gz, hint), 3)
end

local function read_idx(path, op)
  local ok, t = pcall(C.idx_read, path)
  if not ok then error(("%s: %s"):format(op, (strip(t):gsub("^idx: ", ""))), 3) end
  return t
end

local mnist_options = { dir = true, split = true, batch = true, shuffle = true, seed = true, flatten = true,
                        drop_last = true, limit = true, range = true }

local function check_range(opts, op)
  local range = opts.range or "unit"
  if range ~= "unit" and range ~= "tanh" then
    error(("%s: range must be \"unit\" or \"tanh\" (got %s)"):format(op, tostring(range)), 3)
  end
  return range
end

local function mnist(opts)
  local op = "gl.data.mnist"
  opts = check_options(opts, mnist_options, op)
  local dir = opts.dir or DEFAULT_MNIST
  if type(dir) ~= "string" then error(op .. ": dir must be a string", 2) end
  dir = dir:gsub("/+$", "")
  local split = opts.split or "train"
  local prefix = ({ train = "train", test = "t10k" })[split]
  if not prefix then error(("%s: split must be \"train\" or \"test\" (got %s)"):format(op, tostring(split)), 2) end
  local limit = limit_of(opts, op)
  local range = check_range(opts, op)
  local ipath = idx_path(dir, prefix .. "-images-idx3-ubyte", op)
  local lpath = idx_path(dir, prefix .. "-labels-idx1-ubyte", op)
  local images, labels = read_idx(ipath, op), read_idx(lpath, op)
  if images:dim() ~= 3 then
    error(("%s: %s holds a %d-dim array; images are [N,H,W]"):format(op, ipath, images:dim()), 2)
  end
  if labels:dim() ~= 1 or labels:size(1) ~= images:size(1) then
    error(("%s: %s holds %s labels for the %d images of %s"):format(op, lpath,
      table.concat(labels:shape(), "x"), images:size(1), ipath), 2)
  end
  local n = images:size(1)
  if limit and limit < n then
    images, labels, n = images:narrow(1, 1, limit), labels:narrow(1, 1, limit), limit
  end
  if n == 0 then error(("%s: %s holds no images"):format(op, ipath), 2) end
  local h, w = images:size(2), images:size(3)
  labels = labels:long()
  local num_classes = math.tointeger(labels:float():max():item()) + 1
  return new_loader({ name = dir .. " " .. split, _data = images:reshape { n, 1, h, w }, labels = labels, range = range,
                      num_classes = num_classes, classes = dir == DEFAULT_MNIST and FASHION_CLASSES or nil,
                      files = { images = ipath, labels = lpath } }, opts, 128, op)
end

-- ---- folders of PNG files -----------------------------------------------------------------

local images_options = { size = true, channels = true, background = true, range = true, batch = true, shuffle = true,
                         seed = true, drop_last = true, limit = true, flatten = true }

local function images(dir, opts)
  local op = "gl.data.images"
  if type(dir) ~= "string" then error(op .. ": dir must be a string, got a " .. type(dir), 2) end
  opts = check_options(opts, images_options, op)
  local size = positive_int(opts.size or 64, "size", op, 2)
  local ch = opts.channels or 3
  if ch ~= 1 and ch ~= 3 and ch ~= 4 then
    error(("%s: channels must be 1, 3 or 4 (got %s)"):format(op, tostring(ch)), 2)
  end
  ch = math.tointeger(ch)
  local bg = opts.background or 1
  if type(bg) ~= "number" then error(op .. ": background must be a number (0 black .. 1 white)", 2) end
  local range = check_range(opts, op)
  local limit = limit_of(opts, op)
  local ok, paths = pcall(C.list_png, dir)
  if not ok then error(("%s: %s"):format(op, (strip(paths):gsub("^image%.list: ", ""))), 2) end
  if #paths == 0 then error(("%s: %s has no PNG files (*.png)"):format(op, dir), 2) end
  if limit and limit < #paths then
    for i = #paths, limit + 1, -1 do paths[i] = nil end
  end
  local list = {}
  for i, path in ipairs(paths) do
    local good, img = pcall(function()
      local x = C.read_png(path)
      if x:size(1) ~= ch then x = C.convert(x, ch, bg) end
      return gl.image.fit_square(x, size)
    end)
    if not good then error(("%s: %s"):format(op, (strip(img):gsub("^image%.%w+: ", ""))), 2) end
    list[i] = img
  end
  local all = gl.stack(list)
  list = nil
  if range == "tanh" then all = all * 2 - 1 end
  return new_loader({ name = dir, _data = all, images = all, paths = paths, range = range }, opts, 64, op)
end

gl.data = gl.data or {}
gl.data.mnist = mnist
gl.data.images = images
gl.data.ImageLoader = Loader
return gl.data
