-- safetensors save/load, byte-exact Hugging Face format, f16/bf16/f64
-- conversion, atomic writes, RNG state and checkpoints.
local T = require "tap"
local gl = require "genlab"
local checkpoint = require "genlab.checkpoint"

local F = require "files"
local spit, slurp = F.spit, F.slurp

local dir, path = F.tmpdir()
local function listing()
  local p = io.popen("ls -A '" .. dir .. "'")
  local s = p:read("a")
  p:close()
  return s
end

-- a and b have the same dtype, shape and elements (NaN equals NaN).
local function same(a, b)
  if a:dtype() ~= b:dtype() then return false, "dtype " .. a:dtype() .. " vs " .. b:dtype() end
  local sa, sb = table.concat(a:shape(), ","), table.concat(b:shape(), ",")
  if sa ~= sb then return false, ("shape [%s] vs [%s]"):format(sa, sb) end
  for i = 1, a:numel() do
    local x, y = a:getflat(i), b:getflat(i)
    if x ~= y and not (x ~= x and y ~= y) then return false, ("element %d: %s vs %s"):format(i, x, y) end
  end
  return true
end

-- A safetensors file as the spec describes it, byte by byte.
local function st_file(json, data)
  json = json .. string.rep(" ", (8 - #json % 8) % 8)
  return string.pack("<I8", #json) .. json .. (data or "")
end

-- ---- round trips: every dtype, 0-dim and empty shapes ------------------------------
gl.seed(11)
local originals = {
  f32_scalar = gl.tensor(-1.25),
  f32_vec = gl.randn{5},
  f32_4d = gl.randn{2, 3, 1, 2},
  f32_6d = gl.randn{1, 2, 1, 3, 1, 2},
  f32_empty = gl.zeros{0},
  f32_empty3 = gl.zeros{2, 0, 4},
  i32_vec = gl.tensor({-2147483648, -1, 0, 2147483647}, {dtype = "i32"}),
  i32_scalar = gl.tensor(-7, {dtype = "i32"}),
  i64_mat = gl.tensor({{-(2 ^ 53 - 1), 0}, {1, 2 ^ 53 - 1}}, {dtype = "i64"}),
  i64_empty = gl.zeros({0, 3}, {dtype = "i64"}),
  u8_vec = gl.tensor({0, 1, 127, 128, 255}, {dtype = "u8"}),
  u8_scalar = gl.tensor(200, {dtype = "u8"}),
}
gl.save(path("all.safetensors"), originals)
local loaded, meta, names = gl.load(path("all.safetensors"))
for name, t in pairs(originals) do
  local ok, why = same(loaded[name], t)
  T.ok(ok, "round trip keeps dtype, shape and values: " .. name, why)
end
T.eq(#names, 12, "load returns every name in file order")
T.eq(next(meta), nil, "no metadata gives an empty metadata table")
T.eq(table.concat(names, " ", 1, 3), "i64_empty i64_mat f32_4d",
  "tensors are laid out as Hugging Face does: 8-byte dtypes first, then by name")
T.eq(names[#names], "u8_vec", "1-byte dtypes come last")
T.eq(loaded.f32_vec.requires_grad, false, "loaded tensors do not require grad")
loaded.f32_vec:setflat(1, 99)
T.ok(originals.f32_vec:getflat(1) ~= 99, "loaded tensors own their storage")

local t3 = gl.randn{3}
t3:requires_grad_()
gl.save(path("grad.safetensors"), {w = t3})
T.ok(same(gl.load(path("grad.safetensors")).w, t3:detach()), "a tensor that requires grad saves its data")

-- ---- metadata -------------------------------------------------------------------------
local weird = 'quote " backslash \\ newline \n tab \t unicode \u{e9}\u{1f600}'
gl.save(path("meta.safetensors"), {w = gl.ones{2}},
  {metadata = {a = "x", weird = weird, n = 10, f = 1.5, empty = ""}})
local _, m = gl.load(path("meta.safetensors"))
T.eq(m.a, "x", "string metadata round-trips")
T.eq(m.weird, weird, "quotes, backslashes, control characters and UTF-8 round-trip")
T.eq(m.n, "10", "integer metadata is stored as its string")
T.eq(m.f, "1.5", "float metadata is stored as its string")
T.eq(m.empty, "", "empty strings round-trip")
gl.save(path("meta2.safetensors"), {w = gl.ones{2}}, {metadata = {f = 1.5, n = 10, empty = "", a = "x", weird = weird}})
T.eq(slurp(path("meta2.safetensors")), slurp(path("meta.safetensors")), "files are deterministic whatever the table order")

-- ---- byte-exact Hugging Face format ------------------------------------------------
local json = '{"__metadata__":{"k":"v"},'
  .. '"b":{"dtype":"I64","shape":[],"data_offsets":[0,8]},'
  .. '"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]},'
  .. '"d":{"dtype":"I32","shape":[0],"data_offsets":[16,16]},'
  .. '"c":{"dtype":"U8","shape":[3],"data_offsets":[16,19]}}'
local expect = st_file(json, string.pack("<i8", -7) .. string.pack("<ff", 1, -2) .. string.char(1, 2, 255))
gl.save(path("hf.safetensors"), {
  a = gl.tensor{1, -2},
  b = gl.tensor(-7, {dtype = "i64"}),
  c = gl.tensor({1, 2, 255}, {dtype = "u8"}),
  d = gl.zeros({0}, {dtype = "i32"}),
}, {metadata = {k = "v"}})
local got = slurp(path("hf.safetensors"))
T.eq(got, expect, "the file matches the spec byte by byte (length, compact JSON, space padding, data)")
T.eq((#got - #string.pack("<i8", -7) - 8 - 3) % 8, 0, "the data buffer starts 8-byte aligned")
T.eq(got:sub(8 + #json + 1, 8 + #json + 1), " ", "the header is padded with spaces")

spit(path("nometa.safetensors"), "")
gl.save(path("nometa.safetensors"), {x = gl.tensor{0.5}})
T.eq(slurp(path("nometa.safetensors")),
  st_file('{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', string.pack("<f", 0.5)),
  "without metadata there is no __metadata__ key")
gl.save(path("none.safetensors"), {})
T.eq(slurp(path("none.safetensors")), st_file("{}"), "an empty table saves an empty header")
T.eq(next((gl.load(path("none.safetensors")))), nil, "and loads as an empty table")

-- A file laid out differently from ours (pretty JSON, keys out of data order,
-- an unaligned tensor, a hole and metadata last) still loads.
spit(path("other.safetensors"), st_file(
  '{\n  "y": {"shape": [2], "dtype": "I32", "data_offsets": [5, 13]},\n'
    .. '  "x": {"dtype": "U8", "shape": [1, 3], "data_offsets": [0, 3]},\n'
    .. '  "__metadata__": {"format": "pt"}\n}\n',
  string.char(9, 8, 7, 0, 0) .. string.pack("<i4i4", -5, 6)))
local o, om, onames = gl.load(path("other.safetensors"))
T.ok(same(o.y, gl.tensor({-5, 6}, {dtype = "i32"})), "an unaligned I32 tensor loads")
T.ok(same(o.x, gl.tensor({{9, 8, 7}}, {dtype = "u8"})), "a U8 tensor loads")
T.eq(om.format, "pt", "metadata after the tensors loads")
T.eq(table.concat(onames, ","), "y,x", "names come back in header order")

-- ---- F16 / BF16 / F64 / BOOL conversion ---------------------------------------------
local inf = math.huge
local f16 = { -- bits, value
  {0x3C00, 1.0}, {0xC100, -2.5}, {0x7BFF, 65504}, {0x0001, 2.0 ^ -24}, {0x03FF, 1023 * 2.0 ^ -24},
  {0x0400, 2.0 ^ -14}, {0x8000, -0.0}, {0x7C00, inf}, {0xFC00, -inf}, {0x7E00, 0 / 0}, {0x3555, 0.333251953125},
}
local bf16 = {
  {0x3F80, 1.0}, {0xC020, -2.5}, {0x477F, 65280}, {0x7F7F, 3.3895313892515355e38}, {0x0001, 2.0 ^ -133},
  {0x0080, 2.0 ^ -126}, {0x8000, -0.0}, {0x7F80, inf}, {0xFF80, -inf}, {0x7FC0, 0 / 0},
}
local f64 = {1.0, -2.5, 65504, 0.1, 1e300, -1e300, 1e-300, inf, 0 / 0}
local function bits(list, fmt)
  local s = {}
  for _, e in ipairs(list) do s[#s + 1] = string.pack(fmt, e[1]) end
  return table.concat(s)
end
local f64data = {}
for _, v in ipairs(f64) do f64data[#f64data + 1] = string.pack("<d", v) end
local n16, nb16 = #f16 * 2, #bf16 * 2
spit(path("half.safetensors"), st_file(
  ('{"h":{"dtype":"F16","shape":[%d],"data_offsets":[0,%d]},'):format(#f16, n16)
    .. ('"b":{"dtype":"BF16","shape":[%d],"data_offsets":[%d,%d]},'):format(#bf16, n16, n16 + nb16)
    .. ('"d":{"dtype":"F64","shape":[%d],"data_offsets":[%d,%d]},'):format(#f64, n16 + nb16, n16 + nb16 + 8 * #f64)
    .. ('"m":{"dtype":"BOOL","shape":[3],"data_offsets":[%d,%d]}}'):format(n16 + nb16 + 8 * #f64, n16 + nb16 + 8 * #f64 + 3),
  bits(f16, "<I2") .. bits(bf16, "<I2") .. table.concat(f64data) .. string.char(1, 0, 1)))
local h = gl.load(path("half.safetensors"))
T.eq(h.h:dtype(), "f32", "F16 loads as f32")
T.eq(h.b:dtype(), "f32", "BF16 loads as f32")
T.eq(h.d:dtype(), "f32", "F64 loads as f32")
T.eq(h.m:dtype(), "u8", "BOOL loads as u8")
T.eq(table.concat(h.m:tolist(), ","), "1,0,1", "BOOL values")
local function check_values(t, list, kind)
  for i, e in ipairs(list) do
    local want, v = e[2], t:getflat(i)
    local ok = (want ~= want and v ~= v) or (v == want and 1 / v == 1 / want) -- 1/v tells -0 from 0
    T.ok(ok, ("%s 0x%04X converts to %s"):format(kind, e[1], tostring(want)), "got " .. tostring(v))
  end
end
check_values(h.h, f16, "F16")
check_values(h.b, bf16, "BF16")
for i, v in ipairs(f64) do
  local want = string.unpack("<f", string.pack("<f", v))
  if v == 1e300 then want = inf elseif v == -1e300 then want = -inf end
  local got16 = h.d:getflat(i)
  T.ok(got16 == want or (want ~= want and got16 ~= got16), ("F64 %s rounds to the f32 %s"):format(v, want),
    "got " .. tostring(got16))
end

-- ---- atomic writes ---------------------------------------------------------------------
local before = listing()
T.raises(function() gl.save(path("missing/x.safetensors"), {w = gl.ones{2}}) end,
  "No such file or directory (does the directory exist?)", "saving into a missing directory names the problem")
T.raises(function() gl.save(path("hf.safetensors/x"), {w = gl.ones{2}}) end,
  "Not a directory", "saving under a file is refused")
assert(os.execute("mkdir '" .. path("adir") .. "'"))
before = listing()
T.raises(function() gl.save(path("adir"), {w = gl.ones{2}}) end, "the target is a directory",
  "saving over a directory fails at the rename")
T.eq(listing(), before, "a failed rename leaves no temporary file behind")

local original = slurp(path("hf.safetensors"))
T.raises(function() gl.save(path("hf.safetensors"), {w = gl.ones{2}, bad = 3}) end, "entry 'bad' is a number",
  "a bad argument fails before the file is touched")
T.eq(slurp(path("hf.safetensors")), original, "so the original is intact")

-- A write that fails half way (file size limit; SIGXFSZ ignored so write()
-- returns EFBIG) in a child process leaves the original byte for byte.
local genlab = os.getenv("GENLAB")
if not genlab then
  local p = io.popen("readlink /proc/$PPID/exe")
  genlab = p:read("l")
  p:close()
end
spit(path("child.lua"), ([[
local gl = require "genlab"
local ok, err = pcall(gl.save, %q, {w = gl.zeros{100000}})
io.write(ok and "saved" or err)
]]):format(path("hf.safetensors")))
before = listing()
local p = io.popen(("trap '' XFSZ; ulimit -f 1; exec '%s' run '%s' 2>&1"):format(genlab, path("child.lua")))
local child = p:read("a")
p:close()
T.ok(child:find("write failed: File too large", 1, true), "a failing write reports the system error", child)
T.eq(slurp(path("hf.safetensors")), original, "a write failing half way leaves the original intact")
T.eq(listing(), before, "and removes its temporary file")

gl.save(path("hf.safetensors"), {w = gl.ones{3}})
T.ok(same(gl.load(path("hf.safetensors")).w, gl.ones{3}), "a successful save replaces the file")

-- ---- RNG state ----------------------------------------------------------------------------
gl.seed(5)
gl.randn{3} -- odd count: the spare normal is part of the state
local state = gl.rng_state()
T.eq(state:dtype(), "u8", "rng_state is a u8 tensor")
T.eq(state:numel(), 48, "holding the generator's 48 bytes")
local a = gl.randn{7}
local r = gl.rand{4}
gl.set_rng_state(state)
T.ok(same(gl.randn{7}, a), "set_rng_state replays normals, including the spare")
T.ok(same(gl.rand{4}, r), "and uniforms")
T.raises(function() gl.set_rng_state(gl.zeros{48}) end, "expected the u8 tensor of shape [48]",
  "set_rng_state checks the dtype")
T.raises(function() gl.set_rng_state(gl.zeros({47}, {dtype = "u8"})) end, "got u8 [47]", "set_rng_state checks the size")
T.raises(function() gl.set_rng_state(gl.zeros({48}, {dtype = "u8"})) end, "not hold a valid generator state",
  "an all-zero state is rejected")

-- ---- checkpoints -------------------------------------------------------------------------
-- Stand-ins for nn modules and optimizers with the state-dict contract.
local function fake_model(params)
  local m = {params = params}
  function m:state_dict()
    local sd = {}
    for k, v in pairs(self.params) do sd[k] = v end
    return sd
  end
  function m:load_state_dict(sd)
    for k in pairs(self.params) do
      if not sd[k] then error("load_state_dict: missing '" .. k .. "'") end
    end
    for k in pairs(sd) do
      if not self.params[k] then error("load_state_dict: unexpected '" .. k .. "'") end
    end
    for k, v in pairs(sd) do self.params[k]:copy_(v) end
  end
  return m
end
local function fake_optim(tensors, scalars)
  local o = {tensors = tensors, scalars = scalars}
  function o:state_dict() return {tensors = self.tensors, scalars = self.scalars} end
  function o:load_state_dict(sd) self.loaded = sd end
  return o
end

gl.seed(42)
local model = fake_model{["fc.weight"] = gl.randn{3, 2}, ["fc.bias"] = gl.randn{3}, ["emb.ids"] = gl.arange(4)}
local optim = fake_optim({["state.0.exp_avg"] = gl.randn{3, 2}, ["state.1.exp_avg"] = gl.randn{3}},
  {["state.0.step"] = 3, ["group.0.lr"] = 1e-3, ["group.0.beta1"] = 0.9, ["group.0.nesterov"] = 0,
   ["group.0.weight_decay"] = 1.0, ["group.0.eps"] = 1e-8})
local saved_params = {}
for k, v in pairs(model.params) do saved_params[k] = gl.zeros(v:shape(), {dtype = v:dtype()}):copy_(v) end
gl.randn{1} -- leave a spare normal pending in the generator
local extra = {note = 'best "so far"\n', best = math.huge, epoch = 3, ratio = 0.1, ok = true, ema = gl.tensor{1, 2}}
checkpoint.save(path("ckpt.safetensors"), {model = model, optim = optim, step = 1200, extra = extra})
local after_save = gl.randn{9}

-- disturb everything
for _, v in pairs(model.params) do v:zero_() end
gl.seed(999)
gl.randn{4}

local model2 = fake_model{["fc.weight"] = gl.zeros{3, 2}, ["fc.bias"] = gl.zeros{3}, ["emb.ids"] = gl.zeros({4}, {dtype = "i64"})}
local optim2 = fake_optim({}, {})
local step, ex = checkpoint.load(path("ckpt.safetensors"), {model = model2, optim = optim2})
T.eq(step, 1200, "checkpoint.load returns the step")
T.eq(math.type(step), "integer", "as an integer")
T.ok(same(gl.randn{9}, after_save), "after loading, randn gives the numbers drawn right after saving")
for k, v in pairs(saved_params) do
  local ok, why = same(model2.params[k], v)
  T.ok(ok, "model parameter restored: " .. k, why)
end
T.ok(same(optim2.loaded.tensors["state.0.exp_avg"], optim.tensors["state.0.exp_avg"]), "optimizer tensors restored")
T.eq(optim2.loaded.scalars["state.0.step"], 3, "optimizer integer scalars restored")
T.eq(math.type(optim2.loaded.scalars["state.0.step"]), "integer", "integer scalars stay integers")
T.eq(optim2.loaded.scalars["group.0.lr"], 1e-3, "optimizer float scalars restored exactly")
T.eq(math.type(optim2.loaded.scalars["group.0.weight_decay"]), "float", "float scalars stay floats, even 1.0")
T.eq(optim2.loaded.scalars["group.0.eps"], 1e-8, "small floats restored exactly")
local n_scalars = 0
for _ in pairs(optim2.loaded.scalars) do n_scalars = n_scalars + 1 end
T.eq(n_scalars, 6, "every optimizer scalar and nothing else")
T.eq(ex.note, extra.note, "extra strings round-trip")
T.eq(ex.best, math.huge, "extra infinity round-trips")
T.eq(ex.epoch, 3, "extra integers round-trip")
T.eq(ex.ratio, 0.1, "extra floats round-trip exactly")
T.eq(ex.ok, true, "extra booleans round-trip")
T.ok(gl.is_tensor(ex.ema) and same(ex.ema, extra.ema), "extra tensors round-trip")

local ct, cm = gl.load(path("ckpt.safetensors"))
T.eq(cm.format, "genlab-checkpoint", "metadata format")
T.eq(cm.version, "1", "metadata version")
T.eq(cm.step, "1200", "the step is readable metadata")
T.eq(cm["optim.group.0.lr"], "0.001", "optimizer scalars are JSON numbers")
T.eq(cm["extra.note"], '"best \\"so far\\"\\n"', "extra strings are JSON strings")
T.ok(ct["model.fc.weight"] and ct["optim.state.0.exp_avg"] and ct.rng, "tensors are named model.*, optim.* and rng")

T.raises(function() checkpoint.load(path("ckpt.safetensors"), {model = fake_model{["other"] = gl.zeros{1}}}) end,
  "missing 'other'", "a model that does not match fails in load_state_dict")
checkpoint.save(path("model-only.safetensors"), {model = model2})
T.raises(function() checkpoint.load(path("model-only.safetensors"), {optim = optim2}) end, "holds no optimizer state",
  "loading an optimizer from a model-only checkpoint is an error")
T.eq(checkpoint.load(path("model-only.safetensors"), {model = model2}), nil, "a checkpoint without a step gives nil")
T.raises(function() checkpoint.load(path("meta.safetensors"), {}) end, "is not a genlab checkpoint",
  "a plain safetensors file is not a checkpoint")
T.raises(function() checkpoint.save(path("x.safetensors"), {model = model, steps = 3}) end, "unknown option 'steps'",
  "checkpoint.save rejects unknown options")
T.raises(function() checkpoint.save(path("x.safetensors"), {step = 1.5}) end, "step must be an integer",
  "the step must be an integer")
T.raises(function() checkpoint.save(path("x.safetensors"), {extra = {f = print}}) end, "extra 'f' is a function",
  "extra values must be strings, numbers, booleans or tensors")

T.eq(cm["optim.group.0.beta1"], "0.9", "floats are written in their shortest exact form")

-- With the real modules and optimizers: resuming gives the same losses as not stopping.
if gl.nn and gl.nn.Linear and gl.optim and gl.optim.adam then
  gl.seed(1)
  local x, y = gl.randn{8, 4}, gl.randn{8, 3}
  local function make()
    local lin = gl.nn.Linear{in_features = 4, out_features = 3}
    return lin, gl.optim.adam(lin:parameters(), {lr = 1e-2})
  end
  local function train_step(lin, opt)
    opt:zero_grad()
    local loss = ((lin:forward(x) - y) ^ 2):mean()
    loss:backward()
    opt:step()
    return loss:item() + gl.randn{1}:item() -- the draw checks the RNG state too
  end
  local lin, opt = make()
  for _ = 1, 3 do train_step(lin, opt) end
  checkpoint.save(path("real.safetensors"), {model = lin, optim = opt, step = 3})
  local straight = {}
  for k = 1, 3 do straight[k] = train_step(lin, opt) end
  local lin2, opt2 = make()
  T.eq(checkpoint.load(path("real.safetensors"), {model = lin2, optim = opt2}), 3, "a real checkpoint gives its step")
  local resumed = {}
  for k = 1, 3 do resumed[k] = train_step(lin2, opt2) end
  for k = 1, 3 do
    T.eq(resumed[k], straight[k], ("nn.Linear + adam: resumed loss %d equals the straight run's exactly"):format(k))
  end
else
  print("# skip: gl.nn.Linear or gl.optim.adam is not available")
end

F.remove(dir)
T.done()
