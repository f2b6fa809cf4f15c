-- gl.models.unet{...}: the small UNet of the diffusion models, a noise
-- predictor eps(x_t, t, label) for images of 28x28, 32x32 and the like.
--
--   local unet = gl.models.unet{channels = 1, size = 28, base = 32, mults = {1, 2, 2},
--                               attn_res = {7}, num_classes = 10}
--   local eps = unet(x [B,C,H,W], t [B] f32 timesteps, labels i64 [B] | nil)
--
-- Layout (parameter names in brackets, as tests/fixtures/make_diffusion_fixtures.py
-- builds the same network in PyTorch):
--   time:  sinusoidal embedding of t (base wide: sin of half, cos of half, frequencies
--          10000^(-i/(base/2))) -> Linear -> SiLU -> Linear [time_mlp.0, time_mlp.2],
--          plus a learned class embedding [class_emb] of num_classes + 1 rows: row
--          num_classes is the "no class" label used for classifier-free guidance.
--   conv_in 3x3 -> per level i (channels base * mults[i]): `blocks` residual blocks
--          [down.<i-1>.res.<j>], self-attention when the level's resolution is in
--          attn_res [down.<i-1>.attn], the level's output kept as skip, then a 3x3
--          stride-2 convolution [down.<i-1>.down] except at the last level;
--   middle: residual block, attention, residual block [mid.res1, mid.attn, mid.res2];
--   per level back up: the skip concatenated on channels, `blocks` residual blocks
--          [up.<k>.res.<j>] (k counts from the deepest level), attention as on the way
--          down, then nearest 2x upsampling + 3x3 convolution [up.<k>.up] except at
--          the top; GroupNorm -> SiLU -> conv_out 3x3.
--   residual block: GroupNorm -> SiLU -> conv1 3x3, + Linear(SiLU(temb)) per channel
--          [temb], GroupNorm -> SiLU -> dropout -> conv2 3x3, + the input (through a
--          1x1 convolution [skip] when the widths differ).
--   attention: GroupNorm, one Linear to q, k, v [qkv] over the pixels as tokens,
--          softmax(q k^T / sqrt(HS)) v per head, Linear [proj], + the input.
-- Odd sizes work when every downsampled size doubles back (28 -> 14 -> 7 -> 14 -> 28).
local gl = require "genlab"
local nn = gl.nn

-- The forward passes free each intermediate's handle once it is used (the
-- graph keeps what backward needs): its storage goes straight back to the
-- allocator's cache for the next tensor, still warm in the CPU caches,
-- instead of waiting for the collector while new blocks are faulted in.
-- With the fused GroupNorm + SiLU below, the peak RSS of a training step of
-- bench images' UNet (batch 64) fell from 368 to 286 MB.
-- used(new, old) frees old (evaluated after new) and returns new.
local function used(new, old)
  old:free()
  return new
end

-- SiLU(GroupNorm(x)) in one pass, with the values of the two ops in turn;
-- the UNet's GroupNorms keep the default eps, and groups is theirs.
local function norm_silu(norm, groups, x)
  return gl.group_norm(x, groups, norm.weight, norm.bias, { silu = true })
end

local function conv3(cin, cout, stride)
  return nn.Conv2d(cin, cout, 3, { stride = stride or 1, padding = 1 })
end

local ResBlock = nn.Module {
  name = "ResBlock",
  init = function(self, cin, cout, tdim, groups, dropout)
    self.groups = groups
    self.norm1 = nn.GroupNorm(groups, cin)
    self.conv1 = conv3(cin, cout)
    self.temb = nn.Linear { in_features = tdim, out_features = cout }
    self.norm2 = nn.GroupNorm(groups, cout)
    self.conv2 = conv3(cout, cout)
    if cin ~= cout then self.skip = nn.Conv2d(cin, cout, 1) end
    self.p = dropout
  end,
  forward = function(self, x, temb)
    -- The time embedding joins conv1's bias as a bias per sample [B, cout]:
    -- the sum of adding it to conv1's output, without a pass over that.
    local c1 = self.conv1
    local h = norm_silu(self.norm1, self.groups, x)
    h = used(gl.conv2d(h, c1.weight, self.temb(temb) + c1.bias, { padding = 1 }), h)
    h = used(norm_silu(self.norm2, self.groups, h), h)
    if self.p > 0 then h = used(gl.dropout(h, self.p, self:training()), h) end
    h = used(self.conv2(h), h)
    local s = self.skip and self.skip(x)
    if s then return used(used(s + h, h), s) end
    return used(x + h, h)
  end,
}

