-- gl.image (PNG in and out, resize, crop, grids, show) and gl.data.images.
-- The fixtures (tests/fixtures/images/make.py) hold each PNG colour type with
-- pixel values from formulas of (x, y) that are recomputed here; resize
-- references come from the same script (numpy, cross-checked with PyTorch).
local T = require "tap"
local gl = require "genlab"
require "genlab.image"
require "genlab.data_image"

local FIX = "../fixtures/images/"
local W, H = 5, 3
local tmp = os.tmpname()
os.remove(tmp)
assert(os.execute("mkdir -p " .. tmp))

local function shape(t) return table.concat(t:shape(), ",") end

-- max |t[c,y,x] - fn(x, y)[c]| over the image (fn gives values in 0..1)
local function max_err(t, fn)
  local C, h, w = t:size(1), t:size(2), t:size(3)
  local err = 0
  for c = 1, C do
    for y = 0, h - 1 do
      for x = 0, w - 1 do
        local want = fn(x, y)[c]
        err = math.max(err, math.abs(t:getflat((c - 1) * h * w + y * w + x + 1) - want))
      end
    end
  end
  return err
end

local function rgb(x, y) return { 50 * x / 255, 100 * y / 255, (20 * x * y) % 256 / 255 } end

-- ---- every colour type, against the formulas of make.py ---------------------------------------

