#!/bin/sh
# The workbench (genlab with no command, genlab NOTEBOOK.lua), driven through
# tmux on its own server: keys are sent, screens captured and polled with
# timeouts, and their text compared. Each test names what it guards.
GENLAB=${GENLAB:-./genlab}
LC_ALL=C.UTF-8; export LC_ALL # screens are UTF-8 (box and braille characters)
n=0; fail=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); echo "not ok $n - $1"; fail=1; }
check() { if eval "$2" >/dev/null 2>&1; then ok "$1"; else not_ok "$1"; fi; }
skip() { n=$((n + 1)); echo "ok $n - # SKIP $1"; }

tmp=$(mktemp -d)
mkdir -p "$tmp/home"
sock=gl-tui-$$
tm() { tmux -L "$sock" "$@"; }
trap 'tm kill-server >/dev/null 2>&1; rm -rf "$tmp"' EXIT

# ---- without a terminal --------------------------------------------------------
"$GENLAB" </dev/null >"$tmp/out" 2>"$tmp/err"; rc=$?
check "non-tty: genlab with no command exits 2" "test $rc -eq 2"
check "non-tty: genlab explains itself and points to genlab run and genlab repl" \
    "grep -q 'needs a terminal' '$tmp/err' && grep -q 'genlab run' '$tmp/err' && grep -q 'genlab repl' '$tmp/err'"

if ! command -v tmux >/dev/null 2>&1; then
    skip "tmux is not installed: the workbench tests need it"
    echo "1..$n"; exit $fail
fi

