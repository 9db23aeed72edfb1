import OpenQTesting
import Testing

@testable import OpenQ

@Suite("Publish and subscribe: fan-out, work queues, order, priorities, delays, long polling")
struct PublishSubscribeTests {
    @Test(arguments: Backend.allCases)
    func fanOut_everySubscriberGetsEveryMessage_inOrder(_ backend: Backend) async throws {
        let queue = try await backend.makeQueue()
        let topic = try await queue.createTopic("events", of: Int.self, configuration: backend.configure())
        var streams: [MessageStream<Int>] = []
        for _ in 0..<5 { streams.append(try await topic.subscribe()) }
        try await topic.publish(contentsOf: 1...100)
        for stream in streams {
            #expect(try await collect(100, from: stream).map(\.payload) == Array(1...100))
        }
    }

    @Test func aConsumedBatch_isReleased_whileTheStreamGoesOnWithSinglePublishes() async throws {
        final class Tracked: Sendable {}
        let queue = makeQueue()
        let topic = try await queue.createTopic("events", of: Tracked.self)
        let stream = try await topic.subscribe()
        weak var first: Tracked?
        weak var second: Tracked?
        do {
            let batch = [Tracked(), Tracked()]
            (first, second) = (batch[0], batch[1])
            try await topic.publish(contentsOf: batch)
        }
        try await topic.publish(Tracked())
        var iterator = stream.makeAsyncIterator()
        for _ in 0..<3 { _ = try #require(await iterator.next()) }
        // The stream is still open and holds nothing of the batch: its payloads are gone.
        #expect(first == nil && second == nil)
        _ = iterator
    }

    @Test func message_isAValue_changingOneCopyLeavesTheOthersAndTheRetainedMessage() async throws {
        let queue = makeQueue()
        let topic = try await queue.createTopic(
            "events", of: [Int].self, configuration: .init(retention: .count(10)))
        let first = try await topic.subscribe()
        let second = try await topic.subscribe()
        try await topic.publish([1, 2], headers: ["k": "v"], priority: 3)

        var changed = try #require(try await collect(1, from: first).first)
        let original = changed
        changed.payload.append(3)
        changed.headers["k"] = "changed"
        changed.headers["new"] = "x"
        #expect(changed.payload == [1, 2, 3])
        #expect(changed.headers == ["k": "changed", "new": "x"])
        // Identity stays with the changed copy.
        #expect(changed.id == original.id)
        #expect(changed.sequenceNumber == original.sequenceNumber)
        #expect(changed.publishedAt == original.publishedAt)
        #expect(changed.priority == 3)
        #expect(changed.topic == "events")
        // Nobody else sees the change: not the earlier copy, not the other subscription, not replay.
        #expect(original.payload == [1, 2])
        #expect(original.headers == ["k": "v"])
        let other = try #require(try await collect(1, from: second).first)
        #expect(other.payload == [1, 2])
        #expect(other.headers == ["k": "v"])
        let replayed = try #require(try await collect(1, from: try await topic.subscribe(startingAt: .earliest)).first)
        #expect(replayed.payload == [1, 2])
        #expect(replayed.headers == ["k": "v"])
        #expect(replayed.id == original.id)
    }

    @Test(arguments: Backend.allCases)
    func subscribe_doesNotSeeMessagesPublishedBeforeIt(_ backend: Backend) async throws {
        let queue = try await backend.makeQueue()
        let topic = try await queue.createTopic("events", of: Int.self, configuration: backend.configure())
        try await topic.publish(1)
        let stream = try await topic.subscribe()
        try await topic.publish(2)
        #expect(try await collect(1, from: stream).map(\.payload) == [2])
    }

    @Test(arguments: Backend.allCases)
    func subscriberWaiting_isWokenByAPublish(_ backend: Backend) async throws {
        let queue = try await backend.makeQueue()
        let topic = try await queue.createTopic("events", of: Int.self, configuration: backend.configure())
        let stream = try await topic.subscribe()
        let reader = Task { try await collect(3, from: stream).map(\.payload) }
        try await eventually("the reader to wait") { topic.statistics().consumers == 1 }
        for value in 1...3 { try await topic.publish(value, headers: ["n": "\(value)"]) }
        #expect(try await reader.value == [1, 2, 3])
    }

    @Test(arguments: Backend.allCases)
    func competingConsumers_splitTheWork_withNothingLostOrDuplicated(_ backend: Backend) async throws {
        let queue = try await backend.makeQueue()
        let topic = try await queue.createTopic("jobs", of: Int.self, configuration: backend.configure())
        let work = try await topic.subscription("workers", acknowledgement: .manual)
        let total = 2_000
        let consumers = (0..<4).map { _ in
            Task {
                var seen: [Int] = []
                for await delivery in try work.deliveries(prefetch: 8) {
                    seen.append(delivery.message.payload)
                    try await delivery.ack()
                    if delivery.message.payload < 0 { break }
                }
                return seen
            }
        }
        for value in 1...total { try await topic.publish(value) }
        try await eventually("all acks") { try work.statistics().counters.acked == total }
        for _ in consumers { try await topic.publish(-1) }
        var all: [Int] = []
        for consumer in consumers {
            let seen = try await withTimeout { try await consumer.value }
            #expect(seen.filter { $0 > 0 } == seen.filter { $0 > 0 }.sorted(), "each consumer sees publish order")
            all += seen.filter { $0 > 0 }
        }
        #expect(all.sorted() == Array(1...total))
        let statistics = try work.statistics()
        #expect(statistics.counters.redelivered == 0)
        #expect(statistics.isBalanced)
    }

    @Test(arguments: Backend.allCases)
    func priorities_higherPriorityDeliveredFirst(_ backend: Backend) async throws {
        let queue = try await backend.makeQueue()
        let topic = try await queue.createTopic("p", of: String.self, configuration: backend.configure())
        let subscription = try await topic.subscription("s")
        try await topic.publish("low", priority: 0)
        try await topic.publish("urgent", priority: 10)
        try await topic.publish("normal", priority: 5)
        try await topic.publish("urgent-2", priority: 10)
        let batch = try await subscription.receive(max: 10)
        #expect(batch.map(\.message.payload) == ["urgent", "urgent-2", "normal", "low"])
    }

    @Test(arguments: Backend.allCases)
    func delayedMessage_becomesVisibleWhenTheClockPassesTheDelay(_ backend: Backend) async throws {
        let clock = ManualClock()
        let queue = try await backend.makeQueue(clock: clock)
        let topic = try await queue.createTopic("d", of: Int.self, configuration: backend.configure())
        let stream = try await topic.subscribe()
        try await topic.publish(1, delay: .seconds(60))
        let reader = Task { try await collect(1, from: stream).map(\.payload) }
        try await eventually("the topic timer to sleep") { clock.sleeperCount >= 1 }
        #expect(topic.statistics().subscriptions.first?.scheduled == 1)
        clock.advance(by: .seconds(59))
        #expect(topic.statistics().subscriptions.first?.scheduled == 1)
        clock.advance(by: .seconds(1))
        #expect(try await reader.value == [1])
    }

    @Test(arguments: Backend.allCases)
    func receive_longPoll_returnsWhenAMessageArrives(_ backend: Backend) async throws {
        let clock = ManualClock()
        let queue = try await backend.makeQueue(clock: clock)
        let topic = try await queue.createTopic("q", of: Int.self, configuration: backend.configure())
        let subscription = try await topic.subscription("s")
        let poll = Task { try await subscription.receive(max: 10, waitingUpTo: .seconds(20)) }
        try await eventually("the poll to wait") { clock.sleeperCount >= 1 }
        try await topic.publish(7)
        let batch = try await withTimeout { try await poll.value }
        #expect(batch.map(\.message.payload) == [7])
    }

    @Test(arguments: Backend.allCases)
    func receive_longPoll_returnsEmptyWhenTheWaitPasses(_ backend: Backend) async throws {
        let clock = ManualClock()
        let queue = try await backend.makeQueue(clock: clock)
        let topic = try await queue.createTopic("q", of: Int.self, configuration: backend.configure())
        let subscription = try await topic.subscription("s")
        let poll = Task { try await subscription.receive(max: 10, waitingUpTo: .seconds(20)) }
        try await eventually("the poll to wait") { clock.sleeperCount >= 1 }
        clock.advance(by: .seconds(20))
        #expect(try await withTimeout { try await poll.value }.isEmpty)
        try await topic.publish(1)
        #expect(try await subscription.receive().count == 1, "a timed-out poll must not swallow a later message")
    }

    @Test(arguments: Backend.allCases)
    func receive_withoutWaiting_returnsAtOnce(_ backend: Backend) async throws {
        let queue = try await backend.makeQueue()
        let topic = try await queue.createTopic("q", of: Int.self, configuration: backend.configure())
        let subscription = try await topic.subscription("s")
        #expect(try await subscription.receive().isEmpty)
        await #expect(throws: OpenQError.self) { try await subscription.receive(max: 0) }
        await #expect(throws: OpenQError.self) { try await subscription.receive(waitingUpTo: .seconds(-1)) }
    }

    @Test(arguments: Backend.allCases)
    func receive_cancelledWhileWaiting_throwsCancellation_andLosesNothing(_ backend: Backend) async throws {
        let clock = ManualClock()
        let queue = try await backend.makeQueue(clock: clock)
        let topic = try await queue.createTopic("q", of: Int.self, configuration: backend.configure())
        let subscription = try await topic.subscription("s")
        let poll = Task { try await subscription.receive(max: 10, waitingUpTo: .seconds(60)) }
        try await eventually("the poll to wait") { clock.sleeperCount >= 1 }
        poll.cancel()
        await #expect(throws: CancellationError.self) { try await withTimeout { try await poll.value } }
        try await topic.publish(1)
        #expect(try await subscription.receive().map(\.message.payload) == [1])
    }

    @Test(arguments: Backend.allCases)
    func producer_addsItsNameAndDefaultHeaders(_ backend: Backend) async throws {
        let queue = try await backend.makeQueue()
        let topic = try await queue.createTopic("orders", of: Order.self, configuration: backend.configure())
        let stream = try await topic.subscribe()
        let producer = try topic.producer("api", headers: ["region": "eu", "tier": "1"])
        try await producer.publish(Order(id: 1), headers: ["tier": "2"])
        let message = try #require(try await collect(1, from: stream).first)
        #expect(message.headers == ["region": "eu", "tier": "2", MessageHeader.producer: "api"])
        #expect(throws: OpenQError.self) { try topic.producer("no spaces") }
    }

    @Test(arguments: Backend.allCases)
    func batchPublish_keepsOrderAndHeaders(_ backend: Backend) async throws {
        let queue = try await backend.makeQueue()
        let topic = try await queue.createTopic("b", of: Int.self, configuration: backend.configure())
        let subscription = try await topic.subscription("s")
        try await topic.publish(contentsOf: [3, 1, 2], headers: ["batch": "yes"])
        let batch = try await subscription.receive(max: 10)
        #expect(batch.map(\.message.payload) == [3, 1, 2])
        #expect(batch.allSatisfy { $0.message.headers["batch"] == "yes" })
        #expect(batch.map(\.message.sequenceNumber) == [1, 2, 3])
    }

    @Test func batchMessage_isAValueToo_changingOneLeavesItsNeighbours() async throws {
        let queue = makeQueue()
        let topic = try await queue.createTopic("b", of: Int.self)
        let stream = try await topic.subscribe()
        try await topic.publish(contentsOf: [10, 20, 30], headers: ["k": "v"])
        let messages = try await collect(3, from: stream)
        var changed = messages[1]
        changed.payload = 21
        changed.headers["k"] = "changed"
        #expect(changed.payload == 21 && changed.headers == ["k": "changed"])
        #expect(changed.id == messages[1].id && changed.sequenceNumber == 2)
        #expect(messages.map(\.payload) == [10, 20, 30])
        #expect(messages.allSatisfy { $0.headers == ["k": "v"] })
    }

    @Test(arguments: Backend.allCases)
    func automaticConsumer_endingInsideABatch_leavesTheRestForTheNextConsumer(_ backend: Backend) async throws {
        let queue = try await backend.makeQueue()
        let topic = try await queue.createTopic("b", of: Int.self, configuration: backend.configure())
        let subscription = try await topic.subscription("s", acknowledgement: .automatic)
        try await topic.publish(contentsOf: 1...10)
        var seen: [Int] = []
        for await delivery in try subscription.deliveries(prefetch: 10) {
            seen.append(delivery.message.payload)
            if seen.count == 3 { break }  // took all 10 in one run, handed out 3
        }
        #expect(seen == [1, 2, 3])
        let rest = try await subscription.receive(max: 10)
        #expect(rest.map(\.message.payload) == Array(4...10))
        #expect(rest.allSatisfy { $0.attempt == 1 }, "never handed out, so not a redelivery")
        let statistics = try subscription.statistics()
        #expect(statistics.counters.acked == 10 && statistics.counters.delivered == 10)
    }
}

@Suite("Publishing: batches that can never fit")
struct ImpossibleBatchTests {
    @Test func aBatchLargerThanCapacity_throwsAtOnce_evenBehindAWaitingPublisher() async throws {
        let queue = makeQueue()
        let topic = try await queue.createTopic("b", of: Int.self, configuration: .init(capacity: 10))
        _ = try await topic.subscription("w")
        try await topic.publish(contentsOf: 0..<10)
        let waiting = Task { try await topic.publish(10) }
        try await eventually("the publisher to wait") { topic.statistics().suspendedPublishers == 1 }
        let error = await #expect(throws: OpenQError.self) {
            try await withTimeout("the impossible batch to be refused") {
                try await topic.publish(contentsOf: 0..<11)
            }
        }
        #expect(error?.code == .invalidConfiguration)
        #expect(topic.statistics().suspendedPublishers == 1, "the waiting publisher is untouched")
        waiting.cancel()
        await #expect(throws: CancellationError.self) { try await waiting.value }
    }
}