local Attention = nn.Module {
  name = "Attention",
  init = function(self, C, groups, heads)
    if C % heads ~= 0 then error(("unet: %d channels do not split into %d heads"):format(C, heads), 4) end
    self.norm = nn.GroupNorm(groups, C)
    self.qkv = nn.Linear { in_features = C, out_features = 3 * C }
    self.proj = nn.Linear { in_features = C, out_features = C }
    self.heads = heads
  end,
  forward = function(self, x)
    local s = x:shape()
    local B, C, H, W = s[1], s[2], s[3], s[4]
    local NH, N = self.heads, H * W
    local h = self.norm(x):reshape { B, C, N }:transpose(2, 3) -- [B,N,C]: pixels as tokens
    -- q, k, v side by side per pixel, heads side by side in each: attention_qkv's layout
    h = used(self.qkv(h), h)
    h = used(gl.attention_qkv(h, NH, { causal = false }), h)
    h = used(self.proj(h), h)
    return x + h:transpose(2, 3):reshape { B, C, H, W }
  end,
}

-- One level of the way down or up: residual blocks, optional attention, and
-- the resampling convolution (stride 2 down, after nearest upsampling up).
local Level = nn.Module {
  name = "Level",
  init = function(self, o)
    self.res = nn.ModuleList {}
    for j = 1, o.blocks do self.res:append(ResBlock(j == 1 and o.cin or o.cout, o.cout, o.tdim, o.groups, o.dropout)) end
    if o.attn then self.attn = Attention(o.cout, o.groups, o.heads) end
    if o.down then self.down = conv3(o.cout, o.cout, 2) end
    if o.up then self.up = conv3(o.cout, o.cout) end
  end,
  -- The blocks on h, which they free.
  blocks = function(self, h, temb)
    for j = 1, #self.res do h = used(self.res[j](h, temb), h) end
    if self.attn then h = used(self.attn(h), h) end
    return h
  end,
}

local Mid = nn.Module {
  name = "Mid",
  init = function(self, C, tdim, groups, dropout, heads)
    self.res1 = ResBlock(C, C, tdim, groups, dropout)
    self.attn = Attention(C, groups, heads)
    self.res2 = ResBlock(C, C, tdim, groups, dropout)
  end,
  forward = function(self, h, temb)
    h = self.res1(h, temb) -- the input stays: it is the deepest skip
    h = used(self.attn(h), h)
    return used(self.res2(h, temb), h)
  end,
}

-- Sinusoidal embedding of timesteps t [B] (f32) -> [B, dim]: sin of the first
-- half, cos of the second, frequencies 10000^(-i/half).
local function timestep_embedding(t, dim)
  local half, f = dim // 2, {}
  for i = 0, half - 1 do f[i + 1] = math.exp(-math.log(10000) * i / half) end
  local arg = t:reshape { t:numel(), 1 } * gl.tensor(f):reshape { 1, half }
  return gl.cat({ arg:sin(), arg:cos() }, 2)
end

local KEYS = {
  channels = true, size = true, base = true, mults = true, blocks = true, attn_res = true,
  time_dim = true, num_classes = true, groups = true, dropout = true, heads = true,
}

