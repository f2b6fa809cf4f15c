-- Text generation and next-token probes on language models with a KV cache.
--
-- A model here is anything with session([capacity]) -> a session with
-- append(ids [, {all = bool}]) -> logits [V] (or [n, V]), reset(), length(),
-- capacity(): GPT modules (src/lua/l_models.c) or a Lua object. GPT modules
-- also have these functions as methods: model:generate(prompt, opts), etc.
--
--   gl.generate(model, prompt, opts) -> text, info          (prompt a string)
--                                    -> ids, info           (prompt ids)
--     prompt: a string (needs opts.tokenizer; a Lua model may carry .tokenizer), or ids as a
--       list or an integer tensor [T] / [1, T] (0-based). For ids the result is
--       the prompt followed by the new ids, of the prompt's kind (minGPT's
--       convention); for a string, the new text only.
--     opts: max_new = 100, temperature = 1, top_k = 0, top_p = 1, min_p = 0,
--       repetition_penalty = 1, repetition_window = 0 (0: every token so far,
--       the prompt included), greedy = false, seed (a private stream; the
--       genlab stream otherwise), stop = string or list of strings,
--       tokenizer, on_token = function(text, id), verbose = false.
--       The sampler applies them in the order repetition penalty ->
--       temperature -> top_k -> top_p -> min_p -> sample (src/models/sampler.h).
--     info: tokens_in, tokens_out (tokens generated), finish_reason ("stop"
--       when a stop string appeared or the tokenizer's EOS token was drawn
--       (it is not decoded), "length" at max_new), ids (the new ids),
--       text (the new text when a tokenizer is known), seconds (generation
--       after the prompt) and prompt_seconds.
--     Stop strings end generation and are not part of the text. on_token is
--     called once per generated token, in order, with the text it makes safe
--     to show: text that may begin a stop string is held back until it cannot
--     (so it can be ""), and the texts add up to exactly the returned text.
--     Without a tokenizer text is nil.
--     Context: when the cache is full, the session is reset and refilled with
--     the last capacity // 2 tokens, then generation goes on. Each token costs
--     one cached step, plus a refill of capacity // 2 tokens every
--     capacity // 2 tokens, whatever the length generated so far.
--
--   gl.logprobs(model, text_or_ids [, {tokenizer}]) -> lp, ids
--     lp[i] = log P(token i | tokens before it) for i = 2..lp.n; lp[1] is nil
--     (the first token has no prefix). Past the context, tokens are scored
--     with the same sliding window as generate (at least capacity // 2 tokens
--     of context).
--   gl.score(model, prompt, continuation [, {tokenizer}]) -> sum, count
--     the summed log-probability of the continuation's tokens after the
--     prompt; strings are tokenized separately, then joined.
--   model:topk(text_or_ids, k [, position [, {tokenizer}]]) (also
--   require("genlab.generate").topk) -> ids, probs [, pieces]
--     the k most probable next tokens after the first `position` tokens
--     (1-based, negative from the end; default the whole input), most probable
--     first, as lists: ids 0-based, pieces the text each adds (with a tokenizer).
local gl = require "genlab"

local M = {}

local function fail(fmt, ...) error(fmt:format(...), 3) end

local function check_keys(opts, allowed, op)
  for k in pairs(opts) do
    if not allowed[k] then fail("%s: unknown option '%s'", op, tostring(k)) end
  end
end

local function tokenizer_of(model, opts)
  if opts and opts.tokenizer then return opts.tokenizer end
  local ok, tok = pcall(function() return model.tokenizer end)
  return ok and tok or nil
end

local function is_tensor(x) return gl.is_tensor(x) end

-- A copy of ids (list or tensor) as a Lua list of integers.
local function id_list(x, op)
  if is_tensor(x) then
    if x:dtype() == "f32" then fail("%s: ids must be an integer tensor, got f32", op) end
    x = x:reshape { -1 }:tolist()
  end
  local out = {}
  for i, v in ipairs(x) do
    local id = math.tointeger(v)
    if not id then fail("%s: ids[%d] is not an integer", op, i) end
    out[i] = id
  end
  return out
end

-- SentencePiece models (LLaMA) expect BOS first, as llama2.c and Hugging
-- Face encode prompts; GPT-2 and char models have none.
local function encode(tok, text, op)
  if not tok then fail("%s: a text prompt needs a tokenizer (opts.tokenizer)", op) end
  local bos = tok.kind and tok:kind() == "sentencepiece"
  return id_list(tok:encode(text, { bos = bos }), op)
end

-- The ids of a string, list or tensor input.
local function input_ids(x, tok, op)
  if type(x) == "string" then return encode(tok, x, op) end
  if type(x) == "table" or is_tensor(x) then return id_list(x, op) end
  fail("%s: expected a string, a list of ids or an ids tensor, got %s", op, type(x))
end

local function decode(tok, ids) return tok:decode(ids) end

