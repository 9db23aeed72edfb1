// The quarantine: payloads that no longer decode, kept as bytes with the reason.

import GRDB
import OpenQ

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

extension SQLiteStore {
    /// Moves a payload that does not decode into the quarantine and removes the message and its
    /// copies, in one transaction.
    package func quarantine(topic: String, sequence: UInt64, payload: [UInt8], reason: String) async throws(OpenQError)
    {
        let now = milliseconds(Date())
        do {
            try await pool.write { db in
                try db.execute(
                    sql: """
                        INSERT INTO quarantine (topic, sequence, payload, reason, quarantined_at_ms)
                        VALUES (?, ?, ?, ?, ?)
                        """,
                    arguments: [topic, Int64(bitPattern: sequence), Data(payload), reason, now])
                for table in ["copies", "messages"] {
                    try db.execute(
                        sql: "DELETE FROM \(table) WHERE topic = ? AND sequence = ?",
                        arguments: [topic, Int64(bitPattern: sequence)])
                }
            }
        } catch {
            throw OpenQError.storageFailure(error)
        }
    }

    /// Everything in the quarantine, oldest first.
    package func quarantinedMessages() async throws(OpenQError) -> [QuarantinedMessage] {
        do {
            return try await pool.read { db in
                try Row.fetchAll(
                    db,
                    sql: "SELECT topic, sequence, payload, reason, quarantined_at_ms FROM quarantine ORDER BY rowid"
                ).map { row in
                    QuarantinedMessage(
                        topic: row["topic"],
                        sequenceNumber: UInt64(bitPattern: row["sequence"] as Int64),
                        payload: [UInt8](row["payload"] as Data),
                        reason: row["reason"],
                        quarantinedAt: Date(timeIntervalSince1970: Double(row["quarantined_at_ms"] as Int64) / 1_000))
                }
            }
        } catch {
            throw OpenQError.storageFailure(error)
        }
    }
}