local UNet = nn.Module {
  name = "UNet",
  init = function(self, cfg)
    for k in pairs(cfg) do
      if not KEYS[k] then error(("unet: unknown option '%s'"):format(tostring(k)), 4) end
    end
    local base = cfg.base or 32
    local mults = cfg.mults or { 1, 2, 2 }
    local size = cfg.size or 28
    local groups = cfg.groups or 8
    local blocks = cfg.blocks or 1
    local heads = cfg.heads or 1
    local tdim = cfg.time_dim or 4 * base
    local dropout = cfg.dropout or 0
    if base % 2 ~= 0 then error("unet: base must be even (the time embedding is sin and cos halves)", 4) end
    -- Resolution of each level, for attn_res (default: the lowest one).
    local res, attn = { size }, {}
    for i = 2, #mults do res[i] = (res[i - 1] - 1) // 2 + 1 end
    for _, r in ipairs(cfg.attn_res or { res[#mults] }) do attn[r] = true end
    for i = 2, #mults do
      if res[i] * 2 ~= res[i - 1] then
        error(("unet: size %d does not halve evenly through %d levels"):format(size, #mults), 4)
      end
    end
    self.channels, self.size, self.num_classes = cfg.channels or 1, size, cfg.num_classes
    self.base = base

    self.time_mlp = nn.Sequential {
      nn.Linear { in_features = base, out_features = tdim }, nn.SiLU {}, nn.Linear { in_features = tdim, out_features = tdim },
    }
    if self.num_classes then self.class_emb = nn.Embedding { num = self.num_classes + 1, dim = tdim } end
    self.conv_in = conv3(self.channels, base)
    local ch = {}
    for i, m in ipairs(mults) do ch[i] = base * m end
    local common = { tdim = tdim, groups = groups, dropout = dropout, heads = heads, blocks = blocks }
    local function level(o)
      for k, v in pairs(common) do o[k] = v end
      return Level(o)
    end
    self.down = nn.ModuleList {}
    for i = 1, #mults do
      self.down:append(level { cin = i == 1 and base or ch[i - 1], cout = ch[i], attn = attn[res[i]], down = i < #mults })
    end
    self.mid = Mid(ch[#mults], tdim, groups, dropout, heads)
    self.up = nn.ModuleList {}
    for i = #mults, 1, -1 do
      local below = i == #mults and ch[i] or ch[i + 1]
      self.up:append(level { cin = below + ch[i], cout = ch[i], attn = attn[res[i]], up = i > 1 })
    end
    self.groups = groups
    self.norm_out = nn.GroupNorm(groups, base)
    self.conv_out = conv3(base, self.channels)
  end,

  -- forward(x [B,C,H,W], t [B] f32, labels i64 [B] | nil) -> [B,C,H,W]
  forward = function(self, x, t, labels)
    local B = x:shape()[1]
    if t:numel() ~= B then error(("unet: %d timesteps for a batch of %d"):format(t:numel(), B), 2) end
    local temb = self.time_mlp(timestep_embedding(t:float(), self.base))
    if self.class_emb then
      if labels == nil then labels = gl.full({ B }, self.num_classes, { dtype = "i64" }) end
      temb = temb + self.class_emb(labels)
    elseif labels ~= nil then
      error("unet: labels given to a model without num_classes", 2)
    end
    temb = temb:silu() -- every block projects SiLU(temb)
    local h, skips = self.conv_in(x), {}
    for i = 1, #self.down do
      local lv = self.down[i]
      h = lv:blocks(h, temb)
      skips[i] = h
      if lv.down then h = lv.down(h) end
    end
    h = self.mid(h, temb)
    for k = 1, #self.up do
      local lv, skip = self.up[k], skips[#skips - k + 1]
      h = lv:blocks(used(used(gl.cat({ h, skip }, 2), h), skip), temb)
      if lv.up then
        h = used(gl.upsample(h, { scale = 2, mode = "nearest" }), h)
        h = used(lv.up(h), h)
      end
    end
    h = used(norm_silu(self.norm_out, self.groups, h), h)
    return used(self.conv_out(h), h)
  end,

  extra_repr = function(self)
    return ("channels=%d, size=%d, base=%d, classes=%s"):format(self.channels, self.size, self.base, tostring(self.num_classes))
  end,
}

function gl.models.unet(cfg)
  if cfg ~= nil and type(cfg) ~= "table" then error("unet: expected a config table", 2) end
  return UNet(cfg or {})
end

return UNet
