import Foundation
import OpenQSQLite
import OpenQTesting
import Testing

@testable import OpenQ

/// Dead-letter topics that are ordinary topics (an SQS dead-letter queue is an ordinary queue that
/// clients receive from), and dead-letter policies that change while their topic runs (SQS
/// `SetQueueAttributes` with a `RedrivePolicy`). Over both storages.
@Suite("Dead-letter policies: into existing topics, changed at run time")
struct DeadLetterPolicyTests {
    func error(_ body: () async throws -> Void) async -> OpenQError? {
        do {
            try await body()
            return nil
        } catch {
            return error as? OpenQError
        }
    }

    @Test(arguments: Backend.allCases)
    func deadLettersGoIntoAnExistingTopic_whoseOwnSubscriptionsReceiveThem(_ backend: Backend) async throws {
        let queue = try await backend.makeQueue()
        let failed = try await queue.createTopic("failed", of: Int.self, configuration: backend.configure())
        let inspect = try await failed.subscription("inspect", acknowledgement: .manual)
        let jobs = try await queue.createTopic(
            "jobs", of: Int.self,
            configuration: backend.configure(
                .init(deadLetter: .after(deliveries: 2, into: "failed"), retryBackoff: .immediate)))
        #expect(jobs.deadLetterTopicName == "failed")
        #expect(jobs.configuration.deadLetter.usesExistingTopic)
        let work = try await jobs.subscription("work", acknowledgement: .manual)
        try await jobs.publish(7)
        try await #require(try await work.receive(max: 1).first).nack()
        try await #require(try await work.receive(max: 1).first).nack()

        let dead = try #require(try await inspect.receive(waitingUpTo: .seconds(5)).first)
        #expect(dead.message.payload == 7)
        #expect(dead.message.headers[MessageHeader.sourceTopic] == "jobs")
        #expect(dead.message.headers[MessageHeader.attempts] == "2")
        try await dead.ack()
        let names = failed.statistics().subscriptions.map(\.name)
        #expect(names == ["inspect"], "no dead-letters subscription is added to an existing topic")
        #expect(try await work.receive(waitingUpTo: .zero).isEmpty)
        _ = await queue.shutdown(gracePeriod: .zero)
    }

    @Test(arguments: Backend.allCases)
    func intoAMissingTopic_isTopicNotFound_andCreatesNothing(_ backend: Backend) async throws {
        let queue = try await backend.makeQueue()
        let refused = await error {
            _ = try await queue.createTopic(
                "jobs", of: Int.self,
                configuration: backend.configure(.init(deadLetter: .after(deliveries: 2, into: "nowhere"))))
        }
        #expect(refused?.code == .topicNotFound)
        #expect(await queue.topicNames().isEmpty)
        #expect(try await queue.storedTopics().isEmpty)
        _ = await queue.shutdown(gracePeriod: .zero)
    }

    @Test(arguments: Backend.allCases)
    func thePolicyChangesWhileTheTopicRuns_andJudgesTheNextFailure(_ backend: Backend) async throws {
        let queue = try await backend.makeQueue()
        let failed = try await queue.createTopic("failed", of: Int.self, configuration: backend.configure())
        let inspect = try await failed.subscription("inspect")
        let jobs = try await queue.createTopic(
            "jobs", of: Int.self,
            configuration: backend.configure(.init(deadLetter: .disabled, retryBackoff: .immediate)))
        let work = try await jobs.subscription("work", acknowledgement: .manual)
        try await jobs.publish(contentsOf: [1, 2])
        let first = try #require(try await work.receive(max: 1).first)
        #expect(first.attempt == 1)

        try await queue.setDeadLetterPolicy(.after(deliveries: 1, into: "failed"), of: "jobs")
        #expect(jobs.deadLetterTopicName == "failed")
        #expect(jobs.configuration.deadLetter == .after(deliveries: 1, into: "failed"))
        try await first.nack()
        #expect(try await inspect.receive(waitingUpTo: .seconds(5)).map(\.message.payload) == [1])

        try await queue.setDeadLetterPolicy(.disabled, of: "jobs")
        #expect(jobs.deadLetterTopicName == nil)
        let second = try #require(try await work.receive(max: 1).first)
        try await second.nack()
        let again = try #require(try await work.receive(max: 1).first)
        #expect(again.message.payload == 2)
        #expect(again.attempt == 2, "without a policy a nacked message comes back")
        #expect(failed.statistics().subscriptions.first?.depth == 0)
        _ = await queue.shutdown(gracePeriod: .zero)
    }

