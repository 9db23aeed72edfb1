// The PostgreSQL engine's operations on a real server: fan-out, claims, receipts, settlements, counts.

import Foundation
import Logging
import OpenQ
import PostgresNIO
import Synchronization
import Testing

@testable import OpenQPostgres

@Suite("PostgreSQL engine", .enabled(if: postgresAvailable))
struct PostgresEngineTests {
    @Test("a publish copies every message to every subscription, numbered consecutively")
    func fanOut() async throws {
        try await withEngine { engine, _ in
            let topic = try await engine.openTopic(name: "orders", payloadType: "String", configuration: "{}")
            let unsubscribed = try await engine.publish(topic: topic, messages(2))
            #expect(unsubscribed.subscriptions == 0)
            #expect(try await engine.heldMessages(topic: topic) == 0)
            let billing = try await engine.subscribe(
                topic: topic, name: "billing", configuration: "{}", visibilityTimeout: .seconds(30))
            let shipping = try await engine.subscribe(
                topic: topic, name: "shipping", configuration: "{}", visibilityTimeout: .seconds(30))
            let range = try await engine.publish(topic: topic, messages(3))
            #expect(range.subscriptions == 2)
            #expect(range.sequences == 3..<6)
            #expect(range.firstID == PostgresEngine.messageID(topic: topic, sequence: 3))
            for subscription in [billing, shipping] {
                let claimed = try await engine.claim(
                    subscription: subscription, limit: 10, visibilityTimeout: .seconds(30))
                #expect(claimed.map(\.text) == ["m0", "m1", "m2"])
                #expect(claimed.map(\.sequence) == [3, 4, 5])
                #expect(claimed.allSatisfy { $0.attempts == 1 })
            }
        }
    }

