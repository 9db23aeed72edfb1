// A message as consumers see it, and its identity (MessageID, MessageHeader).

import Synchronization

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// A message's identity, unique within the process and kept when the message moves to a
/// dead-letter topic and back.
public struct MessageID: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// The raw value; ids grow in allocation order.
    public let rawValue: UInt64

    /// Wraps a raw value, as read back from ``description`` or a dead-letter header.
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    /// A readable description.
    public var description: String { String(rawValue) }

    /// Orders by value.
    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }

    private static let next = Atomic<UInt64>(1)

    /// Reserves `count` consecutive ids and returns the first.
    static func allocate(count: Int = 1) -> UInt64 {
        next.add(UInt64(count), ordering: .relaxed).oldValue
    }

    /// Makes the next id at least `first`: a broker reopening a store continues after the ids its
    /// messages used.
    static func advance(past first: UInt64) {
        var current = next.load(ordering: .relaxed)
        while current < first {
            let (exchanged, original) = next.compareExchange(
                expected: current, desired: first, ordering: .relaxed)
            if exchanged { return }
            current = original
        }
    }
}

/// A message as stored in a topic and handed to consumers.
///
/// ```swift
/// for try await message in try await orders.subscribe() {
///     print(message.sequenceNumber, message.headers["source"] ?? "-", message.payload)
/// }
/// ```
///
/// A `Message` is a value: setting its `payload` or `headers` changes this copy only. Underneath it
/// shares the one immutable record the topic stored (for a batch publish, one record for the whole
/// batch), so copying a message, and fanning it out to many subscriptions, costs a reference count,
/// not a copy of its headers and payload. Keeping a message keeps that record alive; for a message
/// of a large batch, copy out the payload if you keep it long.
public struct Message<Payload: Sendable>: Sendable {
    @usableFromInline var record: TypedRecord<Payload>
    /// The position in the record (at most `UInt32.max`): 12 bytes in all, so that a
    /// ``Delivery`` keeps its attempt count in the tail and stays 64 bytes.
    @usableFromInline var storedIndex: UInt32

    /// The typed view of a message the topic stored; the topic guarantees the type.
    @inlinable
    init(_ stored: PublishedMessage) {
        self.record = unsafeDowncast(stored.record, to: TypedRecord<Payload>.self)
        self.storedIndex = stored.storedIndex
    }

    /// The message at `index` of a record the topic stored; the topic guarantees the type.
    @inlinable
    init(_ record: MessageRecord, index: Int) {
        self.record = unsafeDowncast(record, to: TypedRecord<Payload>.self)
        self.storedIndex = UInt32(truncatingIfNeeded: index)
    }

    @inlinable var index: Int { Int(storedIndex) }

    /// The message's identity, kept across dead-lettering and redrive.
    @inlinable public var id: MessageID { record.id(at: index) }
    /// The name of the topic that holds the message.
    @inlinable public var topic: String { record.topic }
    /// The message's position in its topic: 1 for the first message published to it, then one more
    /// for each message. Replay can start at a sequence number.
    @inlinable public var sequenceNumber: UInt64 { record.sequenceNumber(at: index) }
    /// The typed payload.
    @inlinable public var payload: Payload {
        get { record.payload(at: index) }
        set { replace(payload: newValue, headers: record.headers) }
    }
    /// Free-form string headers. Keys starting with `openq-` are set by OpenQ (see ``MessageHeader``).
    @inlinable public var headers: [String: String] {
        get { record.headers }
        set { replace(payload: record.payload(at: index), headers: newValue) }
    }
    /// The priority: within a subscription, higher priorities are delivered first; messages of the
    /// same priority keep publish order. Default 0.
    @inlinable public var priority: Int { record.priority }
    /// When the message was published, by the broker's clock.
    @inlinable public var publishedAt: Date { record.publishedAt }

    /// Makes this copy its own one-message record, with the same identity.
    @inlinable
    mutating func replace(payload: Payload, headers: [String: String]) {
        record = record.replacing(index: index, payload: payload, headers: headers)
        storedIndex = 0
    }
}

/// The header keys OpenQ itself writes.
public enum MessageHeader {
    /// On a dead-lettered message: the topic it was published to.
    public static let sourceTopic = "openq-source-topic"
    /// On a dead-lettered message: the subscription that gave up on it.
    public static let sourceSubscription = "openq-source-subscription"
    /// On a dead-lettered message: how many times it was delivered.
    public static let attempts = "openq-attempts"
    /// On a dead-lettered message: the last error or rejection reason, if any.
    public static let lastError = "openq-last-error"
    /// On a dead-lettered message: `maxDeliveries` or `rejected`.
    public static let deadLetterReason = "openq-dead-letter-reason"
    /// On a dead-lettered message: when it was first published in its source topic, in seconds
    /// since 1970 as a decimal number (`"1764370000.25"`). Kept when it is dead-lettered again
    /// after a redrive.
    public static let firstPublishedAt = "openq-first-published-at"
    /// On a dead-lettered message: when it was dead-lettered, in seconds since 1970 as a decimal
    /// number.
    public static let deadLetteredAt = "openq-dead-lettered-at"
    /// On a dead-lettered message: its sequence number in the source topic.
    public static let sourceSequenceNumber = "openq-source-sequence-number"
    /// Set by a ``Producer``: the producer's name.
    public static let producer = "openq-producer"
}
