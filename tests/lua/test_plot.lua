-- gl.plot and gl.plot_image: text charts and pictures for logs
-- (the same drawing code as the TUI, src/core/chart.c).
local T = require "tap"
local gl = require "genlab"

local function lines(s)
  local t = {}
  for l in (s .. "\n"):gmatch("(.-)\n") do t[#t + 1] = l end
  return t
end

-- Characters (not bytes) of a UTF-8 string.
local function cells(s) return utf8.len(s) end

local function has(s, sub) return s:find(sub, 1, true) ~= nil end

-- One series, each input form: the same chart.
local list = {1, 2, 3, 4, 5}
local ascii = {width = 20, height = 8, glyphs = "ascii"}
local want = table.concat({
  "  5+             ***",
  "   |          ***",
  "   |       ***",
  "2.6+     **",
  "   |  ***",
  "  1+**",
  "   +----------------",
  "    1              5",
}, "\n")
T.eq(gl.plot(list, ascii), want, "a list of numbers, in ASCII, exactly")
T.eq(gl.plot(gl.tensor(list), ascii), want, "a 1-D tensor draws the same")
T.eq(gl.tensor(list):plot(ascii), want, "plot is a Tensor method")
T.eq(gl.plot(gl.tensor(list):long(), ascii), want, "an integer tensor draws the same")
T.eq(gl.plot({{y = list}}, ascii), want, "a list of {y=} draws the same")
T.eq(gl.plot({{name = "up", y = gl.tensor(list), x = {1, 2, 3, 4, 5}}}, ascii), want, "{name=, y=, x=} with x = 1..5 draws the same")
T.eq(gl.plot({{y = list, x = {0, 1, 2, 3, 4}}}, ascii), want:gsub("1              5", "0              4"), "x = 0..4 labels the steps 0 and 4")

-- Defaults: 72x16 braille, ticks from the data.
local loss = {}
for i = 1, 200 do loss[i] = 4.17 * math.exp(-i / 50) + 0.3 end
local s = gl.plot(loss)
local ls = lines(s)
T.eq(#ls, 16, "default height 16 rows")
local widest = 0
for _, l in ipairs(ls) do widest = math.max(widest, cells(l)) end
T.ok(widest <= 72 and widest > 60, "default width 72 cells (widest row " .. widest .. ")")
T.ok(has(ls[1], "4┤"), "top tick reads the maximum, rounded (" .. ls[1] .. ")")
T.ok(has(ls[14], "0.4┤"), "bottom tick near the minimum 0.37 (" .. ls[14] .. ")")
T.ok(ls[16]:find("^%s+1%s+200$") ~= nil, "x axis from step 1 to 200 (steps count from 1 by default)")
T.ok(s:find("[\226][\160-\163]") ~= nil, "braille dots (U+2800 block) by default")
T.ok(not has(s, "\27["), "no escapes unless color=true")

-- Several series: a map (sorted by name) and a list (in order).
local m = gl.plot({val = {3, 2.5, 2.2}, train = {4, 3, 2}}, {width = 40, height = 10})
local ml = lines(m)
T.eq(ml[#ml], "    ■ train  ■ val", "a map of series: legend in name order, on by default")
local l2 = gl.plot({{name = "b", y = {1, 2}}, {name = "a", y = {2, 1}}}, {width = 40, height = 10, legend = false})
T.ok(not has(l2, "■"), "legend=false hides the legend")
local l3 = gl.plot({{name = "b", y = {1, 2}}, {name = "a", y = {2, 1}}}, {width = 40, height = 10, glyphs = "ascii"})
T.ok(has(l3, "* b  o a"), "a list of series keeps its order; ASCII marks * o")
local c = gl.plot({{name = "b", y = {1, 2}, color = 196}, {y = {2, 1}}}, {width = 40, height = 10, color = true})
T.ok(has(c, "\27[0;38;5;196m■") and has(c, "\27[0;38;5;196mb"), "color=true: ANSI 256 colours, a series' own color")
T.ok(has(c, "\27[0;38;5;208m■") and has(c, "series 2"), "the second series takes palette colour 208, unnamed is 'series 2'")
local xy = gl.plot({{name = "val", y = {3, 2}, x = {100, 200}}, {name = "train", y = gl.linspace(4, 1, 201), x = gl.arange(0, 201)}},
                   {width = 50, height = 8})
T.ok(lines(xy)[7]:find("^%s+0%s+200$") ~= nil, "series with x: steps span 0..200")

-- Options.
local t = gl.plot(loss, {title = "loss", width = 50, height = 12})
T.ok(lines(t)[1]:find("^%s+loss$") ~= nil, "title centred on the first row")
local lg = gl.plot({1, 0.1, 0.01, 1e-3, 1e-4}, {log = true, width = 40, height = 11})
for _, tick in ipairs({"1┤", "0.1┤", "0.01┤", "1e-3┤", "1e-4┤"}) do
  T.ok(has(lg, tick), "log=true: decade tick " .. tick)
end
local ramp = {}
for i = 1, 100 do ramp[i] = i end
local z = lines(gl.plot(ramp, {last = 10, width = 30, height = 8, glyphs = "ascii"}))
T.ok(z[1]:find("^100%+") and z[6]:find("^ 91%+"), "last=10: y from 91 to 100 (" .. z[1] .. " / " .. z[6] .. ")")
T.eq(z[8], "    91                     100", "last=10: steps 91 to 100")
local b = gl.plot(loss, {glyphs = "blocks", width = 30, height = 8})
T.ok(b:find("[\226][\150][\128-\159]") ~= nil, "glyphs=blocks: quadrant blocks")
local gap = gl.plot({1, 2, 3, 0 / 0, 3, 2, 1}, {width = 16, height = 6, glyphs = "ascii"})
T.eq(lines(gap)[1], "  3+   **  *", "nan is a gap")
T.ok(has(gl.plot({}, {width = 20, height = 5}), "no data"), "an empty list: no data")
T.ok(has(gl.plot({5, 5, 5}, {width = 20, height = 7}), "  5┤⠒⠒"), "a constant: flat line in the middle")
local tiny = gl.plot(loss, {width = 1, height = 1})
T.eq(cells(tiny), 1, "a 1x1 chart is one cell")
T.eq(#lines(gl.plot(loss, {width = 20, height = 5, title = "t", legend = true})), 5, "20x5 with everything: 5 rows")

-- Errors.
T.raises(function() gl.plot(list, {widht = 10}) end, "plot: unknown option 'widht'", "unknown options are rejected")
T.raises(function() gl.plot(list, {width = 0}) end, "plot: width must be a whole number from 1", "width 0")
T.raises(function() gl.plot(list, {height = 2.5}) end, "plot: height must be a whole number", "fractional height")
T.raises(function() gl.plot(list, {glyphs = "emoji"}) end, "glyphs must be 'braille', 'blocks' or 'ascii' (got emoji)", "bad glyphs")
T.raises(function() gl.plot(list, {last = -1}) end, "plot: last must be a whole number >= 0", "negative last")
T.raises(function() gl.plot({1, "x", 3}) end, "plot: series[2] must be a number (got string)", "a non-number value")
T.raises(function() gl.plot(gl.zeros(2, 3)) end, "plot: series must be a 1-D tensor (got shape [2,3])", "a 2-D tensor")
T.raises(function() gl.plot("abc") end, "plot: series must be a tensor or a table (got string)", "a string")
T.raises(function() gl.plot({{name = "a", y = {1, 2}, x = {1}}}) end, "plot: series 'a' has 1 x values for 2 y values", "x and y lengths differ")
T.raises(function() gl.plot({{name = "a", y = {1}, z = 1}}) end, "plot: unknown option 'z'", "unknown series keys")
T.raises(function() gl.plot({{y = {1}, color = 300}}) end, "color must be an xterm-256 colour", "colour out of range")
T.raises(function() gl.plot({a = {1}, [1.5] = {2}}) end, "plot: series table keys must be names", "mixed keys")

-- Images.
local red = gl.zeros(2, 2, 3)
for i = 0, 3 do red:setflat(i * 3 + 1, 1) end
T.eq(gl.plot_image(red), "\27[0;38;5;196;48;5;196m▀▀\27[0m", "[H,W,3] f32 red: xterm 196 half blocks")
local chw = gl.zeros(3, 2, 2)
for i = 9, 12 do chw:setflat(i, 1) end
T.eq(gl.plot_image(chw), "\27[0;38;5;21;48;5;21m▀▀\27[0m", "[3,H,W] is channels first: blue")
local check = gl.tensor({{255, 0}, {0, 255}}, {dtype = "u8"})
T.eq(gl.plot_image(check), "\27[0;38;5;231;48;5;16m▀\27[0;38;5;16;48;5;231m▀\27[0m", "[H,W] u8 checkerboard")
T.eq(gl.plot_image(gl.full({2, 2}, 7)), "\27[0;38;5;231;48;5;231m▀▀\27[0m", "f32 above 1 is clamped to white")
local grey = gl.tensor({{0, 0.5, 1}, {0, 0.5, 1}})
T.eq(gl.plot_image(grey, {color = false}), " +@", "color=false: the ASCII grey ramp")
T.eq(gl.plot_image(grey, {glyphs = "ascii"}), " +@", "glyphs=ascii: the ramp too")
local big = gl.rand(28, 28)
local bl = lines(gl.plot_image(big, {color = false}))
T.eq(#bl, 14, "28x28 at native size: 14 rows (2 pixels a cell)")
local fit = lines(gl.plot_image(big, {width = 20, color = false}))
T.eq(#fit, 10, "width=20: 28x28 shrinks to 20 columns and 10 rows")
local up = lines(gl.plot_image(check, {height = 4, color = false}))
T.eq(#up, 4, "height=4 enlarges the 2x2 image to 8x8 pixels")

-- Batches as grids (torchvision's make_grid layout).
local batch = gl.ones(10, 1, 4, 4)
local g = lines(gl.plot_image(batch, {color = false, nrow = 5}))
-- 2 rows of 5 images of 4x4 with 1 pixel of padding: 11 x 26 pixels, 6 rows of cells.
T.eq(#g, 6, "[N,C,H,W] 10 images, nrow=5: 11 pixel rows, 6 cells tall")
T.eq(cells(g[2]), 25, "26 pixels wide (the black right border trimmed)")
T.eq(g[2], " @@@@ @@@@ @@@@ @@@@ @@@@", "white images between black padding")
local g3 = lines(gl.plot_image(gl.ones(5, 4, 4), {color = false, padding = 0}))
T.eq(g3[1], string.rep("@", 20), "[N,H,W] batch without padding: 5 images in a row")
T.eq(#lines(gl.plot_image(gl.ones(5, 4, 4), {color = false, nrow = 1, padding = 0})), 10, "nrow=1: a column of images")
T.eq(gl.plot_image(gl.ones(3, 4, 4), {color = false}), "@@@@\n@@@@", "[3,H,W] is one RGB image, not a batch")
T.raises(function() gl.plot_image(gl.zeros(2, 4, 4, 4)) end, "plot_image: need [H,W]", "4 channels rejected")
T.raises(function() gl.plot_image(gl.zeros(2, 2), {size = 3}) end, "plot_image: unknown option 'size'", "unknown image options")
T.raises(function() gl.plot_image(gl.zeros({2, 2}, {dtype = "i64"})) end, "plot_image: the image must be u8 or f32 (got i64)", "i64 rejected")
T.raises(function() gl.plot_image(gl.zeros(2, 2), {color = false, glyphs = "blocks"}) end, "half-block glyphs need color=true", "blocks without colour")
T.raises(function() gl.plot_image(gl.zeros(2, 2), {nrow = 0}) end, "nrow must be a whole number", "nrow 0")

T.done()
