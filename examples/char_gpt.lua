-- char_gpt: a character-level GPT trained on tiny Shakespeare, as in
-- minGPT's char demo and nanoGPT's shakespeare_char.
--
--   genlab run examples/char_gpt.lua train [--data PATH] [--out CKPT] [--max-steps N] [--small]
--                                          [--resume CKPT] [--log PATH] [--eval-every N]
--   genlab run examples/char_gpt.lua predict CKPT SEED-TEXT [--max-new N] [--temperature T] [--top-k K]
--                                            [--seed N]
--
-- train: 8 layers, 8 heads, 512 wide, block 128, batch 64, AdamW lr 3e-4
-- (weight decay 0.1 on weights, betas 0.9/0.95), clip 0.5, dropout 0.1.
-- --small is nanoGPT's CPU configuration: 4 layers, 4 heads, 128 wide,
-- block 64, batch 12, lr 1e-3 with 100 warmup steps and cosine decay to 1e-4
-- over 2000 steps, betas 0.9/0.99, clip 1, no dropout; nanoGPT reaches a
-- val loss of about 1.88 with it.
-- The corpus is ../shared/data/tinyshakespeare.txt when present, else the
-- Devil's Dictionary of Debian's dict-devil (/usr/share/dictd/devil.dict.dz).
-- The checkpoint (CKPT, default char_gpt.safetensors) holds the model, the
-- optimizer, the random streams, the model's config and the char vocabulary:
-- predict needs nothing else, and --resume continues a run exactly.
local gl = require "genlab"

local CONFIGS = {
  full = { n_layer = 8, n_head = 8, n_embd = 512, block = 128, batch = 64, dropout = 0.1, lr = 3e-4,
           min_lr = 3e-5, betas = { 0.9, 0.95 }, clip = 0.5, warmup = 100, max_steps = 5000, eval_every = 500,
           eval_iters = 50 },
  small = { n_layer = 4, n_head = 4, n_embd = 128, block = 64, batch = 12, dropout = 0, lr = 1e-3,
            min_lr = 1e-4, betas = { 0.9, 0.99 }, clip = 1.0, warmup = 100, max_steps = 2000, eval_every = 250,
            eval_iters = 20 },
}

local USAGE = [==[
usage: genlab run char_gpt.lua train [--data PATH] [--out CKPT] [--max-steps N] [--small]
                                     [--resume CKPT] [--log PATH] [--eval-every N]
       genlab run char_gpt.lua predict CKPT SEED-TEXT [--max-new N] [--temperature T] [--top-k K]
                                              [--seed N]]==]

local function die(msg)
  io.stderr:write("char_gpt: ", msg, "\n", USAGE, "\n")
  os.exit(2)
end

