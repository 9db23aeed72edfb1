import GRDB

/// The store's tables (see the article "Durability" for how they are used).
///
/// - `topics`: one row per durable topic: payload type, configuration (JSON), next sequence number.
/// - `subscriptions`: one row per named subscription, with its configuration (JSON).
/// - `messages`: one row per message some subscription still holds: payload bytes, headers (JSON),
///   priority, publish time, and for a dead letter its identity in its source topic.
/// - `copies`: one row per message a subscription holds, with its attempt count (committed before
///   each delivery), when it is visible (`NULL`: now), its last error and when it was first
///   delivered. Acknowledging deletes the
///   copy; a message row goes with its last copy.
/// - `quarantine`: payloads that no longer decode, as raw bytes with the reason.
/// - `store_state`: the next message id, so ids are never reused.
///
/// Visibility times are integer milliseconds since 1970 (never text: comparing text timestamps
/// across time zones was a bug in goqite). Publish times are `REAL` seconds since 2001-01-01
/// (Foundation's reference date), so a `Date` comes back bit for bit. There are no foreign keys:
/// the journal's statements tolerate rows that are already gone, so no entry can fail a whole
/// group commit.
enum Schema {
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.create(table: "topics") { table in
                table.primaryKey("name", .text)
                table.column("payload_type", .text).notNull()
                table.column("configuration", .text).notNull()
                table.column("next_sequence", .integer).notNull().defaults(to: 1)
            }
            try db.create(table: "subscriptions") { table in
                table.column("topic", .text).notNull()
                table.column("name", .text).notNull()
                table.column("configuration", .text).notNull()
                table.primaryKey(["topic", "name"])
            }
            try db.create(table: "messages") { table in
                table.column("topic", .text).notNull()
                table.column("sequence", .integer).notNull()
                table.column("id", .integer).notNull()
                table.column("payload", .blob).notNull()
                table.column("headers", .text).notNull()
                table.column("priority", .integer).notNull()
                table.column("published_at", .double).notNull()
                table.column("origin_topic", .text)
                table.column("origin_sequence", .integer)
                table.column("origin_published_at", .double)
                table.primaryKey(["topic", "sequence"])
            }
            try db.create(table: "copies") { table in
                table.column("topic", .text).notNull()
                table.column("subscription", .text).notNull()
                table.column("sequence", .integer).notNull()
                table.column("attempts", .integer).notNull().defaults(to: 0)
                table.column("visible_at_ms", .integer)
                table.column("last_error", .text)
                table.primaryKey(["topic", "subscription", "sequence"])
            }
            // No index on (topic, sequence): whether a subscription still holds a message is asked
            // through the primary key, one probe per subscription of the topic (they are few), so
            // no second B-tree is written for every copy.
            try db.create(table: "quarantine") { table in
                table.autoIncrementedPrimaryKey("rowid")
                table.column("topic", .text).notNull()
                table.column("sequence", .integer).notNull()
                table.column("payload", .blob).notNull()
                table.column("reason", .text).notNull()
                table.column("quarantined_at_ms", .integer).notNull()
            }
            try db.create(table: "store_state") { table in
                table.primaryKey("key", .text)
                table.column("value", .integer).notNull()
            }
            try db.execute(sql: "INSERT INTO store_state (key, value) VALUES ('next_message_id', 1)")
        }
        // When a subscription first handed a message out (SQS's ApproximateFirstReceiveTimestamp).
        migrator.registerMigration("v2: first delivery time") { db in
            try db.alter(table: "copies") { table in
                table.add(column: "first_delivered_at_ms", .integer)
            }
        }
        return migrator
    }
}
