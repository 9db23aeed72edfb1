import Foundation
import OpenQSQLite
import OpenQTesting
import Testing

@testable import OpenQ

/// Where a parameterized semantic test keeps its topics: the same test runs against in-memory
/// topics and against durable ones on a SQLite store, where the semantics are the same.
enum Backend: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case memory
    case sqlite

    var testDescription: String { rawValue }

    /// A broker on a manual clock, with no background metrics export and a fixed jitter seed; for
    /// `sqlite`, on a fresh store in the temporary directory (at the faster durability level: these
    /// tests are about semantics, the crash tests about durability).
    func makeQueue(clock: ManualClock = ManualClock()) async throws -> MessageQueue {
        switch self {
        case .memory:
            return OpenQTests.makeQueue(clock: clock)
        case .sqlite:
            let path = ScratchStores.path("semantics")
            return try await MessageQueue(
                storage: .sqlite(path: path, durability: .processCrash),
                configuration: .init(metricsInterval: nil, randomSeed: 1), clock: clock)
        }
    }

    /// `configuration`, durable for `sqlite`.
    func configure(_ configuration: TopicConfiguration = .init()) -> TopicConfiguration {
        var configuration = configuration
        if self == .sqlite { configuration.durability = .durable }
        return configuration
    }
}
