import OpenQTesting
import Testing

@testable import OpenQ

@Suite("Acknowledgement: visibility timeouts, nack backoff, dead letters, redrive")
struct AcknowledgementTests {
    @Test(arguments: Backend.allCases)
    func unackedDelivery_isRedeliveredAfterTheVisibilityTimeout(_ backend: Backend) async throws {
        let clock = ManualClock()
        let queue = try await backend.makeQueue(clock: clock)
        let topic = try await queue.createTopic("jobs", of: Int.self, configuration: backend.configure())
        let work = try await topic.subscription("w", acknowledgement: .manual(visibilityTimeout: .seconds(30)))
        try await topic.publish(1)
        let first = try #require(try await work.receive().first)
        #expect(first.attempt == 1)
        #expect(try await work.receive().isEmpty, "invisible while in flight")
        try await eventually("the visibility timer to be armed") { clock.sleeperCount >= 1 }
        clock.advance(by: .seconds(30))
        let second = try #require(try await work.receive().first)
        #expect(second.message.id == first.message.id)
        #expect(second.attempt == 2)
        try await second.ack()
        #expect(try work.statistics().counters.expired == 1)
    }

    @Test(arguments: Backend.allCases)
    func timerAlone_wakesAWaitingConsumerForTheRedelivery(_ backend: Backend) async throws {
        let clock = ManualClock()
        let queue = try await backend.makeQueue(clock: clock)
        let topic = try await queue.createTopic("jobs", of: Int.self, configuration: backend.configure())
        let work = try await topic.subscription("w", acknowledgement: .manual(visibilityTimeout: .seconds(5)))
        try await topic.publish(1)
        _ = try await work.receive()  // taken and never acked (a crashed consumer)
        let waiting = Task {
            for await delivery in try work.deliveries() { return delivery.attempt }
            return 0
        }
        try await eventually("the consumer to wait") { try work.statistics().consumers == 1 }
        clock.advance(by: .seconds(5))
        #expect(try await withTimeout { try await waiting.value } == 2)
    }

    @Test(arguments: Backend.allCases)
    func ack_afterTheTimeout_failsWithReceiptExpired_andTheNewDeliveryStillAcks(_ backend: Backend) async throws {
        let clock = ManualClock()
        let queue = try await backend.makeQueue(clock: clock)
        let topic = try await queue.createTopic("jobs", of: Int.self, configuration: backend.configure())
        let work = try await topic.subscription("w", acknowledgement: .manual(visibilityTimeout: .seconds(10)))
        try await topic.publish(1)
        let slow = try #require(try await work.receive().first)
        clock.advance(by: .seconds(10))
        let fast = try #require(try await work.receive().first)
        let error = await #expect(throws: OpenQError.self) { try await slow.ack() }
        #expect(error?.code == .receiptExpired)
        #expect(try work.statistics().inFlight == 1)
        try await fast.ack()
        let error2 = await #expect(throws: OpenQError.self) { try await fast.ack() }
        #expect(error2?.code == .receiptAlreadySettled)
        #expect(try work.statistics().isBalanced)
    }

    @Test(arguments: Backend.allCases)
    func batchAck_acknowledgesEveryDeliveryInOneCall(_ backend: Backend) async throws {
        let queue = try await backend.makeQueue()
        let topic = try await queue.createTopic("jobs", of: Int.self, configuration: backend.configure())
        let work = try await topic.subscription("w", acknowledgement: .manual)
        try await topic.publish(contentsOf: 1...50)
        let batch = try await work.receive(max: 50)
        #expect(batch.count == 50)
        #expect(await work.ack(batch).isEmpty)
        let statistics = try work.statistics()
        #expect(statistics.counters.acked == 50)
        #expect(statistics.inFlight == 0)
        #expect(statistics.isBalanced)
        #expect(try await work.receive().isEmpty, "acknowledged messages are not delivered again")
    }

