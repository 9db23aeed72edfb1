// What a publish reports: PublishReceipt and tryPublish's PublishResult.

/// What a publish did: the identity the topic gave the messages, and what full subscriptions
/// dropped to take them.
///
/// ```swift
/// let receipt = try await orders.publish(OrderPlaced(id: 1))
/// print(receipt.messageID, receipt.sequenceNumber)
/// if receipt.droppedOlder > 0 { print("a dropOldest subscription shed an older message") }
/// ```
///
/// A publish call's messages get consecutive ids and sequence numbers, so a receipt names them
/// all without allocating. New facts may be added to it later (a de-duplication result, say)
/// without breaking code that reads it.
public struct PublishReceipt: Hashable, Sendable {
    /// The id of the first message the call published (the only one for `publish(_:)`).
    public internal(set) var firstID: MessageID
    /// The sequence number of the first message the call published.
    public internal(set) var firstSequenceNumber: UInt64
    /// How many messages the call published.
    public internal(set) var count: Int
    /// How many older waiting messages `dropOldest` subscriptions dropped to make room for these
    /// (counted as `dropped` in those subscriptions' statistics). 0 when nothing was displaced.
    public internal(set) var droppedOlder: Int = 0
    /// How many copies of these messages full subscriptions dropped instead of enqueuing them
    /// (`dropNewest`, or `dropOldest` with nothing waiting to drop). The messages were accepted;
    /// those subscriptions just do not get them.
    public internal(set) var droppedNew: Int = 0

    init(firstID: MessageID, firstSequenceNumber: UInt64, count: Int) {
        self.firstID = firstID
        self.firstSequenceNumber = firstSequenceNumber
        self.count = count
    }

    /// The id of the (first) message: the message's ``Message/id`` when one was published.
    public var messageID: MessageID { firstID }
    /// The ids of every message published, in order.
    public var messageIDs: [MessageID] {
        (0..<UInt64(count)).map { MessageID(rawValue: firstID.rawValue &+ $0) }
    }
    /// The sequence number of the (first) message: its ``Message/sequenceNumber``.
    public var sequenceNumber: UInt64 { firstSequenceNumber }
    /// The sequence numbers of every message published (empty for an empty batch).
    public var sequenceNumbers: Range<UInt64> {
        firstSequenceNumber..<firstSequenceNumber &+ UInt64(count)
    }
}

/// What ``Topic/tryPublish(_:headers:priority:)`` did with a message.
///
/// ```swift
/// switch orders.tryPublish(OrderPlaced(id: 2)) {
/// case .enqueued(let receipt): print("sequence", receipt.sequenceNumber)
/// case .dropped(let receipt): print("accepted, but \(receipt.droppedNew) full subscriptions dropped it")
/// case .rejected: print("full: try again later")
/// case .failed(let error): print(error)
/// }
/// ```
public enum PublishResult: Hashable, Sendable {
    /// Accepted and enqueued for every subscription. A `dropOldest` subscription may have dropped
    /// an older message to make room: see ``PublishReceipt/droppedOlder``.
    case enqueued(PublishReceipt)
    /// Accepted, but at least one full subscription dropped it (its policy is `dropNewest`, or
    /// `dropOldest` with nothing waiting to drop): see ``PublishReceipt/droppedNew``.
    case dropped(PublishReceipt)
    /// Not accepted: a subscription is full and its policy is `reject` or `suspend`.
    case rejected
    /// Not accepted for another reason, such as shutdown.
    case failed(OpenQError)

    /// The receipt of an accepted message; `nil` when it was rejected or failed.
    public var receipt: PublishReceipt? {
        switch self {
        case .enqueued(let receipt), .dropped(let receipt): receipt
        case .rejected, .failed: nil
        }
    }
}
