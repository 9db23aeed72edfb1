#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// A message as a topic holds it: one allocation per published message, shared by every
/// subscription, delivery and retained copy of it.
///
/// The publishing shell allocates a ``TypedMessage`` with the typed payload; the topic stamps its
/// identity (`id`, `topic`, `sequenceNumber`, `publishedAt`) once, under the topic's lock, before
/// any other task can reach it; after that nothing mutates it. That is why the class can be
/// `@unchecked Sendable`: every later reader got the reference through the same lock.
///
/// The broker core (``TopicStateMachine``) sees only this non-generic base class, so it is compiled
/// once and fully specialized; the typed shells get their payload back with `unsafeDowncast`, which
/// costs nothing. A topic only ever holds instances of `TypedMessage<Payload>` for its own payload
/// type: publishing goes through `Topic<Payload>`, whose type the broker checks on lookup, and
/// dead letters and redrives only move between topics that carry the same type.
@usableFromInline
class StoredMessage: @unchecked Sendable {
    // The stamped fields skip the runtime's dynamic exclusivity checks: they are written once,
    // under the topic's lock, before any other task can reach the message, and only read after.

    /// `MessageID.unassigned` until the topic stamps it; preset for a message that keeps its
    /// identity (a dead letter, a redrive).
    @exclusivity(unchecked) @usableFromInline final var id: MessageID
    @exclusivity(unchecked) @usableFromInline final var topic = ""
    @exclusivity(unchecked) @usableFromInline final var sequenceNumber: UInt64 = 0
    @exclusivity(unchecked) @usableFromInline final var publishedAt = Date(timeIntervalSince1970: 0)
    @usableFromInline final let headers: [String: String]
    @usableFromInline final let priority: Int

    @usableFromInline
    init(headers: [String: String], priority: Int, id: MessageID) {
        self.headers = headers
        self.priority = priority
        self.id = id
    }

    /// Stamps the identity; called once, by the topic, under its lock.
    final func stamp(id: MessageID, topic: String, sequenceNumber: UInt64, publishedAt: Date) {
        self.id = id
        self.topic = topic
        self.sequenceNumber = sequenceNumber
        self.publishedAt = publishedAt
    }

    /// A copy with other headers, the same payload and the same identity. The topic that takes it
    /// in stamps it again, except its preset id.
    func withHeaders(_ headers: [String: String]) -> StoredMessage {
        preconditionFailure("StoredMessage is abstract; topics hold TypedMessage instances only")
    }

    final func copyStamps(from other: StoredMessage) {
        topic = other.topic
        sequenceNumber = other.sequenceNumber
        publishedAt = other.publishedAt
    }
}

/// A ``StoredMessage`` with its typed payload, allocated by the publishing ``Topic``.
@usableFromInline
final class TypedMessage<Payload: Sendable>: StoredMessage, @unchecked Sendable {
    @usableFromInline let payload: Payload

    @inlinable
    init(payload: Payload, headers: [String: String], priority: Int, id: MessageID = .unassigned) {
        self.payload = payload
        super.init(headers: headers, priority: priority, id: id)
    }

    override func withHeaders(_ headers: [String: String]) -> StoredMessage {
        replacing(payload: payload, headers: headers)
    }

    /// A stamped copy with another payload or other headers: what setting ``Message/payload`` or
    /// ``Message/headers`` makes, so that a `Message` keeps value semantics.
    @usableFromInline
    func replacing(payload: Payload, headers: [String: String]) -> TypedMessage<Payload> {
        let copy = TypedMessage(payload: payload, headers: headers, priority: priority, id: id)
        copy.copyStamps(from: self)
        return copy
    }
}

extension MessageID {
    /// The id of a message the topic has not stamped yet.
    @inlinable static var unassigned: MessageID { MessageID(rawValue: 0) }
}
