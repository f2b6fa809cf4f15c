-- gl.eval image metrics (lua/genlab/eval_image.lua): the Fréchet distance
-- against numpy in float64 (tests/fixtures/gen/fid.safetensors, made by
-- tests/fixtures/make_gen_fixtures.py), its invariants, class coverage and
-- the classifier's shapes on an untrained model, option errors, which cache
-- files it loads, and (only when ~/.genlab/cache holds the trained 8-epoch
-- classifier) its test accuracy.
-- Class ids in predictions are 0-based; hist[c + 1] counts class c.
local T = require "tap"
local gl = require "genlab"

local function shape_str(t) return "[" .. table.concat(t:shape(), ",") .. "]" end

-- Fréchet distance against numpy
local F, meta = gl.load("../fixtures/gen/fid.safetensors")
local t0 = gl.clock()
local fd = gl.eval.frechet_distance(F.a, F.b)
local want = tonumber(meta.fd_float64)
T.near(fd, want, 1e-4 * want, ("Fréchet distance matches numpy (%.6f vs %.6f)"):format(fd, want))
T.near(gl.eval.frechet_distance(F.b, F.a), want, 1e-4 * want, "it is symmetric")
T.near(gl.eval.frechet_distance(F.a, F.a), 0, 1e-6 * want, "FD(a, a) = 0")
local shift = gl.eval.frechet_distance(F.a, F.a + 0.5)
T.near(shift, 16 * 0.25, 1e-4, "a shift by 0.5 in 16 features gives 16 * 0.25")
T.ok(gl.clock() - t0 < 5, "four 16-dim distances take under 5 s")
do -- 64 features, as the classifier's: FD(a, 2a) = |mu_a|^2 + tr S_a exactly
  gl.seed(5)
  local a = gl.randn { 3000, 64 } * (gl.rand { 64 } + 0.5) + gl.randn { 64 } * 0.3
  local t1 = gl.clock()
  local d = gl.eval.frechet_distance(a, a * 2)
  local el = gl.clock() - t1
  local mu = a:mean(1)
  local want64 = mu:pow(2):sum():item() + ((a - mu):pow(2):sum(1) / 2999):sum():item()
  T.near(d, want64, 1e-4 * want64, ("64 features: FD(a, 2a) = |mu|^2 + tr S (%.5f vs %.5f)"):format(d, want64))
  T.ok(el < 10, ("64-dim distance of 3000 rows in %.2f s (< 10 s)"):format(el))
end

-- errors
T.raises(function() gl.eval.frechet_distance(F.a, gl.zeros { 5, 3 }) end, "feature sizes differ ([200,16] and [5,3])",
  "feature size mismatch")
T.raises(function() gl.eval.frechet_distance(gl.zeros { 1, 16 }, F.a) end, "fa must be [N,F] with N >= 2 (got [1,16])",
  "one row is not enough")
T.raises(function() gl.eval.classifier { arch = "vit" } end, 'arch must be "cnn" or "mlp"', "bad arch")
T.raises(function() gl.eval.classifier { epoch = 1 } end, "unknown option 'epoch'", "classifier rejects unknown options")

-- an untrained classifier: shapes, predictions and coverage bookkeeping
gl.seed(2)
local archs = { "mlp" }
if gl.nn.Conv2d and gl.max_pool2d then archs[2] = "cnn" end
for _, arch in ipairs(archs) do
  local clf = gl.eval._Classifier(arch)
  local x = gl.rand { 37, 1, 28, 28 }
  T.eq(shape_str(clf(x)), "[37,10]", arch .. ": logits [N,10]")
  T.eq(shape_str(clf:batch_features(x)), "[37,64]", arch .. ": features [N,64]")
  local pred = clf:predict(x)
  T.eq(shape_str(pred) .. pred:dtype(), "[37]i64", arch .. ": predict -> i64 [N]")
  T.ok(pred:float():min():item() >= 0 and pred:float():max():item() <= 9, arch .. ": predictions are 0-based class ids")
  local cov, hist = gl.eval.class_coverage(x, { classifier = clf })
  local total, nonzero = 0, 0
  for c = 1, 10 do
    total = total + hist[c]
    if hist[c] > 0 then nonzero = nonzero + 1 end
  end
  T.eq(total, 37, arch .. ": the histogram counts every sample")
  T.eq(cov, nonzero / 10, arch .. ": coverage = classes seen / 10")
  T.eq(hist[math.tointeger(pred:getflat(1)) + 1] > 0, true, arch .. ": hist[c + 1] counts class c")
  local cov2 = gl.eval.class_coverage(x, { classifier = clf, min_count = 38 })
  T.eq(cov2, 0, arch .. ": min_count above N covers nothing")
  T.near(gl.eval.image_fid(x, x, { classifier = clf }), 0, 1e-6, arch .. ": image_fid(x, x) = 0")
  T.raises(function() clf:predict(gl.rand { 2, 3, 28, 28 }) end,
    "classifier.predict: expected images [N,1,28,28] or [N,784] in [0,1] (got [2,3,28,28])", arch .. ": bad image shape")
end
T.raises(function() gl.eval.class_coverage(gl.rand { 2, 784 }, { classifier = {} }) end,
  "classifier must be a model from gl.eval.classifier", "coverage checks the classifier")

-- the cache: a file made for the same epochs is loaded as it is; one made
-- for other epochs is retrained (here from a folder that does not exist, so
-- the attempt shows as the loader's error instead of minutes of training)
do
  local path = os.tmpname()
  gl.save(path, gl.eval._Classifier("mlp"):state_dict(), { metadata = { arch = "mlp", accuracy = "0.25", epochs = "3" } })
  local clf = gl.eval.classifier { arch = "mlp", path = path, epochs = 3, data = "/nonexistent", log = false }
  T.eq(clf.accuracy, 0.25, "a cached classifier of the same epochs is loaded, accuracy from its metadata")
  T.raises(function() gl.eval.classifier { arch = "mlp", path = path, epochs = 4, data = "/nonexistent", log = false } end,
    "/nonexistent/train-images", "a cached classifier of other epochs is trained anew")
  T.raises(function() gl.eval.classifier { arch = "mlp", path = path, epochs = 0 } end,
    "epochs must be a positive integer", "epochs is checked")
  os.remove(path)
end

-- the trained classifier, only when cached with the default 8 epochs
local cached = (os.getenv("HOME") or ".") .. "/.genlab/cache/fmnist_classifier.safetensors"
local f = io.open(cached, "rb")
if f then
  f:close()
  local _, cmeta = gl.load(cached)
  if cmeta.epochs ~= "8" then f = nil end
end
if f and gl.nn.Conv2d and gl.data and gl.data.mnist then
  local clf = gl.eval.classifier { log = false }
  T.ok(clf.accuracy > 0.89, ("cached classifier: stored test accuracy %.2f%% > 89%%"):format(100 * clf.accuracy))
  local test = gl.data.mnist { split = "test", batch = 1000, shuffle = false }
  local x, y = test.images:narrow(1, 1, 1000), test.labels:narrow(1, 1, 1000)
  local acc = clf:predict(x):eq(y):float():mean():item()
  T.ok(acc > 0.88, ("cached classifier: %.1f%% right on 1000 test images"):format(100 * acc))
  local cov = gl.eval.class_coverage(x, { classifier = clf })
  T.eq(cov, 1, "real test images cover all 10 classes")
else
  T.ok(true, "# SKIP no cached 8-epoch classifier (" .. cached .. ") or no conv/mnist")
end

T.done()
