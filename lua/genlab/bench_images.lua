-- genlab bench images: training-step throughput of the image models of
-- issue 5 and the DDIM sampling time, next to PyTorch (bench/torch_images.py):
--
--   genlab bench images [--quick] [--threads N] [--json] [--[no-]reference] [--rounds N] [--only NAME]
--
-- Run by lua/genlab/bench.lua, which passes the helpers it shares with
-- train-gpt and generate (option parsing, child processes, output), and
-- works as they do: each measurement (one model, one side, one thread
-- count) runs in a fresh child process, `genlab bench images --child --only
-- NAME --threads N` for genlab and `torch_images.py --only NAME --threads N`
-- for PyTorch; per model and thread count, rounds alternate PyTorch and
-- genlab (A B A B) and keep the best of each side; the "best" row compares
-- each side at its best thread count.
--
-- The models, on fixed random 28x28 grey images (see torch_images.py for
-- the PyTorch side, built from the golden-fixture networks):
--   vae    gl.models.vae{kind = "mlp"} (784-400-20), batch 128: vae:loss
--          (BCE summed + KL), backward, Adam 1e-3
--   dcgan  gl.models.dcgan{size = 28, channels = 1} (nz 100, ngf = ndf = 64),
--          batch 64: one dcgan:step (a D update, then a G update on the same
--          fake batch, relativistic average least squares), Adam 1e-4
--   unet   gl.models.unet with examples/diffusion.lua's Fashion-MNIST config
--          (base 32, mults 1 2 2, attention at 7x7, 10 classes, 8 groups),
--          batch 64: ddpm:loss (linear schedule, labels dropped with p 0.1),
--          backward, Adam 1e-3
--   ddim   the same UNet: gl.diffusion.ddim{}:sample of 16 images, 50 steps,
--          guidance 3 (one batch of 32 per step), eval mode, no recording
-- images/s counts the batch's images per training step (the real images
-- for the DCGAN) and the sampled images for DDIM; ms is per step, or per
-- sampling of all 16 images.
--
-- --json prints {system, subcommand = "images", quick, rounds, threads =
-- {...}, genlab, reference = {torch, error}, goals = {{goal, met, value}}
-- (full sizes with 2 threads), results = {row...}}; a row is {model, label,
-- config, threads (a count, or "best"), genlab = side, pytorch = side, ratio
-- (images/s, genlab / PyTorch), error}, a side {images_per_s, ms,
-- peak_rss_mib, params, loss (first step), threads, cpu (CPU seconds per
-- wall second while measured)}.
local gl = require "genlab"

local M = {}

local UNET = { channels = 1, size = 28, base = 32, mults = { 1, 2, 2 }, attn_res = { 7 }, num_classes = 10, groups = 8 }
local UNET_TINY = { channels = 1, size = 28, base = 8, mults = { 1, 2, 2 }, attn_res = { 7 }, num_classes = 10,
                    groups = 2 }

-- Sizes and timings mirror MODELS in torch_images.py; tiny: the --quick size.
local MODELS = {
  { name = "vae", label = "MLP VAE train step", min_time = 2, min_reps = 10,
    cfg = { batch = 128 }, tiny = { batch = 16 } },
  { name = "dcgan", label = "DCGAN 28x28 train step (D + G)", min_time = 3, min_reps = 3,
    cfg = { batch = 64, ngf = 64, ndf = 64 }, tiny = { batch = 8, ngf = 8, ndf = 8 } },
  { name = "unet", label = "UNet DDPM train step", min_time = 3, min_reps = 3,
    cfg = { batch = 64, unet = UNET }, tiny = { batch = 4, unet = UNET_TINY } },
  { name = "ddim", label = "DDIM sampling", min_time = 0, min_reps = 1,
    cfg = { n = 16, steps = 50, unet = UNET }, tiny = { n = 4, steps = 5, unet = UNET_TINY } },
}

local function unet_config_str(u)
  return ("base %d, mults %s, attn %s, %d classes"):format(u.base, table.concat(u.mults, "-"),
                                                           table.concat(u.attn_res, ","), u.num_classes)
end

-- The child's measurements, one function per model, given its config, the
-- timing {min_time, min_reps} and bench.lua's time(): returns the model, its
-- config string, seconds per call, images per call, the first loss, the CPU.
local child = {}

function child.vae(c, t, timed)
  local model = gl.models.vae { kind = "mlp" }
  local opt = gl.optim.adam(model:parameters(), { lr = 1e-3 })
  local B = c.batch
  local x = gl.rand { B, 1, 28, 28 }
  local first
  local s, cpu = timed(function()
    opt:zero_grad()
    local loss = model:loss(x)
    loss:backward()
    opt:step()
    first = first or loss:item() / B
  end, t[1], t[2])
  return model, ("784-400-20 B%d, Adam"):format(B), s, B, first, cpu
