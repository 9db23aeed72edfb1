import Foundation
import GRDB
import OpenQ
import Testing

@testable import OpenQSQLite

#if canImport(Glibc)
    import Glibc
#endif

/// What the lines of all children so far promise about the store.
struct Promises {
    var published: Set<Int> = []
    var acked: Set<Int> = []
    /// Ids whose ack was called (it may have committed before the kill, its line not written).
    var ackStarted: Set<Int> = []
    /// Ids that were (or may have been) dead-lettered: their copies may legitimately come back
    /// through a redrive with a fresh attempt count, and be delivered after an ack.
    var maybeDead: Set<Int> = []
    var highestAttempt: [Int: Int] = [:]
    var calls = 0
    /// Every line about each job, with the life it was said in, for failure messages.
    var history: [Int: [String]] = [:]
    var life = 0

    func story(of ids: some Collection<Int>) -> String {
        ids.sorted().prefix(5).map { "job \($0): \(history[$0, default: []].joined(separator: ", "))" }
            .joined(separator: "; ")
    }

    mutating func read(_ lines: [String]) throws {
        life += 1
        for line in lines {
            let fields = line.split(separator: " ")
            guard let kind = fields.first else { continue }
            let id = fields.count > 1 ? Int(fields[1]) ?? -1 : -1
            if kind != "V" { history[id, default: []].append("\(life):\(line)") }
            switch kind {
            case "READY": break
            case "P": published.insert(id)
            case "a": ackStarted.insert(id)
            case "A": acked.insert(id)
            case "D": maybeDead.insert(id)
            case "N", "V": break
            case "R":
                let attempt = Int(fields[2]) ?? 0
                if !maybeDead.contains(id), let highest = highestAttempt[id], attempt <= highest {
                    throw TestFailure("job \(id) was delivered with attempt \(attempt) after attempt \(highest)")
                }
                if !maybeDead.contains(id), acked.contains(id) {
                    throw TestFailure("job \(id) was delivered again after its ack returned")
                }
                highestAttempt[id] = max(highestAttempt[id] ?? 0, attempt)
                if attempt >= 4 { maybeDead.insert(id) }
            default:
                throw TestFailure("the child said: \(line)")
            }
            calls += 1
        }
    }
}

/// One row per copy the store holds: the job, where, and its attempts.
func storedCopies(_ path: String) throws -> [(id: Int, topic: String, attempts: Int)] {
    let database = try DatabaseQueue(path: path)
    defer { try? database.close() }
    return try database.read { db in
        try Row.fetchAll(
            db,
            sql: """
                SELECT CAST(json_extract(CAST(m.payload AS TEXT), '$.id') AS INTEGER) AS job, c.topic, c.attempts
                FROM copies c JOIN messages m ON m.topic = c.topic AND m.sequence = c.sequence
                """
        ).map { (id: $0["job"], topic: $0["topic"], attempts: $0["attempts"]) }
    }
}

/// The messages of topic `jobs` that no copy holds (its retained history), and the retention bound.
func retainedHistory(_ path: String) throws -> (unheld: Int, retainFrom: Int, next: Int) {
    let database = try DatabaseQueue(path: path)
    defer { try? database.close() }
    return try database.read { db in
        let unheld =
            try Int.fetchOne(
                db,
                sql: """
                    SELECT count(*) FROM messages m WHERE m.topic = 'jobs' AND NOT EXISTS (
                        SELECT 1 FROM copies c WHERE c.topic = m.topic AND c.sequence = m.sequence)
                    """) ?? -1
        let row = try Row.fetchOne(db, sql: "SELECT retain_from, next_sequence FROM topics WHERE name = 'jobs'")
        return (unheld, row?["retain_from"] ?? -1, row?["next_sequence"] ?? -1)
    }
}

