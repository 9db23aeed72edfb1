import OpenQTesting
import Testing

@testable import OpenQ

/// Records what it handled; fails the messages it is told to fail.
actor Recorder {
    var handled: [Int] = []
    var attempts: [Int: Int] = [:]
    func record(_ value: Int) -> Int {
        handled.append(value)
        attempts[value, default: 0] += 1
        return attempts[value]!
    }
}

struct RecordingHandler: MessageHandler {
    let recorder: Recorder
    let failFirstAttemptOf: Set<Int>

    func handle(_ message: Message<Int>) async throws {
        let attempt = await recorder.record(message.payload)
        if failFirstAttemptOf.contains(message.payload), attempt == 1 {
            throw HandlerFailure(value: message.payload)
        }
    }
}

struct HandlerFailure: Error { var value: Int }

@Suite("Consumers with MessageHandler: ack after handling, nack on throw, leases, concurrency")
struct ConsumerTests {
    @Test func consumer_acksAfterHandling_andRetriesWhatThrew() async throws {
        let queue = makeQueue()
        let topic = try await queue.createTopic(
            "jobs", of: Int.self, configuration: .init(retryBackoff: .immediate))
        let recorder = Recorder()
        let consumer = try await topic.consume(
            subscription: "workers", with: RecordingHandler(recorder: recorder, failFirstAttemptOf: [3]), concurrency: 4
        )
        try await topic.publish(contentsOf: 1...10)
        try await eventually("all acked") { topic.statistics().subscription("workers")?.counters.acked == 10 }
        await consumer.stop()
        let handled = await recorder.handled
        #expect(handled.sorted() == [1, 2, 3, 3, 4, 5, 6, 7, 8, 9, 10])
        let statistics = try #require(topic.statistics().subscription("workers"))
        #expect(statistics.counters.nacked == 1 && statistics.counters.redelivered == 1)
        #expect(statistics.isBalanced && statistics.consumers == 0)
    }

    @Test func consumer_respectsItsConcurrencyLimit() async throws {
        let queue = makeQueue()
        let topic = try await queue.createTopic("jobs", of: Int.self)
        let gauge = ConcurrencyGauge()
        let consumer = try await topic.consume(subscription: "w", concurrency: 3) { _ in
            await gauge.enter()
            try await Task.sleep(for: .milliseconds(2))
            await gauge.leave()
        }
        try await topic.publish(contentsOf: 1...30)
        try await eventually("all acked") { topic.statistics().subscription("w")?.counters.acked == 30 }
        await consumer.stop()
        #expect(await gauge.peak == 3)
    }

    @Test func consumer_extendsTheLeaseWhileTheHandlerRuns() async throws {
        let clock = ManualClock()
        let queue = makeQueue(clock: clock)
        let topic = try await queue.createTopic("jobs", of: Int.self)
        let (release, releaseContinuation) = AsyncStream.makeStream(of: Void.self)
        let started = Recorder()
        let consumer = try await topic.consume(
            subscription: "w", acknowledgement: .afterHandling(visibilityTimeout: .seconds(10))
        ) { message in
            _ = await started.record(message.payload)
            for await _ in release { break }
        }
        try await topic.publish(1)
        try await eventually("the handler to start") { await started.handled == [1] }
        // Ten half-timeouts pass while the handler runs; the lease keeper extends each time.
        for _ in 0..<10 {
            try await eventually("the lease keeper to sleep") { clock.sleeperCount >= 2 }
            clock.advance(by: .seconds(5))
            try await eventually("the lease to be extended") {
                let statistics = topic.statistics().subscription("w")
                return statistics?.inFlight == 1 && statistics?.counters.expired == 0
            }
        }
        releaseContinuation.yield()
        try await eventually("the ack") { topic.statistics().subscription("w")?.counters.acked == 1 }
        await consumer.stop()
        #expect(await started.handled == [1], "never redelivered while the handler ran")
    }

    @Test func consumer_leaseStopsAtMaxLease() async throws {
        let clock = ManualClock()
        let queue = makeQueue(clock: clock)
        let topic = try await queue.createTopic("jobs", of: Int.self)
        let started = Recorder()
        let consumer = try await topic.consume(
            subscription: "w",
            acknowledgement: .afterHandling(visibilityTimeout: .seconds(10)),
            with: ClosureHandler { message in
                _ = await started.record(message.payload)
                try await Task.sleep(for: .seconds(3600))
            },
            concurrency: 2,  // a free slot to take the redelivery while the first handler still runs
            maxLease: .seconds(20)
        )
        try await topic.publish(1)
        try await eventually("the handler to start") { await started.handled == [1] }
        for _ in 0..<6 {
            clock.advance(by: .seconds(5))
            await Task.yield()
        }
        try await eventually("the redelivery after maxLease") { await started.handled.count >= 2 }
        await consumer.stop()
    }

    @Test func anonymousConsumer_isRemovedWhenStopped() async throws {
        let queue = makeQueue()
        let topic = try await queue.createTopic("jobs", of: Int.self)
        let recorder = Recorder()
        let consumer = try await topic.consume { message in _ = await recorder.record(message.payload) }
        try await topic.publish(1)
        try await eventually("handled") { await recorder.handled == [1] }
        #expect(topic.subscriptionNames == [consumer.subscription])
        await consumer.stop()
        #expect(topic.subscriptionNames.isEmpty)
    }

    @Test func consumer_endsWhenTheBrokerShutsDown() async throws {
        let queue = makeQueue()
        let topic = try await queue.createTopic("jobs", of: Int.self)
        let consumer = try await topic.consume(subscription: "w") { _ in }
        try await topic.publish(1)
        _ = await queue.shutdown(gracePeriod: .seconds(5))
        try await withTimeout { await consumer.wait() }
    }

    @Test func consume_withInvalidConcurrency_fails() async throws {
        let queue = makeQueue()
        let topic = try await queue.createTopic("jobs", of: Int.self)
        await #expect(throws: OpenQError.self) { try await topic.consume(concurrency: 0) { _ in } }
    }
}

actor ConcurrencyGauge {
    private var current = 0
    private(set) var peak = 0
    func enter() {
        current += 1
        peak = max(peak, current)
    }
    func leave() { current -= 1 }
}

@Suite("Consumer stop with a real clock")
struct ConsumerStopTests {
    @Test func stop_returnsPromptly_whileMessagesAreBackingOff() async throws {
        let queue = MessageQueue(configuration: .init(metricsInterval: nil))
        let topic = try await queue.createTopic(
            "jobs", of: Int.self,
            configuration: .init(
                deadLetter: .after(deliveries: 3),
                retryBackoff: .exponential(initial: .milliseconds(10), maximum: .milliseconds(80))))
        let consumer = try await topic.consume(subscription: "w", concurrency: 4) { _ in throw HandlerFailure(value: 0)
        }
        try await topic.publish(contentsOf: 1...50)
        try await eventually("dead letters") { topic.statistics().subscription("w")?.counters.deadLettered == 50 }
        try await withTimeout("stop") { await consumer.stop() }
    }
}
