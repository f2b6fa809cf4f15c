#!/bin/sh
# genlab serve over loopback, with curl: every endpoint, OpenAI response
# shapes, streaming (the deltas add up to the plain answer), greedy output
# equal to `genlab generate`, each error status as a JSON error, the API key,
# a full queue, a slow uploader that blocks nobody, a client that leaves
# mid-stream (its job is cancelled), 200 requests from 8 clients with no
# failure and flat memory, clean shutdown on SIGTERM and SIGINT, and
# `genlab bench serve`. Servers are started and stopped here.
GENLAB=${GENLAB:-./genlab}
command -v curl >/dev/null 2>&1 || { echo "1..0 # SKIP curl is not installed"; exit 0; }
n=0; fail=0
check() { n=$((n + 1)); if eval "$2" >/dev/null 2>&1; then echo "ok $n - $1"; else echo "not ok $n - $1"; fail=1; fi; }
tmp=$(mktemp -d)
pids=""
trap 'for p in $pids; do kill $p 2>/dev/null; done; rm -rf "$tmp"' EXIT

# start NAME ARGS...: a server in the background; sets $url and $pid.
start() {
  name=$1; shift
  "$GENLAB" serve --port 0 "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" &
  pid=$!; pids="$pids $pid"
  i=0; url=""
  while [ $i -lt 100 ] && [ -z "$url" ]; do
    url=$(head -n 1 "$tmp/$name.out" 2>/dev/null); [ -n "$url" ] || sleep 0.1; i=$((i + 1))
  done
}
# req PATH [curl args]: body into $tmp/body, status into $tmp/code.
req() { p=$1; shift; curl -s -o "$tmp/body" -w '%{http_code}' "$@" "$url$p" >"$tmp/code"; }
code() { test "$(cat "$tmp/code")" = "$1"; }
body() { grep -q -- "$1" "$tmp/body"; }
json_error() { code "$1" && grep -q '^{"error":{"message":"[^"]*","type":"[a-z_]*"}}$' "$tmp/body"; }
rss() { sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$1/status"; }
chat() { printf '{"model":"tiny","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"%s"}]%s}' "$1" "$2"; }

# usage
check "--help exits 0 and names the endpoints" "\"$GENLAB\" serve --help | grep -q '/v1/chat/completions'"
check "an unknown flag exits 2 with one line naming it" "\"$GENLAB\" serve --model x --frob 2>$tmp/e; test \$? -eq 2 && test \$(wc -l <$tmp/e) -eq 1 && grep -q -- \"'--frob'\" $tmp/e"
check "missing --model exits 2" "\"$GENLAB\" serve 2>$tmp/e; test \$? -eq 2 && grep -q -- '--model' $tmp/e"
check "a bad --port exits 2" "\"$GENLAB\" serve --model x --port 70000; test \$? -eq 2"
check "a --host that is not an address exits 2" "\"$GENLAB\" serve --model x --host localhost; test \$? -eq 2"
check "--api-key-env naming an unset variable exits 2" "env -u GL_NO_SUCH_KEY \"$GENLAB\" serve --model x --api-key-env GL_NO_SUCH_KEY; test \$? -eq 2"
check "a missing model exits 1 naming it" "\"$GENLAB\" serve --model $tmp/none.safetensors --port 0 2>$tmp/e; test \$? -eq 1 && grep -q none.safetensors $tmp/e"

# a random char GPT over printable ASCII, saved with its tokenizer
printf 'require("genlab.serve").tiny_model(arg[1])\n' >"$tmp/make.lua"
m="$tmp/tiny"
"$GENLAB" run "$tmp/make.lua" "$m"
check "a tiny model is made" "test -s $m"

start main --model "$m" --max-body 4096 --max-tokens 64
main_pid=$pid
check "the first stdout line is a loopback URL" "echo '$url' | grep -q '^http://127\.0\.0\.1:[0-9][0-9]*\$'"
check "GET /health" "req /health && code 200 && body '\"status\":\"ok\"'"
check "GET /v1/models lists the model by its file name" "req /v1/models && code 200 && body '\"object\":\"list\"' && body '\"id\":\"tiny\"'"
chat hello ',"max_tokens":12,"seed":7' >"$tmp/chat.json"
req /v1/chat/completions -d @"$tmp/chat.json"
check "POST /v1/chat/completions answers 200 with a chat.completion" "code 200 && body '\"object\":\"chat.completion\"' && body '\"id\":\"chatcmpl-'"
check "with one assistant choice and a finish reason" "body '\"choices\":\[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"' && body '\"finish_reason\":\"\(length\|stop\)\"'"
check "and usage that adds up" "p=\$(sed 's/.*\"prompt_tokens\":\([0-9]*\).*/\1/' $tmp/body); c=\$(sed 's/.*\"completion_tokens\":\([0-9]*\).*/\1/' $tmp/body); t=\$(sed 's/.*\"total_tokens\":\([0-9]*\).*/\1/' $tmp/body); test \$p -gt 10 && test \$c -ge 1 && test \$c -le 12 && test \$t -eq \$((p + c))"
content() { sed -n 's/.*"content":"\(\([^"\\]\|\\.\)*\)".*/\1/p' "$1"; }
content "$tmp/body" >"$tmp/plain.txt"
req /v1/chat/completions -d @"$tmp/chat.json"
check "the same seed gives the same answer" "content $tmp/body | cmp -s - $tmp/plain.txt"
chat hello ',"max_tokens":12,"seed":8' >"$tmp/chat8.json"
req /v1/chat/completions -d @"$tmp/chat8.json"
check "another seed another answer" "! content $tmp/body | cmp -s - $tmp/plain.txt"

chat hello ',"max_tokens":12,"seed":7,"stream":true,"stream_options":{"include_usage":true}' >"$tmp/stream.json"
curl -s -N -D "$tmp/headers" "$url/v1/chat/completions" -d @"$tmp/stream.json" >"$tmp/sse"
check "stream=true answers text/event-stream" "grep -qi '^content-type: text/event-stream' $tmp/headers"
check "every event is a data: line followed by a blank line" "test \$(grep -c '^data: ' $tmp/sse) -ge 3 && test \$(grep -c . $tmp/sse) -eq \$(grep -c '^data: ' $tmp/sse) && test \$(grep -c '^\$' $tmp/sse) -eq \$(grep -c '^data: ' $tmp/sse)"
check "the first chunk gives the role, the chunks are chat.completion.chunk" "grep '^data: {' $tmp/sse | head -n 1 | grep -q '\"delta\":{\"role\":\"assistant\"' && ! grep '^data: {' $tmp/sse | grep -v usage | grep -vq chat.completion.chunk"
check "the stream ends with a finish reason, usage, then [DONE]" "tail -n 6 $tmp/sse | grep -q '\"finish_reason\":\"' && grep -q '\"usage\":{\"prompt_tokens\"' $tmp/sse && tail -n 2 $tmp/sse | head -n 1 | grep -qx 'data: \[DONE\]'"
grep '"delta":{"content"' "$tmp/sse" >"$tmp/deltas"
check "the deltas add up to the plain answer" "test -s $tmp/plain.txt && test \"\$(content $tmp/deltas | tr -d '\\n')\" = \"\$(cat $tmp/plain.txt)\""

"$GENLAB" generate --model "$m" --prompt 'hello' --greedy --max-new 10 >"$tmp/gen.txt"
req /v1/completions -d '{"prompt":"hello","max_tokens":10,"temperature":0}'
check "POST /v1/completions answers a text_completion" "code 200 && body '\"object\":\"text_completion\"' && body '\"choices\":\[{\"index\":0,\"text\":\"'"
check "greedy completion equals genlab generate --greedy" "test \"\$(sed -n 's/.*\"text\":\"\(\([^\"\\\\]\|\\\\.\)*\)\".*/\1/p' $tmp/body)\" = \"\$(sed 's/\\\\/\\\\\\\\/g; s/\"/\\\\\"/g' $tmp/gen.txt)\""
curl -s -N "$url/v1/completions" -d '{"prompt":"hello","max_tokens":5,"stream":true}' >"$tmp/sse2"
check "streamed completions end with [DONE]" "grep -q '\"object\":\"text_completion\"' $tmp/sse2 && grep -qx 'data: \[DONE\]' $tmp/sse2"
check "a stop string ends the answer before it" "req /v1/completions -d '{\"prompt\":\"hello\",\"max_tokens\":10,\"temperature\":0,\"stop\":\"'\$(head -c 4 $tmp/gen.txt | tail -c 1)'\"}' && code 200 && body '\"finish_reason\":\"stop\"'"

# errors: each a JSON error with the right status; the server keeps serving
check "malformed JSON: 400" "req /v1/chat/completions -d '{\"messages\": [' && json_error 400"
check "a body that is not an object: 400" "req /v1/chat/completions -d '[1,2]' && json_error 400"
check "missing messages: 400 naming it" "req /v1/chat/completions -d '{\"model\":\"tiny\"}' && json_error 400 && body messages"
check "a message without content: 400" "req /v1/chat/completions -d '{\"messages\":[{\"role\":\"user\"}]}' && json_error 400 && body 'content'"
check "max_tokens of the wrong type: 400 naming it" "req /v1/chat/completions -d '{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":\"ten\"}' && json_error 400 && body max_tokens"
check "temperature out of range: 400" "req /v1/chat/completions -d '{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"temperature\":9}' && json_error 400"
check "stop of the wrong type: 400" "req /v1/completions -d '{\"prompt\":\"hi\",\"stop\":5}' && json_error 400"
check "max_tokens over the server's limit: 400" "req /v1/completions -d '{\"prompt\":\"hi\",\"max_tokens\":65}' && json_error 400 && body 'limit of 64'"
check "a role the template does not know: 400" "req /v1/chat/completions -d '{\"messages\":[{\"role\":\"wizard\",\"content\":\"hi\"}]}' && json_error 400"
check "a prompt outside the vocabulary: 400" "req /v1/completions -d '{\"prompt\":\"caf\\u00e9\"}' && json_error 400 && body vocabulary"
check "an unknown model: 404" "req /v1/chat/completions -d '{\"model\":\"gpt-9\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}' && json_error 404 && body gpt-9"
check "an unknown path: 404" "req /v1/nothing && json_error 404"
check "GET on a POST endpoint: 405 with Allow" "curl -s -D $tmp/h -o $tmp/body -w '%{http_code}' $url/v1/chat/completions >$tmp/code; json_error 405 && grep -qi '^allow: POST' $tmp/h"
check "POST on a GET endpoint: 405" "req /v1/models -d x && json_error 405"
head -c 5000 /dev/zero | tr '\0' 'a' >"$tmp/big"
check "a body over --max-body: 413" "req /v1/completions --data-binary @$tmp/big && json_error 413"
check "a chunked body over --max-body: 413" "req /v1/completions -H 'Transfer-Encoding: chunked' --data-binary @$tmp/big && json_error 413"
check "after all that the server still answers" "req /v1/completions -d '{\"prompt\":\"hi\",\"max_tokens\":3}' && code 200"
req /metrics
check "GET /metrics: Prometheus text with requests by endpoint and status" "code 200 && body '^genlab_requests_total{endpoint=\"/v1/chat/completions\",status=\"200\"} [1-9]' && body '^genlab_requests_total{endpoint=\"/v1/completions\",status=\"413\"} 2\$' && body '^genlab_requests_total{endpoint=\"other\",status=\"404\"} 1\$'"
check "and errors, latency histogram, tokens, tokens/s, queue depth" "body '^genlab_errors_total [1-9]' && body '^genlab_request_duration_seconds_bucket{le=\"+Inf\"} [1-9]' && body '^genlab_request_duration_seconds_count' && body '^genlab_tokens_generated_total [1-9]' && body '^genlab_tokens_per_second [1-9]' && body '^genlab_queue_depth 0\$' && body '^# TYPE genlab_request_duration_seconds histogram'"

# a slow uploader holds only its own connection
(printf '{"prompt":'; sleep 2; printf '"hi","max_tokens":2}') |
  curl -s -o "$tmp/slow" -w '%{http_code}' -H 'Transfer-Encoding: chunked' --data-binary @- "$url/v1/completions" >"$tmp/slowcode" &
slow=$!
sleep 0.3
check "while a client uploads slowly others are answered at once" "req /v1/completions -d '{\"prompt\":\"hi\",\"max_tokens\":3}' --max-time 1 && code 200"
wait $slow
check "and the slow client gets its answer too" "test \"\$(cat $tmp/slowcode)\" = 200 && grep -q text_completion $tmp/slow"

# load: 200 requests from 8 concurrent clients
load() {
  seq 1 200 | xargs -P 8 -I{} curl -s -o /dev/null -w '%{http_code}\n' "$url/v1/chat/completions" \
    -d '{"messages":[{"role":"user","content":"request {}"}],"max_tokens":16,"seed":{}}' >"$tmp/load$1"
}
load 0
r0=$(rss $main_pid)
load 1
r1=$(rss $main_pid)
check "200 requests from 8 concurrent clients: all 200" "test \$(grep -c '^200\$' $tmp/load1) -eq 200"
if [ "$GENLAB_ASAN" = yes ]; then n=$((n + 1)); echo "ok $n - # SKIP ASan's quarantine keeps freed blocks resident"; else
  check "resident memory does not grow under load (${r0} -> ${r1} kB)" "test -n '$r0' && test -n '$r1' && test \$((r1 - r0)) -lt 4096"
fi
check "every request was counted" "req /metrics && body '^genlab_requests_total{endpoint=\"/v1/chat/completions\",status=\"200\"} 40[0-9]\$'"
kill -TERM $main_pid
i=0; while kill -0 $main_pid 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
wait $main_pid; st=$?
check "SIGTERM stops the server cleanly (exit 0)" "test $st -eq 0"

# a second server: API key, a queue of one, a client that leaves mid-stream
GL_SERVE_TEST_KEY=sekrit-123; export GL_SERVE_TEST_KEY
start keyed --model "$m" --api-key-env GL_SERVE_TEST_KEY --queue 1 --max-tokens 1000000 --verbose
keyed_pid=$pid
K="Authorization: Bearer sekrit-123"
check "without the key: 401" "req /v1/models && json_error 401"
check "with a wrong key: 401" "req /v1/models -H 'Authorization: Bearer sekrit-124' && json_error 401"
check "a wrong key of another length: 401" "req /v1/chat/completions -H 'Authorization: Bearer x' -d @$tmp/chat.json && json_error 401"
check "with the key: 200" "req /v1/models -H '$K' && code 200"
check "/health needs no key" "req /health && code 200"
curl -s -N --max-time 2 -H "$K" "$url/v1/completions" -d '{"prompt":"hello","max_tokens":900000,"stream":true}' >"$tmp/long" 2>/dev/null &
long=$!
sleep 0.5
curl -s -o "$tmp/queued" -w '%{http_code}' --max-time 8 -H "$K" "$url/v1/completions" -d '{"prompt":"hi","max_tokens":3}' >"$tmp/queuedcode" &
queued=$!
sleep 0.3
check "a full queue: 503 with a JSON error" "req /v1/completions -H '$K' -d '{\"prompt\":\"hi\",\"max_tokens\":3}' && json_error 503 && body queue"
wait $long
check "the long stream was flowing when its client left" "test \$(grep -c '^data: ' $tmp/long) -gt 100"
wait $queued
check "the client leaving cancels its job: the queued request is answered" "test \"\$(cat $tmp/queuedcode)\" = 200"
check "and the server still answers" "req /v1/completions -H '$K' -d '{\"prompt\":\"hi\",\"max_tokens\":3}' && code 200"
curl -s --max-time 1 -H "$K" "$url/v1/completions" -d '{"prompt":"hello","max_tokens":900000}' >/dev/null 2>&1
check "a client that leaves while waiting for a plain answer cancels it too" "req /v1/completions -H '$K' -d '{\"prompt\":\"hi\",\"max_tokens\":3}' --max-time 5 && code 200"
check "the cancellations are counted" "req /metrics -H '$K' && body '^genlab_cancelled_total 2\$' && body '^genlab_requests_running 0\$'"
check "the key never appears in the log" "grep -q 'POST /v1/completions' $tmp/keyed.err && ! grep -q sekrit $tmp/keyed.err $tmp/keyed.out"
kill -INT $keyed_pid
i=0; while kill -0 $keyed_pid 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
wait $keyed_pid; st=$?
check "SIGINT stops the server cleanly (exit 0)" "test $st -eq 0"

# the load benchmark, small
"$GENLAB" bench serve --model "$m" --clients 4 --requests 40 --max-tokens 8 >"$tmp/bench" 2>&1; st=$?
check "bench serve exits 0 and reports latency, tokens/s, overhead, RSS" "test $st -eq 0 && grep -q '40 ok, 0 failed' $tmp/bench && grep -q 'p50 .* ms, p99 .* ms' $tmp/bench && grep -q 'tokens/s' $tmp/bench && grep -q 'overhead' $tmp/bench && grep -q 'server RSS' $tmp/bench"
tokens() { sed -n "s/^  $1 .*(\([0-9]*\) tokens in .*/\1/p" "$tmp/bench"; }
check "bench serve alternates the load with the same generations in-process, and reports both CPU times" "grep -q '40 ok, 0 failed (in 3 rounds' $tmp/bench && test -n \"\$(tokens served)\" && test \"\$(tokens served)\" = \"\$(tokens in-process)\" && grep -q '^  CPU  *server [0-9.]* s during the load, in-process [0-9.]* s' $tmp/bench"
check "bench serve rejects a bad flag with 2" "\"$GENLAB\" bench serve --clients zero; test \$? -eq 2"
echo "1..$n"
exit $fail
