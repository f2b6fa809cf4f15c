-- GPT checkpoints: genlab's own format, Hugging Face export/import (GPT-2,
-- GPT-Neo, LLaMA layouts), llama2.c .bin files written here with
-- string.pack, and clear errors for malformed files.
local T = require "tap"
local gl = require "genlab"

local F = require "files"
local write, read = F.spit, F.slurp

local tmp, path = F.tmpdir()

local function max_abs_diff(a, b) return (a - b):abs():max():item() end

gl.seed(5)
local ids = gl.randint(0, 11, { 2, 9 })

local function build(arch, extra)
  local cfg = { arch = arch, vocab = 11, block = 16, n_layer = 2, n_head = 4, n_embd = 16 }
  if arch == "llama" then cfg.n_kv_head = 2 end
  if arch == "neo" then cfg.window = 3 end
  for k, v in pairs(extra or {}) do cfg[k] = v end
  local m = gl.models.gpt(cfg)
  m:eval()
  return m
end

-- genlab checkpoint ------------------------------------------------------------------------------
for _, arch in ipairs{ "gpt2", "neo", "llama" } do
  local m = build(arch, arch == "llama" and { tie_head = true, rope_theta = 500 } or { gelu_tanh = true })
  local p = path(arch .. ".safetensors")
  gl.models.save(m, p, { tokenizer = "chars:abc" })
  local m2, info = gl.models.load(p)
  m2:eval()
  T.eq(info.format, "genlab", arch .. ": save/load detects the genlab format")
  T.eq(info.tokenizer_text or info.tokenizer, "chars:abc", arch .. ": the tokenizer string comes back")
  local c1, c2 = m:config(), m2:config()
  T.ok(c1.rope_theta == c2.rope_theta and c1.gelu_tanh == c2.gelu_tanh and c1.tie_head == c2.tie_head and
    table.concat(c1.local_layers, ",") == table.concat(c2.local_layers, ","), arch .. ": config round-trips")
  T.eq(max_abs_diff(m:forward(ids), m2:forward(ids)), 0, arch .. ": save/load round trip gives the same logits")
end

do -- a tied head is stored once and stays tied
  local m = build("gpt2")
  local p = path("tied.safetensors")
  m:save(p, { tokenizer = "t" })
  local _, inf = gl.models.load(p)
  T.eq(inf.tokenizer_text or inf.tokenizer, "t", "model:save(path, {tokenizer=...}) is gl.models.save")
  local tensors = gl.load(p)
  T.ok(tensors["lm_head.weight"] == nil and tensors["transformer.wte.weight"] ~= nil,
    "save: a tied head is stored once (under transformer.wte.weight)")
  local m2 = gl.models.load(p)
  gl.no_grad(function() m2.transformer.wte.weight:fill_(0.25) end)
  T.eq(m2.lm_head.weight:getflat(1), 0.25, "load: the head is still tied")
end

-- Hugging Face export and import ---------------------------------------------------------------------
for _, arch in ipairs{ "gpt2", "llama" } do
  local m = build(arch)
  local dir = path("hf-" .. arch)
  gl.models.export(m, dir, { format = "hf" })
  local cfgtext = read(dir .. "/config.json")
  T.ok(cfgtext:find(arch == "gpt2" and '"GPT2LMHeadModel"' or '"LlamaForCausalLM"', 1, true) ~= nil,
    arch .. ": export writes config.json with the HF architecture")
  local tensors = gl.load(dir .. "/model.safetensors")
  if arch == "gpt2" then
    local w = tensors["transformer.h.0.attn.c_attn.weight"]
    T.eq(table.concat(w:shape(), ","), "16,48", "gpt2 export: Conv1D weights are [in, out]")
    T.eq(w:getflat(2), m.transformer.h[1].attn.c_attn.weight:getflat(1 + 16),
      "gpt2 export: c_attn is the transpose of the Linear weight")
    T.ok(tensors["lm_head.weight"] == nil, "gpt2 export: a tied lm_head is left out, as HF does")
  else
    T.ok(tensors["lm_head.weight"] ~= nil and tensors["model.layers.1.mlp.down_proj.weight"] ~= nil,
      "llama export: HF names")
  end
  local m2, info = gl.models.load(dir)
  m2:eval()
  T.eq(info.format, "hf", arch .. ": load detects an HF directory")
  T.near(max_abs_diff(m:forward(ids), m2:forward(ids)), 0, 1e-6, arch .. ": export then load gives the same logits")
  local m3 = gl.models.load(dir .. "/config.json")
  T.eq(max_abs_diff(m2:forward(ids), m3:forward(ids)), 0, arch .. ": load also takes config.json")
