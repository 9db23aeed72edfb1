import Foundation
import OpenQTesting
import Testing

@testable import OpenQ

extension HandedMessage {
    /// The typed view the tests read; every message in these tests carries an `Int`.
    var message: Message<Int> { Message(stored) }
}

/// Drives a ``TopicStateMachine`` synchronously: every event, every state, no concurrency.
struct Machine {
    var state: TopicStateMachine
    var now: Duration = .zero
    var deadLetters: [Message<Int>] = []

    init(_ configuration: TopicConfiguration = .init(deadLetter: .after(deliveries: 3), retryBackoff: .immediate)) {
        state = TopicStateMachine(
            topic: "orders",
            configuration: configuration,
            epoch: Date(timeIntervalSince1970: 1_000_000),
            seed: 42
        )
    }

    mutating func collect(_ effects: Effects) {
        deadLetters += effects.deadLetters.map { Message<Int>($0) }
    }

    @discardableResult
    mutating func subscribe(
        _ name: String,
        _ acknowledgement: AcknowledgementMode = .manual(visibilityTimeout: .seconds(30)),
        start: StartPosition = .latest,
        backlog: BacklogLimit? = nil
    ) throws -> SubscriptionID {
        try state.addSubscription(
            name: name,
            configuration: .init(acknowledgement: acknowledgement, start: start, backlog: backlog),
            isAnonymous: false,
            now: now
        ).get()
    }

    /// Publishes one message per request, or the whole batch as one request (one record, as
    /// `Topic.publish(contentsOf:)` does) with `asBatch`.
    @discardableResult
    mutating func publish(
        _ payloads: [Int],
        priority: Int = 0,
        delay: Duration = .zero,
        asBatch: Bool = false
    ) -> PublishDecision {
        let requests =
            asBatch
            ? [PublishRequest(TypedRecord(payloads: payloads, headers: [:], priority: priority), delay: delay)]
            : payloads.map { PublishRequest(TypedRecord(payload: $0, headers: [:], priority: priority), delay: delay) }
        let (decision, effects) = state.publish(requests, now: now)
        collect(effects)
        return decision
    }

    mutating func receive(_ id: SubscriptionID, max: Int = 100, consumer: ConsumerID? = nil) -> [HandedMessage] {
        let (decision, effects) = state.receive(id, consumer: consumer, max: max, canWait: false, now: now)
        collect(effects)
        if case .messages(let batch) = decision { return batch.all }
        return []
    }

    mutating func ack(_ id: SubscriptionID, _ tag: UInt64) -> Result<Void, OpenQError> {
        let (result, effects) = state.ack(id, tag: tag, now: now)
        collect(effects)
        return result
    }

    mutating func nack(_ id: SubscriptionID, _ tag: UInt64, retryAfter: Duration? = nil, error: String? = nil)
        -> Result<Void, OpenQError>
    {
        let (result, effects) = state.nack(id, tag: tag, retryAfter: retryAfter, error: error, now: now)
        collect(effects)
        return result
    }

    mutating func advance(_ duration: Duration) {
        now += duration
        var effects = Effects()
        state.processDue(now: now, effects: &effects)
        collect(effects)
    }

    func statistics(_ name: String) -> SubscriptionStatistics {
        state.statistics(now: now).subscription(name)!
    }

    /// Every message that reached a subscription is accounted for exactly once.
    func checkAccounting(sourceLocation: SourceLocation = #_sourceLocation) {
        for subscription in state.statistics(now: now).subscriptions {
            let counters = subscription.counters
            let settled = counters.acked + counters.deadLettered + counters.dropped + counters.purged
            let held = subscription.depth + subscription.scheduled + subscription.inFlight
            #expect(
                counters.routed == settled + held, "accounting of \(subscription.name)", sourceLocation: sourceLocation)
        }
    }
}

func isFailure<T>(_ result: Result<T, OpenQError>, _ code: OpenQError.Code) -> Bool {
    if case .failure(let error) = result { return error.code == code }
    return false
}

@Suite("Topic state machine: publishing and fan-out")
struct StateMachinePublishingTests {
    @Test func publish_withOneSubscription_deliversInPublishOrder() throws {
        var machine = Machine()
        let id = try machine.subscribe("billing")
        machine.publish([1, 2, 3])
        machine.publish([4])
        #expect(machine.receive(id).map(\.message.payload) == [1, 2, 3, 4])
        #expect(machine.receive(id).map(\.message.sequenceNumber).isEmpty)
        machine.checkAccounting()
    }

