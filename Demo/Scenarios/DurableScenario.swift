// Demo scenario: a durable topic's child process killed with SIGKILL, and what comes back.

import Foundation
import OpenQ
import OpenQSQLite

#if canImport(Glibc)
    import Glibc
#endif

/// A job of the durable scenario: `Codable`, so the store keeps it as JSON.
struct DurableJob: Codable, Sendable, Hashable {
    var id: Int
}

/// Durable topics: a child process publishes jobs, acknowledges some, holds some in flight, and is
/// killed with SIGKILL; this process then opens the same file and shows what came back.
enum DurableScenario {
    static let configuration = TopicConfiguration(
        capacity: 50_000, deadLetter: .after(deliveries: 5), durability: .durable)

    static func run(_ options: DemoOptions, narrator: Narrator) async throws -> ScenarioOutcome {
        let count = min(max(options.messages, 20), 20_000)
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("openq-demo-durable-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/openq.sqlite"
        narrator.say("a child process opens \(path) (SQLite, synchronous = FULL) and publishes \(count) jobs")

        let child = try ChildProcess([try demoExecutable(), "--durable-child", path, "--messages", String(count)])
        // Waiting for a child blocks a thread: not one of the cooperative pool's.
        let patience = options.patience
        let lines = try await ChildProcess.offThePool { try child.linesUntil("READY", seconds: patience) }
        let acked = Set(lines.filter { $0.hasPrefix("acked ") }.compactMap { Int($0.dropFirst(6)) })
        let inFlight = Set(lines.filter { $0.hasPrefix("in-flight ") }.compactMap { Int($0.dropFirst(10)) })
        narrator.say("the child acknowledged \(acked.count) jobs and holds \(inFlight.count) in flight: kill -9")
        try await ChildProcess.offThePool { child.kill() }

        let queue = try await MessageQueue(
            storage: .sqlite(path: path), configuration: .init(metricsInterval: nil), logger: narrator.quietLogger)
        narrator.track(queue)
        let jobs = try await queue.createTopic("jobs", of: DurableJob.self, configuration: configuration)
        let workers = try await jobs.subscription("workers", acknowledgement: .manual(visibilityTimeout: .seconds(30)))
        let recovered = try workers.statistics()
        narrator.say(
            "reopened: \(recovered.depth) jobs waiting, \(recovered.inFlight) in flight (the dead process's deliveries are visible again)"
        )
        var seen: [Int: Int] = [:]
        while true {
            let batch = try await workers.receive(max: 500, waitingUpTo: .zero)
            if batch.isEmpty { break }
            for delivery in batch { seen[delivery.message.payload.id] = delivery.attempt }
            _ = await workers.ack(batch)
        }
        let redelivered = inFlight.filter { seen[$0] == 2 }.count
        narrator.say(
            "a new worker drained \(seen.count) jobs: \(redelivered) of them a second attempt, none of the \(acked.count) acknowledged"
        )
        let next = try await jobs.publish(DurableJob(id: count + 1))
        let statistics = await queue.statistics()
        _ = await queue.shutdown(gracePeriod: .seconds(1))

        var outcome = ScenarioOutcome(.durable, statistics: statistics, figures: ["recovered": seen.count])
        let expected = Set(1...count).subtracting(acked)
        outcome.check("every published job that was not acknowledged came back", Set(seen.keys) == expected)
        outcome.check("no acknowledged job came back", acked.isDisjoint(with: seen.keys))
        outcome.check(
            "the jobs in flight at the kill came back at once with attempt 2",
            !inFlight.isEmpty && redelivered == inFlight.count)
        outcome.check(
            "the other jobs came back with attempt 1",
            seen.filter { !inFlight.contains($0.key) }.allSatisfy { $0.value == 1 })
        outcome.check("sequence numbers continue after the stored ones", next.firstSequenceNumber == UInt64(count + 1))
        outcome.checkAccounting()
        return outcome
    }

    /// The child's side (`openq-demo --durable-child PATH`): publishes `count` jobs in batches of
    /// 100, each batch committed before `publish` returns; acknowledges the first 10 % (one batch
    /// ack), takes the next 10 % without acknowledging them, says READY, and waits to be killed.
    static func child(path: String, count: Int) async throws -> Never {
        let queue = try await MessageQueue(storage: .sqlite(path: path), configuration: .init(metricsInterval: nil))
        let jobs = try await queue.createTopic("jobs", of: DurableJob.self, configuration: configuration)
        let workers = try await jobs.subscription("workers", acknowledgement: .manual(visibilityTimeout: .seconds(30)))
        for first in stride(from: 1, through: count, by: 100) {
            try await jobs.publish(contentsOf: (first...min(first + 99, count)).map(DurableJob.init(id:)))
        }
        let tenth = max(count / 10, 1)
        let first = try await workers.receive(max: tenth, waitingUpTo: .zero)
        let failures = await workers.ack(first)  // one commit for the whole batch
        for delivery in first where !failures.contains(where: { $0.delivery.message.id == delivery.message.id }) {
            tell("acked \(delivery.message.payload.id)")
        }
        for delivery in try await workers.receive(max: tenth, waitingUpTo: .zero) {
            tell("in-flight \(delivery.message.payload.id)")
        }
        tell("READY")
        while true { try await Task.sleep(for: .seconds(60)) }
    }

    /// One line to the parent, unbuffered: a line is in the pipe before the next call starts.
    static func tell(_ line: String) {
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }

    /// The `openq-demo` executable: this process when it is the demo, otherwise (the demo's tests)
    /// the one built beside it.
    static func demoExecutable() throws -> String {
        let this = URL(fileURLWithPath: CommandLine.arguments[0])
        if this.lastPathComponent == "openq-demo" { return this.path }
        let directory = this.deletingLastPathComponent()
        for candidate in [directory, directory.deletingLastPathComponent()] {
            let path = candidate.appendingPathComponent("openq-demo").path
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        throw ScenarioTimeout(what: "the openq-demo executable beside \(this.path) (run swift build first)")
    }
}

/// A child process whose standard output is read line by line on a thread of its own, so that a
/// child that stops talking cannot hang the scenario.
final class ChildProcess: @unchecked Sendable {
    private let process = Process()
    private let lock = NSLock()
    private var lines: [String] = []
    private var ended = false

    init(_ arguments: [String]) throws {
        process.executableURL = URL(fileURLWithPath: arguments[0])
        process.arguments = Array(arguments.dropFirst())
        let pipe = Pipe()
        process.standardOutput = pipe
        let output = pipe.fileHandleForReading
        try process.run()
        Thread.detachNewThread { [self] in
            var buffer = Data()
            while true {
                let data = output.availableData
                lock.lock()
                defer { lock.unlock() }
                if data.isEmpty {
                    ended = true
                    return
                }
                buffer.append(data)
                while let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                    lines.append(String(decoding: buffer[buffer.startIndex..<newline], as: UTF8.self))
                    buffer.removeSubrange(buffer.startIndex...newline)
                }
            }
        }
    }

    /// The lines the child printed before `marker`; throws if it ends first or takes longer than
    /// `seconds`.
    func linesUntil(_ marker: String, seconds: Double) throws -> [String] {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            lock.lock()
            let (seen, done) = (lines, ended)
            lock.unlock()
            if let index = seen.firstIndex(of: marker) { return Array(seen[..<index]) }
            if done { break }
            usleep(2_000)
        }
        kill()
        throw ScenarioTimeout(what: "the child process to say \(marker)")
    }

    /// Runs blocking work on a thread of its own and waits for it without blocking the caller's.
    static func offThePool<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        let lock = NSLock()
        nonisolated(unsafe) var outcome: Result<T, any Error>?
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            Thread.detachNewThread {
                let result = Result { try work() }
                lock.withLock { outcome = result }
                continuation.resume()
            }
        }
        return try lock.withLock { outcome! }.get()
    }

    /// SIGKILL, as a crash would.
    func kill() {
        Glibc.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }
}

/// The child's side of the durable scenario (`openq-demo --durable-child PATH --messages N`).
public func runDurableChild(path: String, count: Int) async throws -> Never {
    try await DurableScenario.child(path: path, count: count)
}
