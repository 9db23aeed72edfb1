// State machine events of publishing: publish, its suspended and cancelled partners, tryPublish, dead letters in.

import DequeModule
import HeapModule

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Publishing: deciding whether a publish fits, parking publishers that must wait, stamping and
/// routing messages into every subscription's backlog, and the overflow policies.
extension TopicStateMachine {
    // MARK: Publishing

    /// Assigns identity to the requests and decides whether they can be enqueued now.
    /// Generic over the collection so that a single publish passes a `CollectionOfOne` and
    /// allocates nothing; only a publisher that must wait copies its requests into an array.
    mutating func publish<Requests: Collection<PublishRequest>>(
        _ requests: Requests,
        now: Duration
    ) -> (PublishDecision, Effects) {
        var effects = Effects()
        processDue(now: now, effects: &effects)
        guard isOpen else { return (.failed(.shutDown("Topic '\(topic)'")), effects) }
        let count = Self.messageCount(requests)
        if !blockedPublishers.isEmpty {
            // A batch that can never fit is refused at once, even behind waiting publishers.
            if count > 1, let error = neverFits(count: count) {
                counters.rejected += count
                return (.failed(error), effects)
            }
            // Publishers already waiting for room go first.
            return (.mustWait(reserveBlockedPublisher()), effects)
        }
        switch evaluate(count: count) {
        case .fits:
            return (.accepted(commit(requests, now: now, effects: &effects)), effects)
        case .mustWait:
            return (.mustWait(reserveBlockedPublisher()), effects)
        case .reject(let error):
            counters.rejected += count
            return (.failed(error), effects)
        }
    }

    /// A non-suspending publish: under a `suspend` policy a full topic rejects instead of waiting.
    mutating func tryPublish(_ request: PublishRequest, now: Duration) -> (PublishResult, Effects) {
        let (decision, effects) = publish(CollectionOfOne(request), now: now)
        switch decision {
        case .accepted(let receipt):
            return (receipt.droppedNew > 0 ? .dropped(receipt) : .enqueued(receipt), effects)
        case .mustWait(let id):
            pendingPublishers[id] = nil
            counters.rejected += request.record.count
            return (.rejected, effects)
        case .failed(let error):
            return (error.code == .topicFull ? .rejected : .failed(error), effects)
        }
    }

    /// The number of messages in `requests` (a batch publish is one request).
    static func messageCount(_ requests: some Collection<PublishRequest>) -> Int {
        requests.reduce(0) { $0 + $1.record.count }
    }

    mutating func reserveBlockedPublisher() -> UInt64 {
        let id = nextPublisherID
        nextPublisherID += 1
        pendingPublishers[id] = .reserved
        return id
    }

    /// The second phase of a publish that must wait: re-checks under the lock and either enqueues
    /// at once or stores the continuation.
    mutating func publishSuspended(
        _ id: UInt64,
        requests: [PublishRequest],
        continuation: PublisherContinuation,
        now: Duration
    ) -> Effects {
        var effects = Effects()
        let reservation = pendingPublishers.removeValue(forKey: id) ?? .cancelled
        // Shutdown wins over cancellation: a publisher racing shutdown learns that it was shut down.
        guard isOpen else {
            effects.resumePublisher(continuation, with: .failure(OpenQError.shutDown("Topic '\(topic)'")))
            return effects
        }
        if case .cancelled = reservation {
            effects.resumePublisher(continuation, with: .failure(CancellationError()))
            return effects
        }
        blockedPublishers.append(BlockedPublisher(id: id, requests: requests, continuation: continuation))
        serveBlockedPublishers(now: now, effects: &effects)
        if let parkedPublisherWarning, blockedPublishers.contains(where: { $0.id == id }) {
            pushDeadline(at: now + parkedPublisherWarning, .parkedPublisher(id), effects: &effects)
        }
        return effects
    }

    /// A parked publisher's warning is due: reports it, naming the full subscription, unless the
    /// publisher went on meanwhile or the topic warned less than one interval ago; while it stays
    /// parked, it is looked at again every interval.
    mutating func warnAboutParkedPublisher(_ id: UInt64, now: Duration, effects: inout Effects) {
        guard let interval = parkedPublisherWarning,
            let publisher = blockedPublishers.first(where: { $0.id == id })
        else { return }
        // Still parked: look again one interval from now (a warning per interval while it waits).
        pushDeadline(at: now + interval, .parkedPublisher(id), effects: &effects)
        if let last = lastParkedWarning, now - last < interval { return }
        lastParkedWarning = now
        let count = Self.messageCount(publisher.requests)
        let full = subscriptions.first { $0.overflow == .suspend && $0.backlog + count > $0.capacity }
        effects.warnings.append(
            ParkedPublisherWarning(
                topic: topic,
                subscription: full?.name ?? "?",
                depth: full?.backlog ?? 0,
                capacity: full?.capacity ?? 0,
                consumers: full.map { $0.consumers.count + $0.waiters.count } ?? 0,
                parkedPublishers: blockedPublishers.count,
                waited: interval
            )
        )
    }

