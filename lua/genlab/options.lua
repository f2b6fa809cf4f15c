-- Checks of option tables and arguments shared by the Lua files (the image
-- models, prompts, chains, LLM backends). Errors name the operation and are
-- raised `level` calls above the checker's caller.
local M = {}

-- opts itself ({} for nil); an unknown key is an error listing the known ones.
function M.check(op, opts, allowed, level)
  if opts == nil then return {} end
  if type(opts) ~= "table" then error(op .. ": options must be a table", level + 1) end
  for k in pairs(opts) do
    if not allowed[k] then
      local names = {}
      for n in pairs(allowed) do names[#names + 1] = n end
      table.sort(names)
      error(("%s: unknown option '%s' (known: %s)"):format(op, tostring(k), table.concat(names, ", ")), level + 1)
    end
  end
  return opts
end

-- An error for the first key of t not in allowed:
--   OP: unknown option 'KEY'
function M.keys(op, t, allowed, level)
  for k in pairs(t) do
    if not allowed[k] then error(("%s: unknown option '%s'"):format(op, tostring(k)), level + 1) end
  end
end

-- v, or default when v is nil; anything but a positive integer is an error
-- raised at the caller's caller.
function M.positive_int(op, name, v, default)
  if v == nil then return default end
  if math.type(v) ~= "integer" or v < 1 then
    error(("%s: %s must be a positive integer (got %s)"):format(op, name, tostring(v)), 3)
  end
  return v
end

return M
