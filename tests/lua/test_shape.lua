-- Shape, indexing, masking, comparison, ordering and sampling ops.
-- Dims and positions typed as numbers are 1-based; ids tensors and returned
-- indices are 0-based (PyTorch's convention).
local T = require "tap"
local gl = require "genlab"

-- "1,2,3": the row-major values of a tensor, for compact comparisons.
local function flat(t)
  local out = {}
  for i = 1, t:numel() do out[i] = ("%g"):format(t:getflat(i)) end
  return table.concat(out, ",")
end
local function shape(t) return table.concat(t:shape(), ",") end

local x = gl.tensor{{1, 2, 3}, {4, 5, 6}}

-- reshape / view
local r = x:reshape(3, 2)
T.eq(shape(r), "3,2", "reshape(3, 2)")
T.eq(flat(r), "1,2,3,4,5,6", "reshape keeps row-major order")
T.eq(shape(x:reshape{-1}), "6", "reshape infers -1")
T.eq(shape(gl.reshape(x, {2, -1, 1})), "2,3,1", "gl.reshape with a table and -1")
T.eq(shape(x:view(6)), "6", "view is reshape")
do
  local base = gl.zeros(2, 3)
  local v = base:reshape(6)
  v:setflat(5, 42)
  T.eq(base[2][2], 42, "writing through a reshape shows in the original (a view)")
  base:setflat(1, 7)
  T.eq(v:getflat(1), 7, "and writing the original shows in the reshape")
end
T.raises(function() x:reshape(4, 2) end, "reshape: shape [4,2] is invalid for a tensor of shape [2,3]", "reshape with a wrong count names both shapes")
T.raises(function() x:reshape(-1, -1) end, "only one dim can be -1", "two -1 sizes are rejected")
T.raises(function() x:reshape(4, -1) end, "is invalid for a tensor of shape [2,3]", "-1 that does not divide is rejected")

-- flatten / squeeze / unsqueeze
local c = gl.zeros(2, 3, 4)
T.eq(shape(c:flatten()), "24", "flatten() flattens everything")
T.eq(shape(c:flatten(2)), "2,12", "flatten(2)")
T.eq(shape(c:flatten(1, 2)), "6,4", "flatten(1, 2)")
T.eq(shape(gl.tensor(3):flatten()), "1", "flatten of a 0-dim tensor has one element")
local s = gl.zeros(1, 3, 1)
T.eq(shape(s:squeeze()), "3", "squeeze() drops all size-1 dims")
T.eq(shape(s:squeeze(1)), "3,1", "squeeze(1)")
T.eq(shape(s:squeeze(2)), "1,3,1", "squeeze of a dim that is not 1 is a no-op")
T.eq(shape(s:squeeze(-1)), "1,3", "squeeze(-1)")
T.eq(shape(x:unsqueeze(1)), "1,2,3", "unsqueeze(1)")
T.eq(shape(x:unsqueeze(3)), "2,3,1", "unsqueeze(ndim+1) appends")
T.eq(shape(x:unsqueeze(-1)), "2,3,1", "unsqueeze(-1) appends")
T.eq(shape(x:unsqueeze(-3)), "1,2,3", "unsqueeze(-3) prepends for 2 dims")
T.raises(function() x:unsqueeze(4) end, "unsqueeze: dim 4 out of range for inserting into shape [2,3] (use 1..3", "unsqueeze range is 1..ndim+1")
T.raises(function() x:unsqueeze(0) end, "out of range", "unsqueeze(0) is rejected")

-- transpose / t / permute
T.eq(flat(x:t()), "1,4,2,5,3,6", "t() transposes a matrix")
T.eq(shape(x:t()), "3,2", "t() shape")
T.eq(flat(gl.transpose(x, 1, 2)), "1,4,2,5,3,6", "gl.transpose(x, 1, 2)")
T.eq(flat(gl.tensor{1, 2}:t()), "1,2", "t() of a vector is the vector")
T.raises(function() c:t() end, "t: expects at most 2 dims, got shape [2,3,4]", "t() of 3 dims raises")
local p = gl.arange(24):reshape(2, 3, 4)
local pp = p:permute(3, 1, 2)
T.eq(shape(pp), "4,2,3", "permute(3, 1, 2) shape")
T.eq(pp[2][2][3], p[2][3][2], "permute moves elements: out[i][j][k] = x[j][k][i]")
T.eq(flat(p:permute{1, 2, 3}), flat(p), "identity permute")
T.eq(flat(p:transpose(1, 3)), flat(p:permute(3, 2, 1)), "transpose(1, 3) = permute(3, 2, 1)")
T.eq(p:transpose(-1, -2):dtype(), "i64", "transpose keeps the dtype")
T.raises(function() p:permute(1, 1, 2) end, "not a permutation", "permute with a repeated dim raises")
T.raises(function() p:permute(1, 2) end, "permute: got 2 dims for a tensor of shape [2,3,4]", "permute with too few dims raises")
T.raises(function() x:transpose(1, 3) end, "transpose: dim 3 out of range for shape [2,3]", "transpose with a bad dim names it")

-- narrow / select / t[i]
T.eq(flat(x:narrow(2, 2, 2)), "2,3,5,6", "narrow(2, 2, 2): start is 1-based")
T.eq(flat(x:narrow(1, 2, 1)), "4,5,6", "narrow along dim 1")
T.eq(x:narrow(2, 4, 0):numel(), 0, "an empty narrow at the end")
do
  local base = gl.zeros(4, 2)
  local n = base:narrow(1, 2, 2)
  n:setflat(1, 9)
  T.eq(base[2][1], 9, "narrow of dim 1 is a view")
  local sel = base:select(1, 4)
  sel:setflat(2, 8)
  T.eq(base[4][2], 8, "select of dim 1 is a view")
end
T.raises(function() x:narrow(2, 3, 2) end, "narrow: length 2 from position 3 exceeds dim 2 of shape [2,3]", "narrow past the end raises")
T.raises(function() x:narrow(2, 5, 0) end, "narrow: position 5 out of range for dim 2", "narrow start out of range raises")
T.eq(flat(x:select(2, 3)), "3,6", "select(2, 3) picks a column")
T.eq(shape(x:select(1, 2)), "3", "select drops the dim")
T.eq(flat(x:select(1, -1)), "4,5,6", "select with a negative position")
T.eq(x[2][3], 6, "t[i][j] uses select")
T.eq(shape(p[2]), "3,4", "t[i] of a 3-D tensor is a 2-D tensor")
T.raises(function() x:select(2, 4) end, "select: position 4 out of range for dim 2 of shape [2,3] (1..3)", "select out of range raises")

-- index (index_select)
local ids = gl.tensor({2, 0, 2}, {dtype = "i64"})
T.eq(flat(x:index(2, ids)), "3,1,3,6,4,6", "index(2, ids) with 0-based ids")
T.eq(flat(gl.index(x, 1, gl.tensor({1}, {dtype = "i32"}))), "4,5,6", "index with i32 ids")
T.raises(function() x:index(2, gl.tensor({3}, {dtype = "i64"})) end, "index: id 3 out of range [0, 3)", "an out-of-range id names the id and the range")
T.raises(function() x:index(2, gl.tensor({-1}, {dtype = "i64"})) end, "id -1 out of range", "negative ids are rejected")
T.raises(function() x:index(2, gl.tensor{1}) end, "ids must be i64 or i32, got f32", "float ids are rejected")

-- cat / stack / split / chunk
local y = gl.tensor{{7, 8, 9}}
T.eq(flat(gl.cat({x, y})), "1,2,3,4,5,6,7,8,9", "cat along dim 1")
T.eq(shape(gl.cat({x, x}, 2)), "2,6", "cat along dim 2")
T.eq(flat(gl.cat({x, x}, -1)), "1,2,3,1,2,3,4,5,6,4,5,6", "cat along the last dim")
do
  local parts = {}
  for i = 1, 9 do parts[i] = gl.full({1, 2}, i) end
  T.eq(flat(gl.cat(parts)), "1,1,2,2,3,3,4,4,5,5,6,6,7,7,8,8,9,9", "cat of 9 tensors")
end
T.raises(function() gl.cat({x, gl.zeros(2, 2)}, 1) end, "cat: tensor 2 has shape [2,2] but tensor 1 has [2,3]", "cat with mismatched shapes names them")
T.raises(function() gl.cat({x, gl.zeros({1, 3}, {dtype = "i64"})}) end, "cat: tensor 2 is i64 but tensor 1 is f32", "cat with mixed dtypes raises")
T.raises(function() gl.cat({}) end, "cat: expects a non-empty table of tensors", "cat of nothing raises")
T.raises(function() gl.cat({x, 3}) end, "cat: element 2 of the table is a number", "cat of a non-tensor raises")
local st = gl.stack({gl.tensor{1, 2}, gl.tensor{3, 4}})
T.eq(shape(st), "2,2", "stack adds a dim")
T.eq(flat(st), "1,2,3,4", "stack along dim 1")
T.eq(flat(gl.stack({gl.tensor{1, 2}, gl.tensor{3, 4}}, 2)), "1,3,2,4", "stack along dim 2 (ndim+1)")
T.eq(flat(gl.stack({gl.tensor{1, 2}, gl.tensor{3, 4}}, -1)), "1,3,2,4", "stack along dim -1")
T.raises(function() gl.stack({gl.tensor{1, 2}, gl.tensor{1, 2, 3}}) end, "stack: tensor 2 has shape [3] but tensor 1 has [2]", "stack of unequal shapes raises")
local parts = gl.arange(7):split(3)
T.eq(#parts, 3, "split(3) of 7 gives 3 pieces")
T.eq(flat(parts[3]), "6", "the last piece is shorter")
local sp = x:split({1, 2}, 2)
T.eq(flat(sp[1]) .. "|" .. flat(sp[2]), "1,4|2,3,5,6", "split with a table of sizes along dim 2")
T.raises(function() x:split({1, 1}, 2) end, "split: sizes sum to 2 but dim 2 has size 3", "split sizes must add up")
local ch = gl.arange(5):chunk(2)
T.eq(#ch .. ":" .. flat(ch[1]) .. "|" .. flat(ch[2]), "2:0,1,2|3,4", "chunk(2) of 5 gives sizes 3 and 2")
T.eq(#gl.arange(6):chunk(4), 3, "chunk can give fewer pieces than asked (like PyTorch)")

-- empty pieces
T.eq(shape(gl.cat({gl.zeros(2, 0), x}, 2)), "2,3", "cat with an empty piece")
T.eq(shape(gl.zeros(0, 3):split(2)[1]), "0,3", "split of an empty dim gives one empty piece")
T.eq(shape(x:index(1, gl.zeros({0}, {dtype = "i64"}))), "0,3", "index with no ids")

-- expand
T.eq(flat(gl.tensor{{1}, {2}}:expand(2, 3)), "1,1,1,2,2,2", "expand a column")
T.eq(flat(gl.tensor{1, 2}:expand{2, -1}), "1,2,1,2", "expand with -1 keeps a size and adds leading dims")
T.raises(function() gl.tensor{1, 2}:expand(3) end, "expand: shape [2] cannot be broadcast to [3]", "expand of a non-1 dim raises")

-- gather / scatter_add
local g = gl.tensor{{10, 11, 12}, {20, 21, 22}}
local gi = gl.tensor({{2, 0}, {1, 1}}, {dtype = "i64"})
T.eq(flat(g:gather(2, gi)), "12,10,21,21", "gather(2, ids)")
T.eq(flat(g:gather(1, gl.tensor({{1, 0, 1}}, {dtype = "i64"}))), "20,11,22", "gather(1, ids)")
T.raises(function() g:gather(2, gl.tensor({{3}, {0}}, {dtype = "i64"})) end, "gather: id 3 out of range [0, 3)", "gather validates ids")
T.raises(function() g:gather(2, gl.tensor({1}, {dtype = "i64"})) end, "gather: ids of shape [1] do not fit x of shape [2,3]", "gather ids need x's dims")
local sa = gl.zeros(2, 3):scatter_add(2, gi, gl.tensor{{1, 2}, {3, 4}})
T.eq(flat(sa), "2,0,1,0,7,0", "scatter_add sums repeated ids")
T.eq(flat(gl.scatter_add(gl.zeros({4}, {dtype = "i64"}), 1, gl.tensor({0, 3, 3}, {dtype = "i64"}), gl.ones({3}, {dtype = "i64"}))), "1,0,0,2", "scatter_add on i64 counts")
T.raises(function() gl.zeros(2, 3):scatter_add(2, gi, gl.ones(2, 2, {dtype = "i64"})) end, "scatter_add: src is i64 but x is f32", "scatter_add dtypes must match")
T.raises(function() gl.zeros(2, 3):scatter_add(1, gi, gl.ones(2, 2)) end, "scatter_add: id 2 out of range [0, 2)", "scatter_add validates ids")

-- masked_fill / where
local m = gl.tensor({{1, 0, 1}}, {dtype = "u8"})
T.eq(flat(x:masked_fill(m, -1)), "-1,2,-1,-1,5,-1", "masked_fill with a broadcast u8 mask")
T.eq(flat(x:masked_fill(gl.tensor{{0, 2.5, 0}, {0, 0, -1}}, 0)), "1,0,3,4,5,0", "any-dtype mask: nonzero is true")
T.eq(x:masked_fill(m, -math.huge):getflat(1), -math.huge, "masked_fill with -inf")
T.raises(function() x:masked_fill(gl.ones(3, 3), 0) end, "masked_fill: shape [3,3] cannot be broadcast to [2,3]", "masked_fill mask must broadcast to x")
local cond = gl.tensor({1, 0, 1}, {dtype = "u8"})
T.eq(flat(gl.where(cond, x, 0)), "1,0,3,4,0,6", "where(cond, tensor, number) broadcasts")
T.eq(flat(gl.where(cond, -1, gl.tensor{7, 8, 9})), "-1,8,-1", "where(cond, number, tensor)")
T.eq(gl.where(cond, gl.zeros({3}, {dtype = "i64"}), 5):dtype(), "i64", "a number operand takes the other's dtype")
T.eq(flat(x:where(cond, 0)), "1,0,3,4,0,6", "a:where(cond, b) is PyTorch's method order")
T.raises(function() gl.where(gl.ones(4), x, 0) end, "where: shapes [4] and [2,3] cannot broadcast", "where with shapes that do not broadcast")
T.raises(function() gl.where(cond, gl.zeros({3}, {dtype = "i64"}), gl.zeros(3)) end, "where: a is i64 but b is f32", "where dtypes must match")

-- tril / triu
local sq = gl.ones(3, 3)
T.eq(flat(sq:tril()), "1,0,0,1,1,0,1,1,1", "tril")
T.eq(flat(sq:triu()), "1,1,1,0,1,1,0,0,1", "triu")
T.eq(flat(sq:tril(-1)), "0,0,0,1,0,0,1,1,0", "tril(-1)")
T.eq(flat(sq:triu(1)), "0,1,1,0,0,1,0,0,0", "triu(1)")
T.eq(flat(gl.ones(2, 2, 3):tril(1)), "1,1,0,1,1,1,1,1,0,1,1,1", "tril over the last two dims of a batch")
T.eq(gl.ones({2, 2}, {dtype = "u8"}):tril():dtype(), "u8", "tril keeps the dtype")
T.raises(function() gl.ones(3):tril() end, "tril: needs at least 2 dims, got shape [3]", "tril of a vector raises")

-- one_hot
local oh = gl.tensor({2, 0}, {dtype = "i64"}):one_hot(3)
T.eq(shape(oh) .. ":" .. flat(oh), "2,3:0,0,1,1,0,0", "one_hot")
T.eq(oh:dtype(), "f32", "one_hot is f32")
T.eq(shape(gl.one_hot(gl.tensor({{1}}, {dtype = "i32"}), 4)), "1,1,4", "one_hot of i32 ids appends a dim")
T.raises(function() gl.tensor({3}, {dtype = "i64"}):one_hot(3) end, "one_hot: id 3 out of range [0, 3)", "one_hot validates ids")

-- clone
do
  local a = gl.tensor{1, 2}
  local b = a:clone()
  b:setflat(1, 5)
  T.eq(a:getflat(1), 1, "clone copies (does not share storage)")
end

-- comparisons
T.eq(flat(x:eq(gl.tensor{1, 0, 6})), "1,0,0,0,0,1", "eq broadcasts")
T.eq(flat(x:lt(3)), "1,1,0,0,0,0", "lt with a number")
T.eq(flat(x:gt(4)), "0,0,0,0,1,1", "gt with a number")
T.eq(x:gt(4):dtype(), "u8", "comparisons give u8")
T.eq(flat(gl.arange(3):eq(gl.tensor{0, 5, 2})), "1,0,1", "comparison across dtypes")
T.eq(flat(x:ne(2)) .. "|" .. flat(x:le(2)) .. "|" .. flat(x:ge(5)), "1,0,1,1,1,1|1,1,0,0,0,0|0,0,0,0,1,1", "ne, le, ge")
T.eq(flat(gl.gt(3, gl.tensor{1, 5})), "1,0", "a number as the first operand")
T.raises(function() x:eq(gl.ones(2)) end, "eq: shapes [2,3] and [2] cannot broadcast", "comparison shapes must broadcast")

-- topk / sort
local v = gl.tensor{{3, 1, 4, 1, 5}, {9, 2, 6, 5, 3}}
local tv, ti = v:topk(2)
T.eq(flat(tv), "5,4,9,6", "topk values (largest, sorted)")
T.eq(flat(ti), "4,2,0,2", "topk indices are 0-based")
T.eq(ti:dtype(), "i64", "topk indices are i64")
tv, ti = v:topk(3, {largest = false})
T.eq(flat(tv) .. "|" .. flat(ti), "1,1,3,2,3,5|1,3,0,1,4,3", "topk smallest; ties by position")
tv, ti = v:topk(1, 1)
T.eq(flat(tv) .. "|" .. flat(ti), "9,2,6,5,5|1,1,1,1,0", "topk along dim 1")
T.raises(function() v:topk(6) end, "topk: k = 6 out of range for a dim of size 5", "topk with k too large raises")
T.raises(function() v:topk(1, -1, {largets = true}) end, "topk: unknown option 'largets'", "topk rejects unknown options")
local sv, si = v:sort()
T.eq(flat(sv), "1,1,3,4,5,2,3,5,6,9", "sort ascending along the last dim")
T.eq(flat(si), "1,3,0,2,4,1,4,3,2,0", "sort is stable (equal values keep their order)")
sv, si = gl.tensor{2, 1, 2, 1}:sort(1, {descending = true})
T.eq(flat(sv) .. "|" .. flat(si), "2,2,1,1|0,2,1,3", "descending sort is stable too")
sv, si = gl.tensor{1, 0 / 0, 3}:sort()
T.eq(si:getflat(3), 1, "NaN sorts last ascending (like PyTorch)")
sv = gl.tensor({5, 2, 8}, {dtype = "i64"}):sort({descending = true})
T.eq(flat(sv) .. ":" .. sv:dtype(), "8,5,2:i64", "sort of i64 keeps the dtype")
do -- agree with a Lua reference sort on random data, along a middle dim
  gl.seed(3)
  local z = gl.randn(3, 50, 2)
  local zs, zi = z:sort(2, {descending = true})
  local ok = true
  for a = 1, 3 do
    for b = 1, 2 do
      local ref = {}
      for j = 1, 50 do ref[j] = z[a][j][b] end
      table.sort(ref, function(p, q) return p > q end)
      for j = 1, 50 do
        if zs[a][j][b] ~= ref[j] or z[a][zi[a][j][b] + 1][b] ~= ref[j] then ok = false end
      end
    end
  end
  T.ok(ok, "sort along dim 2 matches table.sort and its indices point at the values")
  local kv = z:topk(5, 2)
  T.eq(flat(kv), flat(zs:narrow(2, 1, 5)), "topk(5) equals the first 5 of a descending sort")
end

-- multinomial
gl.seed(42)
local a1 = gl.multinomial(gl.tensor{0.1, 0.2, 0.7}, 20, {replacement = true})
gl.seed(42)
local a2 = gl.multinomial(gl.tensor{0.1, 0.2, 0.7}, 20, {replacement = true})
T.eq(flat(a1), flat(a2), "multinomial is reproducible under gl.seed")
T.eq(a1:dtype(), "i64", "multinomial gives i64 ids")
do
  local draws = gl.tensor{0.2, 0.8}:multinomial(20000, {replacement = true})
  local ones = 0
  for i = 1, draws:numel() do ones = ones + draws:getflat(i) end
  T.near(ones / 20000, 0.8, 0.02, "20000 draws of {0.2, 0.8} give 0.8 within 2%")
  local w = gl.tensor{{0, 1, 3}, {5, 0, 0}}:multinomial(4000, {replacement = true})
  local c = {0, 0, 0}
  local row2 = true
  for j = 1, 4000 do
    local id = w[1][j]
    c[id + 1] = c[id + 1] + 1
    if w[2][j] ~= 0 then row2 = false end
  end
  T.ok(c[1] == 0 and math.abs(c[3] / 4000 - 0.75) < 0.03, "unnormalized weights per row; zero weight is never drawn", table.concat(c, ","))
  T.ok(row2, "a row with one nonzero weight always draws it")
end
do
  local d = gl.tensor{1, 1, 1, 1, 0}:multinomial(4)
  local seen, distinct = {}, true
  for i = 1, 4 do
    local id = d:getflat(i)
    if seen[id] or id == 4 then distinct = false end
    seen[id] = true
  end
  T.ok(distinct, "without replacement: distinct ids, never a zero weight")
  gl.seed(5)
  local first = 0
  for _ = 1, 2000 do
    if gl.tensor{0.9, 0.05, 0.05}:multinomial(2):getflat(1) == 0 then first = first + 1 end
  end
  T.near(first / 2000, 0.9, 0.03, "without replacement the first draw follows the weights")
end
T.raises(function() gl.tensor{0.5, -0.1}:multinomial(1) end, "multinomial: row 1 of probs [2] has weight -0.1 at category 1", "negative weights raise")
T.raises(function() gl.tensor{{1, 1}, {0, 0}}:multinomial(1) end, "row 2 of probs [2,2] sums to 0", "an all-zero row raises")
T.raises(function() gl.tensor{1, 1, 1}:multinomial(4) end, "cannot draw 4 samples without replacement from 3 categories", "n > categories without replacement raises")
T.raises(function() gl.tensor{1, 0, 1}:multinomial(3) end, "has only 2 categories with nonzero weight", "too few nonzero weights without replacement raises")
T.raises(function() gl.tensor{1, 1}:multinomial(1, true) end, "table expected", "multinomial options must be a table")
T.raises(function() gl.tensor{1, 1}:multinomial(1, {replace = true}) end, "multinomial: unknown option 'replace'", "multinomial rejects unknown options")

-- sizes above the threshold where loops run in parallel
do
  gl.seed(9)
  local big = gl.randn(64, 40, 16)
  T.near(big:permute(3, 1, 2):permute(2, 3, 1), big, 0, "permute round trip of 40960 elements")
  local col = big:narrow(2, 7, 30)
  T.ok(col[64][30][16] == big[64][36][16] and col[1][1][1] == big[1][7][1], "narrow copy of a large tensor")
  local tv, ti = big:topk(3, 2)
  local ok = true
  for a = 1, 64, 9 do
    for b = 1, 16, 5 do
      local best, at = -math.huge, 0
      for j = 1, 40 do if big[a][j][b] > best then best, at = big[a][j][b], j - 1 end end
      if tv[a][1][b] ~= best or ti[a][1][b] ~= at then ok = false end
    end
  end
  T.ok(ok, "topk over many lines finds each line's maximum")
  local e = gl.tensor{{1}, {2}}:expand(2, 40000)
  T.ok(e[2][40000] == 2 and e[1][1] == 1, "expand to 80000 elements")
end

-- views of tensors that require grad still record their node
do
  local w = gl.ones(2, 3):requires_grad_()
  local vv = w:reshape(6)
  T.eq(vv:grad_fn(), "reshape", "a view still records its autograd node")
  T.eq(w[1]:grad_fn(), "select", "t[i] records select")
end
T.done()
