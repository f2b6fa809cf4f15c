-- The Lua side of `genlab serve` (src/serve/serve_jobs.c): the worker thread's
-- state loads one model here and runs requests one at a time through it.
--
--   serve.load(path, {tokenizer = path|nil, template = name|nil}) -> server
--   server:chat(messages, opts, on_token) -> info       (POST /v1/chat/completions)
--   server:complete(prompt, opts, on_token) -> info     (POST /v1/completions)
--     messages: {{role=, content=}, ...} rendered with genlab.chat_template;
--     opts: max_tokens, temperature (0: greedy), top_p, top_k, seed, stop (list);
--     on_token(piece) is called for each piece of text as it is generated.
--     info = {text=, finish_reason="stop"|"length", tokens_in=, tokens_out=, seconds=}.
--     A prompt the tokenizer cannot encode raises {bad_request = message}, so the
--     server can answer 400 rather than 500.
--   serve.tiny_model(path [, {seed=1234, n_layer=2, n_head=2, n_embd=32, block=64}])
--     saves a random char GPT whose vocabulary covers printable ASCII and
--     newline (tests and `genlab bench serve`).
--   serve.bench_local(path, max_tokens, prompt_format) -> run
--     the generations of `genlab bench serve` done in this process:
--     run(first, last) -> seconds, tokens, cpu_seconds generates requests
--     first..last, request i being the user message prompt_format:format(i),
--     seed i, temperature 1.
local gl = require "genlab"
local ct = require "genlab.chat_template"

local M = {}
local Server = {}
Server.__index = Server

-- The tokenizer named by --tokenizer, else the one gl.models.load found.
local function tokenizer_of(info, want)
  if want then return gl.tokenizer.load(want) end
  return info.tokenizer
end

function M.load(path, opts)
  opts = opts or {}
  -- with --tokenizer, do not look for a tokenizer beside the model
  local model, info = gl.models.load(path, opts.tokenizer and { tokenizer = false } or nil)
  local tok = tokenizer_of(info, opts.tokenizer)
  if not tok then error(("%s has no tokenizer; give --tokenizer PATH"):format(path), 0) end
  model:eval()
  local template = opts.template or ct.default_for({ tokenizer = tok })
  local known = false
  for _, name in ipairs(ct.names()) do known = known or name == template end
  if not known then
    error(("unknown chat template '%s' (%s)"):format(tostring(template), table.concat(ct.names(), ", ")), 0)
  end
  return setmetatable({ model = model, tok = tok, template = template }, Server)
end

-- Raises {bad_request = msg} when the tokenizer cannot encode text, or it is empty.
local function check_encodable(tok, text)
  local ok, err = pcall(tok.encode, tok, text)
  if not ok then error({ bad_request = tostring(err):gsub("^[^:\n]*%.lua:%d+: ", "") }, 0) end
  if #text == 0 then error({ bad_request = "the prompt is empty" }, 0) end
end

local function generate(self, prompt, opts, stops, on_token)
  check_encodable(self.tok, prompt)
  local stop = {}
  for _, s in ipairs(stops or {}) do stop[#stop + 1] = s end
  for _, s in ipairs(opts.stop or {}) do stop[#stop + 1] = s end
  local greedy = opts.temperature == 0
  local _, info = self.model:generate(prompt, {
    max_new = opts.max_tokens, temperature = not greedy and opts.temperature or nil, greedy = greedy,
    top_p = opts.top_p, top_k = opts.top_k, seed = opts.seed, stop = #stop > 0 and stop or nil,
    tokenizer = self.tok,
    on_token = function(piece) if piece and piece ~= "" then on_token(piece) end end,
  })
  return {
    text = info.text, finish_reason = info.finish_reason, tokens_in = info.tokens_in,
    tokens_out = info.tokens_out, seconds = info.seconds + info.prompt_seconds,
  }
end

function Server:chat(messages, opts, on_token)
  local ok, prompt, stops = pcall(ct.render, messages, self.template)
  if not ok then error({ bad_request = tostring(prompt):gsub("^[^:\n]*%.lua:%d+: ", "") }, 0) end
  return generate(self, prompt, opts, stops, on_token)
end

function Server:complete(prompt, opts, on_token) return generate(self, prompt, opts, nil, on_token) end

function M.tiny_model(path, opts)
  opts = opts or {}
  local chars = { "\n" }
  for c = 32, 126 do chars[#chars + 1] = string.char(c) end
  local tok = gl.tokenizer.char(table.concat(chars))
  gl.seed(opts.seed or 1234)
  local model = gl.models.gpt {
    vocab = tok:vocab_size(), block = opts.block or 64, n_layer = opts.n_layer or 2, n_head = opts.n_head or 2,
    n_embd = opts.n_embd or 32,
  }
  gl.models.save(model, path, { tokenizer = tok:serialize() })
end

function M.bench_local(path, max_tokens, prompt_format)
  local server = M.load(path)
  return function(first, last)
    local tokens, t0, c0 = 0, gl.clock(), os.clock()
    for i = first, last do
      local info = server:chat({ { role = "user", content = prompt_format:format(i) } },
        { max_tokens = max_tokens, temperature = 1, top_p = 1, seed = i, stop = {} }, function() end)
      tokens = tokens + info.tokens_out
    end
    return gl.clock() - t0, tokens, os.clock() - c0
  end
end

return M
