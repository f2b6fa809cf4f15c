-- Golden tests of the GPT family against Hugging Face checkpoints made with
-- PyTorch (tests/fixtures/make_model_fixtures.py writes them and documents
-- each one): for every directory of tests/fixtures/models, gl.models.load
-- reads config.json + model.safetensors; then
--   * forward(ids) logits and forward(ids, targets) loss match the
--     reference (targets hold -1 where a position has no target),
--   * after loss:backward(), the gradients of the parameters stored as
--     grad.<HF name> match, read back in HF's layout (see hf_grad below),
--   * greedy decoding of 50 tokens from the stored prompt matches token for
--     token: a full-recompute loop over model:forward, a loop over a KV-cache
--     model:session(), and gl.generate / model:generate when they exist,
--   * the session's logits over ids match the reference, appended at once
--     and in two pieces.
-- The references are float64 results rounded to f32 once; what remains is
-- genlab's f32 rounding, hence 1e-4 absolute on logits (a few units in
-- size) and gradients, 1e-5 on the loss. Index tensors (ids, targets, prompt, generated) hold 0-based
-- token ids; dims typed here are 1-based.
local T = require "tap"
local gl = require "genlab"

local DIR = "../fixtures/models/"
local MODELS = {"gpt2", "gpt2_nohead", "gpt2_hub", "gpt_neo", "gpt_neo_f16", "llama", "llama_bf16"}
local TOL_LOGITS, TOL_LOSS, TOL_GRAD = 1e-4, 1e-5, 1e-4

if not (gl.models and gl.models.load) then
  print("ok 1 - # SKIP gl.models.load is missing: cannot load the golden models")
  print("1..1")
  os.exit(0)
end

-- Shapes must match exactly; then elementwise max abs error within tol
-- (T.near prints the error in the test name).
local near = T.near_tensor

-- The gradient genlab holds for an HF parameter, in HF's storage layout.
-- genlab's own parameter names and layouts are documented in
-- src/models/gpt.c: HF names throughout, nn.Linear [out, in] weights, and for
-- GPT-2 / GPT-Neo one fused c_attn [3C, C] (q, k, v rows) and c_proj.
-- So: GPT-2's Conv1D weights are the transposes of genlab's; GPT-Neo's
-- q/k/v_proj are row blocks of c_attn and out_proj is c_proj; LLaMA's names
-- and layouts are genlab's own.
local CONV1D = {"attn%.c_attn%.weight$", "attn%.c_proj%.weight$", "mlp%.c_fc%.weight$", "mlp%.c_proj%.weight$"}

local function hf_grad(arch, sd, C, hf)
  local function grad_of(name)
    local p = sd[name]
    if not p then error("the model has no parameter " .. name .. " (for " .. hf .. ")") end
    if not p.grad then error(name .. " has no gradient") end
    return p.grad
  end
  if arch == "gpt2" then
    for _, pat in ipairs(CONV1D) do
      if hf:find(pat) then return grad_of(hf):t() end
    end
    return grad_of(hf)
  elseif arch == "neo" then
    local pre, which = hf:match("^(.*)%.attn%.attention%.([qkv])_proj%.weight$")
    if pre then
      local start = ({q = 1, k = C + 1, v = 2 * C + 1})[which]
      return grad_of(pre .. ".attn.c_attn.weight"):narrow(1, start, C)
    end
    local pre2, rest = hf:match("^(.*)%.attn%.attention%.out_proj%.(%a+)$")
    if pre2 then return grad_of(pre2 .. ".attn.c_proj." .. rest) end
    return grad_of(hf)
  end
  return grad_of(hf)
end

local ARCH = {gpt2 = "gpt2", gpt2_nohead = "gpt2", gpt2_hub = "gpt2", gpt_neo = "neo", gpt_neo_f16 = "neo",
              llama = "llama", llama_bf16 = "llama"}

local function row(ids, b) -- ids [B,T] -> [1,T] (row b, 1-based)
  return ids:narrow(1, b, 1)
end

local function tolist1(t) -- any tensor -> flat Lua list of numbers
  local out = {}
  for i = 1, t:numel() do out[i] = t:getflat(i) end
  return out
end

-- Compares two token lists; returns ok and a diagnosis naming the first difference.
local function same_tokens(got, want)
  if #got ~= #want then return false, ("got %d tokens, want %d"):format(#got, #want) end
  for i = 1, #want do
    if got[i] ~= want[i] then
      return false, ("first difference at new token %d: got %s, want %s"):format(i, tostring(got[i]), tostring(want[i]))
    end
  end
  return true
end

local function argmax_last(logits) -- [.., V] -> 0-based id of the last row's max
  local V = logits:size(-1)
  local n = logits:numel()
  local best, bi = -math.huge, 0
  for i = n - V + 1, n do
    local v = logits:getflat(i)
    if v > best then best, bi = v, i - (n - V + 1) end
  end
  return bi
end