    @Test(arguments: Backend.allCases)
    func aPolicyOfTheDefaultKind_createsItsDeadLetterTopicWhenMissing(_ backend: Backend) async throws {
        let queue = try await backend.makeQueue()
        let jobs = try await queue.createTopic(
            "jobs", of: Int.self, configuration: backend.configure(.init(deadLetter: .disabled)))
        let work = try await jobs.subscription("work", acknowledgement: .manual)
        try await jobs.publish(5)
        try await queue.setDeadLetterPolicy(.after(deliveries: 3), of: "jobs")
        #expect(await queue.topicNames() == ["jobs", "jobs.dlq"])
        try await #require(try await work.receive(max: 1).first).reject(reason: "bad")
        let dlq = try await queue.topic("jobs.dlq", of: Int.self)
        let dead = try await dlq.existingSubscription(DeadLetterPolicy.subscriptionName).receive(
            waitingUpTo: .seconds(5))
        #expect(dead.map(\.message.payload) == [5])
        _ = await queue.shutdown(gracePeriod: .zero)
    }

    @Test(arguments: Backend.allCases)
    func deadLetterTopicsNeverFormACircle_andBadPoliciesChangeNothing(_ backend: Backend) async throws {
        let queue = try await backend.makeQueue()
        let plain = backend.configure(.init(deadLetter: .disabled))
        let a = try await queue.createTopic("a", of: Int.self, configuration: plain)
        _ = try await queue.createTopic("b", of: Int.self, configuration: plain)
        _ = try await queue.createTopic("c", of: Int.self, configuration: plain)
        _ = try await queue.createTopic("text", of: String.self, configuration: .init(deadLetter: .disabled))
        try await queue.setDeadLetterPolicy(.after(deliveries: 1, into: "b"), of: "a")
        try await queue.setDeadLetterPolicy(.after(deliveries: 1, into: "c"), of: "b")

        let circle = await error { try await queue.setDeadLetterPolicy(.after(deliveries: 1, into: "a"), of: "c") }
        #expect(circle?.code == .invalidConfiguration)
        let itself = await error { try await queue.setDeadLetterPolicy(.after(deliveries: 1, into: "a"), of: "a") }
        #expect(itself?.code == .invalidConfiguration)
        let otherType = await error {
            try await queue.setDeadLetterPolicy(.after(deliveries: 1, into: "text"), of: "c")
        }
        #expect(otherType?.code == .payloadTypeMismatch)
        let badBound = await error { try await queue.setDeadLetterPolicy(.after(deliveries: 0, into: "b"), of: "c") }
        #expect(badBound?.code == .invalidConfiguration)
        let noTopic = await error { try await queue.setDeadLetterPolicy(.disabled, of: "missing") }
        #expect(noTopic?.code == .topicNotFound)
        #expect(try await queue.topic("c", of: Int.self).deadLetterTopicName == nil)
        #expect(a.deadLetterTopicName == "b")

        // A topic that is another's dead-letter topic is in use; once the policy moves, it is not.
        #expect(await error { try await queue.deleteTopic("b") }?.code == .topicInUse)
        try await queue.setDeadLetterPolicy(.after(deliveries: 1, into: "c"), of: "a")
        try await queue.setDeadLetterPolicy(.disabled, of: "b")
        try await queue.deleteTopic("b")
        #expect(await queue.topicNames() == ["a", "c", "text"])
        _ = await queue.shutdown(gracePeriod: .zero)
    }

    @Test func aDurableTopic_cannotDeadLetterIntoAnInMemoryTopic() async throws {
        let queue = try await Backend.sqlite.makeQueue()
        _ = try await queue.createTopic("memory", of: Int.self, configuration: .init(deadLetter: .disabled))
        _ = try await queue.createTopic("jobs", of: Int.self, configuration: .init(durability: .durable))
        let refused = await error {
            try await queue.setDeadLetterPolicy(.after(deliveries: 1, into: "memory"), of: "jobs")
        }
        #expect(refused?.code == .invalidConfiguration)
        _ = await queue.shutdown(gracePeriod: .zero)
    }
}

@Suite("Dead-letter policies across a restart")
struct DeadLetterPolicyDurableTests {
    func open(_ path: String) async throws -> MessageQueue {
        try await MessageQueue(
            storage: .sqlite(path: path, durability: .processCrash),
            configuration: .init(metricsInterval: nil, randomSeed: 1), clock: ManualClock())
    }

