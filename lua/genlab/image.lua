-- gl.image: pictures in and out, as f32 tensors [C,H,W] (channels first) with
-- values in [0,1]. The C half is gl._image (src/lua/l_image.c, libpng).
--
--   gl.image.load(path [, {size=, channels=, background=1}]) -> [C,H,W]
--       Any PNG (grey, grey+alpha, RGB, RGBA, palette, 1..16 bits). C is the
--       file's own (1, 2, 3 or 4) unless channels = 1, 3 or 4 asks: alpha is
--       composited over background (0 black .. 1 white) when dropped, RGB to
--       grey is ITU-R 601 luma. size = N resizes the shorter side to N and
--       crops the centre N x N (torchvision's Resize(N) + CenterCrop(N));
--       size = {H, W} resizes to exactly H x W.
--   gl.image.save(t, path [, {nrow=8, padding=2, range={0,1}, pad_value=0}]) -> path
--       t: [B,C,H,W] (laid out as a grid, as torchvision.utils.save_image),
--       [C,H,W] or [H,W]; C = 1 to 4 (grey, grey+alpha, RGB, RGBA). Values map from range {lo, hi} to
--       0..255 with clamping (range = {-1, 1} or "tanh" for tanh outputs);
--       pad_value is in output units (0 black, 1 white). u8 tensors are taken
--       as 0..255. The file is written atomically.
--   gl.image.grid(t [, {nrow=8, padding=2, pad_value=0}]) -> [C,H',W']
--       torchvision's make_grid: nrow images a row; pad_value in t's units.
--   gl.image.resize(t, size) -> [...,H,W]: size = N or {H, W}; bilinear when
--       growing, an exact box filter (area) when shrinking, per axis.
--   gl.image.center_crop(t, size) -> the centred N x N (or H x W) window.
--   gl.image.show(t [, opts]) prints t with gl.plot_image (opts as there, plus
--       range = {lo, hi}); a batch shows as a grid.
local gl = require "genlab"
local C = gl._image

local M = {}

local function check_options(opts, allowed, op, level)
  if opts == nil then return {} end
  if type(opts) ~= "table" then error(op .. ": expected an options table, got a " .. type(opts), level + 1) end
  for k in pairs(opts) do
    if not allowed[k] then error(("%s: unknown option '%s'"):format(op, tostring(k)), level + 1) end
  end
  return opts
end

local function whole(v, lo, name, op, level)
  local n = type(v) == "number" and math.tointeger(v)
  if not n or n < lo then
    error(("%s: %s must be an integer >= %d (got %s)"):format(op, name, lo, tostring(v)), level + 1)
  end
  return n
end

-- size = N or {H, W} -> h, w
local function check_size(size, op, level)
  if type(size) == "table" then
    if #size ~= 2 then error(op .. ": size must be N or {H, W}", level + 1) end
    return whole(size[1], 1, "size[1]", op, level + 1), whole(size[2], 1, "size[2]", op, level + 1)
  end
  local n = whole(size, 1, "size", op, level + 1)
  return n, n
end

-- {lo, hi} from a range option: a pair, "unit" ({0,1}) or "tanh" ({-1,1}).
local function check_range(r, op, level)
  if r == nil or r == "unit" then return 0, 1 end
  if r == "tanh" then return -1, 1 end
  if type(r) ~= "table" or type(r[1]) ~= "number" or type(r[2]) ~= "number" or not (r[1] < r[2]) then
    error(op .. ': range must be {lo, hi} with lo < hi, "unit" or "tanh"', level + 1)
  end
  return r[1], r[2]
end

local function as_float(t, op, level)
  if not gl.is_tensor(t) then error(op .. ": expected a tensor, got a " .. type(t), level + 1) end
  if t:dtype() == "u8" then return C.unit(t) end
  return t:dtype() == "f32" and t or t:float()
end

-- fn(...), its error raised again at level (as error()'s, from the caller
-- of the function that calls this) without the position inside this file.
local function call(level, fn, ...)
  local ok, a = pcall(fn, ...)
  if not ok then error((tostring(a):gsub("^[^\n]-:%d+: ", "")), level + 1) end
  return a
end

-- Resize so the shorter side is n, then crop the centre n x n (also used
-- by gl.data.images).
function M.fit_square(img, n)
  local h, w = img:size(-2), img:size(-1)
  if h ~= n or w ~= n then
    -- torchvision's Resize(n): the longer side scales and truncates
    local nh, nw = n, n
    if h < w then nw = math.max(n, w * n // h) else nh = math.max(n, h * n // w) end
    if nh ~= h or nw ~= w then img = C.resize(img, nh, nw) end
    if nh ~= n or nw ~= n then img = C.center_crop(img, n, n) end
  end
  return img
end

local load_options = { size = true, channels = true, background = true }

function M.load(path, opts)
  if type(path) ~= "string" then error("image.load: path must be a string, got a " .. type(path), 2) end
  opts = check_options(opts, load_options, "image.load", 2)
  local bg = opts.background or 1
  if type(bg) ~= "number" then error("image.load: background must be a number (0 black .. 1 white)", 2) end
  local img = call(2, C.read_png, path)
  local ch = opts.channels
  if ch ~= nil then
    if ch ~= 1 and ch ~= 3 and ch ~= 4 then
      error(("image.load: channels must be 1, 3 or 4 (got %s)"):format(tostring(ch)), 2)
    end
    if ch ~= img:size(1) then img = call(2, C.convert, img, math.tointeger(ch), bg) end
  end
  if opts.size ~= nil then
    if type(opts.size) == "table" then
      local h, w = check_size(opts.size, "image.load", 2)
      if h ~= img:size(2) or w ~= img:size(3) then img = call(2, C.resize, img, h, w) end
    else
      img = M.fit_square(img, (check_size(opts.size, "image.load", 2)))
    end
  end
  return img
end

local grid_options = { nrow = true, padding = true, pad_value = true }

local function make_grid(t, opts, op, pad_value, level)
  local nrow = whole(opts.nrow or 8, 1, "nrow", op, level + 1)
  local padding = whole(opts.padding or 2, 0, "padding", op, level + 1)
  if t:dim() == 4 then return call(level + 1, C.grid, t, nrow, padding, pad_value) end
  if t:dim() == 3 or t:dim() == 2 then return t end
  error(("%s: expected [B,C,H,W], [C,H,W] or [H,W], got %d dims"):format(op, t:dim()), level + 1)
end

function M.grid(t, opts)
  opts = check_options(opts, grid_options, "image.grid", 2)
  local pad = opts.pad_value or 0
  if type(pad) ~= "number" then error("image.grid: pad_value must be a number", 2) end
  t = as_float(t, "image.grid", 2)
  if t:dim() ~= 4 then error(("image.grid: expected images [B,C,H,W], got %d dims"):format(t:dim()), 2) end
  return make_grid(t, opts, "image.grid", pad, 2)
end

local save_options = { nrow = true, padding = true, range = true, pad_value = true }

function M.save(t, path, opts)
  if type(path) ~= "string" then error("image.save: path must be a string, got a " .. type(path), 2) end
  opts = check_options(opts, save_options, "image.save", 2)
  local lo, hi = check_range(opts.range, "image.save", 2)
  local pad = opts.pad_value or 0
  if type(pad) ~= "number" then error("image.save: pad_value must be a number (0 black .. 1 white)", 2) end
  t = as_float(t, "image.save", 2)
  call(2, C.write_png, path, make_grid(t, opts, "image.save", lo + pad * (hi - lo), 2), lo, hi)
  return path
end

function M.resize(t, size)
  local h, w = check_size(size, "image.resize", 2)
  return call(2, C.resize, as_float(t, "image.resize", 2), h, w)
end

function M.center_crop(t, size)
  if not gl.is_tensor(t) then error("image.center_crop: expected a tensor, got a " .. type(t), 2) end
  local h, w = check_size(size, "image.center_crop", 2)
  return call(2, C.center_crop, t, h, w)
end

function M.show(t, opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("image.show: expected an options table, got a " .. type(opts), 2) end
  local o = {}
  for k, v in pairs(opts) do
    if k ~= "range" then o[k] = v end
  end
  t = as_float(t, "image.show", 2)
  if opts.range ~= nil then
    local lo, hi = check_range(opts.range, "image.show", 2)
    t = (t - lo) / (hi - lo)
  end
  print(gl.plot_image(t, o))
end

-- Shows images in the workbench's Image pane (its global `show`) when there
-- is one; elsewhere prints them as text when print_elsewhere is true. For
-- trainers that show samples as they go.
function M.preview(images, title, print_elsewhere)
  local ws = rawget(_G, "show")
  if type(ws) == "function" then
    pcall(ws, images, title)
  elseif print_elsewhere then
    gl.display(images, "image")
  end
end

gl.image = M
return M
