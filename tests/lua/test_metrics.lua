-- gl.metrics: runs and series, subscribers, the version counter, the memory
-- bound (thinning), and the Trainer logging under its name.
local T = require "tap"
local gl = require "genlab"
local M = gl.metrics

T.eq(require "genlab.metrics", M, "require 'genlab.metrics' is gl.metrics")

M.clear()
local v0 = M.version()
M.log("a", 1, { loss = 3.0, lr = 0.1 })
M.log("a", 2, { loss = 2.5 })
M.log("b", 1, { acc = 0.5 })
M.log("a", 3, { loss = 2.0, lr = 0.05, extra = 7 })
T.eq(M.version(), v0 + 4, "version grows by one per log")

local runs = M.runs()
T.eq(#runs, 2, "two runs")
T.eq(runs[1] .. "," .. runs[2], "a,b", "runs in creation order")
T.eq(table.concat(M.names("a"), ","), "loss,lr,extra", "names in first-logged order, a batch's new names sorted")
local xs, ys = M.series("a", "loss")
T.eq(table.concat(xs, ","), "1,2,3", "loss steps")
T.eq(table.concat(ys, ","), "3.0,2.5,2.0", "loss values")
xs, ys = M.series("a", "lr")
T.eq(table.concat(xs, ","), "1,3", "lr only where logged")
T.eq(ys[2], 0.05, "lr value at step 3")
xs, ys = M.series("a", "loss", 2)
T.eq(table.concat(xs, ","), "2,3", "series(run, name, last) gives the last points")
local s, v = M.last("a", "loss")
T.ok(s == 3 and v == 2.0, "last(run, name) is the newest point")
T.eq(M.last("a", "nope"), nil, "last of an unknown series is nil")
xs, ys = M.series("zzz", "loss")
T.ok(#xs == 0 and #ys == 0, "an unknown run gives empty arrays")
T.eq(#M.names("zzz"), 0, "an unknown run has no names")

xs = M.series("a", "loss")
xs[1] = 999
T.eq(M.series("a", "loss")[1], 1, "series returns copies: the store is not changed through them")

-- subscribers
local seen = {}
local id = M.subscribe(function(run, step, values) seen[#seen + 1] = run .. ":" .. step .. ":" .. values.loss end)
M.log("c", 5, { loss = 1.5 })
M.log("c", 6, { loss = 1.25 })
T.eq(table.concat(seen, " "), "c:5:1.5 c:6:1.25", "a subscriber sees every log with run, step, values")
T.ok(M.unsubscribe(id), "unsubscribe returns true for a known id")
M.log("c", 7, { loss = 1.0 })
T.eq(#seen, 2, "no calls after unsubscribe")
T.ok(not M.unsubscribe(id), "unsubscribing twice returns false")
local once
once = M.subscribe(function() M.unsubscribe(once) end)
local other = 0
local id2 = M.subscribe(function() other = other + 1 end)
M.log("c", 8, { loss = 0.9 })
M.log("c", 9, { loss = 0.8 })
T.eq(other, 2, "a subscriber removing itself does not make the next one miss a call")
M.unsubscribe(id2)

-- errors
T.raises(function() M.log("", 1, { x = 1 }) end, "run must be a non-empty string", "empty run name")
T.raises(function() M.log("a", "one", { x = 1 }) end, "step must be a number", "step must be a number")
T.raises(function() M.log("a", 1, { x = "high" }) end, "value 'x' must be a number", "values must be numbers")
T.raises(function() M.log("a", 1, 5) end, "values must be a table", "values must be a table")
T.raises(function() M.subscribe(5) end, "expected a function", "subscribe wants a function")
M.log("a", 4, { loss = 0 / 0 })
local _, nan = M.last("a", "loss")
T.ok(nan ~= nan, "NaN is stored (a gap in the chart)")

-- clear
local v1 = M.version()
M.clear("b")
T.ok(M.version() > v1, "clear bumps the version")
T.eq(table.concat(M.runs(), ","), "a,c", "clear(run) forgets that run only")
M.clear()
T.eq(#M.runs(), 0, "clear() forgets everything")

-- the memory bound: thinning keeps at most max_points, the newest exact
local saved = M.max_points
M.max_points = 100
for step = 1, 1000 do M.log("long", step, { y = step * 2 }) end
xs, ys = M.series("long", "y")
T.ok(#xs <= 100 and #xs >= 50, "a series stays within max_points (" .. #xs .. " points)")
T.eq(xs[#xs], 1000, "the newest point is kept")
T.eq(xs[1], 1, "the first point is kept")
local sorted, exact = true, true
for i = 2, #xs do
  if xs[i] <= xs[i - 1] then sorted = false end
  if ys[i] ~= xs[i] * 2 then exact = false end
end
T.ok(sorted and exact, "thinned points stay in order, each with its own value")
T.eq(xs[#xs] - xs[#xs - 1], 1, "the most recent points are at full resolution")
T.ok(xs[3] - xs[2] > 1, "older points are thinned")
M.max_points = saved
M.clear()

-- the Trainer logs under its name
local V = 5
local Tiny = gl.nn.Module {
  name = "TinyM",
  init = function(self)
    self.emb = gl.nn.Embedding { num = V, dim = 8 }
    self.head = gl.nn.Linear { in_features = 8, out_features = V }
  end,
  forward = function(self, x, y)
    local logits = self.head(self.emb(x))
    return logits, gl.cross_entropy(logits:reshape { -1, V }, y:reshape { -1 })
  end,
}
gl.seed(3)
local ids = {}
for i = 1, 600 do ids[i] = (i * 2) % V end
local data = gl.data.tokens(gl.tensor(ids, { dtype = "i64" }), { block = 6, batch = 4, vocab_size = V })
local run = gl.train { model = Tiny(), data = data, lr = 1e-2, quiet = true, name = "tiny", eval_every = 3,
                       eval_iters = 2 }
run:step(6)
T.eq(run.name, "tiny", "gl.train{name=} names the run")
xs, ys = M.series("tiny", "loss")
T.eq(table.concat(xs, ","), "1,2,3,4,5,6", "every step logs the loss")
T.near(ys[6], run.last.loss, 1e-12, "the logged loss is the step's loss")
local names = table.concat(M.names("tiny"), ",")
for _, n in ipairs { "loss", "lr", "tokens_per_s", "grad_norm", "train_loss", "val_loss" } do
  T.ok(names:find(n, 1, true), "the Trainer logs " .. n)
end
xs = M.series("tiny", "val_loss")
T.eq(table.concat(xs, ","), "3,6", "val_loss on the evaluated steps")
local _, lrs = M.series("tiny", "lr")
T.near(lrs[1], 1e-2, 1e-12, "lr is logged")
local unnamed = gl.train { model = Tiny(), data = data, quiet = true }
T.ok(unnamed.name:match("^run%d+$"), "a run without a name gets run<N> (" .. unnamed.name .. ")")
local unnamed2 = gl.train { model = Tiny(), data = data, quiet = true }
T.ok(unnamed2.name ~= unnamed.name, "each unnamed run gets its own name")
local again = gl.train { model = Tiny(), data = data, lr = 1e-2, quiet = true, name = "tiny" }
T.eq(#M.series("tiny", "loss"), 0, "a new run of the same name starts its curve again")
again:step(1)
T.eq(#M.series("tiny", "loss"), 1, "and logs into it")
T.raises(function() gl.train { model = Tiny(), data = data, name = 5 } end, "name must be a string",
         "name must be a string")

T.done()