-- The tokenizer's end-of-sequence id, or nil.
local function eos_of(tok)
  if not tok then return nil end
  local ok, id = pcall(function() return tok.eos_id and tok:eos_id() end)
  return ok and math.tointeger(id) or nil
end

-- The text id adds after prev (nil at the start): decoding the pair keeps the
-- leading space SentencePiece strips from a first piece and joins split bytes.
local function piece_after(tok, prev, id)
  if not prev then return decode(tok, { id }) end
  local before = decode(tok, { prev })
  local both = decode(tok, { prev, id })
  if both:sub(1, #before) == before then return both:sub(#before + 1) end
  return decode(tok, { id })
end

local function slice(t, i, j)
  local out = {}
  for k = i, j do out[#out + 1] = t[k] end
  return out
end

-- A session, and the number of tokens it keeps when it slides.
local function open_session(model, op)
  if type(model) ~= "table" and type(model) ~= "userdata" then fail("%s: model must be a model, got %s", op, type(model)) end
  local ok, sess = pcall(function() return model:session() end)
  if not ok then fail("%s: model has no usable session(): %s", op, tostring(sess)) end
  local cap = sess:capacity()
  local keep = math.max(1, cap // 2)
  if sess.slide then sess:slide(keep) end -- the refills below reuse what the session prepared
  return sess, cap, keep
end

local function close(sess)
  if sess.free then sess:free() end
end

-- Logits after feeding ids (a list) into a fresh or running session: the
-- last `cap` tokens when they do not fit.
local function prefill(sess, cap, ids)
  sess:reset()
  return sess:append(slice(ids, math.max(1, #ids - cap + 1), #ids))
end

local gen_keys = {
  max_new = true, temperature = true, top_k = true, top_p = true, min_p = true, repetition_penalty = true,
  repetition_window = true, greedy = true, seed = true, stop = true, tokenizer = true, on_token = true,
  verbose = true,
}

local function stop_list(stop, tok)
  if stop == nil then return {} end
  if type(stop) == "string" then stop = { stop } end
  if type(stop) ~= "table" then fail("generate: stop must be a string or a list of strings") end
  for i, s in ipairs(stop) do
    if type(s) ~= "string" or s == "" then fail("generate: stop[%d] must be a non-empty string", i) end
  end
  if #stop > 0 and not tok then fail("generate: stop strings need a tokenizer") end
  return stop
end

-- Length of the longest suffix of s that is a proper prefix of a stop string.
local function held_back(s, stops)
  local hold = 0
  for _, st in ipairs(stops) do
    for k = math.min(#st - 1, #s), hold + 1, -1 do
      if s:sub(-k) == st:sub(1, k) then
        hold = k
        break
      end
    end
  end
  return hold
end

function M.generate(model, prompt, opts)
  opts = opts or {}
  if type(opts) ~= "table" then fail("generate: options must be a table") end
  check_keys(opts, gen_keys, "generate")
  local tok = tokenizer_of(model, opts)
  local ids = input_ids(prompt, tok, "generate")
  if #ids == 0 then fail("generate: empty prompt (give at least one token)") end
  local max_new = opts.max_new or 100
  if math.type(max_new) ~= "integer" or max_new < 0 then
    fail("generate: max_new must be an integer >= 0, got %s", tostring(max_new))
  end
  local stops = stop_list(opts.stop, tok)
  local on_token = opts.on_token
  if on_token ~= nil and type(on_token) ~= "function" then fail("generate: on_token must be a function") end
  local sampler = gl.sampler {
    temperature = opts.temperature, top_k = opts.top_k, top_p = opts.top_p, min_p = opts.min_p,
    repetition_penalty = opts.repetition_penalty, repetition_window = opts.repetition_window,
    greedy = opts.greedy, seed = opts.seed,
  }
  local sess, cap, keep = open_session(model, "generate")
  if opts.verbose then
    local quoted = {}
    for i, st in ipairs(stops) do quoted[i] = ("%q"):format(st) end
    local stops_str = #stops > 0 and ", stop " .. table.concat(quoted, ", ") or ""
    io.stderr:write(("generate: sampler: %s\n"):format(sampler:describe()))
    io.stderr:write(("generate: %d prompt tokens, max_new=%d, context %d (refilled with the last %d when full)%s\n")
      :format(#ids, max_new, cap, keep, stops_str))
  end

  local t0 = gl.clock()
  sampler:accept(ids)
  local ctx = slice(ids, 1, #ids) -- everything so far; the session holds its tail
  local logits = prefill(sess, cap, ctx)
  local t1 = gl.clock()
  local new, parts, pending = {}, {}, ""
  local finish, eos = "length", eos_of(tok)
  for step = 1, max_new do
    local id = sampler:sample(logits)
    new[step] = id
    local prev = ctx[#ctx]
    ctx[#ctx + 1] = id
    if id == eos then
      finish = "stop"
      if pending ~= "" then parts[#parts + 1] = pending end
      if on_token then on_token(tok and pending, id) end
      break
    end
    sampler:accept(id)
    local out
    if tok then
      pending = pending .. piece_after(tok, prev, id)
      local at
      for _, st in ipairs(stops) do
        local p = pending:find(st, 1, true)
        if p and (not at or p < at) then at = p end
      end
      if at then
        out, pending, finish = pending:sub(1, at - 1), "", "stop"
      else
        local hold = step == max_new and 0 or held_back(pending, stops)
        out, pending = pending:sub(1, #pending - hold), pending:sub(#pending - hold + 1)
      end
      parts[#parts + 1] = out
    end
    if on_token then on_token(out, id) end
    if finish == "stop" or step == max_new then break end
    if sess:length() >= cap then
      sess:reset()
      logits = sess:append(slice(ctx, #ctx - keep + 1, #ctx))
    else
      logits = sess:append({ id })
    end
  end
  local t2 = gl.clock()
  close(sess)

  local text = tok and table.concat(parts) or nil
  local info = {
    tokens_in = #ids, tokens_out = #new, finish_reason = finish, ids = new, text = text,
    prompt_seconds = t1 - t0, seconds = t2 - t1,
  }
  if opts.verbose then
    io.stderr:write(("generate: %d tokens in %.3f s (%.1f tokens/s), prompt %.3f s, finish: %s\n")
      :format(#new, t2 - t1, #new / math.max(t2 - t1, 1e-9), t1 - t0, finish))
  end
  if type(prompt) == "string" then return text, info end
  local all = slice(ctx, 1, #ctx)
  if type(prompt) == "table" then return all, info end
  local out = gl.tensor(all, { dtype = "i64" })
  if prompt:dim() == 2 then out = out:reshape { 1, -1 } end
  return out, info
end

local probe_keys = { tokenizer = true }

local function probe_opts(opts, op)
  opts = opts or {}
  if type(opts) ~= "table" then fail("%s: options must be a table", op) end
  check_keys(opts, probe_keys, op)
  return opts
end

-- lp[i] for i = 2..#ids from one session, sliding like generate past its capacity.
local function token_logprobs(model, ids, op)
  local sess, cap, keep = open_session(model, op)
  local lp, n = { n = #ids }, #ids
  local done, s = 1, 1 -- tokens 1..done are scored (token 1 has nothing to score)
  while done < n do
    local e = math.min(n, s + cap - 1)
    sess:reset()
    local logits = sess:append(slice(ids, s, e), { all = true })
    -- row r predicts ids[s + r]; score the tokens not scored yet
    local r0 = done + 1 - s
    local rows = logits:narrow(1, r0, e - done)
    local got = gl.token_logprobs(rows, slice(ids, done + 1, e))
    for k = 1, e - done do lp[done + k] = got:getflat(k) end
    done = e
    s = math.max(1, done - keep + 1)
  end
  close(sess)
  return lp
end

function M.logprobs(model, input, opts)
  opts = probe_opts(opts, "logprobs")
  local ids = input_ids(input, tokenizer_of(model, opts), "logprobs")
  if #ids == 0 then fail("logprobs: empty input") end
  return token_logprobs(model, ids, "logprobs"), ids
end

function M.score(model, prompt, continuation, opts)
  opts = probe_opts(opts, "score")
  local tok = tokenizer_of(model, opts)
  local p = input_ids(prompt, tok, "score")
  local c = input_ids(continuation, tok, "score")
  if #p == 0 then fail("score: empty prompt (the first continuation token needs a prefix)") end
  if #c == 0 then return 0.0, 0 end
  local ids = slice(p, 1, #p)
  for _, id in ipairs(c) do ids[#ids + 1] = id end
  local lp = token_logprobs(model, ids, "score")
  local sum = 0.0
  for i = #p + 1, #ids do sum = sum + lp[i] end
  return sum, #c
end

function M.topk(model, input, k, position, opts)
  if type(position) == "table" and opts == nil then position, opts = nil, position end
  opts = probe_opts(opts, "topk")
  local tok = tokenizer_of(model, opts)
  local ids = input_ids(input, tok, "topk")
  local n = #ids
  if n == 0 then fail("topk: empty input") end
  position = position or n
  if math.type(position) ~= "integer" or position == 0 or math.abs(position) > n then
    fail("topk: position %s out of range (use 1..%d or -%d..-1)", tostring(position), n, n)
  end
  if position < 0 then position = n + 1 + position end
  local sess, cap = open_session(model, "topk")
  local logits = prefill(sess, cap, slice(ids, 1, position))
  close(sess)
  local probs_t, ids_t = gl.topk_probs(logits, k)
  local top, probs = ids_t:tolist(), probs_t:tolist()
  if not tok then return top, probs end
  local pieces = {}
  for i, id in ipairs(top) do pieces[i] = piece_after(tok, ids[position], id) end
  return top, probs, pieces
end

gl.generate, gl.logprobs, gl.score = M.generate, M.logprobs, M.score
return M
