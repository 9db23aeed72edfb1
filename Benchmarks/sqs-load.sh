#!/usr/bin/env bash
# openq-server and moto_server under the same load, in one run, on loopback:
#   SendMessageBatch(10) + ReceiveMessage(10) + DeleteMessageBatch(10) from N clients, and the
#   long-poll wake-up latency after a send. Builds openq-server and the load client in release.
# Usage: Benchmarks/sqs-load.sh [--clients 16] [--seconds 5] [--wakeups 200]
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --product openq-server
swift build -c release --package-path Benchmarks --product openq-sqs-load
logs=$(mktemp -d)
pids=()
trap 'for pid in "${pids[@]}"; do kill "$pid" 2> /dev/null || true; done; rm -rf "$logs"' EXIT

: > "$logs/server.out"
"$(swift build -c release --show-bin-path)/openq-server" --port 0 \
    --credentials Tests/SQSCompatibility/credentials.json --log-level warning > "$logs/server.out" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
    port=$(sed -n 's/.*listening on .*:\([0-9]*\)$/\1/p' "$logs/server.out")
    if [ -n "$port" ]; then break; fi
    sleep 0.1
done
moto_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
moto_server -H 127.0.0.1 -p "$moto_port" > "$logs/moto.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
    if python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$moto_port/moto-api/')" 2> /dev/null; then break; fi
    sleep 0.2
done
"$(swift build -c release --package-path Benchmarks --show-bin-path)/openq-sqs-load" \
    --endpoint "openq=http://127.0.0.1:$port" --endpoint "moto=http://127.0.0.1:$moto_port" "$@"
