// The store's tables and migrations, and the ownership check that runs before anything writes.

import Foundation
import GRDB
import OpenQ

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
    /// `PRAGMA application_id` of an OpenQ store ("OpnQ"), so that a store is told from another
    /// application's database before anything is written to it.
    static let applicationID: Int32 = 0x4F70_6E51

    /// The size the WAL is truncated back to after a checkpoint (`PRAGMA journal_size_limit`).
    static let walSizeLimit = 16 * 1024 * 1024

    /// Refuses a file that is not an OpenQ store (another application's database) or that a newer
    /// OpenQ wrote, before anything writes to it: the header is read as bytes, the tables and
    /// migrations through a read-only connection. Stores written before the mark existed are told
    /// by their tables (``mark(_:)`` marks them).
    /// - Throws: ``OpenQError/Code/storeIncompatible``; ``OpenQError/Code/storeCorrupted`` for a
    ///   file that is not a SQLite database.
    static func checkOwnership(path: String) throws {
        guard let header = readHeader(path), !header.isEmpty else { return }  // a new, empty file
        guard header.count >= 100, header.starts(with: Array("SQLite format 3\0".utf8)) else {
            throw OpenQError(
                .storeCorrupted,
                "'\(path)' is not a SQLite database (its header is not SQLite's); it was left untouched. Use "
                    + "another file.")
        }
        // PRAGMA application_id: a big-endian 32-bit integer at offset 68 of the header.
        let id = header[68..<72].reduce(Int32(0)) { $0 << 8 | Int32($1) }
        guard id == applicationID || id == 0 else {
            throw OpenQError(
                .storeIncompatible,
                "'\(path)' is another application's SQLite database (application_id \(id)), not an OpenQ "
                    + "store; it was left untouched. Use another file.")
        }
        var configuration = Configuration()
        configuration.readonly = true
        let database = try DatabaseQueue(path: path, configuration: configuration)
        defer { try? database.close() }
        try database.read { db in
            if id == 0 {
                let tables = try String.fetchAll(
                    db, sql: "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
                let openQTables: Set = ["grdb_migrations", "topics", "subscriptions", "messages", "copies"]
                guard tables.isEmpty || openQTables.isSubset(of: tables) else {
                    throw OpenQError(
                        .storeIncompatible,
                        "'\(path)' is a SQLite database of another application (tables "
                            + "\(tables.sorted().prefix(5).joined(separator: ", "))), not an OpenQ store; it was "
                            + "left untouched. Use another file.")
                }
                if tables.isEmpty { return }
            }
            if try migrator.hasBeenSuperseded(db) {
                throw OpenQError(
                    .storeIncompatible,
                    "'\(path)' was written by a newer version of OpenQ (its schema has migrations this version does "
                        + "not know); it was left untouched. Open it with that version.")
            }
        }
    }

    /// Marks the store as an OpenQ store (`PRAGMA application_id`), once ``checkOwnership(path:)``
    /// accepted it.
    static func mark(_ pool: DatabasePool) throws {
        try pool.writeWithoutTransaction { db in
            if try Int32.fetchOne(db, sql: "PRAGMA application_id") != applicationID {
                try db.execute(sql: "PRAGMA application_id = \(applicationID)")
            }
        }
    }

    /// The first 100 bytes of the file (SQLite's header), fewer for a shorter file; `nil` when it
    /// cannot be read.
    private static func readHeader(_ path: String) -> [UInt8]? {
        guard let handle = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? handle.close() }
        return (try? handle.read(upToCount: 100)).map { Array($0) } ?? []
    }

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
        // A durable topic with retention keeps its history in `messages`: the messages from
        // `retain_from` on stay after their last copy went (NULL: no retention, a message goes
        // with its last copy).
        migrator.registerMigration("v3: retention") { db in
            try db.alter(table: "topics") { table in
                table.add(column: "retain_from", .integer)
            }
        }
        return migrator
    }

    /// The condition under which a message of topic `?1` no copy holds may go: it is older than
    /// what the topic's retention keeps.
    static let beyondRetention =
        "sequence < coalesce((SELECT retain_from FROM topics WHERE name = ?1), 9223372036854775807)"
}
