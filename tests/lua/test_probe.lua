-- gl.probe (lua/genlab/probe.lua) on the random-weight GPT-2 fixture with a
-- char tokenizer: token counts, greedy output, per-token log-probs against
-- gl.logprobs, top-k sorted and summing to at most 1 (and agreeing with the
-- greedy choice), the expected answer's log-prob equal to model:score, and
-- the width-aware side-by-side text.
local T = require "tap"
local gl = require "genlab"
require "genlab.llm"
require "genlab.probe"

local chars = { "\n" }
for c = 32, 126 do chars[#chars + 1] = string.char(c) end
local tok = gl.tokenizer.char(table.concat(chars))
local model = gl.models.load("../fixtures/models/gpt2", { tokenizer = false })

local msgs = { { role = "system", content = "Be terse." }, { role = "user", content = "Capital of France?" } }
local r = gl.probe {
  model = model, tokenizer = tok, template = "plain", expected = " Paris", topk = 5, max_tokens = 8,
  variants = { { name = "bare", prompt = "Q: Capital of France?\nA:" }, { name = "chat", messages = msgs } },
}
T.eq(#r.variants, 2, "one result per variant")
local a, b = r.variants[1], r.variants[2]
T.eq(a.name .. "," .. b.name, "bare,chat", "variant names kept in order")
T.eq(a.prompt_text, "Q: Capital of France?\nA:", "a raw prompt is read as is")
T.eq(b.prompt_text, "System: Be terse.\nUser: Capital of France?\nAssistant:", "messages go through the template")
T.eq(a.prompt_tokens, #a.prompt_text, "prompt token count (one per char)")
T.eq(b.prompt_tokens, #b.prompt_text, "prompt token count of the chat variant")

for _, v in ipairs(r.variants) do
  local want, info = model:generate(v.prompt_text, { max_new = 8, greedy = true, tokenizer = tok,
    stop = v.name == "chat" and { "\nUser:", "\nSystem:" } or nil })
  T.eq(v.output, want, v.name .. ": output is the greedy generation")
  T.eq(#v.tokens, info.tokens_out, v.name .. ": one entry per generated token")
  local text = {}
  for i, t in ipairs(v.tokens) do text[i] = t.piece end
  T.ok(table.concat(text):sub(1, #v.output) == v.output, v.name .. ": the pieces spell the output")

  -- per-token log-probs: gl.logprobs over prompt + output
  local all = v.prompt_text .. table.concat(text)
  local lp = gl.logprobs(model, all, { tokenizer = tok })
  local sum, worst = 0, 0
  for i, t in ipairs(v.tokens) do
    worst = math.max(worst, math.abs(t.logprob - lp[v.prompt_tokens + i]))
    sum = sum + t.logprob
  end
  T.ok(worst < 1e-5, v.name .. (": token log-probs equal gl.logprobs (max diff %.2g)"):format(worst))
  T.near(v.logprob, sum, 1e-9, v.name .. ": logprob is their sum")

  -- top-k at the first generated token
  local top = v.topk
  T.eq(#top, 5, v.name .. ": topk = 5 entries")
  T.eq(top.position, v.prompt_tokens + 1, v.name .. ": default position is the first generated token")
  local total, sorted = 0, true
  for i, e in ipairs(top) do
    total = total + e.prob
    if i > 1 and e.prob > top[i - 1].prob then sorted = false end
    if e.prob < 0 or e.prob > 1 then sorted = false end
  end
  T.ok(sorted, v.name .. ": top-k sorted, most probable first, probabilities in [0, 1]")
  T.ok(total <= 1 + 1e-6 and total > 0, v.name .. (": top-k probabilities sum to %.4f <= 1"):format(total))
  T.eq(top[1].id, v.tokens[1].id, v.name .. ": greedy took the most probable token")
  T.near(top.actual.prob, top[1].prob, 1e-5, v.name .. ": the actual token's probability")
  T.near(math.log(top[1].prob), v.tokens[1].logprob, 1e-4, v.name .. ": top-k agrees with the token log-prob")

  -- the expected answer
  local s, n = model:score(v.prompt_text, " Paris", { tokenizer = tok })
  T.near(v.expected_logprob, s, 1e-6, v.name .. ": expected log-prob equals model:score")
  T.eq(v.expected_tokens, n, v.name .. ": expected token count")
end

-- another position, counted in generated tokens
do
  local r3 = gl.probe { model = model, tokenizer = tok, variants = { { prompt = "abc" } }, max_tokens = 6, position = 3 }
  local v = r3.variants[1]
  T.eq(v.name, "variant 1", "a variant without name is numbered")
  T.eq(v.topk.position, 3 + 3, "position 3: token 3 + 3 of the sequence")
  T.eq(v.topk[1].id, v.tokens[3].id, "position 3: greedy's third token is the top one")
  T.eq(v.expected_logprob, nil, "no expected answer, no log-prob")
  local rl = gl.probe { model = model, tokenizer = tok, variants = { { prompt = "abc" } }, max_tokens = 6, position = -1 }
  T.eq(rl.variants[1].topk.position, 3 + 6, "position -1: the last generated token")
  T.raises(function() gl.probe { model = model, tokenizer = tok, variants = { { prompt = "abc" } }, max_tokens = 6,
    position = 7 } end, "position 7 is outside the 6 generated tokens", "position out of range")
end

-- a local llm carries its model, tokenizer and template
do
  local llm = gl.llm.local_model(model, { tokenizer = tok, template = "chatml" })
  local rc = gl.probe { model = llm, variants = { { messages = msgs } }, max_tokens = 2 }
  T.eq(rc.template, "chatml", "the llm's template is the default")
  T.ok(rc.variants[1].prompt_text:find("<|im_start|>assistant\n", 1, true) ~= nil, "chatml rendering used")
end

T.raises(function() gl.probe { model = model, tokenizer = tok, variants = { { prompt = "a", messages = msgs } } } end,
  "give prompt (text) or messages", "prompt and messages together")
T.raises(function() gl.probe { model = model, tokenizer = tok, variants = {}, } end, "variants must be a non-empty list",
  "no variants")
T.raises(function() gl.probe { model = model, tokenizer = tok, variants = { { prompt = "a" } }, top_k = 3 } end,
  "unknown option 'top_k'", "unknown option")

-- side-by-side text
local function visible(s) return (s:gsub("\27%[[%d;]*m", "")) end
for _, width in ipairs { 60, 100 } do
  local text = gl.probe.format(r, { width = width })
  local fits = true
  for line in text:gmatch("[^\n]*") do
    if utf8.len(line) > width then fits = false end
  end
  T.ok(fits, ("format: every line fits width %d"):format(width))
  T.ok(text:find("bare", 1, true) and text:find("chat", 1, true), "format shows both variant names")
  T.ok(text:find("expected \" Paris\": log-prob", 1, true) ~= nil, "format shows the expected answer's log-prob")
  T.ok(not text:find("\27", 1, true), "no ANSI codes without color")
end
local colored = gl.probe.format(r, { width = 80, color = true })
T.ok(colored:find("\27[", 1, true) ~= nil, "color = true adds ANSI codes")
T.eq(visible(colored), gl.probe.format(r, { width = 80 }), "the coloured text shows the same characters")
T.ok(gl.probe.format(r, { width = 60 }):find(" │ ", 1, true) ~= nil, "columns side by side")
T.raises(function() gl.probe.format(r, { width = 10 }) end, "too narrow", "a too narrow width is an error")

-- ascii = true, for terminals that are not UTF-8 (the workbench under LANG=C)
for _, width in ipairs { 60, 100 } do
  local text = gl.probe.format(r, { width = width, ascii = true })
  local fits = true
  for line in text:gmatch("[^\n]*") do
    if #line > width then fits = false end
  end
  T.ok(fits, ("format ascii: every line fits width %d"):format(width))
  T.ok(not text:find("[\128-\255]"), ("format ascii: only ASCII bytes at width %d"):format(width))
  T.ok(text:find(" | ", 1, true) ~= nil, ("format ascii: ' | ' between the columns at width %d"):format(width))
end
do
  local odd = { expected = "é", variants = {} }
  for i, name in ipairs { "naïve", "plain" } do
    odd.variants[i] = { name = name, prompt_text = "café\nok", prompt_tokens = 7, finish_reason = "length",
      logprob = -0.5, tokens = { { id = 1, piece = "→x", logprob = -0.5 } },
      topk = { position = 8, { id = 1, piece = "ü", prob = 0.5 } }, expected_logprob = -1, expected_tokens = 1 }
  end
  local u, a = gl.probe.format(odd, { width = 60 }), gl.probe.format(odd, { width = 60, ascii = true })
  T.ok(u:find(" │ ", 1, true) and u:find("café↵", 1, true) and u:find("→x", 1, true) and u:find('"ü"', 1, true),
    "format without ascii: UTF-8 text, the newline mark and the column rule as they are")
  T.ok(not a:find("[\128-\255]"), "format ascii: non-ASCII text gives only ASCII bytes")
  T.eq(a:match("^[^\n]*"), "na?ve" .. (" "):rep(23) .. " | plain", "format ascii: '?' per non-ASCII character, ' | '")
  T.ok(a:find("caf?\\n", 1, true) and a:find("?x", 1, true) and a:find('"?"', 1, true),
    "format ascii: a newline shows as \\n, other non-ASCII characters as '?'")
  T.raises(function() gl.probe.format(odd, { asci = true }) end, "unknown option 'asci'", "format: unknown option")
end

T.done()
