-- Command-line entry points written in Lua. src/main.c runs
--   os.exit(require("genlab.cli").generate(arg))
-- for `genlab generate ...`. Each returns the exit code: 0 success, 1 runtime
-- error (one line on stderr), 2 usage error (the message names the flag).
local gl = require "genlab"

local M = {}

local usage = [[
usage: genlab generate --model PATH --prompt TEXT [FLAGS]

Generates text with a language model, streaming tokens to stdout.

  --model PATH               checkpoint or model file (whatever gl.models.load reads)
  --prompt TEXT              the prompt ("-" reads it from stdin)
  --max-new N                tokens to generate (default 100)
  --temperature X            softmax temperature, 0 = greedy (default 1)
  --top-k K                  keep the K most probable tokens (default 0 = off)
  --top-p P                  keep the smallest set with probability >= P (default 1 = off)
  --min-p P                  keep tokens with probability >= P x the top one (default 0 = off)
  --repetition-penalty R     penalize tokens already in the context (default 1 = off)
  --greedy                   always take the most probable token
  --seed N                   seed the sampler (default: a fresh seed each run)
  --stop STR                 stop before STR (repeatable); STR is not printed
  --tokenizer PATH           tokenizer file, when the model has none
  --verbose                  print the sampler settings and speed on stderr
  --help                     this text

The sampler applies repetition penalty -> temperature -> top-k -> top-p -> min-p.
Exit status: 0 success, 1 error, 2 usage error.
]]

-- flag -> {key, kind}; kinds: string, int, number, flag, list
local flags = {
  ["--model"] = { "model", "string" },
  ["--prompt"] = { "prompt", "string" },
  ["--max-new"] = { "max_new", "int" },
  ["--temperature"] = { "temperature", "number" },
  ["--top-k"] = { "top_k", "int" },
  ["--top-p"] = { "top_p", "number" },
  ["--min-p"] = { "min_p", "number" },
  ["--repetition-penalty"] = { "repetition_penalty", "number" },
  ["--greedy"] = { "greedy", "flag" },
  ["--seed"] = { "seed", "int" },
  ["--stop"] = { "stop", "list" },
  ["--tokenizer"] = { "tokenizer", "string" },
  ["--verbose"] = { "verbose", "flag" },
  ["--help"] = { "help", "flag" },
  ["-h"] = { "help", "flag" },
}

-- Ranges checked here so that the message names the flag.
local ranges = {
  max_new = { "--max-new", function(v) return v >= 0 end, "an integer >= 0" },
  temperature = { "--temperature", function(v) return v >= 0 and v < math.huge end, "a number >= 0" },
  top_k = { "--top-k", function(v) return v >= 0 end, "an integer >= 0" },
  top_p = { "--top-p", function(v) return v > 0 and v <= 1 end, "a number in (0, 1]" },
  min_p = { "--min-p", function(v) return v >= 0 and v <= 1 end, "a number in [0, 1]" },
  repetition_penalty = { "--repetition-penalty", function(v) return v > 0 and v < math.huge end, "a number > 0" },
}

local UsageError = {}

local function usage_error(fmt, ...)
  error(setmetatable({ msg = fmt:format(...) }, UsageError), 0)
end

local function parse(args)
  local o = { stop = {} }
  local i = 1
  while i <= #args do
    local a = args[i]
    local name, inline = a:match("^(%-%-[%w-]+)=(.*)$")
    name = name or a
    local spec = flags[name]
    if not spec then
      if a:sub(1, 1) == "-" then usage_error("unknown flag '%s'", name) end
      usage_error("unexpected argument '%s'", a)
    end
    local key, kind = spec[1], spec[2]
    if kind == "flag" then
      if inline then usage_error("%s takes no value", name) end
      o[key] = true
    else
      local v = inline
      if not v then
        i = i + 1
        v = args[i]
        if v == nil then usage_error("%s needs a value", name) end
      end
      if kind == "int" then
        local n = math.tointeger(tonumber(v))
        if not n then usage_error("%s: '%s' is not an integer", name, v) end
        v = n
      elseif kind == "number" then
        local n = tonumber(v)
        if not n or n ~= n then usage_error("%s: '%s' is not a number", name, v) end
        v = n
      end
      if kind == "list" then o[key][#o[key] + 1] = v else o[key] = v end
    end
    i = i + 1
  end
  for key, r in pairs(ranges) do
    if o[key] ~= nil and not r[2](o[key]) then usage_error("%s must be %s, got %s", r[1], r[3], tostring(o[key])) end
  end
  for _, s in ipairs(o.stop) do
    if s == "" then usage_error("--stop needs a non-empty string") end
  end
  return o
end

-- The first line of an error, without the "file:line: " of Lua errors.
local function one_line(err)
  local msg = type(err) == "table" and err.msg or tostring(err)
  msg = msg:match("^[^\n]*")
  return (msg:gsub("^[^:\n]*%.lua:%d+: ", ""))
end

-- A tokenizer stored as text in a checkpoint (gl.models.load gives the text
-- when it cannot make the object itself).
local function tokenizer_from_string(s)
  local from = gl.tokenizer.from_string or gl.tokenizer.char_from_string
  return from and from(s) or nil
end

local function run_generate(o)
  if o.prompt == "-" then o.prompt = io.read("a") end
  local model, info = gl.models.load(o.model, o.tokenizer and { tokenizer = false } or nil)
  local tok = o.tokenizer and gl.tokenizer.load(o.tokenizer) or info.tokenizer
  if type(tok) == "string" then tok = tokenizer_from_string(tok) end
  if not tok then
    error(("%s has no tokenizer; give --tokenizer PATH"):format(o.model), 0)
  end
  if o.verbose then io.stderr:write(("generate: model %s\n"):format(o.model)) end
  -- Without --seed each run samples anew, as users of a generate command expect.
  local seed = o.seed or (os.time() * 1000003 + math.floor((gl.clock() % 1) * 1e6))
  local text, info = model:generate(o.prompt, {
    max_new = o.max_new, temperature = o.temperature, top_k = o.top_k, top_p = o.top_p, min_p = o.min_p,
    repetition_penalty = o.repetition_penalty, greedy = o.greedy, seed = seed, stop = o.stop,
    tokenizer = tok, verbose = o.verbose,
    on_token = function(piece)
      io.stdout:write(piece)
      io.stdout:flush()
    end,
  })
  io.stdout:write("\n")
  return text, info
end

function M.generate(args)
  args = args or {}
  local ok, o = pcall(parse, args)
  if not ok then
    io.stderr:write(("genlab generate: %s\n"):format(one_line(o)))
    io.stderr:write("usage: genlab generate --model PATH --prompt TEXT [FLAGS] (see --help)\n")
    return 2
  end
  if o.help then
    io.stdout:write(usage)
    return 0
  end
  if not o.model then
    io.stderr:write("genlab generate: --model PATH is required (see --help)\n")
    return 2
  end
  if not o.prompt then
    io.stderr:write("genlab generate: --prompt TEXT is required (see --help)\n")
    return 2
  end
  local ran, err = pcall(run_generate, o)
  if not ran then
    io.stdout:flush()
    io.stderr:write(("genlab generate: %s\n"):format(one_line(err)))
    return 1
  end
  return 0
end

return M
