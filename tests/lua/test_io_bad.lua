-- Malformed safetensors files and wrong arguments: each gives one clear
-- error line naming the file and the problem, never a crash. (Also run
-- under AddressSanitizer with leak detection.)
local T = require "tap"
local gl = require "genlab"

local F = require "files"
local spit, slurp = F.spit, F.slurp

local dir, path = F.tmpdir()

-- A file with this header text (padded to 8) and data.
local function st_file(json, data)
  json = json .. string.rep(" ", (8 - #json % 8) % 8)
  return string.pack("<I8", #json) .. json .. (data or "")
end

-- The load error for these bytes, or nil when the file loads.
local function load_error(bytes)
  local p = path("bad.safetensors")
  spit(p, bytes)
  local ok, err = pcall(gl.load, p)
  return (not ok) and tostring(err) or nil
end

-- bytes must fail to load with a message containing want, naming the file, on one line.
local function bad(bytes, want, name)
  local err = load_error(bytes)
  if not err then return T.ok(false, name, "the file loaded") end
  local p = path("bad.safetensors")
  T.ok(err:find(want, 1, true) and err:find("load: " .. p .. ": ", 1, true) and not err:find("\n"), name,
    "message was: " .. err)
end

local function tensor_json(name, dtype, shape, offsets)
  return ('"%s":{"dtype":%s,"shape":%s,"data_offsets":%s}'):format(name, dtype, shape, offsets)
end

-- ---- the length prefix ------------------------------------------------------------------
bad("", "the file is 0 bytes, too short for a safetensors header (empty or truncated file?)", "empty file")
bad("\1\0\0", "the file is 3 bytes", "a file shorter than the length prefix")
bad(string.pack("<I8", 100) .. "{}", "the header length 100 exceeds the 2 bytes after it (truncated file",
  "header length larger than the file")
bad(string.pack("<i8", math.mininteger) .. "{}      ", "the header length 9223372036854775808 exceeds",
  "header length 2^63")
bad(string.pack("<i8", -1) .. "{}", "the header length 18446744073709551615 exceeds", "header length 2^64-1")
bad(string.pack("<I8", 0), "the header length is 0", "header length 0")
bad(string.pack("<I8", 1) .. "{", "the header length is 1", "header length 1")

-- A header length within a (sparse) 100 MB file, but beyond the 100 MB cap.
do
  local p = path("big.safetensors")
  local f = assert(io.open(p, "wb"))
  f:write(string.pack("<I8", 100000001))
  f:seek("set", 100000100)
  f:write("x")
  f:close()
  local ok, err = pcall(gl.load, p)
  T.ok(not ok and err:find("the header length 100000001 is over the 100000000-byte limit", 1, true),
    "a header length over 100 MB is refused before allocating it", err)
  os.remove(p)
end

-- ---- the JSON header ---------------------------------------------------------------------
bad(st_file('{"a": '), "the header is not valid JSON (error at byte", "truncated JSON")
bad(st_file('{"a":{"dtype":"F32",}}'), "is not valid JSON", "a syntax error in the JSON")
bad(st_file('{"a" 1}'), "near '1}", "the message shows where the JSON breaks")
bad(st_file('[1,2]'), "the header is an array, expected a JSON object", "a JSON array")
bad(st_file('"text"'), "the header is a string, expected a JSON object", "a JSON string")
bad(st_file('42'), "the header is 42, expected a JSON object", "a JSON number")
bad(st_file('null'), "the header is null, expected a JSON object", "JSON null")
bad(st_file('{} x'), "the JSON header has trailing bytes after byte 2", "bytes after the JSON object")
bad(st_file(string.rep("[", 100000)), "is not valid JSON", "deeply nested JSON is refused, not recursed into")
bad(st_file('{"a":"F32"}'), "tensor 'a' is a string, expected an object with dtype, shape and data_offsets",
  "a tensor that is not an object")

-- ---- dtype ---------------------------------------------------------------------------------
local D = string.rep("\0", 64)
bad(st_file("{" .. tensor_json("w", '"F8_E4M3"', "[2]", "[0,2]") .. "}", D),
  "tensor 'w' has dtype 'F8_E4M3', which genlab cannot load (it reads F32, F16, BF16, F64, I64, I32, U8 and BOOL)",
  "an unsupported dtype is named")
bad(st_file("{" .. tensor_json("w", '"f32"', "[2]", "[0,8]") .. "}", D), "has dtype 'f32', which genlab cannot load",
  "dtypes are upper case")
bad(st_file("{" .. tensor_json("w", "5", "[2]", "[0,8]") .. "}", D), "tensor 'w' has dtype 5, expected a string",
  "a dtype that is a number")
bad(st_file('{"w":{"shape":[2],"data_offsets":[0,8]}}', D), "tensor 'w' has dtype missing", "a missing dtype")

-- ---- shape ---------------------------------------------------------------------------------
bad(st_file("{" .. tensor_json("w", '"F32"', "[-1]", "[0,8]") .. "}", D),
  "tensor 'w' has shape entry 1 = -1, expected a non-negative integer", "a negative shape entry")
bad(st_file("{" .. tensor_json("w", '"F32"', "[2,2.5]", "[0,8]") .. "}", D), "shape entry 2 = 2.5",
  "a fractional shape entry")
bad(st_file("{" .. tensor_json("w", '"F32"', '["2"]', "[0,8]") .. "}", D), "shape entry 1 = a string",
  "a string shape entry")
bad(st_file("{" .. tensor_json("w", '"F32"', "[1e300]", "[0,8]") .. "}", D), "shape entry 1 = 1.0000000000000001e+300",
  "a huge shape entry")
bad(st_file("{" .. tensor_json("w", '"F32"', '"2"', "[0,8]") .. "}", D), "has shape a string, expected an array",
  "a shape that is not an array")
bad(st_file('{"w":{"dtype":"F32","data_offsets":[0,8]}}', D), "has shape missing", "a missing shape")
bad(st_file("{" .. tensor_json("w", '"F32"', "[1,1,1,1,1,1,2]", "[0,8]") .. "}", D),
  "tensor 'w' has 7 dims; genlab tensors have at most 6", "too many dims")
bad(st_file("{" .. tensor_json("w", '"F32"', "[4294967296,4294967296]", "[0,8]") .. "}", D),
  "tensor 'w' has shape [4294967296,4294967296], too many elements", "an element count that overflows")
bad(st_file("{" .. tensor_json("w", '"I64"', "[2,4194304,4194304,4194304]", "[0,8]") .. "}", D),
  "too many elements", "a byte count that overflows")

-- ---- data_offsets ------------------------------------------------------------------------
local D200 = string.rep("\0", 200)
bad(st_file("{" .. tensor_json("h.0.w", '"F32"', "[100]", "[0,400]") .. "}", D200),
  "tensor 'h.0.w' data_offsets [0,400] exceed the data size 200 (truncated file?)", "offsets past the data")
bad(st_file("{" .. tensor_json("w", '"F32"', "[2,2]", "[0,12]") .. "}", D200),
  "tensor 'w' data_offsets [0,12] hold 12 bytes but F32 shape [2,2] needs 16", "numel * size differs from the offsets")
bad(st_file("{" .. tensor_json("w", '"F16"', "[3]", "[0,4]") .. "}", D200), "hold 4 bytes but F16 shape [3] needs 6",
  "the size check uses the file's dtype size")
bad(st_file("{" .. tensor_json("w", '"F32"', "[1]", "[8,4]") .. "}", D200),
  "data_offsets [8,4] that end before they begin", "offsets that run backwards")
bad(st_file("{" .. tensor_json("w", '"F32"', "[1]", "[4]") .. "}", D200),
  "data_offsets that are not two non-negative integers", "one offset")
bad(st_file("{" .. tensor_json("w", '"F32"', "[1]", "[0,4,8]") .. "}", D200), "not two non-negative integers",
  "three offsets")
bad(st_file("{" .. tensor_json("w", '"F32"', "[1]", '[0,"4"]') .. "}", D200), "not two non-negative integers",
  "a string offset")
bad(st_file("{" .. tensor_json("w", '"F32"', "[1]", "[-4,0]") .. "}", D200), "not two non-negative integers",
  "a negative offset")
bad(st_file('{"w":{"dtype":"F32","shape":[1]}}', D200), "not two non-negative integers", "missing offsets")
bad(st_file("{" .. tensor_json("a", '"F32"', "[2]", "[0,8]") .. "," .. tensor_json("b", '"F32"', "[2]", "[4,12]") .. "}",
  D200), "tensors 'a' [0,8] and 'b' [4,12] overlap in the data buffer", "overlapping tensors")
bad(st_file("{" .. tensor_json("a", '"F32"', "[4]", "[0,16]") .. "," .. tensor_json("b", '"U8"', "[1]", "[8,9]") .. ","
  .. tensor_json("c", '"U8"', "[1]", "[16,17]") .. "}", D200), "tensors 'a' [0,16] and 'b' [8,9] overlap",
  "a tensor inside another")
bad(st_file("{" .. tensor_json("a", '"F32"', "[2]", "[0,8]") .. "," .. tensor_json("a", '"F32"', "[2]", "[8,16]") .. "}",
  D200), "the header names tensor 'a' twice", "duplicate names")
T.eq(load_error(st_file("{" .. tensor_json("a", '"F32"', "[0]", "[4,4]") .. "," .. tensor_json("b", '"F32"', "[2]",
  "[0,8]") .. "}", D200)), nil, "an empty tensor may sit anywhere")

-- ---- metadata ------------------------------------------------------------------------------
bad(st_file('{"__metadata__":{"k":1}}'), "metadata entry 'k' is 1, expected a string", "a metadata value that is a number")
bad(st_file('{"__metadata__":["a"]}'), "'__metadata__' is an array, expected an object of strings", "metadata not an object")
bad(st_file('{"__metadata__":{},"__metadata__":{}}'), "the header has '__metadata__' twice", "two metadata objects")
T.eq(load_error(st_file('{"__metadata__":null}')), nil, "null metadata is allowed")
bad(st_file('{"bad\nname":5}'), "tensor 'bad?name' is 5", "control characters in names are shown as '?'")
bad(st_file('{"' .. string.rep("n", 300) .. '":5}'), "tensor '" .. string.rep("n", 92) .. "...' is 5",
  "long names are cut in messages")

-- ---- every truncation of a valid file ----------------------------------------------------
gl.seed(3)
local good = path("good.safetensors")
gl.save(good, {w = gl.randn{2, 3}, ids = gl.arange(3), flag = gl.ones({2}, {dtype = "u8"})},
  {metadata = {note = "small"}})
local bytes = slurp(good)
local tensors = gl.load(good)
T.ok(tensors.w and tensors.ids and tensors.flag, "the valid file loads")
local failed_cleanly, loaded = 0, {}
for n = 0, #bytes - 1 do
  local err = load_error(bytes:sub(1, n))
  if err and err:find("load: ", 1, true) and not err:find("\n") then
    failed_cleanly = failed_cleanly + 1
  elseif not err then
    loaded[#loaded + 1] = n
  end
end
T.eq(failed_cleanly, #bytes, ("all %d truncations of a valid file fail with a one-line error"):format(#bytes))
T.eq(#loaded, 0, "no truncation loads", "loaded at lengths " .. table.concat(loaded, ","))
T.ok(load_error(bytes:sub(1, #bytes - 1)):find("exceed the data size", 1, true), "a cut in the data is called a truncation")

-- ---- garbage -----------------------------------------------------------------------------
math.randomseed(12345)
local clean = 0
for k = 1, 200 do
  local len = math.random(0, 200)
  local b = {}
  for i = 1, len do b[i] = string.char(math.random(0, 255)) end
  local s = table.concat(b)
  if k % 2 == 0 and len >= 8 then -- a plausible length prefix, then garbage
    s = string.pack("<I8", math.random(0, len - 8)) .. s:sub(9)
  end
  local err = load_error(s)
  if err and err:find("load: ", 1, true) and not err:find("\n") then clean = clean + 1 end
end
T.eq(clean, 200, "random garbage always gives a one-line load error")
-- every single-byte corruption of the header gives an error or a valid load, never a crash
local hlen = string.unpack("<I8", bytes)
local outcomes = {err = 0, ok = 0}
for i = 9, 8 + hlen do
  local s = bytes:sub(1, i - 1) .. string.char((bytes:byte(i) + 1) % 256) .. bytes:sub(i + 1)
  local err = load_error(s)
  outcomes[err and "err" or "ok"] = outcomes[err and "err" or "ok"] + 1
end
T.eq(outcomes.err + outcomes.ok, hlen, "every corrupted header byte is handled")
T.ok(outcomes.err > hlen / 2, "most header corruptions are caught", outcomes.err .. " of " .. hlen)

-- ---- files that are not files ----------------------------------------------------------------
T.raises(function() gl.load(dir) end, "is a directory, expected a .safetensors file", "a directory")
T.raises(function() gl.load(path("nothing.safetensors")) end, "nothing.safetensors: No such file or directory",
  "a missing file")
T.raises(function() gl.load("") end, "load: empty path", "an empty path")

-- ---- wrong arguments ---------------------------------------------------------------------------
local t = gl.ones{2}
local out = path("out.safetensors")
T.raises(function() gl.load() end, "bad argument #1 to 'load' (string expected, got no value)", "load() without a path")
T.raises(function() gl.load({}) end, "string expected, got table", "load with a table")
T.raises(function() gl.save() end, "bad argument #1 to 'save' (string expected, got no value)", "save() without a path")
T.raises(function() gl.save(out) end, "bad argument #2 to 'save' (table expected, got no value)", "save without tensors")
T.raises(function() gl.save(out, t) end, "table expected, got tensor", "save with a bare tensor")
T.raises(function() gl.save(out, {t}) end, "save: the tensor table must map names to tensors, but has a number key",
  "save with a list of tensors")
T.raises(function() gl.save(out, {w = 5}) end, "save: entry 'w' is a number, expected a tensor", "save with a number")
T.raises(function() gl.save(out, {w = t}, 5) end, "bad argument #3 to 'save' (table expected, got number)",
  "options that are not a table")
T.raises(function() gl.save(out, {w = t}, {meta = {}}) end, "save: unknown option 'meta'", "an unknown option")
T.raises(function() gl.save(out, {w = t}, {metadata = 5}) end, "save: option 'metadata' must be a table of strings",
  "metadata that is not a table")
T.raises(function() gl.save(out, {w = t}, {metadata = {k = true}}) end,
  "save: metadata 'k' is a boolean, expected a string or a number", "a boolean metadata value")
T.raises(function() gl.save(out, {w = t}, {metadata = {"x"}}) end, "save: metadata keys must be strings, got a number",
  "a metadata list")
T.raises(function() gl.save(out, {__metadata__ = t}) end, "'__metadata__' is reserved", "the reserved name")
T.raises(function() gl.save(out, {["bad\xffname"] = t}) end, "tensor name 'bad?name' is not valid UTF-8",
  "names must be UTF-8, as Hugging Face readers require")
T.raises(function() gl.save(out, {w = t}, {metadata = {k = "\xc0\x80"}}) end, "metadata 'k' is not valid UTF-8",
  "overlong UTF-8 in metadata is refused")
T.raises(function() gl.save(out, {w = t}, {metadata = {k = "\u{d800}"}}) end, "metadata 'k' is not valid UTF-8",
  "surrogates in metadata are refused")
T.raises(function() gl.save("", {w = t}) end, "save: empty path", "an empty path")
local freed = gl.ones{2}
freed:free()
T.raises(function() gl.save(out, {w = freed}) end, "save: entry 'w' is a freed tensor", "a freed tensor")
T.ok(not io.open(out, "rb"), "no failed save created the file")
T.raises(function() gl.set_rng_state() end, "bad argument #1 to 'set_rng_state' (tensor expected", "set_rng_state()")

-- ---- found by fuzzing (libFuzzer + ASan/UBSan on the loaders) ----------------------------
-- Empty tensors of every read path load with their shape; gl_tensor_data used to offset the NULL
-- data pointer of their storage (UB that UBSan reports; the data itself was never touched).
do
  local p = path("empty.safetensors")
  spit(p, st_file("{" .. tensor_json("e", '"F16"', "[0,3]", "[0,0]") .. "," .. tensor_json("u", '"U8"', "[2,0]",
    "[0,0]") .. "}"))
  local st = gl.load(p)
  T.eq(table.concat(st.e:shape(), ","), "0,3", "an empty F16 tensor loads with its shape")
  T.eq(table.concat(st.u:shape(), ","), "2,0", "an empty U8 tensor loads with its shape")
  spit(p, string.pack(">BBBBI4I4", 0, 0, 8, 2, 0, 28))
  local e = gl._image.idx_read(p)
  T.eq(table.concat(e:shape(), ","), "0,28", "an empty IDX file loads with its shape")
end

-- PNG headers that claim huge images used to allocate up to 8 GiB before libpng found the data
-- missing (or, for a real 130 kB 1-bit bomb, build a 4 GiB tensor): both are refused up front.
do
  local function crc(s) -- CRC-32, as PNG chunks use it
    local c = 0xffffffff
    for i = 1, #s do
      c = c ~ s:byte(i)
      for _ = 1, 8 do c = (c >> 1) ~ (0xedb88320 & -(c & 1)) end
    end
    return c ~ 0xffffffff
  end
  local function chunk(kind, data)
    return string.pack(">I4", #data) .. kind .. data .. string.pack(">I4", crc(kind .. data))
  end
  -- a zlib stream of one stored block holding 100 zero bytes
  local z = "\x78\x01" .. string.pack("<BI2I2", 1, 100, 0xffff - 100) .. string.rep("\0", 100)
    .. string.pack(">I4", 100 << 16 | 1)
  local function png(w, h, depth, color)
    return "\x89PNG\r\n\x1a\n" .. chunk("IHDR", string.pack(">I4I4BBBBB", w, h, depth, color, 0, 0, 0))
      .. chunk("IDAT", z) .. chunk("IEND", "")
  end
  local p = path("bomb.png")
  spit(p, png(8192, 8192, 16, 6))
  T.raises(function() gl.image.load(p) end, "image.load: " .. p .. ": the header's 8192x8192 image needs "
    .. 8192 * (1 + 8192 * 8) .. " bytes of pixel data, more than a 168-byte PNG can hold (truncated or corrupt file)",
    "a PNG claiming far more pixels than its data can hold")
  spit(p, png(32768, 32768, 1, 0))
  T.raises(function() gl.image.load(p) end, "image.load: " .. p .. ": the 32768x32768 image has more than 178956970 "
    .. "pixels (refused as a decompression bomb, as PIL does)", "a PNG over PIL's decompression-bomb pixel limit")
  spit(p, png(9, 10, 8, 0)) -- 10 rows of a filter byte and 9 grey pixels: the 100 bytes
  T.eq(table.concat(gl.image.load(p):shape(), ","), "1,10,9", "a small PNG made the same way loads")

  -- A 43-byte PNG whose iTXt chunk claims 2 GiB: libpng allocated that much before finding the file
  -- short (a libFuzzer malloc-limit report; with overcommit the result was the same message, so only
  -- a malloc limit tells the two apart). Unused ancillary chunks are now skipped unread.
  spit(p, ("\x89PNG\r\n\x1a\n" .. chunk("IHDR", string.pack(">I4I4BBBBB", 1, 1, 8, 0, 0, 0, 0))):sub(1, 33)
    .. string.pack(">I4", 0x7a494100) .. "iTXt\xe7\x54")
  T.raises(function() gl.image.load(p) end, "image.load: " .. p .. ": truncated (the file ends inside the PNG data)",
    "a text chunk claiming 2 GiB in a 43-byte PNG")
end

F.remove(dir)
T.done()
