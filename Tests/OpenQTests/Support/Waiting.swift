import OpenQTesting
import Testing

@testable import OpenQ

/// How long a test waits for something it caused before it fails instead of hanging, in seconds
/// of real time. A bound for a bug (a lost wake-up, a deadlock), never a measure of speed: the
/// suites run in parallel on the cooperative pool's few threads, under ThreadSanitizer ten times
/// slower, sometimes beside a build, and a consumer's every hop then waits its turn behind the
/// other suites' work. A test that needs something to happen within a short time needs a quiet
/// machine: wait for the event itself, bounded by this.
let patience: Double = 120

struct TimedOut: Error, CustomStringConvertible {
    var what: String
    var description: String { "timed out waiting for \(what)" }
}

/// Runs `body`, failing with ``TimedOut`` instead of hanging when it takes longer than `seconds`
/// of real time. Bounds every wait in the async tests, so that a bug fails instead of hanging.
///
/// Not a task group: a group waits for its children on exit, and a child awaiting something that
/// ignores cancellation (`Task.value`) would turn the timeout back into a hang.
func withTimeout<T: Sendable>(
    _ what: String = "an operation",
    within seconds: Double = patience,
    _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    let outcome = LockedValueBox<CheckedContinuation<T, any Error>?>(nil)
    let finish: @Sendable (Result<T, any Error>) -> Void = { result in
        outcome.withLock { continuation in
            defer { continuation = nil }
            return continuation
        }?.resume(with: result)
    }
    return try await withCheckedThrowingContinuation { continuation in
        outcome.withLock { $0 = continuation }
        let work = Task {
            do { finish(.success(try await body())) } catch { finish(.failure(error)) }
        }
        Task {
            try? await Task.sleep(for: .seconds(seconds))
            finish(.failure(TimedOut(what: what)))
            work.cancel()
        }
    }
}

/// Waits until `condition` holds, yielding between checks; fails after `seconds` of real time
/// (default ``patience``).
/// For conditions reached by other tasks reacting to an event the test caused (a timer task that
/// a manual clock woke, a consumer that received a message).
func eventually(
    _ what: String,
    within seconds: Double = patience,
    _ condition: @Sendable () async throws -> Bool
) async throws {
    let deadline = ContinuousClock.now + .seconds(seconds)
    while try await !condition() {
        guard ContinuousClock.now < deadline else { throw TimedOut(what: what) }
        await Task.yield()
        try await Task.sleep(for: .milliseconds(1))
    }
}
