// The read path of recovery: a topic registered, or what the store holds for it read back.

import GRDB
import OpenQ

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// The read path: registering a topic, or reading back what the store holds for it.
extension SQLiteStore {
    package func openTopic(
        name: String,
        payloadType: String,
        configuration: TopicConfiguration
    ) async throws(OpenQError) -> RecoveredTopic {
        do {
            // GRDB's async write runs on its writer queue: the cooperative pool never blocks on the
            // file (a topic with a million messages takes seconds to read).
            return try await pool.write { db -> RecoveredTopic in
                guard
                    let topic = try Row.fetchOne(
                        db,
                        sql:
                            "SELECT payload_type, configuration, next_sequence, retain_from FROM topics WHERE name = ?",
                        arguments: [name])
                else {
                    try db.execute(
                        sql: "INSERT INTO topics (name, payload_type, configuration, retain_from) VALUES (?, ?, ?, ?)",
                        arguments: [
                            name, payloadType, try JSON.encode(configuration),
                            configuration.retention.isEnabled ? 1 : nil,
                        ])
                    return RecoveredTopic(nextSequence: 1, messages: [], subscriptions: [], quarantined: 0)
                }
                let storedType: String = topic["payload_type"]
                guard storedType == payloadType else {
                    throw OpenQError(
                        .payloadTypeMismatch,
                        "The store holds topic '\(name)' with payload \(storedType), not \(payloadType); declare it "
                            + "with that type, or delete the topic first.")
                }
                let storedConfiguration = try JSON.decode(TopicConfiguration.self, topic["configuration"])
                guard storedConfiguration == configuration else {
                    throw OpenQError(
                        .topicAlreadyExists,
                        "The store holds topic '\(name)' with \(storedConfiguration), not \(configuration); declare it "
                            + "with the stored configuration (MessageQueue.storedTopics() lists it), or delete the "
                            + "topic first.")
                }
                try Self.deleteUnheldMessages(of: name, in: db)
                var needed: [Int64] = []
                var subscriptions: [RecoveredSubscription] = []
                for row in try Row.fetchAll(
                    db, sql: "SELECT name, configuration FROM subscriptions WHERE topic = ? ORDER BY rowid",
                    arguments: [name])
                {
                    let subscription: String = row["name"]
                    let (copies, stored) = try Self.recoverCopies(
                        of: name, subscription: subscription, resident: residentMessages, in: db)
                    needed += copies.map { Int64(bitPattern: $0.sequence) }
                    subscriptions.append(
                        RecoveredSubscription(
                            name: subscription,
                            configuration: try JSON.decode(SubscriptionConfiguration.self, row["configuration"]),
                            copies: copies, stored: stored))
                }
                let messages = try Self.messages(of: name, sequences: needed, in: db)
                let quarantined =
                    try Int.fetchOne(db, sql: "SELECT count(*) FROM quarantine WHERE topic = ?", arguments: [name]) ?? 0
                var recovered = RecoveredTopic(
                    nextSequence: UInt64(bitPattern: topic["next_sequence"]), messages: messages,
                    subscriptions: subscriptions, quarantined: quarantined)
                recovered.retainedSince = (topic["retain_from"] as Int64?).map { UInt64(bitPattern: $0) } ?? 1
                return recovered
            }
        } catch let error as OpenQError {
            throw error
        } catch {
            throw OpenQError.storageFailure(error)
        }
    }

