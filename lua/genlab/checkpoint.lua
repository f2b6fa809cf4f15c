-- Checkpoints: everything needed to resume training, in ONE safetensors file
-- written atomically, so that resuming gives the same losses as not stopping.
--
--   checkpoint.save(path, {model = m, optim = o, step = n, extra = {...}})
--   local step, extra = checkpoint.load(path, {model = m, optim = o})
--
-- Layout (any safetensors reader can open it):
--   tensors   model.<name>   model:state_dict()
--             optim.<name>   optim:state_dict().tensors
--             extra.<key>    tensor values of extra
--             rng            the generator state, gl.rng_state()
--   metadata  format = "genlab-checkpoint", version = "1", contents = "model,optim"
--             step           the step, an integer
--             optim.<name>   optim:state_dict().scalars
--             extra.<key>    string, number and boolean values of extra
-- Metadata values other than format, version and contents are JSON scalars
-- ("text" with quotes, 1, 0.5, true, Infinity), so Python's json.loads reads
-- them back and numbers round-trip exactly.
local gl = require "genlab.core"

local M = {}

local FORMAT, VERSION = "genlab-checkpoint", "1"

local function check_options(opts, allowed, op)
  if type(opts) ~= "table" then error(op .. ": expected an options table, got a " .. type(opts), 3) end
  for k in pairs(opts) do
    if not allowed[k] then error(("%s: unknown option '%s'"):format(op, tostring(k)), 3) end
  end
end

-- ---- JSON scalars -------------------------------------------------------------

local escapes = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }
local unescapes = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n", r = "\r", t = "\t" }

local function encode_number(v)
  if math.type(v) == "integer" then return string.format("%d", v) end
  if v ~= v then return "NaN" end
  if v == math.huge then return "Infinity" end
  if v == -math.huge then return "-Infinity" end
  local s
  for digits = 15, 17 do -- the shortest form that reads back exactly: 0.9, not 0.90000000000000002
    s = string.format("%." .. digits .. "g", v)
    if tonumber(s) == v then break end
  end
  -- keep floats floats: "1" would read back as the integer 1
  if not s:find("[.e]") then s = s .. ".0" end
  return s
end

local function encode(v)
  local ty = type(v)
  if ty == "number" then return encode_number(v) end
  if ty == "boolean" then return tostring(v) end
  return '"' .. v:gsub('[%c"\\]', function(c) return escapes[c] or string.format("\\u%04x", c:byte()) end) .. '"'
end

local specials = { ["true"] = true, ["false"] = false, NaN = 0 / 0, Infinity = math.huge, ["-Infinity"] = -math.huge }

-- nil when s is not a JSON scalar this module writes
local function decode(s)
  if specials[s] ~= nil then return specials[s] end
  if s:sub(1, 1) == '"' and s:sub(-1) == '"' and #s >= 2 then
    local bad = false
    local out = s:sub(2, -2):gsub("\\(.)(%x?%x?%x?%x?)", function(c, hex)
      if c == "u" and #hex == 4 then return utf8.char(tonumber(hex, 16)) end
      if not unescapes[c] then bad = true return "" end
      return unescapes[c] .. hex
    end)
    if not bad then return out end
    return nil
  end
  return tonumber(s)
end

-- ---- save -------------------------------------------------------------------------

local save_options = { model = true, optim = true, step = true, extra = true }

function M.save(path, opts)
  if type(path) ~= "string" then error("checkpoint.save: path must be a string, got a " .. type(path), 2) end
  check_options(opts, save_options, "checkpoint.save")
  local tensors, meta, contents = { rng = gl.rng_state() }, { format = FORMAT, version = VERSION }, {}
  if opts.model then
    for name, t in pairs(opts.model:state_dict()) do tensors["model." .. name] = t end
    contents[#contents + 1] = "model"
  end
  if opts.optim then
    local sd = opts.optim:state_dict()
    for name, t in pairs(sd.tensors or {}) do tensors["optim." .. name] = t end
    for name, v in pairs(sd.scalars or {}) do
      if type(v) ~= "number" and type(v) ~= "boolean" then
        error(("checkpoint.save: optimizer scalar '%s' is a %s"):format(name, type(v)), 2)
      end
      meta["optim." .. name] = encode(v)
    end
    contents[#contents + 1] = "optim"
  end
  if opts.step ~= nil then
    if math.type(opts.step) ~= "integer" then error("checkpoint.save: step must be an integer", 2) end
    meta.step = encode(opts.step)
  end
  for k, v in pairs(opts.extra or {}) do
    if type(k) ~= "string" then error("checkpoint.save: extra keys must be strings", 2) end
    if gl.is_tensor(v) then
      tensors["extra." .. k] = v
    elseif type(v) == "string" or type(v) == "number" or type(v) == "boolean" then
      meta["extra." .. k] = encode(v)
    else
      error(("checkpoint.save: extra '%s' is a %s (use a string, number, boolean or tensor)"):format(k, type(v)), 2)
    end
  end
  meta.contents = table.concat(contents, ",")
  gl.save(path, tensors, { metadata = meta })
end

-- ---- load -------------------------------------------------------------------------

local load_options = { model = true, optim = true }

-- The entries of tbl under "prefix.", with the prefix taken off.
local function under(tbl, prefix)
  local out = {}
  for k, v in pairs(tbl) do
    if k:sub(1, #prefix) == prefix then out[k:sub(#prefix + 1)] = v end
  end
  return out
end

local function decode_all(path, entries, prefix)
  local out = {}
  for k, s in pairs(entries) do
    local v = decode(s)
    if v == nil then
      error(("checkpoint.load: %s: metadata '%s%s' = %q is not a JSON scalar"):format(path, prefix, k, s), 3)
    end
    out[k] = v
  end
  return out
end

function M.load(path, opts)
  if type(path) ~= "string" then error("checkpoint.load: path must be a string, got a " .. type(path), 2) end
  opts = opts or {}
  check_options(opts, load_options, "checkpoint.load")
  local tensors, meta = gl.load(path)
  if meta.format ~= FORMAT then
    error(("checkpoint.load: %s is not a genlab checkpoint (metadata 'format' is %s, expected '%s')")
      :format(path, meta.format and ("'" .. meta.format .. "'") or "missing", FORMAT), 2)
  end
  if meta.version ~= VERSION then
    error(("checkpoint.load: %s has checkpoint version %s; this genlab reads version %s")
      :format(path, tostring(meta.version), VERSION), 2)
  end
  local contents = {}
  for part in (meta.contents or ""):gmatch("[^,]+") do contents[part] = true end
  local step = meta.step and decode(meta.step)
  if meta.step and math.type(step) ~= "integer" then
    error(("checkpoint.load: %s: metadata 'step' = %q is not an integer"):format(path, meta.step), 2)
  end
  local extra = decode_all(path, under(meta, "extra."), "extra.")
  for k, t in pairs(under(tensors, "extra.")) do extra[k] = t end
  local scalars = decode_all(path, under(meta, "optim."), "optim.")

  if opts.model then
    if not contents.model then error(("checkpoint.load: %s holds no model state"):format(path), 2) end
    opts.model:load_state_dict(under(tensors, "model."))
  end
  if opts.optim then
    if not contents.optim then error(("checkpoint.load: %s holds no optimizer state"):format(path), 2) end
    opts.optim:load_state_dict({ tensors = under(tensors, "optim."), scalars = scalars })
  end
  if tensors.rng then gl.set_rng_state(tensors.rng) end
  return step, extra
end

return M
