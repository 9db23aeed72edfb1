import Foundation
import GRDB
import OpenQ
import Testing

@testable import OpenQSQLite

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

    /// Other names of one file: each reaches the same file, so the same owner.
    enum OtherName: String, CaseIterable, Sendable {
        case symbolicLinkToTheFile, symbolicLinkToItsDirectory, dotDotInThePath, hardLink

        /// Makes the other name of `directory/data/openq.sqlite` and returns it.
        func make(in directory: String) throws -> String {
            let files = FileManager.default
            switch self {
            case .symbolicLinkToTheFile:
                try files.createSymbolicLink(
                    atPath: directory + "/alias.sqlite", withDestinationPath: "data/openq.sqlite")
                return directory + "/alias.sqlite"
            case .symbolicLinkToItsDirectory:
                try files.createSymbolicLink(atPath: directory + "/link", withDestinationPath: directory + "/data")
                return directory + "/link/openq.sqlite"
            case .dotDotInThePath:
                try files.createDirectory(atPath: directory + "/other", withIntermediateDirectories: true)
                return directory + "/other/../data/openq.sqlite"
            case .hardLink:
                try files.linkItem(atPath: directory + "/data/openq.sqlite", toPath: directory + "/hard.sqlite")
                return directory + "/hard.sqlite"
            }
        }
    }

    @Test(arguments: OtherName.allCases)
    func aSecondOwner_throughAnotherNameOfTheSameFile_isRefused(_ name: OtherName) async throws {
        try await withTemporaryDirectory { directory in
            try FileManager.default.createDirectory(atPath: directory + "/data", withIntermediateDirectories: true)
            let path = directory + "/data/openq.sqlite"
            let first = try SQLiteStore(path: path)
            let alias = try name.make(in: directory)
            let error = #expect(throws: OpenQError.self) { try SQLiteStore(path: alias) }
            #expect(error?.code == .storeInUse)
            // The refused open left the owner's file working: it still commits.
            try await first.committer.commit { db in
                try db.execute(sql: "INSERT INTO topics (name, payload_type, configuration) VALUES ('t', 'Int', '{}')")
            }
            await first.close()
            if name == .hardLink {
                // SQLite keeps the WAL beside the name the file was opened by: through another
                // hard link the committed writes in it would be missed, so a linked store is refused.
                let linked = #expect(throws: OpenQError.self) { try SQLiteStore(path: alias) }
                #expect(linked?.code == .invalidConfiguration)
                try FileManager.default.removeItem(atPath: alias)
            }
            let second = try SQLiteStore(path: name == .hardLink ? path : alias)
            #expect(try await second.pool.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM topics") } == 1)
            await second.close()
        }
    }

    /// The bug the lock on a path-made name let through: two brokers on one file (one by a link)
    /// both published as sequence 1, and after a restart one of the returned publishes was gone.
    @Test func twoBrokers_oneThroughASymbolicLink_cannotBothOwnTheFile() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory + "/openq.sqlite"
            try FileManager.default.createSymbolicLink(atPath: directory + "/alias.sqlite", withDestinationPath: path)
            let first = try await MessageQueue(storage: .sqlite(path: path, durability: .processCrash))
            let jobs = try await first.createTopic("jobs", of: Int.self, configuration: .init(durability: .durable))
            _ = try await jobs.subscription("work")
            #expect(try await jobs.publish(1).sequenceNumber == 1)
            let error = await #expect(throws: OpenQError.self) {
                try await MessageQueue(storage: .sqlite(path: directory + "/alias.sqlite", durability: .processCrash))
            }
            #expect(error?.code == .storeInUse)
            _ = await first.shutdown(gracePeriod: .zero)
        }
    }

    @Test func anOwnerInAnotherProcess_refusesAnotherNameOfTheFile() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory + "/openq.sqlite"
            try FileManager.default.createSymbolicLink(atPath: directory + "/alias.sqlite", withDestinationPath: path)
            let owner = try SQLiteStore(path: path)
            let lines = try await offThePool { () throws -> [String] in
                let child = try Child([directory + "/alias.sqlite", "stats", "-", "-"])
                return child.waitForExit()
            }
            #expect(lines.contains { $0.hasPrefix("ERROR") && $0.contains("storeInUse") }, "\(lines)")
            await owner.close()
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

    /// A file and everything beside it, byte for byte.
    static func snapshot(of directory: String) throws -> [String: Data] {
        var files: [String: Data] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: directory) {
            files[name] = try Data(contentsOf: URL(fileURLWithPath: directory + "/" + name))
        }
        return files
    }

    enum JournalMode: String, CaseIterable, Sendable {
        case delete, wal
    }

    /// Another application's database, in either journal mode: refused, and nothing changed (its
    /// bytes, its header, its journal mode, no file created beside it).
    @Test(arguments: JournalMode.allCases)
    func anotherApplicationsDatabase_isRefused_andLeftByteForByteAsItWas(_ mode: JournalMode) async throws {
        try await withTemporaryDirectory { directory in
            let path = directory + "/app.sqlite"
            let database = try DatabaseQueue(path: path)
            try await database.writeWithoutTransaction { db in
                _ = try String.fetchOne(db, sql: "PRAGMA journal_mode = \(mode.rawValue)")
                try db.execute(sql: "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
                try db.execute(sql: "INSERT INTO users (name) VALUES ('ada')")
            }
            try database.close()
            let before = try Self.snapshot(of: directory)
            #expect(before.keys.sorted() == ["app.sqlite"])
            let error = #expect(throws: OpenQError.self) { try SQLiteStore(path: path) }
            #expect(error?.code == .storeIncompatible)
            #expect(try Self.snapshot(of: directory) == before, "the file and its directory are as they were")
            // A marked one is refused from its header alone.
            let marked = try DatabaseQueue(path: path)
            try await marked.write { db in try db.execute(sql: "PRAGMA application_id = 1234") }
            try marked.close()
            let markedBefore = try Self.snapshot(of: directory)
            let markedError = #expect(throws: OpenQError.self) { try SQLiteStore(path: path) }
            #expect(markedError?.code == .storeIncompatible)
            #expect(try Self.snapshot(of: directory) == markedBefore)
        }
    }

    @Test func aStoreOfANewerOpenQ_isRefused_andLeftAsItWas() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory + "/openq.sqlite"
            let store = try SQLiteStore(path: path)
            await store.close()
            let database = try DatabaseQueue(path: path)
            try await database.write { db in
                try db.execute(sql: "INSERT INTO grdb_migrations (identifier) VALUES ('v99: from the future')")
            }
            try database.close()
            let before = try Self.snapshot(of: directory)
            let error = #expect(throws: OpenQError.self) { try SQLiteStore(path: path) }
            #expect(error?.code == .storeIncompatible)
            #expect(try Self.snapshot(of: directory) == before)
        }
    }

    @Test func aNewStore_leavesOnlyTheFileAndSQLitesOwnFilesBesideIt() async throws {
        try await withTemporaryDirectory { directory in
            let store = try SQLiteStore(path: directory + "/openq.sqlite")
            #expect(
                try FileManager.default.contentsOfDirectory(atPath: directory).sorted()
                    == ["openq.sqlite", "openq.sqlite-shm", "openq.sqlite-wal"])
            await store.close()
        }
    }
}
