-- gl.eval for images: a Fashion-MNIST classifier trained by genlab itself,
-- the Fréchet distance between samples and real images on its penultimate
-- features, and the class coverage of a set of samples.
--
--   local clf = gl.eval.classifier()          -- trained once, then cached
--   print(clf.accuracy)                        -- its test accuracy (0..1)
--   local fd = gl.eval.image_fid(samples, real, {classifier = clf})
--   local cov, hist = gl.eval.class_coverage(samples, {classifier = clf})
--
-- Images are [N, 1, 28, 28] (or [N, 784]) with values in [0, 1] (map a GAN's
-- [-1, 1] output with (x + 1) / 2 first).
--
-- gl.eval.classifier{arch = "cnn" | "mlp", path = cache file, epochs = 8,
--   data = IDX folder, retrain = false, log = print} -> model
--   Loads path (default ~/.genlab/cache/fmnist_classifier[_mlp].safetensors)
--   when it exists and was trained for the same number of epochs; otherwise
--   trains on the 60k training images (Adam, batch 128, seed 1, the rate
--   falling from 1e-3 to 1e-4 along a cosine over the epochs), measures
--   accuracy on the 10k test images and saves the weights with the accuracy
--   and epochs in the file's metadata. The same model comes back on later
--   calls in one process.
--   cnn: conv1 Conv2d(1,16,3,p1), ReLU, MaxPool 2, conv2 Conv2d(16,32,3,p1),
--        ReLU, MaxPool 2, fc1 Linear(1568, 64), ReLU (the features), fc2 Linear(64, 10)
--   mlp: fc1 Linear(784, 256), ReLU, fc2 Linear(256, 64), ReLU (the features), fc3 Linear(64, 10)
--   Methods: forward(x) -> logits [N, 10], features(x) -> [N, 64],
--   predict(x) -> i64 [N] of 0-based class ids (no recording, batched);
--   fields accuracy (test accuracy, 0..1) and arch.
-- gl.eval.frechet_distance(fa, fb) -> number: |mu_a - mu_b|^2 + tr(S_a + S_b
--   - 2 (S_a S_b)^(1/2)) for feature rows fa [N, F], fb [M, F] (unbiased
--   covariances; the trace of the square root from the eigenvalues of
--   S_a^(1/2) S_b S_a^(1/2), by Jacobi rotations in double precision).
-- gl.eval.image_fid(samples, real [, {classifier = clf}]) -> number: the
--   Fréchet distance of the classifier's features of the two image sets.
-- gl.eval.class_coverage(samples [, {classifier = clf, min_count = 1}]) ->
--   coverage, hist: the fraction of the 10 classes predicted for at least
--   min_count samples, and hist[c + 1] = how many samples were assigned class c.
-- gl.eval.fmnist_classes: the 10 class names, hist's order.
local gl = require "genlab"
local options = require "genlab.options"
local check_opts = options.check

gl.eval = gl.eval or {}
local E = gl.eval

E.fmnist_classes = { "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
  "Ankle boot" }

local FEATURES = 64

local function shape_str(t) return "[" .. table.concat(t:shape(), ",") .. "]" end

local function linear(i, o) return gl.nn.Linear { in_features = i, out_features = o } end

-- ---- the classifier --------------------------------------------------------------------------

local Classifier = gl.nn.Module { name = "FashionClassifier" }

function Classifier:init(arch)
  rawset(self, "arch", arch)
  if arch == "cnn" then
    self.conv1 = gl.nn.Conv2d(1, 16, 3, { padding = 1 })
    self.conv2 = gl.nn.Conv2d(16, 32, 3, { padding = 1 })
    self.fc1 = linear(32 * 7 * 7, FEATURES)
    self.fc2 = linear(FEATURES, 10)
  else
    self.fc1 = linear(784, 256)
    self.fc2 = linear(256, FEATURES)
    self.fc3 = linear(FEATURES, 10)
  end
end

function Classifier:extra_repr() return "arch=" .. self.arch end

