-- Minimal TAP for genlab's Lua tests. Each check prints "ok N - name";
-- T.done() prints the plan and exits nonzero when anything failed.
local T = {}
local count, failed = 0, 0

local function report(cond, name, diag)
  count = count + 1
  print(string.format("%s %d - %s", cond and "ok" or "not ok", count, name))
  if not cond then
    failed = failed + 1
    if diag then print("# " .. tostring(diag):gsub("\n", "\n# ")) end
  end
  return cond
end

function T.ok(cond, name, diag) return report(cond and true or false, name, diag) end

function T.eq(got, want, name)
  return report(got == want, name, string.format("got %s, want %s", tostring(got), tostring(want)))
end

-- |got - want| <= tol for numbers, or elementwise for two tensors.
function T.near(got, want, tol, name)
  tol = tol or 1e-6
  local err
  if type(got) == "number" then
    err = math.abs(got - want)
  else
    err = 0
    if got:numel() ~= want:numel() then
      return report(false, name, ("sizes differ: %d vs %d"):format(got:numel(), want:numel()))
    end
    for i = 1, got:numel() do
      local d = math.abs(got:getflat(i) - want:getflat(i))
      if d ~= d then d = math.huge end -- NaN never passes
      err = math.max(err, d)
    end
  end
  return report(err <= tol, name .. (" (max abs err %.3g)"):format(err), ("error %.3g exceeds %.3g"):format(err, tol))
end

-- T.near for two tensors that must also have the same shape; a missing
-- (nil) tensor is a failure, not an error.
function T.near_tensor(got, want, tol, name)
  if got == nil or want == nil then return report(false, name, "missing tensor (nil)") end
  local gs, ws = table.concat(got:shape(), ","), table.concat(want:shape(), ",")
  if gs ~= ws then return report(false, name, ("shape [%s], want [%s]"):format(gs, ws)) end
  return T.near(got, want, tol, name)
end

-- fn must raise an error whose message contains pattern (plain text).
function T.raises(fn, pattern, name)
  local okay, msg = pcall(fn)
  if okay then return report(false, name, "no error raised") end
  msg = tostring(msg)
  return report(msg:find(pattern, 1, true) ~= nil, name, "message was: " .. msg)
end

function T.done()
  print("1.." .. count)
  os.exit(failed == 0 and 0 or 1)
end

return T
