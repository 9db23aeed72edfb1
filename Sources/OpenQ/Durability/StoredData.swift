// What a store tells a user about itself: its topics, its quarantine, its size and health.

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

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