@Suite("Crash tests: kill -9 at random moments, then check the store", .serialized)
struct CrashTests {
    /// At least 50 kills across publish, receive, ack, nack, reject (dead-letter), expiry and
    /// redrive traffic; after each, every promise the returned calls made is checked in the store.
    /// Every other life pages (4 resident messages: most of the backlog waits in the store only,
    /// and pages are read back while the child is killed).
    @Test func killedAtRandomMoments_theStoreKeepsEveryPromise() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory + "/openq.sqlite"
            var promises = Promises()
            let kills = 50
            var pagedOut = 0
            for round in 0..<kills {
                let (lines, copies) = try await offThePool {
                    () throws -> ([String], [(id: Int, topic: String, attempts: Int)]) in
                    var random = SystemRandomNumberGenerator()
                    let resident = round % 2 == 0 ? "4" : "10000"
                    let child = try Child([
                        path, "traffic", String(round + 1), String(round * 100_000 + 1), resident,
                    ])
                    guard child.waitFor(20, { $0 == "READY" || $0.hasPrefix("ERROR") }) else {
                        _ = child.kill()
                        throw TestFailure("round \(round): the child did not start")
                    }
                    usleep(UInt32.random(in: 20_000...120_000, using: &random))
                    let lines = child.kill()
                    return (lines, try storedCopies(path))
                }
                // Retention (the latest 200): every commit that published also deleted the range
                // that fell out of it, so the history never holds more, whenever the kill came.
                let history = try retainedHistory(path)
                #expect(history.unheld <= 200, "round \(round): \(history.unheld) unheld messages kept")
                #expect(history.retainFrom >= max(1, history.next - 200), "round \(round): retention bound \(history)")
                try promises.read(lines)
                for copy in copies where copy.topic == "jobs.dlq" || copy.attempts >= 4 {
                    promises.maybeDead.insert(copy.id)
                }
                let present = Set(copies.map(\.id))
                let lost = promises.published.subtracting(promises.ackStarted).subtracting(present)
                try #require(
                    lost.isEmpty, "round \(round): published, never acked, and gone: \(promises.story(of: lost))")
                let work = copies.filter { $0.topic == "jobs" }
                let redelivered = Set(work.map(\.id)).intersection(promises.acked).subtracting(promises.maybeDead)
                try #require(
                    redelivered.isEmpty, "round \(round): acked and still held: \(promises.story(of: redelivered))")
                for copy in work where !promises.maybeDead.contains(copy.id) {
                    let promised = promises.highestAttempt[copy.id] ?? 0
                    try #require(copy.attempts >= promised, "round \(round): job \(copy.id) attempts went down")
                }
                #expect(Set(work.map(\.id)).count == work.count, "round \(round): a job held twice")
                if round % 5 == 4 {
                    pagedOut += try await statisticsMatchTheStore(path, resident: round % 10 == 4 ? 4 : 10_000)
                }
            }
            #expect(promises.calls > kills * 10, "the children made \(promises.calls) calls in \(kills) lives")
            #expect(!promises.acked.isEmpty && !promises.maybeDead.isEmpty)
            #expect(pagedOut > 0, "the paging lives left backlogs beyond the resident messages in the store")
        }
    }

    /// After a recovery, the statistics a broker reports are what the store holds (the child
    /// declares the topics: a stored topic reopens only with its own payload type).
    /// - Returns: how many of the waiting jobs the recovered broker left in the store (paged out).
    @discardableResult
    func statisticsMatchTheStore(_ path: String, resident: Int) async throws -> Int {
        let (lines, copies) = try await offThePool {
            () throws -> ([String], [(id: Int, topic: String, attempts: Int)]) in
            (try Child([path, "stats", "-", "-", String(resident)]).waitForExit(), try storedCopies(path))
        }
        let line = try #require(lines.first { $0.hasPrefix("S ") })
        let numbers = line.split(separator: " ").dropFirst().compactMap { Int($0) }
        #expect(
            Array(numbers.prefix(3))
                == [copies.filter { $0.topic == "jobs" }.count, 0, copies.filter { $0.topic == "jobs.dlq" }.count])
        return numbers.last ?? 0
    }

    /// A message that kills its consumer every time it is handled is dead-lettered after
    /// `maxDeliveries` crashes instead of looping: each attempt was committed before the delivery.
    @Test func aPoisonMessage_isDeadLetteredAfterMaxDeliveriesCrashes() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory + "/openq.sqlite"
            var attempts: [Int] = []
            var verdict: String?
            for run in 0..<6 where verdict == nil {
                let lines = try await offThePool { try Child([path, "poison", run == 0 ? "1" : "0"]).waitForExit() }
                for line in lines {
                    if line.hasPrefix("R ") { attempts.append(Int(line.split(separator: " ")[2])!) }
                    if line.hasPrefix("DLQ ") { verdict = line }
                    #expect(!line.hasPrefix("ERROR"), "\(line)")
                }
            }
            #expect(attempts == [1, 2, 3])
            #expect(verdict == "DLQ 1 3")
        }
    }
}
