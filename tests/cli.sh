#!/bin/sh
# The genlab command: help, version, run with arguments, exit codes.
GENLAB=${GENLAB:-./genlab}
n=0; fail=0
check() { n=$((n + 1)); if eval "$2" >/dev/null 2>&1; then echo "ok $n - $1"; else echo "not ok $n - $1"; fail=1; fi; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
check "--help exits 0 and lists run" "\"$GENLAB\" --help | grep -q 'run FILE.lua'"
check "--version names the BLAS" "\"$GENLAB\" --version | grep -q 'BLAS: OpenBLAS'"
check "unknown command exits 2" "\"$GENLAB\" frobnicate; test \$? -eq 2"
check "run without a file exits 2" "\"$GENLAB\" run; test \$? -eq 2"
printf 'print(arg[0], arg[1], arg[2])\n' > "$tmp/args.lua"
check "scripts see arg" "\"$GENLAB\" run \"$tmp/args.lua\" x y | grep -q 'args.lua	x	y'"
printf "error('boom')\n" > "$tmp/err.lua"
check "script error exits 1" "\"$GENLAB\" run \"$tmp/err.lua\"; test \$? -eq 1"
check "script error prints a traceback" "\"$GENLAB\" run \"$tmp/err.lua\" 2>&1 | grep -q 'stack traceback'"
check "missing script exits 1 with its name" "\"$GENLAB\" run \"$tmp/nope.lua\" 2>&1 | grep -q 'nope.lua'"
check "bench --quick --json runs every benchmark" "\"$GENLAB\" bench --quick --json | grep -q 'gpt train step'"
check "no command without a terminal explains itself, points to run and repl, exits 2" "echo '1+1' | \"$GENLAB\" >\"$tmp/nocmd.out\" 2>\"$tmp/nocmd.err\"; test \$? -eq 2 && test ! -s \"$tmp/nocmd.out\" && grep -q 'genlab run' \"$tmp/nocmd.err\" && grep -q 'genlab repl' \"$tmp/nocmd.err\""
check "the build tree finds its Lua files without GENLAB_LUADIR" "echo 'print(gl.nn.Sequential ~= nil)' | GENLAB_LUADIR= \"$GENLAB\" repl | grep -q true"
check "OpenMP threads wait passively by default" "echo 'print(os.getenv(\"OMP_WAIT_POLICY\"))' | env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT \"$GENLAB\" repl | grep -qx passive"
check "a wait policy the user sets is kept" "echo 'print(os.getenv(\"OMP_WAIT_POLICY\"))' | OMP_WAIT_POLICY=active \"$GENLAB\" repl | grep -qx active"
check "repl FILE.lua opens the REPL on the trained tour" "echo 'print(steps, accuracy() > 0.9)' | \"$GENLAB\" repl \"$top_srcdir/examples/tour.lua\" | grep -q '^300	true$'"
head -c 20000 "$top_srcdir/README.md" > "$tmp/corpus.txt"
check "the char GPT example trains and saves a checkpoint" \
  "\"$GENLAB\" run \"$top_srcdir/examples/char_gpt.lua\" train --small --data \"$tmp/corpus.txt\" --max-steps 3 --eval-every 3 --out \"$tmp/char.ckpt\" && test -s \"$tmp/char.ckpt\""
check "the char GPT example predicts from its checkpoint alone" \
  "\"$GENLAB\" run \"$top_srcdir/examples/char_gpt.lua\" predict \"$tmp/char.ckpt\" 'The ' --max-new 20 | grep -q 'The '"
echo "1..$n"
exit $fail
