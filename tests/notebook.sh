#!/bin/sh
# Notebooks headless: `genlab run welcome.lua` runs the shipped notebook as a
# script; gl.notebook.run_file runs it cell by cell with the same results and
# writes the outputs beside it. Kept fast with GENLAB_WELCOME_STEPS and a
# small corpus (GENLAB_WELCOME_DATA).
GENLAB=${GENLAB:-./genlab}
top_srcdir=${top_srcdir:-.}
n=0; fail=0
check() { n=$((n + 1)); if eval "$2" >/dev/null 2>&1; then echo "ok $n - $1"; else echo "not ok $n - $1"; fail=1; fi; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

head -c 20000 "$top_srcdir/README.md" > "$tmp/corpus.txt"
GENLAB_WELCOME_DATA="$tmp/corpus.txt"; export GENLAB_WELCOME_DATA
GENLAB_WELCOME_STEPS=3; export GENLAB_WELCOME_STEPS
cp "$top_srcdir/examples/welcome.lua" "$tmp/welcome.lua"

# gl.plot comes with the chart binding; until it is there, run with a stand-in.
welcome="$tmp/welcome.lua"
echo 'os.exit(require("genlab").plot and 0 or 1)' > "$tmp/has_plot.lua"
if ! "$GENLAB" run "$tmp/has_plot.lua"; then
  echo "# SKIP gl.plot is missing: the welcome notebook runs with a stand-in chart"
  cat > "$tmp/stub.lua" <<'EOF'
require("genlab").plot = function() return "(chart)" end
arg[0] = arg[1]
dofile(arg[1])
EOF
  welcome="$tmp/stub.lua $tmp/welcome.lua"
fi

check "genlab run welcome.lua exits 0 headlessly" "\"$GENLAB\" run $welcome > \"$tmp/headless.txt\" 2> \"$tmp/headless.err\""
check "the headless run trains GENLAB_WELCOME_STEPS steps" "grep -q '^step 3: loss' \"$tmp/headless.txt\""
check "the headless run prints the sample" "grep -q '^The ' \"$tmp/headless.txt\""

cat > "$tmp/run_file.lua" <<'EOF'
local gl = require "genlab"
if not gl.plot then gl.plot = function() return "(chart)" end end
local nb, ok = gl.notebook.run_file(arg[1], { save = true })
for i, cell in ipairs(nb.cells) do
  for _, o in ipairs(cell.outputs) do io.write(o.text, o.text:sub(-1) == "\n" and "" or "\n") end
  if cell.kind == "code" then io.stderr:write(("cell %d %s\n"):format(i, cell.status)) end
end
os.exit(ok and 0 or 1)
EOF
check "run_file runs every cell of the welcome notebook" "\"$GENLAB\" run \"$tmp/run_file.lua\" \"$tmp/welcome.lua\" > \"$tmp/cells.txt\" 2> \"$tmp/cells.err\""
check "every code cell ends ok" "! grep -v ' ok$' \"$tmp/cells.err\" && grep -q ' ok$' \"$tmp/cells.err\""
check "run_file{save=true} writes the outputs beside the notebook" "head -1 \"$tmp/welcome.lua.outputs\" | grep -qx 'genlab notebook outputs 1'"
check "the outputs file holds the chart" "grep -qx 'type 5' \"$tmp/welcome.lua.outputs\" && grep -A1 -x 'type 5' \"$tmp/welcome.lua.outputs\" | grep -qx chart"
check "cells give the same loss as the script" \
  "test \"\$(grep '^step 3: loss' \"$tmp/cells.txt\" | cut -d'(' -f1)\" = \"\$(grep '^step 3: loss' \"$tmp/headless.txt\" | cut -d'(' -f1)\""
check "cells give the same sample as the script" \
  "test \"\$(sed -n '/^The /,\$p' \"$tmp/cells.txt\" | head -3)\" = \"\$(sed -n '/^The /,\$p' \"$tmp/headless.txt\" | head -3)\""
check "the outputs reload when the notebook is opened" \
  "echo 'local nb = require(\"genlab\").notebook.open(arg[1]); assert(nb.cells[#nb.cells].outputs[1].type == \"chart\" and not nb.outputs_error)' > \"$tmp/reopen.lua\" && \"$GENLAB\" run \"$tmp/reopen.lua\" \"$tmp/welcome.lua\""
check "run_file leaves the notebook's source as it was" "cmp \"$top_srcdir/examples/welcome.lua\" \"$tmp/welcome.lua\""
printf -- '--%%%%\nx = 1\n--%%%%\nerror("boom")\n' > "$tmp/bad.lua"
check "a failing cell makes genlab run exit 1" "\"$GENLAB\" run \"$tmp/bad.lua\"; test \$? -eq 1"

echo "1..$n"
exit $fail
