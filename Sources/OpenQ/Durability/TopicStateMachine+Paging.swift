// Paging in the state machine: which waiting messages stay in memory, which wait in the file, pages back.

import DequeModule

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Paging: a named subscription of a durable topic keeps at most ``TopicStateMachine/residentLimit``
/// messages waiting for their first delivery in memory; the others wait in the store only, and
/// are read back in pages, in delivery order, as consumers drain the ones in memory.
///
/// The store holds every copy anyway (the journal wrote it), so moving a message out of memory
/// writes nothing: the subscription only remembers, per priority level, where its stored messages
/// start. Delivery order holds across the page boundary:
///
/// - within a level, first deliveries stay in publish order: once a level has messages in the
///   store, every new message of that level goes to the store behind them;
/// - across levels, a message never waits in memory while a more urgent one waits in the store:
///   a new message goes to the store while any level at or above its priority has stored
///   messages, and a more urgent message that finds memory full moves the newest message of the
///   least urgent level back to the store to make room (that message's sequence number is kept,
///   8 bytes, and it is read back first when its level's turn comes);
/// - delayed messages, retries and deliveries in flight stay in memory (they are not counted
///   against the limit).
///
/// A page-in is requested under the lock (``Journal/pageIns``) when the messages in memory fall
/// to half the limit; ``TopicRuntime`` waits until everything journaled so far is committed,
/// reads the page outside the lock and hands it to ``pagedIn(_:messages:now:)``. A purge, a seek
/// or the removal of the subscription bumps its `generation`, so a page read before is dropped.
extension TopicStateMachine {
    /// The stored messages of one subscription, by priority level.
    struct Paging {
        struct Level {
            var priority: Int
            /// Copies of this level whose sequence number is at least `from` wait in the store
            /// (`rangeCount` of them); every copy of this level that memory holds or held is below.
            var from: UInt64
            var rangeCount: Int
            /// Copies moved back to the store to make room for more urgent ones, in delivery
            /// order; all below `from`.
            var evicted: Deque<UInt64> = []

            var count: Int { rangeCount + evicted.count }
        }

        /// By descending priority; a level with nothing stored is removed.
        private(set) var levels: [Level] = []
        /// Copies waiting in the store only.
        private(set) var stored = 0
        /// A page-in is under way.
        var reading = false
        /// Bumped when stored copies go other than by paging in (purge, seek).
        var generation: UInt64 = 0
        /// A replay of retained messages was journaled (a subscription created at a position in
        /// the past, or a seek) and its copies are not counted yet: until they are
        /// (``mergeReplayed(_:)``), every new message waits in the store behind them and nothing
        /// is paged in.
        var replayPending = false
        /// The replay pending copies messages below this sequence number.
        var replayBefore: UInt64 = 0

        /// Whether a new message of `priority` must wait in the store: a level at or above it has
        /// stored messages (or a replay is about to put older ones there).
        func holdsLevel(atLeast priority: Int) -> Bool {
            if replayPending { return true }
            guard let first = levels.first else { return false }
            return first.priority >= priority
        }

        /// Counts the copies a replay put in the store (all older than any message stored since):
        /// each level now starts at its replayed messages.
        mutating func mergeReplayed(_ replayed: [StoredLevel]) {
            for level in replayed where level.count > 0 {
                let index = levelIndex(level.priority)
                if index < levels.count, levels[index].priority == level.priority {
                    levels[index].from = Swift.min(levels[index].from, level.from)
                    levels[index].rangeCount += level.count
                } else {
                    levels.insert(Level(priority: level.priority, from: level.from, rangeCount: level.count), at: index)
                }
                stored += level.count
            }
            replayPending = false
        }

        /// A new message of `priority` waits in the store.
        mutating func store(_ sequence: UInt64, priority: Int) {
            let index = levelIndex(priority)
            if index < levels.count, levels[index].priority == priority {
                if levels[index].rangeCount == 0 { levels[index].from = sequence }
                levels[index].rangeCount += 1
            } else {
                levels.insert(Level(priority: priority, from: sequence, rangeCount: 1), at: index)
            }
            stored += 1
        }

        /// A message that waited in memory goes back to the store (the newest of its level, so
        /// every message of the level still in memory is delivered before it).
        mutating func evict(_ sequence: UInt64, priority: Int) {
            let index = levelIndex(priority)
            if index < levels.count, levels[index].priority == priority {
                levels[index].evicted.prepend(sequence)
            } else {
                levels.insert(Level(priority: priority, from: .max, rangeCount: 0, evicted: [sequence]), at: index)
            }
            stored += 1
        }

        /// The next page to read: the most urgent level's evicted messages first, then its range.
        func nextPage(limit: Int) -> (priority: Int, sequences: [UInt64], from: UInt64, limit: Int)? {
            guard !replayPending, let level = levels.first, limit > 0 else { return nil }
            if !level.evicted.isEmpty {
                return (level.priority, Array(level.evicted.prefix(limit)), level.from, 0)
            }
            return (level.priority, [], level.from, Swift.min(limit, level.rangeCount))
        }

