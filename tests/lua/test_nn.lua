-- gl.nn: C layers, Lua modules and containers, state dicts, modes, init.
-- Names in state dicts are PyTorch's ("0.weight"); positions typed in Lua
-- (seq[1]) are 1-based; embedding ids are 0-based.
local T = require "tap"
local gl = require "genlab"
local nn = gl.nn

local function shape_of(t) return table.concat(t:shape(), ",") end

local function keys_of(names_or_pairs)
  local out = {}
  for i, e in ipairs(names_or_pairs) do out[i] = type(e) == "table" and e[1] or e end
  return table.concat(out, " ")
end

local function max_abs(t)
  local m = 0
  for i = 1, t:numel() do m = math.max(m, math.abs(t:getflat(i))) end
  return m
end

local function stats(t)
  local s, s2, n = 0, 0, t:numel()
  for i = 1, n do
    local v = t:getflat(i)
    s, s2 = s + v, s2 + v * v
  end
  local mean = s / n
  return mean, math.sqrt(s2 / n - mean * mean)
end

-- ---- Linear ------------------------------------------------------------------------------
gl.seed(1)
local lin = nn.Linear { in_features = 4, out_features = 3 }
T.eq(shape_of(lin.weight), "3,4", "Linear weight is [out, in]")
T.eq(shape_of(lin.bias), "3", "Linear bias is [out]")
T.ok(lin.weight.requires_grad and lin.bias.requires_grad, "Linear parameters require grad")
do
  local x = gl.randn(5, 4)
  local y = lin(x)
  local W, b, err = lin.weight, lin.bias, 0
  for i = 1, 5 do
    for o = 1, 3 do
      local want = b[o]
      for k = 1, 4 do want = want + x[i][k] * W[o][k] end
      err = math.max(err, math.abs(y[i][o] - want))
    end
  end
  T.ok(err < 1e-5, "Linear forward is x @ W^T + b", "max error " .. err)
  T.eq(shape_of(lin:forward(gl.randn(2, 7, 4))), "2,7,3", "Linear acts on the last dim of any batch shape")
  T.raises(function() lin(gl.randn(2, 5)) end, "Linear: input [2,5] does not end in the layer's size 4",
    "Linear names the bad input shape")
end
do
  gl.seed(2)
  local big = nn.Linear { in_features = 400, out_features = 300 }
  local bound = 1 / math.sqrt(400)
  local mw, mb = max_abs(big.weight), max_abs(big.bias)
  T.ok(mw <= bound and mw > 0.98 * bound, "Linear weight ~ U(-1/sqrt(in), 1/sqrt(in)) as PyTorch", mw)
  T.ok(mb <= bound and mb > 0.9 * bound, "Linear bias ~ U(-1/sqrt(in), 1/sqrt(in))", mb)
  local _, std = stats(big.weight)
  T.near(std, bound / math.sqrt(3), 2e-4, "Linear weight has the std of that uniform")
  gl.seed(2)
  local again = nn.Linear { in_features = 400, out_features = 300 }
  T.eq(again.weight:getflat(777), big.weight:getflat(777), "one seed gives the same initialization")
end
local nb = nn.Linear { in_features = 2, out_features = 2, bias = false }
T.eq(nb.bias, nil, "bias = false registers no bias")
T.eq(keys_of(nb:named_parameters()), "weight", "a Linear without bias has only a weight")
T.raises(function() nn.Linear { in_features = 4, out_features = 3, bais = true } end, "Linear: unknown option 'bais'",
  "constructors reject unknown keys")
T.raises(function() nn.Linear { in_features = 4 } end, "Linear: 'out_features' must be an integer (got nil)",
  "constructors name missing keys")
T.raises(function() nn.Linear { in_features = 4, out_features = 2.5 } end, "'out_features' must be an integer (got 2.5)",
  "sizes must be integers")
