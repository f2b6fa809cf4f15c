-- diffusion: a class-conditional DDPM on Fashion-MNIST with a small UNet,
-- classifier-free guidance and DDIM sampling.
--
--   genlab run examples/diffusion.lua train [--minutes M] [--steps N] [--batch B] [--base C]
--                                           [--lr LR] [--ema DECAY] [--schedule NAME] [--out DIR]
--                                           [--seed N] [--data DIR] [--n N] [--guidance G] [--sample-steps S]
--                                           [--init CKPT]
--   genlab run examples/diffusion.lua sample CKPT [--out DIR] [--n N] [--steps S] [--guidance G]
--                                              [--eta E] [--ddpm] [--intermediates] [--seed N]
--   genlab run examples/diffusion.lua eval CKPT [--n N] [--steps S] [--guidance G] [--eta E] [--ddpm] [--seed N]
--
-- train: UNet{base 32, mults 1,2,2, attention at 7x7, 10 classes}, DDPM with
-- 1000 linear-schedule steps, epsilon prediction, labels dropped 10% of the
-- time (the null class teaches the unconditional model guidance needs),
-- AdamW lr 1e-3 (no weight decay) with 100 warmup steps, then a cosine decay
-- to lr/10 over the budget (--steps or --minutes, whichever runs out first),
-- gradients clipped at 1, an EMA of the weights for sampling (decay 0.999,
-- warmed up as min(decay, (1 + step) / (10 + step)): early averages forget
-- the random start, a short run averages over its last tenth or so). It
-- stops after --steps steps or --minutes minutes, whichever comes first,
-- logs JSON lines (step, loss, seconds) to DIR/log.jsonl, prints the loss
-- curve, saves the EMA weights with their config to DIR/unet.safetensors
-- (also every 500 steps along the way) and the samples below (--n,
-- --guidance and --sample-steps as sample's --n, --guidance and --steps;
-- --init CKPT starts from a saved model's weights, with a fresh optimizer).
-- sample: for each class a row of N samples (DDIM, 50 steps, eta 0 or --eta,
-- guidance 3; --ddpm for the 1000-step DDPM sampler) in DIR/samples.png,
-- one grid per class in DIR/class_<k>.png, and with --intermediates the
-- denoising path of one sample per class (10 snapshots a row) in
-- DIR/steps.png. Images are written with gl.image.save; pixels map [-1, 1]
-- to black..white.
-- eval: N samples per class (default 50, DDIM 50 steps, guidance 3) are
-- classified by gl.eval.classifier (trained on first use and cached); it
-- prints the share assigned to the class asked for, per class and overall
-- (the issue's bar: at least 80% at guidance 3).
local gl = require "genlab"
require "genlab.unet"
require "genlab.diffusion"
if not gl.ema then require "genlab.ema" end
if not (gl.data and gl.data.mnist) then require "genlab.data_image" end
if not gl.image then require "genlab.image" end

local CLASSES = { "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
  "Ankle boot" }

local USAGE = [==[
usage: genlab run diffusion.lua train [--minutes M] [--steps N] [--batch B] [--base C] [--lr LR]
                                      [--ema DECAY] [--schedule linear|scaled_linear|cosine] [--out DIR]
                                      [--seed N] [--data DIR] [--n N] [--guidance G] [--sample-steps S]
                                      [--init CKPT]
       genlab run diffusion.lua sample CKPT [--out DIR] [--n N] [--steps S] [--guidance G] [--eta E] [--ddpm]
                                       [--intermediates] [--seed N]
       genlab run diffusion.lua eval CKPT [--n N] [--steps S] [--guidance G] [--eta E] [--ddpm] [--seed N]]==]

local function die(msg)
  io.stderr:write("diffusion: ", msg, "\n", USAGE, "\n")
  os.exit(2)
end

-- --name value flags (and bare --name switches listed in switches).
local function parse(argv, allowed, switches)
  local flags, pos, i = {}, {}, 1
  while i <= #argv do
    local name = argv[i]:match("^%-%-(.+)$")
    if name then
      if switches[name] then
        flags[name] = true
      elseif allowed[name] then
        if argv[i + 1] == nil then die("--" .. name .. " needs a value") end
        flags[name] = argv[i + 1]
        i = i + 1
      else
        die("unknown flag --" .. name)
      end
    else
      pos[#pos + 1] = argv[i]
    end
    i = i + 1
  end
  return flags, pos
end

local function num(flags, name, default, integer)
  local v = flags[name]
  if v == nil then return default end
  local n = tonumber(v)
  if not n or (integer and math.type(n) ~= "integer") then die(("--%s wants a number, got '%s'"):format(name, v)) end
  return n
end

local function model_config(base)
  return { channels = 1, size = 28, base = base, mults = { 1, 2, 2 }, attn_res = { 7 }, num_classes = 10, groups = 8 }
end

-- ---- sampling -------------------------------------------------------------------------------

local function sample(model, sched, flags, dir)
  local n = num(flags, "n", 8, true)
  local steps = num(flags, "steps", sched.kind == "ddim" and 50 or sched.steps, true)
  local guidance = num(flags, "guidance", 3)
  local labels = {}
  for c = 0, 9 do for _ = 1, n do labels[#labels + 1] = c end end
  local t0 = gl.clock()
  local want = flags.intermediates and {} or nil
  if want then for k = 1, 10 do want[k] = math.max(1, math.floor(k * steps / 10 + 0.5)) end end
  local x, inter = sched:sample(model, #labels, { labels = labels, steps = steps, guidance = guidance,
    eta = flags.eta and num(flags, "eta", 0), seed = num(flags, "seed", 1, true), return_intermediates = want })
  local secs = gl.clock() - t0
  print(("sampled %d images (%d %s steps, guidance %g) in %.1f s"):format(#labels, steps, sched.kind:upper(),
    guidance, secs))
  gl.image.save(x, dir .. "/samples.png", { nrow = n, range = { -1, 1 } })
  for c = 0, 9 do
    gl.image.save(x:narrow(1, c * n + 1, n), ("%s/class_%d.png"):format(dir, c), { nrow = n, range = { -1, 1 } })
  end
  print(("wrote %s/samples.png (a row per class: %s) and class_0..9.png"):format(dir, table.concat(CLASSES, ", ")))
  if inter then
    -- rows: classes (first sample of each); columns: the 10 snapshots
    local rows = {}
    for c = 0, 9 do
      for _, e in ipairs(inter) do rows[#rows + 1] = e.x:narrow(1, c * n + 1, 1) end
    end
    gl.image.save(gl.cat(rows, 1), dir .. "/steps.png", { nrow = #inter, range = { -1, 1 } })
    print(("wrote %s/steps.png (denoising path, %d snapshots a row)"):format(dir, #inter))
  end
  print(gl.plot_image((x:narrow(1, 1, math.min(#labels, 3 * n)) + 1) * 0.5, { nrow = n, color = false }))
  return x
end

-- ---- training -----------------------------------------------------------------------------

local function save_checkpoint(path, model, cfg, info)
  local meta = { format = "genlab-unet", base = tostring(cfg.base), schedule = info.schedule,
    steps = tostring(info.steps), loss = ("%.5f"):format(info.loss) }
  gl.save(path, model:state_dict(), { metadata = meta })
end

local function load_checkpoint(path)
  local tensors, meta = gl.load(path)
  local base = meta and meta.base and tonumber(meta.base) or tensors["conv_in.weight"]:shape()[1]
  local cfg = model_config(math.tointeger(base))
  local model = gl.models.unet(cfg)
  model:load_state_dict(tensors)
  return model, meta and meta.schedule or "linear", cfg
end

-- The learning rate at a step: a linear warmup over the first 100 steps, then
-- a cosine from lr down to lr / 10 as the run spends its budget (progress in
-- [0, 1]: the larger of the steps and the minutes used). Decaying the rate
-- lets the last part of a short CPU run settle instead of hovering.
local function lr_at(lr, step, progress)
  local p = math.min(1, progress)
  return lr * math.min(1, step / 100) * (0.1 + 0.45 * (1 + math.cos(math.pi * p)))
end

local function train(argv)
  local flags = parse(argv, { minutes = 1, steps = 1, batch = 1, base = 1, lr = 1, ema = 1, schedule = 1, out = 1,
    seed = 1, data = 1, n = 1, guidance = 1, ["sample-steps"] = 1, init = 1 }, {})
  local minutes = num(flags, "minutes", 30)
  local max_steps = num(flags, "steps", 100000, true)
  local batch = num(flags, "batch", 64, true)
  local base = num(flags, "base", 32, true)
  local lr = num(flags, "lr", 1e-3)
  local decay = num(flags, "ema", 0.999)
  local dir = flags.out or "diffusion_out"
  os.execute("mkdir -p '" .. dir:gsub("'", "'\\''") .. "'")
  local seed = num(flags, "seed", 1, true)
  gl.seed(seed)

  local data = gl.data.mnist { dir = flags.data, split = "train", batch = batch, shuffle = true, seed = seed }
  local cfg, model = model_config(base), nil
  if flags.init then
    local sched
    model, sched, cfg = load_checkpoint(flags.init)
    flags.schedule = flags.schedule or sched
  else
    model = gl.models.unet(cfg)
  end
  local ddpm = gl.diffusion.ddpm { steps = 1000, schedule = flags.schedule or "linear", p_uncond = 0.1 }
  local opt = gl.optim.adamw(model:parameters(), { lr = lr, weight_decay = 0 })
  local ema = gl.ema(model, { decay = decay, copy = gl.models.unet(cfg) })
  print(tostring(model):match("parameters: .*$"))
  print(("training %d steps or %g minutes, batch %d, lr %g, EMA %g, %s schedule, %d threads")
    :format(max_steps, minutes, batch, lr, decay, ddpm.schedule, gl.threads()))

  local log = assert(io.open(dir .. "/log.jsonl", "w"))
  local losses, t0, step, avg = {}, gl.clock(), 0, nil
  while step < max_steps and gl.clock() - t0 < minutes * 60 do
    step = step + 1
    local x, y = data:next()
    opt:set_lr(lr_at(lr, step, math.max(step / max_steps, (gl.clock() - t0) / (60 * minutes))))
    ema.decay = math.min(decay, (1 + step) / (10 + step))
    local loss = ddpm:loss(model, x * 2 - 1, y)
    loss:backward()
    gl.optim.clip_grad_norm(model:parameters(), 1.0)
    opt:step()
    model:zero_grad()
    ema:update(model)
    local l = loss:item()
    losses[step] = l
    avg = avg and 0.98 * avg + 0.02 * l or l
    log:write(('{"step":%d,"loss":%.6f,"seconds":%.2f}\n'):format(step, l, gl.clock() - t0))
    if step % 50 == 0 or step == 1 then
      print(("step %d: loss %.4f (avg %.4f), %.2f s/step"):format(step, l, avg, (gl.clock() - t0) / step))
      log:flush()
    end
    if step % 500 == 0 then -- a long run that stops early keeps its progress (and can go on with --init)
      save_checkpoint(dir .. "/unet.safetensors", ema:module(), cfg, { schedule = ddpm.schedule, steps = step, loss = avg })
    end
  end
  log:close()
  local secs = gl.clock() - t0
  print(("trained %d steps in %.1f min (%.0f ms/step), final avg loss %.4f"):format(step, secs / 60,
    1000 * secs / step, avg))
  print(gl.plot(losses, { title = "training loss", width = 72, height = 14, log = true }))
  local smodel = ema:module()
  save_checkpoint(dir .. "/unet.safetensors", smodel, cfg, { schedule = ddpm.schedule, steps = step, loss = avg })
  print("wrote " .. dir .. "/unet.safetensors (EMA weights)")
  local ddim = gl.diffusion.ddim { steps = 1000, schedule = ddpm.schedule }
  sample(smodel, ddim, { n = flags.n, guidance = flags.guidance, steps = flags["sample-steps"], seed = flags.seed },
    dir)
  return 0
end

local function sample_cmd(argv)
  local flags, pos = parse(argv, { out = 1, n = 1, steps = 1, guidance = 1, seed = 1, eta = 1 }, { ddpm = true,
    intermediates = true })
  if #pos ~= 1 then die("sample needs one checkpoint") end
  local model, schedule = load_checkpoint(pos[1])
  local dir = flags.out or "diffusion_out"
  os.execute("mkdir -p '" .. dir:gsub("'", "'\\''") .. "'")
  local sched = (flags.ddpm and gl.diffusion.ddpm or gl.diffusion.ddim) { steps = 1000, schedule = schedule }
  sample(model, sched, flags, dir)
  return 0
end

-- eval: the share of guided samples that the genlab Fashion-MNIST classifier
-- (gl.eval.classifier, trained once and cached) assigns to the class asked for.
local function eval_cmd(argv)
  local flags, pos = parse(argv, { n = 1, steps = 1, guidance = 1, seed = 1, eta = 1 }, { ddpm = true })
  if #pos ~= 1 then die("eval needs one checkpoint") end
  if not gl.eval or not gl.eval.classifier then require "genlab.eval_image" end
  local model, schedule = load_checkpoint(pos[1])
  local sched = (flags.ddpm and gl.diffusion.ddpm or gl.diffusion.ddim) { steps = 1000, schedule = schedule }
  local n = num(flags, "n", 50, true)
  local steps = num(flags, "steps", sched.kind == "ddim" and 50 or sched.steps, true)
  local guidance = num(flags, "guidance", 3)
  local clf = gl.eval.classifier()
  print(("classifier test accuracy %.4f"):format(clf.accuracy))
  local labels = {}
  for c = 0, 9 do for _ = 1, n do labels[#labels + 1] = c end end
  local t0 = gl.clock()
  local x = sched:sample(model, #labels, { labels = labels, steps = steps, guidance = guidance,
    eta = flags.eta and num(flags, "eta", 0), seed = num(flags, "seed", 1, true) })
  local secs = gl.clock() - t0
  local pred = clf:predict((x + 1) * 0.5)
  local right, per = 0, {}
  for i = 1, #labels do
    local c = labels[i]
    per[c] = per[c] or 0
    if pred:getflat(i) == c then right, per[c] = right + 1, per[c] + 1 end
  end
  for c = 0, 9 do print(("  %-12s %5.1f%%"):format(CLASSES[c + 1], 100 * per[c] / n)) end
  print(("class agreement %.1f%% of %d samples (%d %s steps, eta %s, guidance %g, %.0f s)"):format(
    100 * right / #labels, #labels, steps, sched.kind:upper(), flags.eta or "0", guidance, secs))
  return 0
end

local argv = {}
for i = 1, #(arg or {}) do argv[i] = arg[i] end
local mode = table.remove(argv, 1)
if mode == "train" then
  os.exit(train(argv))
elseif mode == "sample" then
  os.exit(sample_cmd(argv))
elseif mode == "eval" then
  os.exit(eval_cmd(argv))
else
  die(mode and ("unknown mode '" .. mode .. "'") or "give a mode: train, sample or eval")
end