end

do -- a GPT-Neo checkpoint in HF's layout (q/k/v/out_proj, nn.Linear MLP), written here
  local m = build("neo", { gelu_tanh = true })
  local sd, t = m:state_dict(), {}
  local C = 16
  for l = 0, 1 do
    local pre = "transformer.h." .. l .. "."
    local w = sd[pre .. "attn.c_attn.weight"]
    t[pre .. "attn.attention.q_proj.weight"] = w:narrow(1, 1, C):clone()
    t[pre .. "attn.attention.k_proj.weight"] = w:narrow(1, C + 1, C):clone()
    t[pre .. "attn.attention.v_proj.weight"] = w:narrow(1, 2 * C + 1, C):clone()
    t[pre .. "attn.attention.out_proj.weight"] = sd[pre .. "attn.c_proj.weight"]
    t[pre .. "attn.attention.out_proj.bias"] = sd[pre .. "attn.c_proj.bias"]
    for _, n in ipairs{ "ln_1.weight", "ln_1.bias", "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias",
      "mlp.c_proj.weight", "mlp.c_proj.bias" } do
      t[pre .. n] = sd[pre .. n]
    end
  end
  for _, n in ipairs{ "wte.weight", "wpe.weight", "ln_f.weight", "ln_f.bias" } do t["transformer." .. n] = sd["transformer." .. n] end
  local dir = path("neo")
  os.execute("mkdir -p " .. dir)
  gl.save(dir .. "/model.safetensors", t)
  write(dir .. "/config.json", [==[{"model_type": "gpt_neo", "vocab_size": 11, "max_position_embeddings": 16,
    "hidden_size": 16, "num_layers": 2, "num_heads": 4, "intermediate_size": null, "window_size": 3,
    "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5,
    "attention_types": [[["global", "local"], 1]]}]==])
  local m2 = gl.models.load(dir)
  m2:eval()
  T.eq(table.concat(m2:config().local_layers, ","), "2", "neo: attention_types expand to local layer 2")
  T.eq(max_abs_diff(m:forward(ids), m2:forward(ids)), 0, "neo: HF GPT-Neo layout loads (q/k/v fused into c_attn)")
end

