import Foundation
import Logging
import OpenQ
import OpenQSQLite
import Testing

@testable import OpenQServer

/// `--data`: queues as durable topics, reopened with their attributes, dead-letter policies,
/// waiting and in-flight messages after a restart.
@Suite("SQS queues across a restart")
struct DurableQueueTests {
    func open(_ path: String) async throws -> (MessageQueue, SQSQueues, SQSActions) {
        let broker = try await MessageQueue(
            storage: .sqlite(path: path, durability: .processCrash), configuration: .init(metricsInterval: nil))
        let queues = SQSQueues(broker: broker, durable: true, logger: Logger(label: "test"))
        return (broker, queues, SQSActions(queues: queues))
    }

    func call(_ actions: SQSActions, _ action: String, _ fields: [String: Any]) async throws -> [String: Any] {
        let reply = await actions.handle(
            target: "AmazonSQS.\(action)", body: Array(try JSONSerialization.data(withJSONObject: fields)),
            baseURL: "http://h")
        let json = try JSONSerialization.jsonObject(with: Data(reply.body)) as? [String: Any] ?? [:]
        #expect(reply.status == 200, "\(action): \(json)")
        return json
    }

    @Test func queuesComeBack_withTheirAttributes_policies_andMessages() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("openq-sqs-data-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("queues.sqlite").path

        var (broker, queues, actions) = try await open(path)
        #expect(try await queues.restore() == 0)
        _ = try await call(actions, "CreateQueue", ["QueueName": "failed"])
        let policy = #"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:000000000000:failed","maxReceiveCount":"3"}"#
        _ = try await call(
            actions, "CreateQueue",
            [
                "QueueName": "work",
                "Attributes": ["DelaySeconds": "0", "MaximumMessageSize": "2048", "RedrivePolicy": policy],
            ])
        _ = try await call(
            actions, "SetQueueAttributes", ["QueueUrl": "work", "Attributes": ["VisibilityTimeout": "45"]])
        for body in ["one", "two", "three"] {
            _ = try await call(
                actions, "SendMessage",
                [
                    "QueueUrl": "work", "MessageBody": body,
                    "MessageAttributes": ["k": ["DataType": "String", "StringValue": body]],
                ])
        }
        let held = try await call(actions, "ReceiveMessage", ["QueueUrl": "work", "MaxNumberOfMessages": 1])
        #expect((held["Messages"] as? [[String: Any]])?.first?["Body"] as? String == "one")
        _ = await broker.shutdown(gracePeriod: .zero)

        (broker, queues, actions) = try await open(path)
        #expect(try await queues.restore() == 2)
        let attributes = try await call(actions, "GetQueueAttributes", ["QueueUrl": "work", "AttributeNames": ["All"]])
        let values = try #require(attributes["Attributes"] as? [String: String])
        #expect(values["VisibilityTimeout"] == "45")
        #expect(values["MaximumMessageSize"] == "2048")
        #expect(values["RedrivePolicy"]?.contains("arn:aws:sqs:us-east-1:000000000000:failed") == true)
        #expect(values["ApproximateNumberOfMessages"] == "3", "the in-flight message is visible again")
        let sources = try await call(actions, "ListDeadLetterSourceQueues", ["QueueUrl": "failed"])
        #expect(sources["queueUrls"] as? [String] == ["http://h/000000000000/work"])

        let received = try await call(
            actions, "ReceiveMessage",
            [
                "QueueUrl": "work", "MaxNumberOfMessages": 10, "MessageSystemAttributeNames": ["All"],
                "MessageAttributeNames": ["All"],
            ])
        let messages = try #require(received["Messages"] as? [[String: Any]])
        #expect(messages.compactMap { $0["Body"] as? String } == ["one", "two", "three"])
        let first = try #require(messages.first)
        #expect((first["Attributes"] as? [String: String])?["ApproximateReceiveCount"] == "2")
        #expect(
            ((first["MessageAttributes"] as? [String: Any])?["k"] as? [String: Any])?["StringValue"] as? String == "one"
        )
        for message in messages {
            _ = try await call(
                actions, "DeleteMessage", ["QueueUrl": "work", "ReceiptHandle": message["ReceiptHandle"] as Any])
        }
        _ = await broker.shutdown(gracePeriod: .zero)

        (broker, queues, actions) = try await open(path)
        #expect(try await queues.restore() == 2)
        let empty = try await call(actions, "ReceiveMessage", ["QueueUrl": "work"])
        #expect(empty["Messages"] == nil, "deleted messages stay deleted")
        _ = await broker.shutdown(gracePeriod: .zero)
    }

    /// A store that cannot commit (here: refusing writes, as a read-only mount does) is a 503
    /// ServiceUnavailable, which SDKs retry; once it can, the queue goes on without a restart.
    @Test func aStoreThatCannotCommit_isServiceUnavailable_untilItCan() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("openq-sqs-fault-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let (broker, _, actions) = try await open(directory.appendingPathComponent("queues.sqlite").path)
        _ = try await call(actions, "CreateQueue", ["QueueName": "work"])
        let store = try #require(await broker.store as? SQLiteStore)
        try await store.refuseWritesForTesting(true)
        var statuses: [Int] = []
        for body in ["found the fault", "refused"] {
            let reply = await actions.handle(
                target: "AmazonSQS.SendMessage",
                body: Array(try JSONSerialization.data(withJSONObject: ["QueueUrl": "work", "MessageBody": body])),
                baseURL: "http://h")
            statuses.append(reply.status)
            #expect(String(decoding: reply.body, as: UTF8.self).contains("ServiceUnavailable"))
        }
        #expect(statuses == [503, 503])
        try await store.refuseWritesForTesting(false)
        let deadline = ContinuousClock.now + .seconds(120)
        while try await broker.storeStatistics()?.fault != nil, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(5))
        }
        _ = try await call(actions, "SendMessage", ["QueueUrl": "work", "MessageBody": "after"])
        let received = try await call(actions, "ReceiveMessage", ["QueueUrl": "work", "MaxNumberOfMessages": 10])
        // The first send was in doubt (its commit found the fault): kept, and committed after.
        let bodies = (received["Messages"] as? [[String: Any]])?.compactMap { $0["Body"] as? String }
        #expect(bodies?.sorted() == ["after", "found the fault"])
        _ = await broker.shutdown(gracePeriod: .zero)
    }
}
