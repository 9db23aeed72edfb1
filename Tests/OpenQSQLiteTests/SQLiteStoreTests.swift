import Foundation
import GRDB
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
    @Test(arguments: [SQLiteStore.Durability.powerLoss, .processCrash])
    func theWriterUsesWAL_andTheDurabilityLevelsSynchronousSetting(_ durability: SQLiteStore.Durability) async throws {
        try await withTemporaryDirectory { directory in
            let store = try SQLiteStore(path: directory + "/openq.sqlite", durability: durability)
            defer { try? store.close() }
            let pragmas = try store.pragmas()
            #expect(pragmas.journalMode == "wal")
            // GRDB sets NORMAL on a pool after prepareDatabase: the store sets its level again.
            #expect(pragmas.synchronous == durability.synchronous)
        }
    }

    @Test func aSecondOwner_isRefused_untilTheFirstCloses() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory + "/openq.sqlite"
            let first = try SQLiteStore(path: path)
            #expect(throws: StoreError.inUse(path: path + "-openq.lock")) { try SQLiteStore(path: path) }
            try first.close()
            let second = try SQLiteStore(path: path)
            try second.close()
        }
    }

    @Test func concurrentWriters_shareCommits_andEveryWriteLands() async throws {
        try await withTemporaryDirectory { directory in
            let store = try SQLiteStore(path: directory + "/openq.sqlite")
            defer { try? store.close() }
            try await store.committer.commit { db in
                try db.execute(
                    sql: "INSERT INTO topics (name, payload_type, configuration) VALUES ('t', 'Int', '{}')")
            }
            let writers = 64
            try await withThrowingTaskGroup(of: Void.self) { group in
                for sequence in 1...writers {
                    group.addTask {
                        try await store.committer.commit { db in
                            try db.execute(
                                sql: """
                                    INSERT INTO messages (topic, sequence, id, payload, headers, priority, published_at_ms)
                                    VALUES ('t', ?, ?, x'00', '{}', 0, 0)
                                    """,
                                arguments: [sequence, sequence])
                        }
                    }
                }
                try await group.waitForAll()
            }
            let counts = store.committer.counts
            #expect(counts.writes == writers + 1)
            #expect(counts.commits < writers / 2, "\(counts.commits) commits for \(writers) concurrent writes")
            let rows = try await store.pool.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM messages") }
            #expect(rows == writers)
        }
    }

    @Test func aFailedTransaction_failsEveryWriteInIt_andCommitsNoneOfThem() async throws {
        try await withTemporaryDirectory { directory in
            let store = try SQLiteStore(path: directory + "/openq.sqlite")
            defer { try? store.close() }
            await #expect(throws: StoreError.self) {
                try await store.committer.commit { db in
                    try db.execute(
                        sql: "INSERT INTO topics (name, payload_type, configuration) VALUES ('a', 'Int', '{}')")
                    try db.execute(sql: "INSERT INTO no_such_table VALUES (1)")
                }
            }
            #expect(try store.storedTopics().isEmpty)
            try await store.committer.commit { db in
                try db.execute(sql: "INSERT INTO topics (name, payload_type, configuration) VALUES ('b', 'Int', '{}')")
            }
            #expect(try store.storedTopics().map(\.name) == ["b"])
        }
    }

    @Test func whatWasCommitted_isThereAfterReopening() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory + "/openq.sqlite"
            let store = try SQLiteStore(path: path)
            try await store.committer.commit { db in
                try db.execute(
                    sql:
                        "INSERT INTO topics (name, payload_type, configuration) VALUES ('orders', 'Swift.Int', '{\"capacity\":10}')"
                )
            }
            try store.close()
            let reopened = try SQLiteStore(path: path)
            defer { try? reopened.close() }
            #expect(
                try reopened.storedTopics() == [
                    StoredTopic(name: "orders", payloadType: "Swift.Int", configuration: "{\"capacity\":10}")
                ])
        }
    }
}
