// Shared topics through the public API: brokers on one PostgreSQL schema publish, claim and settle together.

import Foundation
import Logging
import OpenQ
import OpenQPostgres
import PostgresNIO
import Testing

@testable import OpenQPostgres

struct Job: Codable, Sendable, Hashable {
    var number: Int
}

/// Runs `body` with `count` brokers on one fresh schema of the test cluster (each with a client of
/// its own, which it runs), and the schema's clock replaced by ``TestClock``.
func withBrokers<T: Sendable>(
    _ count: Int = 2, pollInterval: Duration = .milliseconds(20),
    _ body: @Sendable ([MessageQueue], TestClock) async throws -> T
) async throws -> T {
    let cluster = try PostgresCluster.shared.get()
    let schema = freshSchemaName("b")
    var queues: [MessageQueue] = []
    for _ in 0..<count {
        queues.append(
            try await MessageQueue(
                storage: .postgres(cluster.clientConfiguration, schema: schema, pollInterval: pollInterval),
                configuration: .init(metricsInterval: nil)))
    }
    let brokers = queues
    return try await cluster.withClient { client in
        let clock = try await TestClock.install(client, schema: try PostgresIdentifier(schema))
        do {
            let result = try await body(brokers, clock)
            for queue in brokers { _ = await queue.shutdown(gracePeriod: .zero) }
            return result
        } catch {
            for queue in brokers { _ = await queue.shutdown(gracePeriod: .zero) }
            throw error
        }
    }
}

let durable = TopicConfiguration(durability: .durable)

@Suite("Shared topics on PostgreSQL", .enabled(if: postgresAvailable))
struct SharedTopicTests {
    @Test("a publish of one broker is received by another, in order, and acknowledged once")
    func publishOnOneReceiveOnAnother() async throws {
        try await withBrokers { queues, _ in
            let a = try await queues[0].createTopic("jobs", of: Job.self, configuration: durable)
            let b = try await queues[1].createTopic("jobs", of: Job.self, configuration: durable)
            let onB = try await b.subscription("work")
            let first = try await a.publish(Job(number: 1))
            let rest = try await a.publish(contentsOf: [Job(number: 2), Job(number: 3)])
            #expect(rest.firstSequenceNumber > first.sequenceNumber)
            #expect(rest.count == 2 && rest.messageIDs[1] > rest.messageIDs[0])
            let batch = try await onB.receive(max: 10, waitingUpTo: .seconds(5))
            #expect(batch.map(\.message.payload.number) == [1, 2, 3])
            #expect(batch.map(\.attempt) == [1, 1, 1])
            #expect(batch[0].message.id == first.messageID && batch[0].message.sequenceNumber == first.sequenceNumber)
            #expect(batch.allSatisfy { $0.firstDeliveredAt != nil && $0.message.topic == "jobs" })
            #expect(await onB.ack(batch).isEmpty)
            await #expect(throws: OpenQError.self) { try await batch[0].ack() }
            try await onB.waitUntilDrained()
            #expect(try await onB.receive(max: 10).isEmpty)
        }
    }

    @Test("every subscription gets every message; consumers of one subscription in two brokers share them")
    func fanOutAndCompetingConsumers() async throws {
        try await withBrokers { queues, _ in
            let a = try await queues[0].createTopic("orders", of: Job.self, configuration: durable)
            let b = try await queues[1].createTopic("orders", of: Job.self, configuration: durable)
            let billingA = try await a.subscription("billing")
            let billingB = try await b.subscription("billing")
            let audit = try await b.subscription("audit")
            try await a.publish(contentsOf: (0..<40).map(Job.init))
            var billed: [Int] = []
            while billed.count < 40 {
                for subscription in [billingA, billingB] {
                    let batch = try await subscription.receive(max: 7, waitingUpTo: .milliseconds(200))
                    billed += batch.map(\.message.payload.number)
                    #expect(await subscription.ack(batch).isEmpty)
                }
            }
            #expect(billed.sorted() == Array(0..<40))
            var audited: [Int] = []
            while audited.count < 40 {
                let batch = try await audit.receive(max: 40, waitingUpTo: .seconds(5))
                audited += batch.map(\.message.payload.number)
                #expect(await audit.ack(batch).isEmpty)
            }
            #expect(audited == Array(0..<40))
        }
    }

