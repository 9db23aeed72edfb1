import OpenQTesting
import Testing

@testable import OpenQ

@Suite("Cancellation, unsubscribe and shutdown mid-flight")
struct CancellationAndShutdownTests {
    @Test func cancellingAConsumerMidBatch_returnsItsUnackedDeliveriesAtOnce() async throws {
        let clock = ManualClock()
        let queue = makeQueue(clock: clock)
        let topic = try await queue.createTopic("jobs", of: Int.self)
        let work = try await topic.subscription("w", acknowledgement: .manual(visibilityTimeout: .seconds(3600)))
        try await topic.publish(contentsOf: 1...10)
        let (handedOut, handedOutContinuation) = AsyncStream.makeStream(of: Int.self)
        let consumer = Task {
            for await delivery in try work.deliveries(prefetch: 10) {
                if delivery.message.payload <= 3 {
                    try await delivery.ack()
                } else {
                    handedOutContinuation.yield(delivery.message.payload)  // holds 4, never acks
                    try await Task.sleep(for: .seconds(3600))
                }
            }
        }
        _ = try await collect(1, from: handedOut)
        #expect(try work.statistics().inFlight == 7)
        consumer.cancel()
        _ = await consumer.result
        // No clock advance: the deliveries come back without waiting for their timeout.
        let returned = try await work.receive(max: 10)
        #expect(returned.map(\.message.payload).sorted() == Array(4...10))
        #expect(returned.first { $0.message.payload == 4 }?.attempt == 2, "4 was handed to user code")
        #expect(returned.filter { $0.message.payload > 4 }.allSatisfy { $0.attempt == 1 }, "5...10 never were")
        #expect(try work.statistics().consumers == 0)
    }

    @Test func aCancelledConsumer_stopsWithinTheCancellationStride_andReturnsTheRest() async throws {
        let queue = makeQueue()
        let topic = try await queue.createTopic("jobs", of: Int.self)
        let work = try await topic.subscription("w", acknowledgement: .manual(visibilityTimeout: .seconds(3600)))
        try await topic.publish(contentsOf: 1...100)
        let consumer = Task {
            var afterCancel = 0
            for await delivery in try work.deliveries(prefetch: 100) {
                try await delivery.ack()
                if delivery.message.payload == 3 {
                    withUnsafeCurrentTask { $0?.cancel() }  // cancelled while it holds 97 prefetched
                } else if delivery.message.payload > 3 {
                    afterCancel += 1
                }
            }
            return afterCancel
        }
        let afterCancel = try await consumer.value
        #expect(afterCancel < ConsumerCursor.cancellationStride)
        // Whatever was not handed out goes back at once, with its attempt given back.
        let statistics = try work.statistics()
        #expect(statistics.counters.acked == 3 + afterCancel)
        #expect(statistics.depth == 97 - afterCancel)
        #expect(statistics.inFlight == 0)
        let returned = try await work.receive(max: 100)
        #expect(returned.map(\.message.payload) == Array((4 + afterCancel)...100))
        #expect(returned.allSatisfy { $0.attempt == 1 })
    }

    @Test func cancellingAWaitingConsumer_endsItsSequencePromptly() async throws {
        let queue = makeQueue()
        let topic = try await queue.createTopic("jobs", of: Int.self)
        let work = try await topic.subscription("w")
        let consumer = Task {
            var count = 0
            for await _ in try work.deliveries() { count += 1 }
            return count
        }
        try await eventually("the consumer to wait") { try work.statistics().consumers == 1 }
        consumer.cancel()
        #expect(try await withTimeout { try await consumer.value } == 0)
        #expect(try work.statistics().consumers == 0)
        try await topic.publish(1)
        #expect(try await work.receive().count == 1, "a cancelled waiter must not swallow a message")
    }

    @Test func droppingAStreamIterator_removesTheAnonymousSubscription() async throws {
        let queue = makeQueue()
        let topic = try await queue.createTopic("e", of: Int.self)
        do {
            let stream = try await topic.subscribe()
            try await topic.publish(contentsOf: 1...5)
            #expect(try await collect(2, from: stream).map(\.payload) == [1, 2])
        }
        #expect(topic.subscriptionNames.isEmpty)
        let totals = topic.statistics().totals
        #expect(totals.routed == 5 && totals.acked == 2 && totals.purged == 3)
    }

    @Test func anUnusedStream_doesNotLeakItsSubscription() async throws {
        let queue = makeQueue()
        let topic = try await queue.createTopic("e", of: Int.self)
        do { _ = try await topic.subscribe() }
        #expect(topic.subscriptionNames.isEmpty)
    }

    @Test func unsubscribeDuringDelivery_endsConsumers_andSettlingFailsCleanly() async throws {
        let queue = makeQueue()
        let topic = try await queue.createTopic("jobs", of: Int.self)
        let work = try await topic.subscription("w")
        try await topic.publish(contentsOf: 1...3)
        let held = try #require(try await work.receive(max: 1).first)
        let sequence = try work.deliveries(prefetch: 1)
        let consumer = Task {
            var seen: [Int] = []
            for await delivery in sequence { seen.append(delivery.message.payload) }
            return seen
        }
        try await eventually("the consumer to start") { try work.statistics().consumers == 1 }
        try await topic.unsubscribe("w")
        _ = try await withTimeout { await consumer.value }
        let error = await #expect(throws: OpenQError.self) { try await held.ack() }
        #expect(error?.code == .subscriptionNotFound)
        #expect(topic.statistics().totals.routed == topic.statistics().totals.acked + topic.statistics().totals.purged)
        await #expect(throws: OpenQError.self) { try await topic.unsubscribe("w") }
        try await topic.publish(4)  // the topic keeps working
    }

