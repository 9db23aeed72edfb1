import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Runs blocking work (waiting for a child process, sleeping between kills, reading the store
/// with GRDB's synchronous API) on a thread of its own: on the cooperative pool it would stall
/// every other test running meanwhile (on 2 cores the pool has 2 threads).
func offThePool<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    let outcome = LockedBox<Result<T, any Error>?>(nil)
    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
        Thread.detachNewThread {
            let result = Result { try work() }
            outcome.set(result)
            continuation.resume()
        }
    }
    return try outcome.get()!.get()
}

/// A value behind an `NSLock` (ThreadSanitizer sees the lock, not a continuation's resume).
final class LockedBox<Value: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value
    init(_ value: Value) { self.value = value }
    func set(_ newValue: Value) {
        lock.lock()
        value = newValue
        lock.unlock()
    }
    func get() -> Value {
        lock.lock()
        defer { lock.unlock() }
        return value
    }
}

/// The child process of the crash tests, built beside the test binary.
func crashChildPath() throws -> String {
    let directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    let candidates = [directory, directory.deletingLastPathComponent()].map {
        $0.appendingPathComponent("openq-crash-child").path
    }
    guard let path = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
        throw TestFailure("openq-crash-child is not built beside the tests (looked at \(candidates)); run swift build")
    }
    return path
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A child process whose standard output is read line by line on a thread of its own.
final class Child: @unchecked Sendable {
    let process = Process()
    private let lock = NSLock()
    private var lines: [String] = []
    private var buffer = Data()
    private var closed = false
    private let done = DispatchSemaphore(value: 0)

    init(_ arguments: [String]) throws {
        process.executableURL = URL(fileURLWithPath: try crashChildPath())
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        let handle = pipe.fileHandleForReading
        try process.run()
        Thread.detachNewThread { [self] in
            while true {
                let data = handle.availableData
                lock.lock()
                if data.isEmpty {
                    closed = true
                    lock.unlock()
                    done.signal()
                    return
                }
                buffer.append(data)
                while let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                    lines.append(String(decoding: buffer[buffer.startIndex..<newline], as: UTF8.self))
                    buffer.removeSubrange(buffer.startIndex...newline)
                }
                lock.unlock()
            }
        }
    }

    var output: [String] {
        lock.lock()
        defer { lock.unlock() }
        return lines
    }

    /// Waits until a line satisfies `condition` or the child's output ends, at most `seconds`.
    func waitFor(_ seconds: Double, _ condition: (String) -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            lock.lock()
            let found = lines.contains(where: condition)
            let ended = closed
            lock.unlock()
            if found { return true }
            if ended { return false }
            usleep(2_000)
        }
        return false
    }

    /// Kills the child with SIGKILL and waits until its output is read to the end. Only whole
    /// lines count: a line cut by the kill is not a call that returned.
    func kill() -> [String] {
        Glibc.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        _ = done.wait(timeout: .now() + 10)
        return output
    }

    func waitForExit() -> [String] {
        process.waitUntilExit()
        _ = done.wait(timeout: .now() + 10)
        return output
    }
}