local function images(x, op)
  local s = x:shape()
  if not ((#s == 4 and s[2] == 1 and s[3] == 28 and s[4] == 28) or (#s == 2 and s[2] == 784)) then
    error(("%s: expected images [N,1,28,28] or [N,784] in [0,1] (got %s)"):format(op, shape_str(x)), 3)
  end
  return x
end

function Classifier:features(x)
  x = images(x, "classifier.features")
  local N = x:shape()[1]
  if self.arch == "cnn" then
    local h = gl.max_pool2d(self.conv1(x:reshape { N, 1, 28, 28 }):relu(), 2)
    h = gl.max_pool2d(self.conv2(h):relu(), 2)
    return self.fc1(h:reshape { N, 32 * 7 * 7 }):relu()
  end
  return self.fc2(self.fc1(x:reshape { N, 784 }):relu()):relu()
end

function Classifier:forward(x)
  local f = self:features(x)
  return self.arch == "cnn" and self.fc2(f) or self.fc3(f)
end

-- Runs fn(batch) over x in batches, without recording, in eval mode; returns the results concatenated.
local function batched(model, x, fn, batch)
  batch = batch or 500
  local was = model:training()
  model:eval()
  local parts = {}
  gl.no_grad(function()
    local N = x:shape()[1]
    for i = 1, N, batch do
      parts[#parts + 1] = fn(x:narrow(1, i, math.min(batch, N - i + 1)))
    end
  end)
  model:train(was)
  return #parts == 1 and parts[1] or gl.cat(parts, 1)
end

function Classifier:predict(x)
  images(x, "classifier.predict")
  return batched(self, x, function(b) return self:forward(b):argmax(2) end)
end

function Classifier:batch_features(x)
  images(x, "classifier.features")
  return batched(self, x, function(b) return self:features(b) end)
end

local function default_path(arch)
  local home = os.getenv("HOME") or "."
  return ("%s/.genlab/cache/fmnist_classifier%s.safetensors"):format(home, arch == "cnn" and "" or "_" .. arch)
end

local function accuracy(model, x, y)
  local pred = model:predict(x)
  return pred:eq(y):float():mean():item()
end

-- Trains a classifier from scratch; returns it with .accuracy set.
local function train_classifier(arch, epochs, dir, log)
  local train = gl.data.mnist { dir = dir, split = "train", batch = 128, shuffle = true, seed = 1 }
  local test = gl.data.mnist { dir = dir, split = "test", batch = 1000, shuffle = false }
  local saved = gl.rng_state()
  gl.seed(1)
  local model = Classifier(arch)
  local opt = gl.optim.adam(model:parameters(), { lr = 1e-3 })
  local t0 = gl.clock()
  local step, last = 0, epochs * train:num_batches()
  for epoch = 1, epochs do
    model:train()
    local total, n = 0, 0
    for x, y in train:epoch() do
      -- a cosine decay to a tenth: the last epochs settle instead of hovering
      opt:set_lr(1e-3 * (0.1 + 0.45 * (1 + math.cos(math.pi * step / last))))
      step = step + 1
      opt:zero_grad()
      local loss = gl.cross_entropy(model(x), y)
      loss:backward()
      opt:step()
      total, n = total + loss:item(), n + 1
      if n % 50 == 0 then gl.yield_ui() end
    end
    local acc = accuracy(model, test.images, test.labels)
    log(("classifier (%s) epoch %d: train loss %.4f, test accuracy %.2f%% (%.0f s)")
      :format(arch, epoch, total / n, 100 * acc, gl.clock() - t0))
    rawset(model, "accuracy", acc)
  end
  gl.set_rng_state(saved)
  return model
end

local cache = {}

local classifier_keys = { arch = true, path = true, epochs = true, data = true, retrain = true, log = true }

function E.classifier(opts)
  opts = check_opts("eval.classifier", opts, classifier_keys, 2)
  local arch = opts.arch or (gl.nn.Conv2d and gl.max_pool2d and "cnn" or "mlp")
  if arch ~= "cnn" and arch ~= "mlp" then
    error(("eval.classifier: arch must be \"cnn\" or \"mlp\" (got %s)"):format(tostring(arch)), 2)
  end
  if arch == "cnn" and not (gl.nn.Conv2d and gl.max_pool2d) then
    error("eval.classifier: arch=\"cnn\" needs gl.nn.Conv2d and gl.max_pool2d", 2)
  end
  local path = opts.path or default_path(arch)
  local epochs = options.positive_int("eval.classifier", "epochs", opts.epochs, 8)
  local key = path .. "#" .. epochs
  if cache[key] and not opts.retrain then return cache[key] end
  local log = opts.log == nil and print or opts.log or function() end
  local f = not opts.retrain and io.open(path, "rb")
  local tensors, meta
  if f then
    f:close()
    tensors, meta = gl.load(path)
    if meta.arch ~= arch then
      error(("eval.classifier: %s holds a %s classifier, not %s"):format(path, tostring(meta.arch), arch), 2)
    end
    if tonumber(meta.epochs) ~= epochs then tensors = nil end -- another recipe: train anew
  end
  local model
  if tensors then
    model = Classifier(arch)
    model:load_state_dict(tensors)
    rawset(model, "accuracy", tonumber(meta.accuracy))
    model:eval()
  else
    log(("eval.classifier: training a %s on Fashion-MNIST (%d epochs), cached as %s"):format(arch, epochs, path))
    model = train_classifier(arch, epochs, opts.data, log)
    local dir = path:match("^(.*)/[^/]*$")
    if dir then os.execute(("mkdir -p '%s'"):format(dir:gsub("'", "'\\''"))) end
    gl.save(path, model:state_dict(), { metadata = { arch = arch, accuracy = ("%.6f"):format(model.accuracy),
      epochs = tostring(epochs), data = "Fashion-MNIST", note = "made by gl.eval.classifier" } })
    model:eval()
  end
  cache[key] = model
  return model
end

-- ---- Fréchet distance ---------------------------------------------------------------------------

-- The mean (Lua array) and unbiased covariance (Lua matrix) of the rows of
-- f [N, F], in double precision: the square root's small eigenvalues are
-- sensitive, and an f32 product loses them.
local function moments(f, name)
  local s = f:shape()
  if #s ~= 2 or s[1] < 2 then
    error(("eval.frechet_distance: %s must be [N,F] with N >= 2 (got %s)"):format(name, shape_str(f)), 3)
  end
  local N, n = s[1], s[2]
  local rows = f:tolist()
  local mu, cov = {}, {}
  for j = 1, n do
    local sum = 0
    for i = 1, N do sum = sum + rows[i][j] end
    mu[j] = sum / N
    cov[j] = {}
    for k = 1, n do cov[j][k] = 0 end
  end
  for i = 1, N do
    local r = rows[i]
    for j = 1, n do r[j] = r[j] - mu[j] end
    for j = 1, n do
      local rj, cj = r[j], cov[j]
      for k = j, n do cj[k] = cj[k] + rj * r[k] end
    end
  end
  for j = 1, n do
    for k = j, n do
      cov[j][k] = cov[j][k] / (N - 1)
      cov[k][j] = cov[j][k]
    end
  end
  return mu, cov
end

-- Eigenvalues (and, when want_vectors, the eigenvectors as columns of V) of the
-- symmetric matrix A (a Lua matrix, overwritten), by cyclic Jacobi rotations.
local function jacobi(A, want_vectors)
  local n = #A
  local V
  if want_vectors then
    V = {}
    for i = 1, n do
      V[i] = {}
      for j = 1, n do V[i][j] = i == j and 1 or 0 end
    end
  end
  local abs, sqrt = math.abs, math.sqrt
  local total = 0
  for i = 1, n do for j = 1, n do total = total + A[i][j] * A[i][j] end end
  for _ = 1, 100 do
    local off = 0
    for p = 1, n - 1 do for q = p + 1, n do off = off + A[p][q] * A[p][q] end end
    if off <= 1e-30 * total or off == 0 then break end
    for p = 1, n - 1 do
      local Ap = A[p]
      for q = p + 1, n do
        local apq = Ap[q]
        if apq ~= 0 then
          local Aq = A[q]
          local theta = (Aq[q] - Ap[p]) / (2 * apq)
          local t = 1 / (abs(theta) + sqrt(theta * theta + 1))
          if theta < 0 then t = -t end
          local c = 1 / sqrt(t * t + 1)
          local s = t * c
          for k = 1, n do -- A <- A J (columns p, q)
            local Ak = A[k]
            local akp, akq = Ak[p], Ak[q]
            Ak[p], Ak[q] = c * akp - s * akq, s * akp + c * akq
          end
          for k = 1, n do -- A <- J^T A (rows p, q)
            local apk, aqk = Ap[k], Aq[k]
            Ap[k], Aq[k] = c * apk - s * aqk, s * apk + c * aqk
          end
          Ap[q], Aq[p] = 0, 0
          if V then
            for k = 1, n do
              local Vk = V[k]
              local vkp, vkq = Vk[p], Vk[q]
              Vk[p], Vk[q] = c * vkp - s * vkq, s * vkp + c * vkq
            end
          end
        end
      end
    end
  end
  local w = {}
  for i = 1, n do w[i] = A[i][i] end
  return w, V
end

local function copy(M)
  local out = {}
  for i, row in ipairs(M) do out[i] = table.move(row, 1, #row, 1, {}) end
  return out
end

function E.frechet_distance(fa, fb)
  if not gl.is_tensor(fa) or not gl.is_tensor(fb) then
    error("eval.frechet_distance: expected two feature tensors [N,F] and [M,F]", 2)
  end
  if fa:shape()[2] ~= fb:shape()[2] then
    error(("eval.frechet_distance: feature sizes differ (%s and %s)"):format(shape_str(fa), shape_str(fb)), 2)
  end
  local mu_a, sa = moments(fa:float(), "fa")
  local mu_b, sb = moments(fb:float(), "fb")
  local n = #mu_a
  local d2, tr = 0, 0
  for i = 1, n do
    d2 = d2 + (mu_a[i] - mu_b[i]) ^ 2
    tr = tr + sa[i][i] + sb[i][i]
  end
  -- R = S_a^(1/2) = V diag(sqrt w) V^T
  local w, V = jacobi(copy(sa), true)
  local R = {}
  for i = 1, n do
    R[i] = {}
    for j = 1, n do
      local sum = 0
      for k = 1, n do sum = sum + V[i][k] * math.sqrt(math.max(w[k], 0)) * V[j][k] end
      R[i][j] = sum
    end
  end
  -- M = R S_b R (symmetric): its eigenvalues are those of S_a S_b
  local RS = {}
  for i = 1, n do
    RS[i] = {}
    for j = 1, n do
      local sum = 0
      for k = 1, n do sum = sum + R[i][k] * sb[k][j] end
      RS[i][j] = sum
    end
  end
  local M = {}
  for i = 1, n do M[i] = {} end
  for i = 1, n do
    for j = i, n do
      local sum = 0
      for k = 1, n do sum = sum + RS[i][k] * R[k][j] end
      M[i][j], M[j][i] = sum, sum
    end
  end
  local lam = jacobi(M, false)
  local tr_sqrt = 0
  for i = 1, n do tr_sqrt = tr_sqrt + math.sqrt(math.max(lam[i], 0)) end
  return d2 + tr - 2 * tr_sqrt
end

local function classifier_of(opts, op)
  local clf = opts.classifier or E.classifier()
  if type(clf) ~= "table" or type(clf.batch_features) ~= "function" then
    error(op .. ": classifier must be a model from gl.eval.classifier", 3)
  end
  return clf
end

function E.image_fid(samples, real, opts)
  opts = check_opts("eval.image_fid", opts, { classifier = true }, 2)
  if not gl.is_tensor(samples) or not gl.is_tensor(real) then
    error("eval.image_fid: expected two image tensors [N,1,28,28] (samples, real)", 2)
  end
  local clf = classifier_of(opts, "eval.image_fid")
  return E.frechet_distance(clf:batch_features(samples), clf:batch_features(real))
end

function E.class_coverage(samples, opts)
  opts = check_opts("eval.class_coverage", opts, { classifier = true, min_count = true }, 2)
  if not gl.is_tensor(samples) then error("eval.class_coverage: expected images [N,1,28,28]", 2) end
  local min_count = opts.min_count or 1
  local pred = classifier_of(opts, "eval.class_coverage"):predict(samples)
  local hist = {}
  for c = 1, 10 do hist[c] = 0 end
  for i = 1, pred:numel() do
    local c = math.tointeger(pred:getflat(i)) + 1
    hist[c] = hist[c] + 1
  end
  local covered = 0
  for c = 1, 10 do
    if hist[c] >= min_count then covered = covered + 1 end
  end
  return covered / 10, hist
end

E._Classifier = Classifier -- tests build untrained ones

return E