        /// Accounts for the part of a page that memory took: `taken` (in the order read) leave
        /// the store's side. A page asked by number takes them out of the evicted ones; a range
        /// moves `from` past the last. `nothingThere`: the range read found no row although
        /// everything journaled before the read was committed, so the count is wrong (a copy
        /// removed behind the subscription's back): the range is forgotten rather than asked for
        /// forever.
        mutating func pagedIn(priority: Int, byNumber: Bool, taken: [UInt64], nothingThere: Bool) {
            let index = levelIndex(priority)
            guard index < levels.count, levels[index].priority == priority else { return }
            if byNumber {
                let gone = Set(taken)
                let before = levels[index].evicted.count
                levels[index].evicted.removeAll { gone.contains($0) }
                stored -= before - levels[index].evicted.count
            } else if let last = taken.last {
                let count = Swift.min(taken.count, levels[index].rangeCount)
                levels[index].from = last + 1
                levels[index].rangeCount -= count
                stored -= count
            } else if nothingThere {
                stored -= levels[index].rangeCount
                levels[index].rangeCount = 0
            }
            if levels[index].count == 0 { levels.remove(at: index) }
        }

        /// Whether a page read for `request` is still the next one to deliver: no more urgent level
        /// went to the store meanwhile, and no message of its level older than the page was moved
        /// back to the store (an evicted one) while it was read.
        func isStillNext(_ request: PageInRequest) -> Bool {
            // A more urgent level is first, or the level has nothing left in the store.
            guard let first = levels.first, first.priority == request.priority else { return false }
            return request.sequences.isEmpty ? first.evicted.isEmpty : first.evicted.first == request.sequences.first
        }

        /// Forgets every stored message (they were purged); a page read before is dropped.
        mutating func removeAll() -> Int {
            let removed = stored
            levels = []
            stored = 0
            reading = false
            replayPending = false
            generation += 1
            return removed
        }

        /// What recovery found in the store beyond the messages it loaded.
        mutating func restore(_ recovered: [StoredLevel]) {
            levels = recovered.filter { $0.count > 0 }.sorted { $0.priority > $1.priority }.map {
                Level(priority: $0.priority, from: $0.from, rangeCount: $0.count)
            }
            stored = levels.reduce(0) { $0 + $1.count }
        }

        /// Where the level of `priority` is, or would be inserted.
        private func levelIndex(_ priority: Int) -> Int {
            levels.firstIndex { $0.priority <= priority } ?? levels.count
        }
    }

    /// Whether a subscription pages: a named subscription of a durable topic with a limit.
    func pages(_ index: Int) -> Bool {
        residentLimit != .max && isJournaled(index)
    }

    /// Puts a message that is visible now into a paging subscription: into memory, or into the
    /// store only (see the type's documentation). Its copy is journaled by the caller either way.
    /// - Parameter restored: the message keeps an older sequence number (a redrive, a dead letter
    ///   kept): in the store it is remembered by number, never by a range that starts at it (a
    ///   range from an old sequence number would take in the newer messages memory holds).
    mutating func admit(_ message: PublishedMessage, into index: Int, restored: Bool = false) {
        let priority = message.priority
        func store() {
            if restored {
                subscriptions[index].paging.evict(message.sequenceNumber, priority: priority)
            } else {
                subscriptions[index].paging.store(message.sequenceNumber, priority: priority)
            }
        }
        if subscriptions[index].paging.holdsLevel(atLeast: priority) {
            store()
            return
        }
        if subscriptions[index].ready.count >= residentLimit {
            guard let evicted = subscriptions[index].ready.popNewest(below: priority) else {
                store()
                return
            }
            subscriptions[index].paging.evict(evicted.sequenceNumber, priority: evicted.priority)
        }
        subscriptions[index].ready.append(message)
    }

    /// Asks for the next page of a paging subscription when its messages in memory fell to half
    /// the limit and the store holds more.
    @inline(never)
    mutating func requestPageInIfNeeded(_ index: Int) {
        guard pages(index), !isFinished, subscriptions[index].paging.stored > 0, !subscriptions[index].paging.reading,
            subscriptions[index].ready.count <= residentLimit / 2,
            let page = subscriptions[index].paging.nextPage(limit: residentLimit - subscriptions[index].ready.count)
        else { return }
        subscriptions[index].paging.reading = true
        journal!.pageIns.append(
            PageInRequest(
                subscription: subscriptions[index].id, name: subscriptions[index].name,
                generation: subscriptions[index].paging.generation, priority: page.priority,
                sequences: page.sequences, from: page.from, limit: page.limit))
    }

