-- Files for the tests: a fresh temporary directory, and whole files written
-- and read as bytes.
local F = {}

-- A new empty directory: its path, and path(name) for a file in it.
function F.tmpdir()
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p '" .. dir .. "'"))
  return dir, function(name) return dir .. "/" .. name end
end

-- Removes a directory made by tmpdir, with what it holds.
function F.remove(dir) os.execute("rm -rf '" .. dir .. "'") end

-- Writes s to the file p; returns p.
function F.spit(p, s)
  local f = assert(io.open(p, "wb"))
  f:write(s)
  f:close()
  return p
end

-- The bytes of the file p.
function F.slurp(p)
  local f = assert(io.open(p, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

return F