    @Test("a nack redelivers with the attempt raised; maxDeliveries moves it to the dead-letter topic")
    func nackAndDeadLetters() async throws {
        try await withBrokers { queues, clock in
            let configuration = TopicConfiguration(deadLetter: .after(deliveries: 2), durability: .durable)
            let a = try await queues[0].createTopic("mail", of: Job.self, configuration: configuration)
            let b = try await queues[1].createTopic("mail", of: Job.self, configuration: configuration)
            let sendA = try await a.subscription("send")
            let sendB = try await b.subscription("send")
            try await a.publish(Job(number: 7))
            let first = try #require(try await sendA.receive(waitingUpTo: .seconds(5)).first)
            try await first.nack(retryAfter: .seconds(60), error: "smtp down")
            #expect(try await sendB.receive().isEmpty)  // waiting for its retry
            try await clock.advance(by: .seconds(61))
            let second = try #require(try await sendB.receive(waitingUpTo: .seconds(5)).first)
            #expect(second.attempt == 2 && second.message.payload == Job(number: 7))
            #expect(second.firstDeliveredAt == first.firstDeliveredAt)
            try await second.release()
            #expect(try await sendA.receive(waitingUpTo: .milliseconds(100)).isEmpty)  // dead-lettered instead
            let letters = try await queues[1].topic("mail.dlq", of: Job.self)
                .existingSubscription(DeadLetterPolicy.subscriptionName)
            let letter = try #require(try await letters.receive(waitingUpTo: .seconds(5)).first)
            #expect(letter.message.payload == Job(number: 7))
            #expect(letter.message.headers[MessageHeader.sourceTopic] == "mail")
            #expect(letter.message.headers[MessageHeader.deadLetterReason] == "maxDeliveries")
            #expect(letter.message.headers[MessageHeader.lastError] == "smtp down")
            #expect(letter.message.headers[MessageHeader.attempts] == "2")
            try await letter.ack()
        }
    }

    @Test("a receipt from before a redelivery settles nothing; reject dead-letters with the reason")
    func staleReceiptsAndReject() async throws {
        try await withBrokers { queues, clock in
            let a = try await queues[0].createTopic("tasks", of: Job.self, configuration: durable)
            let b = try await queues[1].createTopic("tasks", of: Job.self, configuration: durable)
            let onA = try await a.subscription("run", acknowledgement: .manual(visibilityTimeout: .seconds(10)))
            let onB = try await b.subscription("run", acknowledgement: .manual(visibilityTimeout: .seconds(10)))
            try await a.publish(Job(number: 1))
            let stale = try #require(try await onA.receive(waitingUpTo: .seconds(5)).first)
            try await stale.extendVisibility(by: .seconds(20))
            try await clock.advance(by: .seconds(15))
            #expect(try await onB.receive().isEmpty)  // the extension holds
            try await clock.advance(by: .seconds(10))
            let fresh = try #require(try await onB.receive(waitingUpTo: .seconds(5)).first)
            #expect(fresh.attempt == 2)
            await #expect(throws: OpenQError.self) { try await stale.ack() }
            await #expect(throws: OpenQError.self) { try await stale.nack() }
            await #expect(throws: OpenQError.self) { try await stale.extendVisibility(by: .seconds(5)) }
            try await fresh.reject(reason: "poison")
            let letters = try await queues[0].topic("tasks.dlq", of: Job.self)
                .existingSubscription(DeadLetterPolicy.subscriptionName)
            let letter = try #require(try await letters.receive(waitingUpTo: .seconds(5)).first)
            #expect(letter.message.headers[MessageHeader.deadLetterReason] == "rejected")
            #expect(letter.message.headers[MessageHeader.lastError] == "poison")
        }
    }

    @Test("a consumer's deliveries() in one broker receive what another publishes, each message once")
    func deliveriesAcrossBrokers() async throws {
        try await withBrokers { queues, _ in
            let a = try await queues[0].createTopic("events", of: Job.self, configuration: durable)
            let b = try await queues[1].createTopic("events", of: Job.self, configuration: durable)
            let onB = try await b.subscription("consume", acknowledgement: .manual)
            let consumer = Task {
                var seen: [Int] = []
                for try await delivery in try onB.deliveries(prefetch: 4) {
                    seen.append(delivery.message.payload.number)
                    try await delivery.ack()
                    if seen.count == 10 { break }
                }
                return seen
            }
            for number in 0..<10 { try await a.publish(Job(number: number)) }
            #expect(try await consumer.value.sorted() == Array(0..<10))
            try await onB.waitUntilDrained()
        }
    }

