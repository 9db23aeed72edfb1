// The one error type, OpenQError, with its codes.

/// The one error type OpenQ throws.
///
/// Match on ``code`` rather than on the message, which is written for people and may change:
///
/// ```swift
/// do {
///     try await orders.publish(order)
/// } catch let error as OpenQError where error.code == .topicFull {
///     // back off and try again later
/// }
/// ```
///
/// Whatever the error, the broker stays consistent: a call that throws changed nothing, unless its
/// documentation says otherwise.
public struct OpenQError: Error, Hashable, Sendable, CustomStringConvertible {
    /// What went wrong, as a stable value to match on.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: Hashable, Sendable {
            case topicNotFound
            case topicAlreadyExists
            case topicInUse
            case invalidName
            case payloadTypeMismatch
            case topicFull
            case receiptExpired
            case receiptAlreadySettled
            case subscriptionNotFound
            case subscriptionAlreadyExists
            case shutDown
            case invalidConfiguration
            case storeInUse
            case storageFailed
            case storeFull
            case storeReadOnly
            case storeCorrupted
            case storeIncompatible
            case encodingFailed
            case unsupportedOperation
        }

        private let value: Value
        private init(_ value: Value) { self.value = value }

        /// No topic has that name. Create it first, or check the spelling.
        public static let topicNotFound = Self(.topicNotFound)
        /// A topic with that name exists with another payload type or configuration.
        public static let topicAlreadyExists = Self(.topicAlreadyExists)
        /// The topic cannot be deleted because another topic depends on it (a dead-letter topic of a live topic).
        public static let topicInUse = Self(.topicInUse)
        /// A topic or subscription name is empty, longer than 255 characters, or has characters outside `A–Z a–z 0–9 . _ -`.
        public static let invalidName = Self(.invalidName)
        /// The topic exists but carries another payload type than the one asked for.
        public static let payloadTypeMismatch = Self(.payloadTypeMismatch)
        /// The topic (or one of its subscriptions) is full and its overflow policy is `reject`.
        public static let topicFull = Self(.topicFull)
        /// The delivery's visibility timeout passed (or it was purged) before it was settled; the
        /// message may have been handed to another consumer, whose delivery is untouched.
        public static let receiptExpired = Self(.receiptExpired)
        /// The delivery was already acknowledged, negatively acknowledged or rejected.
        public static let receiptAlreadySettled = Self(.receiptAlreadySettled)
        /// No subscription has that name on the topic, or it was removed.
        public static let subscriptionNotFound = Self(.subscriptionNotFound)
        /// A subscription with that name exists with another acknowledgement mode or configuration.
        public static let subscriptionAlreadyExists = Self(.subscriptionAlreadyExists)
        /// The broker (or the topic) was shut down or deleted; it accepts no new work.
        public static let shutDown = Self(.shutDown)
        /// A configuration value is out of range: a zero or negative capacity, timeout or attempt count.
        public static let invalidConfiguration = Self(.invalidConfiguration)
        /// Another broker, in this process or another, owns the store: one broker opens a store at
        /// a time. Shut the other one down first, or use another file.
        public static let storeInUse = Self(.storeInUse)
        /// The durable store failed for a reason no more specific code names (an I/O error, a lock
        /// held too long by an outside reader, ...). The message gives SQLite's.
        ///
        /// When a commit fails with this code, ``storeFull``, ``storeReadOnly`` or
        /// ``storeCorrupted``, the calls waiting for it fail, but their changes are not forgotten:
        /// the broker keeps them, in order, and commits them once the store accepts writes again
        /// (no restart). Such a call is *in doubt*: a publish may still be delivered, an ack may
        /// still take effect. While the fault lasts, publishes and receives on durable topics are
        /// refused at once with the fault's code, before they change anything, and consumers
        /// (``Subscription/deliveries(prefetch:)`` and ``Consumer``s) wait; they go on by themselves when it
        /// clears. ``MessageQueue/storeStatistics()`` reports the fault.
        public static let storageFailed = Self(.storageFailed)
        /// The durable store has no room: the disk is full, or the file reached its page limit.
        /// See ``storageFailed`` for what the broker does meanwhile; free space and it goes on.
        public static let storeFull = Self(.storeFull)
        /// The durable store can only be read: the file, its directory or its mount is read-only.
        /// See ``storageFailed`` for what the broker does meanwhile.
        public static let storeReadOnly = Self(.storeReadOnly)
        /// The durable store's file is damaged, or is not a SQLite database. Opening such a file
        /// fails with this code and leaves it untouched.
        public static let storeCorrupted = Self(.storeCorrupted)
        /// The file is a SQLite database that OpenQ cannot use: another application's database, or
        /// a store written by a newer OpenQ. Opening it fails with this code and leaves it untouched.
        public static let storeIncompatible = Self(.storeIncompatible)
        /// A payload of a durable topic could not be encoded (its `Encodable` conformance, or a
        /// ``PayloadCodec``, threw): nothing of the call was published.
        public static let encodingFailed = Self(.encodingFailed)
        /// The call cannot do what it promises on this topic, such as ``Topic/tryPublish(_:headers:priority:)``
        /// on a durable topic, which would have to wait for a commit.
        public static let unsupportedOperation = Self(.unsupportedOperation)

        /// A readable description.
        public var description: String { "\(value)" }
    }

    /// What went wrong.
    public let code: Code
    /// What happened and what to do about it, for people.
    public let message: String
    /// The source file in OpenQ that raised the error.
    public let file: String
    /// The line in ``file`` that raised the error.
    public let line: Int

    package init(_ code: Code, _ message: String, file: String = #fileID, line: Int = #line) {
        self.code = code
        self.message = message
        self.file = file
        self.line = line
    }

    /// A readable description.
    public var description: String { "OpenQError.\(code): \(message)" }
}

