"""The SQS compatibility suite: real AWS clients (boto3) against an SQS endpoint.

Run against openq-server, and against moto_server as the reference for SQS semantics:

    SQS_ENDPOINT=http://127.0.0.1:9324 python3 -m unittest -v test_sqs

SQS_REFERENCE=moto marks the run against moto: the few tests where moto is known to differ from
SQS (noted at each) are skipped there, never the other way round.
"""

import base64
import hashlib
import json
import os
import struct
import threading
import time
import urllib.error
import urllib.request
import unittest
import uuid

import boto3
import botocore.config
from botocore.exceptions import ClientError

ENDPOINT = os.environ.get("SQS_ENDPOINT", "http://127.0.0.1:9324")
REFERENCE = os.environ.get("SQS_REFERENCE", "")


# The keys of Tests/SQSCompatibility/credentials.json, which run.sh gives openq-server.
ADMIN = ("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
SENDER = ("AKIDSENDER", "sender-secret-0123456789")
TEAM = ("AKIDTEAM", "team-secret-0123456789")


def client(key=ADMIN):
    return boto3.client(
        "sqs",
        endpoint_url=ENDPOINT,
        region_name="us-east-1",
        aws_access_key_id=key[0],
        aws_secret_access_key=key[1],
        config=botocore.config.Config(retries={"max_attempts": 1}, read_timeout=30),
    )


def md5_of_attributes(attributes):
    """MD5OfMessageAttributes computed here, independently of the server, as SQS specifies it."""
    digest = hashlib.md5()

    def field(data):
        digest.update(struct.pack(">I", len(data)))
        digest.update(data)

    for name in sorted(attributes, key=lambda n: n.encode()):
        value = attributes[name]
        field(name.encode())
        field(value["DataType"].encode())
        if "BinaryValue" in value:
            digest.update(b"\x02")
            binary = value["BinaryValue"]
            field(binary if isinstance(binary, bytes) else base64.b64decode(binary))
        else:
            digest.update(b"\x01")
            field(value["StringValue"].encode())
    return digest.hexdigest()


# Where moto (5.2) answers otherwise than SQS documents, checked against the SQS API reference;
# each is skipped only in the run against moto.
MOTO_DIFFERS = {
    "dotted names": "moto accepts '.' in standard queue names; SQS allows only alphanumerics, '-' and '_'",
    "list paging": "moto ignores MaxResults and returns every queue without a NextToken",
    "fifo": "moto supports FIFO queues; openq-server answers UnsupportedOperation",
    "message contents": "moto accepts characters outside SQS's allowed set (U+0000)",
    "batch entry size": "moto fails the whole SendMessageBatch for one oversized entry; SQS reports it in Failed",
    "receipt handles": "moto accepts any receipt handle for DeleteMessage",
    "attribute count": "moto accepts more than 10 message attributes",
    "unknown attributes": "moto accepts unknown queue attribute names",
    "attribute bounds": "moto accepts a VisibilityTimeout above 43200 at CreateQueue",
    "stale visibility": "moto changes the visibility of a deleted message's stale handle without an error",
}


def moto_differs(key):
    return REFERENCE == "moto" and key in MOTO_DIFFERS


def error_code(error):
    return error.response["Error"]["Code"]


class SQSTestCase(unittest.TestCase):
    def setUp(self):
        self.sqs = client()
        self.created = []

    def tearDown(self):
        for url in reversed(self.created):
            try:
                self.sqs.delete_queue(QueueUrl=url)
            except ClientError:
                pass

    def queue(self, prefix="q", **attributes):
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        url = self.sqs.create_queue(QueueName=name, Attributes={k: str(v) for k, v in attributes.items()})["QueueUrl"]
        self.created.append(url)
        return name, url


class Queues(SQSTestCase):
    def test_create_get_list_delete(self):
        name, url = self.queue("life")
        self.assertTrue(url.endswith("/" + name))
        self.assertEqual(self.sqs.get_queue_url(QueueName=name)["QueueUrl"], url)
        self.assertIn(url, self.sqs.list_queues(QueueNamePrefix="life-").get("QueueUrls", []))
        # Creating it again with the same attributes is the same queue.
        self.assertEqual(self.sqs.create_queue(QueueName=name)["QueueUrl"], url)
        self.sqs.delete_queue(QueueUrl=url)
        with self.assertRaises(ClientError) as caught:
            self.sqs.get_queue_url(QueueName=name)
        self.assertIn(error_code(caught.exception), ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"))

    def test_a_missing_queue_is_the_modeled_exception(self):
        with self.assertRaises(self.sqs.exceptions.QueueDoesNotExist):
            self.sqs.get_queue_url(QueueName="no-such-queue-" + uuid.uuid4().hex[:8])

    def test_create_with_other_attributes_is_queue_already_exists(self):
        name, _ = self.queue("exists", VisibilityTimeout=30)
        with self.assertRaises(ClientError) as caught:
            self.sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "31"})
        self.assertIn(error_code(caught.exception), ("QueueAlreadyExists", "QueueNameExists"))

    def test_bad_names_and_attributes_are_refused(self):
        for bad in ("has space", "x" * 81) + (() if moto_differs("dotted names") else ("dots.not.allowed",)):
            with self.assertRaises(ClientError) as caught:
                self.sqs.create_queue(QueueName=bad)
            self.assertEqual(error_code(caught.exception), "InvalidParameterValue", bad)
        if not moto_differs("unknown attributes"):
            with self.assertRaises(ClientError) as caught:
                self.sqs.create_queue(QueueName="attr-" + uuid.uuid4().hex[:8], Attributes={"NoSuchAttribute": "1"})
            self.assertEqual(error_code(caught.exception), "InvalidAttributeName")
        if not moto_differs("attribute bounds"):
            with self.assertRaises(ClientError) as caught:
                self.sqs.create_queue(
                    QueueName="attr-" + uuid.uuid4().hex[:8], Attributes={"VisibilityTimeout": "43201"}
                )
            self.assertEqual(error_code(caught.exception), "InvalidAttributeValue")

    def test_list_queues_pages(self):
        if moto_differs("list paging"):
            self.skipTest(MOTO_DIFFERS["list paging"])
        prefix = "page" + uuid.uuid4().hex[:6]
        urls = [self.queue(prefix)[1] for _ in range(3)]
        first = self.sqs.list_queues(QueueNamePrefix=prefix, MaxResults=2)
        self.assertEqual(len(first["QueueUrls"]), 2)
        second = self.sqs.list_queues(QueueNamePrefix=prefix, MaxResults=2, NextToken=first["NextToken"])
        self.assertEqual(sorted(first["QueueUrls"] + second["QueueUrls"]), sorted(urls))

    def test_attributes_get_and_set(self):
        _, url = self.queue("attrs", VisibilityTimeout=45, DelaySeconds=2)
        attributes = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        self.assertEqual(attributes["VisibilityTimeout"], "45")
        self.assertEqual(attributes["DelaySeconds"], "2")
        self.assertTrue(attributes["QueueArn"].startswith("arn:aws:sqs:"))
        self.sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "10"})
        again = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout"])["Attributes"]
        self.assertEqual(again, {"VisibilityTimeout": "10"})

    def test_fifo_queues_are_answered_with_an_error(self):
        if moto_differs("fifo"):
            self.skipTest(MOTO_DIFFERS["fifo"])
        with self.assertRaises(ClientError) as caught:
            self.sqs.create_queue(
                QueueName="nofifo-" + uuid.uuid4().hex[:8] + ".fifo", Attributes={"FifoQueue": "true"}
            )
        self.assertEqual(error_code(caught.exception), "AWS.SimpleQueueService.UnsupportedOperation")