    @Test func publish_stampsSequenceNumbersAndUniqueIDs() throws {
        var machine = Machine()
        let id = try machine.subscribe("billing")
        machine.publish([10, 20, 30])
        let batch = machine.receive(id)
        #expect(batch.map(\.message.sequenceNumber) == [1, 2, 3])
        #expect(Set(batch.map(\.message.id)).count == 3)
        #expect(batch.allSatisfy { $0.message.topic == "orders" && $0.attempt == 1 })
    }

    @Test func publish_withNoSubscriptions_countsUnrouted() {
        var machine = Machine()
        machine.publish([1, 2])
        let statistics = machine.state.statistics(now: machine.now)
        #expect(statistics.published == 2)
        #expect(statistics.unrouted == 2)
    }

    @Test func publish_fansOutToEverySubscriptionThatExists() throws {
        var machine = Machine()
        let a = try machine.subscribe("a", .automatic)
        machine.publish([1])
        let b = try machine.subscribe("b", .automatic)
        machine.publish([2])
        #expect(machine.receive(a).map(\.message.payload) == [1, 2])
        #expect(machine.receive(b).map(\.message.payload) == [2])
        machine.checkAccounting()
    }

    @Test func receive_respectsMax_andCompetingReceiversSplitTheBacklog() throws {
        var machine = Machine()
        let id = try machine.subscribe("work")
        machine.publish(Array(1...10))
        let first = machine.receive(id, max: 4, consumer: 1)
        let second = machine.receive(id, max: 100, consumer: 2)
        #expect(first.map(\.message.payload) == [1, 2, 3, 4])
        #expect(second.map(\.message.payload) == [5, 6, 7, 8, 9, 10])
        #expect(machine.statistics("work").inFlight == 10)
        machine.checkAccounting()
    }

    @Test func priorities_higherFirst_fifoWithinALevel() throws {
        var machine = Machine()
        let id = try machine.subscribe("p", .automatic)
        machine.publish([1, 2], priority: 0)
        machine.publish([3, 4], priority: 5)
        machine.publish([5], priority: -1)
        machine.publish([6], priority: 5)
        #expect(machine.receive(id).map(\.message.payload) == [3, 4, 6, 1, 2, 5])
    }

    @Test func delay_hidesTheMessageUntilItIsDue() throws {
        var machine = Machine()
        let id = try machine.subscribe("d", .automatic)
        machine.publish([1], delay: .seconds(10))
        machine.publish([2])
        #expect(machine.receive(id).map(\.message.payload) == [2])
        #expect(machine.statistics("d").scheduled == 1)
        machine.advance(.seconds(9))
        #expect(machine.receive(id).isEmpty)
        machine.advance(.seconds(1))
        #expect(machine.receive(id).map(\.message.payload) == [1])
        machine.checkAccounting()
    }

    @Test func publish_afterShutdownBegan_failsWithShutDown() throws {
        var machine = Machine()
        try machine.subscribe("s")
        _ = machine.state.beginShutdown(deadline: machine.now + .seconds(30))
        guard case .failed(let error) = machine.publish([1]) else {
            Issue.record("publish after shutdown was accepted")
            return
        }
        #expect(error.code == .shutDown)
    }
}

@Suite("Topic state machine: acknowledgement, visibility, redelivery")
struct StateMachineDeliveryTests {
    @Test func ack_removesTheDeliveryForGood() throws {
        var machine = Machine()
        let id = try machine.subscribe("s")
        machine.publish([1])
        let delivery = try #require(machine.receive(id).first)
        #expect(throws: Never.self) { try machine.ack(id, delivery.tag).get() }
        machine.advance(.seconds(60))
        #expect(machine.receive(id).isEmpty)
        #expect(machine.statistics("s").counters.acked == 1)
        machine.checkAccounting()
    }

    @Test func ack_twice_failsWithAlreadySettled() throws {
        var machine = Machine()
        let id = try machine.subscribe("s")
        machine.publish([1])
        let delivery = try #require(machine.receive(id).first)
        _ = machine.ack(id, delivery.tag)
        #expect(isFailure(machine.ack(id, delivery.tag), .receiptAlreadySettled))
        #expect(machine.statistics("s").counters.acked == 1)
    }

    @Test func visibilityTimeout_passing_redeliversWithRaisedAttempt() throws {
        var machine = Machine()
        let id = try machine.subscribe("s", .manual(visibilityTimeout: .seconds(30)))
        machine.publish([1])
        let first = try #require(machine.receive(id).first)
        machine.advance(.seconds(29))
        #expect(machine.receive(id).isEmpty)
        machine.advance(.seconds(1))
        let second = try #require(machine.receive(id).first)
        #expect(second.message.id == first.message.id)
        #expect(second.attempt == 2)
        #expect(second.tag != first.tag)
        let counters = machine.statistics("s").counters
        #expect(counters.expired == 1 && counters.redelivered == 1 && counters.delivered == 2)
        machine.checkAccounting()
    }

