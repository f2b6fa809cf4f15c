-- gl.nn in Lua: modules written in Lua, and the containers Sequential and
-- ModuleList. They hold C modules (gl.nn.Linear{...}, ...) and Lua modules
-- alike as children and answer the same methods as the C modules, so one
-- optimizer, one checkpoint and one summary cover any mix of the two.
--
--   local MLP = gl.nn.Module{
--     name = "MLP",
--     init = function(self, cfg)
--       self.fc1 = gl.nn.Linear{in_features = cfg.d, out_features = cfg.h}  -- a module value registers a child
--       self.fc2 = gl.nn.Linear{in_features = cfg.h, out_features = 1}
--       self:register_parameter("scale", gl.ones{1})                    -- learnable, requires grad
--       self:register_buffer("offset", gl.zeros{1})                     -- state without gradient
--     end,
--     forward = function(self, x) return self.fc2(self.fc1(x):relu()) * self.scale + self.offset end,
--   }
--   local m = MLP{d = 4, h = 8}          -- runs init; m(x) runs forward (any arguments and results)
--
-- Methods of every module (C or Lua):
--   forward(...) and m(...), parameters(), buffers(), named_parameters(),
--   named_buffers(), named_children(), named_tensors()  (ordered lists of
--   {name, value} pairs; named_tensors lists what state_dict holds),
--   state_dict()  (a map name -> tensor, the tensors shared, not copied),
--   load_state_dict(sd [, {strict = true}])  (returns missing, unexpected names),
--   train([on]), eval(), training(), zero_grad(), requires_grad_([on]) (false
--   freezes every parameter), num_parameters([{trainable = true}]), describe()
--   and tostring(m) (the tree of layers with shapes, and the parameter count).
-- Names are PyTorch's dotted names; children of Sequential and ModuleList are
-- named "0", "1", ... as in PyTorch files, while m[i] and #m count from 1.
-- A shared tensor (weight tying) is listed once by named_parameters and
-- under every name by state_dict.
local gl = require "genlab.core"
local nn = gl.nn

local is_cmodule, tensor_key = nn._is_cmodule, nn._tensor_key

-- Per-instance bookkeeping, kept out of the instance's own fields.
local internals = setmetatable({}, { __mode = "k" })

local function is_module(x) return is_cmodule(x) or internals[x] ~= nil end
nn.is_module = is_module

local function ordered() return { names = {}, map = {} } end

local function shape_str(t) return "[" .. table.concat(t:shape(), ",") .. "]" end

-- The class name of a Lua module.
local function class_name(self) return internals[self].class.name end

-- ---- registration -----------------------------------------------------------------

local Base = {}

local function check_name(self, name, what)
  local st = internals[self]
  if type(name) ~= "string" or name == "" or name:find(".", 1, true) then
    error(("%s: %s name must be a non-empty string without '.' (got %s)")
      :format(class_name(self), what, tostring(name)), 3)
  end
  if st.params.map[name] or st.buffers.map[name] or st.children.map[name] or rawget(self, name) ~= nil then
    error(("%s: '%s' is already registered"):format(class_name(self), name), 3)
  end
end

