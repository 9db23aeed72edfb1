#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

extension MessageQueue {
    /// Where a broker keeps its durable topics.
    ///
    /// The `OpenQ` library has no database driver: a storage comes from a storage library, such as
    /// `OpenQSQLite`'s `.sqlite(path:durability:)`.
    ///
    /// ```swift
    /// import OpenQSQLite
    ///
    /// let queue = try await MessageQueue(storage: .sqlite(path: "data/openq.sqlite"))
    /// ```
    public struct Storage: Sendable {
        package let open: @Sendable () async throws(OpenQError) -> any DurableStore

        /// A storage that opens the store `open` returns. For storage libraries.
        package init(open: @escaping @Sendable () async throws(OpenQError) -> any DurableStore) {
            self.open = open
        }
    }
}

/// A topic as a broker's store holds it: what ``MessageQueue/storedTopics()`` lists, so that a
/// process can reopen topics it did not declare in code.
public struct StoredTopic: Hashable, Sendable {
    /// The topic's name.
    public var name: String
    /// The payload type's name, as `String(reflecting:)` gives it (`"MyApp.Job"`).
    public var payloadType: String
    /// The configuration the topic was created with.
    public var configuration: TopicConfiguration
    /// How many message copies its named subscriptions hold in the store (waiting, delayed or in
    /// flight).
    public var storedCopies: Int

    /// Creates a description.
    package init(name: String, payloadType: String, configuration: TopicConfiguration, storedCopies: Int) {
        self.name = name
        self.payloadType = payloadType
        self.configuration = configuration
        self.storedCopies = storedCopies
    }
}

/// A stored message whose payload no longer decoded when its topic was opened (its type
/// changed): kept in the store's quarantine as raw bytes with the reason, never delivered.
public struct QuarantinedMessage: Hashable, Sendable {
    /// The topic it was stored in.
    public var topic: String
    /// Its sequence number in that topic.
    public var sequenceNumber: UInt64
    /// The payload's stored bytes, as they were.
    public var payload: [UInt8]
    /// Why it was quarantined (the decoder's error).
    public var reason: String
    /// When it was quarantined.
    public var quarantinedAt: Date

    /// Creates a description.
    package init(topic: String, sequenceNumber: UInt64, payload: [UInt8], reason: String, quarantinedAt: Date) {
        self.topic = topic
        self.sequenceNumber = sequenceNumber
        self.payload = payload
        self.reason = reason
        self.quarantinedAt = quarantinedAt
    }
}

/// What a broker's durable store holds and how its writes go: ``MessageQueue/storeStatistics()``.
public struct StoreStatistics: Hashable, Sendable {
    /// The store's file.
    public var path: String
    /// The size of the database file, in bytes.
    public var fileBytes: Int
    /// The size of its write-ahead log (SQLite's `-wal` file), in bytes: bounded by checkpoints,
    /// which copy it into the file and start it again.
    public var walBytes: Int
    /// Transactions committed since the store was opened (each carries the writes of every
    /// caller that arrived meanwhile: group commit).
    public var commits: Int
    /// Journal writes (one per call that changed something) those transactions carried.
    public var committedWrites: Int
    /// Transactions that failed since the store was opened.
    public var failedCommits: Int
    /// Journal writes waiting for a commit (while ``fault`` lasts, the kept ones).
    public var pendingWrites: Int
    /// Why the store cannot commit now (``OpenQError/Code/storeFull``,
    /// ``OpenQError/Code/storeReadOnly``, ...), or `nil` when it commits. While it lasts, durable
    /// topics refuse publishes and receives, and the kept writes are retried.
    public var fault: OpenQError?

    /// Creates statistics.
    package init(
        path: String, fileBytes: Int, walBytes: Int, commits: Int, committedWrites: Int, failedCommits: Int,
        pendingWrites: Int, fault: OpenQError?
    ) {
        self.path = path
        self.fileBytes = fileBytes
        self.walBytes = walBytes
        self.commits = commits
        self.committedWrites = committedWrites
        self.failedCommits = failedCommits
        self.pendingWrites = pendingWrites
        self.fault = fault
    }
}

// MARK: - The seam between the core and a storage library (package access only)