    @Test(arguments: Backend.allCases)
    func batchAck_settlesEachDeliveryOnItsOwn_andReportsTheOnesItCouldNot(_ backend: Backend) async throws {
        let clock = ManualClock()
        let queue = try await backend.makeQueue(clock: clock)
        let topic = try await queue.createTopic("jobs", of: Int.self, configuration: backend.configure())
        let work = try await topic.subscription("w", acknowledgement: .manual(visibilityTimeout: .seconds(10)))
        let other = try await topic.subscription("other", acknowledgement: .manual)
        try await topic.publish(1)
        let expiring = try #require(try await work.receive().first)
        clock.advance(by: .seconds(5))
        try await topic.publish(contentsOf: 2...4)
        let fresh = try await work.receive(max: 3)
        try await fresh[0].ack()
        clock.advance(by: .seconds(5))  // `expiring` passed its timeout; `fresh` has 5 s left
        let foreign = try #require(try await other.receive(max: 1).first)

        let failures = await work.ack([expiring] + fresh + [foreign])

        #expect(failures.map(\.delivery.message.payload) == [1, 2, 1])
        #expect(failures.map(\.error.code) == [.receiptExpired, .receiptAlreadySettled, .invalidConfiguration])
        #expect(failures[2].delivery.subscription == "other")
        let statistics = try work.statistics()
        #expect(statistics.counters.acked == 3)
        #expect(statistics.counters.expired == 1)
        #expect(statistics.isBalanced)
        // The expired message is not lost: it is delivered again. The foreign delivery is untouched.
        let again = try #require(try await work.receive().first)
        #expect(again.message.payload == 1)
        #expect(again.attempt == 2)
        #expect(try other.statistics().inFlight == 1)
        try await foreign.ack()
    }

    @Test(arguments: Backend.allCases)
    func extendVisibility_keepsTheDeliveryInvisible(_ backend: Backend) async throws {
        let clock = ManualClock()
        let queue = try await backend.makeQueue(clock: clock)
        let topic = try await queue.createTopic("jobs", of: Int.self, configuration: backend.configure())
        let work = try await topic.subscription("w", acknowledgement: .manual(visibilityTimeout: .seconds(10)))
        try await topic.publish(1)
        let delivery = try #require(try await work.receive().first)
        clock.advance(by: .seconds(9))
        try await delivery.extendVisibility(by: .seconds(60))
        clock.advance(by: .seconds(30))
        #expect(try await work.receive().isEmpty)
        try await delivery.ack()
    }

    @Test(arguments: Backend.allCases)
    func nack_backsOff_thenRedelivers(_ backend: Backend) async throws {
        let clock = ManualClock()
        let queue = try await backend.makeQueue(clock: clock)
        let backoff = RetryBackoff.exponential(initial: .seconds(2), maximum: .seconds(60), multiplier: 2, jitter: 0)
        let topic = try await queue.createTopic(
            "jobs", of: Int.self, configuration: backend.configure(.init(retryBackoff: backoff)))
        let work = try await topic.subscription("w")
        try await topic.publish(1)
        try await #require(try await work.receive().first).nack(error: "flaky")
        clock.advance(by: .milliseconds(1999))
        #expect(try await work.receive().isEmpty)
        clock.advance(by: .milliseconds(1))
        let again = try #require(try await work.receive().first)
        #expect(again.attempt == 2)
        try await again.nack(retryAfter: .zero)
        #expect(try await work.receive().first?.attempt == 3, "retryAfter: .zero redelivers at once")
    }