    /// The copies of one subscription that recovery loads, in sequence order, and what it leaves
    /// in the store. Every copy that was delivered, or waits for a delay or a retry backoff, is
    /// loaded; of those never delivered and visible, the first `resident` in delivery order
    /// (priority, then sequence), and the rest stay in the store, counted by priority level.
    static func recoverCopies(
        of topic: String, subscription: String, resident: Int, in db: Database
    ) throws -> (copies: [RecoveredCopy], stored: [StoredLevel]) {
        func copy(_ row: Row) -> RecoveredCopy {
            RecoveredCopy(
                sequence: UInt64(bitPattern: row["sequence"]),
                attempts: row["attempts"],
                visibleAt: (row["visible_at_ms"] as Int64?).map { Date(timeIntervalSince1970: Double($0) / 1_000) },
                lastError: row["last_error"],
                firstDeliveredAt: (row["first_delivered_at_ms"] as Int64?).map {
                    Date(timeIntervalSince1970: Double($0) / 1_000)
                })
        }
        var copies = try Row.fetchAll(
            db,
            sql: """
                SELECT sequence, attempts, visible_at_ms, last_error, first_delivered_at_ms FROM copies
                WHERE topic = ? AND subscription = ? AND (attempts > 0 OR visible_at_ms IS NOT NULL)
                """,
            arguments: [topic, subscription]
        ).map(copy)
        let levels = try Row.fetchAll(
            db,
            sql: """
                SELECT m.priority AS priority, count(*) AS count, min(c.sequence) AS first
                FROM copies c JOIN messages m ON m.topic = c.topic AND m.sequence = c.sequence
                WHERE c.topic = ? AND c.subscription = ? AND c.attempts = 0 AND c.visible_at_ms IS NULL
                GROUP BY m.priority ORDER BY m.priority DESC
                """,
            arguments: [topic, subscription])
        var room = resident
        var stored: [StoredLevel] = []
        for level in levels {
            let priority: Int = level["priority"]
            let count: Int = level["count"]
            let loaded =
                room > 0
                ? try Row.fetchAll(
                    db,
                    sql: """
                        SELECT c.sequence, c.attempts, c.visible_at_ms, c.last_error, c.first_delivered_at_ms
                        FROM copies c JOIN messages m ON m.topic = c.topic AND m.sequence = c.sequence
                        WHERE c.topic = ? AND c.subscription = ? AND c.attempts = 0 AND c.visible_at_ms IS NULL
                            AND m.priority = ?
                        ORDER BY c.sequence LIMIT ?
                        """,
                    arguments: [topic, subscription, priority, Int64(room)]
                ).map(copy) : []
            copies += loaded
            room -= loaded.count
            if count > loaded.count {
                let from = loaded.last.map { $0.sequence + 1 } ?? UInt64(bitPattern: level["first"])
                stored.append(StoredLevel(priority: priority, from: from, count: count - loaded.count))
            }
        }
        copies.sort { $0.sequence < $1.sequence }
        return (copies, stored)
    }

    /// The message rows of `topic` with those sequence numbers (each once), in sequence order.
    static func messages(of topic: String, sequences: [Int64], in db: Database) throws -> [StoredMessageRow] {
        let wanted = Set(sequences)
        let total = try Int.fetchOne(db, sql: "SELECT count(*) FROM messages WHERE topic = ?", arguments: [topic]) ?? 0
        if wanted.count * 4 >= total {
            // Most of them: one pass over the topic.
            return try Row.fetchAll(
                db, sql: "SELECT \(messageColumns) FROM messages WHERE topic = ? ORDER BY sequence",
                arguments: [topic]
            ).compactMap { row in wanted.contains(row["sequence"]) ? messageRow(row) : nil }
        }
        let statement = try db.cachedStatement(
            sql: "SELECT \(messageColumns) FROM messages WHERE topic = ? AND sequence = ?")
        return try wanted.sorted().compactMap { sequence in
            try Row.fetchOne(statement, arguments: [topic, sequence]).map(messageRow)
        }
    }

    static let messageColumns = """
        sequence, id, payload, headers, priority, published_at, origin_topic, origin_sequence, origin_published_at
        """

    /// `messageColumns` of the `messages` table joined as `m` (a page reads them beside `copies`).
    static let joinedMessageColumns = messageColumns.split(separator: ",")
        .map { "m." + $0.trimmingCharacters(in: .whitespaces) }.joined(separator: ", ")

    /// A row of `messageColumns` as a message.
    static func messageRow(_ row: Row) -> StoredMessageRow {
        StoredMessageRow(
            sequence: UInt64(bitPattern: row["sequence"]),
            id: UInt64(bitPattern: row["id"]),
            payload: [UInt8](row["payload"] as Data),
            headers: JSON.decodeHeaders(row["headers"]),
            priority: row["priority"],
            publishedAt: Date(timeIntervalSinceReferenceDate: row["published_at"]),
            originTopic: row["origin_topic"],
            originSequence: (row["origin_sequence"] as Int64?).map { UInt64(bitPattern: $0) },
            originPublishedAt: (row["origin_published_at"] as Double?).map { Date(timeIntervalSinceReferenceDate: $0) })
    }
}
