// The demo's scenarios, their options and outcomes, and the bounded waits they use.

import Foundation
import Logging
import OpenQ

/// The knobs every scenario reads.
public struct DemoOptions: Sendable {
    /// How many messages a scenario publishes (scenarios with slow paths use fewer).
    public var messages: Int
    /// How many good consumers compete in the work queue.
    public var consumers: Int
    /// How long the work queue's crashed job stays invisible before it is redelivered (its
    /// receive's visibility timeout).
    public var visibilityTimeout: Duration
    /// The seed for random failures.
    public var seed: UInt64

    /// The largest `messages` the demo accepts: every scenario keeps its messages in memory and
    /// checks each one, so a million is seconds of work and a few hundred MB at most.
    public static let maximumMessages = 1_000_000

    /// What is wrong with these option values, in words for the command line; `nil` when every
    /// scenario can run with them.
    public static func problem(messages: Int, consumers: Int, visibilityTimeoutMilliseconds: Int) -> String? {
        if !(1...maximumMessages).contains(messages) {
            return "--messages must be 1...\(maximumMessages) (every scenario holds and checks each message in "
                + "memory); it was \(messages)."
        }
        if !(1...256).contains(consumers) {
            return "--consumers must be 1...256; it was \(consumers)."
        }
        if !(1...600_000).contains(visibilityTimeoutMilliseconds) {
            return "--visibility-timeout must be 1...600000 ms (ten minutes); it was \(visibilityTimeoutMilliseconds)."
        }
        return nil
    }

    /// How long a scenario waits for one step before it gives up and says what it waited for:
    /// 30 s, plus a second per 20 000 messages.
    public var patience: Double { 30 + Double(messages) / 20_000 }

    public init(
        messages: Int = 2_000, consumers: Int = 2, visibilityTimeout: Duration = .milliseconds(200), seed: UInt64 = 42
    ) {
        self.messages = messages
        self.consumers = consumers
        self.visibilityTimeout = visibilityTimeout
        self.seed = seed
    }
}

/// The scenarios, in the order `openq-demo` runs them.
public enum ScenarioName: String, CaseIterable, Sendable {
    case eventBus = "event-bus"
    case workQueue = "work-queue"
    case deadLetter = "dead-letter"
    case backpressure
    case replay
    case durable

    /// One line: what the scenario demonstrates.
    public var summary: String {
        switch self {
        case .eventBus: "several topics, handlers and for-await loops, subscribers joining and leaving mid-flow"
        case .workQueue: "competing consumers with manual acks; a crashed consumer's job is redelivered"
        case .deadLetter: "a failing consumer, retries with backoff, the dead-letter topic, and redrive"
        case .backpressure: "a fast producer, a slow consumer, and what each overflow policy does"
        case .replay: "retention, and late subscribers starting at the earliest message and at a time"
        case .durable:
            "a durable topic on SQLite: a child process is killed with SIGKILL, and what it was told survives"
        }
    }

    /// Runs the scenario.
    public func run(_ options: DemoOptions, narrator: Narrator) async throws -> ScenarioOutcome {
        switch self {
        case .eventBus: try await EventBusScenario.run(options, narrator: narrator)
        case .workQueue: try await WorkQueueScenario.run(options, narrator: narrator)
        case .deadLetter: try await DeadLetterScenario.run(options, narrator: narrator)
        case .backpressure: try await BackpressureScenario.run(options, narrator: narrator)
        case .replay: try await ReplayScenario.run(options, narrator: narrator)
        case .durable: try await DurableScenario.run(options, narrator: narrator)
        }
    }
}

/// What a scenario checked, and the statistics it ended with.
public struct ScenarioOutcome: Sendable {
    public var scenario: ScenarioName
    /// Each invariant the scenario checked, with whether it held.
    public var checks: [(description: String, held: Bool)]
    /// The final statistics of the scenario's broker.
    public var statistics: BrokerStatistics
    /// Figures worth printing beside the table (per-policy counts, ...).
    public var figures: [String: Int]

    public var passed: Bool { checks.allSatisfy(\.held) }

    init(_ scenario: ScenarioName, statistics: BrokerStatistics, figures: [String: Int] = [:]) {
        self.scenario = scenario
        self.checks = []
        self.statistics = statistics
        self.figures = figures
    }

    mutating func check(_ description: String, _ held: Bool) {
        checks.append((description, held))
    }

    /// Every subscription of every topic balances: routed == acked + dead-lettered + dropped +
    /// purged + waiting + delayed + in flight.
    mutating func checkAccounting() {
        let unbalanced = statistics.topics.flatMap { topic in
            topic.subscriptions.filter { subscription in
                let counters = subscription.counters
                return counters.routed
                    != counters.acked + counters.deadLettered + counters.dropped + counters.purged + subscription.depth
                    + subscription.scheduled + subscription.inFlight
            }.map { "\(topic.name)/\($0.name)" }
        }
        check("every message accounted for in every subscription", unbalanced.isEmpty)
    }
}

/// Prints what happens, unless quiet.
public final class Narrator: Sendable {
    public let quiet: Bool
    private let sink: @Sendable (String) -> Void
    private let tracked = Collected<MessageQueue?>(nil)

    /// The broker of the scenario running now, for a live progress line.
    public var currentQueue: MessageQueue? { tracked.current }

    /// A new demo broker (no background metrics export), tracked for the progress line.
    func makeQueue() -> MessageQueue {
        // The demo narrates for itself; OpenQ's own log lines would interleave with it.
        var logger = Logger(label: "openq")
        logger.logLevel = .error
        let queue = MessageQueue(configuration: .init(metricsInterval: nil), logger: logger)
        tracked.withValue { $0 = queue }
        return queue
    }

    /// The logger of the demo's brokers: errors only (the demo narrates for itself).
    var quietLogger: Logger {
        var logger = Logger(label: "openq")
        logger.logLevel = .error
        return logger
    }

    /// Tracks a broker made elsewhere for the progress line.
    func track(_ queue: MessageQueue) {
        tracked.withValue { $0 = queue }
    }

    public init(quiet: Bool, sink: @escaping @Sendable (String) -> Void = { print($0) }) {
        self.quiet = quiet
        self.sink = sink
    }

    /// One line per interesting event.
    public func say(_ line: String) {
        if !quiet { sink("  • \(line)") }
    }

    func header(_ scenario: ScenarioName, index: Int) {
        if !quiet { sink("\n━━ \(index). \(scenario.rawValue) ━━ \(scenario.summary)") }
    }
}

/// Bounded waits for the scenarios: a broken guarantee fails the demo instead of hanging it.
struct ScenarioTimeout: Error, CustomStringConvertible {
    var what: String
    var description: String { "gave up waiting for \(what)" }
}

func waitUntil(_ what: String, seconds: Double, _ condition: @Sendable () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + .seconds(seconds)
    while try await !condition() {
        guard ContinuousClock.now < deadline else { throw ScenarioTimeout(what: what) }
        try await Task.sleep(for: .milliseconds(1))
    }
}

/// A lock-protected value for collecting results from several tasks.
final class Collected<Value: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value

    init(_ value: Value) { self.value = value }

    func withValue<Result>(_ body: (inout Value) -> Result) -> Result {
        lock.lock()
        defer { lock.unlock() }
        return body(&value)
    }

    var current: Value { withValue { $0 } }
}
