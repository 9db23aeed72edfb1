// openq-compare: the durable rows, against raw GRDB.

import Foundation
import GRDB
import Logging
import OpenQ
import OpenQSQLite

/// Durable topics beside raw GRDB in the same run: the same 1 KiB rows, the same SQLite level, a
/// fresh file per round. The raw peer is the floor OpenQ's journal is measured against: plain
/// inserts into one table, so the ratio shows what OpenQ's bookkeeping (messages plus copies,
/// attempts committed before delivery, group commit across callers) costs over it.
enum Durable {
    static let payload = [UInt8](repeating: 0x5A, count: 1_024)
    /// The recovery row's messages are small (16 bytes): it measures rows, not bytes.
    static let smallPayload = [UInt8](repeating: 0x5A, count: 16)

    /// Errors only: a shutdown with messages left is the point of some rows, not news.
    static var logger: Logger {
        var logger = Logger(label: "openq")
        logger.logLevel = .error
        return logger
    }

    /// A fresh directory for one round's store.
    static func directory() throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("openq-compare-\(UUID().uuidString)")
            .path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    static func level(_ durability: SQLiteDurability) -> String { durability == .powerLoss ? "FULL" : "NORMAL" }

    /// A durable topic of 1 KiB byte payloads (stored as they are) with one manual subscription.
    static func topic(
        _ durability: SQLiteDurability, residentMessages: Int = 10_000
    ) async throws -> (MessageQueue, Topic<[UInt8]>, String) {
        let directory = try directory()
        let queue = try await MessageQueue(
            storage: .sqlite(
                path: directory + "/openq.sqlite", durability: durability, residentMessages: residentMessages),
            configuration: .init(metricsInterval: nil), logger: logger)
        let topic = try await queue.createTopic(
            "bench", of: [UInt8].self,
            configuration: .init(capacity: 10_000_000, deadLetter: .disabled, durability: .durable))
        _ = try await topic.subscription("work")
        return (queue, topic, directory)
    }

