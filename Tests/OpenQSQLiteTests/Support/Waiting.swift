import Foundation
import GRDB
import OpenQ
import OpenQTesting
import Testing

@testable import OpenQSQLite

/// Whether the tests run under ThreadSanitizer (CI's TSan pass sets TSAN_OPTIONS). The heaviest
/// SQLite tests (tens of MiB written) check SQLite's and the store's bounds, not races; under
/// TSan they take half a minute of both cores, so that pass runs them smaller or not at all. The
/// debug and release passes run them whole.
let underThreadSanitizer = ProcessInfo.processInfo.environment["TSAN_OPTIONS"] != nil

/// How long a test waits for something it caused before it fails instead of hanging, in seconds
/// of real time: a bound for a bug, never a measure of speed (see `patience` in OpenQTests).
let patience: Double = 120

/// Waits until `condition` holds, for a condition other tasks reach in reaction to something the
/// test caused; fails with ``TestFailure`` after `seconds` of real time instead of hanging.
func eventually(_ what: String, within seconds: Double = patience, _ condition: () async throws -> Bool)
    async throws
{
    let deadline = ContinuousClock.now + .seconds(seconds)
    while try await !condition() {
        guard ContinuousClock.now < deadline else { throw TestFailure("timed out waiting for \(what)") }
        try await Task.sleep(for: .milliseconds(5))
    }
}

/// Receives (waiting for pages read back from the store) and acknowledges until `count`
/// deliveries arrived or nothing comes within ``patience``; checks the memory bound after every
/// take.
func drain(
    _ subscription: Subscription<Blob>, count: Int, max: Int = 3, resident: Int,
    statistics: () async -> SubscriptionStatistics?
) async throws -> [Int] {
    var ids: [Int] = []
    while ids.count < count {
        let deliveries = try await subscription.receive(max: max, waitingUpTo: .seconds(patience))
        if deliveries.isEmpty { break }
        for delivery in deliveries {
            ids.append(delivery.message.payload.id)
            try await delivery.ack()
        }
        if let statistics = await statistics() {
            #expect(statistics.depth - statistics.pagedOut <= resident, "memory holds at most the resident limit")
        }
    }
    return ids
}

/// Receives and acknowledges everything waiting in a subscription (pages included), on any
/// clock: an empty receive with messages still waiting means a page is being read.
func receiveAll(_ subscription: Subscription<Blob>, max: Int = 50) async throws -> [Int] {
    var ids: [Int] = []
    for _ in 0..<100_000 {
        let deliveries = try await subscription.receive(max: max)
        if deliveries.isEmpty {
            if try subscription.statistics().depth == 0 { return ids }
            try await Task.sleep(for: .milliseconds(1))
            continue
        }
        ids += deliveries.map(\.message.payload.id)
        _ = await subscription.ack(deliveries)
    }
    Issue.record("still receiving after 100 000 rounds")
    return ids
}