local function add(reg, name, value)
  reg.names[#reg.names + 1] = name
  reg.map[name] = value
end

-- register_parameter(name, t): t (an f32 leaf) becomes learnable; returns t.
function Base:register_parameter(name, t)
  check_name(self, name, "parameter")
  if not gl.is_tensor(t) then error(("%s: parameter '%s' must be a tensor"):format(class_name(self), name), 2) end
  if not t:is_leaf() then
    error(("%s: parameter '%s' is the result of a recorded op; pass a leaf (detach it)")
      :format(class_name(self), name), 2)
  end
  t.requires_grad = true
  add(internals[self].params, name, t)
  return t
end

-- register_buffer(name, t): state saved in state_dict, without gradient; returns t.
function Base:register_buffer(name, t)
  check_name(self, name, "buffer")
  if not gl.is_tensor(t) then error(("%s: buffer '%s' must be a tensor"):format(class_name(self), name), 2) end
  add(internals[self].buffers, name, t)
  return t
end

-- register_module(name, m): m becomes a child; returns m. Assigning a module
-- to a field (self.fc = gl.nn.Linear{...}) does the same.
function Base:register_module(name, m)
  check_name(self, name, "child")
  if not is_module(m) then error(("%s: child '%s' must be a module"):format(class_name(self), name), 2) end
  add(internals[self].children, name, m)
  return m
end

-- ---- traversals -------------------------------------------------------------------

-- The (name, tensor) entries of one C module, in its order: what is
-- "params", "buffers" or "state".
local function centries(m, what)
  if what == "params" then return m:named_parameters() end
  if what == "buffers" then return m:named_buffers() end
  return m:named_tensors()
end

-- Appends {prefix .. name, tensor} of the module tree at self to out;
-- seen (when given) drops tensors already listed.
local function walk(self, prefix, what, out, seen)
  local function put(name, t)
    if seen then
      local k = tensor_key(t)
      if seen[k] then return end
      seen[k] = true
    end
    out[#out + 1] = { prefix .. name, t }
  end
  if is_cmodule(self) then
    for _, e in ipairs(centries(self, what)) do put(e[1], e[2]) end
    return out
  end
  local st = internals[self]
  if what ~= "buffers" then
    for _, name in ipairs(st.params.names) do put(name, st.params.map[name]) end
  end
  if what ~= "params" then
    for _, name in ipairs(st.buffers.names) do put(name, st.buffers.map[name]) end
  end
  for _, name in ipairs(st.children.names) do
    walk(st.children.map[name], prefix .. name .. ".", what, out, seen)
  end
  return out
end

local function values(pairs_list)
  local out = {}
  for i, e in ipairs(pairs_list) do out[i] = e[2] end
  return out
end

function Base:named_parameters() return walk(self, "", "params", {}, {}) end
function Base:parameters() return values(self:named_parameters()) end
function Base:named_buffers() return walk(self, "", "buffers", {}, {}) end
function Base:buffers() return values(self:named_buffers()) end

function Base:named_children()
  local st, out = internals[self], {}
  for i, name in ipairs(st.children.names) do out[i] = { name, st.children.map[name] } end
  return out
end

function Base:named_tensors() return walk(self, "", "state", {}) end

function Base:state_dict()
  local sd = {}
  for _, e in ipairs(self:named_tensors()) do sd[e[1]] = e[2] end
  return sd
end

function Base:load_state_dict(sd, opts)
  return nn._load_tensors(self:named_tensors(), sd, opts)
end

-- ---- modes and gradients -------------------------------------------------------------

function Base:train(on)
  if on == nil then on = true end
  local st = internals[self]
  st.training = on and true or false
  for _, name in ipairs(st.children.names) do st.children.map[name]:train(st.training) end
  return self
end

function Base:eval() return self:train(false) end
function Base:training() return internals[self].training end

function Base:zero_grad()
  for _, p in ipairs(self:parameters()) do p.grad = nil end
end

function Base:requires_grad_(on)
  if on == nil then on = true end
  for _, p in ipairs(self:parameters()) do p.requires_grad = on and true or false end
  return self
end

function Base:num_parameters(opts)
  opts = opts or {}
  for k in pairs(opts) do
    if k ~= "trainable" then error(("num_parameters: unknown option '%s'"):format(tostring(k)), 2) end
  end
  local n = 0
  for _, p in ipairs(self:parameters()) do
    if not opts.trainable or p.requires_grad then n = n + p:numel() end
  end
  return n
end

-- ---- running and printing -------------------------------------------------------------------

function Base:forward()
  error(("forward: %s has no forward"):format(class_name(self)), 2)
end

-- The tree of modules, formatted as the C modules format theirs.
function Base:describe()
  local st = internals[self]
  local parts = { class_name(self) }
  local extra = self.extra_repr and self:extra_repr()
  if extra or st.class.forward then parts[1] = parts[1] .. "(" .. (extra or "") .. ")" end
  for _, name in ipairs(st.params.names) do
    local t = st.params.map[name]
    parts[#parts + 1] = "  " .. name .. " " .. shape_str(t) .. (t.requires_grad and "" or " (frozen)")
  end
  for _, name in ipairs(st.buffers.names) do
    parts[#parts + 1] = "  " .. name .. " " .. shape_str(st.buffers.map[name]) .. " (buffer)"
  end
  local text = table.concat(parts)
  for _, name in ipairs(st.children.names) do
    local sub = st.children.map[name]:describe():gsub("\n", "\n  ")
    text = text .. "\n  (" .. name .. "): " .. sub
  end
  return text
end

local function summary(self)
  local all, trainable = self:num_parameters(), self:num_parameters { trainable = true }
  local count = all == trainable and tostring(all) or ("%d (%d trainable)"):format(all, trainable)
  return self:describe() .. ("\nparameters: %s, %.2f MiB"):format(count, all * 4 / (1024 * 1024)) -- f32
end

-- ---- classes ------------------------------------------------------------------------------------

-- Creates an instance of class and runs its init with the arguments.
local function instantiate(class, ...)
  local self = setmetatable({}, class.__instance)
  internals[self] = { class = class, training = true, params = ordered(), buffers = ordered(), children = ordered() }
  if class.init then class.init(self, ...) end
  return self
end

local function make_class(name)
  local class = { name = name }
  class.__instance = {
    __name = name,
    __index = function(self, k)
      local v = class[k]
      if v ~= nil and k ~= "name" and k ~= "__instance" then return v end
      v = Base[k]
      if v ~= nil then return v end
      local st = internals[self]
      if math.type(k) == "integer" then
        local n = st.children.names[k]
        return n and st.children.map[n]
      end
      return st.params.map[k] or st.buffers.map[k] or st.children.map[k]
    end,
    __newindex = function(self, k, v)
      local st = internals[self]
      if is_module(v) then
        if st.children.map[k] then st.children.map[k] = v else self:register_module(k, v) end
      elseif st.params.map[k] and gl.is_tensor(v) then
        v.requires_grad = true
        st.params.map[k] = v
      elseif st.buffers.map[k] and gl.is_tensor(v) then
        st.buffers.map[k] = v
      else
        rawset(self, k, v)
      end
    end,
    __call = function(self, ...) return self:forward(...) end,
    __tostring = summary,
    __len = function(self) return #internals[self].children.names end,
  }
  return setmetatable(class, { __call = instantiate })
end

-- gl.nn.Module{name = "MLP", init = function(self, ...) end, forward = function(self, ...) end, ...}
-- returns a class; calling it makes an instance. Every function given
-- becomes a method (extra_repr(self) may return the hyperparameters text
-- of the summary); methods can also be added later: function MLP:foo() end.
function nn.Module(spec)
  if type(spec) ~= "table" then error("Module: expected a table {name = ..., init = ..., forward = ...}", 2) end
  local name = spec.name or "Module"
  if type(name) ~= "string" then error("Module: name must be a string", 2) end
  local class = make_class(name)
  for k, v in pairs(spec) do
    if k ~= "name" then
      if type(v) ~= "function" then
        error(("Module: unknown option '%s' (give name, and init, forward and other methods as functions)")
          :format(tostring(k)), 2)
      end
      class[k] = v
    end
  end
  return class
end

-- ---- containers ----------------------------------------------------------------------------------

local function check_list(op, list)
  if type(list) ~= "table" or is_module(list) then error(op .. ": expected a list of modules {m1, m2, ...}", 4) end
  for k in pairs(list) do
    if math.type(k) ~= "integer" or k < 1 or k > #list then
      error(("%s: unknown option '%s' (give the modules as a list)"):format(op, tostring(k)), 4)
    end
  end
end

local function append(self, m)
  self:register_module(tostring(#self), m)
  return self
end

local function list_init(op)
  return function(self, list)
    check_list(op, list or {})
    for _, m in ipairs(list or {}) do
      if not is_module(m) then error(("%s: entry %d is not a module"):format(op, #self + 1), 3) end
      append(self, m)
    end
  end
end

-- Sequential{m1, m2, ...}: forward(x) is mN(...m2(m1(x))).
nn.Sequential = nn.Module {
  name = "Sequential",
  init = list_init("Sequential"),
  append = append,
  forward = function(self, x)
    for i = 1, #self do x = self[i](x) end
    return x
  end,
}

-- ModuleList{m1, m2, ...}: an indexable list of children, without forward.
nn.ModuleList = nn.Module {
  name = "ModuleList",
  init = list_init("ModuleList"),
  append = append,
}

return nn