# ---- helpers -------------------------------------------------------------------------
# A session that lives as long as the test, so that the server does not exit
# (and race with the next new-session) each time a workbench session ends.
tm new-session -d -s keep "sleep 100000"
# start SESSION COLSxROWS [ARGS]: the workbench in a fresh tmux session
start() {
    s=$1; cols=${2%x*}; rows=${2#*x}; shift 2
    tm new-session -d -s "$s" -x "$cols" -y "$rows" \
        "cd '$tmp' && env HOME='$tmp/home' GENLAB_HISTORY='$tmp/home/history' TERM=xterm-256color LANG=C.UTF-8 \
         LC_ALL=C.UTF-8 EDITOR='$tmp/editor.sh' GENLAB_LUADIR='${GENLAB_LUADIR:-}' GENLAB_THREADS=${GENLAB_THREADS:-2} \
         '$GENLAB' $* 2>'$tmp/$s.err'; echo \"EXITED:\$?\"; sleep 600"
}
screen() { tm capture-pane -p -t "$1"; }
keys() { s=$1; shift; tm send-keys -t "$s" "$@"; }
# type SESSION TEXT: literal text, then Enter
type_line() { tm send-keys -t "$1" -l "$2"; tm send-keys -t "$1" Enter; }
# wait_for SESSION REGEX [SECONDS]: true once the screen matches
wait_for() {
    i=0; limit=$(( ${3:-10} * 10 ))
    while [ $i -lt $limit ]; do
        screen "$1" | grep -qE "$2" && return 0
        sleep 0.1; i=$((i + 1))
    done
    return 1
}
status_line() { screen "$1" | grep -E '^ (ready|running|PAUSED)' | tail -1; }
step_of() { status_line "$1" | sed -n 's/.* step \([0-9]*\) .*/\1/p'; }
# true when stdin holds a braille character (U+2800-U+28FF: bytes E2 A0-A3 ..)
is_braille() { LC_ALL=C grep -q -e "$(printf '\342\240')" -e "$(printf '\342\241')" -e "$(printf '\342\242')" -e "$(printf '\342\243')"; }
finish() { tm kill-session -t "$1" >/dev/null 2>&1; }

# A short corpus and a tiny GPT, trained by gl.train under the name "tiny".
awk 'BEGIN { for (i = 0; i < 200; i++) print "the quick brown fox jumps over the lazy dog " i }' >"$tmp/corpus.txt"
cat >"$tmp/setup.lua" <<'EOF'
gl.seed(1)
data = gl.data.text("corpus.txt", { tokenizer = "char", block = 16, batch = 8 })
model = gl.models.gpt { vocab_size = data:vocab_size(), block_size = 16, n_layer = 1, n_head = 2, n_embd = 32 }
run = gl.train { model = model, data = data, lr = 1e-3, name = "tiny", quiet = true }
EOF

# ---- start, evaluate, complete, quit -----------------------------------------------------
start a 120x40
check "start: the workbench shows the welcome notebook, a status line and a prompt" \
    "wait_for a 'Welcome to genlab' 15 && wait_for a '^ ready' && wait_for a '^>( |\$)'"
type_line a '6 * 7 + 0.5'
check "an expression's value is printed in the transcript" "wait_for a '^42.5'"
type_line a 't = gl.zeros(2, 3) print("t" .. "made")'
wait_for a '^tmade' 10 # completion looks at the live global t
keys a 't:resh' Tab
check "Tab completes a tensor method (t:resh -> t:reshape)" "wait_for a '^> t:reshape'"
keys a C-u
type_line a ':'
type_line a ':s'
type_line a '2 * 21 + 0.25'
check "a lone ':' and an ambiguous ':s' do not quit; the workbench still evaluates" "wait_for a '^42.25'"
type_line a 'history_marker = 1'
keys a C-d
check "Ctrl-D quits with status 0" "wait_for a 'EXITED:0'"
check "the welcome notebook is copied to ~/.genlab" "test -f '$tmp/home/.genlab/welcome.lua'"
finish a

start b 120x40
wait_for b '^>( |$)' 15
keys b Up
check "history: a line from the previous session comes back with Up" "wait_for b '^> history_marker = 1'"
keys b C-u
type_line b ':q'
check ":q quits" "wait_for b 'EXITED:0'"
finish b

# ---- training in the background ------------------------------------------------------------
start c 120x40
wait_for c '^>( |$)' 15
type_line c 'dofile("setup.lua")'
wait_for c '^ ready' 10
type_line c 'run:step(300)'
wait_for c '^ running.*tiny step [0-9]' 15
loss1=$(screen c | cut -c72-)
type_line c '1000 + 1'
check "typing works while training: 1000 + 1 prints 1001 with the job running" \
    "wait_for c '^1001' 5 && status_line c | grep -q '^ running'"
sleep 0.5
loss2=$(screen c | cut -c72-)
check "the Loss pane changes while the run trains" "test \"\$loss1\" != \"\$loss2\""
check "the run finishes in the background: 300 steps" "wait_for c '^ ready.*tiny step 300 ' 60"
check "the Loss pane draws braille curves with axes" "screen c | grep -q '┤' && screen c | is_braille"

# pause and resume
type_line c 'run:step(100000)'
wait_for c '^ running' 10
sleep 0.5
# keystroke echo while training: the time until a typed character shows
worst=0
for ch in q w e r t; do
    t0=$(date +%s%N)
    keys c -l "$ch"
    i=0
    while [ $i -lt 200 ] && ! screen c | grep -qE "^> [qwert]*$ch"; do sleep 0.005; i=$((i + 1)); done
    ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    [ $ms -gt $worst ] && worst=$ms
done
echo "# keystroke echo while training: worst of 5 is $worst ms (tmux capture polling included)"
check "keystrokes echo while training (worst of 5 under 150 ms, polling included: $worst ms)" "test $worst -lt 150"
keys c C-u
keys c Space
check "Space on an empty line pauses the job" "wait_for c '^ PAUSED' 5"
sleep 0.3; s1=$(step_of c); sleep 1; s2=$(step_of c)
check "no steps are taken while paused ($s1 = $s2)" "test -n '$s1' && test '$s1' = '$s2'"
keys c Space
sleep 1.5
s3=$(step_of c)
check "Space again resumes: the step count moves on ($s2 -> $s3)" "test -n '$s3' && test '$s3' -gt '$s2'"

# Ctrl-C stops the work, not the program; the model is as after its last step
keys c C-c
check "Ctrl-C during training returns to the prompt (interrupted, status ready)" \
    "wait_for c 'interrupted' 10 && wait_for c '^ ready' 10"
type_line c 'print("intact", run.step_count == (gl.metrics.last("tiny", "loss")), run.step_count > 300)'
check "after Ctrl-C the run's step count equals the steps logged" "wait_for c '^intact +true +true' 5"
type_line c 'local _, l = model:forward(data:batch("train")) print("forward", l:item() == l:item())'
check "after Ctrl-C a forward pass still works (finite loss)" "wait_for c '^forward +true' 5"
keys c C-s
check "Ctrl-S checkpoints the run" "wait_for c 'saved tiny.ckpt.safetensors at step' 10 && test -f '$tmp/tiny.ckpt.safetensors'"

# an image grid in the Image pane
type_line c 'show(gl.rand(4, 3, 8, 8), "noise")'
check "show(t) draws a tensor image grid in the Image pane as half-blocks" \
    "wait_for c 'Image: noise \[4,3,8,8\]' 5 && screen c | grep -q '▀'"

# resizes
tm resize-window -t c -x 60 -y 20
sleep 0.5
type_line c '2 + 2'
check "resized to 60x20: still running, compact layout, prompt at the bottom" \
    "wait_for c '^4$' 5 && screen c | tail -1 | grep -q '^>' && screen c | grep -q 'Transcript'"
tm resize-window -t c -x 200 -y 60
sleep 0.5
type_line c '3 + 3'
check "resized to 200x60: still running, panes side by side, prompt at the bottom" \
    "wait_for c '^6 ' 5 && screen c | tail -1 | grep -q '^>' && screen c | grep -q 'Transcript \[F7\] *│'"
keys c F1
check "F1 shows the key bindings" "wait_for c 'genlab workbench keys' 5"
keys c x
type_line c 'help(gl.zeros)'
check "help(x) shows a genlab function's documentation" "wait_for c 'gl.zeros\(shape' 5"
keys c C-d
check "quit after training: status 0" "wait_for c 'EXITED:0' 10"
finish c

# ---- keystroke echo inside long training steps ------------------------------------------
# Steps of a few hundred ms: keys must echo from inside the step (the ops'
# poll hook), not only between steps; a line entered meanwhile is queued.
cat >"$tmp/big.lua" <<'EOF'
gl.seed(1)
data = gl.data.text("corpus.txt", { tokenizer = "char", block = 128, batch = 16 })
model = gl.models.gpt { vocab_size = data:vocab_size(), block_size = 128, n_layer = 4, n_head = 4, n_embd = 256 }
run = gl.train { model = model, data = data, lr = 1e-3, name = "big", quiet = true }
local t0 = gl.clock() run:step(2) print(string.format("STEPMS %d", math.floor((gl.clock() - t0) / 2 * 1000)))
EOF
start h 120x40
wait_for h '^>( |$)' 15
type_line h 'dofile("big.lua")'
wait_for h '^STEPMS [0-9]+' 60
stepms=$(screen h | sed -n 's/^STEPMS \([0-9]*\).*/\1/p' | head -1)
type_line h 'run:step(1000)'
wait_for h '^ running.*big step' 15
sleep 0.3
worst=0
for ch in a s d f g; do
    t0=$(date +%s%N)
    keys h -l "$ch"
    i=0
    while [ $i -lt 400 ] && ! screen h | grep -qE "^> [asdfg]*$ch"; do sleep 0.005; i=$((i + 1)); done
    ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    [ $ms -gt $worst ] && worst=$ms
    sleep 0.05
done
echo "# keystroke echo inside ${stepms} ms training steps: worst of 5 is $worst ms"
if [ -n "$stepms" ] && [ "$stepms" -ge 300 ]; then
    # Between steps only, the worst would be about a step; the target is 50 ms,
    # the bound leaves room for tmux polling on a loaded machine.
    check "keys echo from inside a ${stepms} ms training step (worst of 5: $worst ms, under 250 and a third of a step)" \
        "test $worst -lt 250 && test $((worst * 3)) -lt $stepms"
else
    skip "steps took ${stepms:-?} ms here, too short to tell echo inside a step from echo between steps"
fi
keys h C-u
type_line h 'print("typed" .. "ahead")'
check "a line entered during a step is queued until the step ends" "wait_for h 'runs when the job reaches its next step' 10"
check "the queued line runs at the next step" "wait_for h '^typedahead' 30"
keys h C-c
check "Ctrl-C stops the long run" "wait_for h '^ ready' 30"
keys h C-d
finish h

# ---- a plain terminal: ASCII charts, no colours --------------------------------------
tm new-session -d -s g -x 100 -y 30 \
    "cd '$tmp' && env HOME='$tmp/home' GENLAB_HISTORY='' TERM=xterm LANG=C LC_ALL=C GENLAB_LUADIR='${GENLAB_LUADIR:-}' \
     '$GENLAB'; echo \"EXITED:\$?\"; sleep 600"
wait_for g '^>( |$)' 15
type_line g 'dofile("setup.lua") run:step(30)'
check "LANG=C, TERM=xterm: the Loss pane falls back to ASCII (no braille) and training runs" \
    "wait_for g '^ ready.*tiny step 30 ' 30 && screen g | grep -q '^ Loss\|Loss: loss' && ! screen g | is_braille && screen g | grep -q '[*.:]'"
keys g C-d
check "LANG=C, TERM=xterm: quits cleanly" "wait_for g 'EXITED:0' 10"
finish g

# ---- notebooks ----------------------------------------------------------------------------
cat >"$tmp/nb.lua" <<'EOF'
--%% first
x = 6 * 7
print("answer", x)
--%% second
x + 1
EOF
printf '#!/bin/sh\nsed -i "s/6 \\* 7/6 * 9/" "$1"\n' >"$tmp/editor.sh"
chmod +x "$tmp/editor.sh"
start d 120x40 nb.lua
wait_for d '^>( |$)' 15
keys d C-o
keys d e
check "notebook: e edits the selected cell in \$EDITOR" "wait_for d 'x = 6 \* 9' 10"
keys d a
check "notebook: run all shows each cell's output under it" "wait_for d 'answer +54' 10 && wait_for d '^ +55' 10"
type_line d 'x + 100'
check "notebook: input at the prompt sees the cells' globals (x + 100 gives 154)" "wait_for d '^154' 5"
keys d C-d
check "notebook: quitting saves the outputs beside it" "wait_for d 'EXITED:0' 10 && test -f '$tmp/nb.lua.outputs'"
finish d
start e 120x40 nb.lua
check "notebook: reopened, the edited source and saved outputs are there without running" \
    "wait_for e 'answer +54' 15 && screen e | grep -q '\[1\] ok' && screen e | grep -q 'x = 6 \* 9' && grep -q '6 \* 9' '$tmp/nb.lua'"
keys e C-d
wait_for e 'EXITED:0' 10
finish e

# ---- UI overhead: tokens/s in the workbench vs genlab run ----------------------------------
cat >"$tmp/bench.lua" <<'EOF'
gl = gl or require "genlab"
gl.seed(2)
local data = gl.data.text("corpus.txt", { tokenizer = "char", block = 32, batch = 16 })
local model = gl.models.gpt { vocab_size = data:vocab_size(), block_size = 32, n_layer = 2, n_head = 4, n_embd = 64 }
local r = gl.train { model = model, data = data, lr = 1e-3, name = "bench", quiet = true }
r:step(5)
local t0, tok0 = gl.clock(), r.tokens
r:step(tonumber(os.getenv("BENCH_STEPS") or "150"))
print(("BENCH %.0f tok/s"):format((r.tokens - tok0) / (gl.clock() - t0)))
EOF
# The machine is shared and noisy: each side is measured twice, alternately,
# and the better figure of each kept.
best() { if [ -z "$1" ] || { [ -n "$2" ] && [ "$2" -gt "$1" ]; }; then echo "$2"; else echo "$1"; fi; }
headless=; ui=
for round in 1 2; do
    h=$(cd "$tmp" && "$GENLAB" run bench.lua 2>/dev/null | sed -n 's/^BENCH \([0-9]*\) tok.s$/\1/p')
    headless=$(best "$headless" "$h")
    start f$round 120x40
    wait_for f$round '^>( |$)' 15
    type_line f$round 'dofile("bench.lua")'
    wait_for f$round '^BENCH [0-9]+ tok/s' 120
    u=$(screen f$round | sed -n 's/^BENCH \([0-9]*\) tok.s.*/\1/p' | head -1)
    ui=$(best "$ui" "$u")
    type_line f$round ':stats'
    wait_for f$round '^UI cost' 5
    cost=$(screen f$round | sed -n 's/^UI cost.*(\([0-9.]*\)%).*/\1/p' | head -1)
    echo "# round $round: $(screen f$round | grep '^UI cost' | sed 's/  *│.*//')"
    keys f$round C-d
    finish f$round
done
if [ -n "$headless" ] && [ -n "$ui" ]; then
    echo "# UI overhead: genlab run $headless tok/s, workbench $ui tok/s (ratio $(awk "BEGIN { printf \"%.3f\", $ui / $headless }"))"
