import Foundation
import OpenQTesting
import Testing

@testable import OpenQ

/// The edges the issue "The core as users meet it" found, at the state machine, event by state.
@Suite("Topic state machine: edges (fates, priorities, time order, shutdown races)")
struct StateMachineEdgeTests {
    @Test func settle_afterMoreThan4096ReceiptsWerePurged_answersReceiptExpired() throws {
        var machine = Machine(.init(capacity: 10_000, deadLetter: .after(deliveries: 3), retryBackoff: .immediate))
        let id = try machine.subscribe("s")
        machine.publish(Array(0..<5_000))
        let taken = machine.receive(id, max: 5_000)
        #expect(taken.count == 5_000)
        let (purged, _) = machine.state.purge(id, now: machine.now)
        #expect(try purged.get() == 5_000)
        var codes: [OpenQError.Code: Int] = [:]
        for handed in taken {
            if case .failure(let error) = machine.ack(id, handed.tag) { codes[error.code, default: 0] += 1 }
        }
        #expect(codes == [.receiptExpired: 5_000])
    }

    @Test func settle_afterMoreThan4096ReceiptsExpired_answersReceiptExpired() throws {
        var machine = Machine(.init(capacity: 10_000, deadLetter: .disabled, retryBackoff: .immediate))
        let id = try machine.subscribe("s", .manual(visibilityTimeout: .seconds(1)))
        machine.publish(Array(0..<5_000))
        let taken = machine.receive(id, max: 5_000)
        machine.advance(.seconds(2))
        #expect(machine.statistics("s").counters.expired == 5_000)
        let expired = taken.filter { isFailure(machine.ack(id, $0.tag), .receiptExpired) }
        #expect(expired.count == 5_000)
        // The redeliveries are live and settle normally; a second ack says "already settled".
        let again = machine.receive(id, max: 5_000)
        #expect(again.count == 5_000)
        #expect(again.allSatisfy { (try? machine.ack(id, $0.tag).get()) != nil })
        #expect(again.allSatisfy { isFailure(machine.ack(id, $0.tag), .receiptAlreadySettled) })
    }

    @Test func receiptFates_keepRunsNotTags_andForgetTheOldestRunBeyondTheirCapacity() {
        var fates = ReceiptFates()
        for tag in UInt64(1)...10_000 { fates.record(.purged, tag: tag) }
        #expect(fates.runs.count == 1)
        fates.record(.expired, tag: 10_002)
        fates.record(.expired, tag: 10_001)  // joins the run after it
        #expect(fates.runs.count == 2)
        #expect(fates.fate(of: 1) == .purged && fates.fate(of: 10_001) == .expired)
        #expect(fates.fate(of: 10_003) == nil)
        // Alternating fates cannot merge: beyond the capacity the oldest runs are forgotten.
        var scattered = ReceiptFates()
        for tag in stride(from: UInt64(1), through: UInt64(2 * ReceiptFates.capacity + 10), by: 2) {
            scattered.record(.expired, tag: tag)
        }
        #expect(scattered.runs.count == ReceiptFates.capacity)
        #expect(scattered.fate(of: 1) == nil)
        #expect(scattered.fate(of: UInt64(2 * ReceiptFates.capacity + 9)) == .expired)
    }

