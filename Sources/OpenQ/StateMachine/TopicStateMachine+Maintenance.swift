// State machine events of maintenance: purge, seek, retention, drain for redrive.

import DequeModule
import HeapModule

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Maintenance: replay and seek, purge, redrive (drain, restore, enqueue), dead-letter intake, and waiting for a
/// subscription to drain.
extension TopicStateMachine {
    // MARK: Replay

    mutating func replay(into subscription: inout SubscriptionState, from start: StartPosition, now: Duration) {
        let cutoff = configuration.retention.age.map { date(at: now - $0) }
        for message in retained {
            if let cutoff, message.publishedAt < cutoff { continue }
            switch start {
            case .latest: return
            case .earliest: break
            case .sequenceNumber(let first): if message.sequenceNumber < first { continue }
            case .time(let time): if message.publishedAt < time { continue }
            }
            subscription.counters.routed += 1
            subscription.ready.append(message)
        }
    }

    /// Moves a subscription to another position in the retained messages: what waits is purged
    /// (counted), then the retained messages from the position on are enqueued. In-flight
    /// deliveries are untouched.
    mutating func seek(
        _ id: SubscriptionID,
        to position: StartPosition,
        now: Duration
    ) -> (Result<Int, OpenQError>, Effects) {
        var effects = Effects()
        guard let index = index(of: id) else { return (.failure(subscriptionGone(id)), effects) }
        if isJournaled(index) {
            journalRemoved(index, waitingSequences(index))
            if subscriptions[index].paging.stored > 0 {
                journal!.entries.append(.purgedStored(subscription: subscriptions[index].name))
            }
        }
        var subscription = subscriptions[index]
        subscription.counters.purged += subscription.purgeWaiting()
        let before = subscription.counters.routed
        replay(into: &subscription, from: position, now: now)
        subscriptions[index] = subscription
        // A durable topic's history is in its store: the replay is counted once it is committed.
        if _slowPath(journal != nil) { journalReplay(index, from: position, now: now) }
        serveWaiters(index, now: now, effects: &effects)
        serveBlockedPublishers(now: now, effects: &effects)
        return (.success(subscriptions[index].counters.routed - before), effects)
    }

    // MARK: Purge, redrive, dead-letter intake

    /// Empties one subscription (or all, and the retained messages, when `id` is nil).
    /// - Returns: the number of message copies removed.
    mutating func purge(_ id: SubscriptionID?, now: Duration) -> (Result<Int, OpenQError>, Effects) {
        var effects = Effects()
        var total = 0
        if let id {
            guard let index = index(of: id) else { return (.failure(subscriptionGone(id)), effects) }
            total = subscriptions[index].purgeAll()
            subscriptions[index].counters.purged += total
            if _slowPath(journal != nil) { journalPurged(index) }
        } else {
            for index in subscriptions.indices {
                let removed = subscriptions[index].purgeAll()
                subscriptions[index].counters.purged += removed
                if _slowPath(journal != nil) { journalPurged(index) }
                total += removed
            }
            retained.removeAll()
        }
        serveBlockedPublishers(now: now, effects: &effects)
        return (.success(total), effects)
    }

    /// Takes up to `max` waiting messages out of a subscription (for redrive); they count as
    /// acknowledged there.
    mutating func drain(_ id: SubscriptionID, max: Int, now: Duration) -> ([PublishedMessage], Effects) {
        var effects = Effects()
        guard let index = index(of: id) else { return ([], effects) }
        var drained: [PublishedMessage] = []
        while drained.count < max, let pending = subscriptions[index].popVisible() {
            drained.append(pending.stored)
        }
        subscriptions[index].counters.acked += drained.count
        if _slowPath(journal != nil) { requestPageInIfNeeded(index) }
        serveBlockedPublishers(now: now, effects: &effects)
        return (drained, effects)
    }

    /// Puts messages back into the subscription they were drained from, keeping their headers;
    /// they count as neither routed nor acknowledged again.
    mutating func restore(_ messages: [PublishedMessage], into id: SubscriptionID, now: Duration) -> (
        (), Effects
    ) {
        var effects = Effects()
        guard let index = index(of: id) else { return ((), effects) }
        subscriptions[index].counters.acked -= messages.count
        for message in messages { admitRestored(message, into: index) }
        serveWaiters(index, now: now, effects: &effects)
        return ((), effects)
    }

