#!/usr/bin/env bash
# The SQS compatibility checks with real AWS clients, on loopback ports only:
#   1. the boto3 suite (test_sqs.py) against openq-server, which checks every request's AWS
#      Signature Version 4 and permissions against credentials.json,
#   2. the same suite against moto_server, the reference for SQS semantics (its known differences
#      are listed in test_sqs.py's MOTO_DIFFERS and skipped only there),
#   3. a few AWS CLI calls and a bounded load test (load_test.py) against openq-server,
#   4. a graceful shutdown: SIGTERM during a 20 s long poll ends the poll and the server at once.
# Usage: Tests/SQSCompatibility/run.sh PATH-TO-openq-server
# Needs python3 with boto3, awscli and moto[server] (.ci/run installs them).
set -euo pipefail
server_binary=$(realpath "$1")
cd "$(dirname "$0")"
logs=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2> /dev/null || true; done
    rm -rf "$logs"
}
trap cleanup EXIT

export AWS_ACCESS_KEY_ID=AKIDEXAMPLE AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY
export AWS_DEFAULT_REGION=us-east-1

# Starts openq-server on a free port (with any extra options given); sets $server_pid and $server_port.
start_server() {
    : > "$logs/server.out"
    "$server_binary" --port 0 --credentials "$PWD/credentials.json" --log-level warning "$@" > "$logs/server.out" 2> "$logs/server.err" &
    server_pid=$!
    pids+=("$server_pid")
    for _ in $(seq 1 100); do
        server_port=$(sed -n 's/.*listening on .*:\([0-9]*\)$/\1/p' "$logs/server.out")
        if [ -n "$server_port" ]; then return 0; fi
        sleep 0.1
    done
    echo "openq-server did not start:"; cat "$logs/server.err"; exit 1
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_server
echo "== boto3 suite against openq-server (port $server_port)"
SQS_ENDPOINT="http://127.0.0.1:$server_port" timeout 300 python3 -m unittest test_sqs

echo "== AWS CLI against openq-server"
endpoint="http://127.0.0.1:$server_port"
url=$(aws --endpoint-url "$endpoint" sqs create-queue --queue-name cli-queue --query QueueUrl --output text)
aws --endpoint-url "$endpoint" sqs send-message --queue-url "$url" --message-body "hi from the cli" > /dev/null
body=$(aws --endpoint-url "$endpoint" sqs receive-message --queue-url "$url" --query 'Messages[0].Body' --output text)
[ "$body" = "hi from the cli" ] || { echo "the CLI received '$body'"; exit 1; }
aws --endpoint-url "$endpoint" sqs list-queues --query 'QueueUrls' --output text | grep -q cli-queue
aws --endpoint-url "$endpoint" sqs delete-queue --queue-url "$url"
echo "AWS CLI: create, send, receive, list, delete ok"

echo "== GET /metrics: Prometheus text for an admin key's signed request (curl --aws-sigv4), 403 otherwise"
metrics=$(curl -sf --aws-sigv4 "aws:amz:us-east-1:sqs" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" "$endpoint/metrics")
echo "$metrics" | grep -q '^openq_server_requests_total{.*action="SendMessage"' || { echo "no request counter in /metrics"; exit 1; }
echo "$metrics" | grep -q '^# TYPE openq_server_request_duration_seconds histogram' || { echo "no duration histogram in /metrics"; exit 1; }
status=$(curl -s -o /dev/null -w '%{http_code}' "$endpoint/metrics")
[ "$status" = 403 ] || { echo "unsigned GET /metrics answered $status"; exit 1; }
status=$(curl -s -o /dev/null -w '%{http_code}' --aws-sigv4 "aws:amz:us-east-1:sqs" --user "AKIDSENDER:sender-secret-0123456789" "$endpoint/metrics")
[ "$status" = 403 ] || { echo "GET /metrics by a sender key answered $status"; exit 1; }
echo "metrics: $(echo "$metrics" | grep -c '^openq_') openq_ samples for the admin key; 403 unsigned and for a sender key"

echo "== load: concurrent clients sending, receiving and deleting (bounded)"
timeout 180 python3 load_test.py "$endpoint" "$server_pid"

echo "== graceful shutdown: SIGTERM during a long poll"
python3 - "$endpoint" "$server_pid" <<'PY'
import os, signal, sys, threading, time
import boto3
endpoint, pid = sys.argv[1], int(sys.argv[2])
sqs = boto3.client("sqs", endpoint_url=endpoint)
url = sqs.create_queue(QueueName="shutdown")["QueueUrl"]
result = {}
def poll():
    started = time.time()
    try:
        result["messages"] = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=20).get("Messages", [])
    except Exception as error:  # the connection may close as the server stops
        result["error"] = repr(error)
    result["took"] = time.time() - started
thread = threading.Thread(target=poll)
thread.start()
time.sleep(1)
os.kill(pid, signal.SIGTERM)
thread.join(25)
assert "took" in result, "the long poll did not end"
assert result["took"] < 10, f"the long poll held shutdown for {result['took']:.1f} s"
print(f"long poll ended {result['took']:.1f} s after it started ({result.get('messages', result.get('error'))})")
PY
for _ in $(seq 1 100); do
    if ! kill -0 "$server_pid" 2> /dev/null; then break; fi
    sleep 0.1
done
if kill -0 "$server_pid" 2> /dev/null; then echo "openq-server did not stop after SIGTERM"; exit 1; fi
wait "$server_pid" && status=0 || status=$?
[ "$status" -eq 0 ] || { echo "openq-server exited with $status after SIGTERM"; cat "$logs/server.err"; exit 1; }
echo "openq-server stopped cleanly"

echo "== --data: queues, attributes and messages survive a restart"
start_server --data "$logs/queues.sqlite"
python3 - "http://127.0.0.1:$server_port" <<'PY'
import sys, boto3
sqs = boto3.client("sqs", endpoint_url=sys.argv[1])
url = sqs.create_queue(QueueName="kept", Attributes={"VisibilityTimeout": "40"})["QueueUrl"]
sqs.send_message(QueueUrl=url, MessageBody="survives")
sqs.send_message(QueueUrl=url, MessageBody="in flight")
assert sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1)["Messages"][0]["Body"] == "survives"
PY
kill -TERM "$server_pid"; wait "$server_pid"
start_server --data "$logs/queues.sqlite"
python3 - "http://127.0.0.1:$server_port" <<'PY'
import sys, boto3
sqs = boto3.client("sqs", endpoint_url=sys.argv[1])
url = sqs.get_queue_url(QueueName="kept")["QueueUrl"]
assert sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout"])["Attributes"] == {"VisibilityTimeout": "40"}
bodies = sorted(m["Body"] for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []))
assert bodies == ["in flight", "survives"], bodies
print("after a restart:", bodies)
PY
kill -TERM "$server_pid"; wait "$server_pid"

echo "== the same boto3 suite against moto_server (the reference)"
moto_port=$(free_port)
moto_server -H 127.0.0.1 -p "$moto_port" > "$logs/moto.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
    if python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$moto_port/moto-api/')" 2> /dev/null; then break; fi
    sleep 0.2
done
SQS_REFERENCE=moto SQS_ENDPOINT="http://127.0.0.1:$moto_port" timeout 300 python3 -m unittest test_sqs
echo "SQS compatibility: ok"
