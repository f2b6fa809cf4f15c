--%% [markdown]
-- # Welcome to genlab
--
-- This file is a notebook: a plain Lua file cut into cells by `--%%` lines.
-- In the workbench (`genlab welcome.lua`) move between cells, edit one, run
-- it, or run them all; the outputs appear under each cell and are kept in
-- welcome.lua.outputs beside it. `genlab run welcome.lua` runs the same file
-- as a script: the markers are comments.
--
-- Cells share their globals (`data`, `model`, `run` below); `gl` is there
-- already. Here we train a small character-level GPT on Shakespeare (or, on
-- a machine without it, on the Devil's Dictionary), watch the loss and ask
-- it for text.
--
-- Environment, to change the run without editing the file:
--   GENLAB_WELCOME_STEPS  training steps of the third cell (200)
--   GENLAB_WELCOME_DATA   the text to train on (a file; gzip is fine)

--%% The corpus and the model
local gl = require "genlab"

-- The corpus: GENLAB_WELCOME_DATA, else tiny Shakespeare beside the genlab
-- source tree (../shared/data), else Debian's dict-devil.
local function find_corpus()
  local here = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
  local given = os.getenv("GENLAB_WELCOME_DATA")
  if given and given ~= "" then return given end
  for _, path in ipairs { here .. "/../../shared/data/tinyshakespeare.txt", "../shared/data/tinyshakespeare.txt",
                          "/usr/share/dictd/devil.dict.dz" } do
    local f = io.open(path, "rb")
    if f then
      f:close()
      return path
    end
  end
  error("no corpus: set GENLAB_WELCOME_DATA to a text file (or install dict-devil)")
end

gl.seed(1337)
corpus = find_corpus()
data = gl.data.text(corpus, { tokenizer = "char", block = 64, batch = 12 })
model = gl.models.gpt { vocab_size = data:vocab_size(), block_size = 64, n_layer = 4, n_head = 4, n_embd = 128 }
print(("%s: %d characters to train on, %d distinct"):format(corpus:match("[^/]*$"), data:size("train"),
  data:vocab_size()))
print(("a GPT of 4 layers, %.2fM parameters"):format(model:num_parameters() / 1e6))

--%% The trainer
-- AdamW at a constant learning rate; every step's loss goes to gl.metrics
-- under the name "char-gpt" (the Loss pane shows it).
run = gl.train { model = model, data = data, lr = 1e-3, name = "char-gpt", quiet = true }

--%% Train
-- run:step(n) trains n steps; in the workbench it runs in the background, so
-- the Loss pane moves while it trains. Run this cell again to train more.
steps = math.tointeger(tonumber(os.getenv("GENLAB_WELCOME_STEPS") or "")) or 200
local last = run:step(steps)
print(("step %d: loss %.3f (%.0f tokens/s)"):format(last.step, last.loss, last.tokens_per_s))

--%% Sample
-- After a few hundred steps the model spells words; after a few thousand, verse.
print("The " .. model:generate("The ", { max_new = 200, tokenizer = data.tokenizer, temperature = 0.8, top_k = 40 }))

--%% The loss curve
local xs, ys = gl.metrics.series("char-gpt", "loss")
gl.display(gl.plot({ { name = "loss", x = xs, y = ys } }, { width = 72, height = 16, title = "char-gpt: loss" }),
           "chart")
