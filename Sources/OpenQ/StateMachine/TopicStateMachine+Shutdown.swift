// State machine events of shutdown: begin, idle waiters, finish.

import DequeModule
import HeapModule

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Shutdown: draining (publishes refused, consumers go on until idle or the grace period ends)
/// and finishing.
extension TopicStateMachine {
    // MARK: Shutdown

    /// Stops accepting publishes; publishers waiting for room fail with `shutDown`. Consumers
    /// keep receiving and settling until the topic is idle or `deadline` (the end of the grace
    /// period) passes.
    mutating func beginShutdown(deadline: Duration) -> Effects {
        var effects = Effects()
        guard isOpen else { return effects }
        lifecycle = .draining(DrainState(deadline: deadline))
        failBlockedPublishers(effects: &effects)
        return effects
    }

    mutating func failBlockedPublishers(effects: inout Effects) {
        while let publisher = blockedPublishers.popFirst() {
            effects.resumePublisher(publisher.continuation, with: .failure(OpenQError.shutDown("Topic '\(topic)'")))
        }
        // Reserved publishers fail in their second phase, which checks the lifecycle first.
    }

    /// True when a draining topic has nothing left that shutdown should wait for: in every
    /// subscription nothing is in flight, and nothing waits that a consumer could still take.
    ///
    /// A subscription without a consumer (no stream or handler registered, no `receive` waiting)
    /// holds its backlog until the next start: nobody could drain it, so waiting for it would only
    /// burn the grace period. A subscription with a consumer is idle once nothing is visible and
    /// no delayed message or retry becomes visible before the grace period ends.
    var isIdle: Bool {
        let deadline: Duration
        switch lifecycle {
        case .open: deadline = .zero
        case .draining(let drain): deadline = drain.deadline
        case .finished: return true
        }
        return subscriptions.allSatisfy { subscription in
            guard subscription.inFlight.isEmpty else { return false }
            guard !subscription.consumers.isEmpty || !subscription.waiters.isEmpty else { return true }
            return subscription.visibleCount == 0
                && !subscription.scheduled.values.contains { $0.visibleAt <= deadline }
        }
    }

    /// Registers a shutdown waiter; returns true when it must be resumed at once (not stored):
    /// the topic is idle, not draining, or the waiter was cancelled before it got here.
    mutating func addIdleWaiter(_ id: UInt64, _ continuation: UnsafeContinuation<Void, Never>) -> Bool {
        guard case .draining(var drain) = lifecycle else { return true }
        if drain.cancelledIdleWaiters.remove(id) != nil || isIdle {
            lifecycle = .draining(drain)
            return true
        }
        drain.idleWaiters[id] = continuation
        lifecycle = .draining(drain)
        return false
    }

    /// A shutdown waiter was cancelled: hands back its continuation, or remembers the
    /// cancellation when the waiter is not stored yet.
    mutating func cancelIdleWaiter(_ id: UInt64) -> UnsafeContinuation<Void, Never>? {
        guard case .draining(var drain) = lifecycle else { return nil }
        defer { lifecycle = .draining(drain) }
        if let continuation = drain.idleWaiters.removeValue(forKey: id) { return continuation }
        drain.cancelledIdleWaiters.insert(id)
        return nil
    }

    /// While draining, hands back the shutdown waiters once the topic became idle.
    mutating func takeIdleWaitersIfIdle() -> [UnsafeContinuation<Void, Never>] {
        guard case .draining(var drain) = lifecycle, !drain.idleWaiters.isEmpty, isIdle else { return [] }
        let waiters = Array(drain.idleWaiters.values)
        drain.idleWaiters.removeAll()
        lifecycle = .draining(drain)
        return waiters
    }

    /// Ends every consumer sequence. What stays in flight or waiting is reported, not lost: it
    /// stays in the (now closed) topic and is counted.
    mutating func finish() -> Effects {
        var effects = Effects()
        if case .draining(let drain) = lifecycle {
            effects.idleWaiters = Array(drain.idleWaiters.values)
        }
        failBlockedPublishers(effects: &effects)
        lifecycle = .finished
        for index in subscriptions.indices {
            while let waiter = subscriptions[index].waiters.popFirst() {
                effects.resume(waiter.continuation, with: .finished)
            }
        }
        // Reserved receives end in their second phase, which checks the lifecycle first.
        return effects
    }
}

extension TopicStateMachine {
    /// After any event: the shutdown waiters of a draining topic that became idle, and the
    /// `waitUntilDrained()` callers whose subscription drained, go into `effects`. Only a
    /// shutting-down topic has idle waiters, and only a topic someone waits on to drain has drain
    /// waiters: the common path pays two comparisons.
    @inline(__always)
    mutating func collectWaiters(into effects: inout Effects) {
        if !isOpen { effects.idleWaiters += takeIdleWaitersIfIdle() }
        if !drainWaiters.isEmpty { effects.drainWaiters += takeFinishedDrainWaiters() }
    }
}
