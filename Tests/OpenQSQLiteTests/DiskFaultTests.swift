import Foundation
import GRDB
import OpenQ
import Testing

@testable import OpenQSQLite

/// Publishes (bounded) until a publish fails; returns the ids accepted and the error with the id
/// whose own commit found the fault (in doubt: kept, and committed once the fault clears).
func publishUntilRefused(
    _ topic: Topic<Blob>, from first: Int, bytes: Int, upTo limit: Int = 20_000
) async -> (accepted: [Int], failed: (id: Int, error: OpenQError)?) {
    var accepted: [Int] = []
    for id in first..<first + limit {
        do {
            try await topic.publish(Blob(id: id, bytes: bytes))
            accepted.append(id)
        } catch let error as OpenQError {
            return (accepted, (id, error))
        } catch {
            Issue.record("unexpected error \(error)")
            return (accepted, nil)
        }
    }
    return (accepted, nil)
}

@Suite("Disk faults: typed errors, nothing accepted that cannot be committed, no restart needed")
struct DiskFaultTests {
    /// A consumer that acknowledges everything it gets and records the ids.
    static func ackingConsumer(_ subscription: Subscription<Blob>) -> Task<[Int], any Error> {
        Task {
            var seen: [Int] = []
            for try await delivery in try subscription.deliveries(prefetch: 4) {
                seen.append(delivery.message.payload.id)
                do {
                    try await delivery.ack()
                } catch let error as OpenQError where error.code == .storeFull || error.code == .storeReadOnly {
                    // An ack whose commit found the fault is in doubt: kept, and committed later.
                }
                if delivery.message.payload.id == -99 { break }
            }
            return seen
        }
    }

    @Test func aFullStore_refusesNewWork_keepsWhatItAccepted_andGoesOnOnceThereIsRoom() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory + "/openq.sqlite"
            let queue = try await openBroker(path)
            let jobs = try await queue.createTopic("jobs", of: Blob.self, configuration: durable)
            let work = try await jobs.subscription("work", acknowledgement: .manual(visibilityTimeout: .seconds(60)))
            let consumer = Self.ackingConsumer(work)
            let store = try #require(await queue.store as? SQLiteStore)

            try await store.capSizeForTesting(true)
            let (accepted, failed) = await publishUntilRefused(jobs, from: 0, bytes: 2_000)
            let (inDoubt, error) = try #require(failed)
            #expect(error.code == .storeFull)

            // While full: publishes and receives are refused before they change anything, and the
            // store says why.
            let published = await queue.statistics().topic("jobs")?.published
            let refused = await #expect(throws: OpenQError.self) { try await jobs.publish(Blob(id: -1)) }
            #expect(refused?.code == .storeFull)
            let refusedReceive = await #expect(throws: OpenQError.self) { try await work.receive(max: 1) }
            #expect(refusedReceive?.code == .storeFull)
            #expect(await queue.statistics().topic("jobs")?.published == published)
            let during = try #require(try await queue.storeStatistics())
            #expect(during.fault?.code == .storeFull)
            #expect(during.pendingWrites > 0)
            #expect(during.failedCommits > 0)

            // Room again: the kept writes commit by themselves, and the broker goes on.
            try await store.capSizeForTesting(false)
            try await eventually("the fault to clear") { try await queue.storeStatistics()?.fault == nil }
            try await jobs.publish(Blob(id: -99))
            let seen = try await consumer.value
            // Everything accepted was delivered once (the consumer acked each), the publish whose
            // commit found the store full too (in doubt: it was kept), and nothing else.
            #expect(seen.sorted() == (accepted + [inDoubt, -99]).sorted())
            #expect(Set(seen).count == seen.count)
            _ = await queue.shutdown(gracePeriod: .zero)