    @Test(arguments: Backend.allCases)
    func maxDeliveries_movesTheMessageToTheDeadLetterTopic_withHeaders(_ backend: Backend) async throws {
        let clock = ManualClock()
        let queue = try await backend.makeQueue(clock: clock)
        let topic = try await queue.createTopic(
            "orders", of: Order.self,
            configuration: backend.configure(.init(deadLetter: .after(deliveries: 3), retryBackoff: .immediate)))
        let billing = try await topic.subscription("billing")
        try await topic.publish(Order(id: 9), headers: ["source": "api"])
        for attempt in 1...3 {
            let delivery = try #require(try await billing.receive().first)
            #expect(delivery.attempt == attempt)
            try await delivery.nack(error: "declined #\(attempt)")
        }
        #expect(try await billing.receive().isEmpty)
        let deadLetterTopic = try await queue.topic("orders.dlq", of: Order.self)
        #expect(topic.deadLetterTopicName == "orders.dlq")
        let deadLetters = try deadLetterTopic.existingSubscription(DeadLetterPolicy.subscriptionName)
        let dead = try #require(try await deadLetters.receive().first)
        #expect(dead.message.payload == Order(id: 9))
        let headers = dead.message.headers
        #expect(headers["source"] == "api")
        #expect(headers[MessageHeader.sourceTopic] == "orders")
        #expect(headers[MessageHeader.sourceSubscription] == "billing")
        #expect(headers[MessageHeader.attempts] == "3")
        #expect(headers[MessageHeader.lastError] == "declined #3")
        #expect(headers[MessageHeader.deadLetterReason] == "maxDeliveries")
        #expect(headers[MessageHeader.firstPublishedAt] != nil && headers[MessageHeader.deadLetteredAt] != nil)
        #expect(try billing.statistics().counters.deadLettered == 1)
    }

    @Test(arguments: Backend.allCases)
    func reject_sendsTheMessageToTheDeadLetterTopicAtOnce(_ backend: Backend) async throws {
        let queue = try await backend.makeQueue()
        let topic = try await queue.createTopic("orders", of: Order.self, configuration: backend.configure())
        let billing = try await topic.subscription("billing")
        try await topic.publish(Order(id: 1))
        try await #require(try await billing.receive().first).reject(reason: "malformed order")
        let deadLetters = try await queue.topic("orders.dlq", of: Order.self).existingSubscription("dead-letters")
        let dead = try #require(try await deadLetters.receive().first)
        #expect(dead.message.headers[MessageHeader.lastError] == "malformed order")
        #expect(dead.message.headers[MessageHeader.deadLetterReason] == "rejected")
    }

    @Test(arguments: Backend.allCases)
    func deadLetterTopic_canBeSubscribedToLikeAnyTopic(_ backend: Backend) async throws {
        let queue = try await backend.makeQueue()
        let topic = try await queue.createTopic("orders", of: Order.self, configuration: backend.configure())
        let alerts = try await queue.topic("orders.dlq", of: Order.self).subscribe()
        let billing = try await topic.subscription("billing")
        try await topic.publish(Order(id: 5))
        try await #require(try await billing.receive().first).reject(reason: "no")
        #expect(try await collect(1, from: alerts).map(\.payload.id) == [5])
    }

    @Test(arguments: Backend.allCases)
    func redrive_movesDeadLettersBackToTheirSubscription_withAFreshAttemptCount(_ backend: Backend) async throws {
        let queue = try await backend.makeQueue()
        let topic = try await queue.createTopic("orders", of: Order.self, configuration: backend.configure())
        let billing = try await topic.subscription("billing")
        let shipping = try await topic.subscription("shipping", acknowledgement: .automatic)
        try await topic.publish(contentsOf: [Order(id: 1), Order(id: 2)])
        for delivery in try await billing.receive(max: 10) { try await delivery.reject(reason: "bug") }
        #expect(try await shipping.receive(max: 10).count == 2)
        let moved = try await queue.redrive(from: "orders.dlq")
        #expect(moved == 2)
        let redriven = try await billing.receive(max: 10)
        #expect(redriven.map(\.message.payload.id) == [1, 2])
        #expect(redriven.allSatisfy { $0.attempt == 1 && $0.message.headers[MessageHeader.sourceTopic] == nil })
        #expect(try await shipping.receive().isEmpty, "redrive goes to the source subscription only")
        for delivery in redriven { try await delivery.ack() }
        let deadLetters = try await queue.topic("orders.dlq", of: Order.self).existingSubscription("dead-letters")
        #expect(try deadLetters.statistics().depth == 0)
        #expect(try billing.statistics().isBalanced)
        #expect(try deadLetters.statistics().isBalanced)
    }

