import Logging
import OpenQTesting
import Testing

@testable import OpenQ

@Suite("Parked publishers, drained subscriptions, statistics look-ups")
struct ObservabilityTests {
    @Test func aParkedPublisher_isLoggedAfterTheConfiguredWait_onceAndNamesTheFullSubscription() async throws {
        let clock = ManualClock()
        let (logger, records) = CapturingLogHandler.logger()
        let queue = MessageQueue(
            configuration: .init(metricsInterval: nil, randomSeed: 1, parkedPublisherWarning: .seconds(5)),
            clock: clock, logger: logger)
        let topic = try await queue.createTopic("t", of: Int.self, configuration: .init(capacity: 2))
        _ = try await topic.subscription("slow")
        try await topic.publish(contentsOf: [1, 2])
        let parked = (3...4).map { value in Task { try await topic.publish(value) } }
        try await eventually("two parked publishers") { topic.statistics().suspendedPublishers == 2 }
        let warnings: @Sendable () -> [CapturingLogHandler.Record] = {
            records.withLock { $0.filter { $0.level == .warning } }
        }
        clock.advance(by: .seconds(4))
        #expect(warnings().isEmpty)
        clock.advance(by: .seconds(1))
        try await eventually("the warning") { !warnings().isEmpty }
        let warning = try #require(warnings().first)
        #expect(warning.metadata["topic"] == "t" && warning.metadata["subscription"] == "slow")
        #expect(warning.metadata["depth"] == "2" && warning.metadata["consumers"] == "0")
        #expect(warning.metadata["parkedPublishers"] == "2")
        clock.advance(by: .seconds(1))
        for _ in 0..<20 { await Task.yield() }
        #expect(warnings().count == 1, "at most one warning per topic per interval")
        clock.advance(by: .seconds(4))
        try await eventually("a second warning while they stay parked") { warnings().count == 2 }
        for task in parked { task.cancel() }
        _ = await queue.shutdown(gracePeriod: .zero)
    }

    @Test func waitUntilDrained_returnsOnceEverythingIsAcknowledged() async throws {
        let queue = makeQueue()
        let topic = try await queue.createTopic("t", of: Int.self)
        let work = try await topic.subscription("w")
        try await work.waitUntilDrained()  // empty: at once
        try await topic.publish(contentsOf: 1...3)
        let drained = LockedValueBox(false)
        let waiter = Task {
            try await work.waitUntilDrained()
            drained.withLock { $0 = true }
        }
        let batch = try await work.receive(max: 3)
        try await batch[0].ack()
        try await batch[1].ack()
        for _ in 0..<20 { await Task.yield() }
        #expect(!drained.withLock { $0 }, "one delivery is still in flight")
        try await batch[2].ack()
        try await withTimeout { try await waiter.value }
        #expect(drained.withLock { $0 })
        #expect(try work.statistics().isDrained)
    }

    @Test func waitUntilDrained_endsWithAnErrorWhenTheSubscriptionGoes_orWhenCancelled() async throws {
        let queue = makeQueue()
        let topic = try await queue.createTopic("t", of: Int.self)
        let work = try await topic.subscription("w")
        try await topic.publish(1)
        let removed = Task { try await work.waitUntilDrained() }
        let cancelled = Task { try await work.waitUntilDrained() }
        try await eventually("both to wait") { topic.runtime.state.withLock { $0.drainWaiters.count } == 2 }
        cancelled.cancel()
        await #expect(throws: CancellationError.self) { try await withTimeout { try await cancelled.value } }
        await work.delete()
        let error = await #expect(throws: OpenQError.self) { try await withTimeout { try await removed.value } }
        #expect(error?.code == .subscriptionNotFound)
    }

    @Test func statisticsUpdates_endWhenTheBrokerShutsDown_andWhenTheReaderIsCancelled() async throws {
        let clock = ManualClock()
        let queue = makeQueue(clock: clock)
        let reader = Task {
            var count = 0
            for await _ in queue.statisticsUpdates(every: .seconds(1)) { count += 1 }
            return count
        }
        try await eventually("the reader to wait for its second snapshot") { clock.sleeperCount >= 1 }
        _ = await queue.shutdown(gracePeriod: .zero)
        clock.advance(by: .seconds(1))
        #expect(try await withTimeout { await reader.value } == 1)

        let other = makeQueue(clock: ManualClock())
        let cancelled = Task { await other.statisticsUpdates(every: .seconds(1)).reduce(0) { count, _ in count + 1 } }
        cancelled.cancel()
        #expect(try await withTimeout { await cancelled.value } <= 1)
    }

    @Test func brokerStatistics_findASubscriptionInOneLookUp() async throws {
        let queue = makeQueue()
        let topic = try await queue.createTopic("orders", of: Int.self)
        _ = try await topic.subscription("billing")
        try await topic.publish(1)
        let statistics = await queue.statistics()
        #expect(statistics.subscription("billing", of: "orders")?.depth == 1)
        #expect(statistics.subscription("billing", of: "nope") == nil)
    }
}
