// The journal in the state machine: each decision recorded as it is made, under the topic's lock.

import DequeModule

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// The journal of a durable topic: the state machine records each decision a caller learns of as
/// a ``JournalEntry`` while it makes it, under the topic's lock, so the journal's order is the
/// state machine's order. ``TopicRuntime`` hands the entries to the store before it releases the
/// lock, and the caller (or the consumer that is handed a message) waits for their commit.
///
/// In-memory topics have no journal: every call site is one `journal != nil` test.
/// Anonymous subscriptions (``Topic/subscribe(startingAt:backlog:prefetch:)``) end with their
/// stream, so nothing of theirs is journaled.
struct Journal {
    var entries: [JournalEntry] = []
    /// The payload bytes of the record being published, encoded by its publisher before the lock
    /// (kept here rather than in every `PublishRequest`, which in-memory topics pass by value).
    var encoded: (record: ObjectIdentifier, bytes: [[UInt8]])?
    /// Pages that paging subscriptions asked for, for ``TopicRuntime`` to read after the lock.
    var pageIns: [PageInRequest] = []
    /// Encodes the message at an index of a record whose bytes the publisher did not bring (dead
    /// letters, redrives, returned copies). A failure stores no bytes; recovery then quarantines
    /// the message with the reason rather than lose it silently.
    let encode: @Sendable (MessageRecord, Int) throws -> [UInt8]

    init(encode: @escaping @Sendable (MessageRecord, Int) throws -> [UInt8]) {
        self.encode = encode
    }

    mutating func take() -> [JournalEntry] {
        defer { entries = [] }
        return entries
    }
}

// Every journaling helper is out of line: the hot events of an in-memory topic only test
// `journal != nil`, and inlining these would grow them (measured: a few percent on 1→1).
extension TopicStateMachine {
    /// Whether any subscription is named (only those are journaled).
    var hasNamedSubscription: Bool { subscriptions.contains { !$0.isAnonymous } }

    func isJournaled(_ index: Int) -> Bool { journal != nil && !subscriptions[index].isAnonymous }

    /// Records the messages of a stamped request (before their copies).
    @inline(never)
    mutating func journalMessages(of request: PublishRequest) {
        guard journal != nil else { return }
        guard hasNamedSubscription || configuration.retention.isEnabled else {
            journal!.entries.append(.sequenceUsed(next: nextSequence))
            return
        }
        let record = request.record
        var encoded: [[UInt8]]?
        if let pending = journal!.encoded, pending.record == ObjectIdentifier(record) {
            encoded = pending.bytes
            journal!.encoded = nil
        }
        for index in 0..<record.count {
            let bytes = encoded?[index] ?? (try? journal!.encode(record, index)) ?? []
            journal!.entries.append(.message(row(of: PublishedMessage(record, index: index), payload: bytes)))
        }
    }

    /// Records the retention bound after a publish: the store keeps the latest messages by count
    /// and age (the messages table is the retained history of a durable topic) and deletes older
    /// ones in one range. The bound by count is also kept here, for statistics.
    @inline(never)
    mutating func journalRetention(now: Duration) {
        let retention = configuration.retention
        if let count = retention.count {
            retainedSince = Swift.max(retainedSince, nextSequence > UInt64(count) ? nextSequence - UInt64(count) : 1)
        }
        journal!.entries.append(
            .retained(keepLast: retention.count, publishedSince: retention.age.map { date(at: now - $0) }))
    }

    /// Records a message whose bytes must be encoded now (a redrive, a returned copy).
    @inline(never)
    mutating func journalMessage(_ message: PublishedMessage) {
        guard journal != nil else { return }
        let bytes = (try? journal!.encode(message.record, message.index)) ?? []
        journal!.entries.append(.message(row(of: message, payload: bytes)))
    }

    func row(of message: PublishedMessage, payload: [UInt8]) -> StoredMessageRow {
        let origin = message.record.origin
        return StoredMessageRow(
            sequence: message.sequenceNumber, id: message.id.rawValue, payload: payload,
            headers: message.headers, priority: message.priority, publishedAt: message.publishedAt,
            originTopic: origin?.topic, originSequence: origin?.sequenceNumber,
            originPublishedAt: origin?.publishedAt)
    }

    @inline(never)
    mutating func journalCopies(_ index: Int, first: UInt64, count: Int, visibleAt: Duration?) {
        guard isJournaled(index) else { return }
        journal!.entries.append(
            .copies(
                subscription: subscriptions[index].name, first: first, count: count,
                visibleAt: visibleAt.map(date(at:))))
    }

    @inline(never)
    mutating func journalRemoved(_ index: Int, _ sequences: [UInt64]) {
        guard isJournaled(index), !sequences.isEmpty else { return }
        journal!.entries.append(.removed(subscription: subscriptions[index].name, sequences: sequences))
    }

    @inline(never)
    mutating func journalRemoved(_ index: Int, runs: borrowing Deque<MessageRun>) {
        guard isJournaled(index) else { return }
        journalRemoved(index, runs.flatMap { $0.messages.map(\.sequenceNumber) })
    }

    @inline(never)
    mutating func journalDelivered(_ index: Int, _ pending: Pending) {
        guard isJournaled(index) else { return }
        journal!.entries.append(
            .delivered(
                subscription: subscriptions[index].name, sequence: pending.stored.sequenceNumber,
                attempts: pending.attempts, firstDeliveredAt: firstDeliveryDate(of: pending)))
    }

    @inline(never)
    mutating func journalRetry(_ index: Int, _ pending: Pending, visibleAt: Duration?) {
        guard isJournaled(index) else { return }
        journal!.entries.append(
            .retry(
                subscription: subscriptions[index].name, sequence: pending.stored.sequenceNumber,
                attempts: pending.attempts, visibleAt: visibleAt.map(date(at:)), lastError: pending.lastError))
    }

    /// A copy that was removed when it was taken comes back (an automatic subscription's consumer
    /// ended before handing it out).
    @inline(never)
    mutating func journalReinserted(_ index: Int, _ pending: Pending) {
        guard isJournaled(index) else { return }
        journalMessage(pending.stored)
        journalCopies(index, first: pending.stored.sequenceNumber, count: 1, visibleAt: nil)
        if pending.attempts > 0 { journalRetry(index, pending, visibleAt: nil) }
    }

    @inline(never)
    mutating func journalPurged(_ index: Int) {
        guard isJournaled(index) else { return }
        journal!.entries.append(.purged(subscription: subscriptions[index].name))
    }

    /// The sequence numbers of what a subscription holds waiting (visible or delayed).
    func waitingSequences(_ index: Int) -> [UInt64] {
        let subscription = subscriptions[index]
        return subscription.retries.map(\.stored.sequenceNumber) + subscription.ready.sequenceNumbers()
            + subscription.scheduled.values.map(\.pending.stored.sequenceNumber)
    }
}
