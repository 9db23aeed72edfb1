import Foundation
import OpenQTesting
import Testing

@testable import OpenQ

@Suite("Topic state machine: time order and shutdown races")
struct StateMachineRaceTests {
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
            effects.resumeConsumersAndPublishers()
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
                .resumeConsumersAndPublishers()
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