-- llama2.c .bin ------------------------------------------------------------------------------------------
-- Writes m (a llama model, HF convention) as llama2.c does: q/k rows back in
-- Meta's interleaved order: Meta row h*HS + 2i + s holds HF row h*HS + s*HS/2 + i.
local function write_llama2c(m, p, opts)
  opts = opts or {}
  local c = m:config()
  local D, F, L, V, HS = c.n_embd, c.n_hidden, c.n_layer, c.vocab_size, c.n_embd // c.n_head
  local sd = m:state_dict()
  local parts = { string.pack("<i4i4i4i4i4i4i4", D, F, L, c.n_head, c.n_kv_head, c.tie_head and V or -V, c.block_size) }
  local function floats(t, n)
    local out = {}
    for i = 1, n or t:numel() do out[i] = string.pack("<f", t:getflat(i)) end
    parts[#parts + 1] = table.concat(out)
  end
  local function per_layer(name) for l = 0, L - 1 do floats(sd[("model.layers.%d.%s"):format(l, name)]) end end
  local function meta_rows(w, H)
    local rows, cols = w:shape()[1], w:shape()[2]
    local out = {}
    for h = 0, H - 1 do
      for i = 0, HS // 2 - 1 do
        for s = 0, 1 do
          local src = h * HS + s * HS // 2 + i
          for j = 1, cols do out[#out + 1] = string.pack("<f", w:getflat(src * cols + j)) end
        end
      end
    end
    assert(#out == rows * cols)
    parts[#parts + 1] = table.concat(out)
  end
  floats(sd["model.embed_tokens.weight"])
  per_layer("input_layernorm.weight")
  for l = 0, L - 1 do meta_rows(sd[("model.layers.%d.self_attn.q_proj.weight"):format(l)], c.n_head) end
  for l = 0, L - 1 do meta_rows(sd[("model.layers.%d.self_attn.k_proj.weight"):format(l)], c.n_kv_head) end
  per_layer("self_attn.v_proj.weight")
  per_layer("self_attn.o_proj.weight")
  per_layer("post_attention_layernorm.weight")
  per_layer("mlp.gate_proj.weight")
  per_layer("mlp.down_proj.weight")
  per_layer("mlp.up_proj.weight")
  floats(sd["model.norm.weight"])
  parts[#parts + 1] = string.rep("\0", 4 * c.block_size * HS) -- freq_cis_real, freq_cis_imag
  if not c.tie_head then floats(sd["lm_head.weight"]) end
  local s = table.concat(parts)
  if opts.mutate then s = opts.mutate(s) end
  write(p, s)
end

for _, tie in ipairs{ true, false } do
  local m = build("llama", { tie_head = tie, n_hidden = 24 })
  -- non-trivial norm weights, so a misplaced tensor shows
  gl.no_grad(function()
    for _, e in ipairs(m:named_parameters()) do
      if e[1]:find("norm") then e[2]:copy_(gl.rand(e[2]:shape()) + 0.5) end
    end
  end)
  local p = path(tie and "tied.bin" or "untied.bin")
  write_llama2c(m, p)
  local m2, info = gl.models.load(p)
  m2:eval()
  local what = tie and "shared classifier" or "separate classifier"
  T.eq(info.format, "llama2c", "llama2.c: format detected (" .. what .. ")")
  T.eq(m2:config().tie_head, tie, "llama2.c: vocab_size sign gives the classifier sharing (" .. what .. ")")
  T.near(max_abs_diff(m:forward(ids), m2:forward(ids)), 0, 1e-5,
    "llama2.c: .bin loads (q/k permuted to rotate_half) and matches forward (" .. what .. ")")
end

do -- malformed llama2.c files
  local m = build("llama", { n_hidden = 24 })
  local good = path("good.bin")
  write_llama2c(m, good)
  local s = read(good)
  local function bad(name, bytes, pattern, what)
    write(path(name), bytes)
    T.raises(function() gl.models.load(path(name)) end, pattern, what)
  end
  bad("trunc.bin", s:sub(1, #s - 100), "truncated?", "llama2.c: a truncated file is rejected")
  bad("extra.bin", s .. "xxxx", "wrong header or not a llama2.c file?", "llama2.c: trailing bytes are rejected")
  bad("neg.bin", string.pack("<i4i4i4i4i4i4i4", -16, 24, 2, 4, 2, 11, 16) .. s:sub(29), "bad llama2.c header field dim",
    "llama2.c: a negative dim is rejected")
  bad("heads.bin", string.pack("<i4i4i4i4i4i4i4", 16, 24, 2, 4, 3, 11, 16) .. s:sub(29), "n_kv_heads",
    "llama2.c: n_kv_heads must divide n_heads")
  bad("huge.bin", string.pack("<i4i4i4i4i4i4i4", 0x7fffffff, 0x7fffffff, 0x7fffffff, 1, 1, 0x7fffffff, 16) .. s:sub(29),
    "llama2.c", "llama2.c: a header with enormous sizes is rejected without allocating")
  bad("short.bin", "abc", "too short for a llama2.c header", "llama2.c: a 3-byte file is rejected")
  bad("v1.bin", string.pack("<I4i4", 0x616b3432, 1) .. s:sub(9), "version 1+", "llama2.c: version 1 exports are named")
end

-- malformed HF checkpoints and config mismatches -------------------------------------------------------------
do
  local m = build("gpt2")
  local dir = path("hf-bad")
  gl.models.export(m, dir)
  local cfg = read(dir .. "/config.json")
  write(dir .. "/config.json", (cfg:gsub('"n_embd":%s*16', '"n_embd": 32')))
  local ok, err = pcall(gl.models.load, dir)
  T.ok(not ok and err:find("model.safetensors: 'transformer.wte.weight' has shape [11,16], config expects [11,32]", 1, true),
    "hf: a shape that disagrees with config.json names the tensor and both shapes", err)
  write(dir .. "/config.json", (cfg:gsub('"gpt2"', '"bert"')))
  T.raises(function() gl.models.load(dir) end, "model_type 'bert' is not supported", "hf: unsupported model_type")
  write(dir .. "/config.json", "{not json")
  T.raises(function() gl.models.load(dir) end, "not a JSON object", "hf: a broken config.json")
  write(dir .. "/config.json", cfg)
  local t = gl.load(dir .. "/model.safetensors")
  t["transformer.h.1.mlp.c_fc.bias"] = nil
  gl.save(dir .. "/model.safetensors", t)
  T.raises(function() gl.models.load(dir) end, "tensor 'transformer.h.1.mlp.c_fc.bias' is missing",
    "hf: a missing tensor is named")
  t["transformer.h.1.mlp.c_fc.bias"] = gl.zeros{ 64 }
  t["transformer.h.9.extra"] = gl.zeros{ 2 }
  gl.save(dir .. "/model.safetensors", t)
  T.raises(function() gl.models.load(dir) end, "unexpected tensor 'transformer.h.9.extra'", "hf: an unknown tensor is named")
  write(dir .. "/model.safetensors", read(dir .. "/model.safetensors"):sub(1, 200))
  T.raises(function() gl.models.load(dir) end, "load:", "hf: a truncated model.safetensors is rejected")
  os.remove(dir .. "/model.safetensors")
  T.raises(function() gl.models.load(dir) end, "model.safetensors", "hf: a missing model.safetensors is named")
end

do -- genlab checkpoints with bad metadata
  local m = build("gpt2")
  local t = {}
  for _, e in ipairs(m:named_parameters()) do t[e[1]] = e[2] end
  local p = path("badcfg.safetensors")
  gl.save(p, t, { metadata = { format = "genlab-gpt", version = "1", config = '{"arch": "gpt2", "vocab_size": 11}' } })
  T.raises(function() gl.models.load(p) end, "'block_size' is missing", "genlab: a config missing a field is named")
  gl.save(p, t, { metadata = { format = "genlab-gpt", version = "7", config = "{}" } })
  T.raises(function() gl.models.load(p) end, "version 7 is not supported", "genlab: an unknown version is rejected")
  T.raises(function() gl.models.load(path("nothing-here")) end, "No such file", "load: a missing path")
  T.raises(function() gl.models.save(m, path("x"), { tokenizer = 5 }) end, "tokenizer must be a string",
    "save: tokenizer must be a string")
  T.raises(function() gl.models.export(m, path("x"), { format = "gguf" }) end, "unknown format 'gguf'",
    "export: unknown format")
  T.raises(function() gl.models.export(build("neo"), path("neo-x")) end, "GPT-Neo models cannot be exported",
    "export: GPT-Neo is refused with a reason")
end

do -- a tokenizer next to the weights is attached (uses ../shared/data when present)
  local src = "/work/shared/data/llama2c-tokenizer.bin"
  local f = io.open(src, "rb")
  if not f then
    T.ok(true, "# SKIP tokenizer next to the weights: " .. src .. " is absent")
  else
    local dir = path("withtok")
    os.execute("mkdir -p " .. dir)
    write(dir .. "/tokenizer.bin", f:read("a"))
    f:close()
    local m = gl.models.gpt{ arch = "llama", vocab = 32000, block = 8, n_layer = 1, n_head = 2, n_embd = 8 }
    m:save(dir .. "/model.safetensors")
    local _, info = gl.models.load(dir .. "/model.safetensors")
    T.ok(info.tokenizer ~= nil and tostring(info.tokenizer):find("32000", 1, true) ~= nil,
      "load: the tokenizer.bin next to the weights is attached", tostring(info.tokenizer))
    local _, none = gl.models.load(dir .. "/model.safetensors", { tokenizer = false })
    T.ok(none.tokenizer == nil, "load{tokenizer = false} skips the search")
  end
end

F.remove(tmp)
T.done()
