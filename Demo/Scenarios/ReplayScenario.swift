// Demo scenario: retention, replay from the earliest message and seek.

import OpenQ

struct PriceTick: Sendable {
    var symbol: String
    var cents: Int
}

enum ReplayScenario {
    static func run(_ options: DemoOptions, narrator: Narrator) async throws -> ScenarioOutcome {
        let half = max(options.messages / 2, 5)
        let queue = narrator.makeQueue()
        // Room for every tick: the subscription 'tap' is read only after both batches are
        // published, and the replays start from the earliest tick.
        let total = 2 * half
        let room = max(10_000, total)
        let prices = try await queue.createTopic(
            "prices", of: PriceTick.self, configuration: .init(capacity: room, retention: .count(room)))
        narrator.say("topic 'prices' retains its latest \(room) messages for replay")
        let tap = try await prices.subscription("tap", acknowledgement: .automatic)

        try await prices.publish(contentsOf: (0..<half).map { PriceTick(symbol: "MORNING", cents: 100 + $0) })
        try await Task.sleep(for: .milliseconds(5))
        try await prices.publish(contentsOf: (0..<half).map { PriceTick(symbol: "AFTERNOON", cents: 200 + $0) })
        let tapped = try await tap.receive(max: 2 * half)
        let afternoon = tapped.first { $0.message.payload.symbol == "AFTERNOON" }!.message
        narrator.say(
            "published \(half) morning and \(half) afternoon ticks; the afternoon began at sequence \(afternoon.sequenceNumber)"
        )

        let fromEarliest = try await prices.subscription("audit", acknowledgement: .automatic, startingAt: .earliest)
        let fromTime = try await prices.subscription(
            "afternoon-report", acknowledgement: .automatic, startingAt: .time(afternoon.publishedAt))
        let fromSequence = try await prices.subscription(
            "resume", acknowledgement: .automatic, startingAt: .sequenceNumber(afternoon.sequenceNumber + 1))
        let all = try await fromEarliest.receive(max: 4 * half)
        let sinceTime = try await fromTime.receive(max: 4 * half)
        let sinceSequence = try await fromSequence.receive(max: 4 * half)
        narrator.say(
            "a late subscriber at .earliest replayed \(all.count); one at .time(afternoon) replayed \(sinceTime.count); one at a sequence number replayed \(sinceSequence.count)"
        )
        let rewound = try await fromTime.seek(to: .earliest)
        narrator.say("seek(to: .earliest) on the afternoon report enqueued \(rewound) messages again")

        var outcome = ScenarioOutcome(.replay, statistics: await queue.statistics())
        outcome.check(
            "earliest replays every retained message in order",
            all.map(\.message.sequenceNumber) == Array(1...UInt64(2 * half)))
        outcome.check(
            "a time replays exactly the messages published from then on",
            sinceTime.allSatisfy { $0.message.payload.symbol == "AFTERNOON" } && sinceTime.count == half)
        outcome.check("a sequence number replays from that message on", sinceSequence.count == half - 1)
        outcome.check("seek rewinds a subscription", rewound == 2 * half)
        outcome.checkAccounting()
        _ = await queue.shutdown(gracePeriod: .zero)
        return outcome
    }
}
