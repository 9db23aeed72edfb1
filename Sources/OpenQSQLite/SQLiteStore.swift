import GRDB
import OpenQ

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// The SQLite file behind durable topics: opened in WAL mode at a stated durability level, owned
/// by one broker at a time, with the schema in place.
///
/// This is the foundation the issue "Durable topics" builds on: the write path (the journal, with
/// group commit: ``GroupCommitter``) and the single owner are here and tested; topics do not use
/// the store yet, so it is not a product.
package final class SQLiteStore: Sendable {
    /// What a committed write survives.
    package enum Durability: Sendable, Hashable {
        /// `PRAGMA synchronous = FULL`: a commit is on the disk (fsync'd, WAL included) before it
        /// returns. Survives a process crash and power loss.
        case powerLoss
        /// `PRAGMA synchronous = NORMAL`: a commit is in the WAL, synced only at checkpoints.
        /// Survives a process crash (kill -9), not power loss or an OS crash. Faster.
        case processCrash

        /// The value of `PRAGMA synchronous` for this level.
        package var synchronous: Int {
            switch self {
            case .powerLoss: 2
            case .processCrash: 1
            }
        }
    }

    package let path: String
    package let durability: Durability
    let pool: DatabasePool
    let committer: GroupCommitter
    private let owner: OwnerLock

    /// Opens (creating if needed) the store at `path` and takes ownership of it.
    /// - Throws: ``StoreError/inUse`` when another broker, in this process or another, owns the
    ///   file; ``StoreError/failed(_:)`` with SQLite's message when it cannot be opened.
    package init(path: String, durability: Durability = .powerLoss) throws {
        self.path = path
        self.durability = durability
        self.owner = try OwnerLock(path: path + "-openq.lock")
        var configuration = Configuration()
        configuration.label = "openq"
        // One writer owns the file; the busy timeout only covers an outside reader such as the
        // sqlite3 shell holding a lock for a moment.
        configuration.busyMode = .timeout(5)
        do {
            pool = try DatabasePool(path: path, configuration: configuration)
            // GRDB sets synchronous = NORMAL on a pool after `prepareDatabase` runs (setUpWALMode):
            // set the level again on the writer connection, the only one that commits.
            try pool.writeWithoutTransaction { db in
                try db.execute(sql: "PRAGMA synchronous = \(durability.synchronous)")
            }
            try Schema.migrator.migrate(pool)
        } catch let error as DatabaseError {
            throw StoreError.failed("\(error)")
        }
        committer = GroupCommitter(pool: pool)
    }

    /// Releases the file: closes the database and gives up ownership.
    package func close() throws {
        do { try pool.close() } catch { throw StoreError.failed("\(error)") }
        owner.release()
    }

    /// The journal mode and synchronous level the writer connection really uses.
    package func pragmas() throws -> (journalMode: String, synchronous: Int) {
        try pool.writeWithoutTransaction { db in
            (
                try String.fetchOne(db, sql: "PRAGMA journal_mode") ?? "?",
                try Int.fetchOne(db, sql: "PRAGMA synchronous") ?? -1
            )
        }
    }

    /// The topics the store holds, so a process can reopen topics it did not declare in code.
    package func storedTopics() throws -> [StoredTopic] {
        try pool.read { db in
            try Row.fetchAll(db, sql: "SELECT name, payload_type, configuration FROM topics ORDER BY name").map {
                StoredTopic(name: $0["name"], payloadType: $0["payload_type"], configuration: $0["configuration"])
            }
        }
    }
}

/// A topic as the store holds it.
package struct StoredTopic: Hashable, Sendable {
    package var name: String
    /// The payload type's name, as `String(reflecting:)` gives it.
    package var payloadType: String
    /// The topic configuration, as JSON.
    package var configuration: String
}

/// What can go wrong with the store itself.
package enum StoreError: Error, Hashable, Sendable, CustomStringConvertible {
    /// Another broker owns the file (one owner per file: a second one would corrupt the journal's
    /// order).
    case inUse(path: String)
    /// SQLite reported an error (a full disk, a read-only file, a corrupt database).
    case failed(String)

    package var description: String {
        switch self {
        case .inUse(let path):
            "The store '\(path)' is open by another broker (in this process or another); one broker owns a store at a time."
        case .failed(let message):
            "The store failed: \(message)"
        }
    }
}

/// An exclusive `flock` on a file beside the store, held while a broker owns it. `flock` locks
/// belong to an open file description, so a second open in the same process conflicts too, and
/// the kernel releases the lock when the owning process dies (kill -9 included).
final class OwnerLock: Sendable {
    private let descriptor: Int32

    init(path: String) throws {
        let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw StoreError.failed("cannot open '\(path)': errno \(errno)") }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            let code = errno
            close(descriptor)
            if code == EWOULDBLOCK { throw StoreError.inUse(path: path) }
            throw StoreError.failed("cannot lock '\(path)': errno \(code)")
        }
        self.descriptor = descriptor
    }

    func release() {
        flock(descriptor, LOCK_UN)
        close(descriptor)
    }
}