    @Test func ack_afterVisibilityExpired_failsWithExpiredReceipt_andLeavesTheRedeliveryAlone() throws {
        var machine = Machine()
        let id = try machine.subscribe("s", .manual(visibilityTimeout: .seconds(5)))
        machine.publish([1])
        let stale = try #require(machine.receive(id, consumer: 1).first)
        machine.advance(.seconds(5))
        let fresh = try #require(machine.receive(id, consumer: 2).first)
        #expect(isFailure(machine.ack(id, stale.tag), .receiptExpired))
        #expect(machine.statistics("s").inFlight == 1, "the other consumer's delivery must survive")
        #expect(throws: Never.self) { try machine.ack(id, fresh.tag).get() }
        machine.checkAccounting()
    }

    @Test func ack_atTheDeadlineBeforeTheTimerFired_isExpired() throws {
        var machine = Machine()
        let id = try machine.subscribe("s", .manual(visibilityTimeout: .seconds(5)))
        machine.publish([1])
        let delivery = try #require(machine.receive(id).first)
        machine.now += .seconds(5)  // no processDue: the timer has not run yet
        #expect(isFailure(machine.ack(id, delivery.tag), .receiptExpired))
        #expect(machine.statistics("s").depth == 1, "the expired message is visible again")
        machine.checkAccounting()
    }

    @Test func extendVisibility_postponesRedelivery() throws {
        var machine = Machine()
        let id = try machine.subscribe("s", .manual(visibilityTimeout: .seconds(10)))
        machine.publish([1])
        let delivery = try #require(machine.receive(id).first)
        machine.advance(.seconds(8))
        let (result, _) = machine.state.extendVisibility(id, tag: delivery.tag, by: .seconds(20), now: machine.now)
        #expect(throws: Never.self) { try result.get() }
        machine.advance(.seconds(19))
        #expect(machine.receive(id).isEmpty)
        #expect(throws: Never.self) { try machine.ack(id, delivery.tag).get() }
        machine.checkAccounting()
    }

    @Test func extendVisibility_byZero_failsWithInvalidConfiguration() throws {
        var machine = Machine()
        let id = try machine.subscribe("s")
        machine.publish([1])
        let delivery = try #require(machine.receive(id).first)
        let (result, _) = machine.state.extendVisibility(id, tag: delivery.tag, by: .zero, now: machine.now)
        #expect(isFailure(result, .invalidConfiguration))
        #expect(machine.statistics("s").inFlight == 1)
    }

    @Test func nack_withRetryAfter_redeliversOnlyAfterTheDelay() throws {
        var machine = Machine()
        let id = try machine.subscribe("s")
        machine.publish([1])
        let delivery = try #require(machine.receive(id).first)
        _ = machine.nack(id, delivery.tag, retryAfter: .seconds(3))
        #expect(machine.receive(id).isEmpty)
        #expect(machine.statistics("s").scheduled == 1)
        machine.advance(.seconds(3))
        #expect(machine.receive(id).map(\.attempt) == [2])
        #expect(machine.statistics("s").counters.nacked == 1)
        machine.checkAccounting()
    }

    @Test func nack_withoutRetryAfter_usesTheTopicsExponentialBackoff() throws {
        let backoff = RetryBackoff.exponential(initial: .seconds(1), maximum: .seconds(4), multiplier: 2, jitter: 0)
        var machine = Machine(.init(deadLetter: .after(deliveries: 10), retryBackoff: backoff))
        let id = try machine.subscribe("s")
        machine.publish([1])
        for expectedDelay in [1, 2, 4, 4] {
            let delivery = try #require(machine.receive(id).first)
            _ = machine.nack(id, delivery.tag)
            machine.advance(.seconds(expectedDelay) - .milliseconds(1))
            #expect(machine.receive(id).isEmpty, "visible before its \(expectedDelay) s backoff")
            machine.advance(.milliseconds(1))
        }
        #expect(machine.receive(id).first?.attempt == 5)
    }

    @Test func backoff_jitter_staysWithinItsBounds() {
        let backoff = RetryBackoff.exponential(initial: .seconds(1), maximum: .seconds(60), multiplier: 2, jitter: 0.5)
        var random = SplitMix64(seed: 7)
        for attempts in 1...10 {
            let base = min(pow(2, Double(attempts - 1)), 60)
            let delay = backoff.delay(afterAttempts: attempts, random: random.nextUnit()).seconds
            #expect(delay >= base * 0.5 && delay <= base * 1.5)
        }
    }