end

function child.dcgan(c, t, timed)
  local model = gl.models.dcgan { size = 28, channels = 1, ngf = c.ngf, ndf = c.ndf }
  local real = gl.rand { c.batch, 1, 28, 28 } * 2 - 1
  local first
  local s, cpu = timed(function()
    local r = model:step(real)
    first = first or r.loss_d
  end, t[1], t[2])
  return model, ("ngf %d ndf %d B%d, RaLSGAN"):format(c.ngf, c.ndf, c.batch), s, c.batch, first, cpu
end

function child.unet(c, t, timed)
  local model = gl.models.unet(c.unet)
  model:train()
  local opt = gl.optim.adam(model:parameters(), { lr = 1e-3 })
  local ddpm = gl.diffusion.ddpm { steps = 1000, schedule = "linear", p_uncond = 0.1 }
  local B = c.batch
  local x0 = gl.rand { B, 1, 28, 28 } * 2 - 1
  local labels = gl.randint(0, 10, { B })
  local first
  local s, cpu = timed(function()
    opt:zero_grad()
    local loss = ddpm:loss(model, x0, labels)
    loss:backward()
    opt:step()
    first = first or loss:item()
  end, t[1], t[2])
  return model, ("%s B%d, Adam"):format(unet_config_str(c.unet), B), s, B, first, cpu
end

function child.ddim(c, t, timed)
  local model = gl.models.unet(c.unet)
  local ddim = gl.diffusion.ddim { steps = 1000, schedule = "linear" }
  local labels = {}
  for i = 1, c.n do labels[i] = (i - 1) % 10 end
  local function sample(steps)
    ddim:sample(model, c.n, { steps = steps, labels = labels, guidance = 3 }):free()
  end
  local s, cpu = timed(function() sample(c.steps) end, t[1], t[2], function() sample(2) end)
  return model, ("%s, %d images x %d steps, guidance 3"):format(unet_config_str(c.unet), c.n, c.steps), s, c.n,
         nil, cpu
end

-- A side of a result row, with the names the JSON output documents.
local function side(b)
  if not b or not b.value then return nil end
  return { images_per_s = b.value, ms = b.ms, peak_rss_mib = b.rss_mib, params = b.params, loss = b.loss,
           threads = b.threads, cpu = b.cpu }
end

local function print_images_table(h, info, rows)
  local num = h.num
  print(info.system)
  print(("genlab bench images: each model, side and thread count in a fresh process; best of %d round%s%s")
    :format(info.rounds, info.rounds > 1 and "s" or "", info.quick and "   (--quick: tiny sizes)" or ""))
  local ref = info.reference
  if ref and ref.torch then
    print(("reference: PyTorch %s, rounds alternate PyTorch and genlab; speed = genlab / PyTorch images/s (> 1: "
      .. "genlab faster)"):format(ref.torch))
  end
  if ref and ref.error then print("reference: " .. (ref.torch and "a run failed: " or "not run: ") .. ref.error) end
  print()
  local fmt = "%-6s %-9s | %9s %9s %8s %4s | %9s %9s %8s %4s | %6s"
  local hdr = fmt:format("model", "threads", "ms", "images/s", "RSS MiB", "CPU", "ms", "images/s", "RSS MiB", "CPU",
                         "speed")
  print(("%-16s | %-33s | %-33s |"):format("", "genlab", "PyTorch"))
  print(hdr)
  print((hdr:gsub("[^|]", "-")))
  for _, r in ipairs(rows) do
    local g, p = r.genlab or {}, r.pytorch or {}
    local th = tostring(r.threads)
    if r.threads == "best" then th = ("best %s/%s"):format(g.threads or "-", p.threads or "-") end
    print(fmt:format(r.model, th, num(g.ms), r.error and "failed" or num(g.images_per_s, "%.2f"),
                     num(g.peak_rss_mib, "%.0f"), num(g.cpu, "%.2f"), num(p.ms), num(p.images_per_s, "%.2f"),
                     num(p.peak_rss_mib, "%.0f"), num(p.cpu, "%.2f"), num(r.ratio, "%.2f")))
    if r.error then print("  error: " .. r.error) end
  end
  print()
  print("models (params; loss of the first step: per image for the VAE, D's for the DCGAN, the MSE for the UNet):")
  local seen = {}
  for _, r in ipairs(rows) do
    if not seen[r.model] then
      seen[r.model] = true
      local g, p = r.genlab or {}, r.pytorch or {}
      local s = ("  %-6s %s: %s; genlab %s"):format(r.model, r.label, r.config, num(g.params, "%d"))
      if g.loss then s = s .. (", %.4f"):format(g.loss) end
      if p.params then
        s = s .. ("; PyTorch %d"):format(p.params)
        if p.loss then s = s .. (", %.4f"):format(p.loss) end
        if g.params and p.params ~= g.params then s = s .. "  PARAMETER COUNTS DIFFER" end
      end
      print(s)
    end
  end
  if #info.threads > 1 then print("  best G/P: each side at its best thread count, genlab's G, PyTorch's P") end
  print("  ms: per training step, or per sampling of all images (ddim); images/s: the batch's images per step")
  print("  CPU: the process's CPU seconds per wall second while measured (1 = one busy core; under the thread"
    .. " count: the machine's load took the rest)")
  if info.goals then
    print()
    for _, g in ipairs(info.goals) do print(("goal: %-58s %s"):format(g.goal, g.met and "met" or "NOT met")) end
  end