class Messages(SQSTestCase):
    def test_send_receive_delete_with_both_md5s(self):
        _, url = self.queue("msg")
        attributes = {
            "kind": {"DataType": "String", "StringValue": "greeting"},
            "count": {"DataType": "Number", "StringValue": "42"},
            "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01\xff"},
            "custom": {"DataType": "String.custom", "StringValue": "x"},
        }
        sent = self.sqs.send_message(QueueUrl=url, MessageBody="hello wörld", MessageAttributes=attributes)
        self.assertEqual(sent["MD5OfMessageBody"], hashlib.md5("hello wörld".encode()).hexdigest())
        self.assertEqual(sent["MD5OfMessageAttributes"], md5_of_attributes(attributes))
        received = self.sqs.receive_message(
            QueueUrl=url, MessageAttributeNames=["All"], MessageSystemAttributeNames=["All"], WaitTimeSeconds=1
        )["Messages"]
        self.assertEqual(len(received), 1)
        message = received[0]
        self.assertEqual(message["MessageId"], sent["MessageId"])
        self.assertEqual(message["Body"], "hello wörld")
        self.assertEqual(message["MD5OfBody"], sent["MD5OfMessageBody"])
        self.assertEqual(message["MD5OfMessageAttributes"], md5_of_attributes(message["MessageAttributes"]))
        self.assertEqual(message["MessageAttributes"]["blob"]["BinaryValue"], b"\x00\x01\xff")
        self.assertEqual(message["Attributes"]["ApproximateReceiveCount"], "1")
        self.assertAlmostEqual(int(message["Attributes"]["SentTimestamp"]) / 1000, time.time(), delta=60)
        self.assertIn("ApproximateFirstReceiveTimestamp", message["Attributes"])
        self.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        self.assertNotIn("Messages", self.sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0))

    def test_golden_md5_vectors(self):
        # Fixed vectors: this file's implementation of the SQS algorithm agrees with them, and so
        # must the server (the Swift unit tests check the same vectors).
        one = {"a": {"DataType": "String", "StringValue": "b"}}
        self.assertEqual(md5_of_attributes(one), "bef8bf215374a0a228d67533b1a488be")
        _, url = self.queue("golden")
        sent = self.sqs.send_message(QueueUrl=url, MessageBody="hello wörld", MessageAttributes=one)
        self.assertEqual(sent["MD5OfMessageAttributes"], "bef8bf215374a0a228d67533b1a488be")
        self.assertEqual(sent["MD5OfMessageBody"], "8c6e15df743a0380aaa26e5741794d7b")

    def test_only_the_requested_message_attributes_come_back(self):
        _, url = self.queue("select")
        attributes = {
            "a.one": {"DataType": "String", "StringValue": "1"},
            "a.two": {"DataType": "String", "StringValue": "2"},
            "b": {"DataType": "String", "StringValue": "3"},
        }
        self.sqs.send_message(QueueUrl=url, MessageBody="m", MessageAttributes=attributes)
        message = self.sqs.receive_message(QueueUrl=url, MessageAttributeNames=["a.*"], WaitTimeSeconds=1)["Messages"][0]
        self.assertEqual(sorted(message["MessageAttributes"]), ["a.one", "a.two"])
        self.assertEqual(message["MD5OfMessageAttributes"], md5_of_attributes(message["MessageAttributes"]))
        plain = self.sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0)
        self.assertNotIn("Messages", plain)  # in flight

    def test_a_default_queue_takes_a_message_of_up_to_one_mib(self):
        _, url = self.queue("large")
        attributes = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["MaximumMessageSize"])["Attributes"]
        self.assertEqual(attributes["MaximumMessageSize"], "1048576")
        self.sqs.send_message(QueueUrl=url, MessageBody="x" * 300_000)
        received = self.sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)["Messages"]
        self.assertEqual(len(received[0]["Body"]), 300_000)
        with self.assertRaises(ClientError) as caught:
            self.sqs.send_message(QueueUrl=url, MessageBody="x" * 1_048_577)
        self.assertEqual(error_code(caught.exception), "InvalidParameterValue")

    def test_limits_are_enforced(self):
        _, url = self.queue("limits", MaximumMessageSize=1024)
        with self.assertRaises(ClientError) as caught:
            self.sqs.send_message(QueueUrl=url, MessageBody="x" * 1025)
        self.assertEqual(error_code(caught.exception), "InvalidParameterValue")
        if not moto_differs("message contents"):
            with self.assertRaises(ClientError) as caught:
                self.sqs.send_message(QueueUrl=url, MessageBody="bad \u0000 char")
            self.assertEqual(error_code(caught.exception), "InvalidMessageContents")
        eleven = {f"a{i}": {"DataType": "String", "StringValue": "v"} for i in range(11)}
        if not moto_differs("attribute count"):
            with self.assertRaises(ClientError) as caught:
                self.sqs.send_message(QueueUrl=url, MessageBody="x", MessageAttributes=eleven)
            self.assertEqual(error_code(caught.exception), "InvalidParameterValue")
        with self.assertRaises(ClientError) as caught:
            self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=11)
        self.assertEqual(error_code(caught.exception), "InvalidParameterValue")

    def test_delay_per_message_and_per_queue(self):
        _, url = self.queue("delay", DelaySeconds=1)
        self.sqs.send_message(QueueUrl=url, MessageBody="queue delay")
        self.sqs.send_message(QueueUrl=url, MessageBody="no delay", DelaySeconds=0)
        first = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        self.assertEqual([m["Body"] for m in first], ["no delay"])
        later = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=5).get("Messages", [])
        self.assertEqual([m["Body"] for m in later], ["queue delay"])

    def test_visibility_expiry_redelivers_with_a_higher_receive_count(self):
        _, url = self.queue("expiry")
        self.sqs.send_message(QueueUrl=url, MessageBody="again")
        first = self.sqs.receive_message(QueueUrl=url, VisibilityTimeout=1, AttributeNames=["All"])["Messages"][0]
        self.assertNotIn("Messages", self.sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0))
        second = self.sqs.receive_message(QueueUrl=url, WaitTimeSeconds=5, AttributeNames=["All"])["Messages"][0]
        self.assertEqual(second["MessageId"], first["MessageId"])
        self.assertEqual(second["Attributes"]["ApproximateReceiveCount"], "2")
        self.assertEqual(
            second["Attributes"]["ApproximateFirstReceiveTimestamp"], first["Attributes"]["ApproximateFirstReceiveTimestamp"]
        )
        self.assertNotEqual(second["ReceiptHandle"], first["ReceiptHandle"])

    def test_change_visibility_to_zero_releases_at_once(self):
        _, url = self.queue("release")
        self.sqs.send_message(QueueUrl=url, MessageBody="back")
        first = self.sqs.receive_message(QueueUrl=url, VisibilityTimeout=60)["Messages"][0]
        self.sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=first["ReceiptHandle"], VisibilityTimeout=0)
        again = self.sqs.receive_message(QueueUrl=url, WaitTimeSeconds=2, AttributeNames=["All"])["Messages"][0]
        self.assertEqual(again["Attributes"]["ApproximateReceiveCount"], "2")

    def test_change_visibility_extends(self):
        _, url = self.queue("extend")
        self.sqs.send_message(QueueUrl=url, MessageBody="held")
        first = self.sqs.receive_message(QueueUrl=url, VisibilityTimeout=1)["Messages"][0]
        self.sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=first["ReceiptHandle"], VisibilityTimeout=30)
        time.sleep(1.5)
        self.assertNotIn("Messages", self.sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0))
        self.sqs.delete_message(QueueUrl=url, ReceiptHandle=first["ReceiptHandle"])

    def test_receipt_handles_that_the_server_did_not_make_are_invalid(self):
        if moto_differs("receipt handles"):
            self.skipTest(MOTO_DIFFERS["receipt handles"])
        _, url = self.queue("forged")
        with self.assertRaises(ClientError) as caught:
            self.sqs.delete_message(QueueUrl=url, ReceiptHandle="forged-handle")
        self.assertEqual(error_code(caught.exception), "ReceiptHandleIsInvalid")
        with self.assertRaises(ClientError) as caught:
            self.sqs.change_message_visibility(QueueUrl=url, ReceiptHandle="forged-handle", VisibilityTimeout=5)
        self.assertEqual(error_code(caught.exception), "ReceiptHandleIsInvalid")

    def test_a_stale_receipt_handle(self):
        _, url = self.queue("stale")
        self.sqs.send_message(QueueUrl=url, MessageBody="once")
        message = self.sqs.receive_message(QueueUrl=url)["Messages"][0]
        self.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        # SQS: deleting again with the same handle succeeds; changing its visibility does not.
        self.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        if not moto_differs("stale visibility"):
            with self.assertRaises(ClientError) as caught:
                self.sqs.change_message_visibility(
                    QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=5
                )
            self.assertEqual(error_code(caught.exception), "AWS.SimpleQueueService.MessageNotInflight")

    def test_purge(self):
        _, url = self.queue("purge")
        for i in range(5):
            self.sqs.send_message(QueueUrl=url, MessageBody=str(i))
        self.sqs.purge_queue(QueueUrl=url)
        self.assertNotIn("Messages", self.sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0))