local cases = {
  { "gray8.png", 1, function(x, y) return { (17 * x + 80 * y) % 256 / 255 } end },
  { "gray16.png", 1, function(x, y) return { (4099 * x + 13001 * y + 7) % 65536 / 65535 } end },
  { "gray1.png", 1, function(x, y) return { (x + y) % 2 } end },
  { "graya8.png", 2, function(x, y) return { (30 * x + 50 * y) / 255, (255 - 40 * x) / 255 } end },
  { "rgb8.png", 3, rgb },
  { "rgba8.png", 4, function(x, y) local c = rgb(x, y); c[4] = (60 * y + 10 * x) / 255; return c end },
  { "rgb16.png", 3, function(x, y) return { (13000 * x + 1) / 65535, (30000 * y + 2) / 65535, (65535 - 1000 * x * y) / 65535 } end },
}
local PAL = { { 1, 0, 0 }, { 0, 1, 0 }, { 0, 0, 1 }, { 10 / 255, 20 / 255, 30 / 255 } }
local ALPHA = { 1, 128 / 255, 0, 1 }
cases[#cases + 1] = { "palette8_trns.png", 4, function(x, y)
  local i = (x + 2 * y) % 4 + 1
  return { PAL[i][1], PAL[i][2], PAL[i][3], ALPHA[i] }
end }
cases[#cases + 1] = { "palette2.png", 3, function(x, y) return PAL[(x + 2 * y) % 4 + 1] end }

for _, c in ipairs(cases) do
  local img = gl.image.load(FIX .. c[1])
  T.eq(shape(img), c[2] .. "," .. H .. "," .. W, "load " .. c[1] .. ": [C,H,W] with its own channels")
  T.ok(max_err(img, c[3]) < 1e-6, "load " .. c[1] .. ": every value", "max error " .. max_err(img, c[3]))
end

-- ---- channel conversion ---------------------------------------------------------------------

local ga = gl.image.load(FIX .. "graya8.png", { channels = 3 })
T.ok(max_err(ga, function(x, y)
  local g, a = (30 * x + 50 * y) / 255, (255 - 40 * x) / 255
  local v = g * a + (1 - a)
  return { v, v, v }
end) < 1e-6, "channels=3: grey+alpha composited over white")
local gab = gl.image.load(FIX .. "graya8.png", { channels = 1, background = 0 })
T.ok(max_err(gab, function(x, y) return { (30 * x + 50 * y) / 255 * (255 - 40 * x) / 255 } end) < 1e-6,
  "channels=1, background=0: grey+alpha over black")
local luma = gl.image.load(FIX .. "rgb8.png", { channels = 1 })
T.ok(max_err(luma, function(x, y)
  local c = rgb(x, y)
  return { 0.299 * c[1] + 0.587 * c[2] + 0.114 * c[3] }
end) < 1e-6, "channels=1: RGB to ITU-R 601 luma")
local g3 = gl.image.load(FIX .. "gray8.png", { channels = 3 })
T.ok(max_err(g3, function(x, y) local v = (17 * x + 80 * y) % 256 / 255; return { v, v, v } end) < 1e-6,
  "channels=3: grey repeated")
local r4 = gl.image.load(FIX .. "rgb8.png", { channels = 4 })
T.ok(max_err(r4, function(x, y) local c = rgb(x, y); c[4] = 1; return c end) < 1e-6, "channels=4: opaque alpha added")

-- ---- resize and crop against numpy ----------------------------------------------------------------

local ref = dofile(FIX .. "resize_expected.lua")
local src = gl.tensor(ref.src):reshape { 1, 3, 4 }
for _, r in ipairs(ref) do
  local out = gl.image.resize(src, { r[1], r[2] })
  T.eq(shape(out), "1," .. r[1] .. "," .. r[2], ("resize 3x4 -> %dx%d: shape"):format(r[1], r[2]))
  T.near(out, gl.tensor(r[3]), 1e-6, ("resize 3x4 -> %dx%d: values (numpy reference)"):format(r[1], r[2]))
end
-- by hand: [0, 1] grown to 4 samples is 0, 0.25, 0.75, 1 (centres at -0.25, 0.25, 0.75, 1.25, clamped)
T.near(gl.image.resize(gl.tensor { { 0, 1 } }, { 1, 4 }), gl.tensor { 0, 0.25, 0.75, 1 }, 1e-7,
  "resize by hand: bilinear 1x2 -> 1x4")
-- by hand: 1..6 shrunk to 4 samples, each a box 1.5 pixels wide: [0,1.5) holds all of 1 and
-- half of 2, [1.5,3) half of 2 and all of 3, ...
T.near(gl.image.resize(gl.tensor { { 1, 2, 3, 4, 5, 6 } }, { 1, 4 }),
  gl.tensor { (1 + 0.5 * 2) / 1.5, (0.5 * 2 + 3) / 1.5, (4 + 0.5 * 5) / 1.5, (0.5 * 5 + 6) / 1.5 }, 1e-6,
  "resize by hand: box 1x6 -> 1x4")
local batch = gl.stack { src, src * 2 }
T.near(gl.image.resize(batch, 2)[2], gl.image.resize(src * 2, 2), 1e-7, "resize: leading dims are independent images")
local crop = gl.image.center_crop(gl.arange(0, 20):reshape { 1, 4, 5 }, { 2, 3 })
T.eq(table.concat(crop:reshape { 6 }:tolist(), ","), "6,7,8,11,12,13", "center_crop 4x5 -> 2x3 (offsets 1, 1)")
local sq = gl.image.load(FIX .. "rgb8.png", { size = 2 })
local manual = gl.image.center_crop(gl.image.resize(gl.image.load(FIX .. "rgb8.png"), { 2, 3 }), 2)
T.eq(shape(sq), "3,2,2", "load size=2: 3x5 image becomes 2x2")
T.near(sq, manual, 0, "load size=N: shorter side to N (5 -> 5*2//3 = 3), then centre crop")
T.eq(shape(gl.image.load(FIX .. "rgb8.png", { size = { 4, 6 } })), "3,4,6", "load size={H,W}: exact resize")

-- ---- PNG round trips ------------------------------------------------------------------------------

local function ramp(C, h, w)
  local v = {}
  for i = 0, C * h * w - 1 do v[#v + 1] = (i * 37 % 256) / 255 end
  return gl.tensor(v):reshape { C, h, w }
end
for _, C in ipairs { 1, 2, 3, 4 } do
  local img = ramp(C, 7, 9)
  local path = gl.image.save(img, tmp .. "/rt" .. C .. ".png")
  T.eq(path, tmp .. "/rt" .. C .. ".png", "save returns the path")
  local back = gl.image.load(path)
  T.eq(shape(back), C .. ",7,9", ("round trip C=%d: shape"):format(C))
  T.near(back, img, 1e-7, ("round trip C=%d: exact for multiples of 1/255"):format(C))
end
local hw = gl.image.load(gl.image.save(ramp(1, 4, 6):reshape { 4, 6 }, tmp .. "/hw.png"))
T.eq(shape(hw), "1,4,6", "save [H,W] writes grey")
-- clamping and rounding: -0.5 -> 0, 1.7 -> 255, 0.5/255 - tiny -> 0, 0.5/255 + tiny -> 1, nan -> 0
local clamp = gl.tensor { -0.5, 1.7, 0.4 / 255, 0.6 / 255, 0 / 0, 128 / 255 }:reshape { 1, 1, 6 }
local cb = gl.image.load(gl.image.save(clamp, tmp .. "/clamp.png"))
T.eq(table.concat(cb:mul(255):reshape { 6 }:tolist(), ","):gsub("%.0", ""), "0,255,0,1,0,128",
  "save clamps to [0,1] and rounds to nearest")
local tanh = gl.tensor { -1, 0, 1, 0.5 }:reshape { 1, 2, 2 }
local tb = gl.image.load(gl.image.save(tanh, tmp .. "/tanh.png", { range = { -1, 1 } }))
T.near(tb:reshape { 4 }, gl.tensor { 0, 128 / 255, 1, 191 / 255 }, 1e-7, "save range={-1,1}: -1 -> 0, 1 -> 255")
local tb2 = gl.image.load(gl.image.save(tanh, tmp .. "/tanh2.png", { range = "tanh" }))
T.near(tb2, tb, 0, 'save range="tanh" is range={-1,1}')
local u8 = gl.tensor({ 0, 100, 255 }, { dtype = "u8" }):reshape { 1, 1, 3 }
T.near(gl.image.load(gl.image.save(u8, tmp .. "/u8.png")):reshape { 3 }, gl.tensor { 0, 100 / 255, 1 }, 1e-7,
  "save of u8 takes 0..255")

-- ---- grids -----------------------------------------------------------------------------------------

-- three 1x2x2 images valued 1, 2, 3 (plus 0.1 * pixel index), nrow = 2, padding = 1:
-- [1, 2*(2+1)+1, 2*(2+1)+1] = [1,7,7]; image k at row 1 + 3*(k//2), column 1 + 3*(k%2)
local imgs = {}
for k = 1, 3 do imgs[k] = gl.arange(0, 4):float():reshape { 1, 2, 2 } * 0.1 + k end
local grid = gl.image.grid(gl.stack(imgs), { nrow = 2, padding = 1, pad_value = -1 })
T.eq(shape(grid), "1,7,7", "grid: [C, rows*(H+p)+p, cols*(W+p)+p]")
local function at(t, y, x) return t:getflat(y * t:size(3) + x + 1) end
T.near(at(grid, 1, 1), 1.0, 1e-6, "grid: image 1 at (1,1)")
T.near(at(grid, 2, 2), 1.3, 1e-6, "grid: image 1's last pixel at (2,2)")
T.near(at(grid, 1, 4), 2.0, 1e-6, "grid: image 2 at (1,4)")
T.near(at(grid, 4, 1), 3.0, 1e-6, "grid: image 3 at (4,1), next row")
T.near(at(grid, 5, 5), -1, 0, "grid: the empty cell is pad_value")
T.near(at(grid, 0, 0) + at(grid, 3, 3) + at(grid, 6, 6), -3, 0, "grid: padding around and between is pad_value")
T.eq(shape(gl.image.grid(gl.zeros { 10, 3, 4, 5 })), "3,14,58", "grid defaults: nrow=8, padding=2 (torchvision)")
local gpath = gl.image.save(gl.stack(imgs) / 4, tmp .. "/grid.png", { nrow = 2, padding = 1 })
local gback = gl.image.load(gpath)
T.eq(shape(gback), "1,7,7", "save [B,C,H,W] writes the grid")
T.near(at(gback, 4, 1), math.floor(0.75 * 255 + 0.5) / 255, 1e-7, "save grid: values")
T.near(at(gback, 0, 0), 0, 0, "save grid: black padding")
local gw = gl.image.load(gl.image.save(gl.stack(imgs) / 4, tmp .. "/gridw.png", { nrow = 3, padding = 2, pad_value = 1 }))
T.eq(shape(gw) .. " " .. at(gw, 0, 0), "1,6,14 1.0", "save grid: nrow, padding and white pad_value")
local tg = gl.image.load(gl.image.save(gl.zeros { 2, 1, 1, 1 }, tmp .. "/tg.png", { range = { -1, 1 }, padding = 1 }))
T.near(at(tg, 1, 1), 128 / 255, 1e-7, "save grid range={-1,1}: 0 is mid grey")
T.near(at(tg, 0, 0), 0, 0, "save grid range={-1,1}: padding still black")

-- ---- show -------------------------------------------------------------------------------------------

local printed
local real_print = print
print = function(s) printed = s end
gl.image.show(gl.stack(imgs) / 4, { width = 20, color = false })
print = real_print
T.eq(printed, gl.plot_image(gl.stack(imgs) / 4, { width = 20, color = false }), "show prints gl.plot_image's picture")
print = function(s) printed = s end
gl.image.show(tanh, { range = { -1, 1 }, color = false })
print = real_print
T.eq(printed, gl.plot_image((tanh + 1) / 2, { color = false }), "show range={-1,1} maps to [0,1] first")

-- ---- bad input: one-line errors naming the file and why --------------------------------------------------

local function write(name, bytes)
  local f = assert(io.open(tmp .. "/" .. name, "wb"))
  f:write(bytes)
  f:close()
  return tmp .. "/" .. name
end
local function bad_load(path, want, what)
  local ok, msg = pcall(gl.image.load, path)
  T.ok(not ok and msg:find(path, 1, true) and msg:find(want, 1, true) and not msg:find("\n"),
    "load error: " .. what, "message was: " .. tostring(msg))
end
local good = assert(io.open(FIX .. "rgb8.png", "rb")):read("a")
bad_load(tmp .. "/missing.png", "No such file", "missing file")
bad_load(write("empty.png", ""), "not a PNG file (only 0 bytes)", "empty file")
bad_load(write("text.png", "hello, this is not a picture"), "not a PNG file", "text file")
bad_load(tmp, "Is a directory", "a directory")
bad_load(write("hdr.png", good:sub(1, 20)), "truncated", "cut inside IHDR")
local all_fail = true
for n = 9, #good - 1, 7 do all_fail = all_fail and not pcall(gl.image.load, write("cut.png", good:sub(1, n))) end
T.ok(all_fail, "load error: every truncation of rgb8.png fails cleanly")
local idat = good:find("IDAT", 1, true)
bad_load(write("data.png", good:sub(1, idat + 5) .. string.char((good:byte(idat + 6) + 1) % 256) .. good:sub(idat + 7)),
  "corrupt PNG data", "a damaged byte in the compressed data")
local crc_at = idat + 4 + string.unpack(">I4", good, idat - 4) -- the IDAT chunk's CRC
bad_load(write("crc.png", good:sub(1, crc_at - 1) .. string.char((good:byte(crc_at) + 1) % 256) .. good:sub(crc_at + 1)),
  "CRC", "a damaged IDAT checksum")
-- a well-formed IHDR (valid CRC) claiming 100000 x 3 pixels
local crc_table = {}
for n = 0, 255 do
  local c = n
  for _ = 1, 8 do c = (c & 1) ~= 0 and (0xEDB88320 ~ (c >> 1)) or (c >> 1) end
  crc_table[n] = c
end
local function crc32(str)
  local c = 0xFFFFFFFF
  for i = 1, #str do c = crc_table[(c ~ str:byte(i)) & 0xFF] ~ (c >> 8) end
  return c ~ 0xFFFFFFFF
end
local ihdr = "IHDR" .. string.pack(">I4I4", 100000, 3) .. good:sub(25, 29)
bad_load(write("big.png", good:sub(1, 12) .. ihdr .. string.pack(">I4", crc32(ihdr)) .. good:sub(34)),
  "exceeds user limit", "a header with 100000 x 3 pixels, refused before allocating")

local function bad_save(fn, want, what)
  local ok, msg = pcall(fn)
  T.ok(not ok and msg:find(want, 1, true) and not msg:find("\n"), "save error: " .. what, "message was: " .. tostring(msg))
end
bad_save(function() gl.image.save(gl.zeros { 5, 3, 3 }, tmp .. "/c5.png") end, "5 channels", "five channels")
bad_save(function() gl.image.save(gl.zeros { 3, 3 }, tmp .. "/no/such/dir/x.png") end, tmp .. "/no/such/dir/x.png",
  "a missing directory names the path")
bad_save(function() gl.image.save(gl.zeros { 3, 3 }, tmp .. "/r.png", { range = { 1, 0 } }) end, "lo < hi", "empty range")
bad_save(function() gl.image.save(gl.zeros { 3, 3 }, tmp .. "/r.png", { nrows = 2 }) end, "unknown option 'nrows'",
  "unknown option")
gl.image.save(gl.ones { 1, 2, 2 }, tmp .. "/keep.png")
pcall(gl.image.save, gl.zeros { 5, 2, 2 }, tmp .. "/keep.png")
T.near(gl.image.load(tmp .. "/keep.png"), gl.ones { 1, 2, 2 }, 0, "a failed save leaves the old file as it was")
T.raises(function() gl.image.load(FIX .. "rgb8.png", { channels = 2 }) end, "channels must be 1, 3 or 4", "load: channels=2")
T.raises(function() gl.image.resize(src, 0) end, "size must be an integer >= 1", "resize: size 0")
T.raises(function() gl.image.center_crop(src, 5) end, "larger than the image", "center_crop: larger than the image")

-- ---- gl.data.images ------------------------------------------------------------------------------------

local set = gl.data.images(FIX, { size = 4, batch = 4, shuffle = false })
T.eq(set.n, 9, "images: the nine fixture PNGs")
T.eq(shape(set.images), "9,3,4,4", "images: [N,3,size,size] by default")
T.eq(set.paths[1], FIX .. "gray1.png", "images: files in path order")
T.near(set.images[6], gl.image.load(FIX .. "palette8_trns.png", { channels = 3, size = 4 }), 0,
  "images: each image as gl.image.load{channels=3, size=N} gives it")
local xb, yb = set:next()
T.eq(shape(xb) .. " " .. tostring(yb), "4,3,4,4 nil", "images: next() gives x only")
local nb = 0
for _ in set:epoch() do nb = nb + 1 end
T.eq(nb, 3, "images: 9 images in batches of 4 make 3 batches")
local tset = gl.data.images(FIX, { size = 4, channels = 1, range = "tanh", seed = 1 })
T.near(tset.images, gl.data.images(FIX, { size = 4, channels = 1 }).images * 2 - 1, 1e-6,
  "images: range tanh is 2x - 1")
local sub = tmp .. "/sub"
os.execute("mkdir -p " .. sub .. "/deeper && cp " .. FIX .. "rgb8.png " .. sub .. "/deeper/a.PNG && ln -s "
  .. sub .. "/deeper/a.PNG " .. sub .. "/link.png && ln -s " .. sub .. " " .. sub .. "/deeper/loop")
local nested = gl.data.images(sub, { size = 2 })
T.eq(nested.n, 1, "images: subfolders searched, symlinked duplicates and loops counted once")
T.eq(nested.paths[1], sub .. "/deeper/a.PNG", "images: .PNG matches too")
local empty = tmp .. "/empty"
os.execute("mkdir -p " .. empty .. " && touch " .. empty .. "/notes.txt")
T.raises(function() gl.data.images(empty) end, "gl.data.images: " .. empty .. " has no PNG files", "images: no PNGs")
T.raises(function() gl.data.images(tmp .. "/nowhere") end, "gl.data.images: " .. tmp .. "/nowhere: No such file",
  "images: missing folder")
write("empty/broken.png", good:sub(1, 40))
T.raises(function() gl.data.images(empty) end, "gl.data.images: " .. empty .. "/broken.png:", "images: a bad PNG is named")
T.raises(function() gl.data.images(FIX, { range = "sigmoid" }) end, 'range must be "unit" or "tanh"', "images: bad range")

local OXY = "/usr/share/icons/oxygen/base/64x64"
if io.open(OXY .. "/apps/preferences-desktop.png") or io.open(OXY .. "/actions/go-home.png") then
  local t0 = gl.clock()
  local icons = gl.data.images(OXY, { seed = 1, range = "tanh" })
  T.ok(true, ("# %d oxygen icons loaded in %.2f s"):format(icons.n, gl.clock() - t0))
  T.ok(icons.n > 500, "oxygen: hundreds of icons, each once")
  T.eq(shape(icons:next()), "64,3,64,64", "oxygen: batches [64,3,64,64]")
  T.ok(icons.images:min():item() >= -1 and icons.images:max():item() <= 1, "oxygen: values in [-1,1]")
else
  T.ok(true, "# SKIP " .. OXY .. " not installed (Debian package oxygen-icon-theme)")
end

-- gl.image.preview: the workbench's `show` when there is one, else nothing
-- unless asked to print.
do
  local shown
  rawset(_G, "show", function(t, title) shown = { t, title } end)
  local imgs = gl.zeros(2, 1, 4, 4)
  gl.image.preview(imgs, "two blanks")
  T.ok(shown and shown[1] == imgs and shown[2] == "two blanks", "preview hands the images to the workbench's show")
  rawset(_G, "show", nil)
  shown = nil
  local ok = pcall(gl.image.preview, imgs, "nothing")
  T.ok(ok and shown == nil, "preview without a workbench and not asked to print does nothing")
end

os.execute("rm -rf " .. tmp)
T.done()
