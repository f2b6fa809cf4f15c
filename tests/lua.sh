#!/bin/sh
# Runs every tests/lua/test_*.lua under `genlab run` and merges their TAP
# lines into one stream. A file that dies before its plan counts as a failure.
src=${top_srcdir:-.}
GENLAB=${GENLAB:-./genlab}
n=0; fail=0
for f in "$src"/tests/lua/test_*.lua; do
    name=$(basename "$f" .lua)
    out=$(cd "$src/tests/lua" && "$GENLAB" run "$f" 2>&1); rc=$?
    echo "$out" | grep -v '^\(ok\|not ok\|1\.\.\)' | sed 's/^/# /'
    for line in $(echo "$out" | grep -n '^\(ok\|not ok\)' | cut -d: -f1); do
        l=$(echo "$out" | sed -n "${line}p")
        n=$((n + 1))
        case $l in
        "not ok"*) fail=1; echo "not ok $n - $name:$(echo "$l" | sed 's/^not ok [0-9]* -*//')" ;;
        *) echo "ok $n - $name:$(echo "$l" | sed 's/^ok [0-9]* -*//')" ;;
        esac
    done
    if [ $rc -ne 0 ] || ! echo "$out" | grep -q '^1\.\.'; then
        n=$((n + 1)); fail=1; echo "not ok $n - $name exited with status $rc before finishing"
    fi
done
echo "1..$n"
exit $fail