class Batches(SQSTestCase):
    def test_send_batch_with_a_partial_failure(self):
        if moto_differs("batch entry size"):
            self.skipTest(MOTO_DIFFERS["batch entry size"])
        _, url = self.queue("batch", MaximumMessageSize=1024)
        result = self.sqs.send_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": "ok1", "MessageBody": "one"},
                {"Id": "big", "MessageBody": "x" * 2000},
                {"Id": "ok2", "MessageBody": "two", "DelaySeconds": 0},
            ],
        )
        self.assertEqual(sorted(e["Id"] for e in result["Successful"]), ["ok1", "ok2"])
        self.assertEqual([e["Id"] for e in result["Failed"]], ["big"])
        self.assertTrue(result["Failed"][0]["SenderFault"])
        for entry in result["Successful"]:
            self.assertEqual(len(entry["MD5OfMessageBody"]), 32)

    def test_batch_rules(self):
        _, url = self.queue("rules")
        with self.assertRaises(ClientError) as caught:
            self.sqs.send_message_batch(QueueUrl=url, Entries=[])
        self.assertIn("EmptyBatchRequest", error_code(caught.exception))
        with self.assertRaises(ClientError) as caught:
            self.sqs.send_message_batch(
                QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": "x"} for i in range(11)]
            )
        self.assertIn("TooManyEntriesInBatchRequest", error_code(caught.exception))
        with self.assertRaises(ClientError) as caught:
            self.sqs.send_message_batch(
                QueueUrl=url, Entries=[{"Id": "same", "MessageBody": "x"}, {"Id": "same", "MessageBody": "y"}]
            )
        self.assertIn("BatchEntryIdsNotDistinct", error_code(caught.exception))
        with self.assertRaises(ClientError) as caught:
            self.sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": "bad id!", "MessageBody": "x"}])
        self.assertIn("InvalidBatchEntryId", error_code(caught.exception))

    def test_receive_ten_then_delete_and_change_visibility_in_batches(self):
        _, url = self.queue("tens")
        self.sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": str(i)} for i in range(10)])
        messages = []
        deadline = time.time() + 10
        while len(messages) < 10 and time.time() < deadline:
            messages += self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
                "Messages", []
            )
        self.assertEqual(sorted(m["Body"] for m in messages), sorted(str(i) for i in range(10)))
        released = self.sqs.change_message_visibility_batch(
            QueueUrl=url,
            Entries=[{"Id": "r", "ReceiptHandle": messages[0]["ReceiptHandle"], "VisibilityTimeout": 0}],
        )
        self.assertEqual([e["Id"] for e in released["Successful"]], ["r"])
        deleted = self.sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[{"Id": f"d{i}", "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages[1:])],
        )
        self.assertEqual(len(deleted["Successful"]), 9)
        back = self.sqs.receive_message(QueueUrl=url, WaitTimeSeconds=2)["Messages"]
        self.assertEqual([m["Body"] for m in back], [messages[0]["Body"]])


class LongPolling(SQSTestCase):
    def test_a_long_poll_wakes_when_a_message_arrives(self):
        _, url = self.queue("poll")
        result = {}

        def poll():
            started = time.time()
            result["messages"] = client().receive_message(QueueUrl=url, WaitTimeSeconds=10).get("Messages", [])
            result["took"] = time.time() - started

        thread = threading.Thread(target=poll)
        thread.start()
        time.sleep(0.5)
        self.sqs.send_message(QueueUrl=url, MessageBody="wake")
        thread.join(15)
        self.assertEqual([m["Body"] for m in result["messages"]], ["wake"])
        self.assertLess(result["took"], 5)

    def test_an_empty_long_poll_waits_its_time(self):
        _, url = self.queue("wait")
        started = time.time()
        self.assertNotIn("Messages", self.sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1))
        self.assertGreaterEqual(time.time() - started, 0.9)


