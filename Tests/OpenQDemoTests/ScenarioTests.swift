import OpenQ
import Testing

@testable import OpenQDemoKit

/// Each demo scenario, in-process with small counts: its invariants and final statistics, not its text.
@Suite("openq-demo scenarios")
struct ScenarioTests {
    let options = smallOptions
    let narrator = quietNarrator

    @Test func eventBus() async throws {
        let outcome = try await ScenarioName.eventBus.run(options, narrator: narrator)
        #expect(outcome.passed, "\(outcome.checks.filter { !$0.held })")
        let orders = try #require(outcome.statistics.topic("orders"))
        #expect(orders.published == 60)
        #expect(orders.subscription("inventory")?.counters.acked == 60)
        #expect(outcome.statistics.topic("payments")?.published == 60)
    }

    @Test func workQueue() async throws {
        // Exactly one expiry, the crashed job's (50 ms): the good workers' deliveries have a
        // visibility timeout of 30 s, which no loaded machine outlives.
        let outcome = try await ScenarioName.workQueue.run(options, narrator: narrator)
        #expect(outcome.passed, "\(outcome.checks.filter { !$0.held })")
        let workers = try #require(outcome.statistics.topic("jobs")?.subscription("workers"))
        #expect(workers.counters.acked == 60)
        #expect(workers.counters.expired == 1)
        #expect(workers.counters.redelivered == 1 + workers.counters.nacked)
        #expect(workers.counters.nacked == outcome.figures["transientFailures"])
        #expect(workers.inFlight == 0)
    }

    @Test func deadLetter() async throws {
        let outcome = try await ScenarioName.deadLetter.run(options, narrator: narrator)
        #expect(outcome.passed, "\(outcome.checks.filter { !$0.held })")
        let processor = try #require(outcome.statistics.topic("payments")?.subscription("processor"))
        #expect(processor.counters.deadLettered == 50)
        #expect(processor.counters.acked == 50)
        #expect(outcome.figures["redriven"] == 50)
        #expect(outcome.statistics.topic("payments.dlq")?.published == 50)
    }

    @Test func backpressure() async throws {
        let outcome = try await ScenarioName.backpressure.run(options, narrator: narrator)
        #expect(outcome.passed, "\(outcome.checks.filter { !$0.held })")
        #expect(outcome.figures["suspend.dropped"] == 0)
        #expect(outcome.figures["suspend.received"] == 60)
        #expect((outcome.figures["reject.rejected"] ?? 0) > 0)
        #expect(outcome.statistics.topic("backpressure-reject")?.rejected == outcome.figures["reject.rejected"])
        #expect(
            outcome.statistics.topic("backpressure-dropOldest")?.totals.dropped == outcome.figures["dropOldest.dropped"]
        )
    }

    @Test func durable() async throws {
        let outcome = try await ScenarioName.durable.run(options, narrator: narrator)
        #expect(outcome.passed, "\(outcome.checks.filter { !$0.held })")
        // 60 published by the killed child, 6 acked there, 6 in flight: 54 recovered and drained.
        #expect(outcome.figures["recovered"] == 54)
        #expect(outcome.statistics.topic("jobs")?.subscription("workers")?.counters.acked == 54)
    }

    @Test func replay() async throws {
        let outcome = try await ScenarioName.replay.run(options, narrator: narrator)
        #expect(outcome.passed, "\(outcome.checks.filter { !$0.held })")
        #expect(outcome.statistics.topic("prices")?.retained == 60)
        #expect(outcome.statistics.topic("prices")?.subscription("audit")?.counters.acked == 60)
    }

    /// Counts above the defaults: each once broke (a batch larger than the capacity, or a
    /// subscription nobody read until publishing ended, which parked the publisher for good).
    @Test(arguments: [
        (ScenarioName.workQueue, 20_000), (.eventBus, 50_000), (.replay, 15_000), (.deadLetter, 20_000),
        (.backpressure, 20_000), (.durable, 20_000),
    ])
    func largeCounts_run(_ scenario: ScenarioName, messages: Int) async throws {
        let options = DemoOptions(messages: messages, consumers: 3, visibilityTimeout: .seconds(5), seed: 7)
        let outcome = try await scenario.run(options, narrator: narrator)
        #expect(outcome.passed, "\(outcome.checks.filter { !$0.held })")
    }

    @Test func aShortVisibilityTimeout_redeliversButKeepsEveryGuarantee() async throws {
        let options = DemoOptions(messages: 5_000, consumers: 2, visibilityTimeout: .milliseconds(1), seed: 3)
        let outcome = try await ScenarioName.workQueue.run(options, narrator: narrator)
        #expect(outcome.passed, "\(outcome.checks.filter { !$0.held })")
    }

    @Test func optionsOutsideWhatRuns_areRefusedWithAReason() {
        #expect(DemoOptions.problem(messages: 2_000, consumers: 2, visibilityTimeoutMilliseconds: 200) == nil)
        #expect(
            DemoOptions.problem(messages: 0, consumers: 2, visibilityTimeoutMilliseconds: 200)?.contains("--messages")
                == true)
        #expect(
            DemoOptions.problem(messages: 2_000_000, consumers: 2, visibilityTimeoutMilliseconds: 200)?.contains(
                "memory")
                == true)
        #expect(DemoOptions.problem(messages: 10, consumers: 0, visibilityTimeoutMilliseconds: 200) != nil)
        #expect(DemoOptions.problem(messages: 10, consumers: 2, visibilityTimeoutMilliseconds: 0) != nil)
    }

    @Test func report_rendersAlignedTablesAndJSON() async throws {
        let outcome = try await ScenarioName.replay.run(options, narrator: narrator)
        let lines = Report.statisticsTable(outcome.statistics).split(separator: "\n")
        #expect(Set(lines.filter { !$0.contains("─") }.map(\.count)).count == 1, "every row has the same width")
        let json = try Report.json([outcome])
        #expect(json.contains("\"scenario\" : \"replay\"") && json.contains("\"passed\" : true"))
    }
}
