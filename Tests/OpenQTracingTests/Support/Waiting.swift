import Testing

/// Waits until `condition` holds, failing after 120 s of real time instead of hanging: a bound
/// for a bug, never a measure of speed (the suites share the cooperative pool's few threads).
func eventually(_ condition: @Sendable () -> Bool) async throws {
    let deadline = ContinuousClock.now + .seconds(120)
    while !condition() {
        guard ContinuousClock.now < deadline else {
            Issue.record("timed out")
            return
        }
        try await Task.sleep(for: .milliseconds(1))
    }
}