class DeadLetters(SQSTestCase):
    def test_after_max_receive_count_the_message_moves_to_the_dead_letter_queue(self):
        dlq_name, dlq_url = self.queue("dlq")
        arn = self.sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        policy = '{"deadLetterTargetArn":"%s","maxReceiveCount":"2"}' % arn
        _, url = self.queue("src", RedrivePolicy=policy)
        self.assertEqual(
            self.sqs.list_dead_letter_source_queues(QueueUrl=dlq_url)["queueUrls"], [url]
        )
        self.sqs.send_message(QueueUrl=url, MessageBody="poison")
        for expected in ("1", "2"):
            message = self.sqs.receive_message(
                QueueUrl=url, VisibilityTimeout=1, WaitTimeSeconds=5, AttributeNames=["All"]
            )["Messages"][0]
            self.assertEqual(message["Attributes"]["ApproximateReceiveCount"], expected)
        # SQS moves the message when a receive would exceed maxReceiveCount; openq-server moves it
        # when its last visibility timeout ends. This receive serves both and returns nothing.
        time.sleep(1.2)
        self.assertNotIn("Messages", self.sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0))
        dead = []
        deadline = time.time() + 10
        while not dead and time.time() < deadline:
            dead = self.sqs.receive_message(QueueUrl=dlq_url, WaitTimeSeconds=1).get("Messages", [])
        self.assertEqual([m["Body"] for m in dead], ["poison"])

    def test_a_redrive_policy_set_later(self):
        _, dlq_url = self.queue("dlq2")
        arn = self.sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        _, url = self.queue("src2")
        self.sqs.set_queue_attributes(
            QueueUrl=url, Attributes={"RedrivePolicy": '{"deadLetterTargetArn":"%s","maxReceiveCount":1}' % arn}
        )
        policy = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"])["Attributes"]
        self.assertIn(arn, policy["RedrivePolicy"])
        self.sqs.send_message(QueueUrl=url, MessageBody="once")
        self.sqs.receive_message(QueueUrl=url, VisibilityTimeout=1)
        time.sleep(1.2)
        self.assertNotIn("Messages", self.sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0))
        dead = []
        deadline = time.time() + 10
        while not dead and time.time() < deadline:
            dead = self.sqs.receive_message(QueueUrl=dlq_url, WaitTimeSeconds=1).get("Messages", [])
        self.assertEqual([m["Body"] for m in dead], ["once"])


