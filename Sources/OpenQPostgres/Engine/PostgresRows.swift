// What the PostgreSQL engine takes and gives back: messages to publish, claimed copies, receipts, counts.

import Foundation
import OpenQ

/// A message to publish, as the engine writes it: its payload already encoded.
package struct OutgoingMessage: Sendable {
    package var payload: [UInt8]
    package var headers: [String: String]
    package var priority: Int
    /// How long after the publish its copies become visible (0: at once).
    package var delay: Duration

    package init(payload: [UInt8], headers: [String: String] = [:], priority: Int = 0, delay: Duration = .zero) {
        self.payload = payload
        self.headers = headers
        self.priority = priority
        self.delay = delay
    }
}

/// What a publish wrote: consecutive sequence numbers (and ids) from `firstSequence` on.
package struct PublishedRange: Sendable, Hashable {
    package var topic: Int64
    package var firstSequence: UInt64
    package var count: Int
    /// How many subscriptions got a copy of each message (0: nobody subscribed, nothing kept).
    package var subscriptions: Int

    package var sequences: Range<UInt64> { firstSequence..<firstSequence + UInt64(count) }
    package var firstID: MessageID { PostgresEngine.messageID(topic: topic, sequence: firstSequence) }
}

/// The proof of one claim: which copy, and the nonce the claim gave it. Sequence number and
/// attempt do not identify a delivery (a redrive starts attempts again); the nonce, from a
/// database sequence, does. Serializable, so that another broker of the same database can settle
/// it.
package struct PostgresReceipt: Sendable, Hashable, CustomStringConvertible {
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

/// A copy a claim took: the message, and the state of this delivery.
package struct ClaimedCopy: Sendable {
    package var receipt: PostgresReceipt
    package var id: MessageID
    /// 1 for the first delivery, one more per claim since.
    package var attempts: Int
    /// When the claim runs out (the database's clock).
    package var visibleUntil: Date
    package var firstDeliveredAt: Date
    package var payload: [UInt8]
    package var headers: [String: String]
    package var priority: Int
    package var publishedAt: Date
    /// The error of the last failed attempt, if one was given.
    package var lastError: String?

    package var sequence: UInt64 { UInt64(receipt.sequence) }
}

/// A subscription's copies by state, counted by the database.
package struct CopyCounts: Sendable, Hashable {
    package var waiting = 0
    package var scheduled = 0
    package var inFlight = 0

    package init(waiting: Int = 0, scheduled: Int = 0, inFlight: Int = 0) {
        self.waiting = waiting
        self.scheduled = scheduled
        self.inFlight = inFlight
    }
}

/// Headers as the `messages.headers` column keeps them: a JSON object of strings.
enum HeadersJSON {
    static func encode(_ headers: [String: String]) throws(OpenQError) -> String {
        if headers.isEmpty { return "{}" }
        do {
            let encoder = JSONEncoder()
            encoder.outputFormatting = .sortedKeys
            return String(decoding: try encoder.encode(headers), as: UTF8.self)
        } catch {
            throw OpenQError(.encodingFailed, "headers could not be written as JSON: \(error)")
        }
    }

    static func decode(_ text: String) throws(OpenQError) -> [String: String] {
        if text == "{}" { return [:] }
        do {
            return try JSONDecoder().decode([String: String].self, from: Data(text.utf8))
        } catch {
            throw OpenQError(.storeCorrupted, "a message's headers in PostgreSQL are not a JSON object of strings")
        }
    }
}