    @Test func maxDeliveries_reached_deadLettersWithHeaders() throws {
        var machine = Machine()  // maxDeliveries 3
        let id = try machine.subscribe("billing")
        machine.publish([42])
        for attempt in 1...3 {
            let delivery = try #require(machine.receive(id).first)
            #expect(delivery.attempt == attempt)
            _ = machine.nack(id, delivery.tag, error: "card declined \(attempt)")
        }
        #expect(machine.receive(id).isEmpty)
        let dead = try #require(machine.deadLetters.first)
        #expect(dead.payload == 42)
        #expect(dead.headers[MessageHeader.sourceTopic] == "orders")
        #expect(dead.headers[MessageHeader.sourceSubscription] == "billing")
        #expect(dead.headers[MessageHeader.attempts] == "3")
        #expect(dead.headers[MessageHeader.lastError] == "card declined 3")
        #expect(dead.headers[MessageHeader.deadLetterReason] == "maxDeliveries")
        #expect(dead.headers[MessageHeader.firstPublishedAt] != nil)
        #expect(dead.headers[MessageHeader.deadLetteredAt] != nil)
        #expect(machine.statistics("billing").counters.deadLettered == 1)
        machine.checkAccounting()
    }

    @Test func expiries_countTowardMaxDeliveries() throws {
        var machine = Machine()
        let id = try machine.subscribe("s", .manual(visibilityTimeout: .seconds(1)))
        machine.publish([1])
        for _ in 1...3 {
            #expect(machine.receive(id).count == 1)
            machine.advance(.seconds(1))
        }
        #expect(machine.deadLetters.count == 1)
        #expect(machine.deadLetters.first?.headers[MessageHeader.lastError] == "visibility timeout expired")
        machine.checkAccounting()
    }

    @Test func reject_deadLettersAtOnce_withTheReason() throws {
        var machine = Machine()
        let id = try machine.subscribe("s")
        machine.publish([1])
        let delivery = try #require(machine.receive(id).first)
        let (result, effects) = machine.state.reject(id, tag: delivery.tag, reason: "malformed", now: machine.now)
        #expect(throws: Never.self) { try result.get() }
        let dead = try #require(effects.deadLetters.first)
        #expect(dead.headers[MessageHeader.deadLetterReason] == "rejected")
        #expect(dead.headers[MessageHeader.lastError] == "malformed")
        #expect(dead.headers[MessageHeader.attempts] == "1")
    }

    @Test func automaticMode_isDoneOnHandOver_andSettlingIsANoOp() throws {
        var machine = Machine()
        let id = try machine.subscribe("auto", .automatic)
        machine.publish([1])
        let delivery = try #require(machine.receive(id).first)
        #expect(machine.statistics("auto").counters.acked == 1)
        #expect(machine.statistics("auto").inFlight == 0)
        #expect(throws: Never.self) { try machine.ack(id, delivery.tag).get() }
        machine.advance(.seconds(3600))
        #expect(machine.receive(id).isEmpty)
        machine.checkAccounting()
    }

    @Test func consumerEnded_returnsItsDeliveriesAtOnce_restoringUnhandedAttempts() throws {
        var machine = Machine(.init(deadLetter: .after(deliveries: 5)))
        let id = try machine.subscribe("s")
        let registered = machine.state.registerConsumer(id)
        let consumer = try #require(registered)
        machine.publish([1, 2, 3])
        let batch = machine.receive(id, max: 3, consumer: consumer)
        _ = machine.ack(id, batch[0].tag)  // handled and acked
        // batch[1] was handed to user code, batch[2] never was.
        let effects = machine.state.consumerEnded(id, consumer: consumer, unhanded: [batch[2]], now: machine.now)
        machine.collect(effects)
        let again = machine.receive(id)
        #expect(again.map(\.message.payload).sorted() == [2, 3])
        #expect(again.first { $0.message.payload == 2 }?.attempt == 2)
        #expect(again.first { $0.message.payload == 3 }?.attempt == 1)
        #expect(isFailure(machine.ack(id, batch[1].tag), .receiptExpired))
        machine.checkAccounting()
    }

    @Test func settlingOnARemovedSubscription_failsWithSubscriptionNotFound() throws {
        var machine = Machine()
        let id = try machine.subscribe("s")
        machine.publish([1])
        let delivery = try #require(machine.receive(id).first)
        _ = machine.state.removeSubscription(id, now: machine.now)
        #expect(isFailure(machine.ack(id, delivery.tag), .subscriptionNotFound))
    }
}