@unittest.skipIf(REFERENCE == "moto", "moto does not check signatures or permissions")
class Authentication(SQSTestCase):
    """Signature Version 4 and the permissions of credentials.json; nothing refused is executed."""

    def test_an_unknown_key_is_invalid_client_token_id(self):
        with self.assertRaises(ClientError) as caught:
            client(("AKIDUNKNOWN", "whatever")).list_queues()
        self.assertEqual(error_code(caught.exception), "InvalidClientTokenId")
        self.assertEqual(caught.exception.response["ResponseMetadata"]["HTTPStatusCode"], 403)

    def test_a_wrong_secret_is_signature_does_not_match_and_creates_nothing(self):
        name = "wrongsecret-" + uuid.uuid4().hex[:8]
        with self.assertRaises(ClientError) as caught:
            client((ADMIN[0], "not-the-secret")).create_queue(QueueName=name)
        self.assertEqual(error_code(caught.exception), "SignatureDoesNotMatch")
        with self.assertRaises(ClientError):
            self.sqs.get_queue_url(QueueName=name)

    def test_a_changed_body_is_signature_does_not_match(self):
        tampering = client()
        name = "tamper-" + uuid.uuid4().hex[:8]

        def tamper(request, **_):
            # After signing: same length, other queue name.
            request.body = request.body.replace(b"tamper-", b"TAMPER-")

        tampering.meta.events.register("before-send.sqs.CreateQueue", tamper)
        with self.assertRaises(ClientError) as caught:
            tampering.create_queue(QueueName=name)
        self.assertEqual(error_code(caught.exception), "SignatureDoesNotMatch")
        self.assertNotIn("QueueUrls", self.sqs.list_queues(QueueNamePrefix="TAMPER-"))

    def test_a_request_signed_ten_minutes_ago_is_refused(self):
        import datetime
        from unittest import mock

        past = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) - datetime.timedelta(minutes=10)
        with mock.patch("botocore.auth.get_current_datetime", return_value=past):
            with self.assertRaises(ClientError) as caught:
                client().list_queues()
        self.assertEqual(error_code(caught.exception), "SignatureDoesNotMatch")
        self.assertIn("expired", caught.exception.response["Error"]["Message"])

    def test_an_unsigned_request_is_refused(self):
        import urllib.request

        request = urllib.request.Request(
            ENDPOINT + "/", data=b"{}", method="POST",
            headers={"Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": "AmazonSQS.ListQueues"},
        )
        with self.assertRaises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=10)
        self.assertEqual(caught.exception.code, 403)
        self.assertEqual(caught.exception.headers["x-amzn-query-error"], "MissingAuthenticationToken;Sender")

    def test_a_request_signed_for_another_region_is_refused(self):
        name = "region-" + uuid.uuid4().hex[:8]
        for region in ("eu-west-1", "nowhere-1"):
            other = boto3.client(
                "sqs", endpoint_url=ENDPOINT, region_name=region, aws_access_key_id=ADMIN[0],
                aws_secret_access_key=ADMIN[1], config=botocore.config.Config(retries={"max_attempts": 1}))
            with self.assertRaises(ClientError) as caught:
                other.create_queue(QueueName=name)
            self.assertEqual(error_code(caught.exception), "SignatureDoesNotMatch")
        with self.assertRaises(ClientError):
            self.sqs.get_queue_url(QueueName=name)

    def test_a_request_signed_for_another_host_is_refused(self):
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        body = json.dumps({"QueueName": "host-" + uuid.uuid4().hex[:8]}).encode()
        for host in ("sqs.eu-west-1.amazonaws.com", "evil.example:8080"):
            signed = AWSRequest(
                method="POST", url=f"http://{host}/", data=body,
                headers={"Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": "AmazonSQS.CreateQueue"})
            SigV4Auth(Credentials(*ADMIN), "sqs", "us-east-1").add_auth(signed)
            request = urllib.request.Request(ENDPOINT + "/", data=body, method="POST", headers=dict(signed.headers))
            with self.assertRaises(urllib.error.HTTPError) as caught:
                urllib.request.urlopen(request, timeout=30)
            self.assertEqual(caught.exception.code, 403, host)
            self.assertTrue(caught.exception.headers["x-amzn-query-error"].startswith("SignatureDoesNotMatch"))

    def test_a_key_with_any_permission_on_a_queue_looks_it_up_and_reads_its_attributes(self):
        name, url = self.queue("lookup")
        sender = client(SENDER)
        self.assertEqual(sender.get_queue_url(QueueName=name)["QueueUrl"], url)
        attributes = sender.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        self.assertIn("VisibilityTimeout", attributes)
        with self.assertRaises(ClientError) as caught:
            sender.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "5"})
        self.assertEqual(error_code(caught.exception), "AccessDenied")

    def test_permissions_by_action_group_and_queue_prefix(self):
        _, url = self.queue("perm")
        sender = client(SENDER)
        sender.send_message(QueueUrl=url, MessageBody="allowed")
        for call in (
            lambda: sender.receive_message(QueueUrl=url),
            lambda: sender.purge_queue(QueueUrl=url),
            lambda: sender.create_queue(QueueName="sender-" + uuid.uuid4().hex[:8]),
        ):
            with self.assertRaises(ClientError) as caught:
                call()
            self.assertEqual(error_code(caught.exception), "AccessDenied")
        # Nothing refused ran: the one message is still there.
        self.assertEqual(
            self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"],
            {"ApproximateNumberOfMessages": "1"},
        )
        team = client(TEAM)
        team_url = team.create_queue(QueueName="team-" + uuid.uuid4().hex[:8])["QueueUrl"]
        self.created.append(team_url)
        team.send_message(QueueUrl=team_url, MessageBody="ours")
        self.assertEqual(team.receive_message(QueueUrl=team_url, WaitTimeSeconds=1)["Messages"][0]["Body"], "ours")
        with self.assertRaises(ClientError) as caught:
            team.send_message(QueueUrl=url, MessageBody="not ours")
        self.assertEqual(error_code(caught.exception), "AccessDenied")
        listed = team.list_queues().get("QueueUrls", [])
        self.assertIn(team_url, listed)
        self.assertNotIn(url, listed)


