-- The genlab tour, for `genlab repl examples/tour.lua`: it builds a small
-- network that learns to tell the two arms of a spiral apart, trains it for
-- a few hundred steps while printing the loss, and leaves everything in
-- globals so you can keep going at the prompt:
--
--   train(200)          -- 200 more steps
--   model               -- the layer tree, shapes and parameter count
--   accuracy()          -- on the training points
--   model:state_dict()  -- the parameters by name
--   gl.save("spiral.safetensors", model:state_dict())
gl = require "genlab"
gl.seed(1337)

-- Two interleaved spirals, 200 points each, with a little noise.
local N = 200
points = gl.zeros(2 * N, 2)
labels = gl.zeros({2 * N}, {dtype = "i64"})
for arm = 0, 1 do
  for i = 1, N do
    local r = i / N * 5
    local angle = 1.75 * i / N * 2 * math.pi + arm * math.pi
    local row = arm * N + i
    points:setflat(2 * row - 1, r * math.sin(angle) + 0.1 * gl.randn(1):item())
    points:setflat(2 * row, r * math.cos(angle) + 0.1 * gl.randn(1):item())
    labels:setflat(row, arm)
  end
end

model = gl.nn.Sequential{
  gl.nn.Linear{in_features = 2, out_features = 64}, gl.nn.Tanh{},
  gl.nn.Linear{in_features = 64, out_features = 64}, gl.nn.Tanh{},
  gl.nn.Linear{in_features = 64, out_features = 2},
}
opt = gl.optim.adamw(model, {lr = 1e-2, weight_decay = 1e-4})
steps = 0

-- Full-batch training: forward, loss, backward, step.
function train(n, every)
  every = every or math.max(1, n // 5)
  local loss
  for _ = 1, n do
    opt:zero_grad()
    loss = gl.cross_entropy(model(points), labels)
    loss:backward()
    opt:step()
    steps = steps + 1
    if steps % every == 0 then print(("step %5d  loss %.4f"):format(steps, loss:item())) end
  end
  return loss:item()
end

function accuracy()
  local predicted = gl.no_grad(function() return model(points):argmax(-1) end)
  return gl.eq(predicted, labels):float():mean():item()
end

print(model)
train(300, 50)
print(("accuracy after %d steps: %.1f%%"):format(steps, 100 * accuracy()))
print("Keep going: train(200), accuracy(), model, gl.save(\"spiral.safetensors\", model:state_dict())")
