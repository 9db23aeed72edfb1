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
                        db, sql: "SELECT payload_type, configuration, next_sequence FROM topics WHERE name = ?",
                        arguments: [name])
                else {
                    try db.execute(
                        sql: "INSERT INTO topics (name, payload_type, configuration) VALUES (?, ?, ?)",
                        arguments: [name, payloadType, try JSON.encode(configuration)])
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
                let messages = try Row.fetchAll(
                    db,
                    sql: """
                        SELECT sequence, id, payload, headers, priority, published_at,
                               origin_topic, origin_sequence, origin_published_at
                        FROM messages WHERE topic = ? ORDER BY sequence
                        """,
                    arguments: [name]
                ).map { row in
                    StoredMessageRow(
                        sequence: UInt64(bitPattern: row["sequence"]),
                        id: UInt64(bitPattern: row["id"]),
                        payload: [UInt8](row["payload"] as Data),
                        headers: JSON.decodeHeaders(row["headers"]),
                        priority: row["priority"],
                        publishedAt: Date(timeIntervalSinceReferenceDate: row["published_at"]),
                        originTopic: row["origin_topic"],
                        originSequence: (row["origin_sequence"] as Int64?).map { UInt64(bitPattern: $0) },
                        originPublishedAt: (row["origin_published_at"] as Double?).map {
                            Date(timeIntervalSinceReferenceDate: $0)
                        })
                }
                var subscriptions: [RecoveredSubscription] = []
                for row in try Row.fetchAll(
                    db, sql: "SELECT name, configuration FROM subscriptions WHERE topic = ? ORDER BY rowid",
                    arguments: [name])
                {
                    let subscription: String = row["name"]
                    let copies = try Row.fetchAll(
                        db,
                        sql: """
                            SELECT sequence, attempts, visible_at_ms, last_error, first_delivered_at_ms FROM copies
                            WHERE topic = ? AND subscription = ? ORDER BY sequence
                            """,
                        arguments: [name, subscription]
                    ).map { copy in
                        RecoveredCopy(
                            sequence: UInt64(bitPattern: copy["sequence"]),
                            attempts: copy["attempts"],
                            visibleAt: (copy["visible_at_ms"] as Int64?).map {
                                Date(timeIntervalSince1970: Double($0) / 1_000)
                            },
                            lastError: copy["last_error"],
                            firstDeliveredAt: (copy["first_delivered_at_ms"] as Int64?).map {
                                Date(timeIntervalSince1970: Double($0) / 1_000)
                            })
                    }
                    subscriptions.append(
                        RecoveredSubscription(
                            name: subscription,
                            configuration: try JSON.decode(SubscriptionConfiguration.self, row["configuration"]),
                            copies: copies))
                }
                let quarantined =
                    try Int.fetchOne(db, sql: "SELECT count(*) FROM quarantine WHERE topic = ?", arguments: [name]) ?? 0
                return RecoveredTopic(
                    nextSequence: UInt64(bitPattern: topic["next_sequence"]), messages: messages,
                    subscriptions: subscriptions, quarantined: quarantined)
            }
        } catch let error as OpenQError {
            throw error
        } catch {
            throw OpenQError.storageFailure(error)
        }
    }
}