/// A batch publish is one record and one run per subscription; these check that every message
/// of it still has its own identity, fate and accounting.
@Suite("Topic state machine: batches stored as one record")
struct StateMachineBatchTests {
    @Test func batch_isStampedTogether_consecutiveIDsAndSequences_oneTime() throws {
        var machine = Machine()
        let id = try machine.subscribe("s", .automatic)
        machine.publish([0])
        machine.now += .seconds(1)
        machine.publish([1, 2, 3], asBatch: true)
        machine.publish([4])
        let messages = machine.receive(id).map(\.message)
        #expect(messages.map(\.payload) == [0, 1, 2, 3, 4])
        #expect(messages.map(\.sequenceNumber) == [1, 2, 3, 4, 5])
        let ids = messages.map(\.id.rawValue)
        #expect(ids[2] == ids[1] + 1 && ids[3] == ids[2] + 1, "a batch's ids are consecutive")
        #expect(Set(ids).count == 5)
        #expect(messages[1...3].allSatisfy { $0.publishedAt == machine.state.date(at: .seconds(1)) })
        #expect(messages[0].publishedAt == machine.state.date(at: .zero))
        machine.checkAccounting()
    }

    @Test func batch_inATrackedSubscription_eachMessageSettlesOnItsOwn() throws {
        var machine = Machine()  // maxDeliveries 3, immediate retries
        let id = try machine.subscribe("s")
        machine.publish([1, 2, 3, 4, 5], asBatch: true)
        let first = machine.receive(id, max: 2)
        #expect(first.map(\.message.payload) == [1, 2], "a take splits the run")
        #expect(Set(first.map(\.tag)).count == 2)
        _ = machine.ack(id, first[0].tag)
        _ = machine.nack(id, first[1].tag)
        let second = machine.receive(id, max: 10)
        #expect(second.map(\.message.payload) == [2, 3, 4, 5], "only the nacked message comes back")
        #expect(second.map(\.attempt) == [2, 1, 1, 1])
        let (result, effects) = machine.state.reject(id, tag: second[2].tag, reason: "bad", now: machine.now)
        machine.collect(effects)
        #expect(throws: Never.self) { try result.get() }
        let dead = try #require(machine.deadLetters.first)
        #expect(dead.payload == 4)
        #expect(dead.id == second[2].message.id, "a dead letter keeps its own message's id")
        #expect(dead.headers[MessageHeader.sourceSequenceNumber] == "4")
        for delivery in second where delivery.message.payload != 4 { _ = machine.ack(id, delivery.tag) }
        let statistics = machine.statistics("s")
        #expect(statistics.counters.acked == 4 && statistics.counters.deadLettered == 1)
        #expect(statistics.depth == 0 && statistics.inFlight == 0)
        machine.checkAccounting()
    }

    @Test func batch_overflowingDropNewest_keepsWhatFits_andCountsTheRest() throws {
        var machine = Machine(.init(capacity: 4, overflow: .dropNewest))
        let id = try machine.subscribe("s", .automatic)
        machine.publish([1, 2])
        guard machine.publish([3, 4, 5, 6], asBatch: true).accepted == .dropped else {
            Issue.record("dropNewest did not report the drop")
            return
        }
        #expect(machine.receive(id).map(\.message.payload) == [1, 2, 3, 4])
        #expect(machine.statistics("s").counters.dropped == 2)
        machine.checkAccounting()
    }

    @Test func batch_overflowingDropOldest_dropsTheOldestEvenFromItsOwnRun() throws {
        var machine = Machine(.init(capacity: 3, overflow: .dropOldest))
        let id = try machine.subscribe("s", .automatic)
        machine.publish([1, 2], asBatch: true)
        machine.publish([3, 4, 5, 6], asBatch: true)
        #expect(machine.receive(id).map(\.message.payload) == [4, 5, 6])
        #expect(machine.statistics("s").counters.dropped == 3)
        machine.checkAccounting()
    }

    @Test func batch_withADelay_staysHiddenUntilDue_thenKeepsItsOrder() throws {
        var machine = Machine()
        let id = try machine.subscribe("s", .automatic)
        machine.publish([1, 2, 3], delay: .seconds(5), asBatch: true)
        #expect(machine.receive(id).isEmpty)
        #expect(machine.statistics("s").scheduled == 3)
        machine.advance(.seconds(5))
        #expect(machine.receive(id).map(\.message.payload) == [1, 2, 3])
        machine.checkAccounting()
    }

