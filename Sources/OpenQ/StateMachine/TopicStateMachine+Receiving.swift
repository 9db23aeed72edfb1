// State machine events of receiving: receive, suspended, cancelled; consumers registered and ended.

import DequeModule
import HeapModule

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Receiving: handing visible messages to consumers (two-phase: take at once, or reserve a
/// waiter and store its continuation), and consumers that end.
extension TopicStateMachine {
    // MARK: Receiving

    /// The first phase of a receive: hands out visible messages at once or reserves a waiter id.
    mutating func receive(
        _ id: SubscriptionID,
        consumer: ConsumerID?,
        max: Int,
        canWait: Bool = true,
        visibilityTimeout: Duration? = nil,
        now: Duration
    ) -> (ReceiveDecision, Effects) {
        var effects = Effects()
        processDue(now: now, effects: &effects)
        guard let index = index(of: id) else { return (.finished(subscriptionGone(id)), effects) }
        if isFinished { return (.finished(.shutDown("Topic '\(topic)'")), effects) }
        if subscriptions[index].visibleCount > 0 {
            let batch = take(
                from: index, max: max, consumer: consumer, visibilityTimeout: visibilityTimeout, now: now,
                effects: &effects)
            return (.messages(batch), effects)
        }
        guard canWait else { return (.empty, effects) }
        let waiter = nextWaiterID
        nextWaiterID += 1
        pendingWaiters[waiter] = .reserved
        return (.mustWait(waiter), effects)
    }

    /// The second phase of a receive: re-checks under the lock, then resumes at once or waits.
    mutating func receiveSuspended(
        _ id: SubscriptionID,
        waiter: UInt64,
        consumer: ConsumerID?,
        max: Int,
        pollDeadline: Duration?,
        visibilityTimeout: Duration? = nil,
        continuation: Continuation,
        now: Duration
    ) -> Effects {
        var effects = Effects()
        let reservation = pendingWaiters.removeValue(forKey: waiter) ?? .cancelled
        guard let index = index(of: id) else {
            effects.resume(continuation, with: .finished)
            return effects
        }
        // Shutdown wins over cancellation: a receive racing shutdown learns that it was shut down.
        if isFinished {
            effects.resume(continuation, with: .finished)
        } else if case .cancelled = reservation {
            effects.resume(continuation, with: .cancelled)
        } else if subscriptions[index].visibleCount > 0 {
            let batch = take(
                from: index, max: max, consumer: consumer, visibilityTimeout: visibilityTimeout, now: now,
                effects: &effects)
            effects.resume(continuation, with: .messages(batch))
        } else if let pollDeadline, pollDeadline <= now {
            effects.resume(continuation, with: .timedOut)
        } else {
            subscriptions[index].waiters.append(
                Waiter(
                    id: waiter, consumer: consumer, max: max, continuation: continuation, pollDeadline: pollDeadline,
                    visibilityTimeout: visibilityTimeout)
            )
            if let pollDeadline {
                pushDeadline(at: pollDeadline, .poll(id, waiter: waiter), effects: &effects)
            }
        }
        return effects
    }

    mutating func receiveCancelled(_ id: SubscriptionID, waiter: UInt64) -> Effects {
        var effects = Effects()
        if pendingWaiters[waiter] != nil {
            pendingWaiters[waiter] = .cancelled
        } else if let index = index(of: id),
            let position = subscriptions[index].waiters.firstIndex(where: { $0.id == waiter })
        {
            let removed = subscriptions[index].waiters.remove(at: position)
            effects.resume(removed.continuation, with: .cancelled)
        }
        return effects
    }

    /// A consumer ended (cancelled, finished, or its iterator was dropped). Its in-flight
    /// deliveries become visible again at once; those it never handed to user code (`unhanded`)
    /// get their attempt back. An anonymous subscription ends with its consumer, so that a stream
    /// kept after its iteration ended never holds back publishers (iterating it again subscribes
    /// afresh: ``StreamSource``).
    mutating func consumerEnded(
        _ id: SubscriptionID,
        consumer: ConsumerID,
        unhanded: [HandedMessage],
        now: Duration
    ) -> Effects {
        var effects = Effects()
        guard let index = index(of: id) else { return effects }
        subscriptions[index].consumers.remove(consumer)
        if subscriptions[index].isAnonymous {
            subscriptions[index].counters.acked -= unhanded.count
            subscriptions[index].counters.delivered -= unhanded.count
            subscriptions[index].counters.purged += unhanded.count
            return removeSubscription(id, now: now)
        }
        var returned: [Pending] = []
        if subscriptions[index].tracksDeliveries {
            let unhandedTags = Set(unhanded.map(\.tag))
            let owned = subscriptions[index].inFlight.filter { $0.value.consumer == consumer }.keys.sorted()
            for tag in owned {
                guard let entry = subscriptions[index].inFlight.removeValue(forKey: tag) else { continue }
                subscriptions[index].fates.record(.returned, tag: tag)
                if unhandedTags.contains(tag) {
                    var pending = entry.pending
                    pending.attempts -= 1
                    subscriptions[index].counters.delivered -= 1
                    if pending.attempts > 0 { subscriptions[index].counters.redelivered -= 1 }
                    returned.append(pending)
                    if _slowPath(journal != nil) { journalRetry(index, pending, visibleAt: nil) }
                } else {
                    requeue(entry.pending, in: index, delay: .zero, now: now, effects: &effects)
                }
            }
        } else {
            for handed in unhanded {
                returned.append(Pending(stored: handed.stored, attempts: handed.attempt - 1, lastError: nil))
            }
            if _slowPath(journal != nil) { for pending in returned { journalReinserted(index, pending) } }
            subscriptions[index].counters.acked -= unhanded.count
            subscriptions[index].counters.delivered -= unhanded.count
        }
        subscriptions[index].retries.insert(contentsOf: returned, at: 0)
        serveWaiters(index, now: now, effects: &effects)
        return effects
    }

    /// Takes up to `max` visible messages; tracked subscriptions record them in flight.
    mutating func take(
        from index: Int,
        max: Int,
        consumer: ConsumerID?,
        visibilityTimeout: Duration? = nil,
        now: Duration,
        effects: inout Effects
    ) -> DeliveryBatch {
        let tracks = subscriptions[index].tracksDeliveries
        if !tracks, subscriptions[index].retries.isEmpty {
            let (fresh, count) = subscriptions[index].ready.take(upTo: max)
            if _slowPath(journal != nil) {
                journalRemoved(index, runs: fresh)
                requestPageInIfNeeded(index)
            }
            subscriptions[index].counters.delivered += count
            subscriptions[index].counters.acked += count
            if count > 0 { serveBlockedPublishers(now: now, effects: &effects) }
            return DeliveryBatch(fresh: fresh)
        }
        var batch: [HandedMessage] = []
        batch.reserveCapacity(Swift.min(max, subscriptions[index].visibleCount))
        // Every delivery of one take shares one visibility deadline (and one heap entry).
        let deadline = now + (visibilityTimeout ?? subscriptions[index].configuration.acknowledgement.visibilityTimeout)
        let subscriptionID = subscriptions[index].id
        let firstTag = subscriptions[index].nextTag
        let journaling = _slowPath(journal != nil)
        // Once per take: a Duration's 128-bit attoseconds convert to Double by a generic routine.
        let nowSeconds = tracks ? now / .seconds(1) : 0
        while batch.count < max, var pending = subscriptions[index].popVisible() {
            pending.attempts += 1
            if tracks, pending.firstDeliveredSeconds.isNaN { pending.firstDeliveredSeconds = nowSeconds }
            subscriptions[index].counters.delivered += 1
            if pending.attempts > 1 { subscriptions[index].counters.redelivered += 1 }
            if tracks {
                let tag = subscriptions[index].nextTag
                subscriptions[index].nextTag += 1
                subscriptions[index].inFlight[tag] = InFlight(
                    pending: pending,
                    consumer: consumer,
                    deliveredAt: now,
                    deadline: deadline
                )
                batch.append(
                    HandedMessage(
                        stored: pending.stored, tag: tag, attempt: pending.attempts,
                        firstDeliveredAt: epoch.addingTimeInterval(pending.firstDeliveredSeconds)))
                if journaling { journalDelivered(index, pending) }
            } else {
                subscriptions[index].counters.acked += 1
                batch.append(HandedMessage(stored: pending.stored, tag: 0, attempt: pending.attempts))
            }
        }
        if journaling {
            if !tracks { journalRemoved(index, batch.map(\.stored.sequenceNumber)) }
            requestPageInIfNeeded(index)
        }
        if tracks, !batch.isEmpty {
            let tags = firstTag..<subscriptions[index].nextTag
            pushDeadline(at: deadline, .visibility(subscriptionID, tags: tags), effects: &effects)
        }
        if !tracks, !batch.isEmpty { serveBlockedPublishers(now: now, effects: &effects) }
        return DeliveryBatch(handed: batch)
    }

    mutating func serveWaiters(_ index: Int, now: Duration, effects: inout Effects) {
        while subscriptions[index].visibleCount > 0, let waiter = subscriptions[index].waiters.popFirst() {
            let batch = take(
                from: index, max: waiter.max, consumer: waiter.consumer, visibilityTimeout: waiter.visibilityTimeout,
                now: now, effects: &effects)
            effects.resume(waiter.continuation, with: .messages(batch))
        }
    }
}
