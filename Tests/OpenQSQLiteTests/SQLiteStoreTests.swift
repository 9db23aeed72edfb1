import Foundation
import GRDB
import OpenQ
import Testing

@testable import OpenQSQLite

/// A fresh directory per test, removed after.
func withTemporaryDirectory<T>(_ body: (String) async throws -> T) async throws -> T {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("openq-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: directory) }
    return try await body(directory)
}

@Suite("SQLite store: WAL, durability levels, one owner per file, group commit")
struct SQLiteStoreTests {
    @Test(arguments: [SQLiteDurability.powerLoss, .processCrash])
    func theWriterUsesWAL_andTheDurabilityLevelsSynchronousSetting(_ durability: SQLiteDurability) async throws {
        try await withTemporaryDirectory { directory in
            let store = try SQLiteStore(path: directory + "/openq.sqlite", durability: durability)
            let pragmas = try store.pragmas()
            #expect(pragmas.journalMode == "wal")
            // GRDB sets NORMAL on a pool after prepareDatabase: the store sets its level again.
            #expect(pragmas.synchronous == durability.synchronous)
            #expect(pragmas.synchronous == (durability == .powerLoss ? 2 : 1))
            await store.close()
        }
    }

    @Test func aSecondOwner_isRefused_untilTheFirstCloses() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory + "/openq.sqlite"
            let first = try SQLiteStore(path: path)
            let error = #expect(throws: OpenQError.self) { try SQLiteStore(path: path) }
            #expect(error?.code == .storeInUse)
            await first.close()
            let second = try SQLiteStore(path: path)
            await second.close()
        }
    }

    @Test func concurrentWriters_shareCommits_andEveryWriteLands() async throws {
        try await withTemporaryDirectory { directory in
            let store = try SQLiteStore(path: directory + "/openq.sqlite")
            let writers = 64
            try await withThrowingTaskGroup(of: Void.self) { group in
                for sequence in 1...writers {
                    group.addTask {
                        try await store.committer.commit { db in
                            try db.execute(
                                sql: """
                                    INSERT INTO messages (topic, sequence, id, payload, headers, priority, published_at)
                                    VALUES ('t', ?, ?, x'00', '{}', 0, 0)
                                    """,
                                arguments: [sequence, sequence])
                        }
                    }
                }
                try await group.waitForAll()
            }
            let counts = store.committer.counts
            #expect(counts.writes == writers)
            #expect(counts.commits < writers / 2, "\(counts.commits) commits for \(writers) concurrent writes")
            let rows = try await store.pool.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM messages") }
            #expect(rows == writers)
            await store.close()
        }
    }

    @Test func aFailedTransaction_failsTheWritesInIt_andTheNextRoundGoesOn() async throws {
        try await withTemporaryDirectory { directory in
            let store = try SQLiteStore(path: directory + "/openq.sqlite")
            let error = await #expect(throws: OpenQError.self) {
                try await store.committer.commit { db in
                    try db.execute(
                        sql: "INSERT INTO topics (name, payload_type, configuration) VALUES ('a', 'Int', '{}')")
                    try db.execute(sql: "INSERT INTO no_such_table VALUES (1)")
                }
            }
            #expect(error?.code == .storageFailed)
            let count = { try await store.pool.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM topics") } }
            #expect(try await count() == 0)
            try await store.committer.commit { db in
                try db.execute(sql: "INSERT INTO topics (name, payload_type, configuration) VALUES ('b', 'Int', '{}')")
            }
            #expect(try await count() == 1)
            await store.close()
        }
    }

    @Test func aForeignFile_isATypedError() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory + "/not-a-database"
            try Data(repeating: 0x42, count: 8192).write(to: URL(fileURLWithPath: path))
            let error = #expect(throws: OpenQError.self) { try SQLiteStore(path: path) }
            #expect(error?.code == .storeCorrupted)
            // The failed open gave up ownership: the next attempt gets the same error, not storeInUse.
            let again = #expect(throws: OpenQError.self) { try SQLiteStore(path: path) }
            #expect(again?.code == .storeCorrupted)
        }
    }
}
