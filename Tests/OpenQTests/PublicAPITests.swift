import Foundation
import OpenQTesting
import Testing

@testable import OpenQ

@Suite("Publish receipts and publish options")
struct PublishReceiptTests {
    @Test func publish_returnsTheMessagesIdentity() async throws {
        let queue = makeQueue()
        let topic = try await queue.createTopic("t", of: Int.self)
        let work = try await topic.subscription("w", acknowledgement: .automatic)
        let first = try await topic.publish(1)
        let batch = try await topic.publish(contentsOf: [2, 3, 4])
        let messages = try await work.receive(max: 10).map(\.message)
        #expect(first.messageID == messages[0].id && first.sequenceNumber == messages[0].sequenceNumber)
        #expect(first.count == 1 && first.droppedOlder == 0 && first.droppedNew == 0)
        #expect(batch.count == 3)
        #expect(batch.messageIDs == messages[1...].map(\.id))
        #expect(Array(batch.sequenceNumbers) == messages[1...].map(\.sequenceNumber))
        let empty = try await topic.publish(contentsOf: [Int]())
        #expect(empty.count == 0 && empty.sequenceNumbers.isEmpty && empty.sequenceNumber == 5)
    }

    @Test func receipts_sayWhatFullSubscriptionsDropped() async throws {
        let queue = makeQueue()
        let topic = try await queue.createTopic(
            "t", of: Int.self, configuration: .init(capacity: 2, overflow: .dropOldest))
        _ = try await topic.subscription("oldest")
        _ = try await topic.subscription("newest", backlog: .init(capacity: 2, overflow: .dropNewest))
        #expect(try await topic.publish(contentsOf: [1, 2]).droppedOlder == 0)
        guard case .dropped(let receipt) = topic.tryPublish(3) else {
            Issue.record("a dropNewest subscription dropped the message, which tryPublish must report")
            return
        }
        #expect(receipt.droppedOlder == 1, "'oldest' dropped message 1 to make room")
        #expect(receipt.droppedNew == 1, "'newest' dropped message 3")
        let published = try await topic.publish(4)
        #expect(published.droppedOlder == 1 && published.droppedNew == 1)
        #expect(topic.statistics().totals.dropped == 4)
    }

    @Test func tryPublish_reportsAnOlderMessageDroppedToMakeRoom() async throws {
        let queue = makeQueue()
        let topic = try await queue.createTopic(
            "t", of: Int.self, configuration: .init(capacity: 1, overflow: .dropOldest))
        _ = try await topic.subscription("w")
        #expect(topic.tryPublish(1).receipt?.droppedOlder == 0)
        guard case .enqueued(let receipt) = topic.tryPublish(2) else {
            Issue.record("dropOldest enqueues the new message")
            return
        }
        #expect(receipt.droppedOlder == 1)
    }

    @Test func anInjectedEpoch_makesPublishTimesDeterministic() async throws {
        let clock = ManualClock()
        let epoch = Date(timeIntervalSince1970: 1_700_000_000)
        let queue = MessageQueue(configuration: .init(metricsInterval: nil), clock: clock, epoch: epoch)
        let topic = try await queue.createTopic("t", of: Int.self)
        let work = try await topic.subscription("w", acknowledgement: .automatic)
        try await topic.publish(1)
        clock.advance(by: .milliseconds(1_500))
        try await topic.publish(2)
        let times = try await work.receive(max: 2).map(\.message.publishedAt)
        #expect(times == [epoch, epoch.addingTimeInterval(1.5)])
        #expect(await queue.statistics().takenAt == epoch.addingTimeInterval(1.5))
    }