    @Test func batch_fansOut_andReplaysFromASequenceNumberInsideIt() throws {
        var machine = Machine(.init(retention: .count(100)))
        let a = try machine.subscribe("a", .automatic)
        let b = try machine.subscribe("b")
        machine.publish([1, 2, 3, 4], asBatch: true)
        let fromThree = try machine.subscribe("c", .automatic, start: .sequenceNumber(3))
        #expect(machine.receive(a).map(\.message.payload) == [1, 2, 3, 4])
        #expect(machine.receive(b).map(\.message.payload) == [1, 2, 3, 4])
        #expect(machine.receive(fromThree).map(\.message.payload) == [3, 4])
        machine.checkAccounting()
    }

    @Test func batch_rejectedWhole_whenItDoesNotFit_countsEveryMessage() throws {
        var machine = Machine(.init(capacity: 3, overflow: .reject))
        let id = try machine.subscribe("s", .automatic)
        machine.publish([1])
        guard case .failed = machine.publish([2, 3, 4], asBatch: true) else {
            Issue.record("a partly fitting batch was accepted")
            return
        }
        #expect(machine.state.statistics(now: machine.now).rejected == 3)
        #expect(machine.receive(id).map(\.message.payload) == [1])
    }
}

@Suite("Topic state machine: bounded topics and overflow")
struct StateMachineOverflowTests {
    @Test func reject_whenFull_failsWithTopicFull_andEnqueuesNothing() throws {
        var machine = Machine(.init(capacity: 2, overflow: .reject))
        let id = try machine.subscribe("s", .automatic)
        machine.publish([1, 2])
        guard case .failed(let error) = machine.publish([3]) else {
            Issue.record("a full topic under reject accepted a message")
            return
        }
        #expect(error.code == .topicFull)
        #expect(machine.state.statistics(now: machine.now).rejected == 1)
        #expect(machine.receive(id).map(\.message.payload) == [1, 2])
        machine.checkAccounting()
    }

    @Test func reject_batchThatDoesNotFitWhole_isRejectedWhole() throws {
        var machine = Machine(.init(capacity: 3, overflow: .reject))
        let id = try machine.subscribe("s", .automatic)
        machine.publish([1, 2])
        guard case .failed = machine.publish([3, 4]) else {
            Issue.record("a partly fitting batch was accepted")
            return
        }
        #expect(machine.receive(id).map(\.message.payload) == [1, 2])
    }

    @Test func dropNewest_whenFull_dropsAndCountsTheNewMessage() throws {
        var machine = Machine(.init(capacity: 2, overflow: .dropNewest))
        let id = try machine.subscribe("s", .automatic)
        machine.publish([1, 2])
        guard machine.publish([3]).accepted == .dropped else {
            Issue.record("dropNewest did not report the drop")
            return
        }
        #expect(machine.receive(id).map(\.message.payload) == [1, 2])
        #expect(machine.statistics("s").counters.dropped == 1)
        machine.checkAccounting()
    }

    @Test func dropOldest_whenFull_dropsTheOldestWaitingMessage() throws {
        var machine = Machine(.init(capacity: 2, overflow: .dropOldest))
        let id = try machine.subscribe("s", .automatic)
        machine.publish([1, 2, 3, 4])
        #expect(machine.receive(id).map(\.message.payload) == [3, 4])
        #expect(machine.statistics("s").counters.dropped == 2)
        machine.checkAccounting()
    }

    @Test func dropOldest_neverDropsInFlightDeliveries() throws {
        var machine = Machine(.init(capacity: 2, overflow: .dropOldest))
        let id = try machine.subscribe("s")
        machine.publish([1, 2])
        let inFlight = machine.receive(id)
        #expect(inFlight.count == 2)
        guard machine.publish([3]).accepted == .dropped else {
            Issue.record("a topic full of in-flight messages took a new one past its bound")
            return
        }
        for delivery in inFlight { #expect(throws: Never.self) { try machine.ack(id, delivery.tag).get() } }
        machine.checkAccounting()
    }

    @Test func suspend_whenFull_mustWait_andAckMakesRoom() throws {
        var machine = Machine(.init(capacity: 1, overflow: .suspend))
        let id = try machine.subscribe("s")
        machine.publish([1])
        guard case .mustWait = machine.publish([2]) else {
            Issue.record("a full topic under suspend did not ask the publisher to wait")
            return
        }
        let delivery = try #require(machine.receive(id).first)
        _ = machine.ack(id, delivery.tag)
        guard machine.publish([3]).accepted == .enqueued else {
            Issue.record("room was not made by the ack")
            return
        }
    }

    @Test func suspend_batchLargerThanCapacity_failsWithInvalidConfiguration() throws {
        var machine = Machine(.init(capacity: 2, overflow: .suspend))
        try machine.subscribe("s")
        guard case .failed(let error) = machine.publish([1, 2, 3]) else {
            Issue.record("an impossible batch was asked to wait forever")
            return
        }
        #expect(error.code == .invalidConfiguration)
    }

    @Test func subscriptionOverride_letsASlowSubscriberShedInsteadOfBlocking() throws {
        var machine = Machine(.init(capacity: 2, overflow: .suspend))
        let fast = try machine.subscribe("fast", .automatic)
        let slow = try machine.subscribe("slow", .automatic, backlog: .init(capacity: 1, overflow: .dropOldest))
        for value in 1...6 {
            guard case .accepted = machine.publish([value]) else {
                Issue.record("the slow subscriber blocked the publisher at \(value)")
                return
            }
            #expect(machine.receive(fast).map(\.message.payload) == [value])
        }
        #expect(machine.receive(slow).map(\.message.payload) == [6])
        #expect(machine.statistics("slow").counters.dropped == 5)
        machine.checkAccounting()
    }

    @Test func tryPublish_underSuspendWhenFull_reportsRejected() throws {
        var machine = Machine(.init(capacity: 1, overflow: .suspend))
        try machine.subscribe("s")
        #expect(
            machine.state.tryPublish(PublishRequest(TypedRecord(payload: 1, headers: [:], priority: 0)), now: .zero).0
                .outcome
                == .enqueued)
        #expect(
            machine.state.tryPublish(PublishRequest(TypedRecord(payload: 2, headers: [:], priority: 0)), now: .zero).0
                .outcome
                == .rejected)
        #expect(machine.state.statistics(now: .zero).published == 1)
    }
}