fi
check "UI overhead: the UI takes under 5% of the time while training (${cost}%, from :stats)" \
    "test -n '$cost' && awk 'BEGIN { exit !($cost < 5) }'"
check "UI overhead: the workbench trains at least half as fast as genlab run on this noisy machine" \
    "test -n '$ui' && test -n '$headless' && awk 'BEGIN { exit !($ui >= 0.5 * $headless) }'"

# ---- the Probe pane ------------------------------------------------------------------------
# gl.probe on a tiny GPT with a char tokenizer, shown in the Probe pane (F8).
cat >"$tmp/probe.lua" <<'EOF'
gl.seed(1)
ptok = gl.tokenizer.char("abcdefghijklmnopqrstuvwxyz ")
pmodel = gl.models.gpt { vocab_size = ptok:vocab_size(), block_size = 32, n_layer = 1, n_head = 2, n_embd = 16 }
EOF
start p 120x40
wait_for p '^>( |$)' 15
keys p F6 # the notebook's heads are coloured: out of the way of the colour check
keys p F8
check "F8 opens the Probe pane, which says how to fill it" \
    "wait_for p 'Probe \[F8\]' 5 && wait_for p 'probe\{\.\.\.\} compares prompt variants here' 5"
type_line p 'dofile("probe.lua")'
type_line p 'probe{model = pmodel, tokenizer = ptok, max_tokens = 6, variants = {{name = "terse", prompt = "the fox"}, {name = "verbose", prompt = "the quick brown fox"}}}'
check "probe{...} shows two variants side by side with their prompt token counts (7 and 19)" \
    "wait_for p 'terse +│ verbose' 15 && wait_for p 'prompt \(7 tokens\): +│ prompt \(19 tokens\):' 5"
