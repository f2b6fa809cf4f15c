-- genlab: the Lua face of the engine. The C half is genlab.core; this file
-- adds the pure-Lua layer on top and returns one table.
local gl = require "genlab.core"

return gl
