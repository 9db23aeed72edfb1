// The openq-demo command line.

import ArgumentParser
import Foundation
import OpenQ
import OpenQDemoKit

@main
struct OpenQDemo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "openq-demo",
        abstract: "Shows what OpenQ does, and checks that it keeps its promises.",
        discussion: """
            With no scenario, runs them all in order. Each prints what happens, a statistics table, and the \
            invariants it checked; the exit status is 0 only when every invariant held.

            Scenarios:
            \(ScenarioName.allCases.map { "  \($0.rawValue.padding(toLength: 13, withPad: " ", startingAt: 0)) \($0.summary)" }.joined(separator: "\n"))
            """
    )

    @Argument(
        help: "The scenario to run: \(ScenarioName.allCases.map(\.rawValue).joined(separator: ", ")). Default: all.")
    var scenario: String?

    @Option(help: "Messages each scenario publishes, 1...1000000 (the slow scenarios cap it).")
    var messages = 2_000

    @Option(help: "Good consumers competing in the work queue.")
    var consumers = 2

    @Option(help: "How long the work queue's crashed job stays invisible before it is redelivered, in milliseconds.")
    var visibilityTimeout = 200

    @Option(help: "Seed for the random failures.")
    var seed: UInt64 = 42

    @Flag(help: "Print only the statistics tables and checks.")
    var quiet = false

    @Flag(help: "Print the final statistics as JSON, for scripts.")
    var json = false

    @Option(help: .hidden)
    var durableChild: String?

    func validate() throws {
        if let scenario, ScenarioName(rawValue: scenario) == nil {
            throw ValidationError(
                "Unknown scenario '\(scenario)'. Choose one of: \(ScenarioName.allCases.map(\.rawValue).joined(separator: ", "))."
            )
        }
        if let problem = DemoOptions.problem(
            messages: messages, consumers: consumers, visibilityTimeoutMilliseconds: visibilityTimeout)
        {
            throw ValidationError(problem)
        }
    }

    func run() async throws {
        if let durableChild { try await runDurableChild(path: durableChild, count: messages) }
        let options = DemoOptions(
            messages: messages, consumers: consumers, visibilityTimeout: .milliseconds(visibilityTimeout), seed: seed)
        let scenarios = scenario.flatMap(ScenarioName.init(rawValue:)).map { [$0] } ?? ScenarioName.allCases
        let narrator = Narrator(quiet: quiet || json)
        var outcomes: [ScenarioOutcome] = []
        for (index, scenario) in scenarios.enumerated() {
            if !json {
                print(
                    quiet ? "\n\(scenario.rawValue)" : "\n━━ \(index + 1). \(scenario.rawValue) ━━ \(scenario.summary)")
            }
            let progress = json || quiet || isatty(STDOUT_FILENO) == 0 ? nil : ProgressLine(narrator: narrator)
            let outcome: ScenarioOutcome
            do {
                outcome = try await scenario.run(options, narrator: narrator)
            } catch {
                progress?.stop()
                print("✘ \(scenario.rawValue) failed: \(error)")
                throw ExitCode.failure
            }
            progress?.stop()
            outcomes.append(outcome)
            if !json { print(Report.text(outcome)) }
        }
        if json { print(try Report.json(outcomes)) }
        if !outcomes.allSatisfy(\.passed) {
            if !json { print("\n✘ A guarantee was broken: see the ✘ lines above.") }
            throw ExitCode.failure
        }
        if !json && !quiet { print("\n✔ All \(outcomes.count) scenarios kept every guarantee.") }
    }
}

/// A live line of messages published, delivered and acknowledged per second, redrawn in place
/// every quarter second; only when stdout is a terminal, so CI logs stay clean.
final class ProgressLine: Sendable {
    private let task: Task<Void, Never>

    init(narrator: Narrator) {
        task = Task {
            var last = (published: 0, delivered: 0, acked: 0)
            let interval = 0.25
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(interval))
                guard let queue = narrator.currentQueue else { continue }
                let topics = await queue.statistics().topics
                let now = (
                    published: topics.reduce(0) { $0 + $1.published },
                    delivered: topics.reduce(0) { $0 + $1.totals.delivered },
                    acked: topics.reduce(0) { $0 + $1.totals.acked }
                )
                let rate = { (value: Int, previous: Int) in Int(Double(max(0, value - previous)) / interval) }
                let line =
                    "  … \(rate(now.published, last.published)) published/s, \(rate(now.delivered, last.delivered)) delivered/s, "
                    + "\(rate(now.acked, last.acked)) acked/s"
                FileHandle.standardOutput.write(Data(("\r\u{1B}[2K" + line).utf8))
                last = now
            }
        }
    }

    func stop() {
        task.cancel()
        FileHandle.standardOutput.write(Data("\r\u{1B}[2K".utf8))
    }
}
