-- A training loop written in plain Lua keeps flat memory without the user
-- ever calling collectgarbage(): the binding steps the collector in
-- proportion to tensor bytes (design.md, "C owns memory"). 3,000 AdamW steps
-- of a 64 -> 128 -> 10 MLP on fresh random batches of 32; memory after step
-- 1,000 (warm: optimizer state exists, the collector has cycled; it runs a
-- cycle per 16 MB of tensors at least, ~40 kB a step here) must match memory
-- after step 3,000 within 10%.
local T = require "tap"
local gl = require "genlab"

local STEPS, WARM = 3000, 1000

-- kB fields of /proc/self/status: VmRSS (resident now), VmHWM (peak resident).
local function status_kb(field)
  local f = io.open("/proc/self/status")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return tonumber(s:match(field .. ":%s*(%d+)"))
end

gl.seed(42)
local fc1 = gl.nn.Linear{in_features = 64, out_features = 128}
local fc2 = gl.nn.Linear{in_features = 128, out_features = 10}
local params = {}
for _, m in ipairs {fc1, fc2} do
  for _, p in ipairs(m:parameters()) do params[#params + 1] = p end
end
local opt = gl.optim.adamw(params, {lr = 1e-3, weight_decay = 0.1})

-- Live tensor bytes swing with the collector's phase (garbage awaiting the
-- sweep), so each mark takes the largest value over the 100 steps before it.
local function window_max(cur, v) return math.max(cur or 0, v) end
local live_warm, live_end, lua_warm, lua_end
local rss_warm, hwm_warm, first_loss, last_loss
local t0 = gl.clock()
for step = 1, STEPS do
  local x = gl.randn{32, 64}
  local y = gl.randint(0, 10, {32})
  opt:zero_grad()
  local loss = gl.cross_entropy(fc2(gl.relu(fc1(x))), y)
  loss:backward()
  opt:step()
  if step == 1 then first_loss = loss:item() end
  local live, lua_kb = gl.memory().live, collectgarbage("count")
  if step > WARM - 100 and step <= WARM then
    live_warm, lua_warm = window_max(live_warm, live), window_max(lua_warm, lua_kb)
  elseif step > STEPS - 100 then
    live_end, lua_end = window_max(live_end, live), window_max(lua_end, lua_kb)
  end
  if step == WARM then rss_warm, hwm_warm = status_kb("VmRSS"), status_kb("VmHWM") end
  if step == STEPS then last_loss = loss:item() end
end
local elapsed = gl.clock() - t0
local rss_end, hwm_end = status_kb("VmRSS"), status_kb("VmHWM")

print(("# %d steps in %.1f s; loss %.3f -> %.3f"):format(STEPS, elapsed, first_loss, last_loss))
print(("# step %d: VmRSS %d kB, VmHWM %d kB, live tensors %d B, Lua heap %.0f kB"):format(
  WARM, rss_warm or -1, hwm_warm or -1, live_warm, lua_warm))
print(("# step %d: VmRSS %d kB, VmHWM %d kB, live tensors %d B, Lua heap %.0f kB"):format(
  STEPS, rss_end or -1, hwm_end or -1, live_end, lua_end))

T.ok(last_loss == last_loss and last_loss < first_loss + 1, "training ran and the loss stayed finite",
  ("loss %s -> %s"):format(first_loss, last_loss))
-- Flat means within 10%, or within 4 MiB of RSS (rss = true): the collector's
-- phase and malloc's arenas move RSS by a megabyte or so under a loaded
-- machine, while a leak of one batch a step (8 kB) would add 16 MB.
local function within(a, b, name, rss)
  local ratio = a / b
  T.ok(ratio <= 1.10 or (rss and a - b <= 4096), ("%s at step %d is %.3f x step %d"):format(name, STEPS, ratio, WARM),
    ("%s grew from %.0f to %.0f"):format(name, b, a))
end
within(live_end, live_warm, "gl.memory().live")
within(lua_end, lua_warm, "Lua heap")
if os.getenv("GENLAB_ASAN") == "yes" then -- ASan's quarantine keeps freed blocks resident
  T.ok(true, "# SKIP RSS under AddressSanitizer")
  T.ok(true, "# SKIP peak RSS under AddressSanitizer")
elseif rss_warm then
  within(rss_end, rss_warm, "VmRSS", true)
  within(hwm_end, hwm_warm, "VmHWM", true)
else
  T.ok(true, "# SKIP no /proc/self/status: RSS not checked")
end
T.done()