/// A durable store: the write-ahead journal of a broker's durable topics.
///
/// Every call that touches the file is `async` and must not block a thread of Swift's cooperative
/// pool (on 2 cores it has 2 threads: a blocking `fsync` there stalls every task of the process).
///
/// The in-memory state machine decides who gets which message; the store records every decision a
/// caller learns of. The broker appends journal entries under a topic's lock, so the journal holds
/// them in the order the state machine made them; the store commits them in that order, many
/// callers per transaction (group commit), and ``sync()`` returns once everything appended before
/// it is committed.
package protocol DurableStore: AnyObject, Sendable {
    /// Registers a topic, or reads back what the store holds for it.
    /// - Throws: ``OpenQError/Code/payloadTypeMismatch`` or ``OpenQError/Code/topicAlreadyExists``
    ///   when the stored topic has another payload type or configuration;
    ///   ``OpenQError/Code/storageFailed``.
    func openTopic(name: String, payloadType: String, configuration: TopicConfiguration) async throws(OpenQError)
        -> RecoveredTopic
    /// Appends entries of one topic to the journal, to be committed with the next transaction.
    /// Called under the topic's lock: it must not block.
    func append(topic: String, _ entries: [JournalEntry])
    /// The store's fault while it cannot commit (its writes are kept and retried); `nil` when it
    /// commits.
    var fault: OpenQError? { get }
    /// What the store holds and how it writes, for ``MessageQueue/storeStatistics()``.
    func statistics() async throws(OpenQError) -> StoreStatistics
    /// How many entries were appended so far: read before a call makes its decisions, and passed
    /// to ``sync(since:)``.
    var journalMark: UInt64 { get }
    /// Returns once everything appended before the call is committed.
    /// - Throws: ``OpenQError/Code/storageFailed`` when a commit holding anything appended after
    ///   `mark` failed.
    func sync(since mark: UInt64) async throws(OpenQError)
    /// Deletes a topic and everything it holds, through the journal.
    func deleteTopic(_ name: String)
    /// Moves a payload that does not decode to the quarantine, with the reason, and removes the
    /// message and its copies.
    func quarantine(topic: String, sequence: UInt64, payload: [UInt8], reason: String) async throws(OpenQError)
    /// Everything in the quarantine, oldest first.
    func quarantinedMessages() async throws(OpenQError) -> [QuarantinedMessage]
    /// The topics the store holds.
    func storedTopics() async throws(OpenQError) -> [StoredTopic]
    /// How many messages waiting for their first delivery a named subscription of a durable topic
    /// keeps in memory; the others wait in the store and are read back in pages.
    var residentMessages: Int { get }
    /// Reads a page a paging subscription asked for: the messages `request.sequences` names, or
    /// up to `request.limit` copies of the subscription of priority `request.priority` that were
    /// never delivered, from sequence number `request.from` on, in sequence order.
    func readPage(topic: String, _ request: PageInRequest) async throws(OpenQError) -> [StoredMessageRow]
    /// The copies a replay put into a subscription (sequence numbers below `before`, never
    /// delivered), by priority level: what the subscription then pages in.
    func replayedLevels(topic: String, subscription: String, before: UInt64) async throws(OpenQError) -> [StoredLevel]
    /// The first message id that no stored message used: ids continue after a restart.
    var nextMessageID: UInt64 { get }
    /// Commits what is pending and releases the file (and its ownership).
    func close() async
}

