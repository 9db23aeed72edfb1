// The entry point: a broker opened on a SQLite file.

import OpenQ

extension MessageQueue.Storage {
    /// A SQLite file in WAL mode, created when missing, that this broker owns while it runs.
    ///
    /// ```swift
    /// import OpenQ
    /// import OpenQSQLite
    ///
    /// let queue = try await MessageQueue(storage: .sqlite(path: "data/openq.sqlite"))
    /// ```
    ///
    /// The directory must exist. Beside the file SQLite keeps `-wal` and `-shm` files. The broker
    /// owns the file while it runs (an exclusive `flock` on the file itself): a second broker
    /// opening it, in this process or another, by this path or another name of the same file (a
    /// symbolic link to it or its directory, `..` in the path), fails with `.storeInUse`; a file
    /// with more than one hard link is refused with `.invalidConfiguration` (SQLite keeps the WAL
    /// beside the name a file was opened by). Another application's database, or a newer OpenQ's
    /// store, is refused with `.storeIncompatible` before anything writes to it, and left as it
    /// was.
    /// - Parameters:
    ///   - path: the database file.
    ///   - durability: what a commit survives. Default ``SQLiteDurability/powerLoss``.
    ///   - residentMessages: how many messages waiting for their first delivery each named
    ///     subscription of a durable topic keeps in memory (at least 2). The others wait in the
    ///     file only and are read back in pages, in delivery order, as consumers drain the ones in
    ///     memory: a backlog larger than memory costs file space, not RAM. Default 10 000 (the
    ///     default capacity of a topic, so a topic with default settings never pages).
    public static func sqlite(
        path: String, durability: SQLiteDurability = .powerLoss, residentMessages: Int = 10_000
    ) -> Self {
        Self { () async throws(OpenQError) in
            guard residentMessages >= 2 else {
                throw OpenQError(
                    .invalidConfiguration,
                    "A store's residentMessages must be at least 2; it was \(residentMessages).")
            }
            return try await SQLiteStore.open(path: path, durability: durability, residentMessages: residentMessages)
        }
    }
}
