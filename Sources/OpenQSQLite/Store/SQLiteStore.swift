// The SQLite file behind a broker's durable topics: opened, owned, closed, measured.

import Dispatch
// Foundation brings the C library too (open, flock, stat).
import Foundation
import GRDB
import OpenQ

/// The SQLite file behind a broker's durable topics: opened in WAL mode at a stated durability
/// level, owned by one broker at a time, written through one group committer.
package final class SQLiteStore: DurableStore {
    package let path: String
    package let durability: SQLiteDurability
    let pool: DatabasePool
    let committer: GroupCommitter
    private let owner: OwnerLock
    package let nextMessageID: UInt64
    package let residentMessages: Int

    /// Opens (creating if needed) the store at `path` and takes ownership of it.
    /// - Throws: ``OpenQError/Code/storeInUse`` when another broker, in this process or another,
    ///   owns the file; ``OpenQError/Code/storeCorrupted`` for a damaged file or one that is not a
    ///   SQLite database; ``OpenQError/Code/storeIncompatible`` for another application's database
    ///   or a newer OpenQ's store; ``OpenQError/Code/storeReadOnly`` when the file, its directory
    ///   or its mount cannot be written; ``OpenQError/Code/storeFull`` when there is no room to
    ///   create it; ``OpenQError/Code/storageFailed`` with SQLite's message otherwise (a missing
    ///   directory). A file that fails to open is left as it was.
    package init(
        path: String, durability: SQLiteDurability = .powerLoss, residentMessages: Int = 10_000
    ) throws(OpenQError) {
        self.path = path
        self.durability = durability
        self.residentMessages = residentMessages
        // What exists beside the file before the broker touches it: what a refusal removes again.
        let existing = Self.companionFiles(of: path).filter { FileManager.default.fileExists(atPath: $0) }
        let owner = try OwnerLock(path: path)
        self.owner = owner
        var configuration = Configuration()
        configuration.label = "openq"
        // One broker owns the file, so its writer never waits for another; the busy timeout only
        // covers an outside reader such as the sqlite3 shell holding a lock for a moment, and
        // SQLITE_BUSY after it is reported as storageFailed with SQLite's message.
        configuration.busyMode = .timeout(5)
        var opened: DatabasePool?
        do {
            // Read-only, before anything writes: another application's database is left as it was.
            try Schema.checkOwnership(path: path)
            let pool = try DatabasePool(path: path, configuration: configuration)
            opened = pool
            // GRDB sets synchronous = NORMAL on a pool after `prepareDatabase` runs (setUpWALMode):
            // set the level again on the writer connection, the only one that commits.
            try pool.writeWithoutTransaction { db in
                try db.execute(sql: "PRAGMA synchronous = \(durability.synchronous)")
                // After a checkpoint has copied the WAL into the file, SQLite truncates the WAL
                // back to this size instead of keeping it as large as it once grew.
                try db.execute(sql: "PRAGMA journal_size_limit = \(Schema.walSizeLimit)")
            }
            try Schema.mark(pool)
            try Schema.migrator.migrate(pool)
            nextMessageID = try pool.read { db in
                let stored = try Int64.fetchOne(db, sql: "SELECT value FROM store_state WHERE key = 'next_message_id'")
                let highest = try Int64.fetchOne(db, sql: "SELECT max(id) FROM messages")
                return UInt64(Swift.max(stored ?? 1, (highest ?? 0) + 1))
            }
            self.pool = pool
        } catch {
            // The connections close before the lock's descriptor does (see OwnerLock), and what
            // opening created beside the file (the file itself when it was new, the WAL and shared
            // memory a read-only look at another application's database makes) goes again.
            try? opened?.close()
            owner.release()
            for file in Self.companionFiles(of: path) where !existing.contains(file) {
                try? FileManager.default.removeItem(atPath: file)
            }
            guard let error = error as? OpenQError else {
                let failure = OpenQError.storageFailure(error)
                throw OpenQError(
                    failure.code,
                    "Cannot open the store '\(path)' (\(Self.openAdvice[failure.code] ?? "see SQLite's message")): "
                        + "\(error)")
            }
            throw error
        }
        committer = GroupCommitter(pool: pool)
    }

    deinit {
        // Normally closed already (`close()`); the connections close before the lock's descriptor.
        try? pool.close()
        owner.release()
    }

    /// The store's file and the files SQLite keeps beside it.
    private static func companionFiles(of path: String) -> [String] {
        [path, path + "-wal", path + "-shm", path + "-journal"]
    }

    /// What to do about a store that failed to open, by code.
    private static let openAdvice: [OpenQError.Code: String] = [
        .storeCorrupted: "the file is damaged or is not a SQLite database; it was left untouched",
        .storeReadOnly: "the file, its directory or its mount cannot be written; a broker must write its store",
        .storeFull: "no room on the disk",
    ]

    /// Opens the store on a thread of its own: opening and migrating a file blocks, and a blocked
    /// thread of the cooperative pool stalls every task of the process.
    static func open(
        path: String, durability: SQLiteDurability, residentMessages: Int
    ) async throws(OpenQError) -> SQLiteStore {
        try await offThePool { () throws(OpenQError) in
            try SQLiteStore(path: path, durability: durability, residentMessages: residentMessages)
        }.get()
    }

    /// Commits what is pending, closes the database and gives up ownership. The close runs on a
    /// thread of its own: the last connection checkpoints the WAL into the file and syncs it,
    /// which blocks.
    package func close() async {
        await committer.close()
        let (pool, owner) = (self.pool, self.owner)
        _ = await Self.offThePool { () throws(OpenQError) in
            try? pool.close()
            owner.release()
        }
    }

    /// Runs blocking work (opening, migrating, closing a file) on a dispatch thread instead of a
    /// thread of the cooperative pool, whose few threads (one per core) a blocked call takes from
    /// every task of the process.
    private static func offThePool<Value: Sendable>(
        _ work: @escaping @Sendable () throws(OpenQError) -> Value
    ) async -> Result<Value, OpenQError> {
        // The result crosses threads through a lock, not only through the continuation: the
        // values are written on the dispatch thread, and ThreadSanitizer sees a mutex's release
        // and acquire where it does not see a continuation's resume.
        let outcome = LockedValueBox<Result<Value, OpenQError>?>(nil)
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            DispatchQueue.global().async {
                let result: Result<Value, OpenQError>
                do throws(OpenQError) {
                    result = .success(try work())
                } catch {
                    result = .failure(error)
                }
                outcome.withLock { $0 = result }
                continuation.resume()
            }
        }
        return outcome.withLock { $0 }!
    }

    package var fault: OpenQError? { committer.fault }

    package func statistics() async throws(OpenQError) -> StoreStatistics {
        let counts = committer.counts
        return StoreStatistics(
            path: path, fileBytes: Self.size(of: path), walBytes: Self.size(of: path + "-wal"),
            commits: counts.commits, committedWrites: counts.writes, failedCommits: counts.failedRounds,
            pendingWrites: counts.pending, fault: committer.fault)
    }

    /// For tests: makes the writer refuse writes (`PRAGMA query_only`), as a file turned
    /// read-only does, or writes again.
    package func refuseWritesForTesting(_ refuse: Bool) async throws {
        try await pool.writeWithoutTransaction { db in
            try db.execute(sql: "PRAGMA query_only = \(refuse ? 1 : 0)")
        }
    }

    /// For tests: caps the file at its current size (`PRAGMA max_page_count`), as a full disk
    /// does, or lifts the cap (`nil`).
    package func capSizeForTesting(_ cap: Bool) async throws {
        try await pool.writeWithoutTransaction { db in
            let pages = cap ? try Int.fetchOne(db, sql: "PRAGMA page_count") ?? 1 : 1_073_741_823
            try db.execute(sql: "PRAGMA max_page_count = \(pages)")
        }
    }

    /// A file's size in bytes (0 when it does not exist).
    static func size(of path: String) -> Int {
        var status = stat()
        return stat(path, &status) == 0 ? Int(status.st_size) : 0
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

    package var journalMark: UInt64 { committer.mark }

    package func sync(since mark: UInt64) async throws(OpenQError) {
        try await committer.sync(since: mark)
    }

    package func storedTopics() async throws(OpenQError) -> [StoredTopic] {
        do {
            return try await pool.read { db in
                try Row.fetchAll(
                    db,
                    sql: """
                        SELECT name, payload_type, configuration,
                               (SELECT count(*) FROM copies WHERE copies.topic = topics.name) AS copies
                        FROM topics ORDER BY name
                        """
                ).map { row in
                    StoredTopic(
                        name: row["name"], payloadType: row["payload_type"],
                        configuration: try JSON.decode(TopicConfiguration.self, row["configuration"]),
                        storedCopies: row["copies"])
                }
            }
        } catch {
            throw OpenQError.storageFailure(error)
        }
    }
}
