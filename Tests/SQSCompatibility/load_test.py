"""A bounded load test on loopback: many concurrent boto3 clients send, receive and delete.

Checks that nothing is lost (every sent id is received and deleted), nothing is delivered twice
while its receipt is valid (a second delivery only after a visibility expiry, which a generous
timeout rules out here), and that the server's resident memory stays bounded. Bounded in count
and time: it stops by itself.

    python3 load_test.py ENDPOINT SERVER_PID
"""

import os
import sys
import threading
import time
import uuid

import boto3
import botocore.config

ENDPOINT, SERVER_PID = sys.argv[1], int(sys.argv[2])
PRODUCERS, CONSUMERS, PER_PRODUCER = 8, 8, 300
DEADLINE = time.time() + 120


def client():
    return boto3.client(
        "sqs", endpoint_url=ENDPOINT,
        config=botocore.config.Config(retries={"max_attempts": 1}, max_pool_connections=4),
    )


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


url = client().create_queue(QueueName="load-" + uuid.uuid4().hex[:8], Attributes={"VisibilityTimeout": "60"})[
    "QueueUrl"
]
sent, received, duplicates, errors = set(), {}, [], []
lock = threading.Lock()
rss_before = rss_kib(SERVER_PID)


def produce(index):
    sqs = client()
    try:
        for batch in range(PER_PRODUCER // 10):
            entries = [{"Id": str(i), "MessageBody": f"{index}-{batch}-{i}"} for i in range(10)]
            result = sqs.send_message_batch(QueueUrl=url, Entries=entries)
            assert not result.get("Failed"), result.get("Failed")
            with lock:
                sent.update(entry["MessageId"] for entry in result["Successful"])
    except Exception as error:
        errors.append(repr(error))


def consume():
    sqs = client()
    try:
        while time.time() < DEADLINE:
            with lock:
                if len(received) >= PRODUCERS * PER_PRODUCER:
                    return
            messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
                "Messages", []
            )
            with lock:
                for message in messages:
                    if message["MessageId"] in received:
                        duplicates.append(message["MessageId"])
                    received[message["MessageId"]] = message["Body"]
            if messages:
                entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)]
                result = sqs.delete_message_batch(QueueUrl=url, Entries=entries)
                assert not result.get("Failed"), result.get("Failed")
    except Exception as error:
        errors.append(repr(error))


started = time.time()
threads = [threading.Thread(target=produce, args=(i,)) for i in range(PRODUCERS)]
threads += [threading.Thread(target=consume) for _ in range(CONSUMERS)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join(max(1, DEADLINE - time.time()))
took = time.time() - started
rss_after = rss_kib(SERVER_PID)

left = client().get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
total = PRODUCERS * PER_PRODUCER
print(
    f"load: {total} messages, {PRODUCERS} producers, {CONSUMERS} consumers, {took:.1f} s "
    f"({total / took:.0f} msgs/s end to end with boto3), server RSS {rss_before // 1024} -> {rss_after // 1024} MiB"
)
assert not errors, errors[:3]
assert len(sent) == total, f"{len(sent)} of {total} sends returned"
assert set(received) == sent, f"lost: {len(sent - set(received))}, unknown: {len(set(received) - sent)}"
assert not duplicates, f"delivered twice within its visibility timeout: {duplicates[:5]}"
assert left["ApproximateNumberOfMessages"] == "0" and left["ApproximateNumberOfMessagesNotVisible"] == "0", left
assert rss_after < rss_before + 200 * 1024, f"server memory grew by {(rss_after - rss_before) // 1024} MiB"
print("load: nothing lost, nothing delivered twice, memory bounded")
