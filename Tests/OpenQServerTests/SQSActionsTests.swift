import Foundation
import Logging
import OpenQ
import Prometheus
import Testing

@testable import OpenQServer

/// The AWS JSON 1.0 side of the server, driven without HTTP: replies and errors as SQS shapes
/// them, and queues that Swift code on the same broker shares. The boto3 suite
/// (Tests/SQSCompatibility) checks the same over HTTP with real clients.
@Suite("SQS actions on a broker")
struct SQSActionsTests {
    let broker = MessageQueue(configuration: .init(metricsInterval: nil))
    let actions: SQSActions

    init() {
        actions = SQSActions(queues: SQSQueues(broker: broker, logger: Logger(label: "test")))
    }

    func call(_ action: String, _ fields: [String: Any]) async throws -> (
        status: Int, json: [String: Any], queryError: String?
    ) {
        let body = try JSONSerialization.data(withJSONObject: fields)
        let reply = await actions.handle(
            target: "AmazonSQS.\(action)", body: Array(body), baseURL: "http://localhost:9324")
        let json = try JSONSerialization.jsonObject(with: Data(reply.body)) as? [String: Any] ?? [:]
        return (reply.status, json, reply.queryError)
    }

    @Test func aMissingQueue_isAnsweredAsSQSAnswersIt() async throws {
        let reply = try await call("GetQueueUrl", ["QueueName": "missing"])
        #expect(reply.status == 400)
        #expect(reply.json["__type"] as? String == "com.amazonaws.sqs#QueueDoesNotExist")
        #expect(reply.queryError == "AWS.SimpleQueueService.NonExistentQueue;Sender")
        _ = await broker.shutdown(gracePeriod: .zero)
    }

    @Test func badRequests_executeNothing() async throws {
        let unknown = await actions.handle(target: "AmazonSQS.Nope", body: [], baseURL: "http://h")
        #expect(unknown.status == 400)
        #expect(String(decoding: unknown.body, as: UTF8.self).contains("UnknownOperationException"))
        let malformed = await actions.handle(
            target: "AmazonSQS.CreateQueue", body: Array("{".utf8), baseURL: "http://h")
        #expect(String(decoding: malformed.body, as: UTF8.self).contains("SerializationException"))
        let wrongType = try await call("CreateQueue", ["QueueName": 7])
        #expect((wrongType.json["__type"] as? String)?.contains("SerializationException") == true)
        let boolean = try await call("ReceiveMessage", ["QueueUrl": "q", "MaxNumberOfMessages": true])
        #expect((boolean.json["__type"] as? String)?.contains("SerializationException") == true)
        let missing = try await call("CreateQueue", [:])
        #expect(missing.json["__type"] as? String == "com.amazonaws.sqs#MissingParameter")
        #expect(await broker.topicNames().isEmpty)
        _ = await broker.shutdown(gracePeriod: .zero)
    }

    @Test func aQueueCreatedOverSQS_isATopicSwiftCodeUses_andTheOtherWayRound() async throws {
        let created = try await call("CreateQueue", ["QueueName": "jobs"])
        let url = try #require(created.json["QueueUrl"] as? String)
        #expect(url == "http://localhost:9324/000000000000/jobs")

        let jobs = try await broker.topic("jobs", of: SQSMessage.self)
        try await jobs.publish(
            SQSMessage(body: "from Swift", attributes: ["kind": .init(dataType: "String", stringValue: "swift")]))
        let received = try await call(
            "ReceiveMessage",
            ["QueueUrl": url, "MessageAttributeNames": ["All"], "MessageSystemAttributeNames": ["All"]])
        let messages = try #require(received.json["Messages"] as? [[String: Any]])
        #expect(messages.first?["Body"] as? String == "from Swift")
        #expect(
            messages.first?["MD5OfMessageAttributes"] as? String
                == SQSMessageAttribute.md5(of: ["kind": .init(dataType: "String", stringValue: "swift")]))
        let handle = try #require(messages.first?["ReceiptHandle"] as? String)
        #expect(try await call("DeleteMessage", ["QueueUrl": url, "ReceiptHandle": handle]).status == 200)

