// State machine events of settling: ack, nack, reject, extend, leases.

import DequeModule
import HeapModule

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Settling deliveries: ack, nack, reject, visibility extensions and leases, and what a failed
/// attempt leads to (a retry, or a dead letter).
extension TopicStateMachine {
    // MARK: Settling deliveries

    /// Looks up a live in-flight delivery; an expired one is expired now (the deadline passed even
    /// if the timer has not fired yet) and reported as such.
    mutating func liveDelivery(
        _ id: SubscriptionID,
        tag: UInt64,
        now: Duration,
        effects: inout Effects
    ) -> Result<Int, OpenQError> {
        if isFinished { return .failure(.shutDown("Topic '\(topic)'")) }
        guard let index = index(of: id) else { return .failure(subscriptionGone(id)) }
        if let entry = subscriptions[index].inFlight[tag] {
            if entry.deadline <= now {
                expire(tag, in: index, now: now, effects: &effects)
                return .failure(receiptError(.expired, index: index))
            }
            return .success(index)
        }
        if let fate = subscriptions[index].fates.fate(of: tag) { return .failure(receiptError(fate, index: index)) }
        return .failure(
            OpenQError(
                .receiptAlreadySettled,
                "This delivery of subscription '\(subscriptions[index].name)' was already acknowledged, "
                    + "nacked or rejected; settle each delivery once."
            )
        )
    }

    func receiptError(_ fate: ReceiptFate, index: Int) -> OpenQError {
        let name = subscriptions[index].name
        return switch fate {
        case .expired:
            OpenQError(
                .receiptExpired,
                "The visibility timeout of this delivery (subscription '\(name)') passed before it was settled; "
                    + "the message was made visible again. Extend the visibility timeout for long work."
            )
        case .purged:
            OpenQError(.receiptExpired, "This delivery's message was purged from subscription '\(name)'.")
        case .returned:
            OpenQError(
                .receiptExpired,
                "This delivery was returned to subscription '\(name)' because its consumer ended."
            )
        }
    }

    func subscriptionGone(_ id: SubscriptionID) -> OpenQError {
        OpenQError(.subscriptionNotFound, "The subscription of topic '\(topic)' was removed.")
    }

    mutating func ack(_ id: SubscriptionID, tag: UInt64, now: Duration) -> (Result<Void, OpenQError>, Effects) {
        var effects = Effects()
        let result = settle(id, tag: tag, now: now, effects: &effects)
        if case .success = result { serveBlockedPublishers(now: now, effects: &effects) }
        return (result, effects)
    }

    /// Acknowledges several deliveries of one subscription in one event; each succeeds or fails
    /// on its own.
    /// - Returns: per tag, in order, `nil` when it was acknowledged or the reason it was not.
    mutating func ack(_ id: SubscriptionID, tags: [UInt64], now: Duration) -> ([OpenQError?], Effects) {
        var effects = Effects()
        var failures: [OpenQError?] = []
        failures.reserveCapacity(tags.count)
        var acked = false
        for tag in tags {
            switch settle(id, tag: tag, now: now, effects: &effects) {
            case .success:
                acked = true
                failures.append(nil)
            case .failure(let error):
                failures.append(error)
            }
        }
        if acked { serveBlockedPublishers(now: now, effects: &effects) }
        return (failures, effects)
    }

    /// The acknowledgement itself: the delivery leaves the in-flight set and counts as acked.
    mutating func settle(
        _ id: SubscriptionID,
        tag: UInt64,
        now: Duration,
        effects: inout Effects
    ) -> Result<Void, OpenQError> {
        if let index = index(of: id), !subscriptions[index].tracksDeliveries { return .success(()) }
        switch liveDelivery(id, tag: tag, now: now, effects: &effects) {
        case .failure(let error):
            return .failure(error)
        case .success(let index):
            if _slowPath(journal != nil), let settled = subscriptions[index].inFlight.removeValue(forKey: tag) {
                journalRemoved(index, [settled.pending.stored.sequenceNumber])
            } else {
                // Not moved out: a copy of the entry would retain and release its record.
                subscriptions[index].inFlight[tag] = nil
            }
            subscriptions[index].counters.acked += 1
            return .success(())
        }
    }

    /// Takes a live in-flight delivery out for a nack or a rejection: `nil` when there is nothing
    /// to settle (an automatic subscription), the reason when it is not live.
    mutating func takeLiveDelivery(
        _ id: SubscriptionID,
        tag: UInt64,
        now: Duration,
        effects: inout Effects
    ) -> Result<(index: Int, entry: InFlight)?, OpenQError> {
        if let index = index(of: id), !subscriptions[index].tracksDeliveries { return .success(nil) }
        switch liveDelivery(id, tag: tag, now: now, effects: &effects) {
        case .failure(let error):
            return .failure(error)
        case .success(let index):
            guard let entry = subscriptions[index].inFlight.removeValue(forKey: tag) else { return .success(nil) }
            return .success((index, entry))
        }
    }

    mutating func nack(
        _ id: SubscriptionID,
        tag: UInt64,
        retryAfter: Duration?,
        error: String?,
        now: Duration
    ) -> (Result<Void, OpenQError>, Effects) {
        settleLiveDelivery(id, tag: tag, now: now) { state, index, entry, effects in
            state.subscriptions[index].counters.nacked += 1
            entry.pending.lastError = error ?? entry.pending.lastError
            let delay =
                retryAfter
                ?? state.configuration.retryBackoff.delay(
                    afterAttempts: entry.pending.attempts, random: state.random.nextUnit())
            state.requeue(entry.pending, in: index, delay: delay, now: now, effects: &effects)
        }
    }