end

-- h: the helpers of bench.lua (parse, best_of, measure_rounds, peak_rss,
-- json_value, num, usage, reference_script, time).
function M.main(args, h)
  local o, err = h.parse(args, "images")
  if not o or o.help then
    io.stderr:write(err and ("genlab bench images: " .. err .. "\n") or "", h.usage)
    os.exit(o and 0 or 2)
  end
  local models, names = {}, {}
  for _, m in ipairs(MODELS) do
    names[#names + 1] = m.name
    if not o.only or o.only == m.name then models[#models + 1] = m end
  end
  if #models == 0 then
    io.stderr:write(("genlab bench images: unknown model '%s' (%s)\n"):format(o.only, table.concat(names, ", ")))
    os.exit(2)
  end

  if o.child then -- one model, in this process
    if not o.only then
      io.stderr:write("genlab bench images: --child needs --only\n")
      os.exit(2)
    end
    if o.threads then gl.threads(o.threads) end
    gl.seed(1337)
    local m = models[1]
    local timing = o.quick and { 0.05, 1 } or { m.min_time, m.min_reps }
    local model, config, s, images, loss, cpu = child[m.name](o.quick and m.tiny or m.cfg, timing, h.time)
    local r = { name = m.name, config = config, ms = s * 1e3, value = images / s, params = model:num_parameters(),
                loss = loss, cpu = cpu, rss_mib = (h.peak_rss() or 0) / 2 ^ 20 }
    print(h.json_value { threads = gl.threads(), results = { r } })
    return
  end

  local script, why
  if o.reference or (o.reference == nil and not o.quick) then
    script, why = h.reference_script("GENLAB_BENCH_IMAGES_REFERENCE", "torch_images.py")
  end
  local best, threads, rounds, exe, torch
  best, threads, rounds, exe, torch, why = h.measure_rounds("images", models, o, script, why, function(m)
    return " --only " .. m.name
  end, "images/s", "%.2f")

  local rows, goals, failed = {}, {}, 0
  local function row(m, t, g, p)
    local r = { model = m.name, label = m.label, config = g.config or p.config, threads = t, genlab = side(g),
                pytorch = side(p), error = not g.value and g.error or nil }
    if r.genlab and r.pytorch then r.ratio = r.genlab.images_per_s / r.pytorch.images_per_s end
    rows[#rows + 1] = r
    return r
  end
  for _, m in ipairs(models) do
    local b = best[m.name]
    for _, t in ipairs(threads) do
      local r = row(m, t, b.genlab[t], b.pytorch[t])
      if r.error then failed = failed + 1 end
      if t == 2 and r.ratio and not o.quick then
        goals[#goals + 1] = { goal = m.name .. ": images/s on 2 threads at least PyTorch's", met = r.ratio >= 1,
                              value = r.ratio }
      end
    end
    if #threads > 1 then row(m, "best", h.best_of(b.genlab, threads), h.best_of(b.pytorch, threads)) end
  end

  local info = { system = gl.system_info(), subcommand = "images", quick = o.quick, rounds = rounds,
                 threads = threads, genlab = exe, goals = #goals > 0 and goals or nil, results = rows }
  if torch or why then info.reference = { torch = torch, error = why } end
  if why and o.json then io.stderr:write("genlab bench: reference: ", why, "\n") end
  if o.json then
    print(h.json_value(info))
  else
    print_images_table(h, info, rows)
  end
  if failed > 0 then
    io.stderr:write(("genlab bench images: %d of %d measurements failed\n"):format(failed, #models * #threads))
    os.exit(1, true)
  end
end

return M