extension OpenQError {
    static func topicNotFound(_ name: String, file: String = #fileID, line: Int = #line) -> Self {
        Self(
            .topicNotFound, "No topic named '\(name)'. Create it with createTopic(_:of:configuration:) first.",
            file: file, line: line)
    }

    static func shutDown(_ what: String, file: String = #fileID, line: Int = #line) -> Self {
        Self(.shutDown, "\(what) was shut down and accepts no new work.", file: file, line: line)
    }

    static func invalidConfiguration(_ message: String, file: String = #fileID, line: Int = #line) -> Self {
        Self(.invalidConfiguration, message, file: file, line: line)
    }

    @usableFromInline
    static func deliveryOfAnotherSubscription(
        _ subscription: String,
        topic: TopicRuntime,
        expected: String,
        expectedTopic: TopicRuntime
    ) -> Self {
        Self(
            .invalidConfiguration,
            "This delivery belongs to subscription '\(subscription)' of topic '\(topic.name)', not to "
                + "'\(expected)' of topic '\(expectedTopic.name)'; settle it with its own ack()."
        )
    }

    static func subscriptionNotFound(
        _ name: String,
        topic: String,
        file: String = #fileID,
        line: Int = #line
    ) -> Self {
        Self(
            .subscriptionNotFound,
            "Topic '\(topic)' has no subscription named '\(name)'; it was never created or was removed.",
            file: file,
            line: line
        )
    }
}

/// Validates topic and subscription names: 1–255 characters of `A–Z a–z 0–9 . _ -`.
func validateName(_ name: String, kind: String) throws(OpenQError) {
    let utf8 = name.utf8
    guard !utf8.isEmpty, utf8.count <= 255 else {
        throw OpenQError(.invalidName, "A \(kind) name needs 1 to 255 characters; '\(name)' has \(utf8.count).")
    }
    for byte in utf8 {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "-"):
            continue
        default:
            throw OpenQError(
                .invalidName,
                "The \(kind) name '\(name)' may only use A–Z a–z 0–9 . _ - (no spaces or other symbols)."
            )
        }
    }
}