T.eq(#nn.Linear({ in_features = 4.0, out_features = 2 }):parameters(), 2, "integral floats are accepted as sizes")

-- ---- Embedding, norms, dropout, activations -----------------------------------------------
gl.seed(3)
do
  local emb = nn.Embedding { num = 10, dim = 3 }
  local out = emb(gl.tensor({ { 0, 9 }, { 4, 4 } }, { dtype = "i64" }))
  T.eq(shape_of(out), "2,2,3", "Embedding maps ids [2,2] to [2,2,3]")
  T.eq(out[1][2][3], emb.weight[10][3], "Embedding id 9 (0-based) is row 10")
  T.eq(out[2][1][1], emb.weight[5][1], "Embedding id 4 is row 5")
  local big = nn.Embedding { num = 1000, dim = 50 }
  local mean, std = stats(big.weight)
  T.ok(math.abs(mean) < 0.02 and math.abs(std - 1) < 0.02, "Embedding weight ~ N(0, 1)", mean .. " " .. std)
end
do
  local ln = nn.LayerNorm { dim = 4 }
  T.eq(keys_of(ln:named_parameters()), "weight bias", "LayerNorm has weight and bias")
  T.eq(ln.weight:getflat(1) + ln.bias:getflat(1), 1, "LayerNorm starts as weight 1, bias 0")
  local x = gl.tensor { { 1, 2, 3, 6 }, { -1, 0, 0, 5 } }
  local y = ln(x)
  local err = 0
  for r = 1, 2 do
    local m, v = 0, 0
    for c = 1, 4 do m = m + x[r][c] / 4 end
    for c = 1, 4 do v = v + (x[r][c] - m) ^ 2 / 4 end
    for c = 1, 4 do err = math.max(err, math.abs(y[r][c] - (x[r][c] - m) / math.sqrt(v + 1e-5))) end
  end
  T.ok(err < 1e-5, "LayerNorm normalizes the last dim (biased variance, eps 1e-5)", err)
  T.eq(#nn.LayerNorm({ dim = 4, affine = false }):parameters(), 0, "LayerNorm affine = false has no parameters")
  T.eq(keys_of(nn.LayerNorm({ dim = 4, bias = false }):named_parameters()), "weight", "LayerNorm bias = false")
  local rms = nn.RMSNorm { dim = 3, eps = 1e-6 }
  local z = rms(gl.tensor { { 3, 4, 0 } })
  local r = math.sqrt((9 + 16) / 3 + 1e-6)
  T.near(z[1][2], 4 / r, 1e-5, "RMSNorm is x / sqrt(mean(x^2) + eps)")
end
do
  gl.seed(4)
  local drop = nn.Dropout { p = 0.5 }
  local x = gl.ones(1000)
  local y = drop(x)
  local zeros, twos = 0, 0
  for i = 1, 1000 do
    local v = y:getflat(i)
    if v == 0 then zeros = zeros + 1 elseif v == 2 then twos = twos + 1 end
  end
  T.ok(zeros + twos == 1000 and zeros > 400 and zeros < 600, "Dropout in training zeroes about p and scales by 1/(1-p)",
    zeros .. " zeros, " .. twos .. " twos")
  T.eq(drop:eval(), drop, "eval() returns the module")
  T.eq(drop:training(), false, "eval() clears training")
  T.eq(max_abs(drop(x) - x), 0, "Dropout in eval mode is the identity")
  T.raises(function() nn.Dropout { p = 1 } end, "Dropout: p must be in [0, 1)", "Dropout checks p")
end
do
  local x = gl.tensor { -2, -0.5, 0, 0.5, 2 }
  T.near(nn.ReLU {}(x), gl.relu(x), 0, "ReLU module")
  T.near(nn.SiLU {}(x), gl.silu(x), 0, "SiLU module")
  T.near(nn.Tanh {}(x), gl.tanh(x), 0, "Tanh module")
  T.near(nn.Sigmoid {}(x), gl.sigmoid(x), 0, "Sigmoid module")
  local lr = nn.LeakyReLU { slope = 0.2 }(x)
  T.near(lr:getflat(1), -0.4, 1e-6, "LeakyReLU uses its slope")
  local g = nn.GELU {}(x)
  local gt = nn.GELU { approximate = "tanh" }(x)
  local v = 2
  local exact = v * 0.5 * (1 + (function(z) -- erf by its series, enough digits for z = sqrt(2)
    local s, term, n = 0, z, 0
    repeat
      s = s + term / (2 * n + 1)
      n = n + 1
      term = -term * z * z / n
    until math.abs(term) < 1e-12
    return 2 / math.sqrt(math.pi) * s
  end)(v / math.sqrt(2)))
  local approx = 0.5 * v * (1 + math.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v ^ 3)))
  T.near(g:getflat(5), exact, 1e-5, "GELU is exact by default")
  T.near(gt:getflat(5), approx, 1e-5, "GELU{approximate='tanh'} is the tanh form")
  T.raises(function() nn.GELU { approximate = "fast" } end, 'approximate must be "none" or "tanh"', "GELU checks approximate")
  T.raises(function() nn.ReLU { inplace = true } end, "ReLU: unknown option 'inplace'", "activations take no options")
