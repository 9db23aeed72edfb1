// Published messages as a topic holds them: one typed record per publish call, shared by every subscription.

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// The messages of one publish call as a topic holds them: one allocation per call, shared by
/// every subscription, delivery and retained copy of them.
///
/// `publish(_:)` makes a record of one message, `publish(contentsOf:)` one record of the whole
/// batch. The messages of a record share their headers, priority and publish time; their ids and
/// sequence numbers are consecutive (`firstID + index`, `firstSequence + index`), so a batch is
/// stamped once, not per message. Subscriptions queue a batch as one ``MessageRun``.
///
/// The publishing shell allocates a ``TypedRecord`` with the typed payloads; the topic stamps the
/// identity (`firstID`, `topic`, `firstSequence`, `publishedAt`) once, under the topic's lock,
/// before any other task can reach the record; after that nothing mutates it. That is why the
/// class can be `@unchecked Sendable`: every later reader got the reference through the same lock.
///
/// The broker core (``TopicStateMachine``) sees only this non-generic base class, so it is compiled
/// once and fully specialized; the typed shells get their payloads back with `unsafeDowncast`,
/// which costs nothing. A topic only ever holds `TypedRecord<Payload>` instances of its own payload
/// type: publishing goes through `Topic<Payload>`, whose type the broker checks on lookup, and
/// dead letters and redrives only move between topics that carry the same type.
@usableFromInline
class MessageRecord: @unchecked Sendable {
    // The stamped fields skip the runtime's dynamic exclusivity checks: they are written once,
    // under the topic's lock, before any other task can reach the record, and only read after.

    /// The id of the first message; `MessageID.unassigned.rawValue` until the topic stamps it.
    /// Preset for a one-message copy that keeps its identity (a dead letter, a redrive).
    @exclusivity(unchecked) @usableFromInline final var firstID: UInt64
    @exclusivity(unchecked) @usableFromInline final var topic = ""
    @exclusivity(unchecked) @usableFromInline final var firstSequence: UInt64 = 0
    @exclusivity(unchecked) @usableFromInline final var publishedAt = Date(timeIntervalSince1970: 0)
    @usableFromInline final let headers: [String: String]
    @usableFromInline final let priority: Int
    /// How many messages the record holds (at least 1).
    @usableFromInline final let count: Int

    @usableFromInline
    init(count: Int, headers: [String: String], priority: Int, firstID: MessageID) {
        precondition(count >= 1 && count <= Int(UInt32.max), "A record holds 1...\(UInt32.max) messages")
        self.count = count
        self.headers = headers
        self.priority = priority
        self.firstID = firstID.rawValue
    }

    /// Stamps the identity; called once, by the topic, under its lock. A preset id is kept.
    final func stamp(firstID: UInt64, topic: String, firstSequence: UInt64, publishedAt: Date) {
        if self.firstID == MessageID.unassigned.rawValue { self.firstID = firstID }
        self.topic = topic
        self.firstSequence = firstSequence
        self.publishedAt = publishedAt
    }

    /// A one-message copy of the message at `index` with other headers, the same payload and the
    /// same identity. The topic that takes it in stamps it again, except its preset id. A dead
    /// letter's copy remembers its `origin`, which redrive restores.
    func copy(at index: Int, headers: [String: String], origin: MessageOrigin?) -> MessageRecord {
        preconditionFailure("MessageRecord is abstract; topics hold TypedRecord instances only")
    }

    /// For a dead letter: its identity in the topic it was dead-lettered from; `nil` otherwise.
    var origin: MessageOrigin? { nil }

    /// Gives a one-message copy that no other task can reach yet the identity it has in another
    /// topic (a redriven message, back in its source topic).
    final func restamp(as origin: MessageOrigin) {
        topic = origin.topic
        firstSequence = origin.sequenceNumber
        publishedAt = origin.publishedAt
    }

    final func copyStamps(of index: Int, from other: MessageRecord) {
        topic = other.topic
        firstSequence = other.sequenceNumber(at: index)
        publishedAt = other.publishedAt
    }

    /// The id of the message at `index`.
    @inlinable final func id(at index: Int) -> MessageID { MessageID(rawValue: firstID &+ UInt64(index)) }
    /// The sequence number of the message at `index`.
    @inlinable final func sequenceNumber(at index: Int) -> UInt64 { firstSequence &+ UInt64(index) }
}

/// A ``MessageRecord`` with its typed payloads, allocated by the publishing ``Topic``.
///
/// Not `final` only so that a dead letter's copy (``DeadLetterRecord``) can remember where it came
/// from; every member is `final`, so reading a payload is a direct call.
@usableFromInline
class TypedRecord<Payload: Sendable>: MessageRecord, @unchecked Sendable {
    /// One message's payload is stored inline, so that publishing one message costs one
    /// allocation; a batch keeps the array it was published from. Two fields rather than an enum
    /// of the two cases: reading an element of an enum's array payload retains and releases the
    /// array each time (two atomic operations per message read, a quarter of a consumer's time on
    /// batches), while a stored array is indexed in place.
    @usableFromInline final let single: Payload?
    /// The payloads of a batch; empty in a one-message record.
    @usableFromInline final let batch: [Payload]

    /// A record of one message.
    @inlinable
    init(payload: Payload, headers: [String: String], priority: Int, id: MessageID = .unassigned) {
        self.single = payload
        self.batch = []
        super.init(count: 1, headers: headers, priority: priority, firstID: id)
    }