    @Test(arguments: Backend.allCases)
    func redrive_keepsMessagesWhoseSourceSubscriptionIsGone(_ backend: Backend) async throws {
        let queue = try await backend.makeQueue()
        let topic = try await queue.createTopic("orders", of: Order.self, configuration: backend.configure())
        let billing = try await topic.subscription("billing")
        try await topic.publish(Order(id: 1))
        try await #require(try await billing.receive().first).reject(reason: "bug")
        try await topic.unsubscribe("billing")
        #expect(try await queue.redrive(from: "orders.dlq") == 0)
        let deadLetters = try await queue.topic("orders.dlq", of: Order.self).existingSubscription("dead-letters")
        #expect(try deadLetters.statistics().depth == 1)
        #expect(try deadLetters.statistics().isBalanced)
    }

    @Test(arguments: Backend.allCases)
    func disabledDeadLetters_rejectDiscardsAndCounts(_ backend: Backend) async throws {
        let queue = try await backend.makeQueue()
        let topic = try await queue.createTopic(
            "t", of: Int.self, configuration: backend.configure(.init(deadLetter: .disabled)))
        let work = try await topic.subscription("w")
        try await topic.publish(1)
        try await #require(try await work.receive().first).reject(reason: "bad")
        #expect(await queue.topicNames() == ["t"])
        #expect(try work.statistics().counters.deadLettered == 1)
        #expect(topic.deadLetterTopicName == nil)
    }
}

@Suite("Bounded topics: every overflow policy")
struct OverflowTests {
    @Test(arguments: Backend.allCases)
    func suspend_blocksThePublisher_untilAnAckMakesRoom(_ backend: Backend) async throws {
        let queue = try await backend.makeQueue()
        let topic = try await queue.createTopic(
            "b", of: Int.self, configuration: backend.configure(.init(capacity: 2, overflow: .suspend)))
        let work = try await topic.subscription("w")
        try await topic.publish(contentsOf: [1, 2])
        let blocked = Task { try await topic.publish(3) }
        try await eventually("the publisher to wait") { topic.statistics().suspendedPublishers == 1 }
        #expect(topic.statistics().published == 2, "the third publish must wait")
        let first = try #require(try await work.receive(max: 1).first)
        try await first.ack()
        _ = try await withTimeout { try await blocked.value }
        #expect(topic.statistics().published == 3)
        #expect(try await work.receive(max: 10).map(\.message.payload) == [2, 3])
    }

    @Test(arguments: Backend.allCases)
    func suspend_waitingPublishersGoInOrder(_ backend: Backend) async throws {
        let queue = try await backend.makeQueue()
        let topic = try await queue.createTopic(
            "b", of: Int.self, configuration: backend.configure(.init(capacity: 1, overflow: .suspend)))
        let stream = try await topic.subscribe(prefetch: 1)
        try await topic.publish(0)
        var publishers: [Task<Void, any Error>] = []
        for value in 1...5 {
            publishers.append(Task { try await topic.publish(value) })
            try await eventually("publisher \(value) to wait") { topic.statistics().suspendedPublishers == value }
        }
        let received = try await collect(6, from: stream).map(\.payload)
        #expect(received == [0, 1, 2, 3, 4, 5])
        for publisher in publishers { try await publisher.value }
    }

