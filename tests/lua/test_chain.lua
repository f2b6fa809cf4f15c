-- Chains (lua/genlab/chain.lua) and the local backend (lua/genlab/llm.lua):
-- render through each chat template, invoke with token counts, stop strings
-- (the template's and the caller's), max_tokens, streaming, parse, memory,
-- sequences; then the same pipeline on the random-weight GPT-2 fixture.
local T = require "tap"
local gl = require "genlab"
require "genlab.prompt"
require "genlab.chain"
require "genlab.llm"

-- A char tokenizer over printable ASCII and "\n": 96 tokens, as the fixture's vocabulary.
local chars = { "\n" }
for c = 32, 126 do chars[#chars + 1] = string.char(c) end
local tok = gl.tokenizer.char(table.concat(chars))

-- A stand-in model whose next token depends only on the last one: after ":"
-- it says " Lima\nUser:" and then starts again, so the plain template's stop
-- string ends the answer; any other character is followed by "x".
local succ = { [":"] = " ", [" "] = "L", L = "i", i = "m", m = "a", a = "\n", ["\n"] = "U", U = "s", s = "e", e = "r",
  r = ":" }
local V = tok:vocab_size()
local function next_id(id)
  local c = tok:decode({ id })
  return tok:encode(succ[c] or "x"):tolist()[1]
end
local fake = {}
function fake:session()
  local s = { n = 0, cap = 512 }
  function s:capacity() return self.cap end
  function s:length() return self.n end
  function s:reset() self.n = 0 end
  function s:append(ids)
    self.n = self.n + #ids
    local l = gl.full({ V }, -20)
    l:setflat(next_id(ids[#ids]) + 1, 20)
    return l
  end
  return s
end

local plain = gl.llm.local_model(fake, { template = "plain", tokenizer = tok })
T.eq(plain.template, "plain", "local_model keeps the chosen template")
T.raises(function() gl.llm.local_model(fake, { template = "nope", tokenizer = tok }) end, "unknown template 'nope'",
  "an unknown template fails at construction")
T.raises(function() gl.llm.local_model(fake, {}) end, "has no tokenizer", "a model without tokenizer needs one")
T.raises(function() gl.llm.local_model(fake, { tokenizer = tok, temp = 1 }) end, "unknown option 'temp'",
  "local_model rejects unknown options")

local prompt = gl.prompt.chat { { "system", "You answer with a city." }, { "human", "Capital of {country}?" } }
local c = gl.chain { prompt = prompt, llm = plain, options = { max_tokens = 40 } }
T.eq(table.concat(c.variables, ","), "country", "chain variables")
local msgs, text = c:render { country = "Peru" }
local want = "System: You answer with a city.\nUser: Capital of Peru?\nAssistant:"
T.eq(text, want, "render: the exact plain prompt")
T.eq(#msgs .. msgs[2].role .. msgs[2].content, "2userCapital of Peru?", "render: the messages")

local out, meta = c:invoke { country = "Peru" }
T.eq(out, " Lima", "invoke: the answer ends at the template's stop string \\nUser:")
T.eq(meta.finish_reason, "stop", "finish_reason stop")
T.eq(meta.tokens_in, #want, "tokens_in counts the rendered prompt (one token per char)")
T.eq(meta.tokens_out, #" Lima\nUser:", "tokens_out counts every generated token, the stop string's too")
T.eq(meta.prompt_text, want, "meta.prompt_text is what the model read")
T.ok(type(meta.seconds) == "number" and meta.seconds >= 0, "meta.seconds")

out, meta = c:invoke({ country = "Peru" }, { max_tokens = 3 })
T.eq(out .. "|" .. meta.finish_reason .. "|" .. meta.tokens_out, " Li|length|3", "max_tokens ends with length")
out, meta = c:invoke({ country = "Peru" }, { stop = "ma" })
T.eq(out .. "|" .. meta.finish_reason, " Li|stop", "a caller's stop string is honoured")
local pieces = {}
out = c:invoke({ country = "Peru" }, { on_token = function(p) pieces[#pieces + 1] = p end })
T.eq(table.concat(pieces), out, "streamed pieces add up to the answer")
T.ok(#pieces >= 5, "streaming gave one piece per visible token")
T.raises(function() c:invoke { country = "Peru", city = "x" } end, "unknown variable: city", "unknown variable")
T.raises(function() c:invoke {} end, "missing variable: country", "missing variable")
T.raises(function() c:invoke({ country = "x" }, { max_token = 3 }) end, "unknown option 'max_token'",
  "unknown invoke option")
T.raises(function() gl.chain { prompt = prompt, llm = plain, options = { tempreature = 0 } } end,
  "unknown option 'tempreature'", "unknown chain option")

local upper = gl.chain { prompt = "Capital of {country}? Answer:", llm = plain, parse = function(s) return s:upper() end }
T.eq(upper:invoke { country = "Peru" }, " LIMA", "parse turns the text into the result; a string prompt is a template")
T.eq(select(2, upper:render { country = "Peru" }), "User: Capital of Peru? Answer:\nAssistant:",
  "a string template is one user message")

-- every template, visible in render
do
  local m = { { "system", "S" }, { "human", "{q}" } }
  local function rendered(name)
    local l = gl.llm.local_model(fake, { template = name, tokenizer = tok })
    return select(2, gl.chain { prompt = gl.prompt.chat(m), llm = l }:render { q = "Q" })
  end
  T.eq(rendered("chatml"), "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n",
    "render through chatml")
  T.eq(rendered("llama2"), "<s>[INST] <<SYS>>\nS\n<</SYS>>\n\nQ [/INST]", "render through llama2")
  T.eq(rendered("plain"), "System: S\nUser: Q\nAssistant:", "render through plain")
end

-- memory
do
  local mem = gl.chain.memory()
  local chat = gl.chain {
    prompt = gl.prompt.chat { { "system", "Cities." }, gl.prompt.placeholder("history"), { "human", "{q}" } },
    llm = plain, memory = mem, options = { max_tokens = 20 },
  }
  T.eq(table.concat(chat.variables, ","), "q", "the memory's variable is not an input")
  chat:invoke { q = "Peru?" }
  T.eq(#mem, 2, "one invoke adds the user's turn and the answer")
  local m = mem:messages()
  T.eq(m[1].role .. ":" .. m[1].content .. "|" .. m[2].role .. ":" .. m[2].content, "user:Peru?|assistant: Lima",
    "memory holds the turns")
  local _, text2 = chat:render { q = "Again?" }
  T.eq(text2, "System: Cities.\nUser: Peru?\nAssistant:  Lima\nUser: Again?\nAssistant:", "history in the next prompt")
  chat:invoke { q = "Again?" }
  T.eq(#mem, 4, "turns accumulate")
  T.raises(function() chat:invoke { q = "x", history = {} } end, "comes from the chain's memory", "history is not passed")
  local short = gl.chain.memory { max_messages = 2 }
  for i = 1, 5 do short:add_user("u" .. i) end
  T.eq(#short .. short:messages()[1].content, "2u4", "max_messages keeps the last turns")
  mem:clear()
  T.eq(#mem, 0, "clear")
  T.raises(function() gl.chain { prompt = "{q}", llm = plain, memory = gl.chain.memory() } end,
    "has no 'history' placeholder", "memory needs a placeholder")
end

-- sequences: a recording stand-in llm shows what each step received
do
  local seen = {}
  local echo = {}
  function echo:chat(messages)
    local last = messages[#messages].content
    seen[#seen + 1] = last
    return { text = "<" .. last .. ">", finish_reason = "stop", tokens_in = #last, tokens_out = 2, seconds = 0.5 }
  end
  local c1 = gl.chain { prompt = "city of {country}", llm = echo, output_key = "city" }
  local c2 = gl.chain { prompt = "describe {city} for {audience}", llm = echo, output_key = "blurb" }
  local c3 = gl.chain { prompt = "shorten {blurb}", llm = echo }
  local seq = gl.chain.sequence { c1, c2 }
  T.eq(table.concat(seq.variables, ","), "country,audience", "a sequence needs the inputs no step produces")
  local r, m = seq:invoke { country = "Peru", audience = "kids" }
  T.eq(r, "<describe <city of Peru> for kids>", "the first output fills the second prompt's variable")
  T.eq(m.outputs.city, "<city of Peru>", "meta.outputs by output_key")
  T.eq(#m.steps .. "|" .. m.tokens_out .. "|" .. m.seconds, "2|4|1.0", "step metas kept, tokens and seconds summed")
  local all = c1 .. c2 .. c3
  T.eq(#all.steps, 3, "c1 .. c2 .. c3 is a flat sequence of three")
  r = all:invoke { country = "Chile", audience = "cats" }
  T.eq(r, "<shorten <describe <city of Chile> for cats>>", "three steps in order")
  T.raises(function() seq:invoke { country = "Peru" } end, "missing variables: audience", "sequence missing input")
  T.raises(function() seq:invoke { country = "Peru", audience = "x", city = "y" } end, "unknown variable 'city'",
    "sequence rejects a produced variable as input")
end

-- the real pipeline: the random-weight GPT-2 fixture (outputs are gibberish)
do
  local model = gl.models.load("../fixtures/models/gpt2", { tokenizer = false })
  local llm = gl.llm.local_model(model, { tokenizer = tok, template = "chatml" })
  local ch = gl.chain { prompt = prompt, llm = llm, options = { max_tokens = 12, temperature = 0 } }
  local _, ptext = ch:render { country = "Peru" }
  local full, fm = ch:invoke { country = "Peru" }
  T.eq(fm.tokens_in, #ptext, "GPT-2 fixture: tokens_in is the prompt length")
  T.ok(fm.tokens_out <= 12 and fm.tokens_out >= 1, "GPT-2 fixture: at most max_tokens generated")
  local direct = model:generate(ptext, { max_new = 12, greedy = true, tokenizer = tok, stop = { "<|im_end|>", "<|im_start|>" } })
  T.eq(full, direct, "GPT-2 fixture: the chain's answer is model:generate's on the rendered prompt")
  if #full >= 6 and fm.finish_reason == "length" then
    local cut = full:sub(4, 5)
    local at = full:find(cut, 1, true)
    local part, pm = ch:invoke({ country = "Peru" }, { stop = cut })
    T.eq(part, full:sub(1, at - 1), "GPT-2 fixture: a stop string cuts the greedy answer")
    T.eq(pm.finish_reason, "stop", "GPT-2 fixture: finish_reason stop")
  else
    T.ok(true, "# SKIP greedy output too short to pick a stop string")
  end
end

-- a path loads the model; gl.llm.openai comes from genlab.openai when that module exists
do
  local byp = gl.llm.local_model("../fixtures/models/gpt2", { tokenizer = tok })
  T.eq(byp.name .. "|" .. byp.template, "../fixtures/models/gpt2|plain", "local_model(path): loaded, plain template for a base model")
  T.eq(byp:chat({ { role = "user", content = "hi" } }, { max_tokens = 2 }).tokens_out, 2, "local_model(path) chats")
  local made = function(o) return { base_url = o.base_url } end
  package.preload["genlab.openai"] = function() return { openai = made } end
  T.eq(gl.llm.openai, made, "gl.llm.openai is loaded lazily from genlab.openai")
  package.preload["genlab.openai"] = nil
end

-- the prompt-engineering tour (examples/prompts.lua) on the fixture: the exact prompts
do
  local model = gl.models.load("../fixtures/models/gpt2", { tokenizer = false })
  local llm = gl.llm.local_model(model, { tokenizer = tok, template = "plain" })
  local printed = {}
  local res = assert(loadfile("../../examples/prompts.lua"))
    { llm = llm, max_tokens = 6, write = function(s) printed[#printed + 1] = s end }
  local q = "User: How should a small web service store user sessions?\nAssistant:"
  local want = {
    { "basic question", q },
    { "role", "System: You are a senior backend engineer who explains things to junior colleagues.\n" .. q },
    { "format: three bullets",
      "System: Answer with exactly three bullet points, each on its own line starting with '- '.\n" .. q },
    { "few-shot", "System: Answer in the style of the examples: the choice, then one reason.\n"
      .. "User: Where should a blog keep its posts?\n"
      .. "Assistant: A relational database: posts are queried by date and tag.\n"
      .. "User: Where should a game keep its high scores?\n"
      .. "Assistant: A sorted set in a key-value store: ranking is built in.\n" .. q },
    { "history", "System: You are a helpful engineer.\nUser: I am writing a small web service in Lua.\n"
      .. "Assistant: Good choice for a light service. What does it need to keep between requests?\n"
      .. "User: User sessions. How should a small web service store user sessions?\nAssistant:" },
    { "limit: three sentences", "System: Answer in at most three sentences.\n" .. q },
    { "hints: security and performance", "System: You review designs. Mention one security risk and one "
      .. "performance cost of what you suggest.\n" .. q },
  }
  T.eq(#res, #want, "prompts.lua: a basic question and six techniques")
  for i, w in ipairs(want) do
    local r = res[i] or {}
    T.eq(r.name, w[1], ("prompts.lua: technique %d is %s"):format(i, w[1]))
    T.eq(r.prompt_text, w[2], ("prompts.lua: %s: the exact prompt"):format(w[1]))
    T.ok(r.meta and r.meta.tokens_in == #w[2] and r.meta.tokens_out >= 1 and r.meta.tokens_out <= 6,
      ("prompts.lua: %s: invoked on the model (tokens counted)"):format(w[1]))
  end
  local text = table.concat(printed)
  T.ok(text:find("== 4. few-shot ==\n-- prompt --\n" .. want[4][2], 1, true) ~= nil, "prompts.lua prints each prompt")
end

T.done()