check "probe{...} returns the result, printed as a one-line summary" "wait_for p '^probe: terse 7 tokens, verbose 19 tokens' 5"
check "the Probe pane colours output tokens by log-prob (256-colour escapes, no error shown)" \
    "tm capture-pane -e -p -t p | grep -q '38;5;\(76\|221\|203\)m' && ! screen p | grep -qi 'error\|traceback'"
tm resize-window -t p -x 60 -y 20
sleep 0.5
type_line p '5 + 5'
check "resized to 60x20 with the Probe pane open: no crash, the variants stacked in the compact band" \
    "wait_for p '^10$' 5 && screen p | grep -q 'Probe \[F8\]' && screen p | grep -q 'prompt (7 tokens):' && \
     ! screen p | grep -q 'prompt (19 tokens)' && screen p | tail -1 | grep -q '^>'"
keys p C-o C-o C-o # Transcript, Loss, Probe
scrolled=no
for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
    keys p Down
    if wait_for p 'prompt \(19 tokens\):' 1; then scrolled=yes; break; fi
done
check "the focused Probe pane scrolls (Down) to the second variant's token count" "test $scrolled = yes"
keys p Escape
tm resize-window -t p -x 120 -y 40
sleep 0.5
check "back at 120x40 the variants are side by side again" "wait_for p 'terse +│ verbose' 5"
keys p F8
check "F8 hides the Probe pane" "sleep 0.5; ! screen p | grep -q 'Probe \[F8\]'"
keys p C-d
check "quit after probing: status 0" "wait_for p 'EXITED:0' 10"
finish p

echo "1..$n"
exit $fail