    static func finish(_ queue: MessageQueue, _ directory: String) async {
        _ = await queue.shutdown(gracePeriod: .zero)
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// `publishers` tasks, each awaiting every one of its publishes.
    static func concurrentPublishers(_ publishers: Int, _ durability: SQLiteDurability) -> Run {
        { count in
            let (queue, topic, directory) = try await topic(durability)
            let start = ContinuousClock.now
            try await withThrowingTaskGroup(of: Void.self) { group in
                for publisher in 0..<publishers {
                    group.addTask {
                        for _ in stride(from: publisher, to: count, by: publishers) { try await topic.publish(payload) }
                    }
                }
                try await group.waitForAll()
            }
            let elapsed = ContinuousClock.now - start
            await finish(queue, directory)
            return (elapsed, count)
        }
    }

    /// One publisher publishing batches of `batch`.
    static func batches(_ batch: Int, _ durability: SQLiteDurability) -> Run {
        { count in
            let (queue, topic, directory) = try await topic(durability)
            let start = ContinuousClock.now
            for _ in stride(from: 0, to: count, by: batch) {
                try await topic.publish(contentsOf: Array(repeating: payload, count: batch))
            }
            let elapsed = ContinuousClock.now - start
            await finish(queue, directory)
            return (elapsed, count)
        }
    }

    /// publish → receive(max: 100) → ack of each batch with one `Subscription.ack(_:)`, the
    /// producer publishing batches of 100 in its own task.
    static let publishReceiveAck: Run = publishReceiveAck(behind: 0)

    /// ``publishReceiveAck`` on a topic that already holds `backlog` waiting messages (published
    /// before the clock starts): the consumer takes from the head of the backlog, read back from
    /// the file in pages, while the producer appends behind it.
    static func publishReceiveAck(behind backlog: Int) -> Run {
        { count in try await measurePublishReceiveAck(count: count, behind: backlog) }
    }

    static func measurePublishReceiveAck(count: Int, behind backlog: Int) async throws -> (Duration, Int) {
        let (queue, topic, directory) = try await topic(.powerLoss)
        let work = try topic.existingSubscription("work")
        for first in stride(from: 0, to: backlog, by: 1_000) {
            try await topic.publish(contentsOf: Array(repeating: payload, count: min(1_000, backlog - first)))
        }
        let start = ContinuousClock.now
        let producer = Task {
            for _ in stride(from: 0, to: count, by: 100) {
                try await topic.publish(contentsOf: Array(repeating: payload, count: 100))
            }
        }
        var acked = 0
        while acked < count {
            let deliveries = try await work.receive(max: 100, waitingUpTo: .seconds(5))
            let failures = await work.ack(deliveries)
            precondition(failures.isEmpty, "ack failed: \(failures.map(\.error))")
            acked += deliveries.count
        }
        try await producer.value
        let elapsed = ContinuousClock.now - start
        await finish(queue, directory)
        return (elapsed, count)
    }

    /// A replay of `count` retained 16-byte messages from the file: a topic that retains
    /// everything gets them published (before the clock starts), then a named subscription
    /// created at `.earliest` receives and acknowledges them all in batches of 1 000, paged in
    /// through the default 10 000 resident messages.
    static let replay: Run = { count in
        let directory = try directory()
        let queue = try await MessageQueue(
            storage: .sqlite(path: directory + "/openq.sqlite", durability: .processCrash),
            configuration: .init(metricsInterval: nil), logger: logger)
        let topic = try await queue.createTopic(
            "bench", of: [UInt8].self,
            configuration: .init(
                capacity: 10_000_000, deadLetter: .disabled, retention: Retention(count: nil, age: nil),
                durability: .durable))
        for first in stride(from: 0, to: count, by: 1_000) {
            try await topic.publish(contentsOf: Array(repeating: smallPayload, count: min(1_000, count - first)))
        }
        let start = ContinuousClock.now
        let audit = try await topic.subscription("audit", startingAt: .earliest)
        var received = 0
        while received < count {
            let deliveries = try await audit.receive(max: 1_000, waitingUpTo: .seconds(5))
            precondition(!deliveries.isEmpty, "the replay stopped at \(received)")
            _ = await audit.ack(deliveries)
            received += deliveries.count
        }
        let elapsed = ContinuousClock.now - start
        await finish(queue, directory)
        return (elapsed, count)
    }

    /// Runs in a probe process (`--memory-probe durable-backlog[-unpaged]`): publishes `count`
    /// 1 KiB messages to a durable topic nobody consumes and prints the growth of resident memory
    /// in MiB. Paged: the default 10 000 resident messages; unpaged: all of them in memory.
    static func backlogProbe(count: Int, paged: Bool) async throws {
        let (queue, topic, directory) = try await topic(.processCrash, residentMessages: paged ? 10_000 : Int.max / 2)
        let before = Memory.residentBytes()
        for first in stride(from: 0, to: count, by: 1_000) {
            // Each payload its own buffer, as payloads that arrive from outside are (copies of one
            // array would share it and flatter the unpaged peer).
            try await topic.publish(
                contentsOf: (first..<min(first + 1_000, count)).map { number in
                    var bytes = payload
                    bytes[0] = UInt8(truncatingIfNeeded: number)
                    return bytes
                })
        }
        let after = Memory.residentBytes()
        print(Double(after - before) / 1_048_576)
        await finish(queue, directory)
    }

    /// Raw GRDB: transactions of `rows` 1 KiB inserts into one table, one after the other.
    static func raw(rowsPerCommit rows: Int, _ durability: SQLiteDurability) -> Run {
        { count in
            let directory = try directory()
            let pool = try rawPool(directory, durability)
            let start = ContinuousClock.now
            for first in stride(from: 0, to: count, by: rows) {
                try await pool.write { db in
                    let statement = try db.cachedStatement(sql: "INSERT INTO rows (id, payload) VALUES (?, ?)")
                    for id in first..<min(first + rows, count) {
                        try statement.execute(arguments: [id, Data(payload)])
                    }
                }
            }
            let elapsed = ContinuousClock.now - start
            try pool.close()
            try? FileManager.default.removeItem(atPath: directory)
            return (elapsed, count)
        }
    }

    /// Raw GRDB with the deliver and ack of a queue: insert 100, mark 100 delivered, delete 100,
    /// three commits per 100 messages (what a durable work queue commits at the least).
    static let rawPublishReceiveAck: Run = { count in
        let directory = try directory()
        let pool = try rawPool(directory, .powerLoss)
        let start = ContinuousClock.now
        for first in stride(from: 0, to: count, by: 100) {
            let ids = first..<min(first + 100, count)
            try await pool.write { db in
                let statement = try db.cachedStatement(sql: "INSERT INTO rows (id, payload) VALUES (?, ?)")
                for id in ids { try statement.execute(arguments: [id, Data(payload)]) }
            }
            try await pool.write { db in
                let statement = try db.cachedStatement(sql: "UPDATE rows SET attempts = attempts + 1 WHERE id = ?")
                for id in ids { try statement.execute(arguments: [id]) }
            }
            try await pool.write { db in
                let statement = try db.cachedStatement(sql: "DELETE FROM rows WHERE id = ?")
                for id in ids { try statement.execute(arguments: [id]) }
            }
        }
        let elapsed = ContinuousClock.now - start
        try pool.close()
        try? FileManager.default.removeItem(atPath: directory)
        return (elapsed, count)
    }

    static func rawPool(_ directory: String, _ durability: SQLiteDurability) throws -> DatabasePool {
        let pool = try DatabasePool(path: directory + "/raw.sqlite")
        try pool.writeWithoutTransaction { db in
            try db.execute(sql: "PRAGMA synchronous = \(durability == .powerLoss ? "FULL" : "NORMAL")")
            try db.execute(
                sql: "CREATE TABLE rows (id INTEGER PRIMARY KEY, payload BLOB NOT NULL, attempts INTEGER DEFAULT 0)")
        }
        return pool
    }

    /// Latency of one publisher awaiting each publish (OpenQ), or of one single-row commit (raw):
    /// p50 in microseconds over `count` operations.
    static func latencyP50(count: Int, raw: Bool) async throws -> Double {
        var samples: [Double] = []
        samples.reserveCapacity(count)
        if raw {
            let directory = try directory()
            let pool = try rawPool(directory, .powerLoss)
            for id in 0..<count {
                let start = ContinuousClock.now
                try await pool.write { db in
                    try db.execute(sql: "INSERT INTO rows (id, payload) VALUES (?, ?)", arguments: [id, Data(payload)])
                }
                samples.append((ContinuousClock.now - start).seconds * 1e6)
            }
            try pool.close()
            try? FileManager.default.removeItem(atPath: directory)
        } else {
            let (queue, topic, directory) = try await topic(.powerLoss)
            for _ in 0..<count {
                let start = ContinuousClock.now
                try await topic.publish(payload)
                samples.append((ContinuousClock.now - start).seconds * 1e6)
            }
            await finish(queue, directory)
        }
        return median(samples)
    }

    /// Seconds from opening a store that holds `count` waiting 1 KiB messages to the first delivery.
    static func recoverySeconds(count: Int) async throws -> Double {
        let (queue, topic, directory) = try await topic(.processCrash)
        for _ in stride(from: 0, to: count, by: 1_000) {
            try await topic.publish(contentsOf: Array(repeating: smallPayload, count: min(1_000, count)))
        }
        _ = await queue.shutdown(gracePeriod: .zero)
        let start = ContinuousClock.now
        let reopened = try await MessageQueue(
            storage: .sqlite(path: directory + "/openq.sqlite", durability: .processCrash),
            configuration: .init(metricsInterval: nil), logger: logger)
        let again = try await reopened.createTopic(
            "bench", of: [UInt8].self,
            configuration: .init(capacity: 10_000_000, deadLetter: .disabled, durability: .durable))
        let work = try await again.subscription("work")
        let first = try await work.receive(max: 1, waitingUpTo: .seconds(5))
        precondition(first.count == 1, "nothing recovered")
        let elapsed = (ContinuousClock.now - start).seconds
        await finish(reopened, directory)
        return elapsed
    }
}

/// The durable rows of the table.
func durableRows(messages n: Int, rounds: Int) async throws -> [Row] {
    var rows: [Row] = []
    let count = min(max(n / 10, 1_000), 100_000)
    for durability in [SQLiteDurability.powerLoss, .processCrash] {
        rows += try await compare(
            "durable: 16 publishers awaiting each publish, \(Durable.level(durability))", count: count,
            rounds: rounds, openQ: Durable.concurrentPublishers(16, durability),
            peers: [("raw GRDB, 16 rows per commit", Durable.raw(rowsPerCommit: 16, durability))])
    }
    rows += try await compare(
        "durable: batches of 256, FULL", count: count, rounds: rounds, openQ: Durable.batches(256, .powerLoss),
        peers: [("raw GRDB, 256 rows per commit", Durable.raw(rowsPerCommit: 256, .powerLoss))])
    rows += try await compare(
        "durable: 256 publishers awaiting each publish, FULL", count: count, rounds: rounds,
        openQ: Durable.concurrentPublishers(256, .powerLoss),
        peers: [("raw GRDB, 256 rows per commit", Durable.raw(rowsPerCommit: 256, .powerLoss))])
    rows += try await compare(
        "durable: publish→receive→batch ack, batches of 100, FULL", count: count, rounds: rounds,
        openQ: Durable.publishReceiveAck,
        peers: [("raw GRDB insert, update, delete per 100", Durable.rawPublishReceiveAck)])
    let latencyScenario = "durable: one publisher, p50 per publish, FULL"
    if selected(latencyScenario) {
        let latencyCount = min(max(n / 100, 200), 2_000)
        var openQ: [Double] = []
        var raw: [Double] = []
        for round in 1...rounds {
            openQ.append(try await Durable.latencyP50(count: latencyCount, raw: false))
            raw.append(try await Durable.latencyP50(count: latencyCount, raw: true))
            log("  durable latency: round \(round)/\(rounds)")
        }
        rows.append(
            Row(
                scenario: latencyScenario, unit: "µs", higherIsBetter: false,
                peer: "raw GRDB, one row per commit", openQ: openQ, peerSamples: raw))
    }
    // Backlogs larger than memory: resident memory, and throughput behind the backlog.
    let backlog = min(max(n, 20_000), 1_000_000)
    let memoryScenario = "durable: \(backlog) waiting × 1 KiB, resident memory"
    if selected(memoryScenario) {
        var paged: [Double] = []
        var unpaged: [Double] = []
        for round in 1...max(rounds / 2, 1) {
            paged.append(try Memory.measure("durable-backlog", count: backlog))
            if !options.openQOnly { unpaged.append(try Memory.measure("durable-backlog-unpaged", count: backlog)) }
            log("  durable backlog memory: round \(round)")
        }
        rows.append(
            Row(
                scenario: memoryScenario, unit: "MiB", higherIsBetter: false,
                peer: "the same, all in memory (no paging)", openQ: paged, peerSamples: unpaged))
    }
    rows += try await compare(
        "durable: publish→receive→batch ack behind \(backlog) waiting, FULL", count: count,
        rounds: max(rounds / 2, 1), openQ: Durable.publishReceiveAck(behind: backlog),
        peers: [("the same on an empty topic", Durable.publishReceiveAck)])
    rows += try await compare(
        "durable: replay \(backlog) retained (16 B) from the file, batches of 1000", count: backlog,
        rounds: max(rounds / 2, 1), openQ: Durable.replay, peers: [])
    let recoveryCount = min(max(n, 10_000), 1_000_000)
    let recoveryScenario = "durable: reopen \(recoveryCount) waiting (16 B) → first delivery"
    if selected(recoveryScenario) {
        var recovery: [Double] = []
        for round in 1...max(rounds / 2, 1) {
            recovery.append(try await Durable.recoverySeconds(count: recoveryCount))
            log("  durable recovery: round \(round)")
        }
        rows.append(
            Row(
                scenario: recoveryScenario, unit: "s", higherIsBetter: false, peer: "–", openQ: recovery,
                peerSamples: []))
    }
    return rows
}