    @Test func aChangedPolicy_isTheStoredConfiguration_andItsDeadLettersSurvive() async throws {
        let path = ScratchStores.path("dead-letter-policy")
        let created = TopicConfiguration(deadLetter: .disabled, retryBackoff: .immediate, durability: .durable)
        var queue = try await open(path)
        _ = try await queue.createTopic(
            "failed", of: Int.self, configuration: .init(deadLetter: .disabled, durability: .durable))
        _ = try await queue.topic("failed", of: Int.self).subscription("inspect")
        let jobs = try await queue.createTopic("jobs", of: Int.self, configuration: created)
        let work = try await jobs.subscription("work", acknowledgement: .manual)
        try await jobs.publish(contentsOf: [1, 2])
        try await queue.setDeadLetterPolicy(.after(deliveries: 1, into: "failed"), of: "jobs")
        try await #require(try await work.receive(max: 1).first).nack()
        _ = await queue.shutdown(gracePeriod: .zero)

        queue = try await open(path)
        var changed = created
        changed.deadLetter = .after(deliveries: 1, into: "failed")
        let stored = try await queue.storedTopics().first { $0.name == "jobs" }
        #expect(stored?.configuration == changed)
        // Declared with the configuration it was created with: the store knows better.
        _ = try await queue.createTopic(
            "failed", of: Int.self, configuration: .init(deadLetter: .disabled, durability: .durable))
        do {
            _ = try await queue.createTopic("jobs", of: Int.self, configuration: created)
            Issue.record("the old configuration was accepted")
        } catch let error as OpenQError {
            #expect(error.code == .topicAlreadyExists)
        }
        let reopened = try await queue.createTopic("jobs", of: Int.self, configuration: changed)
        #expect(reopened.deadLetterTopicName == "failed")
        let inspect = try await queue.topic("failed", of: Int.self).existingSubscription("inspect")
        #expect(try await inspect.receive().map(\.message.payload) == [1])
        let next = try #require(try await reopened.existingSubscription("work").receive(max: 1).first)
        #expect(next.message.payload == 2)
        try await next.nack()
        #expect(try await inspect.receive(waitingUpTo: .seconds(5)).map(\.message.payload) == [2])
        _ = await queue.shutdown(gracePeriod: .zero)
    }
}

@Suite("Topic metadata")
struct TopicMetadataTests {
    @Test(arguments: Backend.allCases)
    func metadataIsKeptWithTheTopic_andChangesWhileItRuns(_ backend: Backend) async throws {
        let queue = try await backend.makeQueue()
        let jobs = try await queue.createTopic(
            "jobs", of: Int.self, configuration: backend.configure(.init(metadata: ["owner": "billing"])))
        #expect(jobs.configuration.metadata == ["owner": "billing"])
        try await queue.setMetadata(["owner": "search", "tier": "1"], of: "jobs")
        #expect(jobs.configuration.metadata == ["owner": "search", "tier": "1"])
        let tooMany = Dictionary(uniqueKeysWithValues: (0..<65).map { ("k\($0)", "v") })
        await #expect(throws: OpenQError.self) { try await queue.setMetadata(tooMany, of: "jobs") }
        await #expect(throws: OpenQError.self) {
            try await queue.setMetadata(["k": String(repeating: "x", count: 257)], of: "jobs")
        }
        await #expect(throws: OpenQError.self) { try await queue.setMetadata([:], of: "missing") }
        #expect(jobs.configuration.metadata == ["owner": "search", "tier": "1"], "a refused change changes nothing")
        _ = await queue.shutdown(gracePeriod: .zero)
    }

    @Test func aDurableTopicsMetadata_isInTheStore_afterARestart() async throws {
        let path = ScratchStores.path("metadata")
        var queue = try await MessageQueue(
            storage: .sqlite(path: path, durability: .processCrash), configuration: .init(metricsInterval: nil))
        _ = try await queue.createTopic(
            "jobs", of: Int.self, configuration: .init(durability: .durable, metadata: ["a": "1"]))
        try await queue.setMetadata(["a": "2"], of: "jobs")
        _ = await queue.shutdown(gracePeriod: .zero)

        queue = try await MessageQueue(
            storage: .sqlite(path: path, durability: .processCrash), configuration: .init(metricsInterval: nil))
        let stored = try #require(try await queue.storedTopics().first { $0.name == "jobs" })
        #expect(stored.configuration.metadata == ["a": "2"])
        let reopened = try await queue.createTopic("jobs", of: Int.self, configuration: stored.configuration)
        #expect(reopened.configuration.metadata == ["a": "2"])
        _ = await queue.shutdown(gracePeriod: .zero)
    }

    @Test func aConfigurationStoredBeforeMetadataExisted_decodesWithNone() throws {
        // What a store written before `metadata` (and `usesExistingTopic`) existed holds.
        let current = TopicConfiguration(capacity: 10, deadLetter: .after(deliveries: 5), durability: .durable)
        var object = try #require(
            try JSONSerialization.jsonObject(with: JSONEncoder().encode(current)) as? [String: Any])
        object["metadata"] = nil
        var deadLetter = try #require(object["deadLetter"] as? [String: Any])
        deadLetter["usesExistingTopic"] = nil
        object["deadLetter"] = deadLetter
        let old = try JSONSerialization.data(withJSONObject: object)
        let decoded = try JSONDecoder().decode(TopicConfiguration.self, from: old)
        #expect(decoded == current)
        #expect(decoded.metadata.isEmpty)
        #expect(!decoded.deadLetter.usesExistingTopic)
    }
}