    /// Puts messages straight into one subscription, past its bound (redrive), without the
    /// dead-letter headers and with a fresh attempt count.
    mutating func enqueue(
        _ messages: [PublishedMessage],
        into id: SubscriptionID,
        now: Duration
    ) -> (Result<Void, OpenQError>, Effects) {
        var effects = Effects()
        guard !isFinished else { return (.failure(.shutDown("Topic '\(topic)'")), effects) }
        guard let index = index(of: id) else { return (.failure(subscriptionGone(id)), effects) }
        for message in messages {
            var headers = message.headers
            for key in MessageHeader.deadLetterKeys { headers[key] = nil }
            let origin = message.record.origin
            let message = message.withHeaders(headers)
            // Back home, the message is again the one its source published: this topic's name, its
            // original sequence number and publish time (not the dead-letter topic's).
            message.record.restamp(
                as: MessageOrigin(
                    topic: topic,
                    sequenceNumber: origin?.sequenceNumber ?? message.sequenceNumber,
                    publishedAt: origin?.publishedAt ?? message.publishedAt
                )
            )
            subscriptions[index].counters.routed += 1
            admitRestored(message, into: index)
            if _slowPath(journal != nil) {
                journalMessage(message)
                journalCopies(index, first: message.sequenceNumber, count: 1, visibleAt: nil)
            }
        }
        serveWaiters(index, now: now, effects: &effects)
        return (.success(()), effects)
    }

    /// Puts a redriven or restored message back among the waiting ones (through paging, so that
    /// a paging subscription keeps its bound and its priority order).
    private mutating func admitRestored(_ message: PublishedMessage, into index: Int) {
        if _slowPath(journal != nil), pages(index) {
            admit(message, into: index, restored: true)
        } else {
            subscriptions[index].ready.append(message)
        }
    }

    /// Takes dead letters from a source topic. They are never refused while the topic is open or
    /// draining: a full dead-letter topic applies its drop policies, and goes past its bound under
    /// `suspend` or `reject` rather than lose a message that was already accepted once.
    mutating func acceptDeadLetters(_ requests: [PublishRequest], now: Duration) -> (Bool, Effects) {
        var effects = Effects()
        guard !isFinished else { return (false, effects) }
        _ = commit(requests, now: now, effects: &effects)
        return (true, effects)
    }

    // MARK: Waiting for a subscription to drain

    /// One caller of ``SubscriptionState/waitUntilDrained()``.
    struct DrainWaiter {
        var subscription: SubscriptionID
        var continuation: UnsafeContinuation<Result<Void, OpenQError>, Never>
    }

    /// Whether a subscription holds nothing: nothing waiting, delayed or in flight.
    func isDrained(_ id: SubscriptionID) -> Bool {
        guard let subscription = subscription(id) else { return false }
        return subscription.backlog == 0
    }

    /// Registers a drain waiter; returns the result to resume it with at once, or `nil` when it was
    /// stored. A waiter cancelled before it got here is resumed with `nil`'s caller-side meaning:
    /// the caller checks cancellation itself.
    mutating func addDrainWaiter(
        _ waiter: UInt64,
        subscription id: SubscriptionID,
        continuation: UnsafeContinuation<Result<Void, OpenQError>, Never>
    ) -> Result<Void, OpenQError>? {
        if cancelledDrainWaiters.remove(waiter) != nil { return .success(()) }
        guard index(of: id) != nil else { return .failure(subscriptionGone(id)) }
        if isDrained(id) { return .success(()) }
        if isFinished { return .failure(.shutDown("Topic '\(topic)'")) }
        drainWaiters[waiter] = DrainWaiter(subscription: id, continuation: continuation)
        return nil
    }

    /// A drain waiter was cancelled: hands back its continuation, or remembers the cancellation.
    mutating func cancelDrainWaiter(_ waiter: UInt64) -> UnsafeContinuation<Result<Void, OpenQError>, Never>? {
        if let stored = drainWaiters.removeValue(forKey: waiter) { return stored.continuation }
        cancelledDrainWaiters.insert(waiter)
        return nil
    }

    /// Hands back the drain waiters whose wait is over (their subscription drained, was removed,
    /// or the topic finished), with how it ended. Called after every event while any waits.
    mutating func takeFinishedDrainWaiters() -> [(
        UnsafeContinuation<Result<Void, OpenQError>, Never>, Result<Void, OpenQError>
    )] {
        var done: [(UnsafeContinuation<Result<Void, OpenQError>, Never>, Result<Void, OpenQError>)] = []
        for (key, waiter) in drainWaiters {
            let result: Result<Void, OpenQError>
            if index(of: waiter.subscription) == nil {
                result = .failure(subscriptionGone(waiter.subscription))
            } else if isDrained(waiter.subscription) {
                result = .success(())
            } else if isFinished {
                result = .failure(.shutDown("Topic '\(topic)'"))
            } else {
                continue
            }
            drainWaiters[key] = nil
            done.append((waiter.continuation, result))
        }
        return done
    }
}