            // After a restart nothing comes back: every ack was committed.
            let reopened = try await openBroker(path)
            _ = try await reopened.createTopic("jobs", of: Blob.self, configuration: durable)
            #expect(await reopened.statistics().subscription("work", of: "jobs")?.depth == 0)
            _ = await reopened.shutdown(gracePeriod: .zero)
        }
    }

    @Test func aStoreTurnedReadOnly_keepsTheAcksItFailed_andCommitsThemWhenWritable() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory + "/openq.sqlite"
            let queue = try await openBroker(path)
            let jobs = try await queue.createTopic("jobs", of: Blob.self, configuration: durable)
            let work = try await jobs.subscription("work", acknowledgement: .manual(visibilityTimeout: .seconds(60)))
            for id in 1...5 { try await jobs.publish(Blob(id: id)) }
            let deliveries = try await work.receive(max: 5)
            #expect(deliveries.count == 5)
            let store = try #require(await queue.store as? SQLiteStore)

            try await store.refuseWritesForTesting(true)
            // The ack's own commit finds the fault: it fails, in doubt, and is kept.
            let ackError = await #expect(throws: OpenQError.self) { try await deliveries[0].ack() }
            #expect(ackError?.code == .storeReadOnly)
            let refused = await #expect(throws: OpenQError.self) { try await jobs.publish(Blob(id: 6)) }
            #expect(refused?.code == .storeReadOnly)
            #expect(try await queue.storeStatistics()?.fault?.code == .storeReadOnly)
            // The statistics still balance, and say what memory holds.
            let statistics = try #require(await queue.statistics().subscription("work", of: "jobs"))
            #expect(statistics.isBalanced)
            #expect(statistics.inFlight == 4)

            try await store.refuseWritesForTesting(false)
            try await eventually("the fault to clear") { try await queue.storeStatistics()?.fault == nil }
            try await deliveries[1].ack()
            try await jobs.publish(Blob(id: 6))
            _ = await queue.shutdown(gracePeriod: .zero)

            // The kept ack was committed: messages 1 and 2 are gone; 3, 4, 5 (in flight) and 6 wait.
            let reopened = try await openBroker(path)
            let again = try await reopened.createTopic("jobs", of: Blob.self, configuration: durable)
            let left = try await again.subscription("work", acknowledgement: .manual(visibilityTimeout: .seconds(60)))
                .receive(max: 10)
            #expect(left.map(\.message.payload.id).sorted() == [3, 4, 5, 6])
            _ = await reopened.shutdown(gracePeriod: .zero)
        }
    }

    @Test(.enabled(if: Tmpfs.isAvailable, "needs root to mount a tmpfs"))
    func aDiskThatFillsUp_isStoreFull_andFreeingSpaceLetsTheBrokerGoOn() async throws {
        let disk = try #require(Tmpfs(megabytes: 3))
        defer { disk.unmount() }
        let path = disk.path + "/openq.sqlite"
        let queue = try await openBroker(path)
        let jobs = try await queue.createTopic("jobs", of: Blob.self, configuration: durable)
        let work = try await jobs.subscription("work", acknowledgement: .manual(visibilityTimeout: .seconds(60)))
        let consumer = Self.ackingConsumer(work)
        // Leave about 256 KiB free.
        let filler = disk.path + "/filler"
        var filled = Data()
        var status = statvfs()
        statvfs(disk.path, &status)
        let free = Int(status.f_bavail) * Int(status.f_frsize)
        filled.count = max(0, free - 256 * 1024)
        try filled.write(to: URL(fileURLWithPath: filler))

        let (accepted, failed) = await publishUntilRefused(jobs, from: 0, bytes: 4_000)
        let (inDoubt, error) = try #require(failed)
        #expect(error.code == .storeFull)
        #expect(try await queue.storeStatistics()?.fault?.code == .storeFull)

        try FileManager.default.removeItem(atPath: filler)
        try await eventually("the fault to clear") { try await queue.storeStatistics()?.fault == nil }
        try await jobs.publish(Blob(id: -99))
        let seen = try await consumer.value
        #expect(seen.sorted() == (accepted + [inDoubt, -99]).sorted())
        _ = await queue.shutdown(gracePeriod: .zero)
    }

    @Test(.enabled(if: Tmpfs.isAvailable, "needs root to mount a tmpfs"))
    func aStoreOnAReadOnlyMount_isStoreReadOnly() async throws {
        let disk = try #require(Tmpfs(megabytes: 4))
        defer { disk.unmount() }
        let path = disk.path + "/openq.sqlite"
        let queue = try await openBroker(path)
        let jobs = try await queue.createTopic("jobs", of: Blob.self, configuration: durable)
        _ = try await jobs.subscription("work")
        try await jobs.publish(Blob(id: 1))
        _ = await queue.shutdown(gracePeriod: .zero)
        #expect(disk.remount(readOnly: true))
        let error = await #expect(throws: OpenQError.self) { try await openBroker(path) }
        #expect(error?.code == .storeReadOnly)
        // Writable again: the store opens with what it held.
        #expect(disk.remount(readOnly: false))
        let reopened = try await openBroker(path)
        _ = try await reopened.createTopic("jobs", of: Blob.self, configuration: durable)
        #expect(await reopened.statistics().subscription("work", of: "jobs")?.depth == 1)
        _ = await reopened.shutdown(gracePeriod: .zero)
    }

    @Test func aFileThatIsNotADatabase_isStoreCorrupted_andLeftUntouched() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory + "/not-a-database"
            let bytes = Data(repeating: 0x42, count: 8192)
            try bytes.write(to: URL(fileURLWithPath: path))
            let error = await #expect(throws: OpenQError.self) { try await openBroker(path) }
            #expect(error?.code == .storeCorrupted)
            #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == bytes)
        }
    }

    @Test func aDamagedStore_isStoreCorrupted_neverACrash() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory + "/openq.sqlite"
            let queue = try await openBroker(path)
            let jobs = try await queue.createTopic("jobs", of: Blob.self, configuration: durable)
            _ = try await jobs.subscription("work")
            for id in 1...200 { try await jobs.publish(Blob(id: id, bytes: 500)) }
            _ = await queue.shutdown(gracePeriod: .zero)
            // Overwrite every page after the first (the header stays valid).
            var file = try Data(contentsOf: URL(fileURLWithPath: path))
            #expect(file.count > 8192)
            for offset in 4096..<file.count { file[offset] = UInt8(truncatingIfNeeded: offset &* 7) }
            try file.write(to: URL(fileURLWithPath: path))
            // Opening, or declaring the topic, fails with storeCorrupted.
            do {
                let reopened = try await openBroker(path)
                let error = await #expect(throws: OpenQError.self) {
                    _ = try await reopened.createTopic("jobs", of: Blob.self, configuration: durable)
                }
                #expect(error?.code == .storeCorrupted)
                _ = await reopened.shutdown(gracePeriod: .zero)
            } catch let error as OpenQError {
                #expect(error.code == .storeCorrupted)
            }
        }
    }

    @Test func anotherApplicationsDatabase_isStoreIncompatible_andLeftUntouched() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory + "/app.sqlite"
            let database = try DatabaseQueue(path: path)
            try await database.write { db in
                try db.execute(sql: "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
                try db.execute(sql: "INSERT INTO users (name) VALUES ('ada')")
            }
            try database.close()
            let error = await #expect(throws: OpenQError.self) { try await openBroker(path) }
            #expect(error?.code == .storeIncompatible)
            let check = try DatabaseQueue(path: path)
            let tables = try await check.read { db in
                try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            }
            #expect(tables == ["users"])
            #expect(try await check.read { db in try Int32.fetchOne(db, sql: "PRAGMA application_id") } == 0)
            try check.close()

            // A database marked by another application, even an empty one.
            let marked = directory + "/marked.sqlite"
            let other = try DatabaseQueue(path: marked)
            try await other.write { db in try db.execute(sql: "PRAGMA application_id = 1234") }
            try other.close()
            let markedError = await #expect(throws: OpenQError.self) { try await openBroker(marked) }
            #expect(markedError?.code == .storeIncompatible)
        }
    }

    @Test func aStoreOfANewerOpenQ_isStoreIncompatible() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory + "/openq.sqlite"
            let queue = try await openBroker(path)
            _ = await queue.shutdown(gracePeriod: .zero)
            let database = try DatabaseQueue(path: path)
            try await database.write { db in
                try db.execute(sql: "INSERT INTO grdb_migrations (identifier) VALUES ('v99: from the future')")
            }
            try database.close()
            let error = await #expect(throws: OpenQError.self) { try await openBroker(path) }
            #expect(error?.code == .storeIncompatible)
        }
    }

    @Test func aStoreWrittenBeforeTheApplicationIDExisted_opens_andIsMarked() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory + "/openq.sqlite"
            let queue = try await openBroker(path)
            let jobs = try await queue.createTopic("jobs", of: Blob.self, configuration: durable)
            _ = try await jobs.subscription("work")
            try await jobs.publish(Blob(id: 1))
            _ = await queue.shutdown(gracePeriod: .zero)
            let database = try DatabaseQueue(path: path)
            try await database.write { db in try db.execute(sql: "PRAGMA application_id = 0") }
            try database.close()

            let reopened = try await openBroker(path)
            _ = try await reopened.createTopic("jobs", of: Blob.self, configuration: durable)
            #expect(await reopened.statistics().subscription("work", of: "jobs")?.depth == 1)
            _ = await reopened.shutdown(gracePeriod: .zero)
            let check = try DatabaseQueue(path: path)
            #expect(
                try await check.read { db in try Int32.fetchOne(db, sql: "PRAGMA application_id") }
                    == Schema.applicationID)
            try check.close()
        }
    }

    @Test func aPayloadThatCannotBeEncoded_isEncodingFailed_andNothingIsPublished() async throws {
        try await withTemporaryDirectory { directory in
            let queue = try await openBroker(directory + "/openq.sqlite")
            let topic = try await queue.createTopic("odd", of: Unencodable.self, configuration: durable)
            let work = try await topic.subscription("work")
            let error = await #expect(throws: OpenQError.self) { try await topic.publish(Unencodable()) }
            #expect(error?.code == .encodingFailed)
            #expect(await queue.statistics().topic("odd")?.published == 0)
            #expect(try work.statistics().depth == 0)
            #expect(try await queue.storeStatistics()?.fault == nil)
            _ = await queue.shutdown(gracePeriod: .zero)
        }
    }

    /// A `Consumer` (a handler run by the broker) takes nothing while the store cannot commit and
    /// goes on by itself once it can: it does not end.
    @Test func aConsumer_waitsThroughAFault_andGoesOn() async throws {
        try await withTemporaryDirectory { directory in
            let queue = try await openBroker(directory + "/openq.sqlite")
            let jobs = try await queue.createTopic("jobs", of: Blob.self, configuration: durable)
            let store = try #require(await queue.store as? SQLiteStore)
            let seen = SeenIDs()
            let consumer = try await jobs.consume(
                subscription: "work", with: RecordingHandler(seen: seen), concurrency: 2)
            for id in 1...10 { try await jobs.publish(Blob(id: id)) }
            try await eventually("the first ten") { await seen.ids.count >= 10 }
            try await store.refuseWritesForTesting(true)
            // This publish's own commit finds the fault: in doubt, kept, delivered once it commits.
            await #expect(throws: OpenQError.self) { try await jobs.publish(Blob(id: 11)) }
            try await Task.sleep(for: .milliseconds(50))
            #expect(await queue.statistics().subscription("work", of: "jobs")?.consumers == 1)
            try await store.refuseWritesForTesting(false)
            try await eventually("the fault to clear") { try await queue.storeStatistics()?.fault == nil }
            for id in 12...20 { try await jobs.publish(Blob(id: id)) }
            try await eventually("all twenty") { Set(await seen.ids) == Set(1...20) }
            #expect(await queue.statistics().subscription("work", of: "jobs")?.consumers == 1)
            await consumer.stop()
            _ = await queue.shutdown(gracePeriod: .zero)
        }
    }

    /// Producers and consumers run while the store flips between read-only and writable: nothing
    /// refused is ever delivered, everything accepted is delivered exactly once, and after a
    /// restart nothing acknowledged comes back.
    @Test func faultsComingAndGoingUnderLoad_loseNothing_andDeliverNothingRefused() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory + "/openq.sqlite"
            let queue = try await openBroker(path)
            let jobs = try await queue.createTopic("jobs", of: Blob.self, configuration: durable)
            let work = try await jobs.subscription("work", acknowledgement: .manual(visibilityTimeout: .seconds(60)))
            let store = try #require(await queue.store as? SQLiteStore)
            let consumers = (0..<2).map { _ in Self.ackingConsumer(work) }
            let flipper = Task {
                for round in 0..<40 {
                    try await store.refuseWritesForTesting(round % 2 == 0)
                    try await Task.sleep(for: .milliseconds(15))
                }
                try await store.refuseWritesForTesting(false)
            }
            let outcomes = try await withThrowingTaskGroup(of: (accepted: [Int], refused: [Int], inDoubt: [Int]).self) {
                group in
                for producer in 0..<4 {
                    group.addTask {
                        var outcome: (accepted: [Int], refused: [Int], inDoubt: [Int]) = ([], [], [])
                        for index in 0..<150 {
                            let id = producer * 1_000 + index
                            do {
                                try await jobs.publish(Blob(id: id, bytes: 100))
                                outcome.accepted.append(id)
                            } catch let error as OpenQError {
                                #expect(error.code == .storeReadOnly)
                                // Refused before anything changed, or failed by its own commit.
                                if error.message.hasPrefix("Topic 'jobs' accepts nothing new") {
                                    outcome.refused.append(id)
                                } else {
                                    outcome.inDoubt.append(id)
                                }
                            }
                            try await Task.sleep(for: .milliseconds(1))
                        }
                        return outcome
                    }
                }
                return try await group.reduce(into: [(accepted: [Int], refused: [Int], inDoubt: [Int])]()) {
                    $0.append($1)
                }
            }
            try await flipper.value
            let accepted = outcomes.flatMap(\.accepted)
            let refused = Set(outcomes.flatMap(\.refused))
            let inDoubt = Set(outcomes.flatMap(\.inDoubt))
            #expect(!refused.isEmpty && !accepted.isEmpty, "the faults met the load")
            try await eventually("the fault to clear") { try await queue.storeStatistics()?.fault == nil }
            try await jobs.publish(Blob(id: -99))
            try await jobs.publish(Blob(id: -99))
            var seen: [Int] = []
            for consumer in consumers { seen += try await consumer.value.filter { $0 != -99 } }
            #expect(Set(seen).count == seen.count, "nothing delivered twice")
            #expect(Set(accepted).isSubset(of: Set(seen)), "everything accepted was delivered")
            #expect(Set(seen).isDisjoint(with: refused), "nothing refused was delivered")
            #expect(Set(seen).isSubset(of: Set(accepted).union(inDoubt)))
            #expect(await queue.statistics().subscription("work", of: "jobs")?.isBalanced == true)
            _ = await queue.shutdown(gracePeriod: .zero)

            let reopened = try await openBroker(path)
            _ = try await reopened.createTopic("jobs", of: Blob.self, configuration: durable)
            #expect(await reopened.statistics().subscription("work", of: "jobs")?.depth == 0)
            _ = await reopened.shutdown(gracePeriod: .zero)
        }
    }

    @Test func storeStatistics_reportTheFileAndWALSizes_andTheCommits() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory + "/openq.sqlite"
            let queue = try await openBroker(path)
            let jobs = try await queue.createTopic("jobs", of: Blob.self, configuration: durable)
            _ = try await jobs.subscription("work")
            for id in 1...50 { try await jobs.publish(Blob(id: id, bytes: 1_000)) }
            let statistics = try #require(try await queue.storeStatistics())
            #expect(statistics.path == path)
            #expect(statistics.fileBytes > 0)
            #expect(statistics.walBytes > 50 * 1_000 || statistics.fileBytes > 50 * 1_000)
            #expect(statistics.commits >= 50)
            #expect(statistics.committedWrites >= 50)
            #expect(statistics.failedCommits == 0)
            #expect(statistics.fault == nil)
            let size = try FileManager.default.attributesOfItem(atPath: path + "-wal")[.size] as? Int
            #expect(statistics.walBytes == size)
            _ = await queue.shutdown(gracePeriod: .zero)
            let inMemory = MessageQueue()
            #expect(try await inMemory.storeStatistics() == nil)
            _ = await inMemory.shutdown(gracePeriod: .zero)
        }
    }
}