class BadInput(unittest.TestCase):
    """Raw requests a client library would never send (signed, so that they reach the parser)."""

    def post(self, body, target="AmazonSQS.ListQueues"):
        """A signed raw request (botocore's signer), whatever its body."""
        import urllib.request

        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        request = AWSRequest(
            method="POST", url=ENDPOINT + "/", data=body,
            headers={"Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": target},
        )
        SigV4Auth(Credentials(*ADMIN), "sqs", "us-east-1").add_auth(request)
        prepared = urllib.request.Request(ENDPOINT + "/", data=body, method="POST", headers=dict(request.headers))
        try:
            with urllib.request.urlopen(prepared, timeout=10) as response:
                return response.status, response.read(), dict(response.headers)
        except urllib.error.HTTPError as error:
            return error.code, error.read(), dict(error.headers)

    def test_malformed_json_unknown_action_and_wrong_types(self):
        if REFERENCE == "moto":
            self.skipTest("moto answers malformed requests with its own errors")
        status, body, _ = self.post(b"{not json")
        self.assertEqual(status, 400)
        self.assertIn(b"SerializationException", body)
        status, body, headers = self.post(b"{}", target="AmazonSQS.NoSuchAction")
        self.assertEqual(status, 400)
        self.assertIn(b"UnknownOperationException", body)
        status, body, _ = self.post(b'{"QueueName": 5}', target="AmazonSQS.CreateQueue")
        self.assertEqual(status, 400)
        self.assertIn(b"SerializationException", body)
        status, body, _ = self.post(b'{}', target="AmazonSQS.CreateQueue")
        self.assertEqual(status, 400)
        self.assertIn(b"MissingParameter", body)

    def test_a_health_check(self):
        if REFERENCE == "moto":
            self.skipTest("openq-server's own endpoint")
        import urllib.request

        with urllib.request.urlopen(ENDPOINT + "/health", timeout=5) as response:
            self.assertEqual(response.status, 200)


if __name__ == "__main__":
    unittest.main()
