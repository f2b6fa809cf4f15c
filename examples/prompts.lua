-- prompts: a tour of prompt engineering with chains (chapter 6.1). A plain
-- question, then six techniques: a system role, a three-bullet answer format,
-- few-shot examples, conversation history, a three-sentence limit and
-- contextual hints (security and performance). Each prints the exact prompt
-- the model reads and its answer.
--
--   genlab run examples/prompts.lua [MODEL | URL] [--model NAME] [--template chatml|llama2|plain]
--                                   [--max-tokens N] [--temperature T]
--
-- MODEL is a model gl.models.load reads (a genlab checkpoint, a Hugging Face
-- folder, a llama2.c file); by default the tiny random-weight GPT-2 of
-- tests/fixtures/models/gpt2, whose answers are gibberish: point it at a real
-- model for real answers. A model without a tokenizer file whose vocabulary
-- is 96 tokens (the fixture) reads printable ASCII one character a token.
-- URL (http:// or https://) is an OpenAI-compatible server, used through
-- gl.llm.openai with --model NAME and the key in $OPENAI_API_KEY if set.
--
-- Run as a chunk with a table, loadfile("prompts.lua"){llm = llm, write = fn,
-- max_tokens = n}, it runs the tour on that llm and returns the results
-- {{name =, prompt_text =, output =, meta =}, ...} (the tests do this).
local gl = require "genlab"
require "genlab.prompt"
require "genlab.chain"
require "genlab.llm"

local P = gl.prompt

-- The tour: a name and a chain-maker per technique, with its inputs.
local function techniques()
  local q = "How should a small web service store user sessions?"
  local history = gl.chain.memory()
  history:add_user("I am writing a small web service in Lua.")
  history:add_ai("Good choice for a light service. What does it need to keep between requests?")
  return {
    { name = "basic question", prompt = P.chat { { "human", "{question}" } }, vars = { question = q } },
    { name = "role", prompt = P.chat {
        { "system", "You are a senior backend engineer who explains things to junior colleagues." },
        { "human", "{question}" } }, vars = { question = q } },
    { name = "format: three bullets", prompt = P.chat {
        { "system", "Answer with exactly three bullet points, each on its own line starting with '- '." },
        { "human", "{question}" } }, vars = { question = q } },
    { name = "few-shot", prompt = P.chat {
        { "system", "Answer in the style of the examples: the choice, then one reason." },
        P.few_shot {
          examples = {
            { q = "Where should a blog keep its posts?",
              a = "A relational database: posts are queried by date and tag." },
            { q = "Where should a game keep its high scores?",
              a = "A sorted set in a key-value store: ranking is built in." },
          },
          example_prompt = P.chat { { "human", "{q}" }, { "ai", "{a}" } },
        },
        { "human", "{question}" } }, vars = { question = q } },
    { name = "history", memory = history, prompt = P.chat {
        { "system", "You are a helpful engineer." }, P.placeholder("history"), { "human", "{question}" } },
      vars = { question = "User sessions. " .. q } },
    { name = "limit: three sentences", prompt = P.chat {
        { "system", "Answer in at most three sentences." }, { "human", "{question}" } }, vars = { question = q } },
    { name = "hints: security and performance", prompt = P.chat {
        { "system", "You review designs. {hints}" }, { "human", "{question}" } },
      vars = { question = q, hints = "Mention one security risk and one performance cost of what you suggest." } },
  }
end

local function tour(llm, write, opts)
  local results = {}
  for i, t in ipairs(techniques()) do
    local chain = gl.chain { prompt = t.prompt, llm = llm, memory = t.memory, options = opts }
    local _, prompt_text = chain:render(t.vars)
    write(("== %d. %s ==\n-- prompt --\n%s\n"):format(i, t.name, prompt_text))
    local out, meta = chain:invoke(t.vars)
    write(("-- answer (%d prompt tokens, %d generated, %.2f s, %s) --\n%s\n\n"):format(meta.tokens_in or 0,
      meta.tokens_out or 0, meta.seconds or 0, meta.finish_reason or "?", out))
    results[i] = { name = t.name, prompt_text = prompt_text, output = out, meta = meta }
  end
  return results
end

local first = ...
if type(first) == "table" then
  local o = first
  return tour(o.llm, o.write or io.write, { max_tokens = o.max_tokens or 48, temperature = 0 })
end

---------------------------------------------------------------------------
-- Command line

local USAGE = "usage: genlab run prompts.lua [MODEL | URL] [--model NAME] [--template chatml|llama2|plain]\n"
  .. "                                 [--max-tokens N] [--temperature T]"

local function die(msg)
  io.stderr:write("prompts: ", msg, "\n", USAGE, "\n")
  os.exit(2)
end

local function here()
  local src = debug.getinfo(1, "S").source
  return src:match("^@(.*)/[^/]*$") or "."
end

local args = { max_tokens = 48, temperature = 0 }
do
  local a, i = arg or {}, 1
  while i <= #a do
    local k = a[i]
    if k == "--model" or k == "--template" or k == "--max-tokens" or k == "--temperature" then
      if a[i + 1] == nil then die(k .. " needs a value") end
      local v = a[i + 1]
      if k == "--max-tokens" then
        args.max_tokens = math.tointeger(tonumber(v)) or die("--max-tokens must be an integer")
      elseif k == "--temperature" then
        args.temperature = tonumber(v) or die("--temperature must be a number")
      else
        args[k:sub(3)] = v
      end
      i = i + 2
    elseif k:sub(1, 2) == "--" then
      die("unknown option " .. k)
    elseif args.target then
      die("unexpected argument " .. k)
    else
      args.target, i = k, i + 1
    end
  end
end

local llm
local target = args.target or (here() .. "/../tests/fixtures/models/gpt2")
if target:match("^https?://") then
  if not gl.llm.openai then die("gl.llm.openai is not available in this build") end
  llm = gl.llm.openai { base_url = target, model = args.model or "default", api_key_env = "OPENAI_API_KEY" }
  print(("backend: %s (model %s)"):format(target, args.model or "default"))
else
  local model, info = gl.models.load(target)
  local tok = info.tokenizer
  if not tok and model:config().vocab_size == 96 then
    local chars = { "\n" }
    for c = 32, 126 do chars[#chars + 1] = string.char(c) end
    tok = gl.tokenizer.char(table.concat(chars))
  end
  if not tok then die(target .. " has no tokenizer next to it") end
  llm = gl.llm.local_model(model, { tokenizer = tok, template = args.template, name = target })
  print(("backend: %s, template %s"):format(target, llm.template))
end
print()
tour(llm, io.write, { max_tokens = args.max_tokens, temperature = args.temperature })
