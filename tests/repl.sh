#!/bin/sh
# genlab repl: on a terminal (driven through tmux, screens captured and
# polled) and through a pipe. Each test names what it guards.
GENLAB=${GENLAB:-./genlab}
n=0; fail=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); echo "not ok $n - $1"; fail=1; }
check() { if eval "$2" >/dev/null 2>&1; then ok "$1"; else not_ok "$1"; fi; }
tmp=$(mktemp -d)
sock=genlab-test-$$
tm() { tmux -L "$sock" "$@"; }
trap 'tm kill-server >/dev/null 2>&1; rm -rf "$tmp"' EXIT

# ---- through a pipe: no prompts, only results and errors --------------------
repl() { "$GENLAB" repl "$@" 2>"$tmp/err"; }
check "pipe: an expression prints only its value (1+1 gives 2)" \
    "test \"\$(echo '1+1' | repl)\" = 2"
check "pipe: several values print tab-separated" \
    "test \"\$(echo '1, \"a\", true' | repl)\" = \"\$(printf '1\ta\ttrue')\""
check "pipe: nil results and statements print nothing" \
    "test -z \"\$(printf 'nil\nlocal x = 1\nx = 2\n' | repl)\""
check "pipe: a multi-line function definition, then a call" \
    "test \"\$(printf 'function sq(x)\n  return x * x\nend\nsq(7)\n' | repl)\" = 49"
check "pipe: an expression continued on the next line (1 + / 2)" \
    "test \"\$(printf '1 +\n2\n' | repl)\" = 3"
check "pipe: _ holds the last result" \
    "test \"\$(printf '6 * 7\n_ + 1\n' | repl | tr '\n' ' ')\" = '42 43 '"
check "pipe: gl is a global holding the genlab module" \
    "test \"\$(echo 'type(gl.ones), gl == require \"genlab\"' | repl)\" = \"\$(printf 'function\ttrue')\""
check "pipe: a tensor expression prints the tensor" \
    "echo 'gl.ones{2, 3}' | repl | grep -q 'shape=\[2,3\]'"
out=$(printf 'error("boom")\nprint("still here")\n' | repl); rc=$?
check "pipe: an error goes to stderr with its traceback" "grep -q 'stdin:1: boom' '$tmp/err' && grep -q 'stack traceback' '$tmp/err'"
check "pipe: the line after an error still runs" "test '$out' = 'still here'"
check "pipe: exit status 1 when an input failed" "test $rc -eq 1"
printf 'function f(\n' | repl; rc=$?
check "pipe: input left unfinished at the end is reported (status 1)" "test $rc -eq 1 && grep -q '<eof>' '$tmp/err'"
printf 'x = 21\nprint("file", arg[0] ~= nil, arg[1])\n' > "$tmp/start.lua"
check "repl FILE.lua runs the file with its args, then reads input" \
    "test \"\$(echo 'x * 2' | repl '$tmp/start.lua' a1 | tr '\n' ' ')\" = \"\$(printf 'file\ttrue\ta1 42 ')\""
check "repl -x is a usage error (status 2)" "\"$GENLAB\" repl -x </dev/null; test \$? -eq 2"
# SIGINT from outside, as a terminal would send it: interrupts the loop, not the REPL.
# (A watchdog ends a REPL that ignores it; SIGPIPE must not end this script.)
mkfifo "$tmp/fifo"
"$GENLAB" repl <"$tmp/fifo" >"$tmp/out" 2>"$tmp/err" &
pid=$!
(sleep 10; kill -9 $pid) >/dev/null 2>&1 &
watchdog=$!
trap '' PIPE
exec 3>"$tmp/fifo"
echo 'while true do end' >&3
sleep 0.5
kill -INT $pid
echo 'print("after", 1 + 1)' >&3
exec 3>&-
wait $pid
kill $watchdog 2>/dev/null
trap - PIPE
check "pipe: SIGINT stops a running loop with 'interrupted!'" "grep -q 'interrupted!' '$tmp/err'"
check "pipe: after SIGINT the next input runs" "grep -q 'after	2' '$tmp/out'"

# ---- on a terminal, through tmux ------------------------------------------------
if ! command -v tmux >/dev/null 2>&1; then
    n=$((n + 1)); echo "ok $n # SKIP tmux is not installed: no terminal tests"
    echo "1..$n"; exit $fail
fi

# One idle session keeps the server up between tests (it exits with its last session).
tm new-session -d -s keep 'sleep 600'

# start NAME [HISTORY]: a REPL in a fresh 120x40 terminal; prints "[exit N]" when it ends.
start() {
    tm new-session -d -x 120 -y 40 -s "$1" \
        "GENLAB_HISTORY='${2:-$tmp/history}' GENLAB_LUADIR='$GENLAB_LUADIR' '$GENLAB' repl; echo \"[exit \$?]\"; sleep 60"
}
screen() { tm capture-pane -p -t "$1" 2>/dev/null; }
# The last non-blank line of the screen, trailing blanks dropped.
last_line() { screen "$1" | sed 's/ *$//' | grep -v '^$' | tail -n 1; }
# wait_line NAME REGEX: polls up to 10 s for a screen line matching ^REGEX *$.
wait_line() {
    i=0
    while [ $i -lt 100 ]; do
        screen "$1" | grep -Eq "^$2 *\$" && return 0
        sleep 0.1; i=$((i + 1))
    done
    return 1
}
# wait_prompt NAME [PROMPT]: polls up to 10 s for an empty prompt on the last line.
wait_prompt() {
    i=0
    while [ $i -lt 100 ]; do
        [ "$(last_line "$1")" = "${2:->}" ] && return 0
        sleep 0.1; i=$((i + 1))
    done
    return 1
}
type_line() { tm send-keys -t "$1" -l "$2" && tm send-keys -t "$1" Enter; }
finish() { tm kill-session -t "$1" >/dev/null 2>&1; }