    @Test("an automatic subscription's messages are gone once received")
    func automaticAcknowledgement() async throws {
        try await withBrokers(1) { queues, _ in
            let topic = try await queues[0].createTopic("ticks", of: Job.self, configuration: durable)
            let ticks = try await topic.subscription("ticks", acknowledgement: .automatic)
            try await topic.publish(contentsOf: [Job(number: 1), Job(number: 2)])
            let batch = try await ticks.receive(max: 10, waitingUpTo: .seconds(5))
            #expect(batch.map(\.message.payload.number) == [1, 2])
            try await batch[0].ack()  // does nothing, as in memory
            try await ticks.waitUntilDrained()
        }
    }

    @Test("capacity with reject is judged by counts at most a second old")
    func capacityReject() async throws {
        try await withBrokers(1) { queues, _ in
            let configuration = TopicConfiguration(capacity: 2, overflow: .reject, durability: .durable)
            let topic = try await queues[0].createTopic("small", of: Job.self, configuration: configuration)
            _ = try await topic.subscription("s")
            try await topic.publish(contentsOf: [Job(number: 1), Job(number: 2)])
            try await Task.sleep(for: .milliseconds(1_100))  // the counts of the publish before are stale now
            await #expect(throws: OpenQError.self) { try await topic.publish(Job(number: 3)) }
            let statistics = topic.statistics()
            #expect(statistics.subscription("s")?.depth == 2)
        }
    }

    @Test("operations a shared topic cannot do yet say so with unsupportedOperation")
    func unsupportedOperations() async throws {
        try await withBrokers(1) { queues, _ in
            let topic = try await queues[0].createTopic("misc", of: Job.self, configuration: durable)
            let subscription = try await topic.subscription("s")
            func isUnsupported(_ body: () async throws -> Void) async {
                do {
                    try await body()
                    Issue.record("expected unsupportedOperation")
                } catch let error as OpenQError {
                    #expect(error.code == .unsupportedOperation)
                } catch {
                    Issue.record("unexpected \(error)")
                }
            }
            await isUnsupported { _ = try await topic.subscribe() }
            await isUnsupported { _ = try await topic.purge() }
            await isUnsupported { _ = try await subscription.seek(to: .earliest) }
            await isUnsupported { _ = try await topic.subscription("old", startingAt: .earliest) }
            await isUnsupported { try await subscription.setVisibilityTimeout(.seconds(5)) }
            if case .failed(let error) = topic.tryPublish(Job(number: 1)) {
                #expect(error.code == .unsupportedOperation)
            } else {
                Issue.record("tryPublish published on a shared topic")
            }
            await isUnsupported {
                _ = try await queues[0].createTopic(
                    "kept", of: Job.self, configuration: .init(retention: .init(count: 10), durability: .durable))
            }
        }
    }

    @Test("a topic deleted by one broker is gone for every broker")
    func deleteTopicIsClusterWide() async throws {
        try await withBrokers { queues, _ in
            _ = try await queues[0].createTopic(
                "gone", of: Job.self, configuration: .init(deadLetter: .disabled, durability: .durable))
            let b = try await queues[1].createTopic(
                "gone", of: Job.self, configuration: .init(deadLetter: .disabled, durability: .durable))
            #expect(try await queues[1].storedTopics().map(\.name) == ["gone"])
            try await queues[0].deleteTopic("gone")
            #expect(try await queues[1].storedTopics().isEmpty)
            await #expect(throws: OpenQError.self) { try await b.publish(Job(number: 1)) }
        }
    }
}

/// The examples of the OpenQPostgres catalog and of `.postgres(...)`'s documentation, compiled and run.
@Suite("OpenQPostgres documentation examples", .enabled(if: postgresAvailable))
struct PostgresDocumentationExamples {
    struct Job: Codable, Sendable { var id: Int }

    @Test("the catalog's first example")
    func catalogExample() async throws {
        let database = try PostgresCluster.shared.get().clientConfiguration
        // From OpenQPostgres.md:
        let queue = try await MessageQueue(storage: .postgres(database, schema: "openq"))
        let jobs = try await queue.createTopic("jobs", of: Job.self, configuration: .init(durability: .durable))
        let workers = try await jobs.subscription("workers", acknowledgement: .manual(visibilityTimeout: .seconds(30)))
        try await jobs.publish(Job(id: 1))  // returns once the database committed it
        for delivery in try await workers.receive(max: 10, waitingUpTo: .seconds(1)) {
            try await delivery.ack()  // settles the claim in the database
        }
        _ = await queue.shutdown()
    }

    @Test("the configuration of .postgres(_:)'s documentation compiles")
    func configurationExample() throws {
        let database = PostgresClient.Configuration(
            host: "db.internal", username: "app", password: ProcessInfo.processInfo.environment["PGPASSWORD"],
            database: "app", tls: .prefer(.makeClientConfiguration()))
        _ = MessageQueue.Storage.postgres(database)
    }
}
