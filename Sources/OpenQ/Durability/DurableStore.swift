// The seam between the core and a storage library (package access): the store of durable topics.

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

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
