// The write path: journal entries as statements of the next group commit (retention ranges, replays).

import GRDB
import OpenQ

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// The write path: journal entries become statements of the next group commit.
extension SQLiteStore {
    package func append(topic: String, _ entries: [JournalEntry]) {
        committer.append { db in try Self.apply(entries, of: topic, in: db) }
    }

    package func deleteTopic(_ name: String) {
        committer.append { db in
            for table in ["copies", "messages", "subscriptions"] {
                try db.execute(sql: "DELETE FROM \(table) WHERE topic = ?", arguments: [name])
            }
            try db.execute(sql: "DELETE FROM topics WHERE name = ?", arguments: [name])
        }
    }

    /// Applies one topic's entries, in order. Every statement tolerates a row that is already gone
    /// (a copy acknowledged twice, a topic deleted meanwhile), so no entry fails a whole commit.
    static func apply(_ entries: [JournalEntry], of topic: String, in db: Database) throws {
        var highestSequence: UInt64 = 0
        var highestID: UInt64 = 0
        var released: [UInt64] = []
        var sweep = false
        var retention: (keepLast: Int?, publishedSince: Date?)?
        for entry in entries {
            switch entry {
            case .message(let row):
                highestSequence = max(highestSequence, row.sequence)
                highestID = max(highestID, row.id)
                try db.cachedStatement(
                    sql: """
                        INSERT OR REPLACE INTO messages
                            (topic, sequence, id, payload, headers, priority, published_at,
                             origin_topic, origin_sequence, origin_published_at)
                        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                        """
                ).execute(arguments: [
                    topic, Int64(bitPattern: row.sequence), Int64(bitPattern: row.id), Data(row.payload),
                    JSON.headers(row.headers), row.priority, row.publishedAt.timeIntervalSinceReferenceDate,
                    row.originTopic, row.originSequence.map { Int64(bitPattern: $0) },
                    row.originPublishedAt?.timeIntervalSinceReferenceDate,
                ])
            case .copies(let subscription, let first, let count, let visibleAt):
                let statement = try db.cachedStatement(
                    sql: """
                        INSERT OR REPLACE INTO copies (topic, subscription, sequence, attempts, visible_at_ms, last_error)
                        VALUES (?, ?, ?, 0, ?, NULL)
                        """)
                let visible = visibleAt.map(milliseconds)
                for sequence in first..<first + UInt64(count) {
                    try statement.execute(arguments: [topic, subscription, Int64(bitPattern: sequence), visible])
                }
            case .delivered(let subscription, let sequence, let attempts, let firstDeliveredAt):
                try db.cachedStatement(
                    sql: """
                        UPDATE copies SET attempts = ?, visible_at_ms = NULL,
                            first_delivered_at_ms = coalesce(first_delivered_at_ms, ?)
                        WHERE topic = ? AND subscription = ? AND sequence = ?
                        """
                ).execute(arguments: [
                    attempts, firstDeliveredAt.map(milliseconds), topic, subscription, Int64(bitPattern: sequence),
                ])
            case .removed(let subscription, let sequences):
                let statement = try db.cachedStatement(
                    sql: "DELETE FROM copies WHERE topic = ? AND subscription = ? AND sequence = ?")
                for sequence in sequences {
                    try statement.execute(arguments: [topic, subscription, Int64(bitPattern: sequence)])
                }
                released += sequences
            case .deadLettered(let subscription, let sequence, let attempts):
                try db.cachedStatement(
                    sql: "DELETE FROM copies WHERE topic = ? AND subscription = ? AND sequence = ? AND attempts = ?"
                ).execute(arguments: [topic, subscription, Int64(bitPattern: sequence), attempts])
                released.append(sequence)
            case .retry(let subscription, let sequence, let attempts, let visibleAt, let lastError):
                try db.cachedStatement(
                    sql: """
                        UPDATE copies SET attempts = ?, visible_at_ms = ?, last_error = ?
                        WHERE topic = ? AND subscription = ? AND sequence = ?
                        """
                ).execute(arguments: [
                    attempts, visibleAt.map(milliseconds), lastError, topic, subscription,
                    Int64(bitPattern: sequence),
                ])
            case .subscriptionCreated(let name, let configuration):
                try db.execute(
                    sql: "INSERT OR REPLACE INTO subscriptions (topic, name, configuration) VALUES (?, ?, ?)",
                    arguments: [topic, name, try JSON.encode(configuration)])
            case .subscriptionRemoved(let name):
                try db.execute(
                    sql: "DELETE FROM copies WHERE topic = ? AND subscription = ?", arguments: [topic, name])
                try db.execute(
                    sql: "DELETE FROM subscriptions WHERE topic = ? AND name = ?", arguments: [topic, name])
                sweep = true
            case .purgedStored(let subscription):
                try db.execute(
                    sql: "DELETE FROM copies WHERE topic = ? AND subscription = ? AND attempts = 0",
                    arguments: [topic, subscription])
                sweep = true
            case .purged(let subscription):
                try db.execute(
                    sql: "DELETE FROM copies WHERE topic = ? AND subscription = ?", arguments: [topic, subscription])
                sweep = true
            case .sequenceUsed(let next):
                highestSequence = max(highestSequence, next - 1)
            case .retained(let keepLast, let publishedSince):
                retention = (keepLast, publishedSince)
            case .replayed(let subscription, let fromSequence, let publishedSince, let before):
                // One statement, however long the history: the subscription pages it in.
                try db.execute(
                    sql: """
                        INSERT OR IGNORE INTO copies (topic, subscription, sequence, attempts, visible_at_ms, last_error)
                        SELECT topic, ?2, sequence, 0, NULL, NULL FROM messages
                        WHERE topic = ?1
                            AND sequence >= max(?3, coalesce((SELECT retain_from FROM topics WHERE name = ?1), 1))
                            AND sequence < ?4 AND (?5 IS NULL OR published_at >= ?5)
                        """,
                    arguments: [
                        topic, subscription, Int64(bitPattern: fromSequence), Int64(bitPattern: before),
                        publishedSince?.timeIntervalSinceReferenceDate,
                    ])
            case .topicConfigured(let configuration):
                try db.execute(
                    sql: "UPDATE topics SET configuration = ? WHERE name = ?",
                    arguments: [try JSON.encode(configuration), topic])
            }
        }
        if !released.isEmpty {
            // A message goes with its last copy.
            let statement = try db.cachedStatement(
                sql: """
                    DELETE FROM messages WHERE topic = ?1 AND sequence = ?2 AND \(Schema.beyondRetention)
                    AND NOT EXISTS (
                        SELECT 1 FROM copies WHERE copies.topic = ?1 AND copies.sequence = ?2
                        AND copies.subscription IN (SELECT name FROM subscriptions WHERE subscriptions.topic = ?1))
                    """)
            for sequence in released {
                try statement.execute(arguments: [topic, Int64(bitPattern: sequence)])
            }
        }
        if sweep { try deleteUnheldMessages(of: topic, in: db) }
        if highestSequence > 0 {
            try db.cachedStatement(
                sql: "UPDATE topics SET next_sequence = max(next_sequence, ?) WHERE name = ?"
            ).execute(arguments: [Int64(bitPattern: highestSequence + 1), topic])
        }
        if highestID > 0 {
            try db.cachedStatement(
                sql: "UPDATE store_state SET value = max(value, ?) WHERE key = 'next_message_id'"
            ).execute(arguments: [Int64(bitPattern: highestID + 1)])
        }
        if let retention {
            try applyRetention(of: topic, keepLast: retention.keepLast, since: retention.publishedSince, in: db)
        }
    }

