import Foundation
import GRDB
import OpenQ
import OpenQTesting
import Testing

@testable import OpenQSQLite

/// A payload with some bulk, so that a capped file fills up after a few publishes.
struct Blob: Codable, Sendable, Hashable {
    var id: Int
    var bulk = ""

    init(id: Int, bytes: Int = 0) {
        self.id = id
        self.bulk = String(repeating: "x", count: bytes)
    }
}

/// A payload whose encoding always throws.
struct Unencodable: Codable, Sendable {
    struct Refused: Error {}
    init() {}
    init(from decoder: any Decoder) throws {}
    func encode(to encoder: any Encoder) throws { throw Refused() }
}

/// The ids a handler saw.
actor SeenIDs {
    var ids: [Int] = []
    func add(_ id: Int) { ids.append(id) }
}

struct RecordingHandler: MessageHandler {
    let seen: SeenIDs
    func handle(_ message: Message<Blob>) async throws { await seen.add(message.payload.id) }
}

struct Job: Codable, Sendable, Hashable {
    var id: Int
}

/// A payload that is not Codable.
struct Opaque: Sendable {}

let epoch = Date(timeIntervalSince1970: 1_800_000_000)

let durable = TopicConfiguration(durability: .durable)

extension SubscriptionStatistics {
    /// routed == acked + deadLettered + dropped + purged + depth + scheduled + inFlight
    var isBalanced: Bool {
        counters.routed == counters.acked + counters.deadLettered + counters.dropped + counters.purged + depth
            + scheduled + inFlight
    }
}

/// A durable topic that holds a large backlog (its capacity is far above the resident limit).
let largeDurable = TopicConfiguration(capacity: 1_000_000, durability: .durable)

/// A durable topic that keeps the latest `count` messages for replay (and holds large backlogs).
func retaining(_ retention: Retention) -> TopicConfiguration {
    TopicConfiguration(capacity: 1_000_000, retention: retention, durability: .durable)
}