        _ = try await call("SendMessage", ["QueueUrl": url, "MessageBody": "from SQS"])
        let work = try jobs.existingSubscription(SQSQueues.subscriptionName)
        let delivery = try #require(try await work.receive().first)
        #expect(delivery.message.payload.body == "from SQS")
        try await delivery.ack()
        #expect(try work.statistics().isDrained)
        _ = await broker.shutdown(gracePeriod: .zero)
    }

    @Test func receiptHandles_cannotBeForged_orUsedOnAnotherQueue() async throws {
        let signer = ReceiptSigner()
        let handle = signer.makeHandle(queue: "a")
        #expect(signer.isValid(handle, queue: "a"))
        #expect(!signer.isValid(handle, queue: "b"))
        #expect(!ReceiptSigner().isValid(handle, queue: "a"), "another server's key")
        var bytes = try #require(ReceiptSigner.decode(handle))
        bytes[3] ^= 1
        #expect(!signer.isValid(ReceiptSigner.base64url(bytes), queue: "a"))
        #expect(!signer.isValid("not base64 ✗", queue: "a"))
        #expect(!signer.isValid(String(repeating: "A", count: 10_000), queue: "a"))
    }

    @Test func aRedrivePolicy_deadLettersIntoAnotherQueue_thatClientsReceiveFrom() async throws {
        let clock = ContinuousClock()
        let dlq = try #require(try await call("CreateQueue", ["QueueName": "failed"]).json["QueueUrl"] as? String)
        let policy = #"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:000000000000:failed","maxReceiveCount":1}"#
        let source = try #require(
            try await call("CreateQueue", ["QueueName": "work", "Attributes": ["RedrivePolicy": policy]]).json[
                "QueueUrl"]
                as? String)
        _ = try await call("SendMessage", ["QueueUrl": source, "MessageBody": "poison"])
        let first = try await call("ReceiveMessage", ["QueueUrl": source, "VisibilityTimeout": 1])
        #expect((first.json["Messages"] as? [[String: Any]])?.count == 1)
        let started = clock.now
        var dead: [[String: Any]] = []
        while dead.isEmpty, clock.now - started < .seconds(120) {
            dead =
                try await call("ReceiveMessage", ["QueueUrl": dlq, "WaitTimeSeconds": 1]).json["Messages"]
                as? [[String: Any]] ?? []
        }
        #expect(dead.first?["Body"] as? String == "poison")
        let sources = try await call("ListDeadLetterSourceQueues", ["QueueUrl": dlq]).json["queueUrls"] as? [String]
        #expect(sources == [source])
        // Deleting the dead-letter queue leaves its source without a policy, as SQS does.
        #expect(try await call("DeleteQueue", ["QueueUrl": dlq]).status == 200)
        let attributes = try await call("GetQueueAttributes", ["QueueUrl": source, "AttributeNames": ["All"]])
        #expect((attributes.json["Attributes"] as? [String: String])?["RedrivePolicy"] == nil)
        _ = await broker.shutdown(gracePeriod: .zero)
    }
}

@Suite("SQS queues at scale")
struct SQSScaleTests {
    /// DeleteQueue costs the queue's own metrics, not everyone's: 5 000 queues with exported
    /// metrics (the server's metrics backend, as openq-server runs) are deleted one by one.
    /// Deleting them took over 20 minutes when the broker's exporter scanned every metric key at
    /// each deletion; the bound here is a hang guard, not a speed goal.
    @Test func fiveThousandQueues_withMetrics_areDeletedOneByOne() async throws {
        let metrics = SQSMetrics(registry: PrometheusCollectorRegistry())
        let broker = MessageQueue(
            configuration: .init(metricsInterval: nil, metricsFactory: metrics.brokerMetricsFactory))
        let actions = SQSActions(queues: SQSQueues(broker: broker, logger: Logger(label: "test")))
        func call(_ action: String, _ fields: [String: Any]) async throws -> Int {
            let body = try JSONSerialization.data(withJSONObject: fields)
            return await actions.handle(target: "AmazonSQS.\(action)", body: Array(body), baseURL: "http://h").status
        }
        let count = 5_000
        for index in 0..<count { #expect(try await call("CreateQueue", ["QueueName": "q\(index)"]) == 200) }
        await broker.exportMetrics()
        #expect(String(decoding: metrics.emit(), as: UTF8.self).contains(#"topic="q4999""#))
        let clock = ContinuousClock()
        let started = clock.now
        var slowest = Duration.zero
        for index in 0..<count {
            let one = clock.now
            #expect(try await call("DeleteQueue", ["QueueUrl": "http://h/000000000000/q\(index)"]) == 200)
            slowest = max(slowest, clock.now - one)
            try #require(clock.now - started < .seconds(600), "a hang guard: deleting \(count) queues")
        }
        print("deleted \(count) queues in \(clock.now - started), the slowest in \(slowest)")
        #expect(await broker.topicNames().isEmpty)
        #expect(!String(decoding: metrics.emit(), as: UTF8.self).contains("topic=\""))
        _ = await broker.shutdown(gracePeriod: .zero)
    }
}
