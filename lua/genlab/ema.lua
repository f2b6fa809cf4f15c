-- gl.ema: an exponential moving average of a module's parameters, the
-- weights diffusion models and GANs sample with.
--
--   local ema = gl.ema(model, {decay = 0.999})     -- shadow = a copy of model's state
--   ... after each optimizer step: ema:update(model)
--   ema:copy_to(model)                              -- load the averages into model
--
-- update(m): for every parameter, shadow = decay * shadow + (1 - decay) * param;
-- buffers (running statistics, counters) are copied as they are. The shadow
-- tensors are f32 like the parameters and never require grad.
--
-- Options: decay (default 0.999, in [0, 1]) and copy: a second instance of the
-- same architecture (built by the same constructor). genlab cannot clone a
-- module, so without copy the averages live in tensors the EMA object owns and
-- ema:module() raises; with copy, the shadow tensors ARE copy's parameters and
-- buffers, kept current by update, and ema:module() returns copy, ready to
-- sample from (call copy:eval() as needed).
--
-- ema:state_dict() is a map name -> shadow tensor (shared, not copied), e.g.
-- to save the averages next to a checkpoint; ema.decay is the decay.
local gl = require "genlab"

local EMA = {}
EMA.__index = EMA

local OPTIONS = { decay = true, copy = true }

local function shape_str(t) return "[" .. table.concat(t:shape(), ",") .. "]" end

-- The parameter names of m as a set.
local function param_names(m)
  local set = {}
  for _, p in ipairs(m:named_parameters()) do set[p[1]] = true end
  return set
end

local function check_module(m, op)
  if not gl.nn.is_module(m) then error(("%s: expected a module, got %s"):format(op, type(m)), 3) end
end

-- m's state as name -> tensor, checked against the EMA's entries.
local function state_of(self, m, op)
  check_module(m, op)
  local sd = m:state_dict()
  for _, e in ipairs(self._entries) do
    local t = sd[e.name]
    if not t then error(("%s: the module has no '%s'"):format(op, e.name), 3) end
    if shape_str(t) ~= shape_str(e.shadow) then
      error(("%s: '%s' is %s in the module, %s in the EMA"):format(op, e.name, shape_str(t), shape_str(e.shadow)), 3)
    end
  end
  return sd
end

-- Runs fn(entry, tensor of sd) once per distinct shadow tensor (tied weights share one).
local function each_entry(self, sd, fn)
  local seen = {}
  gl.no_grad(function()
    for _, e in ipairs(self._entries) do
      local key = gl.nn._tensor_key(e.shadow)
      if not seen[key] then
        seen[key] = true
        fn(e, sd[e.name])
      end
    end
  end)
end

function EMA:update(m)
  local sd, d = state_of(self, m, "ema:update"), self.decay
  each_entry(self, sd, function(e, t)
    if e.average then e.shadow:copy_(e.shadow * d + t * (1 - d)) else e.shadow:copy_(t) end
  end)
  return self
end

function EMA:copy_to(m)
  local target = state_of(self, m, "ema:copy_to")
  local seen = {}
  gl.no_grad(function()
    for _, e in ipairs(self._entries) do
      local key = gl.nn._tensor_key(target[e.name])
      if not seen[key] then
        seen[key] = true
        target[e.name]:copy_(e.shadow)
      end
    end
  end)
  return m
end

function EMA:module()
  if not self._copy then
    error("ema:module(): genlab cannot clone a module; pass {copy = <a second instance of the model>} to gl.ema, " ..
      "or use ema:copy_to(model)", 2)
  end
  return self._copy
end

function EMA:state_dict()
  local sd = {}
  for _, e in ipairs(self._entries) do sd[e.name] = e.shadow end
  return sd
end

local function new(m, opts)
  check_module(m, "ema")
  opts = opts or {}
  if type(opts) ~= "table" then error(("ema: options must be a table, got %s"):format(type(opts)), 2) end
  for k in pairs(opts) do
    if not OPTIONS[k] then error(("ema: unknown option '%s'"):format(tostring(k)), 2) end
  end
  local decay = opts.decay == nil and 0.999 or opts.decay
  if type(decay) ~= "number" or not (decay >= 0 and decay <= 1) then
    error(("ema: decay must be a number in [0, 1], got %s"):format(tostring(decay)), 2)
  end
  local self = setmetatable({ decay = decay, _entries = {}, _copy = opts.copy }, EMA)
  local is_param = param_names(m)
  local shadows
  if opts.copy then
    check_module(opts.copy, "ema")
    shadows = opts.copy:state_dict()
  end
  local clones = {} -- tensor key -> shadow, so tied weights keep one shadow
  for _, nt in ipairs(m:named_tensors()) do
    local name, t = nt[1], nt[2]
    local shadow
    if shadows then
      shadow = shadows[name]
      if not shadow or shape_str(shadow) ~= shape_str(t) then
        error(("ema: copy has %s for '%s', the module %s"):format(shadow and shape_str(shadow) or "nothing", name,
          shape_str(t)), 2)
      end
    else
      local key = gl.nn._tensor_key(t)
      shadow = clones[key] or t:detach():clone()
      clones[key] = shadow
    end
    self._entries[#self._entries + 1] = { name = name, shadow = shadow, average = is_param[name] or false }
  end
  if shadows then -- copy starts from the module's current state
    each_entry(self, m:state_dict(), function(e, t) e.shadow:copy_(t) end)
  end
  return self
end

gl.ema = new
return new
