import OpenQTesting
import Testing

@testable import OpenQ

@Suite("MessageQueue: topics, names, types and configuration errors")
struct MessageQueueTests {
    @Test func createTopic_thenLookUpByNameAndType() async throws {
        let queue = makeQueue()
        let created = try await queue.createTopic("orders", of: Order.self)
        let found = try await queue.topic("orders", of: Order.self)
        #expect(found.name == created.name)
        #expect(await queue.topicNames() == ["orders", "orders.dlq"])
    }

    @Test func createTopic_again_withSameTypeAndConfiguration_returnsTheSameTopic() async throws {
        let queue = makeQueue()
        let first = try await queue.createTopic("orders", of: Order.self)
        let second = try await queue.createTopic("orders", of: Order.self)
        try await first.publish(Order(id: 1))
        #expect(second.statistics().published == 1)
    }

    @Test func createTopic_withAnotherTypeOrConfiguration_failsWithTopicAlreadyExists() async throws {
        let queue = makeQueue()
        _ = try await queue.createTopic("orders", of: Order.self)
        await #expect(throws: OpenQError.self) { try await queue.createTopic("orders", of: String.self) }
        let error = await #expect(throws: OpenQError.self) {
            try await queue.createTopic("orders", of: Order.self, configuration: .init(capacity: 5))
        }
        #expect(error?.code == .topicAlreadyExists)
    }

    @Test func topic_lookedUpWithAnotherType_failsWithPayloadTypeMismatch() async throws {
        let queue = makeQueue()
        _ = try await queue.createTopic("orders", of: Order.self)
        let error = await #expect(throws: OpenQError.self) { try await queue.topic("orders", of: Int.self) }
        #expect(error?.code == .payloadTypeMismatch)
    }

    @Test func topic_unknown_failsWithTopicNotFound() async throws {
        let error = await #expect(throws: OpenQError.self) { try await makeQueue().topic("nope", of: Int.self) }
        #expect(error?.code == .topicNotFound)
    }

    @Test(arguments: ["", "has space", "slash/no", "ümlaut", String(repeating: "a", count: 256), "semi;colon"])
    func createTopic_withInvalidName_failsWithInvalidName(name: String) async throws {
        let queue = makeQueue()
        let error = await #expect(throws: OpenQError.self) { try await queue.createTopic(name, of: Int.self) }
        #expect(error?.code == .invalidName)
        #expect(await queue.topicNames().isEmpty, "a failed create must leave nothing behind")
    }

    @Test(arguments: ["a", "A-z_0.9", String(repeating: "x", count: 255)])
    func createTopic_withValidName_succeeds(name: String) async throws {
        let queue = makeQueue()
        _ = try await queue.createTopic(name, of: Int.self, configuration: .init(deadLetter: .disabled))
        #expect(await queue.topicNames() == [name])
    }

    @Test(arguments: [
        TopicConfiguration(capacity: 0),
        TopicConfiguration(capacity: -5),
        TopicConfiguration(deadLetter: .after(deliveries: 0)),
        TopicConfiguration(retryBackoff: .exponential(initial: .seconds(2), maximum: .seconds(1))),
        TopicConfiguration(retryBackoff: .exponential(multiplier: 0.5)),
        TopicConfiguration(retryBackoff: .exponential(jitter: 2)),
        TopicConfiguration(retention: .age(.zero)),
        TopicConfiguration(retention: .count(-1)),
    ])
    func createTopic_withInvalidConfiguration_failsWithInvalidConfiguration(configuration: TopicConfiguration)
        async throws
    {
        let queue = makeQueue()
        let error = await #expect(throws: OpenQError.self) {
            try await queue.createTopic("t", of: Int.self, configuration: configuration)
        }
        #expect(error?.code == .invalidConfiguration)
        #expect(await queue.topicNames().isEmpty)
    }

    @Test func subscription_withInvalidConfiguration_failsAndTheTopicKeepsWorking() async throws {
        let queue = makeQueue()
        let topic = try await queue.createTopic("t", of: Int.self)
        await #expect(throws: OpenQError.self) {
            try await topic.subscription("s", acknowledgement: .manual(visibilityTimeout: .zero))
        }
        await #expect(throws: OpenQError.self) {
            try await topic.subscription("s", backlog: .init(capacity: 0, overflow: .reject))
        }
        await #expect(throws: OpenQError.self) { try await topic.subscription("bad name") }
        let subscription = try await topic.subscription("s")
        try await topic.publish(1)
        #expect(try await subscription.receive().map(\.message.payload) == [1])
    }

    @Test func deleteTopic_endsItsStreams_andPublishingThrowsShutDown() async throws {
        let queue = makeQueue()
        let topic = try await queue.createTopic("t", of: Int.self, configuration: .init(deadLetter: .disabled))
        let stream = try await topic.subscribe()
        try await topic.publish(1)
        let statistics = try await queue.deleteTopic("t")
        #expect(statistics.published == 1)
        #expect(await queue.topicNames().isEmpty)
        let error = await #expect(throws: OpenQError.self) { try await topic.publish(2) }
        #expect(error?.code == .shutDown)
        // What the topic held is discarded (and reported in the statistics); the stream ends.
        #expect(statistics.subscriptions.first?.depth == 1)
        let all = try await withTimeout { await stream.reduce(into: []) { $0.append($1.payload) } }
        #expect(all.isEmpty)
    }

    @Test func deleteTopic_thatIsALiveDeadLetterTopic_failsWithTopicInUse() async throws {
        let queue = makeQueue()
        _ = try await queue.createTopic("orders", of: Order.self)
        let error = await #expect(throws: OpenQError.self) { try await queue.deleteTopic("orders.dlq") }
        #expect(error?.code == .topicInUse)
        try await queue.deleteTopic("orders")
        try await queue.deleteTopic("orders.dlq")
        #expect(await queue.topicNames().isEmpty)
    }

    @Test func deadLetterTopic_ofAnotherType_failsWithPayloadTypeMismatch() async throws {
        let queue = makeQueue()
        _ = try await queue.createTopic("shared.dlq", of: String.self, configuration: .init(deadLetter: .disabled))
        let error = await #expect(throws: OpenQError.self) {
            try await queue.createTopic(
                "orders", of: Order.self, configuration: .init(deadLetter: .after(deliveries: 3, topic: "shared.dlq")))
        }
        #expect(error?.code == .payloadTypeMismatch)
        #expect(await queue.topicNames() == ["shared.dlq"])
    }

    @Test func errors_sayWhatToDo_andWhereTheyCameFrom() async throws {
        let error = await #expect(throws: OpenQError.self) { try await makeQueue().topic("missing", of: Int.self) }
        let unwrapped = try #require(error)
        #expect(unwrapped.message.contains("createTopic"))
        #expect(unwrapped.file.hasPrefix("OpenQ/"))
        #expect(unwrapped.line > 0)
    }
}
