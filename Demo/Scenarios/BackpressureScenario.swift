// Demo scenario: a fast producer, a slow consumer, and each overflow policy.

import OpenQ

enum BackpressureScenario {
    /// What one overflow policy did with the same load.
    struct PolicyResult: Sendable {
        var policy: OverflowPolicy
        var attempted: Int
        var suspended: Int
        var rejected: Int
        var dropped: Int
        var received: [Int]
    }

    static let capacity = 16

    static func run(_ options: DemoOptions, narrator: Narrator) async throws -> ScenarioOutcome {
        let count = min(max(options.messages, 50), 500)
        let queue = narrator.makeQueue()
        narrator.say(
            "each policy: capacity \(capacity), a producer publishing \(count) messages as fast as it can, a slow consumer"
        )
        var results: [PolicyResult] = []
        for policy in [OverflowPolicy.suspend, .reject, .dropOldest, .dropNewest] {
            let result = try await load(policy, count: count, queue: queue)
            narrator.say(
                "\(String(describing: policy).padding(toLength: 10, withPad: " ", startingAt: 0)) suspended \(result.suspended), "
                    + "rejected \(result.rejected), dropped \(result.dropped), consumer received \(result.received.count)"
            )
            results.append(result)
        }
        var figures: [String: Int] = [:]
        for result in results {
            let name = String(describing: result.policy)
            figures["\(name).suspended"] = result.suspended
            figures["\(name).rejected"] = result.rejected
            figures["\(name).dropped"] = result.dropped
            figures["\(name).received"] = result.received.count
        }
        var outcome = ScenarioOutcome(.backpressure, statistics: await queue.statistics(), figures: figures)
        let byPolicy = Dictionary(uniqueKeysWithValues: results.map { ("\($0.policy)", $0) })
        if let suspend = byPolicy["suspend"] {
            outcome.check(
                "suspend: the publisher waited, nothing was lost, order kept",
                suspend.suspended > 0 && suspend.received == Array(0..<count))
        }
        if let reject = byPolicy["reject"] {
            outcome.check(
                "reject: every message was either received or refused to the publisher",
                reject.rejected > 0 && reject.received.count + reject.rejected == count)
        }
        if let oldest = byPolicy["dropOldest"] {
            outcome.check(
                "dropOldest: drops are counted and the newest message survives",
                oldest.dropped > 0 && oldest.received.count + oldest.dropped == count
                    && oldest.received.last == count - 1)
        }
        if let newest = byPolicy["dropNewest"] {
            outcome.check(
                "dropNewest: drops are counted and the oldest messages survive",
                newest.dropped > 0 && newest.received.count + newest.dropped == count && newest.received.first == 0)
        }
        outcome.checkAccounting()
        _ = await queue.shutdown(gracePeriod: .seconds(1))
        return outcome
    }

    static func load(_ policy: OverflowPolicy, count: Int, queue: MessageQueue) async throws -> PolicyResult {
        let topic = try await queue.createTopic(
            "backpressure-\(policy)", of: Int.self,
            configuration: .init(capacity: capacity, overflow: policy, deadLetter: .disabled))
        let stream = try await topic.subscribe(prefetch: 1)
        let received = Collected<[Int]>([])
        let consumer = Task {
            for await message in stream {
                received.withValue { $0.append(message.payload) }
                try? await Task.sleep(for: .microseconds(200))  // a slow consumer
            }
        }
        var suspended = 0
        var rejected = 0
        for value in 0..<count {
            switch topic.tryPublish(value) {
            case .enqueued, .dropped:
                continue
            case .rejected where policy == .suspend:
                suspended += 1
                try await topic.publish(value)  // waits for room
            case .rejected:
                rejected += 1
            case .failed(let error):
                throw error
            }
        }
        try await waitUntil("the consumer to drain '\(topic.name)'", seconds: 60) {
            let statistics = topic.statistics()
            return statistics.depth == 0 && received.current.count == statistics.totals.acked
        }
        consumer.cancel()
        await consumer.value
        return PolicyResult(
            policy: policy,
            attempted: count,
            suspended: suspended,
            rejected: rejected,
            dropped: topic.statistics().totals.dropped,
            received: received.current
        )
    }
}
