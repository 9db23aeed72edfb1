import MetricsTestKit
import OpenQTesting
import Testing

@testable import OpenQ

@Suite("Statistics: snapshots, live updates, swift-metrics export")
struct StatisticsTests {
    @Test func snapshot_countsEveryOutcome() async throws {
        let clock = ManualClock()
        let queue = makeQueue(clock: clock)
        let topic = try await queue.createTopic(
            "orders", of: Int.self, configuration: .init(deadLetter: .after(deliveries: 2), retryBackoff: .immediate))
        let work = try await topic.subscription("w", acknowledgement: .manual(visibilityTimeout: .seconds(10)))
        try await topic.publish(contentsOf: 1...5)
        clock.advance(by: .seconds(3))
        let batch = try await work.receive(max: 3)
        try await batch[0].ack()
        try await batch[1].nack()
        try await batch[2].reject(reason: "bad")
        let redelivered = try #require(try await work.receive(max: 1).first)
        #expect(redelivered.attempt == 2)
        try await redelivered.nack()
        let statistics = try work.statistics()
        #expect(statistics.counters.routed == 5)
        #expect(statistics.counters.delivered == 4)
        #expect(statistics.counters.acked == 1)
        #expect(statistics.counters.nacked == 2)
        #expect(statistics.counters.redelivered == 1)
        #expect(statistics.counters.deadLettered == 2)
        #expect(statistics.depth == 2)
        #expect(statistics.inFlight == 0)
        #expect(statistics.oldestMessageAge == .seconds(3))
        #expect(statistics.isBalanced)
        let broker = await queue.statistics()
        #expect(broker.topic("orders.dlq")?.published == 2)
        #expect(broker.description.contains("orders.dlq"))
    }

    @Test func statisticsUpdates_isAnAsyncSequenceOfSnapshots() async throws {
        let clock = ManualClock()
        let queue = makeQueue(clock: clock)
        let topic = try await queue.createTopic("t", of: Int.self)
        let updates = queue.statisticsUpdates(every: .seconds(1))
        let reader = Task { try await collect(2, from: updates).map { $0.topic("t")?.published } }
        try await eventually("the first snapshot") { clock.sleeperCount >= 1 }
        try await topic.publish(1)
        clock.advance(by: .seconds(1))
        #expect(try await reader.value == [0, 1])
    }

    @Test func metrics_exportCountersAndGauges() async throws {
        let metrics = TestMetrics()
        let queue = MessageQueue(
            configuration: .init(metricsInterval: nil, metricsFactory: metrics), clock: ManualClock())
        let topic = try await queue.createTopic("orders", of: Int.self)
        let work = try await topic.subscription("billing")
        try await topic.publish(contentsOf: 1...3)
        try await #require(try await work.receive().first).ack()
        await queue.exportMetrics()
        let published = try metrics.expectCounter("openq_messages_published_total", [("topic", "orders")])
        #expect(published.totalValue == 3)
        let acked = try metrics.expectCounter(
            "openq_subscription_messages_acked_total", [("topic", "orders"), ("subscription", "billing")])
        #expect(acked.totalValue == 1)
        let inFlight = try metrics.expectGauge(
            "openq_subscription_in_flight", [("topic", "orders"), ("subscription", "billing")])
        #expect(inFlight.lastValue == 2)
        try await topic.publish(4)
        await queue.exportMetrics()
        #expect(published.totalValue == 4, "counters grow by the change since the last export")
    }

    /// Deleting a topic destroys its own metrics (its subscriptions' included) and no other's; the
    /// exporter keeps metrics per topic, so the cost of a deletion is the topic's own metrics
    /// (it once scanned and split every metric key of every topic: 350 ms per DeleteQueue with
    /// 3 600 queues).
    @Test func deletingATopic_destroysItsOwnMetrics_andNoOthers() async throws {
        let metrics = TestMetrics()
        let queue = MessageQueue(
            configuration: .init(metricsInterval: nil, metricsFactory: metrics), clock: ManualClock())
        for index in 0..<50 {
            let topic = try await queue.createTopic(
                "t\(index)", of: Int.self, configuration: .init(deadLetter: .disabled))
            _ = try await topic.subscription("work")
            try await topic.publish(index)
        }
        await queue.exportMetrics()
        func topics(of labelled: [[(String, String)]]) -> Set<String> {
            Set(labelled.compactMap { $0.first { $0.0 == "topic" }?.1 })
        }
        let perTopic = (metrics.counters.count + metrics.recorders.count) / 50
        #expect(topics(of: metrics.counters.map(\.dimensions)).count == 50)
        try await queue.deleteTopic("t7")
        #expect(!topics(of: metrics.counters.map(\.dimensions) + metrics.recorders.map(\.dimensions)).contains("t7"))
        #expect(metrics.counters.count + metrics.recorders.count == 49 * perTopic, "only t7's metrics went")
        // A subscription removed: its metrics go at the next export, the topic's stay.
        let t8 = try await queue.topic("t8", of: Int.self)
        try await t8.unsubscribe("work")
        await queue.exportMetrics()
        let t8Metrics = (metrics.counters.map(\.dimensions) + metrics.recorders.map(\.dimensions)).filter {
            $0.contains { $0 == ("topic", "t8") }
        }
        #expect(!t8Metrics.isEmpty && t8Metrics.allSatisfy { !$0.contains { $0.0 == "subscription" } })
        // t8 lost its subscription's metrics only.
        #expect(metrics.counters.count + metrics.recorders.count == 49 * perTopic - (perTopic - t8Metrics.count))
    }
}