    @Test func readyQueue_dropsPriorityLevelsThatRanEmpty() throws {
        var machine = Machine()
        let id = try machine.subscribe("s", .automatic)
        for round in 0..<4 {
            for priority in 0..<500 { machine.publish([priority], priority: round * 1_000 + priority) }
            #expect(machine.receive(id, max: 10_000).count == 500)
            #expect(machine.state.subscriptions[0].ready.levelCount <= 1, "round \(round)")
        }
        // Popping one message at a time empties levels too.
        for priority in 0..<50 { machine.publish([priority], priority: priority) }
        for _ in 0..<50 { #expect(machine.receive(id, max: 1).count == 1) }
        #expect(machine.state.subscriptions[0].ready.levelCount <= 1)
    }

    @Test func readyQueue_stillDeliversHigherPrioritiesFirst_afterLevelsCameAndWent() throws {
        var machine = Machine()
        let id = try machine.subscribe("s", .automatic)
        machine.publish([1], priority: 1)
        #expect(machine.receive(id, max: 1).map(\.message.payload) == [1])
        machine.publish([10], priority: 0)
        machine.publish([30], priority: 3)
        machine.publish([20], priority: 2)
        machine.publish([31], priority: 3)
        #expect(machine.receive(id, max: 10).map(\.message.payload) == [30, 31, 20, 10])
    }

    @Test func publish_withAnEarlierClockReading_neverStampsAnEarlierTime() throws {
        var machine = Machine()
        let id = try machine.subscribe("s", .automatic)
        machine.now = .seconds(5)
        machine.publish([1])
        machine.now = .seconds(3)  // this publisher read the clock before the first took the lock
        machine.publish([2])
        let messages = machine.receive(id).map(\.message)
        #expect(messages.map(\.sequenceNumber) == [1, 2])
        #expect(messages[1].publishedAt >= messages[0].publishedAt)
    }

    @Test func receive_reservedThenTopicFinished_endsAsFinishedNotCancelled() async throws {
        var machine = Machine()
        let id = try machine.subscribe("s")
        let (decision, _) = machine.state.receive(id, consumer: nil, max: 1, now: machine.now)
        guard case .mustWait(let waiter) = decision else {
            Issue.record("expected to wait")
            return
        }
        _ = machine.state.finish()
        _ = machine.state.receiveCancelled(id, waiter: waiter)  // the shutdown also cancelled the task
        let result = await withUnsafeContinuation { (continuation: UnsafeContinuation<WakeResult, Never>) in
            let effects = machine.state.receiveSuspended(
                id, waiter: waiter, consumer: nil, max: 1, pollDeadline: nil, continuation: continuation,
                now: machine.now)
            effects.resumeAll()
        }
        guard case .finished = result else {
            Issue.record("a receive racing shutdown ended as \(result), not as finished")
            return
        }
    }

    @Test func publisher_reservedThenShutdownBegan_failsWithShutDownNotCancellation() async throws {
        var machine = Machine(.init(capacity: 1, deadLetter: .disabled))
        try machine.subscribe("s")
        machine.publish([1])
        guard case .mustWait(let publisher) = machine.publish([2]) else {
            Issue.record("expected to wait for room")
            return
        }
        _ = machine.state.beginShutdown(deadline: machine.now + .seconds(1))
        _ = machine.state.publishCancelled(publisher)
        let request = PublishRequest(TypedRecord(payload: 2, headers: [:], priority: 0))
        do {
            _ = try await withUnsafeThrowingContinuation {
                (continuation: UnsafeContinuation<PublishReceipt, any Error>) in
                machine.state.publishSuspended(
                    publisher, requests: [request], continuation: continuation, now: machine.now
                )
                .resumeAll()
            }
            Issue.record("the publish was accepted after shutdown began")
        } catch {
            #expect((error as? OpenQError)?.code == .shutDown, "got \(error)")
        }
    }

    @Test func extendLeases_afterTheTopicFinished_armsNoTimer() throws {
        var machine = Machine()
        let id = try machine.subscribe("s")
        let registered = machine.state.registerConsumer(id)
        let consumer = try #require(registered)
        machine.publish([1])
        _ = machine.receive(id, consumer: consumer)
        _ = machine.state.finish()
        machine.now += .seconds(20)
        let effects = machine.state.extendLeases(id, consumer: consumer, maximum: .seconds(600), now: machine.now)
        #expect(effects.armTimer == nil)
    }

    @Test func idle_whileDraining_ignoresSubscriptionsWithoutConsumers() throws {
        var machine = Machine()
        let id = try machine.subscribe("unread")
        machine.publish([1, 2])
        _ = machine.state.beginShutdown(deadline: machine.now + .seconds(3))
        #expect(machine.state.isIdle, "nobody could drain 'unread'")
        _ = machine.state.registerConsumer(id)
        #expect(!machine.state.isIdle, "a consumer could take what waits")
    }

    @Test func idle_whileDraining_waitsForARetryDueWithinTheGracePeriod_only() throws {
        var machine = Machine()
        let id = try machine.subscribe("s")
        let registered = machine.state.registerConsumer(id)
        let consumer = try #require(registered)
        machine.publish([1, 2])
        let taken = machine.receive(id, max: 2, consumer: consumer)
        _ = machine.nack(id, taken[0].tag, retryAfter: .seconds(2))
        _ = machine.nack(id, taken[1].tag, retryAfter: .seconds(60))
        _ = machine.state.beginShutdown(deadline: machine.now + .seconds(5))
        #expect(!machine.state.isIdle, "a retry due in 2 s, within the 5 s grace period")
        machine.advance(.seconds(2))
        let retried = machine.receive(id, consumer: consumer)
        #expect(retried.map(\.message.payload) == [1])
        _ = machine.ack(id, retried[0].tag)
        #expect(machine.state.isIdle, "the other retry is due after the grace period")
    }
}
