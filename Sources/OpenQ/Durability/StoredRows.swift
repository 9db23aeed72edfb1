// Messages, subscriptions and copies as a store keeps them and gives them back on recovery (package access).

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

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
