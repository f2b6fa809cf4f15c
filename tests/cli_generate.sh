#!/bin/sh
# genlab generate: usage errors (exit 2, naming the flag), --help, generation
# from a small char GPT trained and saved here, runtime errors (exit 1, one line).
GENLAB=${GENLAB:-./genlab}
n=0; fail=0
check() { n=$((n + 1)); if eval "$2" >/dev/null 2>&1; then echo "ok $n - $1"; else echo "not ok $n - $1"; fail=1; fi; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
gen() { "$GENLAB" generate "$@"; }

# usage
check "--help exits 0 and lists the sampler flags" "gen --help | grep -q -- '--top-p P'"
check "an unknown flag exits 2" "gen --model x --prompt y --frob; test \$? -eq 2"
check "and names it" "gen --model x --prompt y --frob 2>&1 | grep -q -- \"unknown flag '--frob'\""
check "missing --model exits 2 naming it" "gen --prompt hi 2>$tmp/e; test \$? -eq 2 && grep -q -- '--model' $tmp/e"
check "missing --prompt exits 2 naming it" "gen --model x 2>$tmp/e; test \$? -eq 2 && grep -q -- '--prompt' $tmp/e"
check "a bad number exits 2 naming the flag" "gen --model x --prompt y --temperature warm 2>$tmp/e; test \$? -eq 2 && grep -q -- \"--temperature: 'warm' is not a number\" $tmp/e"
check "a fractional --top-k exits 2" "gen --model x --prompt y --top-k 2.5 2>$tmp/e; test \$? -eq 2 && grep -q -- '--top-k' $tmp/e"
check "an out-of-range --top-p exits 2 naming it" "gen --model x --prompt y --top-p 1.5 2>$tmp/e; test \$? -eq 2 && grep -q -- '--top-p must be a number in (0, 1]' $tmp/e"
check "a flag without its value exits 2" "gen --model x --prompt y --max-new 2>$tmp/e; test \$? -eq 2 && grep -q -- '--max-new needs a value' $tmp/e"
check "a stray argument exits 2" "gen --model x --prompt y extra; test \$? -eq 2"

# runtime errors
check "a missing model exits 1" "gen --model $tmp/nope.safetensors --prompt hi; test \$? -eq 1"
check "with a one-line message naming the file" "gen --model $tmp/nope.safetensors --prompt hi 2>$tmp/e; test \$(wc -l < $tmp/e) -eq 1 && grep -q 'nope.safetensors' $tmp/e"

# a char GPT trained on a repeated string, saved with its tokenizer
cat > "$tmp/make.lua" <<'EOF'
local gl = require "genlab"
local corpus = ("hello world! "):rep(40)
local tok = gl.tokenizer.char(corpus)
gl.seed(1234)
local model = gl.models.gpt { vocab = tok:vocab_size(), block = 16, n_layer = 2, n_head = 2, n_embd = 32 }
local data = tok:encode(corpus):tolist()
local opt = gl.optim.adamw(model, { lr = 1e-2, weight_decay = 0 })
for _ = 1, 200 do
  local x, y = {}, {}
  for b = 1, 8 do
    local s = gl.randint(0, #data - 17, { 1 }):item()
    x[b], y[b] = {}, {}
    for t = 1, 16 do x[b][t], y[b][t] = data[s + t], data[s + t + 1] end
  end
  local _, l = model:forward(gl.tensor(x, { dtype = "i64" }), gl.tensor(y, { dtype = "i64" }))
  opt:zero_grad()
  l:backward()
  opt:step()
end
gl.models.save(model, arg[1], { tokenizer = tok:serialize() })
EOF
m="$tmp/char.safetensors"
check "a Lua snippet trains and saves a small model" "\"$GENLAB\" run $tmp/make.lua $m && test -s $m"
check "greedy generation prints the learned pattern" "test \"\$(gen --model $m --prompt hello --greedy --max-new 20)\" = ' world! hello world!'"
check "generation past the 16-token context keeps going" "test \"\$(gen --model $m --prompt hello --greedy --max-new 60 | wc -c)\" -eq 61"
check "--stop ends before the stop string" "test \"\$(gen --model $m --prompt hello --greedy --stop '!' --stop zz)\" = ' world'"
check "--flag=value works too" "test \"\$(gen --model=$m --prompt=hello --greedy --max-new=6)\" = ' world'"
check "--prompt - reads stdin" "test \"\$(echo hello | tr -d '\n' | gen --model $m --prompt - --greedy --max-new 6)\" = ' world'"
check "sampling without --seed differs between runs" "a=\$(gen --model $m --prompt hello --temperature 3 --top-k 5 --max-new 40) && b=\$(gen --model $m --prompt hello --temperature 3 --top-k 5 --max-new 40) && test \"\$a\" != \"\$b\""
check "sampling with --seed is reproducible" "a=\$(gen --model $m --prompt hello --temperature 3 --top-k 5 --seed 7 --max-new 40) && b=\$(gen --model $m --prompt hello --temperature 3 --top-k 5 --seed 7 --max-new 40) && test \"\$a\" = \"\$b\" && test \${#a} -eq 40"
check "--verbose prints the sampler order on stderr only" "gen --model $m --prompt hello --top-p 0.9 --verbose --max-new 5 2>$tmp/e >$tmp/o; grep -q 'temperature=1 -> top_k=0 (off) -> top_p=0.9 -> min_p=0 -> sample' $tmp/e && ! grep -q sampler $tmp/o"
check "--verbose reports tokens/s" "grep -q 'tokens/s' $tmp/e"
check "a prompt character outside the vocabulary exits 1" "gen --model $m --prompt 'HELLO' 2>$tmp/e; test \$? -eq 1 && test \$(wc -l < $tmp/e) -eq 1"
check "a missing --tokenizer file exits 1" "gen --model $m --prompt hello --tokenizer $tmp/none.json; test \$? -eq 1"
echo "1..$n"
exit $fail