/// One decision of a durable topic's state machine, as its journal records it.
package enum JournalEntry: Sendable {
    /// A message entered the topic (stamped); its copies follow as ``copies(subscription:first:count:visibleAt:)``.
    case message(StoredMessageRow)
    /// `count` consecutive messages from `first` entered a subscription's backlog, visible at
    /// `visibleAt` (`nil`: at once), with no attempt yet.
    case copies(subscription: String, first: UInt64, count: Int, visibleAt: Date?)
    /// A message was handed to a consumer of a subscription that tracks deliveries: its attempt
    /// count is now `attempts` (committed before the consumer sees it), first handed out at
    /// `firstDeliveredAt`.
    case delivered(subscription: String, sequence: UInt64, attempts: Int, firstDeliveredAt: Date?)
    /// A copy is gone: acknowledged, handed out at most once, dropped, purged or redriven.
    case removed(subscription: String, sequences: [UInt64])
    /// A copy was dead-lettered; removed only while it still has `attempts` (a redrive may have
    /// put the same message back meanwhile, with none).
    case deadLettered(subscription: String, sequence: UInt64, attempts: Int)
    /// A copy is waiting again (nacked, expired, returned): with `attempts`, visible at `visibleAt`.
    case retry(subscription: String, sequence: UInt64, attempts: Int, visibleAt: Date?, lastError: String?)
    /// A named subscription was created.
    case subscriptionCreated(name: String, configuration: SubscriptionConfiguration)
    /// A named subscription was removed with everything it held.
    case subscriptionRemoved(name: String)
    /// Every copy a subscription holds was purged.
    case purged(subscription: String)
    /// The copies of a subscription that were never delivered were purged (a seek): those in
    /// memory are ``removed(subscription:sequences:)`` too; this reaches those waiting in the
    /// store only.
    case purgedStored(subscription: String)
    /// Sequence numbers up to `next - 1` are used (messages no named subscription keeps).
    case sequenceUsed(next: UInt64)
    /// A durable topic with retention published: keep the latest `keepLast` messages (`nil`: no
    /// bound by count) published since `publishedSince` (`nil`: no bound by age); older messages
    /// that no subscription holds go, in one range.
    case retained(keepLast: Int?, publishedSince: Date?)
    /// Retained messages from `fromSequence`, published since `publishedSince`, up to `before`,
    /// are copied into a subscription (a replay: its creation at a position in the past, or a seek).
    case replayed(subscription: String, fromSequence: UInt64, publishedSince: Date?, before: UInt64)
    /// The topic's configuration changed while it ran (its dead-letter policy).
    case topicConfigured(TopicConfiguration)
}

/// One message as the store keeps it.
package struct StoredMessageRow: Sendable {
    package var sequence: UInt64
    package var id: UInt64
    package var payload: [UInt8]
    package var headers: [String: String]
    package var priority: Int
    package var publishedAt: Date
    /// A dead letter's identity in its source topic.
    package var originTopic: String?
    package var originSequence: UInt64?
    package var originPublishedAt: Date?

    package init(
        sequence: UInt64, id: UInt64, payload: [UInt8], headers: [String: String], priority: Int, publishedAt: Date,
        originTopic: String? = nil, originSequence: UInt64? = nil, originPublishedAt: Date? = nil
    ) {
        self.sequence = sequence
        self.id = id
        self.payload = payload
        self.headers = headers
        self.priority = priority
        self.publishedAt = publishedAt
        self.originTopic = originTopic
        self.originSequence = originSequence
        self.originPublishedAt = originPublishedAt
    }
}

/// What a store holds for one topic when it is opened.
package struct RecoveredTopic: Sendable {
    package var nextSequence: UInt64
    package var messages: [StoredMessageRow]
    package var subscriptions: [RecoveredSubscription]
    /// How many of the topic's payloads the quarantine holds already.
    package var quarantined: Int
    /// The first sequence number the topic's retention still keeps (1: everything, or none).
    package var retainedSince: UInt64 = 1

    package init(
        nextSequence: UInt64, messages: [StoredMessageRow], subscriptions: [RecoveredSubscription], quarantined: Int
    ) {
        self.nextSequence = nextSequence
        self.messages = messages
        self.subscriptions = subscriptions
        self.quarantined = quarantined
    }
}

/// One named subscription as the store holds it, with its copies in sequence order.
package struct RecoveredSubscription: Sendable {
    package var name: String
    package var configuration: SubscriptionConfiguration
    package var copies: [RecoveredCopy]
    /// The copies left in the store (never delivered, visible), by priority level: read back in
    /// pages as consumers drain the ones loaded.
    package var stored: [StoredLevel]

    package init(
        name: String, configuration: SubscriptionConfiguration, copies: [RecoveredCopy], stored: [StoredLevel] = []
    ) {
        self.name = name
        self.configuration = configuration
        self.copies = copies
        self.stored = stored
    }
}

/// One copy: a message a subscription holds, with its attempts and when it is visible.
package struct RecoveredCopy: Sendable {
    package var sequence: UInt64
    package var attempts: Int
    package var visibleAt: Date?
    package var lastError: String?
    package var firstDeliveredAt: Date?

    package init(
        sequence: UInt64, attempts: Int, visibleAt: Date?, lastError: String?, firstDeliveredAt: Date? = nil
    ) {
        self.sequence = sequence
        self.attempts = attempts
        self.visibleAt = visibleAt
        self.lastError = lastError
        self.firstDeliveredAt = firstDeliveredAt
    }
}