@Suite("Topic state machine: replay, seek, purge")
struct StateMachineReplayTests {
    @Test func replay_fromEarliest_sequence_andTime() throws {
        var machine = Machine(.init(retention: .count(100)))
        machine.publish([1, 2])
        machine.now += .seconds(10)
        machine.publish([3, 4])
        let earliest = try machine.subscribe("earliest", .automatic, start: .earliest)
        let fromSequence = try machine.subscribe("seq", .automatic, start: .sequenceNumber(2))
        let fromTime = try machine.subscribe(
            "time", .automatic, start: .time(machine.state.date(at: .seconds(10))))
        let latest = try machine.subscribe("latest", .automatic)
        machine.publish([5])
        #expect(machine.receive(earliest).map(\.message.payload) == [1, 2, 3, 4, 5])
        #expect(machine.receive(fromSequence).map(\.message.payload) == [2, 3, 4, 5])
        #expect(machine.receive(fromTime).map(\.message.payload) == [3, 4, 5])
        #expect(machine.receive(latest).map(\.message.payload) == [5])
        machine.checkAccounting()
    }

    @Test func retention_byCount_keepsTheLatest() throws {
        var machine = Machine(.init(retention: .count(2)))
        machine.publish([1, 2, 3])
        let id = try machine.subscribe("s", .automatic, start: .earliest)
        #expect(machine.receive(id).map(\.message.payload) == [2, 3])
    }

    @Test func retention_byAge_forgetsOldMessages() throws {
        var machine = Machine(.init(retention: .age(.seconds(60))))
        machine.publish([1])
        machine.now += .seconds(61)
        machine.publish([2])
        let id = try machine.subscribe("s", .automatic, start: .earliest)
        #expect(machine.receive(id).map(\.message.payload) == [2])
    }

    @Test func seek_backwards_replaysRetainedMessages() throws {
        var machine = Machine(.init(retention: .count(10)))
        let id = try machine.subscribe("s", .automatic)
        machine.publish([1, 2, 3])
        #expect(machine.receive(id).count == 3)
        let (result, _) = machine.state.seek(id, to: .sequenceNumber(2), now: machine.now)
        #expect(try result.get() == 2)
        #expect(machine.receive(id).map(\.message.payload) == [2, 3])
        machine.checkAccounting()
    }

    @Test func purge_subscription_countsWaitingDelayedAndInFlight() throws {
        var machine = Machine()
        let id = try machine.subscribe("s")
        machine.publish([1, 2])
        machine.publish([3], delay: .seconds(5))
        let delivery = try #require(machine.receive(id, max: 1).first)
        let (result, _) = machine.state.purge(id, now: machine.now)
        #expect(try result.get() == 3)
        #expect(isFailure(machine.ack(id, delivery.tag), .receiptExpired))
        machine.advance(.seconds(10))
        #expect(machine.receive(id).isEmpty)
        #expect(machine.statistics("s").counters.purged == 3)
        machine.checkAccounting()
    }

    @Test func removeSubscription_purgesItsBacklog_andKeepsTopicTotals() throws {
        var machine = Machine()
        let id = try machine.subscribe("s")
        machine.publish([1, 2])
        _ = machine.state.removeSubscription(id, now: machine.now)
        let totals = machine.state.statistics(now: machine.now).totals
        #expect(totals.routed == 2 && totals.purged == 2)
    }