-- Full recompute greedy: every step runs forward on the whole sequence.
local function greedy_forward(model, prompt, n)
  local seq = tolist1(prompt)
  local out = {}
  gl.no_grad(function()
    for _ = 1, n do
      local logits = model:forward(gl.tensor({seq}, {dtype = "i64"}))
      local id = argmax_last(logits)
      out[#out + 1], seq[#seq + 1] = id, id
    end
  end)
  return out
end

-- KV-cache greedy: the prompt goes in once, then one token per step.
local function greedy_session(model, prompt, n)
  local s = model:session()
  local logits = s:append(tolist1(prompt))
  local out = {}
  for i = 1, n do
    local id = argmax_last(logits)
    out[i] = id
    if i < n then logits = s:append({id}) end
  end
  return out
end

for _, name in ipairs(MODELS) do
  local dir = DIR .. name
  local arch = ARCH[name]
  local E = gl.load(dir .. "/expected.safetensors")
  local okl, model = pcall(gl.models.load, dir)
  if not T.ok(okl, name .. ": gl.models.load reads config.json + model.safetensors", model) then goto continue end
  if model.eval then model:eval() end -- HF configs name dropouts; references are eval mode

  do
    local C = model:config().n_embd

    -- forward without targets: logits only
    local okf, logits = pcall(function() return gl.no_grad(function() return model:forward(E.ids) end) end)
    if T.ok(okf, name .. ": forward(ids) runs", logits) then
      near(logits, E.logits, TOL_LOGITS, name .. ": logits [2,16,V]")
    end

    -- forward with targets, backward
    local okt, logits2, loss = pcall(model.forward, model, E.ids, E.targets)
    if T.ok(okt and loss ~= nil, name .. ": forward(ids, targets) returns logits and loss", logits2) then
      near(logits2, E.logits, TOL_LOGITS, name .. ": logits with targets")
      T.near(loss:item(), E.loss:item(), TOL_LOSS,
        name .. (": loss %.6f (mean CE, last position's target -1)"):format(E.loss:item()))
      if model.zero_grad then model:zero_grad() end
      local okb, err = pcall(loss.backward, loss)
      if T.ok(okb, name .. ": loss:backward() runs", err) then
        local sd = model:state_dict()
        local names = {}
        for k in pairs(E) do
          local hf = k:match("^grad%.(.*)$")
          if hf then names[#names + 1] = hf end
        end
        table.sort(names)
        for _, hf in ipairs(names) do
          local okg, g = pcall(hf_grad, arch, sd, C, hf)
          if T.ok(okg, name .. ": gradient of " .. hf .. " exists", g) then
            near(g, E["grad." .. hf], TOL_GRAD, name .. ": grad " .. hf)
          end
        end
      end
    end

    -- greedy decoding
    local want = tolist1(E.generated)
    local okg, got = pcall(greedy_forward, model, E.prompt, #want)
    if T.ok(okg, name .. ": greedy by full recompute runs", got) then
      T.ok(same_tokens(got, want), name .. ": greedy 50 tokens by full recompute (model:forward)",
        select(2, same_tokens(got, want)))
    end
    if model.session then
      local oks, got2 = pcall(greedy_session, model, E.prompt, #want)
      if T.ok(oks, name .. ": greedy with the KV cache runs", got2) then
        T.ok(same_tokens(got2, want), name .. ": greedy 50 tokens with the KV cache (model:session)",
          select(2, same_tokens(got2, want)))
      end
      -- session logits at every position of each row of ids: row 1 in one
      -- append, row 2 as 5 tokens then 11 more (a multi-token append that
      -- starts mid-cache: positions, masks and local windows must carry on)
      for b = 1, 2 do
        local want_b = E.logits:narrow(1, b, 1)
        local okp, lg = pcall(function()
          local s = model:session()
          local ids = tolist1(row(E.ids, b))
          if b == 1 then return s:append(ids, {all = true}) end
          s:append(table.move(ids, 1, 5, 1, {}))
          return s:append(table.move(ids, 6, #ids, 1, {}), {all = true})
        end)
        local how = b == 1 and "one append of 16" or "append 5, then 11 (positions 6..16)"
        if T.ok(okp, name .. ": session logits, row " .. b .. ", " .. how .. ", runs", lg) then
          if b == 2 then want_b = want_b:narrow(2, 6, want_b:size(2) - 5) end
          near(lg:reshape(want_b:shape()), want_b, TOL_LOGITS, name .. ": session logits, row " .. b .. ", " .. how)
        end
      end
    else
      T.ok(false, name .. ": model:session exists (KV-cache inference)")
    end
    if gl.generate then
      -- ids in, prompt + new ids out (minGPT's convention, lua/genlab/generate.lua)
      local okG, res = pcall(gl.generate, model, tolist1(E.prompt), {max_new = #want, greedy = true})
      if T.ok(okG, name .. ": gl.generate greedy (prompt list) runs", res) then
        local toks = table.move(res, E.prompt:numel() + 1, #res, 1, {})
        T.ok(same_tokens(toks, want), name .. ": gl.generate greedy 50 tokens", select(2, same_tokens(toks, want)))
      end
    else
      T.ok(true, name .. ": # SKIP gl.generate is missing")
    end
    if model.generate then
      local okM, res = pcall(model.generate, model, E.prompt, {max_new = #want, greedy = true})
      if T.ok(okM, name .. ": model:generate greedy (prompt tensor [1,8]) runs", res) then
        local toks = type(res) == "table" and res or tolist1(res)
        toks = table.move(toks, E.prompt:numel() + 1, #toks, 1, {})
        T.ok(same_tokens(toks, want), name .. ": model:generate greedy 50 tokens", select(2, same_tokens(toks, want)))
      end
    end
  end
  ::continue::
end

T.done()