    /// A page came back from the store, in the order read: each row's message, or `nil` for a
    /// payload that no longer decoded (quarantined). Memory takes what fits, unless a more urgent
    /// level went to the store meanwhile (then the page waits for its turn again: taking it would
    /// let less urgent messages be delivered first).
    mutating func pagedIn(
        _ request: PageInRequest,
        rows: [(sequence: UInt64, message: PublishedMessage?)],
        now: Duration
    ) -> Effects {
        var effects = Effects()
        guard let index = index(of: request.subscription),
            subscriptions[index].paging.generation == request.generation
        else { return effects }
        subscriptions[index].paging.reading = false
        guard subscriptions[index].paging.isStillNext(request) else {
            requestPageInIfNeeded(index)
            return effects
        }
        // What fits: messages published while the page was read may have filled memory.
        var room = Swift.max(0, residentLimit - subscriptions[index].ready.count)
        var taken: [UInt64] = []
        for row in rows {
            if let message = row.message {
                guard room > 0 else { break }
                room -= 1
                subscriptions[index].ready.append(message)
            }
            taken.append(row.sequence)
        }
        subscriptions[index].paging.pagedIn(
            priority: request.priority, byNumber: !request.sequences.isEmpty, taken: taken,
            nothingThere: rows.isEmpty && request.sequences.isEmpty)
        serveWaiters(index, now: now, effects: &effects)
        requestPageInIfNeeded(index)
        return effects
    }

    /// A page could not be read (the store failed): the next take asks again.
    mutating func pageInFailed(_ request: PageInRequest) {
        guard let index = index(of: request.subscription),
            subscriptions[index].paging.generation == request.generation
        else { return }
        subscriptions[index].paging.reading = false
    }

    // MARK: Replay from the store

    /// Starts a replay of a durable topic's retained messages into a named subscription (created
    /// at a position in the past, or sought): the store copies them into the subscription in one
    /// statement, and ``replayCounted(_:levels:now:)`` counts them once that is committed.
    mutating func journalReplay(_ index: Int, from position: StartPosition, now: Duration) {
        guard isJournaled(index), configuration.retention.isEnabled, position != .latest else { return }
        var fromSequence: UInt64 = 1
        var since: Date?
        switch position {
        case .latest: return
        case .earliest: break
        case .sequenceNumber(let first): fromSequence = first
        case .time(let time): since = time
        }
        if let age = configuration.retention.age {
            let cutoff = date(at: now - age)
            since = since.map { Swift.max($0, cutoff) } ?? cutoff
        }
        subscriptions[index].paging.replayPending = true
        subscriptions[index].paging.replayBefore = nextSequence
        journal!.entries.append(
            .replayed(
                subscription: subscriptions[index].name, fromSequence: fromSequence, publishedSince: since,
                before: nextSequence))
    }

    /// The subscription's name and the bound of its replay, while it waits for the replay to be
    /// counted.
    func pendingReplay(_ id: SubscriptionID) -> (name: String, before: UInt64)? {
        guard let index = index(of: id), subscriptions[index].paging.replayPending else { return nil }
        return (subscriptions[index].name, subscriptions[index].paging.replayBefore)
    }

    /// The store committed a replay's copies and counted them (by priority level): they wait in
    /// the store, ahead of everything published since, and are paged in like any backlog.
    /// - Returns: how many messages the replay enqueued.
    mutating func replayCounted(_ id: SubscriptionID, levels: [StoredLevel], now: Duration) -> (Int, Effects) {
        var effects = Effects()
        guard let index = index(of: id), subscriptions[index].paging.replayPending else { return (0, effects) }
        let count = levels.reduce(0) { $0 + $1.count }
        subscriptions[index].paging.mergeReplayed(levels)
        subscriptions[index].counters.routed += count
        requestPageInIfNeeded(index)
        serveWaiters(index, now: now, effects: &effects)
        return (count, effects)
    }

    /// Asks for a page for every paging subscription that needs one (after recovery, or after a
    /// failed read).
    mutating func requestPageIns() {
        for index in subscriptions.indices { requestPageInIfNeeded(index) }
    }
}

/// A page a paging subscription asks its store for: evicted messages by number, or up to
/// `limit` messages of one priority level from sequence number `from` on.
package struct PageInRequest: Sendable {
    let subscription: SubscriptionID
    package let name: String
    let generation: UInt64
    package let priority: Int
    package let sequences: [UInt64]
    package let from: UInt64
    package let limit: Int
}

/// One priority level of a subscription's messages that recovery left in the store: `count`
/// copies of that priority from sequence number `from` on.
package struct StoredLevel: Sendable, Hashable {
    package var priority: Int
    package var from: UInt64
    package var count: Int

    package init(priority: Int, from: UInt64, count: Int) {
        self.priority = priority
        self.from = from
        self.count = count
    }
}