    mutating func reject(
        _ id: SubscriptionID,
        tag: UInt64,
        reason: String,
        now: Duration
    ) -> (Result<Void, OpenQError>, Effects) {
        settleLiveDelivery(id, tag: tag, now: now) { state, index, entry, effects in
            entry.pending.lastError = reason
            state.deadLetter(entry.pending, from: index, reason: "rejected", now: now, effects: &effects)
            state.serveBlockedPublishers(now: now, effects: &effects)
        }
    }

    /// A nack's or a rejection's common part: takes the live delivery out (``takeLiveDelivery``)
    /// and hands it to `settle`; succeeds at once when there is nothing to settle.
    @inline(__always)
    private mutating func settleLiveDelivery(
        _ id: SubscriptionID,
        tag: UInt64,
        now: Duration,
        _ settle: (inout TopicStateMachine, Int, inout InFlight, inout Effects) -> Void
    ) -> (Result<Void, OpenQError>, Effects) {
        var effects = Effects()
        switch takeLiveDelivery(id, tag: tag, now: now, effects: &effects) {
        case .failure(let error):
            return (.failure(error), effects)
        case .success(nil):
            return (.success(()), effects)
        case .success(.some((let index, var entry))):
            settle(&self, index, &entry, &effects)
            return (.success(()), effects)
        }
    }

    /// Sets a delivery's visibility deadline to `now + duration` (as SQS's ChangeMessageVisibility).
    mutating func extendVisibility(
        _ id: SubscriptionID,
        tag: UInt64,
        by duration: Duration,
        now: Duration
    ) -> (Result<Void, OpenQError>, Effects) {
        var effects = Effects()
        guard duration > .zero else {
            return (
                .failure(.invalidConfiguration("A visibility extension must be positive; it was \(duration).")), effects
            )
        }
        if let index = index(of: id), !subscriptions[index].tracksDeliveries { return (.success(()), effects) }
        switch liveDelivery(id, tag: tag, now: now, effects: &effects) {
        case .failure(let error):
            return (.failure(error), effects)
        case .success(let index):
            let deadline = now + duration
            subscriptions[index].inFlight[tag]?.deadline = deadline
            pushDeadline(at: deadline, .visibility(id, tags: tag..<tag + 1), effects: &effects)
            return (.success(()), effects)
        }
    }

    /// Extends every delivery a consumer holds by its subscription's visibility timeout, as long as
    /// the delivery is younger than `maximum` (lease management for handler consumers).
    mutating func extendLeases(
        _ id: SubscriptionID,
        consumer: ConsumerID,
        maximum: Duration,
        now: Duration
    ) -> Effects {
        var effects = Effects()
        guard !isFinished else { return effects }
        processDue(now: now, effects: &effects)
        guard let index = index(of: id), subscriptions[index].tracksDeliveries else { return effects }
        let timeout = subscriptions[index].configuration.acknowledgement.visibilityTimeout
        for (tag, entry) in subscriptions[index].inFlight where entry.consumer == consumer {
            let deadline = Swift.min(now + timeout, entry.deliveredAt + maximum)
            guard deadline > entry.deadline else { continue }
            subscriptions[index].inFlight[tag]?.deadline = deadline
            pushDeadline(at: deadline, .visibility(id, tags: tag..<tag + 1), effects: &effects)
        }
        return effects
    }

    /// Puts a message back after a failed attempt: dead-lettered once it had `maxDeliveries`
    /// deliveries, otherwise visible again after `delay`.
    mutating func requeue(
        _ pending: Pending,
        in index: Int,
        delay: Duration,
        now: Duration,
        effects: inout Effects
    ) {
        if let maxDeliveries = configuration.deadLetter.maxDeliveries, pending.attempts >= maxDeliveries {
            deadLetter(pending, from: index, reason: "maxDeliveries", now: now, effects: &effects)
            serveBlockedPublishers(now: now, effects: &effects)
        } else if delay > .zero {
            schedule(pending, in: index, at: now + delay, effects: &effects)
            if _slowPath(journal != nil) { journalRetry(index, pending, visibleAt: now + delay) }
        } else {
            subscriptions[index].retries.append(pending)
            if _slowPath(journal != nil) { journalRetry(index, pending, visibleAt: nil) }
            serveWaiters(index, now: now, effects: &effects)
        }
    }

    mutating func deadLetter(
        _ pending: Pending,
        from index: Int,
        reason: String,
        now: Duration,
        effects: inout Effects
    ) {
        subscriptions[index].counters.deadLettered += 1
        var headers = pending.stored.headers
        headers[MessageHeader.sourceTopic] = topic
        headers[MessageHeader.sourceSubscription] = subscriptions[index].name
        headers[MessageHeader.sourceSequenceNumber] = String(pending.stored.sequenceNumber)
        headers[MessageHeader.attempts] = String(pending.attempts)
        headers[MessageHeader.deadLetterReason] = reason
        if let lastError = pending.lastError { headers[MessageHeader.lastError] = lastError }
        if headers[MessageHeader.firstPublishedAt] == nil {
            headers[MessageHeader.firstPublishedAt] = String(pending.stored.publishedAt.timeIntervalSince1970)
        }
        headers[MessageHeader.deadLetteredAt] = String(date(at: now).timeIntervalSince1970)
        let message = pending.stored.withHeaders(headers, origin: pending.stored.identity)
        effects.deadLetters.append(message)
    }

    mutating func expire(_ tag: UInt64, in index: Int, now: Duration, effects: inout Effects) {
        guard var entry = subscriptions[index].inFlight.removeValue(forKey: tag) else { return }
        subscriptions[index].counters.expired += 1
        subscriptions[index].fates.record(.expired, tag: tag)
        entry.pending.lastError = entry.pending.lastError ?? "visibility timeout expired"
        requeue(entry.pending, in: index, delay: .zero, now: now, effects: &effects)
    }
}