    @Test func shutdown_waitsForInFlightWork_withinTheGracePeriod() async throws {
        let clock = ManualClock()
        let queue = makeQueue(clock: clock)
        let topic = try await queue.createTopic("jobs", of: Int.self)
        let work = try await topic.subscription("w")
        try await topic.publish(contentsOf: 1...3)
        let deliveries = try await work.receive(max: 3)
        let probe = try await queue.createTopic("probe", of: Int.self)  // no subscriptions: publishes go nowhere
        let shutdown = Task { await queue.shutdown(gracePeriod: .seconds(30)) }
        try await eventually("publishing to stop") {
            do {
                try await probe.publish(99)
                return false
            } catch let error as OpenQError {
                return error.code == .shutDown
            }
        }
        for delivery in deliveries { try await delivery.ack() }  // consumers finish during the grace period
        let report = try await withTimeout { await shutdown.value }
        #expect(report.unacknowledged == 0 && report.undelivered == 0)
        #expect(report.statistics.topic("jobs")?.published == 3)
    }

    @Test func shutdown_afterTheGracePeriod_reportsWhatStayedUnacknowledged_andEndsSequences() async throws {
        let clock = ManualClock()
        let queue = makeQueue(clock: clock)
        let topic = try await queue.createTopic("jobs", of: Int.self)
        let work = try await topic.subscription("w")
        let stream = try await topic.subscribe()
        try await topic.publish(contentsOf: 1...4)
        _ = try await work.receive(max: 1)  // one in flight, three waiting in "w"
        let reader = Task { await stream.reduce(0) { count, _ in count + 1 } }
        let consumer = Task {
            for await _ in try work.deliveries(prefetch: 1) { try await Task.sleep(for: .seconds(3600)) }
        }
        let shutdown = Task { await queue.shutdown(gracePeriod: .seconds(5)) }
        try await eventually("the grace timer") { clock.sleeperCount >= 1 }
        clock.advance(by: .seconds(5))
        let report = try await withTimeout { await shutdown.value }
        #expect(report.unacknowledged == 2, "the polled one and the one the sleeping consumer holds")
        #expect(report.undelivered == 2)
        #expect(try await withTimeout { await reader.value } == 4, "the stream drained, then ended")
        consumer.cancel()
        let error = await #expect(throws: OpenQError.self) { try await work.receive() }
        #expect(error?.code == .shutDown)
        await #expect(throws: OpenQError.self) { try await queue.createTopic("late", of: Int.self) }
        let again = await queue.shutdown(gracePeriod: .zero)
        #expect(again.unacknowledged == report.unacknowledged)
    }

    @Test func shutdown_returnsWhenATimerDrivenExpiryLeavesTheTopicIdle() async throws {
        let clock = ManualClock()
        let queue = makeQueue(clock: clock)
        let topic = try await queue.createTopic(
            "jobs", of: Int.self, configuration: .init(deadLetter: .after(deliveries: 1)))
        let work = try await topic.subscription("w", acknowledgement: .manual(visibilityTimeout: .seconds(5)))
        let deadLetters = try await queue.topic("jobs.dlq", of: Int.self).existingSubscription("dead-letters")
        let drainer = Task { for await delivery in try deadLetters.deliveries() { try await delivery.ack() } }
        try await topic.publish(1)
        _ = try await work.receive()  // in flight; only the timer will settle it
        let shutdown = Task { await queue.shutdown(gracePeriod: .seconds(600)) }
        try await eventually("the grace timer and the visibility timer") { clock.sleeperCount >= 2 }
        clock.advance(by: .seconds(5))  // the delivery expires, is dead-lettered, the drainer acks it
        let report = try await withTimeout("shutdown before its grace period ends") { await shutdown.value }
        #expect(report.unacknowledged == 0 && report.undelivered == 0)
        #expect(report.statistics.topic("jobs")?.subscription("w")?.counters.deadLettered == 1)
        drainer.cancel()
    }

    @Test func publishDuringShutdown_failsWithShutDown_andSuspendedPublishersAreReleased() async throws {
        let queue = makeQueue()
        let topic = try await queue.createTopic("b", of: Int.self, configuration: .init(capacity: 1))
        _ = try await topic.subscription("w")
        try await topic.publish(1)
        let blocked = Task { try await topic.publish(2) }
        try await eventually("the publisher to wait") { topic.statistics().suspendedPublishers == 1 }
        _ = await queue.shutdown(gracePeriod: .zero)
        let error = await #expect(throws: OpenQError.self) { try await withTimeout { try await blocked.value } }
        #expect(error?.code == .shutDown)
        #expect(topic.tryPublish(3).outcome == .failed)
        #expect(topic.statistics().published == 1)
    }
}
