#!/bin/sh
# genlab bench train-gpt / generate / images: --quick --no-reference runs the
# tiny sizes in fresh child processes (one per model and thread count) and
# prints one JSON line with the documented keys and plausible values; usage
# errors exit 2 naming the problem; generate's llama2.c reference is compiled
# and run at the tiny size, and a missing compiler is one line. Fast: a few
# seconds.
GENLAB=${GENLAB:-./genlab}
n=0; fail=0
check() { n=$((n + 1)); if eval "$2" >/dev/null 2>&1; then echo "ok $n - $1"; else echo "not ok $n - $1"; fail=1; fi; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
has() { grep -q -- "$2" "$tmp/$1"; }

"$GENLAB" bench train-gpt --quick --no-reference --json --threads 1 >"$tmp/train" 2>"$tmp/train.err"
check "train-gpt --quick --no-reference --json exits 0" "test $? -eq 0"
check "train-gpt prints one JSON line" "test \$(wc -l < $tmp/train) -eq 1 && grep -q '^{.*}\$' $tmp/train"
for key in '"subcommand":"train-gpt"' '"model":"nanogpt"' '"threads":1' '"tokens_per_s":' '"ms":' '"gflops":' \
           '"peak_rss_mib":' '"params":28064' '"loss":4\.' '"config":"L2 NH2 C32 T16 B4 V65 dropout 0"'; do
  check "train-gpt JSON has $key" "has train '$key'"
done
check "train-gpt --quick skips the baby GPT" "! has train '\"model\":\"baby\"'"
check "train-gpt without the reference has no pytorch side" "! has train '\"pytorch\"'"
# the child's peak RSS is its own: a tiny model stays far under 200 MiB
check "train-gpt peak RSS is the child's (under 200 MiB)" \
  "test \$(sed 's/.*\"peak_rss_mib\":\([0-9]*\).*/\1/' $tmp/train) -lt 200"

"$GENLAB" bench generate --quick --no-reference --json --threads 1 >"$tmp/gen" 2>"$tmp/gen.err"
check "generate --quick --no-reference --json exits 0" "test $? -eq 0"
for key in '"subcommand":"generate"' '"model":"stories15M"' '"model":"char"' '"tokens_per_s":' '"peak_rss_mib":' \
           '"config":"llama L2 NH4 C64 F128 T64 V512, 32 tokens"' '"config":"L2 NH2 C32 T16 B4 V65 dropout 0, 40 tokens"'; do
  check "generate JSON has $key" "has gen '$key'"
done
check "generate --quick skips stories110M" "! has gen stories110M"

# the llama2.c reference (bench/llama2c_reference.c, compiled with $CC) runs
# beside stories15M, interleaved at the same thread count: when the compiler
# builds OpenMP programs here, its side must be in the JSON and the table
cc=${CC:-cc}
printf 'int main(void) { return 0; }\n' >"$tmp/omp.c"
if sh -c "$cc -fopenmp -o $tmp/omp $tmp/omp.c" >/dev/null 2>&1; then
  "$GENLAB" bench generate --quick --reference --only stories15M --json --threads 1 >"$tmp/l2c" 2>"$tmp/l2c.err"
  check "generate --reference --quick with llama2.c exits 0" "test $? -eq 0"
  check "the llama2.c side has tokens/s and the same parameter count (115008)" \
    "grep -q '\"llama2c\":{[^}]*\"params\":115008[^}]*\"tokens_per_s\":[1-9]' $tmp/l2c"
  check "the row's ratio is genlab / llama2.c" "has l2c '\"ratio\":[0-9]' && ! has l2c '\"pytorch\"'"
  check "the JSON names the compiler and no error" \
    "has l2c '\"llama2c\":{\"compiler\":\"' && ! has l2c 'llama2c\":{[^}]*\"error\"'"
  "$GENLAB" bench generate --quick --reference --only stories15M --threads 1 >"$tmp/l2ct" 2>&1
  check "the table's reference columns say llama2.c with positive tokens/s" \
    "awk '\$1 == \"stories15M\" && \$8 == \"llama2.c\" && \$9 + 0 > 0 { ok = 1 } END { exit !ok }' $tmp/l2ct"
else
  n=$((n + 1)); echo "ok $n - # SKIP $cc cannot build OpenMP programs: the llama2.c reference is not checked"
fi
CC=/nonexistent/cc "$GENLAB" bench generate --quick --reference --only stories15M --threads 1 >"$tmp/nocc" 2>&1
check "without a compiler the bench still exits 0" "test $? -eq 0"
check "without a compiler one line gives the reason" \
  "test \$(grep -c 'reference: llama2.c not run: /nonexistent/cc not found (set CC)' $tmp/nocc) -eq 1"
check "without a compiler genlab's stories15M row is still measured" \
  "awk '\$1 == \"stories15M\" && \$4 + 0 > 0 && \$8 == \"-\" { ok = 1 } END { exit !ok }' $tmp/nocc"
GENLAB_BENCH_LLAMA2C=/nonexistent/l2c.c "$GENLAB" bench generate --quick --reference --only stories15M --threads 1 \
  >"$tmp/nosrc" 2>&1
check "a missing GENLAB_BENCH_LLAMA2C file: exit 0 and one line naming it" \
  "test $? -eq 0 && test \$(grep -c 'llama2.c not run: /nonexistent/l2c.c not found (set GENLAB_BENCH_LLAMA2C)' $tmp/nosrc) -eq 1"

"$GENLAB" bench train-gpt --quick --no-reference --threads 1 --only nanogpt >"$tmp/table" 2>&1
check "the table names its columns" "has table 'GFLOP/s' && has table 'RSS MiB' && has table 'nanogpt'"
"$GENLAB" bench generate --quick --no-reference --threads 1 --only char --json >"$tmp/only" 2>&1
check "--only measures that model alone" "has only '\"model\":\"char\"' && ! has only stories15M"

# bench images: the four rows of the table, each with positive ms and images/s
"$GENLAB" bench images --quick --no-reference --threads 1 >"$tmp/img" 2>"$tmp/img.err"
check "images --quick --no-reference exits 0" "test $? -eq 0"
for m in vae dcgan unet ddim; do
  check "images table has a $m row with positive ms and images/s" \
    "awk -v m=$m '\$1 == m && \$2 == 1 && \$4 + 0 > 0 && \$5 + 0 > 0 { ok = 1 } END { exit !ok }' $tmp/img"
done
check "images table has exactly four rows" "test \$(grep -cE '^(vae|dcgan|unet|ddim) +1 ' $tmp/img) -eq 4"
check "images --quick keeps the architectures (VAE 652824 parameters)" "has img 'genlab 652824'"
"$GENLAB" bench images --quick --no-reference --threads 1 --only ddim --json >"$tmp/imgj" 2>&1
check "images --only ddim --json: that model alone, with images_per_s" \
  "has imgj '\"model\":\"ddim\"' && has imgj '\"images_per_s\":' && ! has imgj '\"model\":\"vae\"'"
check "images: an unknown model exits 2 naming the choices" \
  "\"$GENLAB\" bench images --only gan 2>$tmp/e; test \$? -eq 2 && grep -q \"unknown model 'gan' (vae, dcgan, unet, ddim)\" $tmp/e"

check "an unknown model exits 2 naming the choices" \
  "\"$GENLAB\" bench train-gpt --only gpt5 2>$tmp/e; test \$? -eq 2 && grep -q \"unknown model 'gpt5' (nanogpt, baby)\" $tmp/e"
check "--quick has no size for the baby GPT" \
  "\"$GENLAB\" bench train-gpt --quick --only baby 2>$tmp/e; test \$? -eq 2 && grep -q 'no --quick size' $tmp/e"
check "an unknown option exits 2" "\"$GENLAB\" bench generate --frob 2>$tmp/e; test \$? -eq 2 && grep -q \"unknown option '--frob'\" $tmp/e"
check "--only is not an option of the plain bench" "\"$GENLAB\" bench --only char; test \$? -eq 2"
check "--help lists the subcommands" "\"$GENLAB\" bench --help 2>&1 | grep -q 'genlab bench train-gpt'"

echo "1..$n"
exit $fail