    mutating func publishCancelled(_ id: UInt64) -> Effects {
        var effects = Effects()
        if pendingPublishers[id] != nil {
            pendingPublishers[id] = .cancelled
        } else if let index = blockedPublishers.firstIndex(where: { $0.id == id }) {
            let publisher = blockedPublishers.remove(at: index)
            effects.resumePublisher(publisher.continuation, with: .failure(CancellationError()))
        }
        return effects
    }

    enum Evaluation {
        case fits
        case mustWait
        case reject(OpenQError)
    }

    /// The error for a batch larger than a suspending subscription's capacity, which waiting
    /// could never make room for; `nil` when every suspending subscription could take it.
    func neverFits(count: Int) -> OpenQError? {
        for subscription in subscriptions where subscription.overflow == .suspend && count > subscription.capacity {
            return .invalidConfiguration(
                "A batch of \(count) messages can never fit subscription '\(subscription.name)' "
                    + "of topic '\(topic)' (capacity \(subscription.capacity)); publish smaller batches."
            )
        }
        return nil
    }

    func evaluate(count: Int) -> Evaluation {
        var wait = false
        for subscription in subscriptions where subscription.backlog + count > subscription.capacity {
            switch subscription.overflow {
            case .suspend:
                if let error = neverFits(count: count) { return .reject(error) }
                wait = true
            case .reject:
                return .reject(
                    OpenQError(
                        .topicFull,
                        "Topic '\(topic)' is full: subscription '\(subscription.name)' holds \(subscription.backlog) "
                            + "of \(subscription.capacity) messages. Retry later, or consume faster."
                    )
                )
            case .dropOldest, .dropNewest:
                continue
            }
        }
        return wait ? .mustWait : .fits
    }

    mutating func serveBlockedPublishers(now: Duration, effects: inout Effects) {
        while let first = blockedPublishers.first, isOpen {
            let count = Self.messageCount(first.requests)
            switch evaluate(count: count) {
            case .mustWait:
                return
            case .fits:
                blockedPublishers.removeFirst()
                let receipt = commit(first.requests, now: now, effects: &effects)
                effects.resumePublisher(first.continuation, with: .success(receipt))
            case .reject(let error):
                blockedPublishers.removeFirst()
                counters.rejected += count
                effects.resumePublisher(first.continuation, with: .failure(error))
            }
        }
    }

    /// Stamps the requests and routes them to every subscription. A request's messages are
    /// stamped together (consecutive ids and sequence numbers, one time) and routed as one run.
    mutating func commit<Requests: Collection<PublishRequest>>(
        _ requests: Requests,
        now: Duration,
        effects: inout Effects
    ) -> PublishReceipt {
        // Publish times follow sequence numbers: `now` was read before the lock, so a publisher
        // that read the clock earlier may commit later; it gets the latest time stamped so far.
        lastPublishTime = Swift.max(lastPublishTime, now)
        let publishedAt = date(at: lastPublishTime)
        let total = Self.messageCount(requests)
        var nextID = MessageID.allocate(count: total)
        var receipt = PublishReceipt(
            firstID: MessageID(rawValue: nextID), firstSequenceNumber: nextSequence, count: total)
        for request in requests {
            let record = request.record
            let count = record.count
            record.stamp(firstID: nextID, topic: topic, firstSequence: nextSequence, publishedAt: publishedAt)
            nextID += UInt64(count)
            nextSequence += UInt64(count)
            counters.published += count
            if _slowPath(journal != nil) { journalMessages(of: request) }
            if configuration.retention.isEnabled {
                // A durable topic retains in its store (see `journalRetention`), not in memory.
                if _slowPath(journal != nil) {
                    journalRetention(now: now)
                } else {
                    for index in 0..<count { retain(PublishedMessage(record, index: index), now: now) }
                }
            }
            if subscriptions.isEmpty {
                counters.unrouted += count
                continue
            }
            let run = MessageRun(record, 0..<count)
            // Tested once per request, not per subscription: the journal is off on the hot path.
            if _slowPath(journal != nil) {
                for index in subscriptions.indices {
                    routeJournaled(
                        run, into: index, delay: request.delay, now: now, receipt: &receipt, effects: &effects)
                }
                continue
            }
            for index in subscriptions.indices {
                route(run, into: index, delay: request.delay, now: now, receipt: &receipt, effects: &effects)
            }
        }
        for index in subscriptions.indices where !subscriptions[index].waiters.isEmpty {
            serveWaiters(index, now: now, effects: &effects)
        }
        return receipt
    }

