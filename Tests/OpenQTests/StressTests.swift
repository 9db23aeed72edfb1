import OpenQTesting
import Testing

@testable import OpenQ

/// Collects what the stress run observed, from many tasks.
final class Ledger: Sendable {
    private struct State {
        var accepted: [String: Set<Int>] = [:]
        var acked: [String: [Int: Int]] = [:]
    }

    private let state = LockedValueBox(State())

    func accepted(_ id: Int, topic: String) {
        state.withLock { _ = $0.accepted[topic, default: []].insert(id) }
    }

    func acked(_ id: Int, topic: String) {
        state.withLock { $0.acked[topic, default: [:]][id, default: 0] += 1 }
    }

    var snapshot: (accepted: [String: Set<Int>], acked: [String: [Int: Int]]) {
        state.withLock { ($0.accepted, $0.acked) }
    }
}

@Suite("Stress: many producers and consumers, random failures and cancellations")
struct StressTests {
    static let topicNames = ["alpha", "beta", "gamma"]
    static let policies: [String: OverflowPolicy] = ["alpha": .suspend, "beta": .dropOldest, "gamma": .reject]

    @Test func everyAcceptedMessage_isAccountedForExactlyOnce() async throws {
        let queue = MessageQueue(configuration: .init(metricsInterval: nil, randomSeed: 7))
        var topics: [String: Topic<Int>] = [:]
        var work: [String: Subscription<Int>] = [:]
        for name in Self.topicNames {
            let topic = try await queue.createTopic(
                name, of: Int.self,
                configuration: .init(
                    capacity: 64,
                    overflow: Self.policies[name]!,
                    deadLetter: .after(deliveries: 3),
                    retryBackoff: .exponential(initial: .microseconds(100), maximum: .milliseconds(2))
                ))
            topics[name] = topic
            work[name] = try await topic.subscription(
                "work", acknowledgement: .manual(visibilityTimeout: .seconds(120)))
            _ = try await topic.subscription("scratch", backlog: .init(capacity: 100_000, overflow: .dropNewest))
        }
        let ledger = Ledger()
        let perProducer = 1_500

        try await withTimeout("the stress run") { [topics, work] in
            // Eight consumers; a chaos task cancels random ones and starts replacements.
            let consumers = LockedValueBox<[(topic: Int, task: Task<Void, Never>)]>([])
            @Sendable func startConsumer(_ index: Int, topic: Int) {
                let name = Self.topicNames[topic]
                let deliveries = try! work[name]!.deliveries(prefetch: 1 + index % 8)
                let task = Task {
                    var random = SplitMix64(seed: UInt64(index) &* 7919)
                    for await delivery in deliveries {
                        let roll = random.next() % 100
                        do {
                            switch roll {
                            case 0..<75:
                                try await delivery.ack()
                                ledger.acked(delivery.message.payload, topic: name)
                            case 75..<92:
                                try await delivery.nack(error: "random failure")
                            default:
                                try await delivery.reject(reason: "random rejection")
                            }
                        } catch let error as OpenQError where error.code == .receiptExpired {
                            // Returned by a cancellation elsewhere; it is someone else's now.
                        } catch {
                            Issue.record("unexpected error \(error)")
                        }
                    }
                }
                consumers.withLock { $0.append((topic, task)) }
            }
            for index in 0..<8 { startConsumer(index, topic: index % Self.topicNames.count) }

            let producers = (0..<8).map { producer in
                Task {
                    var random = SplitMix64(seed: UInt64(producer) + 100)
                    for sequence in 0..<perProducer {
                        let id = producer * 1_000_000 + sequence
                        let name = Self.topicNames[Int(random.next() % 3)]
                        do {
                            try await topics[name]!.publish(id)
                            ledger.accepted(id, topic: name)
                        } catch let error as OpenQError where error.code == .topicFull {
                            await Task.yield()  // not accepted: nothing to account for
                        }
                    }
                }
            }
            let chaos = Task {
                var random = SplitMix64(seed: 99)
                for round in 0..<40 {
                    try? await Task.sleep(for: .milliseconds(2))
                    // Cancel a random consumer and replace it on the same topic.
                    let victim = consumers.withLock { $0.remove(at: Int(random.next() % UInt64($0.count))) }
                    victim.task.cancel()
                    startConsumer(8 + round, topic: victim.topic)
                    if round % 10 == 0 { _ = try? await topics["beta"]!.existingSubscription("scratch").purge() }
                }
            }
            for producer in producers { try await producer.value }
            await chaos.value
            do {
                try await eventually("the work subscriptions to drain") {
                    Self.topicNames.allSatisfy { name in
                        let statistics = try! work[name]!.statistics()
                        return statistics.depth + statistics.scheduled + statistics.inFlight == 0
                    }
                }
            } catch {
                for name in Self.topicNames { print("stuck:", try! work[name]!.statistics()) }
                throw error
            }
            for consumer in consumers.withLock({ $0 }) { consumer.task.cancel() }
        }

        let (accepted, acked) = ledger.snapshot
        let statistics = await queue.statistics()
        var totalAccepted = 0
        for name in Self.topicNames {
            let topic = try #require(statistics.topic(name))
            let acceptedIDs = accepted[name] ?? []
            totalAccepted += acceptedIDs.count
            #expect(topic.published == acceptedIDs.count, "\(name): statistics agree with the publishers")
            let workStatistics = try #require(topic.subscription("work"))
            let counters = workStatistics.counters
            #expect(counters.routed == acceptedIDs.count)
            #expect(counters.nacked > 0 && counters.deadLettered > 0 && counters.redelivered > 0, "failure paths ran")
            #expect(workStatistics.isBalanced, "\(name): \(counters)")
            let ackedIDs = acked[name] ?? [:]
            #expect(ackedIDs.values.allSatisfy { $0 == 1 }, "\(name): a message was acknowledged twice")
            #expect(Set(ackedIDs.keys).isSubset(of: acceptedIDs))
            #expect(counters.acked == ackedIDs.count)

            // What was dead-lettered is in the dead-letter topic, and only that.
            let deadLetters = try await queue.topic("\(name).dlq", of: Int.self).existingSubscription("dead-letters")
            var deadIDs: [Int] = []
            while case let batch = try await deadLetters.receive(max: 1_000), !batch.isEmpty {
                deadIDs += batch.map(\.message.payload)
                for delivery in batch { try await delivery.ack() }
            }
            #expect(deadIDs.count == counters.deadLettered)
            #expect(Set(deadIDs).count == deadIDs.count, "\(name): a message was dead-lettered twice")
            #expect(Set(deadIDs).isDisjoint(with: ackedIDs.keys), "\(name): acked and dead-lettered")
            #expect(ackedIDs.count + deadIDs.count + counters.dropped + counters.purged == acceptedIDs.count)
            if Self.policies[name] != .dropOldest { #expect(counters.dropped == 0) }

            let scratch = try #require(topic.subscription("scratch"))
            #expect(scratch.isBalanced)
        }
        #expect(totalAccepted > 8 * perProducer / 2, "the run must exercise the broker")
        #expect(statistics.topics.filter { $0.name.hasSuffix(".dlq") }.allSatisfy { $0.totals.dropped == 0 })
        _ = await queue.shutdown(gracePeriod: .zero)
    }
}