    @Test("the same topic opened again is found; another payload type is refused")
    func openTopicAgain() async throws {
        try await withEngine { engine, _ in
            let first = try await engine.openTopic(name: "orders", payloadType: "Order", configuration: "{}")
            #expect(try await engine.openTopic(name: "orders", payloadType: "Order", configuration: "{}") == first)
            let error = await #expect(throws: OpenQError.self) {
                try await engine.openTopic(name: "orders", payloadType: "Invoice", configuration: "{}")
            }
            #expect(error?.code == .payloadTypeMismatch)
        }
    }

    @Test("claims take the most urgent first, then publish order; headers and payloads come back")
    func claimOrder() async throws {
        try await withEngine { engine, _ in
            let topic = try await engine.openTopic(name: "jobs", payloadType: "String", configuration: "{}")
            let jobs = try await engine.subscribe(
                topic: topic, name: "workers", configuration: "{}", visibilityTimeout: .seconds(30))
            _ = try await engine.publish(topic: topic, messages(2, prefix: "low"))
            _ = try await engine.publish(topic: topic, messages(2, prefix: "high", priority: 5))
            _ = try await engine.publish(
                topic: topic, [OutgoingMessage(payload: Array("h".utf8), headers: ["k": "v", "ü": "ß"])])
            let claimed = try await engine.claim(subscription: jobs, limit: 3, visibilityTimeout: .seconds(30))
            #expect(claimed.map(\.text) == ["high0", "high1", "low0"])
            let rest = try await engine.claim(subscription: jobs, limit: 10, visibilityTimeout: .seconds(30))
            #expect(rest.map(\.text) == ["low1", "h"])
            #expect(rest.last?.headers == ["k": "v", "ü": "ß"])
            #expect(try await engine.claim(subscription: jobs, limit: 10, visibilityTimeout: .seconds(30)).isEmpty)
        }
    }

    @Test(
        "a claim that runs out makes the copy visible again, raised attempt, new receipt; the stale one settles nothing"
    )
    func visibilityAndStaleReceipts() async throws {
        try await withEngine { engine, clock in
            let topic = try await engine.openTopic(name: "jobs", payloadType: "String", configuration: "{}")
            let jobs = try await engine.subscribe(
                topic: topic, name: "workers", configuration: "{}", visibilityTimeout: .seconds(30))
            _ = try await engine.publish(topic: topic, messages(1))
            let first = try #require(
                try await engine.claim(subscription: jobs, limit: 1, visibilityTimeout: .seconds(30)).first)
            try await clock.advance(by: .seconds(29))
            #expect(try await engine.claim(subscription: jobs, limit: 1, visibilityTimeout: .seconds(30)).isEmpty)
            #expect(try await engine.counts(subscription: jobs) == CopyCounts(inFlight: 1))
            try await clock.advance(by: .seconds(2))
            #expect(try await engine.counts(subscription: jobs) == CopyCounts(waiting: 1))
            // Past its timeout the receipt no longer holds, even before anyone claims the copy again.
            #expect(try await engine.extend(first.receipt, by: .seconds(60)) == nil)
            let second = try #require(
                try await engine.claim(subscription: jobs, limit: 1, visibilityTimeout: .seconds(30)).first)
            #expect(second.attempts == 2)
            #expect(second.receipt != first.receipt)
            #expect(second.firstDeliveredAt == first.firstDeliveredAt)
            #expect(try await engine.ack(subscription: jobs, [first.receipt]).isEmpty)
            #expect(try await engine.nack(first.receipt, delay: .zero, error: "stale") == nil)
            #expect(try await engine.extend(first.receipt, by: .seconds(60)) == nil)
            #expect(try await engine.counts(subscription: jobs) == CopyCounts(inFlight: 1))
            #expect(try await engine.ack(subscription: jobs, [second.receipt]) == [Int64(second.sequence)])
            #expect(try await engine.ack(subscription: jobs, [second.receipt]).isEmpty)  // settled once
            #expect(try await engine.counts(subscription: jobs) == CopyCounts())
            #expect(try await engine.heldMessages(topic: topic) == 0)
        }
    }

    @Test("a message goes when its last subscription acknowledges it")
    func messageGoesWithLastCopy() async throws {
        try await withEngine { engine, _ in
            let topic = try await engine.openTopic(name: "events", payloadType: "String", configuration: "{}")
            let a = try await engine.subscribe(
                topic: topic, name: "a", configuration: "{}", visibilityTimeout: .seconds(30))
            let b = try await engine.subscribe(
                topic: topic, name: "b", configuration: "{}", visibilityTimeout: .seconds(30))
            _ = try await engine.publish(topic: topic, messages(4))
            let fromA = try await engine.claim(subscription: a, limit: 4, visibilityTimeout: .seconds(30))
            #expect(try await engine.ack(subscription: a, fromA.map(\.receipt)).count == 4)
            #expect(try await engine.heldMessages(topic: topic) == 4)
            let fromB = try await engine.claim(subscription: b, limit: 2, visibilityTimeout: .seconds(30))
            #expect(try await engine.ack(subscription: b, fromB.map(\.receipt)).count == 2)
            #expect(try await engine.heldMessages(topic: topic) == 2)
            // Removing b releases the messages it alone still held.
            #expect(try await engine.unsubscribe(topic: topic, name: "b"))
            #expect(try await engine.unsubscribe(topic: topic, name: "b") == false)
            #expect(try await engine.heldMessages(topic: topic) == 0)
        }
    }

    @Test("nack gives a message back after its delay with the error kept; release at once; extend moves the timeout")
    func settlements() async throws {
        try await withEngine { engine, clock in
            let topic = try await engine.openTopic(name: "jobs", payloadType: "String", configuration: "{}")
            let jobs = try await engine.subscribe(
                topic: topic, name: "workers", configuration: "{}", visibilityTimeout: .seconds(30))
            _ = try await engine.publish(topic: topic, messages(2))
            let claimed = try await engine.claim(subscription: jobs, limit: 2, visibilityTimeout: .seconds(30))
            #expect(
                try await engine.nack(claimed[0].receipt, delay: .seconds(10), error: "timeout talking to the bank")
                    == .requeued)
            #expect(try await engine.counts(subscription: jobs) == CopyCounts(scheduled: 1, inFlight: 1))
            let extended = try #require(try await engine.extend(claimed[1].receipt, by: .seconds(120)))
            #expect(extended > claimed[1].visibleUntil)
            try await clock.advance(by: .seconds(11))
            let retried = try await engine.claim(subscription: jobs, limit: 2, visibilityTimeout: .seconds(30))
            #expect(retried.map(\.text) == ["m0"])
            #expect(retried.first?.attempts == 2)
            #expect(retried.first?.lastError == "timeout talking to the bank")
            // Release: visible at once, the error kept.
            #expect(try await engine.nack(retried[0].receipt, delay: .zero, error: nil) == .requeued)
            let again = try await engine.claim(subscription: jobs, limit: 2, visibilityTimeout: .seconds(30))
            #expect(again.map(\.text) == ["m0"])
            #expect(again.first?.attempts == 3)
            #expect(again.first?.lastError == "timeout talking to the bank")
            try await clock.advance(by: .seconds(100))
            // Extended to 120 s: m1 is still in flight after 111 s; m0's 30 s claim ran out.
            #expect(try await engine.counts(subscription: jobs) == CopyCounts(waiting: 1, inFlight: 1))
        }
    }

    @Test("a message that used its deliveries moves to the dead-letter topic with its story in the headers")
    func deadLetters() async throws {
        try await withEngine { engine, clock in
            let topic = try await engine.openTopic(name: "jobs", payloadType: "String", configuration: "{}")
            let dead = try await engine.openTopic(name: "jobs.dead", payloadType: "String", configuration: "{}")
            try await engine.setDeadLetters(topic: topic, maxDeliveries: 2, into: dead)
            let workers = try await engine.subscribe(
                topic: topic, name: "workers", configuration: "{}", visibilityTimeout: .seconds(30))
            let other = try await engine.subscribe(
                topic: topic, name: "audit", configuration: "{}", visibilityTimeout: .seconds(30))
            let inspect = try await engine.subscribe(
                topic: dead, name: "inspect", configuration: "{}", visibilityTimeout: .seconds(30))
            _ = try await engine.publish(
                topic: topic, [OutgoingMessage(payload: Array("poison".utf8), headers: ["k": "v"])])
            // Attempt 1 nacked, attempt 2 nacked: the second nack dead-letters it at once.
            let first = try #require(
                try await engine.claim(subscription: workers, limit: 1, visibilityTimeout: .seconds(30)).first)
            #expect(try await engine.nack(first.receipt, delay: .zero, error: "boom 1") == .requeued)
            let second = try #require(
                try await engine.claim(subscription: workers, limit: 1, visibilityTimeout: .seconds(30)).first)
            #expect(second.attempts == 2)
            #expect(try await engine.nack(second.receipt, delay: .zero, error: "boom 2") == .deadLettered)
            #expect(try await engine.counts(subscription: workers) == CopyCounts())
            // The other subscription still holds its copy: the source message stays for it.
            #expect(try await engine.heldMessages(topic: topic) == 1)
            #expect(try await engine.counts(subscription: other) == CopyCounts(waiting: 1))
            let letter = try #require(
                try await engine.claim(subscription: inspect, limit: 5, visibilityTimeout: .seconds(30)).first)
            #expect(letter.text == "poison")
            #expect(letter.headers["k"] == "v")
            #expect(letter.headers[MessageHeader.sourceTopic] == "jobs")
            #expect(letter.headers[MessageHeader.sourceSubscription] == "workers")
            #expect(letter.headers[MessageHeader.sourceSequenceNumber] == "1")
            #expect(letter.headers[MessageHeader.attempts] == "2")
            #expect(letter.headers[MessageHeader.deadLetterReason] == "maxDeliveries")
            #expect(letter.headers[MessageHeader.lastError] == "boom 2")
            #expect(letter.headers[MessageHeader.firstPublishedAt] != nil)
            #expect(letter.headers[MessageHeader.deadLetteredAt] != nil)
            #expect(try await engine.ack(subscription: inspect, [letter.receipt]).count == 1)

            // A claim that ran out with its deliveries used dead-letters the copy at the next claim.
            let audited = try #require(
                try await engine.claim(subscription: other, limit: 1, visibilityTimeout: .seconds(30)).first)
            _ = audited
            try await clock.advance(by: .seconds(31))
            _ = try #require(
                try await engine.claim(subscription: other, limit: 1, visibilityTimeout: .seconds(30)).first)
            try await clock.advance(by: .seconds(31))
            #expect(try await engine.claim(subscription: other, limit: 1, visibilityTimeout: .seconds(30)).isEmpty)
            #expect(try await engine.heldMessages(topic: topic) == 0)
            let expired = try await engine.claim(subscription: inspect, limit: 5, visibilityTimeout: .seconds(30))
            #expect(expired.map { $0.headers[MessageHeader.sourceSubscription] } == ["audit"])
            #expect(expired.first?.headers[MessageHeader.attempts] == "2")
        }
    }

    @Test("reject dead-letters at once with its reason; a stale receipt rejects nothing")
    func reject() async throws {
        try await withEngine { engine, _ in
            let topic = try await engine.openTopic(name: "jobs", payloadType: "String", configuration: "{}")
            let dead = try await engine.openTopic(name: "jobs.dead", payloadType: "String", configuration: "{}")
            try await engine.setDeadLetters(topic: topic, maxDeliveries: 5, into: dead)
            let workers = try await engine.subscribe(
                topic: topic, name: "workers", configuration: "{}", visibilityTimeout: .seconds(30))
            let inspect = try await engine.subscribe(
                topic: dead, name: "inspect", configuration: "{}", visibilityTimeout: .seconds(30))
            _ = try await engine.publish(topic: topic, messages(1))
            let claimed = try #require(
                try await engine.claim(subscription: workers, limit: 1, visibilityTimeout: .seconds(30)).first)
            #expect(try await engine.reject(claimed.receipt, reason: "malformed") == .deadLettered)
            #expect(try await engine.reject(claimed.receipt, reason: "again") == nil)
            let letters = try await engine.claim(subscription: inspect, limit: 5, visibilityTimeout: .seconds(30))
            #expect(letters.count == 1)
            #expect(letters.first?.headers[MessageHeader.deadLetterReason] == "rejected")
            #expect(letters.first?.headers[MessageHeader.lastError] == "malformed")
            #expect(try await engine.heldMessages(topic: topic) == 0)
        }
    }

    @Test("a delayed message is scheduled until its delay passes on the database's clock")
    func delayedMessages() async throws {
        try await withEngine { engine, clock in
            let topic = try await engine.openTopic(name: "reminders", payloadType: "String", configuration: "{}")
            let subscription = try await engine.subscribe(
                topic: topic, name: "mail", configuration: "{}", visibilityTimeout: .seconds(30))
            _ = try await engine.publish(topic: topic, messages(1, delay: .seconds(60)))
            _ = try await engine.publish(topic: topic, messages(1, prefix: "now"))
            #expect(try await engine.counts(subscription: subscription) == CopyCounts(waiting: 1, scheduled: 1))
            let now = try await engine.claim(subscription: subscription, limit: 5, visibilityTimeout: .seconds(30))
            #expect(now.map(\.text) == ["now0"])
            #expect(try await engine.ack(subscription: subscription, now.map(\.receipt)).count == 1)
            try await clock.advance(by: .seconds(59))
            #expect(
                try await engine.claim(subscription: subscription, limit: 5, visibilityTimeout: .seconds(30)).isEmpty)
            try await clock.advance(by: .seconds(2))
            #expect(
                try await engine.claim(subscription: subscription, limit: 5, visibilityTimeout: .seconds(30)).map(
                    \.text) == ["m0"])
        }
    }

    @Test("competing claimers on several connections never get the same copy")
    func competingClaims() async throws {
        try await withEngine { engine, _ in
            let topic = try await engine.openTopic(name: "work", payloadType: "String", configuration: "{}")
            let workers = try await engine.subscribe(
                topic: topic, name: "workers", configuration: "{}", visibilityTimeout: .seconds(300))
            let total = 600
            for batch in 0..<6 { _ = try await engine.publish(topic: topic, messages(100, prefix: "b\(batch)-")) }
            let claimed = try await withThrowingTaskGroup(of: [UInt64].self) { group in
                for _ in 0..<6 {
                    group.addTask {
                        var mine: [UInt64] = []
                        while true {
                            let batch = try await engine.claim(
                                subscription: workers, limit: 7, visibilityTimeout: .seconds(300))
                            if batch.isEmpty { return mine }
                            mine += batch.map(\.sequence)
                            _ = try await engine.ack(subscription: workers, batch.map(\.receipt))
                        }
                    }
                }
                return try await group.reduce(into: [UInt64]()) { $0 += $1 }
            }
            #expect(claimed.count == total)
            #expect(Set(claimed).count == total)
            #expect(try await engine.heldMessages(topic: topic) == 0)
        }
    }

    @Test("publishing while a subscription is removed leaves no copy and no message behind")
    func publishRacingUnsubscribe() async throws {
        try await withEngine { engine, _ in
            let topic = try await engine.openTopic(name: "race", payloadType: "String", configuration: "{}")
            for round in 0..<20 {
                _ = try await engine.subscribe(
                    topic: topic, name: "s\(round)", configuration: "{}", visibilityTimeout: .seconds(30))
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for _ in 0..<3 {
                        group.addTask { _ = try await engine.publish(topic: topic, messages(5)) }
                    }
                    group.addTask { _ = try await engine.unsubscribe(topic: topic, name: "s\(round)") }
                    try await group.waitForAll()
                }
                #expect(try await engine.heldMessages(topic: topic) == 0)
                #expect(try await engine.drift() == 0)
            }
        }
    }

    @Test("a subscription created while others publish gets every message published after it exists")
    func subscribeRacingPublishes() async throws {
        try await withEngine { engine, _ in
            let topic = try await engine.openTopic(name: "race", payloadType: "String", configuration: "{}")
            let first = try await engine.subscribe(
                topic: topic, name: "first", configuration: "{}", visibilityTimeout: .seconds(30))
            let (late, after) = try await withThrowingTaskGroup(of: (Int64, UInt64)?.self) { group in
                for _ in 0..<4 {
                    group.addTask {
                        for _ in 0..<10 { _ = try await engine.publish(topic: topic, messages(5)) }
                        return nil
                    }
                }
                group.addTask {
                    try await Task.sleep(for: .milliseconds(10))
                    let id = try await engine.subscribe(
                        topic: topic, name: "late", configuration: "{}", visibilityTimeout: .seconds(30))
                    // A publish that starts now must reach it.
                    let range = try await engine.publish(topic: topic, messages(1, prefix: "after"))
                    return (id, range.firstSequence)
                }
                var result: (Int64, UInt64)?
                for try await value in group where value != nil { result = value }
                return try #require(result)
            }
            let everything = try await engine.claim(subscription: first, limit: 1_000, visibilityTimeout: .seconds(30))
            #expect(everything.count == 201)
            let lateCopies = try await engine.claim(subscription: late, limit: 1_000, visibilityTimeout: .seconds(30))
            #expect(lateCopies.contains { $0.sequence == after })
            #expect(try await engine.drift() == 0)
        }
    }

    @Test("a subscribe waits for a publish in flight, so that publish cannot miss it after reading the subscriptions")
    func subscribeWaitsForPublishesInFlight() async throws {
        try await withEngine { engine, _ in
            let topic = try await engine.openTopic(name: "race", payloadType: "String", configuration: "{}")
            let lock = engine.schema.literal("topics")
            let subscribed = Flag()
            try await engine.client.withTransaction(logger: Logger(label: "test")) { connection in
                // What publish() holds from its first statement to its commit.
                try await connection.query(
                    "SELECT pg_advisory_xact_lock_shared(\(unescaped: lock), \(Int32(topic)))",
                    logger: Logger(label: "test"))
                let waiting = Task {
                    _ = try await engine.subscribe(
                        topic: topic, name: "late", configuration: "{}", visibilityTimeout: .seconds(30))
                    subscribed.value.store(true, ordering: .releasing)
                }
                try await Task.sleep(for: .milliseconds(300))
                #expect(subscribed.value.load(ordering: .acquiring) == false, "subscribe did not wait for the publish")
                _ = waiting
            }
            while !subscribed.value.load(ordering: .acquiring) { try await Task.sleep(for: .milliseconds(5)) }
        }
    }

    @Test("brokers opening one topic and one subscription at the same moment all find the same ones")
    func concurrentOpens() async throws {
        let cluster = try PostgresCluster.shared.get()
        let schema = try PostgresIdentifier(freshSchemaName("open"))
        _ = try await cluster.withClient { client in
            try await PostgresEngine(client: client, schema: schema, logger: Logger(label: "test")).migrate()
        }
        let ids = try await withThrowingTaskGroup(of: [Int64].self) { group in
            for _ in 0..<6 {
                group.addTask {
                    try await cluster.withClient { client in
                        let engine = PostgresEngine(client: client, schema: schema, logger: Logger(label: "test"))
                        let topic = try await engine.openTopic(
                            name: "shared", payloadType: "String", configuration: "{}")
                        let subscription = try await engine.subscribe(
                            topic: topic, name: "workers", configuration: "{}", visibilityTimeout: .seconds(30))
                        return [topic, subscription]
                    }
                }
            }
            return try await group.reduce(into: [[Int64]]()) { $0.append($1) }
        }
        #expect(Set(ids).count == 1)
    }

    @Test("bad arguments are typed errors before anything is written")
    func badArguments() async throws {
        try await withEngine { engine, _ in
            let topic = try await engine.openTopic(name: "jobs", payloadType: "String", configuration: "{}")
            let jobs = try await engine.subscribe(
                topic: topic, name: "workers", configuration: "{}", visibilityTimeout: .seconds(30))
            for call in [
                { _ = try await engine.claim(subscription: jobs, limit: 0, visibilityTimeout: .seconds(1)) },
                { _ = try await engine.claim(subscription: jobs, limit: 1, visibilityTimeout: .zero) },
                {
                    _ = try await engine.publish(
                        topic: topic, [OutgoingMessage(payload: [1], priority: Int(Int32.max) + 1)])
                },
                { try await engine.setDeadLetters(topic: topic, maxDeliveries: 3, into: topic) },
                { try await engine.setDeadLetters(topic: topic, maxDeliveries: 0, into: nil) },
                {
                    _ = try await engine.subscribe(
                        topic: topic, name: "zero", configuration: "{}", visibilityTimeout: .zero)
                },
            ] as [@Sendable () async throws -> Void] {
                let error = await #expect(throws: OpenQError.self) { try await call() }
                #expect(error?.code == .invalidConfiguration)
            }
            #expect(try await engine.heldMessages(topic: topic) == 0)
            // The refused publish took no sequence numbers.
            #expect(try await engine.publish(topic: topic, messages(1)).firstSequence == 1)
        }
    }

    @Test("deleting a topic removes its subscriptions, messages and copies")
    func deleteTopic() async throws {
        try await withEngine { engine, _ in
            let topic = try await engine.openTopic(name: "gone", payloadType: "String", configuration: "{}")
            let subscription = try await engine.subscribe(
                topic: topic, name: "s", configuration: "{}", visibilityTimeout: .seconds(30))
            _ = try await engine.publish(topic: topic, messages(3))
            #expect(try await engine.deleteTopic(name: "gone"))
            #expect(try await engine.deleteTopic(name: "gone") == false)
            #expect(try await engine.heldMessages(topic: topic) == 0)
            #expect(try await engine.counts(subscription: subscription) == CopyCounts())
            let error = await #expect(throws: OpenQError.self) { try await engine.publish(topic: topic, messages(1)) }
            #expect(error?.code == .topicNotFound)
        }
    }

    @Test("a receipt written out as text reads back; anything else does not")
    func receiptText() {
        let receipt = PostgresReceipt(subscription: 3, sequence: 41, claim: 9_000_000_001)
        #expect(PostgresReceipt(receipt.description) == receipt)
        for bad in ["", "1.2", "1.2.3.4", "a.b.c", "1..3"] { #expect(PostgresReceipt(bad) == nil) }
    }
}

/// A flag tasks share.
final class Flag: Sendable {
    let value = Atomic<Bool>(false)
}
