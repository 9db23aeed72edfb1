import Foundation
import GRDB
import OpenQ
import OpenQTesting
import Testing

@testable import OpenQSQLite

/// A broker on the store at `path`, on a manual clock whose epoch is `epoch + offset`.
func openBroker(_ path: String, at offset: Duration = .zero, clock: ManualClock = ManualClock()) async throws
    -> MessageQueue
{
    try await MessageQueue(
        storage: .sqlite(path: path, durability: .processCrash),
        configuration: .init(metricsInterval: nil, randomSeed: 1),
        clock: clock,
        epoch: epoch.addingTimeInterval(Double(offset.components.seconds)))
}

/// A broker whose durable subscriptions keep at most `resident` waiting messages in memory (on
/// real time unless a test brings a manual clock: receives wait for pages read from the store).
func openPagingBroker(_ path: String, resident: Int, clock: some Clock<Duration> = ContinuousClock()) async throws
    -> MessageQueue
{
    try await MessageQueue(
        storage: .sqlite(path: path, durability: .processCrash, residentMessages: resident),
        configuration: .init(metricsInterval: nil, randomSeed: 1),
        clock: clock,
        epoch: epoch)
}