end

-- ---- containers, names and ordering --------------------------------------------------------
gl.seed(5)
local net = nn.Sequential {
  nn.Linear { in_features = 3, out_features = 4 },
  nn.ReLU {},
  nn.Sequential { nn.Linear { in_features = 4, out_features = 2 }, nn.LayerNorm { dim = 2 } },
}
do
  local sd, names = net:state_dict(), keys_of(net:named_tensors())
  T.eq(names, "0.weight 0.bias 2.0.weight 2.0.bias 2.1.weight 2.1.bias",
    "state_dict names are dotted, 0-based, in PyTorch's order (named_tensors)")
  local n = 0
  for k, v in pairs(sd) do n = n + (gl.is_tensor(v) and names:find(k, 1, true) and 1 or 0) end
  T.eq(n, 6, "state_dict maps every name to its tensor")
  T.eq(keys_of(net:named_parameters()), names, "named_parameters has the same order")
  T.eq(#net:parameters(), 6, "parameters() lists every tensor")
  T.eq(net:num_parameters(), 12 + 4 + 8 + 2 + 2 + 2, "num_parameters counts elements")
  T.eq(#net, 3, "#seq counts children")
  T.ok(rawequal(net[1], net[1]), "seq[i] is the same module each time")
  T.eq(rawequal(net[3][1], net[3][1]), true, "C modules come back as the same userdata")
  T.eq(keys_of(net:named_children()), "0 1 2", "named_children")
  local y = net(gl.randn(5, 3))
  T.eq(shape_of(y), "5,2", "Sequential chains forward")
  local s = tostring(net)
  T.ok(s:find("Sequential()\n  (0): Linear(in_features=3, out_features=4, bias=true)  weight [4,3]  bias [4]", 1, true)
    and s:find("\n    (1): LayerNorm(dim=2, eps=1e-05)  weight [2]  bias [2]", 1, true)
    and s:find("parameters: 30, 0%.00 MiB$"), "tostring is a tree with shapes and the count", s)
end

-- load_state_dict: copies, strict checks, messages, nothing changed on failure
do
  gl.seed(6)
  local other = nn.Sequential {
    nn.Linear { in_features = 3, out_features = 4 },
    nn.ReLU {},
    nn.Sequential { nn.Linear { in_features = 4, out_features = 2 }, nn.LayerNorm { dim = 2 } },
  }
  T.ok(other[1].weight:getflat(1) ~= net[1].weight:getflat(1), "two models start different")
  local missing, unexpected = other:load_state_dict(net:state_dict())
  T.eq(#missing + #unexpected, 0, "a full load reports nothing missing or unexpected")
  T.eq(other[1].weight:getflat(5), net[1].weight:getflat(5), "load_state_dict copies values in")
  gl.no_grad(function() net[1].weight:setflat(5, 42) end)
  T.ok(other[1].weight:getflat(5) ~= 42, "loaded tensors are copies, not shared")

  local sd = net:state_dict()
  sd["0.bias"] = nil
  sd["extra"] = gl.zeros(1)
  T.raises(function() other:load_state_dict(sd) end,
    "load_state_dict: missing keys '0.bias'; unexpected keys 'extra'", "strict load lists missing and unexpected keys")
  local m2, u2 = other:load_state_dict(sd, { strict = false })
  T.eq(keys_of(m2) .. "|" .. keys_of(u2), "0.bias|extra", "strict = false returns missing and unexpected names")
  T.eq(other[1].weight:getflat(5), 42, "strict = false loads the keys that match")

  local fc = nn.Module { name = "Net", init = function(self) self.fc = nn.Linear { in_features = 4, out_features = 3 } end }()
  local before = fc.fc.bias:getflat(1)
  T.raises(function() fc:load_state_dict { ["fc.weight"] = gl.zeros(4, 3), ["fc.bias"] = gl.zeros(3) } end,
    "load_state_dict: 'fc.weight' has shape [4,3] in the file, [3,4] in the model", "a shape mismatch names both shapes")
  T.eq(fc.fc.bias:getflat(1), before, "a failed load changes nothing")
  T.raises(function() fc:load_state_dict({ ["fc.weight"] = gl.zeros({ 3, 4 }, { dtype = "i64" }), ["fc.bias"] = gl.zeros(3) }) end,
    "'fc.weight' has dtype i64 in the file, f32 in the model", "a dtype mismatch is an error")
  T.raises(function() lin:load_state_dict { weight = gl.zeros(3, 4), bias = "x" } end, "'bias' is a string, not a tensor",
    "entries must be tensors")
  T.raises(function() lin:load_state_dict({}, { strcit = false }) end, "unknown option 'strcit'", "load options are checked")
end

-- ---- Lua modules --------------------------------------------------------------------------------
local Block = nn.Module {
  name = "Block",
  init = function(self, cfg)
    self.fc = nn.Linear { in_features = cfg.d, out_features = cfg.d }
    self:register_parameter("scale", gl.ones { cfg.d })
    self:register_buffer("shift", gl.zeros { cfg.d })
    self.act = nn.GELU { approximate = "tanh" }
    self.note = "plain field"
  end,
  forward = function(self, x) return self.act(self.fc(x)) * self.scale + self.shift end,
  extra_repr = function(self) return "d=" .. self.scale:numel() end,
}
local Outer = nn.Module {
  name = "Outer",
  init = function(self)
    self:register_parameter("w0", gl.randn { 2 })
    self.blocks = nn.ModuleList { Block { d = 2 }, Block { d = 2 } }
  end,
  forward = function(self, x)
    for _, b in ipairs(self.blocks) do x = b(x) end
    return x + self.w0
  end,
}
do
  gl.seed(7)
  local m = Outer()
  T.eq(keys_of(m:named_tensors()),
    "w0 blocks.0.scale blocks.0.shift blocks.0.fc.weight blocks.0.fc.bias blocks.1.scale blocks.1.shift blocks.1.fc.weight blocks.1.fc.bias",
    "a Lua module's state_dict: own parameters, own buffers, then children")
  T.eq(keys_of(m:named_parameters()),
    "w0 blocks.0.scale blocks.0.fc.weight blocks.0.fc.bias blocks.1.scale blocks.1.fc.weight blocks.1.fc.bias",
    "named_parameters leaves buffers out")
  T.eq(keys_of(m:named_buffers()), "blocks.0.shift blocks.1.shift", "named_buffers")
  T.eq(m.blocks[2].note, "plain field", "plain values stay plain fields")
  T.ok(m.blocks[1].scale.requires_grad, "register_parameter turns on requires_grad")
  T.eq(shape_of(m(gl.randn(3, 2))), "3,2", "a Lua module runs its forward through m(x)")
  T.eq(#m.blocks, 2, "#ModuleList")
  T.raises(function() m.blocks(gl.randn(1, 2)) end, "forward: ModuleList has no forward", "ModuleList has no forward")
  m:eval()
  T.ok(not m:training() and not m.blocks[2]:training() and not m.blocks[2].fc:training(),
    "eval() reaches Lua and C children")
  m:train()
  T.ok(m.blocks[1].act:training(), "train() turns them back on")
  local s = tostring(m)
  T.ok(s:find("Outer()  w0 [2]\n  (blocks): ModuleList\n    (0): Block(d=2)  scale [2]  shift [2] (buffer)\n      (fc): Linear", 1, true),
    "a Lua module prints like a C one", s)
  T.raises(function() m:register_parameter("w0", gl.ones(1)) end, "Outer: 'w0' is already registered",
    "names are unique")
  T.raises(function() m:register_parameter("a.b", gl.ones(1)) end, "without '.'", "names have no dots")
  T.raises(function() m.blocks[1]:register_buffer("note", gl.ones(1)) end, "'note' is already registered",
    "a plain field's name cannot be registered")
  T.raises(function() nn.Module { name = "X", size = 3 } end, "Module: unknown option 'size'", "Module checks its spec")

  -- freezing and gradients
  m.blocks[1]:requires_grad_(false)
  T.eq(m:num_parameters { trainable = true }, 2 + 2 + 4 + 2, "requires_grad_(false) freezes a subtree")
  T.ok(tostring(m):find("scale [2] (frozen)", 1, true), "frozen parameters show in the summary")
  local loss = m(gl.randn(4, 2)):sum()
  loss:backward()
  T.ok(m.blocks[1].fc.weight.grad == nil and m.blocks[2].fc.weight.grad ~= nil, "frozen parameters get no gradient")
  m:zero_grad()
  T.ok(m.blocks[2].fc.weight.grad == nil and m.w0.grad == nil, "zero_grad drops every gradient")

  -- round trip through a fresh instance
  gl.seed(8)
  local copy = Outer()
  copy:load_state_dict(m:state_dict())
  local x = gl.randn(3, 2)
  T.near(copy(x), m(x), 0, "a Lua module round-trips through state_dict")
end

-- weight tying: one tensor under two names
do
  local Tied = nn.Module {
    name = "Tied",
    init = function(self)
      self.emb = nn.Embedding { num = 5, dim = 3 }
      self.head = nn.Linear { in_features = 3, out_features = 5, bias = false }
      self.head.weight = self.emb.weight
    end,
  }
  local t = Tied()
  T.eq(keys_of(t:named_parameters()), "emb.weight", "a shared tensor is listed once by named_parameters")
  T.eq(keys_of(t:named_tensors()), "emb.weight head.weight", "and under every name by state_dict")
  local sd = t:state_dict()
  T.ok(sd["emb.weight"] and sd["head.weight"], "state_dict holds both names")
  gl.no_grad(function() t.emb.weight:setflat(1, 7) end)
  T.eq(t.head.weight:getflat(1), 7, "assigning a tensor to a C module's parameter shares it")
  T.raises(function() t.head.weight = gl.zeros(2, 2) end, "cannot replace it by f32 [2,2]", "replacement keeps the shape")
  T.raises(function() t.head.foo = gl.zeros(2, 2) end, "cannot set 'foo'", "C modules take no new fields")
end

-- life cycle
do
  local m = nn.Linear { in_features = 2, out_features = 2 }
  local w = m.weight
  m:free()
  T.raises(function() m:parameters() end, "attempt to use a freed module", "use after free raises")
  m:free()
  T.eq(w:numel(), 4, "tensors taken out of a freed module stay alive")
end

-- ---- init ---------------------------------------------------------------------------------------
do
  local init = nn.init
  gl.seed(9)
  local t = gl.empty and gl.empty(200, 300) or gl.zeros(200, 300)
  T.eq(init.ones_(t), t, "init functions return their tensor")
  T.eq(t:getflat(123), 1, "ones_")
  init.constant_(t, 0.25)
  T.eq(t:getflat(5), 0.25, "constant_")
  init.zeros_(t)
  T.eq(max_abs(t), 0, "zeros_")
  init.uniform_(t, -2, 3)
  local lo, hi = math.huge, -math.huge
  for i = 1, t:numel() do lo = math.min(lo, t:getflat(i)); hi = math.max(hi, t:getflat(i)) end
  T.ok(lo >= -2 and lo < -1.99 and hi < 3 and hi > 2.99, "uniform_(t, a, b) covers [a, b)")
  init.normal_(t, { mean = 1, std = 0.5 })
  local mean, std = stats(t)
  T.ok(math.abs(mean - 1) < 0.01 and math.abs(std - 0.5) < 0.01, "normal_ with an options table", mean .. " " .. std)
  -- fans of [200, 300]: fan_in 300, fan_out 200
  init.xavier_uniform_(t, 2)
  local b = 2 * math.sqrt(6 / 500)
  T.ok(max_abs(t) <= b and max_abs(t) > 0.99 * b, "xavier_uniform_ bound gain * sqrt(6 / (fan_in + fan_out))")
  init.xavier_normal_(t)
  _, std = stats(t)
  T.near(std, math.sqrt(2 / 500), 1e-3, "xavier_normal_ std sqrt(2 / (fan_in + fan_out))")
  init.kaiming_uniform_(t, 0, "fan_in", "relu")
  b = math.sqrt(6 / 300)
  T.ok(max_abs(t) <= b and max_abs(t) > 0.99 * b, "kaiming_uniform_ relu bound sqrt(6 / fan_in)")
  init.kaiming_normal_(t, { mode = "fan_out", nonlinearity = "relu" })
  _, std = stats(t)
  T.near(std, math.sqrt(2 / 200), 1e-3, "kaiming_normal_ fan_out std sqrt(2 / fan_out)")
  T.near(init.calculate_gain("tanh"), 5 / 3, 1e-12, "calculate_gain tanh")
  T.near(init.calculate_gain("leaky_relu"), math.sqrt(2 / (1 + 0.01 ^ 2)), 1e-12, "calculate_gain leaky_relu default slope")
  T.near(init.calculate_gain("leaky_relu", math.sqrt(5)), math.sqrt(1 / 3), 1e-12, "calculate_gain leaky_relu slope")
  T.raises(function() init.xavier_uniform_(gl.zeros(5)) end, "need a tensor of 2 or more dims", "fans need 2 dims")
  T.raises(function() init.calculate_gain("swish") end, "unknown nonlinearity 'swish'", "unknown nonlinearity")
  T.raises(function() init.kaiming_uniform_(t, { mode = "fan" }) end, 'mode must be "fan_in" or "fan_out"', "kaiming mode")
  T.raises(function() init.normal_(t, { sdt = 1 }) end, "normal_: unknown option 'sdt'", "init options are checked")
  T.raises(function() init.normal_(gl.zeros({ 2 }, { dtype = "i64" })) end, "must be f32", "init needs f32")
end

-- ---- training ------------------------------------------------------------------------------------
do
  gl.seed(10)
  local mlp = nn.Sequential {
    nn.Linear { in_features = 2, out_features = 16 },
    nn.ReLU {},
    nn.Linear { in_features = 16, out_features = 1 },
  }
  local x = gl.tensor { { 0, 0 }, { 0, 1 }, { 1, 0 }, { 1, 1 } }
  local y = gl.tensor { { 0 }, { 1 }, { 1 }, { 0 } }
  local opt = gl.optim.adam(mlp, { lr = 0.03 })
  local first, last
  for i = 1, 400 do
    opt:zero_grad()
    local loss = gl.mse_loss(mlp(x), y)
    loss:backward()
    opt:step()
    first = first or loss:item()
    last = loss:item()
  end
  T.ok(last < 1e-3 and first > 0.1, "Sequential(Linear, ReLU, Linear) learns XOR with Adam",
    ("loss %.4g -> %.4g"):format(first, last))
end
do
  gl.seed(11)
  local Reg = nn.Module {
    name = "Reg",
    init = function(self)
      self.body = nn.Sequential { nn.Linear { in_features = 1, out_features = 32 }, nn.Tanh {},
        nn.Linear { in_features = 32, out_features = 1 } }
      self:register_parameter("gain", gl.ones { 1 })
    end,
    forward = function(self, x) return self.body(x) * self.gain end,
  }
  local m = Reg()
  local x = gl.linspace(-2, 2, 64):reshape(64, 1)
  local y = gl.sin(x * 1.5)
  local opt = gl.optim.adamw(m, { lr = 0.01, weight_decay = 0 })
  local g0 = m.gain:getflat(1)
  local last
  for _ = 1, 500 do
    opt:zero_grad()
    local loss = gl.mse_loss(m(x), y)
    loss:backward()
    opt:step()
    last = loss:item()
  end
  T.ok(last < 2e-3, "a Lua-composed module fits sin(1.5 x) with AdamW", last)
  T.ok(m.gain:getflat(1) ~= g0, "its own registered parameter is trained too")
end

T.done()