@Suite("Replay and purge through the public API")
struct ReplayTests {
    @Test func lateSubscriber_replaysFromEarliest_aSequence_andATime() async throws {
        let clock = ManualClock()
        let queue = makeQueue(clock: clock)
        let topic = try await queue.createTopic("r", of: Int.self, configuration: .init(retention: .count(1_000)))
        try await topic.publish(contentsOf: 1...3)
        clock.advance(by: .seconds(60))
        try await topic.publish(contentsOf: 4...5)
        let earliest = try await topic.subscribe(startingAt: .earliest)
        let fromSequence = try await topic.subscription("seq", startingAt: .sequenceNumber(3))
        let fromTime = try await topic.subscribe(
            startingAt: .time(
                try await topic.subscription("probe", startingAt: .earliest).receive(max: 5)[3].message.publishedAt))
        #expect(try await collect(5, from: earliest).map(\.payload) == [1, 2, 3, 4, 5])
        #expect(try await fromSequence.receive(max: 10).map(\.message.payload) == [3, 4, 5])
        #expect(try await collect(2, from: fromTime).map(\.payload) == [4, 5])
        #expect(topic.statistics().retained == 5)
    }

    @Test func seek_replaysAgain() async throws {
        let queue = makeQueue()
        let topic = try await queue.createTopic("r", of: Int.self, configuration: .init(retention: .count(10)))
        let subscription = try await topic.subscription("s", acknowledgement: .automatic)
        try await topic.publish(contentsOf: 1...3)
        #expect(try await subscription.receive(max: 10).count == 3)
        #expect(try await subscription.seek(to: .earliest) == 3)
        #expect(try await subscription.receive(max: 10).map(\.message.payload) == [1, 2, 3])
    }

    @Test func purge_reportsHowManyItRemoved() async throws {
        let queue = makeQueue()
        let topic = try await queue.createTopic("p", of: Int.self)
        let a = try await topic.subscription("a")
        _ = try await topic.subscription("b")
        try await topic.publish(contentsOf: 1...4)
        #expect(try await a.purge() == 4)
        #expect(try await topic.purge() == 4, "b still held four")
        #expect(topic.statistics().totals.purged == 8)
        try await topic.publish(5)
        #expect(try await a.receive().map(\.message.payload) == [5])
    }
}

@Suite("Metrics: deleted and re-created topics")
struct MetricsLifecycleTests {
    @Test func deletedTopic_isForgotten_andARecreatedOneCountsFromZero() async throws {
        let metrics = TestMetrics()
        let queue = MessageQueue(
            configuration: .init(metricsInterval: nil, metricsFactory: metrics), clock: ManualClock())
        var topic = try await queue.createTopic("t", of: Int.self, configuration: .init(deadLetter: .disabled))
        _ = try await topic.subscription("w")
        try await topic.publish(contentsOf: 1...5)
        await queue.exportMetrics()
        #expect(try metrics.expectCounter("openq_messages_published_total", [("topic", "t")]).totalValue == 5)
        try await queue.deleteTopic("t")
        #expect(throws: (any Error).self) { try metrics.expectGauge("openq_topic_depth", [("topic", "t")]) }
        topic = try await queue.createTopic("t", of: Int.self, configuration: .init(deadLetter: .disabled))
        try await topic.publish(contentsOf: 1...2)
        await queue.exportMetrics()
        #expect(try metrics.expectCounter("openq_messages_published_total", [("topic", "t")]).totalValue == 2)
    }

    @Test func removedSubscription_isForgottenAtTheNextExport() async throws {
        let metrics = TestMetrics()
        let queue = MessageQueue(
            configuration: .init(metricsInterval: nil, metricsFactory: metrics), clock: ManualClock())
        let topic = try await queue.createTopic("t", of: Int.self)
        _ = try await topic.subscription("w")
        await queue.exportMetrics()
        _ = try metrics.expectGauge("openq_subscription_depth", [("topic", "t"), ("subscription", "w")])
        try await topic.unsubscribe("w")
        await queue.exportMetrics()
        #expect(throws: (any Error).self) {
            try metrics.expectGauge("openq_subscription_depth", [("topic", "t"), ("subscription", "w")])
        }
    }
}

/// A gate tasks wait at until a test opens it.
