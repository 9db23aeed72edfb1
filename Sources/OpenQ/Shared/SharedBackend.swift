// The seam to a backend whose database decides: topics shared by many brokers, and their operations.

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// A backend in which a database, not this process's memory, decides who gets which message, so
/// that many brokers on one database share its topics (`OpenQPostgres`'s `.postgres(...)`).
///
/// The in-process engine (memory, and SQLite through the journal) decides under the topic's lock
/// and records its decisions; a shared backend has no such owner. A receive is a claim in the
/// database, visibility is a column compared with the database's clock, sequence numbers come from
/// the database, and nothing is loaded on start. ``TopicRuntime`` forwards a shared topic's
/// operations to its ``SharedTopicEngine``; the public types (``Topic``, ``Subscription``,
/// ``Delivery``, ``Consumer``) stay as they are.
package protocol SharedBackend: Sendable {
    /// Creates the topic in the database, or finds it when it exists with that payload type.
    /// - Throws: ``OpenQError/Code/payloadTypeMismatch`` when it exists with another payload type.
    func openTopic(name: String, payloadType: String, configuration: TopicConfiguration) async throws(OpenQError)
        -> any SharedTopicEngine
    /// Deletes a topic for every broker of the database. - Returns: whether it existed.
    func deleteTopic(name: String) async throws(OpenQError) -> Bool
    /// The topics the database holds.
    func storedTopics() async throws(OpenQError) -> [StoredTopic]
    /// How often a waiting receive looks at the database when nothing woke it.
    var pollInterval: Duration { get }
    /// Releases what the backend holds (its connections, when it runs them).
    func close() async
}

/// One topic's operations on a shared backend, each decided by the database.
package protocol SharedTopicEngine: Sendable {
    /// Publishes messages: a copy for every subscription the topic has when the write commits; all
    /// or none of them.
    func publish(_ messages: [SharedMessage]) async throws(OpenQError) -> SharedPublished
    /// Creates a named subscription, or finds it. - Returns: its id in the database.
    func subscribe(name: String, configuration: SubscriptionConfiguration) async throws(OpenQError) -> Int64
    /// Removes a named subscription and what it holds. - Returns: whether it existed.
    func unsubscribe(name: String) async throws(OpenQError) -> Bool
    /// Claims up to `max` visible messages of a subscription for `visibilityTimeout`.
    func claim(subscription: Int64, max: Int, visibilityTimeout: Duration) async throws(OpenQError) -> [SharedClaim]
    /// Acknowledges claims of one subscription. - Returns: the sequence numbers acknowledged.
    func ack(subscription: Int64, _ receipts: [SharedReceipt]) async throws(OpenQError) -> Set<Int64>
    /// A failed attempt (`reject`: dead-letter now). - Returns: whether the receipt still held.
    func fail(_ receipt: SharedReceipt, delay: Duration, error: String?, reject: Bool) async throws(OpenQError)
        -> Bool
    /// Gives claims back that were never handed out: visible now, their attempt not counted.
    func unclaim(_ receipts: [SharedReceipt]) async throws(OpenQError)
    /// Sets a claim's visibility to `duration` from the database's now. - Returns: whether it held.
    func extend(_ receipt: SharedReceipt, by duration: Duration) async throws(OpenQError) -> Bool
    /// Each subscription's messages by state, counted by the database now.
    func counts() async throws(OpenQError) -> [String: SharedCounts]
    /// Where the topic's dead letters go: after `maxDeliveries` (`nil`: never), into the topic
    /// named `deadLetterTopic` (`nil`: they are dropped).
    func setDeadLetters(maxDeliveries: Int?, into deadLetterTopic: String?) async throws(OpenQError)
}

/// A message to publish on a shared backend, its payload already encoded.
package struct SharedMessage: Sendable {
    package var payload: [UInt8]
    package var headers: [String: String]
    package var priority: Int
    /// How long after the publish the message becomes visible.
    package var delay: Duration

    package init(payload: [UInt8], headers: [String: String], priority: Int, delay: Duration) {
        self.payload = payload
        self.headers = headers
        self.priority = priority
        self.delay = delay
    }
}

/// What a shared publish wrote: consecutive ids and sequence numbers from the first.
package struct SharedPublished: Sendable {
    package var firstID: MessageID
    package var firstSequence: UInt64
    package var count: Int
    /// How many subscriptions got a copy of each message.
    package var subscriptions: Int

    package init(firstID: MessageID, firstSequence: UInt64, count: Int, subscriptions: Int) {
        self.firstID = firstID
        self.firstSequence = firstSequence
        self.count = count
        self.subscriptions = subscriptions
    }
}

/// The proof of one claim on a shared backend: which subscription's copy of which message, and
/// the nonce the claim gave it. A sequence number and an attempt do not identify a delivery (a
/// redrive starts attempts again); the nonce does. Written as `<subscription>.<sequence>.<claim>`,
/// so that another broker of the same database can settle it.
package struct SharedReceipt: Sendable, Hashable, CustomStringConvertible {
    package var subscription: Int64
    package var sequence: Int64
    package var claim: Int64

    package init(subscription: Int64, sequence: Int64, claim: Int64) {
        self.subscription = subscription
        self.sequence = sequence
        self.claim = claim
    }

    /// `<subscription>.<sequence>.<claim>`.
    package var description: String { "\(subscription).\(sequence).\(claim)" }

    /// Reads a receipt written by ``description``; `nil` for anything else.
    package init?(_ text: String) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let subscription = Int64(parts[0]), let sequence = Int64(parts[1]),
            let claim = Int64(parts[2])
        else { return nil }
        self.init(subscription: subscription, sequence: sequence, claim: claim)
    }
}

/// A message a claim took, and the state of this delivery.
package struct SharedClaim: Sendable {
    package var receipt: SharedReceipt
    package var id: MessageID
    /// 1 for the first delivery, one more per claim since.
    package var attempts: Int
    /// When the claim runs out, by the database's clock.
    package var visibleUntil: Date
    package var firstDeliveredAt: Date
    package var payload: [UInt8]
    package var headers: [String: String]
    package var priority: Int
    package var publishedAt: Date
    /// The error of the last failed attempt, if one was given.
    package var lastError: String?

    package var sequence: UInt64 { UInt64(receipt.sequence) }

    package init(
        receipt: SharedReceipt, id: MessageID, attempts: Int, visibleUntil: Date, firstDeliveredAt: Date,
        payload: [UInt8], headers: [String: String], priority: Int, publishedAt: Date, lastError: String?
    ) {
        self.receipt = receipt
        self.id = id
        self.attempts = attempts
        self.visibleUntil = visibleUntil
        self.firstDeliveredAt = firstDeliveredAt
        self.payload = payload
        self.headers = headers
        self.priority = priority
        self.publishedAt = publishedAt
        self.lastError = lastError
    }
}

/// A subscription's messages by state, counted by the database.
package struct SharedCounts: Sendable, Hashable {
    /// Visible now (including those whose claim ran out).
    package var waiting = 0
    /// Waiting for a delay or a retry backoff.
    package var scheduled = 0
    /// Claimed and not yet visible again.
    package var inFlight = 0

    package init(waiting: Int = 0, scheduled: Int = 0, inFlight: Int = 0) {
        self.waiting = waiting
        self.scheduled = scheduled
        self.inFlight = inFlight
    }

    package var total: Int { waiting + scheduled + inFlight }
}
