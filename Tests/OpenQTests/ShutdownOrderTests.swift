import Foundation
import MetricsTestKit
import OpenQTesting
import Testing

@testable import OpenQ

@Suite("Shutdown: who it waits for, in which order, and a second caller")
struct ShutdownEdgeTests {
    @Test func shutdown_withABacklogNobodyConsumes_returnsAtOnce() async throws {
        let clock = ManualClock()  // never advanced: a shutdown that waited out its grace would hang
        let queue = makeQueue(clock: clock)
        let topic = try await queue.createTopic(
            "t", of: Int.self, configuration: .init(deadLetter: .after(deliveries: 1)))
        _ = try await topic.subscription("unread")
        let work = try await topic.subscription("w")
        try await topic.publish(contentsOf: 1...3)
        let three = try await work.receive(max: 3)
        for delivery in three.dropLast() { try await delivery.ack() }
        try await three[2].reject(reason: "poison")  // a letter waits in t.dlq's dead-letters
        let report = try await withTimeout("shutdown") { await queue.shutdown(gracePeriod: .seconds(3)) }
        #expect(report.undelivered == 4, "three in 'unread', one dead letter")
        #expect(report.unacknowledged == 0)
    }

    @Test func shutdown_waitsForAConsumerThatCanStillDrainTheBacklog() async throws {
        let clock = ManualClock()
        let queue = makeQueue(clock: clock)
        let topic = try await queue.createTopic("t", of: Int.self)
        let work = try await topic.subscription("w")
        try await topic.publish(contentsOf: 1...20)
        let gate = AsyncGate()
        let consumed = LockedValueBox(0)
        let consumer = Task {
            for await delivery in try work.deliveries(prefetch: 1) {
                await gate.wait()
                try await delivery.ack()
                consumed.withLock { $0 += 1 }
            }
        }
        try await eventually("the consumer to hold a delivery") { try work.statistics().inFlight == 1 }
        let probe = try await queue.createTopic("probe", of: Int.self)  // no subscriptions
        let shutdown = Task { await queue.shutdown(gracePeriod: .seconds(30)) }
        try await eventually("publishing to stop") { (try? await probe.publish(0)) == nil }
        #expect(consumed.withLock { $0 } == 0)
        await gate.open()
        let report = try await withTimeout("shutdown after the consumer drained") { await shutdown.value }
        #expect(consumed.withLock { $0 } == 20, "the consumer drained the backlog within the grace period")
        #expect(report.undelivered == 0 && report.unacknowledged == 0)
        consumer.cancel()
    }

    @Test func shutdown_deliversARetryDueWithinTheGracePeriod_andReportsOneDueAfterIt() async throws {
        let clock = ManualClock()
        let queue = makeQueue(clock: clock)
        let topic = try await queue.createTopic("t", of: Int.self)
        let work = try await topic.subscription("w")
        try await topic.publish(contentsOf: [1, 2])
        let acked = LockedValueBox<[Int]>([])
        let consumer = Task {
            for await delivery in try work.deliveries(prefetch: 1) {
                if delivery.attempt == 1 {
                    try await delivery.nack(retryAfter: delivery.message.payload == 1 ? .seconds(2) : .seconds(60))
                } else {
                    try await delivery.ack()
                    acked.withLock { $0.append(delivery.message.payload) }
                }
            }
        }
        try await eventually("both to wait in retry backoff") { try work.statistics().scheduled == 2 }
        let probe = try await queue.createTopic("probe", of: Int.self)  // no subscriptions
        let shutdown = Task { await queue.shutdown(gracePeriod: .seconds(5)) }
        try await eventually("publishing to stop") { (try? await probe.publish(0)) == nil }
        clock.advance(by: .seconds(2))  // the first retry is due: the consumer gets it and acks it
        let report = try await withTimeout("shutdown once only the late retry is left") { await shutdown.value }
        #expect(acked.withLock { $0 } == [1])
        #expect(report.undelivered == 1, "the retry due after the grace period is reported, not waited for")
        consumer.cancel()
    }

    @Test func aSecondShutdown_whileTheFirstDrains_waitsForTheSameReport() async throws {
        let clock = ManualClock()
        let queue = makeQueue(clock: clock)
        let topic = try await queue.createTopic("t", of: Int.self)
        let work = try await topic.subscription("w")
        try await topic.publish(1)
        let delivery = try #require(try await work.receive().first)
        let probe = try await queue.createTopic("probe", of: Int.self)  // no subscriptions
        let first = Task { await queue.shutdown(gracePeriod: .seconds(30)) }
        try await eventually("publishing to stop") { (try? await probe.publish(0)) == nil }
        let returned = LockedValueBox(false)
        let second = Task {
            let report = await queue.shutdown(gracePeriod: .zero)
            returned.withLock { $0 = true }
            return report
        }
        for _ in 0..<50 { await Task.yield() }
        try await Task.sleep(for: .milliseconds(20))
        #expect(!returned.withLock { $0 }, "the second caller waits while the first drains")
        try await delivery.ack()
        let (a, b) = try await withTimeout { (await first.value, await second.value) }
        #expect(a == b)
        #expect(a.unacknowledged == 0)
    }

    @Test func shutdownWaves_putEveryTopicBeforeItsDeadLetterTopic() async throws {
        let queue = makeQueue()
        // Names chosen so that dictionary and name order would both finish some targets first.
        _ = try await queue.createTopic(
            "a", of: Int.self, configuration: .init(deadLetter: .after(deliveries: 1, topic: "0-dlq")))
        _ = try await queue.createTopic("z", of: Int.self)
        _ = try await queue.createTopic(
            "m", of: Int.self, configuration: .init(deadLetter: .after(deliveries: 1, topic: "a")))
        let runtimes = await queue.runtimesForTesting()
        let waves = MessageQueue.shutdownWaves(runtimes).map { $0.map(\.name) }
        let position = Dictionary(
            uniqueKeysWithValues: waves.enumerated().flatMap { index, wave in wave.map { ($0, index) } })
        #expect(position["m"]! < position["a"]!)
        #expect(position["a"]! < position["0-dlq"]!)
        #expect(position["z"]! < position["z.dlq"]!)
        #expect(Set(waves.flatMap { $0 }).count == runtimes.count)
    }

    @Test func noDeadLetterIsDroppedWhenSourcesSettleWhileTheBrokerFinishes() async throws {
        for round in 0..<10 {
            let queue = makeQueue()
            var pairs: [(Topic<Int>, Subscription<Int>)] = []
            for index in 0..<20 {
                let topic = try await queue.createTopic(
                    "t\(index)", of: Int.self, configuration: .init(deadLetter: .after(deliveries: 1)))
                pairs.append((topic, try await topic.subscription("w")))
                try await topic.publish(contentsOf: 0..<5)
            }
            var deliveries: [Delivery<Int>] = []
            for (_, work) in pairs { deliveries += try await work.receive(max: 5) }
            let all = deliveries
            let nackers = Task.detached {
                await withTaskGroup(of: Void.self) { group in
                    for delivery in all { group.addTask { try? await delivery.nack() } }
                }
            }
            _ = await queue.shutdown(gracePeriod: .zero)
            await nackers.value
            let statistics = await queue.statistics()
            for index in 0..<20 {
                let source = try #require(statistics.topic("t\(index)"))
                let target = try #require(statistics.topic("t\(index).dlq"))
                #expect(source.totals.deadLettered == target.published, "round \(round), topic t\(index)")
            }
        }
    }
}
