-- gl.probe: what two or more prompt variants do to one model, side by side.
--
--   gl.probe{model = m, variants = {{name = "a", prompt = "raw text"}, {name = "b", messages = {...}}, ...},
--            expected = " answer", topk = 5, max_tokens = 20, template = nil, position = nil,
--            tokenizer = nil, temperature = 0, seed = nil} -> result
--     model: a language model or a gl.llm.local_model (its template and
--       tokenizer are then the defaults). A variant's prompt is read as is; its
--       messages go through the chat template (template, else the llm's, else
--       chat_template.default_for(model)) and generation stops at the
--       template's stop strings. Generation is greedy unless temperature > 0.
--     position: which generated token's top-k to show: 1 (default) the first,
--       k the k-th, negative from the last; the distribution is over that
--       token given everything before it.
--   result = {expected = ..., variants = {v, ...}} with, for each variant v:
--     name, prompt_text, prompt_tokens (count), prompt_ids, output (text),
--     finish_reason, tokens = {{id =, piece =, logprob =}, ...} (every
--     generated token, the ones of a stop string included), logprob (their sum),
--     topk = {position =, actual = {id, piece, prob} or nil, {id =, piece =, prob =}, ...}
--     (position counts prompt and output tokens, 1-based), and with expected:
--     expected_logprob (= gl.score(model, prompt_ids, expected ids)) and expected_tokens.
--   gl.probe.format(result [, {width = 100, color = false, ascii = false}]) -> text:
--     the variants in columns, output tokens coloured by log-probability (ANSI)
--     when color is true. ascii = true keeps to ASCII for terminals that are not
--     UTF-8: " | " between columns, a dim "\n" where the text has a newline, and
--     "?" for every other non-ASCII character.
local gl = require "genlab"
local ct = require "genlab.chat_template"
local gen = require "genlab.generate"
local llm_mod = require "genlab.llm"

local M = {}

local function fail(fmt, ...) error(("probe: " .. fmt):format(...), 3) end

local KEYS = { model = true, variants = true, expected = true, topk = true, max_tokens = true, template = true,
  position = true, tokenizer = true, temperature = true, seed = true }

