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

/// The proof of one claim: the shared backends' receipt (`<subscription>.<sequence>.<claim>`).
package typealias PostgresReceipt = SharedReceipt

/// A copy a claim took: the message, and the state of this delivery.
package typealias ClaimedCopy = SharedClaim

/// A subscription's copies by state, counted by the database.
package typealias CopyCounts = SharedCounts

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
