-- gl.optim in Lua: the optimizers and clip_grad_norm of the C layer (see
-- src/lua/l_optim.c) also take a module, C or Lua, for its parameters():
--   local opt = gl.optim.adamw(model, {lr = 3e-4})
--   gl.optim.clip_grad_norm(model, 1.0)
local gl = require "genlab.core"
require "genlab.nn" -- gl.nn.is_module
local optim = gl.optim

local function params_of(x)
  if gl.nn.is_module(x) then return x:parameters() end
  return x
end

for _, name in ipairs { "sgd", "adam", "adamw", "clip_grad_norm" } do
  local cfn = optim[name]
  optim[name] = function(params, ...) return cfn(params_of(params), ...) end
end

return optim
