import OpenQTesting

@testable import OpenQ

struct Order: Sendable, Hashable, Codable {
    var id: Int
    var item: String = "book"
}

/// A broker on a manual clock, with no background metrics export and a fixed jitter seed.
func makeQueue(clock: ManualClock = ManualClock()) -> MessageQueue {
    MessageQueue(configuration: .init(metricsInterval: nil, randomSeed: 1), clock: clock)
}

/// Takes `count` elements of `sequence`, failing after `seconds` instead of hanging.
func collect<S: AsyncSequence & Sendable>(
    _ count: Int,
    from sequence: S,
    within seconds: Double = patience
) async throws -> [S.Element] where S.Element: Sendable {
    try await withTimeout("\(count) elements", within: seconds) {
        var elements: [S.Element] = []
        guard count > 0 else { return elements }
        for try await element in sequence {
            elements.append(element)
            if elements.count == count { break }
        }
        return elements
    }
}

extension SubscriptionStatistics {
    /// routed == acked + deadLettered + dropped + purged + depth + scheduled + inFlight
    var isBalanced: Bool {
        counters.routed == counters.acked + counters.deadLettered + counters.dropped + counters.purged + depth
            + scheduled + inFlight
    }
}

extension PublishResult {
    /// What happened, without the receipt, for comparisons in tests.
    enum Outcome: Hashable {
        case enqueued, dropped, rejected, failed
    }

    var outcome: Outcome {
        switch self {
        case .enqueued: .enqueued
        case .dropped: .dropped
        case .rejected: .rejected
        case .failed: .failed
        }
    }
}

extension PublishDecision {
    /// The accepted publish's outcome: dropped when a full subscription dropped a new copy.
    var accepted: PublishResult.Outcome? {
        guard case .accepted(let receipt) = self else { return nil }
        return receipt.droppedNew > 0 ? .dropped : .enqueued
    }
}

/// A gate tasks wait at until the test opens it.
actor AsyncGate {
    private var isOpen = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    func wait() async {
        if isOpen { return }
        await withCheckedContinuation { waiters.append($0) }
    }

    func open() {
        isOpen = true
        for waiter in waiters { waiter.resume() }
        waiters = []
    }
}