    @Test func publishContentsOf_takesADelay_andProducersTakePriorityAndDelay() async throws {
        let clock = ManualClock()
        let queue = makeQueue(clock: clock)
        let topic = try await queue.createTopic("t", of: Int.self)
        let work = try await topic.subscription("w", acknowledgement: .automatic)
        try await topic.publish(contentsOf: [1, 2], delay: .seconds(5))
        #expect(try await work.receive(max: 10).isEmpty)
        #expect(try work.statistics().scheduled == 2)
        clock.advance(by: .seconds(5))
        try await eventually("the delayed batch") { try work.statistics().depth == 2 }
        #expect(try await work.receive(max: 10).map(\.message.payload) == [1, 2])

        let producer = try topic.producer("p")
        try await producer.publish(contentsOf: [10, 11], priority: 0)
        try await producer.publish(contentsOf: [20, 21], priority: 5)
        let received = try await work.receive(max: 10).map(\.message)
        #expect(received.map(\.payload) == [20, 21, 10, 11])
        #expect(received.allSatisfy { $0.headers[MessageHeader.producer] == "p" })
        await #expect(throws: OpenQError.self) { try await topic.publish(contentsOf: [1], delay: .seconds(-1)) }
        await #expect(throws: OpenQError.self) { try await topic.publish(1, delay: .seconds(-1)) }
    }
}

@Suite("Sequences: bad input is a typed error; a stream can be iterated again")
struct SequenceAPITests {
    @Test func deliveries_withPrefetchBelowOne_throwsInvalidConfiguration() async throws {
        let queue = makeQueue()
        let topic = try await queue.createTopic("t", of: Int.self)
        let work = try await topic.subscription("w")
        let error = #expect(throws: OpenQError.self) { try work.deliveries(prefetch: 0) }
        #expect(error?.code == .invalidConfiguration)
        let streamError = await #expect(throws: OpenQError.self) { try await topic.subscribe(prefetch: 0) }
        #expect(streamError?.code == .invalidConfiguration)
    }

    @Test func aStreamIteratedAgain_deliversWhatIsPublishedAfterwards() async throws {
        let queue = makeQueue()
        let topic = try await queue.createTopic("t", of: Int.self)
        let stream = try await topic.subscribe()
        try await topic.publish(contentsOf: 1...3)
        #expect(try await collect(2, from: stream).map(\.payload) == [1, 2])
        // The first iteration ended: its subscription is gone, and a kept stream holds nothing back.
        #expect(topic.subscriptionNames.isEmpty)
        let second = Task { try await collect(2, from: stream).map(\.payload) }
        try await eventually("the second iteration to subscribe") { topic.subscriptionNames.count == 1 }
        try await topic.publish(contentsOf: 4...5)
        #expect(try await second.value == [4, 5])
        try await eventually("the second iteration's subscription to end") { topic.subscriptionNames.isEmpty }
    }
}

@Suite("DeliveryHandler: handlers that see the delivery")
struct DeliveryHandlerTests {
    struct Rejecting: DeliveryHandler {
        let attempts: LockedValueBox<[Int: [Int]]>

        func handle(_ delivery: Delivery<Int>) async throws {
            attempts.withLock { $0[delivery.message.payload, default: []].append(delivery.attempt) }
            switch delivery.message.payload {
            case 0: try await delivery.reject(reason: "poison")  // settled by the handler
            case 1 where delivery.attempt == 1: throw Flaky()
            default: try await delivery.extendVisibility(by: .seconds(60))
            }
        }
    }

    struct Flaky: Error {}

    @Test func aDeliveryHandler_seesTheAttempt_andCanRejectOrExtend() async throws {
        let queue = makeQueue()
        let topic = try await queue.createTopic(
            "t", of: Int.self, configuration: .init(deadLetter: .after(deliveries: 3), retryBackoff: .immediate))
        let attempts = LockedValueBox<[Int: [Int]]>([:])
        let consumer = try await topic.consume(subscription: "w", with: Rejecting(attempts: attempts), concurrency: 2)
        try await topic.publish(contentsOf: [0, 1, 2])
        try await eventually("every message settled") {
            let counters = topic.statistics().subscription("w")?.counters
            return counters?.acked == 2 && counters?.deadLettered == 1
        }
        await consumer.stop()
        #expect(attempts.withLock { $0 } == [0: [1], 1: [1, 2], 2: [1]])
        let letter = try #require(
            try await queue.topic("t.dlq", of: Int.self).existingSubscription("dead-letters").receive().first)
        #expect(letter.message.headers[MessageHeader.lastError] == "poison")
        #expect(topic.statistics().subscription("w")?.counters.nacked == 1)
    }
}
