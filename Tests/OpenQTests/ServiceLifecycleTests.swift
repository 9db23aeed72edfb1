import Logging
import OpenQTesting
import ServiceLifecycle
import ServiceLifecycleTestKit
import Testing

@testable import OpenQ

@Suite("swift-service-lifecycle: the broker and consumers as services")
struct ServiceLifecycleTests {
    struct Recorder: MessageHandler {
        let seen: LockedValueBox<[Int]>
        func handle(_ message: Message<Int>) async throws { seen.withLock { $0.append(message.payload) } }
    }

    @Test func theBroker_runsItsTimersInRun_andAGracefulShutdownShutsItDown() async throws {
        let clock = ManualClock()
        let queue = makeQueue(clock: clock)
        try await testGracefulShutdown { trigger in
            let running = Task { try await queue.run() }
            let topic = try await queue.createTopic("t", of: Int.self)
            let work = try await topic.subscription("w", acknowledgement: .manual(visibilityTimeout: .seconds(5)))
            try await topic.publish(1)
            _ = try await work.receive()
            try await eventually("the visibility timer to sleep") { clock.sleeperCount >= 1 }
            clock.advance(by: .seconds(5))
            try await eventually("the redelivery") { try work.statistics().depth == 1 }
            trigger.triggerGracefulShutdown()
            try await withTimeout("run() to return after the graceful shutdown") { try await running.value }
            let error = await #expect(throws: OpenQError.self) { try await topic.publish(2) }
            #expect(error?.code == .shutDown)
        }
    }

    @Test func run_returnsWhenTheBrokerIsShutDownDirectly() async throws {
        let queue = makeQueue()
        let running = Task { try await queue.run() }
        _ = try await queue.createTopic("t", of: Int.self)
        _ = await queue.shutdown(gracePeriod: .zero)
        try await withTimeout("run() to return") { try await running.value }
    }

    @Test func aConsumer_runsAsAService_andStopsOnGracefulShutdown() async throws {
        let queue = makeQueue()
        let topic = try await queue.createTopic("t", of: Int.self)
        let seen = LockedValueBox<[Int]>([])
        let consumer = try await topic.consumer(subscription: "w", with: Recorder(seen: seen), concurrency: 2)
        try await topic.publish(contentsOf: 1...5)
        #expect(seen.withLock { $0 }.isEmpty, "a consumer made by consumer(...) waits to be run")
        try await testGracefulShutdown { trigger in
            let running = Task { try await consumer.run() }
            try await eventually("the consumer to handle everything") { seen.withLock { $0.count } == 5 }
            trigger.triggerGracefulShutdown()
            try await withTimeout("the consumer to stop") { try await running.value }
        }
        #expect(seen.withLock { $0 }.sorted() == [1, 2, 3, 4, 5])
        #expect(topic.statistics().subscription("w")?.counters.acked == 5)
        #expect(topic.statistics().subscription("w")?.consumers == 0)
        await #expect(throws: OpenQError.self) { try await consumer.run() }
    }

    @Test func aServiceGroup_stopsTheConsumerFirst_thenShutsTheBrokerDown() async throws {
        let queue = makeQueue()
        let topic = try await queue.createTopic("t", of: Int.self)
        let seen = LockedValueBox<[Int]>([])
        let consumer = try await topic.consumer(subscription: "w", with: Recorder(seen: seen))
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let group = ServiceGroup(services: [queue, consumer], gracefulShutdownSignals: [], logger: logger)
        let running = Task { try await group.run() }
        try await topic.publish(contentsOf: 1...3)
        try await eventually("the consumer to handle everything") { seen.withLock { $0.count } == 3 }
        await group.triggerGracefulShutdown()
        try await withTimeout("the service group to end") { try await running.value }
        let error = await #expect(throws: OpenQError.self) { try await topic.publish(4) }
        #expect(error?.code == .shutDown)
    }

    @Test func aConsumerTheBrokerRuns_finishesItsWorkInTheGracePeriod_ofAGracefulShutdown() async throws {
        let queue = MessageQueue(configuration: .init(metricsInterval: nil, shutdownGracePeriod: .seconds(30)))
        let topic = try await queue.createTopic("t", of: Int.self)
        let probe = try await queue.createTopic("probe", of: Int.self)  // no subscriptions
        let gate = AsyncGate()
        let handled = LockedValueBox<[Int]>([])
        try await testGracefulShutdown { trigger in
            let running = Task { try await queue.run() }
            let consumer = try await topic.consume(subscription: "w") { message in
                await gate.wait()
                handled.withLock { $0.append(message.payload) }
            }
            try await topic.publish(contentsOf: 1...3)
            try await eventually("a handler to be running") { topic.statistics().subscription("w")?.inFlight == 1 }
            trigger.triggerGracefulShutdown()
            try await eventually("publishing to stop") { (try? await probe.publish(9)) == nil }
            await gate.open()  // the handler finishes during the grace period; the rest follow
            try await withTimeout("run() to return") { try await running.value }
            await consumer.wait()
        }
        #expect(handled.withLock { $0 } == [1, 2, 3], "nothing was cancelled: every message was handled once")
        #expect(topic.statistics().subscription("w")?.counters.acked == 3)
    }

    @Test func aStartedConsumer_cannotBeRunAgain_andTheBrokersLoopEndsAtShutdown() async throws {
        let queue = makeQueue()
        let topic = try await queue.createTopic("t", of: Int.self)
        let seen = LockedValueBox<[Int]>([])
        let consumer = try await topic.consume(subscription: "w", with: Recorder(seen: seen))
        let error = await #expect(throws: OpenQError.self) { try await consumer.run() }
        #expect(error?.code == .invalidConfiguration)
        try await topic.publish(1)
        try await eventually("the consumer to handle it") { seen.withLock { $0.count } == 1 }
        _ = await queue.shutdown(gracePeriod: .seconds(1))
        try await withTimeout("the consumer to end with the broker") { await consumer.wait() }
        try await withTimeout("the broker's loop to end") { await queue.driver.waitUntilFinished() }
    }

    @Test func stoppingAConsumerThatNeverRan_returnsAtOnce() async throws {
        let queue = makeQueue()
        let topic = try await queue.createTopic("t", of: Int.self)
        let consumer = try await topic.consumer(with: Recorder(seen: LockedValueBox([])))
        try await withTimeout("stop") { await consumer.stop() }
        try await withTimeout("wait") { await consumer.wait() }
    }
}
