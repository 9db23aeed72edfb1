import Testing

struct TimedOut: Error, CustomStringConvertible {
    var what: String
    var description: String { "timed out waiting for \(what)" }
}

/// Runs `body`, failing with ``TimedOut`` instead of hanging when it takes longer than `seconds`
/// of real time. Bounds every wait in the async tests, so that a bug fails instead of hanging.
func withTimeout<T: Sendable>(
    _ seconds: Double = 10,
    _ what: String = "an operation",
    _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    try await withThrowingTaskGroup(of: T.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: .seconds(seconds))
            throw TimedOut(what: what)
        }
        defer { group.cancelAll() }
        return try await group.next()!
    }
}

/// Waits until `condition` holds, yielding between checks; fails after `seconds` of real time.
/// For conditions reached by other tasks reacting to an event the test caused (a timer task that
/// a manual clock woke, a consumer that received a message).
func eventually(
    _ what: String,
    within seconds: Double = 10,
    _ condition: @Sendable () async throws -> Bool
) async throws {
    let deadline = ContinuousClock.now + .seconds(seconds)
    while try await !condition() {
        guard ContinuousClock.now < deadline else { throw TimedOut(what: what) }
        await Task.yield()
        try await Task.sleep(for: .milliseconds(1))
    }
}