@Suite("WAL housekeeping: the write-ahead log stays bounded")
struct WALHousekeepingTests {
    /// Sustained writes (40 MiB of 1 KiB messages) while a slow consumer pages its backlog back
    /// from the file: checkpoints keep the WAL near SQLite's checkpoint size, and
    /// `journal_size_limit` truncates it after a long reader let it grow.
    @Test(.enabled(if: !underThreadSanitizer, "80 MiB of writes: run by the debug and release passes"))
    func sustainedWrites_withASlowReader_keepTheWALBounded() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory + "/openq.sqlite"
            let queue = try await openPagingBroker(path, resident: 50)
            let jobs = try await queue.createTopic("jobs", of: Blob.self, configuration: largeDurable)
            let work = try await jobs.subscription("work", acknowledgement: .manual(visibilityTimeout: .seconds(60)))
            let consumer = Task {
                var received = 0
                while received < 40_000 {
                    let deliveries = try await work.receive(max: 20, waitingUpTo: .seconds(patience))
                    if deliveries.isEmpty { break }
                    _ = await work.ack(deliveries)
                    received += deliveries.count
                    try await Task.sleep(for: .microseconds(200))
                }
                return received
            }
            var largestWAL = 0
            for first in stride(from: 0, to: 40_000, by: 200) {
                try await jobs.publish(contentsOf: (first..<first + 200).map { Blob(id: $0, bytes: 1_000) })
                largestWAL = max(largestWAL, try #require(try await queue.storeStatistics()).walBytes)
            }
            #expect(try await consumer.value == 40_000)
            #expect(largestWAL < Schema.walSizeLimit, "the WAL reached \(largestWAL / 1_048_576) MiB")

            // A reader that holds its snapshot (the sqlite3 shell, a long query) keeps the WAL from
            // starting over while it reads; once it ends, the WAL is truncated back to the limit.
            // The reader holds its snapshot (on GRDB's thread, not the cooperative pool's) until the
            // writes are done, however long they take.
            let reader = try DatabaseQueue(path: path)
            let (holds, holdsContinuation) = AsyncStream.makeStream(of: Void.self)
            let release = DispatchSemaphore(value: 0)
            let holding = Task {
                try await reader.read { db in
                    _ = try Int.fetchOne(db, sql: "SELECT count(*) FROM messages")
                    holdsContinuation.yield()
                    _ = release.wait(timeout: .now() + patience)
                }
            }
            for await _ in holds { break }
            var grown = 0
            for first in stride(from: 100_000, to: 130_000, by: 200) {
                try await jobs.publish(contentsOf: (first..<first + 200).map { Blob(id: $0, bytes: 1_000) })
                grown = max(grown, try #require(try await queue.storeStatistics()).walBytes)
            }
            release.signal()
            try await holding.value
            #expect(grown > Schema.walSizeLimit, "the reader held the WAL: \(grown / 1_048_576) MiB")
            try reader.close()
            _ = try await work.purge()
            for first in stride(from: 200_000, to: 210_000, by: 200) {
                try await jobs.publish(contentsOf: (first..<first + 200).map { Blob(id: $0, bytes: 1_000) })
            }
            let after = try #require(try await queue.storeStatistics())
            #expect(after.walBytes <= Schema.walSizeLimit, "the WAL stayed at \(after.walBytes / 1_048_576) MiB")
            _ = await queue.shutdown(gracePeriod: .zero)
        }
    }
}
