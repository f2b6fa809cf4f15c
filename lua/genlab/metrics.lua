-- gl.metrics: the store of training curves behind the Loss pane and the charts.
--
--   gl.metrics.log("char-gpt", 100, {loss = 2.31, lr = 1e-3})
--   local xs, ys = gl.metrics.series("char-gpt", "loss")     -- steps, values
--
-- A run is a name (a string); it holds named series of (step, value) points
-- in the order they were logged. The Trainer (gl.train) logs every step under
-- its `name`: loss, lr, tokens_per_s, grad_norm, and train_loss, val_loss on
-- the steps it evaluates.
--
--   log(run, step, values)  appends values[name] at step for each name;
--                           values are numbers (NaN allowed: a gap)
--   series(run, name [, last]) -> xs, ys   fresh Lua arrays (the last `last`
--                           points only when given); empty for an unknown run
--                           or name
--   last(run, name) -> step, value of the newest point (nil when none)
--   runs() -> run names in creation order;  names(run) -> metric names in
--                           the order first logged (a batch's new names sorted)
--   clear([run])            forgets one run, or all
--   subscribe(fn) -> id     fn(run, step, values) after every log (values is
--                           the table given to log: read it, do not keep it);
--                           an error in fn reaches the caller of log
--   unsubscribe(id)
--   version()               a counter that grows on every log and clear: a
--                           view redraws when it has changed
--
-- Bounded memory: a series keeps at most M.max_points points (100000; the
-- setting applies from the next log). When a series is full, its history is
-- thinned to every other point (the newest point is always kept), so the
-- older part of a long run is coarser and the recent part exact. Everything
-- here is plain Lua on the caller's thread: no blocking, no I/O.
local M = { max_points = 100000 }

local store = {}    -- run name -> { names = {...}, series = { name -> { xs = {}, ys = {} } } }
local order = {}    -- run names in creation order
local subscribers, next_id = {}, 1
local counter = 0

local function check_run(run, op)
  if type(run) ~= "string" or run == "" then
    error(("metrics.%s: run must be a non-empty string (got %s)"):format(op, tostring(run)), 3)
  end
end

local function bump()
  counter = counter + 1
end

-- Keeps points 1, 3, 5, ... and the newest.
local function thin(s)
  local xs, ys, n = s.xs, s.ys, #s.xs
  local j = 0
  for i = 1, n, 2 do
    j = j + 1
    xs[j], ys[j] = xs[i], ys[i]
  end
  if n % 2 == 0 then
    j = j + 1
    xs[j], ys[j] = xs[n], ys[n]
  end
  for i = n, j + 1, -1 do
    xs[i], ys[i] = nil, nil
  end
end

function M.log(run, step, values)
  check_run(run, "log")
  if type(step) ~= "number" then error(("metrics.log: step must be a number (got %s)"):format(type(step)), 2) end
  if type(values) ~= "table" then error(("metrics.log: values must be a table (got %s)"):format(type(values)), 2) end
  for k, v in pairs(values) do
    if type(k) ~= "string" then error(("metrics.log: metric names are strings (got %s)"):format(type(k)), 2) end
    if type(v) ~= "number" then
      error(("metrics.log: value '%s' must be a number (got %s)"):format(k, type(v)), 2)
    end
  end
  local r = store[run]
  if not r then
    r = { names = {}, series = {} }
    store[run] = r
    order[#order + 1] = run
  end
  local fresh = {}
  for k in pairs(values) do
    if not r.series[k] then fresh[#fresh + 1] = k end
  end
  table.sort(fresh)
  for _, k in ipairs(fresh) do
    r.names[#r.names + 1] = k
    r.series[k] = { xs = {}, ys = {} }
  end
  local cap = math.max(2, M.max_points)
  for k, v in pairs(values) do
    local s = r.series[k]
    local n = #s.xs + 1
    s.xs[n], s.ys[n] = step, v
    if n >= cap then thin(s) end
  end
  bump()
  -- a copy, so that a subscriber may unsubscribe while being called
  for _, sub in ipairs(table.move(subscribers, 1, #subscribers, 1, {})) do sub.fn(run, step, values) end
end

function M.series(run, name, last)
  local r = store[run]
  local s = r and r.series[name]
  local xs, ys = {}, {}
  if not s then return xs, ys end
  local n = #s.xs
  local first = (last and last < n) and (n - math.max(0, last) + 1) or 1
  for i = first, n do
    xs[#xs + 1], ys[#ys + 1] = s.xs[i], s.ys[i]
  end
  return xs, ys
end

function M.last(run, name)
  local r = store[run]
  local s = r and r.series[name]
  if not s or #s.xs == 0 then return nil end
  return s.xs[#s.xs], s.ys[#s.ys]
end

function M.runs()
  return table.move(order, 1, #order, 1, {})
end

function M.names(run)
  local r = store[run]
  return r and table.move(r.names, 1, #r.names, 1, {}) or {}
end

function M.clear(run)
  if run == nil then
    store, order = {}, {}
  else
    check_run(run, "clear")
    if store[run] then
      store[run] = nil
      for i, name in ipairs(order) do
        if name == run then table.remove(order, i) break end
      end
    end
  end
  bump()
end

function M.subscribe(fn)
  if type(fn) ~= "function" then error("metrics.subscribe: expected a function", 2) end
  local id = next_id
  next_id = next_id + 1
  subscribers[#subscribers + 1] = { id = id, fn = fn }
  return id
end

function M.unsubscribe(id)
  for i, sub in ipairs(subscribers) do
    if sub.id == id then
      table.remove(subscribers, i)
      return true
    end
  end
  return false
end

function M.version() return counter end

return M
