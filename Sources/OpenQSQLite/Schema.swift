import GRDB

/// The store's tables. Times are integer milliseconds since 1970 (never text: comparing text
/// timestamps across time zones was a bug in goqite). Every waiting message is found through the
/// primary keys, in order.
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
            try db.create(table: "messages") { table in
                table.column("topic", .text).notNull().references("topics", onDelete: .cascade)
                table.column("sequence", .integer).notNull()
                table.column("id", .integer).notNull()
                table.column("payload", .blob).notNull()
                table.column("headers", .text).notNull()
                table.column("priority", .integer).notNull()
                table.column("published_at_ms", .integer).notNull()
                table.primaryKey(["topic", "sequence"])
            }
            try db.create(table: "subscriptions") { table in
                table.column("topic", .text).notNull().references("topics", onDelete: .cascade)
                table.column("name", .text).notNull()
                table.column("configuration", .text).notNull()
                table.primaryKey(["topic", "name"])
            }
            // One row per message copy a subscription still holds: waiting (visible_at_ms null or
            // due) or in flight, with its attempt count, committed before each delivery.
            try db.create(table: "copies") { table in
                table.column("topic", .text).notNull()
                table.column("subscription", .text).notNull()
                table.column("sequence", .integer).notNull()
                table.column("attempts", .integer).notNull().defaults(to: 0)
                table.column("visible_at_ms", .integer)
                table.column("last_error", .text)
                table.primaryKey(["topic", "subscription", "sequence"])
                table.foreignKey(["topic", "subscription"], references: "subscriptions", onDelete: .cascade)
            }
            // Payloads that no longer decode (the type changed), kept as raw bytes with the reason.
            try db.create(table: "quarantine") { table in
                table.autoIncrementedPrimaryKey("rowid")
                table.column("topic", .text).notNull()
                table.column("sequence", .integer).notNull()
                table.column("payload", .blob).notNull()
                table.column("reason", .text).notNull()
                table.column("quarantined_at_ms", .integer).notNull()
            }
        }
        return migrator
    }
}
