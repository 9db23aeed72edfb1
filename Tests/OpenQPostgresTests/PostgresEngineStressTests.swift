// Many connections on one schema at once: publishes, claims, random nacks and abandoned claims, each acked message once.

import Foundation
import Logging
import OpenQ
import PostgresNIO
import Synchronization
import Testing

@testable import OpenQPostgres

@Suite("PostgreSQL engine under concurrency", .enabled(if: postgresAvailable))
struct PostgresEngineStressTests {
    /// Three clients (three pools, as three processes would have) on one schema: two publish,
    /// every one runs consumers on two subscriptions, which ack, nack or abandon at random while
    /// the database's clock moves on, so abandoned claims run out and come back. Every message
    /// ends exactly once per subscription: acknowledged by one returned ack, or dead-lettered by
    /// the policy; no returned ack is ever repeated; a copy's attempts only go up.
    @Test(
        "competing consumers on three clients: each message acked once per subscription or dead-lettered",
        .timeLimit(.minutes(3)))
    func competingConsumers() async throws {
        let cluster = try PostgresCluster.shared.get()
        let schema = try PostgresIdentifier(freshSchemaName("stress"))
        let total = 2_000
        let outcome = try await cluster.withClient { a in
            try await cluster.withClient { b in
                try await cluster.withClient { c in
                    let engines = [a, b, c].map {
                        PostgresEngine(client: $0, schema: schema, logger: Logger(label: "openq.test.stress"))
                    }
                    try await engines[0].migrate()
                    let clock = try await TestClock.install(a, schema: schema)
                    let topic = try await engines[0].openTopic(name: "jobs", payloadType: "String", configuration: "{}")
                    let dead = try await engines[1].openTopic(
                        name: "jobs.dead", payloadType: "String", configuration: "{}")
                    try await engines[0].setDeadLetters(topic: topic, maxDeliveries: 4, into: dead)
                    var subscriptions: [Int64] = []
                    for name in ["billing", "shipping"] {
                        subscriptions.append(
                            try await engines[2].subscribe(
                                topic: topic, name: name, configuration: "{}", visibilityTimeout: .seconds(5)))
                    }
                    let letters = try await engines[2].subscribe(
                        topic: dead, name: "inspect", configuration: "{}", visibilityTimeout: .seconds(300))
                    return try await Self.run(
                        engines: engines, clock: clock, topic: topic, subscriptions: subscriptions,
                        letters: letters, total: total)
                }
            }
        }
        for (index, acked) in outcome.acked.enumerated() {
            let deadLettered = outcome.deadLettered[index]
            #expect(acked.values.allSatisfy { $0 == 1 }, "a returned ack repeated")
            #expect(Set(acked.keys).isDisjoint(with: deadLettered.keys), "a message both acked and dead-lettered")
            #expect(deadLettered.values.allSatisfy { $0 == 1 }, "a message dead-lettered twice")
            #expect(acked.count + deadLettered.count == total, "messages lost or extra")
        }
        #expect(outcome.attemptsWentDown == 0)
        #expect(outcome.left == 0)
    }

    struct Outcome: Sendable {
        var acked: [[UInt64: Int]]
        var deadLettered: [[UInt64: Int]]
        var attemptsWentDown: Int
        var left: Int
    }

    /// What the consumers saw, shared by their tasks.
    final class Tally: Sendable {
        let acked: Mutex<[[UInt64: Int]]>
        let lastAttempt: Mutex<[[UInt64: Int]]>
        let attemptsWentDown = Atomic<Int>(0)
        let published = Atomic<Int>(0)

        init(subscriptions: Int) {
            acked = Mutex(Array(repeating: [:], count: subscriptions))
            lastAttempt = Mutex(Array(repeating: [:], count: subscriptions))
        }
    }

    static func run(
        engines: [PostgresEngine], clock: TestClock, topic: Int64, subscriptions: [Int64], letters: Int64, total: Int
    ) async throws -> Outcome {
        let tally = Tally(subscriptions: subscriptions.count)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (index, engine) in engines.prefix(2).enumerated() {
                group.addTask {
                    for batch in stride(from: index * total / 2, to: (index + 1) * total / 2, by: 50) {
                        _ = try await engine.publish(topic: topic, messages(50, prefix: "j\(batch)-"))
                        tally.published.add(50, ordering: .relaxed)
                    }
                }
            }
            group.addTask {
                // The database's clock moves 1 s per 20 ms: 5 s claims run out within a test run.
                while !Task.isCancelled {
                    try await clock.advance(by: .seconds(1))
                    try await Task.sleep(for: .milliseconds(20))
                }
            }
            for (index, subscription) in subscriptions.enumerated() {
                for consumer in 0..<4 {
                    let engine = engines[(index + consumer) % engines.count]
                    group.addTask {
                        var random = SystemRandomNumberGenerator()
                        var idle = 0
                        while idle < 25 {
                            let batch = try await engine.claim(
                                subscription: subscription, limit: 10, visibilityTimeout: .seconds(5))
                            if batch.isEmpty {
                                idle = tally.published.load(ordering: .relaxed) == total ? idle + 1 : 0
                                try await Task.sleep(for: .milliseconds(20))
                                continue
                            }
                            idle = 0
                            tally.lastAttempt.withLock { seen in
                                for copy in batch {
                                    if let before = seen[index][copy.sequence], before >= copy.attempts {
                                        tally.attemptsWentDown.add(1, ordering: .relaxed)
                                    }
                                    seen[index][copy.sequence] = copy.attempts
                                }
                            }
                            var toAck: [PostgresReceipt] = []
                            for copy in batch {
                                switch Int.random(in: 0..<10, using: &random) {
                                case 0..<7: toAck.append(copy.receipt)
                                case 7..<9: _ = try await engine.nack(copy.receipt, delay: .zero, error: "random")
                                default: break  // abandoned: comes back when its claim runs out
                                }
                            }
                            let done = try await engine.ack(subscription: subscription, toAck)
                            tally.acked.withLock { counts in
                                for sequence in done { counts[index][UInt64(sequence), default: 0] += 1 }
                            }
                        }
                    }
                }
            }
            // Everything but the clock ends by itself; then the clock stops.
            for _ in 0..<(2 + subscriptions.count * 4) { try await group.next() }
            group.cancelAll()
        }
        var deadLettered: [[UInt64: Int]] = Array(repeating: [:], count: subscriptions.count)
        while true {
            let batch = try await engines[0].claim(subscription: letters, limit: 500, visibilityTimeout: .seconds(300))
            if batch.isEmpty { break }
            for letter in batch {
                let source = letter.headers[MessageHeader.sourceSubscription] == "billing" ? 0 : 1
                let sequence = UInt64(letter.headers[MessageHeader.sourceSequenceNumber] ?? "") ?? 0
                deadLettered[source][sequence, default: 0] += 1
            }
            _ = try await engines[0].ack(subscription: letters, batch.map(\.receipt))
        }
        let left = try await engines[0].heldMessages(topic: topic) + engines[0].drift()
        return Outcome(
            acked: tally.acked.withLock { $0 }, deadLettered: deadLettered,
            attemptsWentDown: tally.attemptsWentDown.load(ordering: .relaxed), left: left)
    }
}