    /// A record of a batch; `payloads` is not empty.
    @inlinable
    init(payloads: [Payload], headers: [String: String], priority: Int) {
        self.single = nil
        self.batch = payloads
        super.init(count: payloads.count, headers: headers, priority: priority, firstID: .unassigned)
    }

    @inlinable
    final func payload(at index: Int) -> Payload {
        batch.isEmpty ? single.unsafelyUnwrapped : batch[index]
    }

    override final func copy(at index: Int, headers: [String: String], origin: MessageOrigin?) -> MessageRecord {
        guard let origin else { return replacing(index: index, payload: payload(at: index), headers: headers) }
        let copy = DeadLetterRecord(
            payload: payload(at: index), headers: headers, priority: priority, id: id(at: index), origin: origin)
        copy.copyStamps(of: index, from: self)
        return copy
    }

    /// A stamped one-message copy of the message at `index` with another payload or other headers:
    /// what setting ``Message/payload`` or ``Message/headers`` makes, so that a `Message` keeps
    /// value semantics.
    @usableFromInline
    final func replacing(index: Int, payload: Payload, headers: [String: String]) -> TypedRecord<Payload> {
        let copy = TypedRecord(
            payload: payload, headers: headers, priority: priority,
            id: id(at: index))
        copy.copyStamps(of: index, from: self)
        return copy
    }
}

/// A dead letter's one-message record: it remembers the message's identity in the topic it was
/// dead-lettered from (its dead-letter topic stamps its own), so that a redriven message is
/// again the message its source topic published: same topic, sequence number and publish time.
final class DeadLetterRecord<Payload: Sendable>: TypedRecord<Payload>, @unchecked Sendable {
    let source: MessageOrigin

    init(payload: Payload, headers: [String: String], priority: Int, id: MessageID, origin: MessageOrigin) {
        self.source = origin
        super.init(payload: payload, headers: headers, priority: priority, id: id)
    }

    override var origin: MessageOrigin? { source }
}

/// A message's identity in a topic: what a dead letter remembers of its source.
struct MessageOrigin: Sendable {
    var topic: String
    var sequenceNumber: UInt64
    var publishedAt: Date
}

/// One message of a record: what subscriptions, deliveries and the retained history hold.
@usableFromInline
struct PublishedMessage: Sendable {
    @usableFromInline let record: MessageRecord
    /// A record holds at most `UInt32.max` messages; 4 bytes leave room in the 16 that ``HandedMessage``
    /// packs around this struct.
    @usableFromInline let storedIndex: UInt32

    @inlinable
    init(_ record: MessageRecord, index: Int = 0) {
        self.record = record
        self.storedIndex = UInt32(truncatingIfNeeded: index)
    }

    /// The message's position in its record.
    @inlinable var index: Int { Int(storedIndex) }

    var id: MessageID { record.id(at: index) }
    var sequenceNumber: UInt64 { record.sequenceNumber(at: index) }
    var publishedAt: Date { record.publishedAt }
    var headers: [String: String] { record.headers }
    var priority: Int { record.priority }

    /// A one-message copy with other headers and the same identity (see
    /// ``MessageRecord/copy(at:headers:origin:)``); a dead letter's copy remembers `origin`.
    func withHeaders(_ headers: [String: String], origin: MessageOrigin? = nil) -> PublishedMessage {
        PublishedMessage(record.copy(at: index, headers: headers, origin: origin))
    }

    /// This message's identity in the topic that holds it.
    var identity: MessageOrigin {
        MessageOrigin(topic: record.topic, sequenceNumber: sequenceNumber, publishedAt: publishedAt)
    }
}

/// Consecutive messages of one record, waiting in a subscription's ``ReadyQueue``: a batch
/// publish is queued as one run per subscription, not message by message. 16 bytes.
@usableFromInline
struct MessageRun: Sendable {
    @usableFromInline let record: MessageRecord
    @usableFromInline private(set) var start: UInt32
    @usableFromInline private(set) var end: UInt32

    init(_ record: MessageRecord, _ range: Range<Int>) {
        self.record = record
        self.start = UInt32(range.lowerBound)
        self.end = UInt32(range.upperBound)
    }

    init(_ message: PublishedMessage) {
        self.init(message.record, message.index..<message.index + 1)
    }

    @inlinable var count: Int { Int(end &- start) }
    var first: PublishedMessage { PublishedMessage(record, index: Int(start)) }

    /// Removes and returns the first message; the run is not empty.
    mutating func popFirst() -> PublishedMessage {
        defer { start &+= 1 }
        return first
    }

    /// Removes and returns the last message; the run is not empty.
    mutating func popLast() -> PublishedMessage {
        end &-= 1
        return PublishedMessage(record, index: Int(end))
    }

    /// Splits off the first `count` messages.
    mutating func prefix(_ count: Int) -> MessageRun {
        let prefix = MessageRun(record, Int(start)..<Int(start) + count)
        start += UInt32(count)
        return prefix
    }

    var messages: some Collection<PublishedMessage> {
        (Int(start)..<Int(end)).lazy.map { [record] in PublishedMessage(record, index: $0) }
    }
}

extension MessageID {
    /// The id of a message the topic has not stamped yet.
    @inlinable static var unassigned: MessageID { MessageID(rawValue: 0) }
}