local function piece_after(tok, prev, id)
  if not prev then return tok:decode({ id }) end
  local before, both = tok:decode({ prev }), tok:decode({ prev, id })
  if both:sub(1, #before) == before then return both:sub(#before + 1) end
  return tok:decode({ id })
end

-- Model, tokenizer and default template of the model argument.
local function resolve(opts)
  local m, tok, template = opts.model, opts.tokenizer, opts.template
  if getmetatable(m) and type(m.chat) == "function" and m.model then
    tok, template, m = tok or m.tokenizer, template or m.template, m.model
  end
  if m == nil then fail("model is required") end
  if not tok then
    local ok, t = pcall(function() return m.tokenizer end)
    tok = ok and t or nil
  end
  if not tok then fail("the model has no tokenizer; pass {tokenizer = ...}") end
  return m, tok, template or ct.default_for({ tokenizer = tok })
end

local function one(model, tok, template, v, i, opts)
  if type(v) ~= "table" then fail("variant %d must be a table, got %s", i, type(v)) end
  for k in pairs(v) do
    if k ~= "name" and k ~= "prompt" and k ~= "messages" then fail("variant %d: unknown key '%s'", i, tostring(k)) end
  end
  if (v.prompt == nil) == (v.messages == nil) then
    fail("variant %d: give prompt (text) or messages, one of them", i)
  end
  local text, stops = v.prompt, {}
  if v.messages then
    text, stops = ct.render(v.messages, template)
  elseif type(text) ~= "string" then
    fail("variant %d: prompt must be a string", i)
  end
  local ids = llm_mod.encode(tok, text)
  if #ids == 0 then fail("variant %d: empty prompt", i) end
  local _, info = gen.generate(model, ids, { max_new = opts.max_tokens, temperature = opts.temperature or 0,
    seed = opts.seed, stop = #stops > 0 and stops or nil, tokenizer = tok })
  local r = { name = v.name or ("variant " .. i), prompt_text = text, prompt_ids = ids, prompt_tokens = #ids,
    output = info.text, finish_reason = info.finish_reason, tokens = {}, logprob = 0.0 }

  local all = {}
  for k, id in ipairs(ids) do all[k] = id end
  for _, id in ipairs(info.ids) do all[#all + 1] = id end
  local lp = #info.ids > 0 and gen.logprobs(model, all) or {}
  for k, id in ipairs(info.ids) do
    local at = #ids + k
    r.tokens[k] = { id = id, piece = piece_after(tok, all[at - 1], id), logprob = lp[at] }
    r.logprob = r.logprob + lp[at]
  end

  -- top-k for token `pos` of all (given the pos - 1 before it)
  local n_out = #info.ids
  local p = opts.position or 1
  if math.type(p) ~= "integer" or p == 0 then fail("position must be a non-zero integer, got %s", tostring(p)) end
  if p < 0 then p = n_out + 1 + p end
  if p < 1 or p > math.max(n_out, 1) then
    fail("position %s is outside the %d generated tokens of variant '%s'", tostring(opts.position), n_out, r.name)
  end
  local pos = #ids + p
  local tids, probs, pieces = gen.topk(model, all, opts.topk, pos - 1, { tokenizer = tok })
  local top = { position = pos }
  for k = 1, #tids do top[k] = { id = tids[k], piece = pieces[k], prob = probs[k] } end
  if all[pos] then
    local lpa = lp[pos]
    top.actual = { id = all[pos], piece = piece_after(tok, all[pos - 1], all[pos]), prob = math.exp(lpa) }
  end
  r.topk = top

  if opts.expected then
    local e = llm_mod.encode(tok, opts.expected)
    if type(tok) == "userdata" and tok:kind() == "sentencepiece" and e[1] == tok:bos_id() then table.remove(e, 1) end
    r.expected_logprob = gen.score(model, ids, e, { tokenizer = tok })
    r.expected_tokens = #e
  end
  return r
end

local function probe(_, opts)
  if type(opts) ~= "table" then fail("expected an options table {model=, variants=, ...}") end
  for k in pairs(opts) do
    if not KEYS[k] then fail("unknown option '%s'", tostring(k)) end
  end
  local model, tok, template = resolve(opts)
  local variants = opts.variants
  if type(variants) ~= "table" or #variants == 0 then fail("variants must be a non-empty list") end
  if opts.expected ~= nil and (type(opts.expected) ~= "string" or opts.expected == "") then
    fail("expected must be a non-empty string")
  end
  local o = { max_tokens = opts.max_tokens or 20, topk = opts.topk or 5, position = opts.position,
    temperature = opts.temperature, seed = opts.seed, expected = opts.expected }
  if math.type(o.max_tokens) ~= "integer" or o.max_tokens < 1 then fail("max_tokens must be an integer >= 1") end
  if math.type(o.topk) ~= "integer" or o.topk < 1 then fail("topk must be an integer >= 1") end
  local out = { expected = opts.expected, template = template, variants = {} }
  for i, v in ipairs(variants) do out.variants[i] = one(model, tok, template, v, i, o) end
  return out
end

---------------------------------------------------------------------------
-- Side-by-side text

local RESET = "\27[0m"
local STYLE = { good = "\27[32m", fair = "\27[33m", poor = "\27[31m", head = "\27[1m", dim = "\27[2m" }

local function lp_style(lp)
  if lp >= -1 then return "good" end
  if lp >= -3 then return "fair" end
  return "poor"
end

-- The characters of s (UTF-8 code points; bytes where s is not UTF-8).
local function chars(s)
  local out = {}
  if utf8.len(s) then
    for _, c in utf8.codes(s) do out[#out + 1] = utf8.char(c) end
  else
    for k = 1, #s do out[k] = s:sub(k, k) end
  end
  return out
end

-- Lines of at most w characters from segments {text, style}; newlines break
-- lines (shown as a dim "↵", or "\n" when ascii, when show_nl), control
-- characters are shown escaped, and other non-ASCII ones as "?" when ascii.
local function wrap(segments, w, show_nl, ascii)
  local lines, cur, n = {}, {}, 0
  local function flush()
    lines[#lines + 1], cur, n = cur, {}, 0
  end
  local function put(c, style)
    if n >= w then flush() end
    cur[#cur + 1], n = { c, style }, n + 1
  end
  for _, seg in ipairs(segments) do
    for _, c in ipairs(chars(seg[1])) do
      if c == "\n" then
        if show_nl then
          for _, e in ipairs(chars(ascii and "\\n" or "↵")) do put(e, "dim") end
        end
        flush()
      elseif c == "\t" then
        put(" ", seg[2])
      elseif #c == 1 and (c:byte() < 32 or c:byte() == 127) then
        for _, e in ipairs(chars(("\\x%02x"):format(c:byte()))) do put(e, seg[2]) end
      elseif ascii and c:byte() >= 128 then
        put("?", seg[2])
      else
        put(c, seg[2])
      end
    end
  end
  if n > 0 or #lines == 0 then flush() end
  return lines
end

-- A line's text padded to w characters, styled when color.
local function show(line, w, color)
  local out, style, n = {}, nil, 0
  for _, ch in ipairs(line) do
    if color and ch[2] ~= style then
      out[#out + 1] = (style and RESET or "") .. (ch[2] and STYLE[ch[2]] or "")
      style = ch[2]
    end
    out[#out + 1], n = ch[1], n + 1
  end
  if color and style then out[#out + 1] = RESET end
  out[#out + 1] = (" "):rep(w - n)
  return table.concat(out)
end

local function text_lines(s, w, style, ascii) return wrap({ { s, style } }, w, true, ascii) end

local function add_all(dst, src)
  for _, l in ipairs(src) do dst[#dst + 1] = l end
end

local function pct(p) return ("%5.1f%%"):format(100 * p) end

local function quoted(s) return (("%q"):format(s):gsub("\\\n", "\\n")) end

local function column(v, w, expected, ascii)
  local lines = {}
  local function add(s, style) add_all(lines, text_lines(s, w, style, ascii)) end
  add(v.name, "head")
  add(("prompt (%d tokens):"):format(v.prompt_tokens), "dim")
  add(v.prompt_text)
  add(("output (%d tokens, %s, log-prob %.2f):"):format(#v.tokens, v.finish_reason, v.logprob), "dim")
  local segs = {}
  for _, t in ipairs(v.tokens) do segs[#segs + 1] = { t.piece, lp_style(t.logprob) } end
  add_all(lines, wrap(segs, w, true, ascii))
  add(("top-%d at token %d:"):format(#v.topk, v.topk.position), "dim")
  for _, t in ipairs(v.topk) do
    local mark = v.topk.actual and v.topk.actual.id == t.id and "*" or " "
    add(("%s%s %s"):format(mark, pct(t.prob), quoted(t.piece)))
  end
  if v.expected_logprob then
    add(("expected %s: log-prob %.3f (%d tokens)"):format(quoted(expected), v.expected_logprob, v.expected_tokens))
  end
  return lines
end

function M.format(result, opts)
  opts = opts or {}
  for k in pairs(opts) do
    if k ~= "width" and k ~= "color" and k ~= "ascii" then fail("format: unknown option '%s'", tostring(k)) end
  end
  if type(result) ~= "table" or type(result.variants) ~= "table" then fail("format: expected a gl.probe result") end
  local width, color, ascii = opts.width or 100, opts.color == true, opts.ascii == true
  local n = #result.variants
  local sep = ascii and " | " or " │ "
  local w = (width - (n - 1) * 3) // n
  if w < 8 then fail("format: width %d is too narrow for %d columns", width, n) end
  local cols, rows = {}, 0
  for i, v in ipairs(result.variants) do
    cols[i] = column(v, w, result.expected, ascii)
    rows = math.max(rows, #cols[i])
  end
  local out = {}
  for r = 1, rows do
    local parts = {}
    for i = 1, n do parts[i] = show(cols[i][r] or {}, w, color) end
    out[r] = (table.concat(parts, sep):gsub("%s+$", ""))
  end
  return table.concat(out, "\n") .. "\n"
end

setmetatable(M, { __call = probe })
gl.probe = M
return M
