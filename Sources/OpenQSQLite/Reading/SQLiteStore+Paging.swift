// The read path of paging and replay: pages of waiting messages read back, replayed levels counted.

import GRDB
import OpenQ

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

extension SQLiteStore {
    package func replayedLevels(
        topic: String, subscription: String, before: UInt64
    ) async throws(OpenQError) -> [StoredLevel] {
        do {
            return try await pool.read { db in
                try Row.fetchAll(
                    db,
                    sql: """
                        SELECT m.priority AS priority, count(*) AS count, min(c.sequence) AS first
                        FROM copies c JOIN messages m ON m.topic = c.topic AND m.sequence = c.sequence
                        WHERE c.topic = ? AND c.subscription = ? AND c.sequence < ? AND c.attempts = 0
                            AND c.visible_at_ms IS NULL
                        GROUP BY m.priority ORDER BY m.priority DESC
                        """,
                    arguments: [topic, subscription, Int64(bitPattern: before)]
                ).map { row in
                    StoredLevel(
                        priority: row["priority"], from: UInt64(bitPattern: row["first"]), count: row["count"])
                }
            }
        } catch {
            throw OpenQError.storageFailure(error)
        }
    }

    package func readPage(topic: String, _ request: PageInRequest) async throws(OpenQError) -> [StoredMessageRow] {
        let columns = Self.joinedMessageColumns
        do {
            return try await pool.read { db in
                if !request.sequences.isEmpty {
                    let statement = try db.cachedStatement(
                        sql: """
                            SELECT \(columns) FROM copies c
                            JOIN messages m ON m.topic = c.topic AND m.sequence = c.sequence
                            WHERE c.topic = ? AND c.subscription = ? AND c.sequence = ? AND c.attempts = 0
                            """)
                    return try request.sequences.compactMap { sequence in
                        try Row.fetchOne(
                            statement, arguments: [topic, request.name, Int64(bitPattern: sequence)]
                        ).map(Self.messageRow)
                    }
                }
                return try Row.fetchAll(
                    db.cachedStatement(
                        sql: """
                            SELECT \(columns) FROM copies c
                            JOIN messages m ON m.topic = c.topic AND m.sequence = c.sequence
                            WHERE c.topic = ? AND c.subscription = ? AND c.attempts = 0 AND c.visible_at_ms IS NULL
                                AND m.priority = ? AND c.sequence >= ?
                            ORDER BY c.sequence LIMIT ?
                            """),
                    arguments: [
                        topic, request.name, request.priority, Int64(bitPattern: request.from), Int64(request.limit),
                    ]
                ).map(Self.messageRow)
            }
        } catch {
            throw OpenQError.storageFailure(error)
        }
    }
}
