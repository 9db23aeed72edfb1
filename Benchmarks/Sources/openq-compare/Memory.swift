// openq-compare: the memory rows.

import Foundation
import OpenQ

/// Resident memory per buffered message, each measured in a fresh process of this executable
/// (`--memory-probe`), so memory freed by one measurement cannot flatter the next.
enum Memory {
    static func residentBytes() -> Int {
        guard let statm = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
        let fields = statm.split(separator: " ")
        return (Int(fields[1]) ?? 0) * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    /// Runs in the probe process: holds `count` messages and prints the resident growth per message.
    static func probe(_ kind: String, count: Int) async throws {
        var keepAlive: [Any] = []
        if kind.hasPrefix("durable-backlog") {
            try await Durable.backlogProbe(count: count, paged: kind == "durable-backlog")
            return
        }
        let before = residentBytes()
        switch kind {
        case "openq":
            let topic = try await benchQueue().createTopic(
                "memory", of: Payload.self, configuration: .init(capacity: count, deadLetter: .disabled))
            let subscription = try await topic.subscription("held", acknowledgement: .manual)
            for first in stride(from: 0, to: count, by: 1_000) {
                try await topic.publish(contentsOf: (first..<min(first + 1_000, count)).map(Payload.init))
            }
            keepAlive = [topic, subscription]
        case "openq-single":
            let topic = try await benchQueue().createTopic(
                "memory", of: Payload.self, configuration: .init(capacity: count, deadLetter: .disabled))
            let subscription = try await topic.subscription("held", acknowledgement: .manual)
            for number in 0..<count { try await topic.publish(Payload(number)) }
            keepAlive = [topic, subscription]
        case "asyncstream":
            let (stream, continuation) = AsyncStream.makeStream(of: Payload.self)
            for number in 0..<count { continuation.yield(Payload(number)) }
            keepAlive = [stream, continuation]
        default:
            fatalError("unknown probe \(kind)")
        }
        let after = residentBytes()
        print(Double(after - before) / Double(count))
        withExtendedLifetime(keepAlive) {}
    }

    /// Runs a probe in a child process and reads its answer.
    static func measure(_ kind: String, count: Int) throws -> Double {
        let output = try runThisExecutable(["--memory-probe", kind, "--messages", String(count)])
        let text = String(decoding: output, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard let value = Double(text) else { throw CompareError("memory probe '\(kind)' answered '\(text)'") }
        return value
    }
}

struct CompareError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