start quit
check "tty: starts with a banner naming genlab and a '> ' prompt" "wait_prompt quit && screen quit | grep -q '^genlab'"
tm send-keys -t quit C-d
check "tty: Ctrl-D at the prompt exits with status 0" "wait_line quit '\[exit 0\]'"
finish quit

start expr
wait_prompt expr; type_line expr '1+2'
check "tty: an expression prints its value (1+2 shows 3)" "wait_line expr 3 && wait_prompt expr"
type_line expr '10 * 10'; wait_prompt expr; type_line expr '_ + 1'
check "tty: _ holds the last result (10*10 then _+1 shows 101)" "wait_line expr 101"
finish expr

start tensor
wait_prompt tensor; type_line tensor 'gl.ones{100, 100}'
check "tty: a big tensor prints summarized (rows and columns elided)" \
    "wait_line tensor '.*shape=\[100,100\], dtype=f32\)' && screen tensor | grep -q '^ *\.\.\.,' && screen tensor | grep -q '1, \.\.\., 1'"
finish tensor

start multi
wait_prompt multi; type_line multi 'function sq(x)'
check "tty: an unfinished function asks for more with '... '" "wait_prompt multi '...'"
type_line multi '  return x * x'; type_line multi 'end'; wait_prompt multi; type_line multi 'sq(12)'
check "tty: the multi-line function is defined and callable (sq(12) shows 144)" "wait_line multi 144"
finish multi

start err
wait_prompt err; type_line err 'error("boom")'
check "tty: an error prints its message" "wait_line err 'stdin:1: boom'"
wait_prompt err; type_line err '40 + 2'
check "tty: after an error the prompt still evaluates (40+2 shows 42)" "wait_line err 42"
finish err

start hist1 "$tmp/hist"
wait_prompt hist1; type_line hist1 'hist_probe = 4242'; wait_prompt hist1
tm send-keys -t hist1 C-d; wait_line hist1 '\[exit 0\]'; finish hist1
start hist2 "$tmp/hist"
wait_prompt hist2; tm send-keys -t hist2 Up
check "tty: history persists: Up recalls the previous session's line" "wait_line hist2 '> hist_probe = 4242'"
tm send-keys -t hist2 Enter; wait_prompt hist2; type_line hist2 'hist_probe + 1'
check "tty: the recalled line runs (hist_probe + 1 shows 4243)" "wait_line hist2 4243"
finish hist2

start spin
wait_prompt spin; type_line spin 'while true do end'; sleep 0.5; tm send-keys -t spin C-c
check "tty: Ctrl-C interrupts a pure-Lua loop ('interrupted!')" "wait_line spin '.*interrupted!' && wait_prompt spin"
type_line spin '6 * 7'
check "tty: after Ctrl-C the prompt still evaluates (6*7 shows 42)" "wait_line spin 42"
finish spin

# A loop of tensor ops: the interrupt lands in a kernel's poll or in the Lua hook.
start ops
wait_prompt ops
type_line ops 'local add = getmetatable(gl.ones{1}).__add; for i = 1, 1e9 do local x = gl.ones(1000); if add then x = x + 1 end end'
sleep 0.5; tm send-keys -t ops C-c
check "tty: Ctrl-C interrupts a loop of tensor ops" "wait_line ops '.*interrupted!?' && wait_prompt ops"
type_line ops '7 * 8'
check "tty: after interrupting tensor ops the next command runs (7*8 shows 56)" "wait_line ops 56"
finish ops

start cancel
wait_prompt cancel; tm send-keys -t cancel -l 'abc'; wait_line cancel '> abc'; tm send-keys -t cancel C-c
check "tty: Ctrl-C at the prompt drops the typed text and gives a new prompt" \
    "wait_line cancel '> abc\^C' && wait_prompt cancel"
type_line cancel 'function g()'; wait_prompt cancel '...'; tm send-keys -t cancel C-c; wait_prompt cancel
type_line cancel '2 + 3'
check "tty: Ctrl-C drops an unfinished chunk; the REPL keeps running (2+3 shows 5)" \
    "wait_line cancel 5 && ! screen cancel | grep -q 'exit'"
finish cancel

start paste
wait_prompt paste
tm set-buffer "$(printf 'px = 5\nfunction pf(a)\n\treturn a * px\nend\npf(3)')"; tm paste-buffer -p -t paste; tm send-keys -t paste Enter
check "tty: a pasted block (with a tab) runs line by line (pf(3) shows 15)" "wait_line paste 15 && wait_prompt paste"
finish paste

start compl
wait_prompt compl; tm send-keys -t compl -l 'gl.system_'; tm send-keys -t compl Tab
check "tty: Tab completes a field of gl (gl.system_ -> gl.system_info)" "wait_line compl '> gl.system_info'"
tm send-keys -t compl -l '()'; tm send-keys -t compl Enter
wait_prompt compl; type_line compl 't = gl.ones{3}'; wait_prompt compl
tm send-keys -t compl -l 't:nume'; tm send-keys -t compl Tab
check "tty: Tab completes a tensor method (t:nume -> t:numel)" "wait_line compl '> t:numel'"
tm send-keys -t compl -l '()'; tm send-keys -t compl Enter
check "tty: the completed line runs (t:numel() shows 3)" "wait_line compl 3"
finish compl

echo "1..$n"
exit $fail