-- Splits argv into positionals and --flags; flags in `valued` take a value.
local function parse(argv, valued, switches)
  local pos, flags, i = {}, {}, 1
  while i <= #argv do
    local a = argv[i]
    local name = a:match("^%-%-([%w-]+)$")
    if name and valued[name] then
      if argv[i + 1] == nil then die("--" .. name .. " needs a value") end
      flags[name] = argv[i + 1]
      i = i + 2
    elseif name and switches[name] then
      flags[name] = true
      i = i + 1
    elseif name then
      die("unknown flag --" .. name)
    else
      pos[#pos + 1] = a
      i = i + 1
    end
  end
  return pos, flags
end

-- Errors that are not about usage.
local function fail(msg)
  io.stderr:write("char_gpt: ", msg, "\n")
  os.exit(1)
end

local function number_flag(flags, name, integer)
  local v = flags[name]
  if v == nil then return nil end
  local n = tonumber(v)
  if not n or (integer and math.tointeger(n) == nil) then die(("--%s wants a number, got '%s'"):format(name, v)) end
  return integer and math.tointeger(n) or n
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

-- The corpus: --data, else tiny Shakespeare beside the repository (from the
-- script's place or the working directory), else the Devil's Dictionary.
local function find_corpus(given)
  if given then
    if not exists(given) then fail("no such file: " .. given) end
    return given
  end
  local here = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
  for _, p in ipairs { here .. "/../../shared/data/tinyshakespeare.txt", "../shared/data/tinyshakespeare.txt",
                       "/usr/share/dictd/devil.dict.dz" } do
    if exists(p) then return p end
  end
  fail("no corpus found: pass --data PATH (or install dict-devil)")
end

local function train(argv)
  local pos, flags = parse(argv, { data = true, out = true, ["max-steps"] = true, resume = true, log = true,
                                   ["eval-every"] = true }, { small = true })
  if #pos > 0 then die("train takes no positional arguments (got '" .. pos[1] .. "')") end
  local cfg = CONFIGS[flags.small and "small" or "full"]
  local max_steps = number_flag(flags, "max-steps", true) or cfg.max_steps
  local eval_every = number_flag(flags, "eval-every", true) or math.min(cfg.eval_every, max_steps)
  local out = flags.out or "char_gpt.safetensors"
  local corpus = find_corpus(flags.data)

  gl.seed(1337)
  local data = gl.data.text(corpus, { tokenizer = "char", block = cfg.block, batch = cfg.batch })
  local model = gl.models.gpt { vocab_size = data:vocab_size(), block_size = cfg.block, n_layer = cfg.n_layer,
                                n_head = cfg.n_head, n_embd = cfg.n_embd, dropout = cfg.dropout }
  print(("corpus %s: %d train / %d val characters, vocabulary %d"):format(corpus, data:size("train"),
    data:size("val"), data:vocab_size()))
  print(("model: %d layers, %d heads, %d wide, block %d: %.2fM parameters; %s"):format(cfg.n_layer, cfg.n_head,
    cfg.n_embd, cfg.block, model:num_parameters() / 1e6, gl.system_info()))

  local run = gl.train {
    model = model, data = data, lr = cfg.lr, min_lr = cfg.min_lr, betas = cfg.betas, weight_decay = 0.1,
    clip = cfg.clip, warmup = math.min(cfg.warmup, max_steps), max_steps = max_steps, eval_every = eval_every,
    eval_iters = cfg.eval_iters, sample_every = eval_every, sample = { prompt = "\n", max_new = 200 },
    checkpoint = out, checkpoint_every = eval_every, log = flags.log, resume = flags.resume,
    meta = { n_layer = cfg.n_layer, n_head = cfg.n_head, n_embd = cfg.n_embd, block = cfg.block,
             vocab = data:vocab_size(), corpus = corpus },
  }
  local t0 = gl.clock()
  local steps0 = run.step_count
  local last = run:fit()
  local wall = gl.clock() - t0
  if not last then
    print(("nothing to train: the run is at step %d of %d"):format(run.step_count, max_steps))
  else
    print(("done: %d steps in %.1f s (%.1f ms/step); train loss %.4f, val loss %s; checkpoint %s"):format(
      run.step_count - steps0, wall, wall * 1000 / math.max(1, run.step_count - steps0), last.train_loss or last.loss,
      last.val_loss and ("%.4f"):format(last.val_loss) or "-", out))
  end
  run:close()
  return 0
end

local function predict(argv)
  local pos, flags = parse(argv, { ["max-new"] = true, temperature = true, ["top-k"] = true, seed = true }, {})
  if #pos ~= 2 then die("predict wants CHECKPOINT and SEED-TEXT") end
  local path, seed_text = pos[1], pos[2]
  if not exists(path) then fail("no such checkpoint: " .. path) end
  local _, extra = gl.checkpoint.load(path)
  for _, k in ipairs { "meta.n_layer", "meta.n_head", "meta.n_embd", "meta.block", "tokenizer" } do
    if extra[k] == nil then fail(path .. " is not a char_gpt checkpoint (no '" .. k .. "')") end
  end
  local tok = gl.tokenizer.from_string(extra.tokenizer)
  local model = gl.models.gpt { vocab_size = tok:vocab_size(), block_size = extra["meta.block"],
                                n_layer = extra["meta.n_layer"], n_head = extra["meta.n_head"],
                                n_embd = extra["meta.n_embd"] }
  gl.checkpoint.load(path, { model = model })
  model:eval()
  gl.seed(number_flag(flags, "seed", true) or os.time())
  local ok, ids = pcall(tok.encode, tok, seed_text)
  if not ok then fail("the seed text has characters outside the checkpoint's vocabulary: " .. tostring(ids)) end
  local out = model:generate(ids:reshape { 1, -1 }, { max_new = number_flag(flags, "max-new", true) or 500,
                                                     temperature = number_flag(flags, "temperature") or 0.8,
                                                     top_k = number_flag(flags, "top-k", true) })
  if gl.is_tensor(out) then out = tok:decode(out:reshape { -1 }) end
  print(out)
  return 0
end

local argv = {}
for i = 1, #(arg or {}) do argv[i] = arg[i] end
local mode = table.remove(argv, 1)
if mode == "train" then
  os.exit(train(argv))
elseif mode == "predict" then
  os.exit(predict(argv))
else
  die(mode and ("unknown mode '" .. mode .. "'") or "give a mode: train or predict")
end