    /// Puts one request's messages into one subscription's backlog: as one run when they all fit
    /// and are visible now (the common case), otherwise message by message. Drops are counted in
    /// `receipt`.
    /// - Returns: whether the run went in whole (the caller journals it); message by message, each
    ///   message journals itself.
    @discardableResult
    mutating func route(
        _ run: MessageRun,
        into index: Int,
        delay: Duration,
        now: Duration,
        receipt: inout PublishReceipt,
        effects: inout Effects
    ) -> Bool {
        if delay == .zero, subscriptions[index].backlog + run.count <= subscriptions[index].capacity {
            subscriptions[index].counters.routed += run.count
            subscriptions[index].ready.append(run)
            return true
        }
        routeEach(run, into: index, delay: delay, now: now, receipt: &receipt, effects: &effects)
        return false
    }

    /// Routes a run's messages one by one (each applies the overflow policy, and journals itself).
    mutating func routeEach(
        _ run: MessageRun,
        into index: Int,
        delay: Duration,
        now: Duration,
        receipt: inout PublishReceipt,
        effects: inout Effects
    ) {
        let visibleAt = delay > .zero ? now + delay : nil
        for message in run.messages {
            let pending = Pending(stored: message, attempts: 0, lastError: nil)
            route(pending, into: index, visibleAt: visibleAt, now: now, receipt: &receipt, effects: &effects)
        }
    }

    /// ``route(_:into:delay:now:receipt:effects:)`` for a durable topic: journals the copies, and
    /// lets a paging subscription keep the messages in the store only (message by message, when
    /// they do not all fit in memory).
    @inline(never)
    mutating func routeJournaled(
        _ run: MessageRun,
        into index: Int,
        delay: Duration,
        now: Duration,
        receipt: inout PublishReceipt,
        effects: inout Effects
    ) {
        if !pages(index)
            || (subscriptions[index].paging.stored == 0 && !subscriptions[index].paging.replayPending
                && subscriptions[index].ready.count + run.count <= residentLimit)
        {
            if route(run, into: index, delay: delay, now: now, receipt: &receipt, effects: &effects) {
                journalCopies(index, first: run.first.sequenceNumber, count: run.count, visibleAt: nil)
            }
            return
        }
        routeEach(run, into: index, delay: delay, now: now, receipt: &receipt, effects: &effects)
    }

    /// Puts one message into one subscription's backlog, applying its overflow policy.
    mutating func route(
        _ pending: Pending,
        into index: Int,
        visibleAt: Duration?,
        now: Duration,
        receipt: inout PublishReceipt,
        effects: inout Effects
    ) {
        subscriptions[index].counters.routed += 1
        if subscriptions[index].backlog >= subscriptions[index].capacity {
            switch subscriptions[index].overflow {
            case .dropOldest where subscriptions[index].ready.count > 0:
                let dropped = subscriptions[index].ready.popLeastUrgent()
                subscriptions[index].counters.dropped += 1
                receipt.droppedOlder += 1
                if _slowPath(journal != nil), let dropped { journalRemoved(index, [dropped.sequenceNumber]) }
            case .dropOldest, .dropNewest:
                subscriptions[index].counters.dropped += 1
                receipt.droppedNew += 1
                return
            case .suspend, .reject:
                // Evaluated before commit; reaching a full backlog here only happens for replays
                // and redrives, which are allowed past the bound.
                break
            }
        }
        if let visibleAt {
            schedule(pending, in: index, at: visibleAt, effects: &effects)
        } else if _slowPath(journal != nil), pages(index) {
            admit(pending.stored, into: index)
        } else {
            subscriptions[index].ready.append(pending.stored)
        }
        if _slowPath(journal != nil) {
            journalCopies(index, first: pending.stored.sequenceNumber, count: 1, visibleAt: visibleAt)
        }
    }

    mutating func schedule(
        _ pending: Pending,
        in index: Int,
        at visibleAt: Duration,
        effects: inout Effects
    ) {
        let key = subscriptions[index].nextScheduleKey
        subscriptions[index].nextScheduleKey += 1
        subscriptions[index].scheduled[key] = Scheduled(pending: pending, visibleAt: visibleAt)
        pushDeadline(at: visibleAt, .scheduled(subscriptions[index].id, key: key), effects: &effects)
    }

    mutating func retain(_ message: PublishedMessage, now: Duration) {
        retained.append(message)
        if let count = configuration.retention.count, retained.count > count {
            retained.removeFirst(retained.count - count)
        }
        if let age = configuration.retention.age {
            let cutoff = date(at: now - age)
            while let first = retained.first, first.publishedAt < cutoff { retained.removeFirst() }
        }
    }
}