    /// Moves a topic's retention bound past the messages it no longer keeps (by count, then by
    /// age: the first message published since `since`), and deletes the ones no copy holds, in
    /// one statement over that range. Held ones go later, with their last copy.
    static func applyRetention(of topic: String, keepLast: Int?, since: Date?, in db: Database) throws {
        guard
            let row = try Row.fetchOne(
                db.cachedStatement(sql: "SELECT next_sequence, retain_from FROM topics WHERE name = ?"),
                arguments: [topic]),
            let from = row["retain_from"] as Int64?
        else { return }
        let next: Int64 = row["next_sequence"]
        var floor = from
        if let keepLast { floor = max(floor, next - Int64(keepLast)) }
        if let since {
            let young = try Int64.fetchOne(
                db.cachedStatement(
                    sql: """
                        SELECT sequence FROM messages WHERE topic = ? AND sequence >= ? AND published_at >= ?
                        ORDER BY sequence LIMIT 1
                        """),
                arguments: [topic, floor, since.timeIntervalSinceReferenceDate])
            floor = max(floor, young ?? next)
        }
        guard floor > from else { return }
        try db.cachedStatement(
            sql: """
                DELETE FROM messages WHERE topic = ?1 AND sequence >= ?2 AND sequence < ?3
                AND NOT EXISTS (
                    SELECT 1 FROM copies WHERE copies.topic = ?1 AND copies.sequence = messages.sequence
                    AND copies.subscription IN (SELECT name FROM subscriptions WHERE subscriptions.topic = ?1))
                """
        ).execute(arguments: [topic, from, floor])
        try db.cachedStatement(sql: "UPDATE topics SET retain_from = ? WHERE name = ?").execute(arguments: [
            floor, topic,
        ])
    }

    /// Deletes the messages of `topic` that no subscription holds any more.
    static func deleteUnheldMessages(of topic: String, in db: Database) throws {
        try db.execute(
            sql: """
                DELETE FROM messages WHERE topic = ?1 AND \(Schema.beyondRetention)
                AND NOT EXISTS (
                    SELECT 1 FROM copies WHERE copies.topic = ?1 AND copies.sequence = messages.sequence
                    AND copies.subscription IN (SELECT name FROM subscriptions WHERE subscriptions.topic = ?1))
                """,
            arguments: [topic])
    }
}

/// A date as integer milliseconds since 1970.
func milliseconds(_ date: Date) -> Int64 {
    Int64((date.timeIntervalSince1970 * 1_000).rounded())
}