    @Test(arguments: Backend.allCases)
    func suspend_cancelledPublisher_throwsAndPublishesNothing(_ backend: Backend) async throws {
        let queue = try await backend.makeQueue()
        let topic = try await queue.createTopic(
            "b", of: Int.self, configuration: backend.configure(.init(capacity: 1, overflow: .suspend)))
        let work = try await topic.subscription("w")
        try await topic.publish(1)
        let blocked = Task { try await topic.publish(2) }
        try await eventually("the publisher to wait") { topic.statistics().suspendedPublishers == 1 }
        blocked.cancel()
        await #expect(throws: CancellationError.self) { try await withTimeout { try await blocked.value } }
        #expect(topic.statistics().suspendedPublishers == 0)
        try await #require(try await work.receive().first).ack()
        try await topic.publish(3)
        #expect(try await work.receive(max: 10).map(\.message.payload) == [3])
    }

    @Test func reject_throwsTopicFull_andTheTopicKeepsWorking() async throws {
        let queue = makeQueue()
        let topic = try await queue.createTopic("b", of: Int.self, configuration: .init(capacity: 1, overflow: .reject))
        let work = try await topic.subscription("w")
        try await topic.publish(1)
        let error = await #expect(throws: OpenQError.self) { try await topic.publish(2) }
        #expect(error?.code == .topicFull)
        #expect(topic.tryPublish(3).outcome == .rejected)
        try await #require(try await work.receive().first).ack()
        #expect(topic.tryPublish(4).outcome == .enqueued)
        #expect(topic.statistics().rejected == 2)
        #expect(try await work.receive().map(\.message.payload) == [4])
    }

    @Test func dropOldest_and_dropNewest_countEveryDrop() async throws {
        let queue = makeQueue()
        let oldest = try await queue.createTopic(
            "o", of: Int.self, configuration: .init(capacity: 3, overflow: .dropOldest))
        let newest = try await queue.createTopic(
            "n", of: Int.self, configuration: .init(capacity: 3, overflow: .dropNewest))
        let o = try await oldest.subscription("s")
        let n = try await newest.subscription("s")
        for value in 1...10 {
            #expect(oldest.tryPublish(value).outcome == .enqueued)
            #expect(newest.tryPublish(value).outcome == (value <= 3 ? .enqueued : .dropped))
        }
        #expect(try await o.receive(max: 10).map(\.message.payload) == [8, 9, 10])
        #expect(try await n.receive(max: 10).map(\.message.payload) == [1, 2, 3])
        #expect(try o.statistics().counters.dropped == 7)
        #expect(try n.statistics().counters.dropped == 7)
        #expect(try o.statistics().isBalanced && n.statistics().isBalanced)
    }

    @Test func slowSubscriberWithItsOwnBound_doesNotBlockAFastOne() async throws {
        let queue = makeQueue()
        let topic = try await queue.createTopic(
            "b", of: Int.self, configuration: .init(capacity: 4, overflow: .suspend))
        let fast = try await topic.subscribe()
        _ = try await topic.subscription(
            "slow", acknowledgement: .manual, backlog: .init(capacity: 2, overflow: .dropOldest))
        let reader = Task { try await collect(100, from: fast).map(\.payload) }
        try await withTimeout {
            for value in 1...100 { try await topic.publish(value) }
        }
        #expect(try await reader.value == Array(1...100))
        let slow = try #require(topic.statistics().subscription("slow"))
        #expect(slow.depth == 2 && slow.counters.dropped == 98)
    }

    @Test func slowSubscriberWithoutItsOwnBound_holdsThePublisherBack() async throws {
        let queue = makeQueue()
        let topic = try await queue.createTopic(
            "b", of: Int.self, configuration: .init(capacity: 4, overflow: .suspend))
        _ = try await topic.subscription("slow")
        for value in 1...4 { #expect(topic.tryPublish(value).outcome == .enqueued) }
        #expect(topic.tryPublish(5).outcome == .rejected, "the default bound applies to every subscription")
    }
}