    @Test func addSubscription_sameNameOtherConfiguration_fails() throws {
        var machine = Machine()
        try machine.subscribe("s", .manual(visibilityTimeout: .seconds(5)))
        #expect(throws: OpenQError.self) { try machine.subscribe("s", .automatic) }
        #expect(throws: Never.self) { try machine.subscribe("s", .manual(visibilityTimeout: .seconds(5))) }
    }
}

@Suite("Topic state machine: shutdown waiters")
struct StateMachineShutdownTests {
    @Test func idleWaiter_cancelledBeforeItIsStored_isResumedAtOnce() async throws {
        var machine = Machine()
        let id = try machine.subscribe("s")
        _ = machine.state.registerConsumer(id)
        machine.publish([1])  // a waiting message and a consumer that could take it: not idle
        _ = machine.state.beginShutdown(deadline: machine.now + .seconds(30))
        // The cancellation handler runs first, before the waiter is stored.
        let early = machine.state.cancelIdleWaiter(7)
        #expect(early == nil)
        var storedForever = false
        await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
            if machine.state.addIdleWaiter(7, continuation) {
                continuation.resume()
            } else {
                storedForever = true
                machine.state.cancelIdleWaiter(7)?.resume()  // keep the test from hanging
            }
        }
        #expect(!storedForever, "a waiter cancelled before it was stored must not wait")
    }

    @Test func idleWaiter_cancelledAfterItIsStored_isHandedBack() async throws {
        var machine = Machine()
        let id = try machine.subscribe("s")
        _ = machine.state.registerConsumer(id)
        machine.publish([1])
        _ = machine.state.beginShutdown(deadline: machine.now + .seconds(30))
        var handedBack = false
        await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
            let resumeNow = machine.state.addIdleWaiter(8, continuation)
            #expect(!resumeNow, "not idle: the waiter is stored")
            if let stored = machine.state.cancelIdleWaiter(8) {
                handedBack = true
                stored.resume()
            }
        }
        #expect(handedBack)
    }
}

@Suite("ReadyQueue: runs, priority levels and batch takes")
struct ReadyQueueTests {
    /// A run of the given payloads, as one batch publish at `priority` queues it.
    func run(_ payloads: [Int], priority: Int = 0) -> MessageRun {
        MessageRun(TypedRecord(payloads: payloads, headers: [:], priority: priority), 0..<payloads.count)
    }

    func payloads(_ runs: some Sequence<MessageRun>) -> [Int] {
        runs.flatMap(\.messages).map { Message<Int>($0).payload }
    }

    @Test func take_movesASingleLevelOutWhole_andKeepsWorkingAfterwards() {
        var queue = ReadyQueue()
        queue.append(run([1, 2, 3]))
        queue.append(run([4, 5]))
        let taken = queue.take(upTo: 10)
        #expect(payloads(taken.runs) == [1, 2, 3, 4, 5] && taken.count == 5)
        #expect(taken.runs.count == 2, "runs are moved, not split into messages")
        #expect(queue.count == 0)
        queue.append(run([6]))
        #expect(payloads(queue.take(upTo: 10).runs) == [6])
        #expect(queue.take(upTo: 10).runs.isEmpty)
    }

    @Test func take_respectsMax_splittingARun_andPriorityOrder_acrossLevels() {
        var queue = ReadyQueue()
        queue.append(run([1, 2, 3]))
        queue.append(run([10, 11], priority: 5))
        queue.append(run([20], priority: -1))
        let first = queue.take(upTo: 4)
        #expect(payloads(first.runs) == [10, 11, 1, 2] && first.count == 4)
        #expect(queue.count == 2)
        let second = queue.take(upTo: 4)
        #expect(payloads(second.runs) == [3, 20] && second.count == 2)
        #expect(queue.count == 0)
    }

    @Test func popFirst_andPopLeastUrgent_takeSingleMessagesOutOfRuns() {
        var queue = ReadyQueue()
        queue.append(run([1, 2, 3], priority: 1))
        queue.append(run([7, 8]))
        #expect(queue.popFirst().map { Message<Int>($0).payload } == 1)
        #expect(queue.popLeastUrgent().map { Message<Int>($0).payload } == 7)
        #expect(queue.heads.map { Message<Int>($0).payload } == [2, 8])
        #expect(queue.count == 3)
        #expect(payloads(queue.take(upTo: 10).runs) == [2, 3, 8])
        #expect(queue.popFirst() == nil && queue.popLeastUrgent() == nil)
    }
}
