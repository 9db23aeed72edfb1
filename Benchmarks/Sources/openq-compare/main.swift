// openq-compare: OpenQ side by side with its peers in one run, each row in its own process.

import Foundation
import OpenQ

// openq-compare: OpenQ side by side with AsyncStream, the best async channels and a hand-rolled
// ceiling, alternating A B A B in one process. Release builds only:
//   swift run -c release --package-path Benchmarks openq-compare [--messages N] [--rounds R] [--only TEXT] [--json]
//
// A whole run starts one child process per scenario (and per peer of the 1→1 per-message
// scenario), so that no scenario runs in a process another one left behind: measured here, the
// batched rows ran at half speed, OpenQ and hand-rolled alike, after AsyncChannel or the MPSC
// channel had run in the same process.

#if DEBUG
    FileHandle.standardError.write(Data("openq-compare measures release builds only: add -c release.\n".utf8))
    exit(2)
#endif

struct Options {
    var messages = 1_000_000
    var rounds = 5
    var json = false
    var only: String?
    var memoryProbe: String?
    var openQOnly = false
    /// Keeps only the peers whose name contains this text (for profiling one of them).
    var peer: String?
    /// Runs every scenario in this process instead of one child process per scenario.
    var inProcess = false

    /// A whole run (no `--only`, `--peer` or probe) runs each scenario in a fresh child process.
    var isolatesScenarios: Bool { only == nil && peer == nil && memoryProbe == nil && !inProcess }

    init(_ arguments: [String]) throws {
        var iterator = arguments.dropFirst().makeIterator()
        while let argument = iterator.next() {
            switch argument {
            case "--messages": messages = try Self.int(iterator.next(), argument)
            case "--rounds": rounds = try Self.int(iterator.next(), argument)
            case "--json": json = true
            case "--only": only = iterator.next()
            case "--memory-probe": memoryProbe = iterator.next()
            case "--openq-only": openQOnly = true
            case "--peer": peer = iterator.next()
            case "--in-process": inProcess = true
            case "--help", "-h":
                print(
                    "usage: openq-compare [--messages N (1000000)] [--rounds R (5)] [--only TEXT] [--openq-only] [--peer TEXT] [--in-process] [--json]"
                )
                exit(0)
            default: throw CompareError("unknown argument \(argument); see --help")
            }
        }
    }

    static func int(_ value: String?, _ name: String) throws -> Int {
        guard let value, let number = Int(value), number > 0 else {
            throw CompareError("\(name) needs a positive number")
        }
        return number
    }
}

/// One line of the table: OpenQ's samples beside a peer's.
struct Row: Codable {
    var scenario: String
    var unit: String
    var higherIsBetter: Bool
    var peer: String
    var openQ: [Double]
    var peerSamples: [Double]
    /// The core-to-core round trip (ns) measured when the process that ran the row started.
    var coreToCore: Double? = nil

    var openQMedian: Double { median(openQ) }
    var peerMedian: Double { median(peerSamples) }
    /// How many times better OpenQ is (> 1 is better, whichever way the unit points).
    var advantage: Double {
        guard peerMedian > 0, openQMedian > 0 else { return .nan }
        return higherIsBetter ? openQMedian / peerMedian : peerMedian / openQMedian
    }

    enum CodingKeys: String, CodingKey {
        case scenario, unit, higherIsBetter, peer, openQ, peerSamples, coreToCore, openQMedian, peerMedian, advantage
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(scenario, forKey: .scenario)
        try container.encode(unit, forKey: .unit)
        try container.encode(higherIsBetter, forKey: .higherIsBetter)
        try container.encode(peer, forKey: .peer)
        try container.encode(openQ, forKey: .openQ)
        try container.encode(peerSamples, forKey: .peerSamples)
        try container.encodeIfPresent(coreToCore, forKey: .coreToCore)
        try container.encode(openQMedian, forKey: .openQMedian)
        try container.encode(peerMedian, forKey: .peerMedian)
        try container.encode(advantage.isNaN ? 0 : advantage, forKey: .advantage)
    }
}

// In an extension, so that Row keeps its memberwise initializer.
extension Row {
    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        scenario = try container.decode(String.self, forKey: .scenario)
        unit = try container.decode(String.self, forKey: .unit)
        higherIsBetter = try container.decode(Bool.self, forKey: .higherIsBetter)
        peer = try container.decode(String.self, forKey: .peer)
        openQ = try container.decode([Double].self, forKey: .openQ)
        peerSamples = try container.decode([Double].self, forKey: .peerSamples)
        coreToCore = try container.decodeIfPresent(Double.self, forKey: .coreToCore)
    }
}

func median(_ values: [Double]) -> Double {
    guard !values.isEmpty else { return 0 }
    let sorted = values.sorted()
    return sorted.count % 2 == 1
        ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
}

func log(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}

func rate(_ result: (elapsed: Duration, deliveries: Int)) -> Double {
    Double(result.deliveries) / result.elapsed.seconds
}

extension Duration {
    var seconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) * 1e-18
    }
}

/// Runs OpenQ and its peers alternately, `rounds` times, and makes one row per peer.
/// Whether a row of a group is asked for (`--only` names the group, or part of the row).
func selected(_ scenario: String) -> Bool {
    guard let only = options.only, !wholeGroup else { return true }
    return scenario.contains(only) || only.contains(scenario)
}

func compare(
    _ scenario: String,
    count: Int,
    rounds: Int,
    unit: String = "msgs/s",
    openQ: Run,
    peers: [(String, Run)]
) async throws -> [Row] {
    guard selected(scenario) else { return [] }
    var openQSamples: [Double] = []
    let peers = options.openQOnly ? [] : peers.filter { options.peer.map($0.0.contains) ?? true }
    var peerSamples = Array(repeating: [Double](), count: peers.count)
    for round in 1...rounds {
        openQSamples.append(rate(try await openQ(count)))
        for (index, peer) in peers.enumerated() {
            peerSamples[index].append(rate(try await peer.1(count)))
        }
        log("  \(scenario): round \(round)/\(rounds)")
    }
    if peers.isEmpty {
        return [
            Row(scenario: scenario, unit: unit, higherIsBetter: true, peer: "–", openQ: openQSamples, peerSamples: [])
        ]
    }
    return peers.indices.map { index in
        Row(
            scenario: scenario, unit: unit, higherIsBetter: true, peer: peers[index].0, openQ: openQSamples,
            peerSamples: peerSamples[index])
    }
}

func format(_ value: Double, unit: String) -> String {
    if unit.hasSuffix("/s") {
        return value >= 1_000_000
            ? String(format: "%.2f M", value / 1_000_000) : String(format: "%.0f k", value / 1_000)
    }
    return String(format: "%.1f", value)
}

func table(_ rows: [Row]) -> String {
    var lines = [
        ["scenario", "unit", "OpenQ median", "peer", "peer median", "OpenQ ×", "OpenQ min–max", "peer min–max"]
    ]
    for row in rows {
        let range = { (values: [Double]) in
            values.isEmpty ? "–" : "\(format(values.min()!, unit: row.unit))–\(format(values.max()!, unit: row.unit))"
        }
        lines.append([
            row.scenario, row.unit, format(row.openQMedian, unit: row.unit), row.peer,
            row.peerSamples.isEmpty ? "–" : format(row.peerMedian, unit: row.unit),
            row.advantage.isNaN ? "–" : String(format: "%.2f", row.advantage), range(row.openQ), range(row.peerSamples),
        ])
    }
    let widths = lines[0].indices.map { column in lines.map { $0[column].count }.max()! }
    return lines.enumerated().map { index, line in
        let text = line.indices.map { column in
            column == 0 || column == 1 || column == 3
                ? line[column].padding(toLength: widths[column], withPad: " ", startingAt: 0)
                : String(repeating: " ", count: widths[column] - line[column].count) + line[column]
        }.joined(separator: " | ")
        return index == 0 ? text + "\n" + String(repeating: "-", count: text.count) : text
    }.joined(separator: "\n")
}

let options = try Options(CommandLine.arguments)
if let probe = options.memoryProbe {
    try await Memory.probe(probe, count: options.messages)
    exit(0)
}

/// The child runs of a whole run, in table order: a scenario group (`--only`), and for the 1→1
/// per-message scenario one child per peer.
let isolatedRuns: [(only: String, peer: String?)] =
    (options.openQOnly
        ? [("1→1 per message", nil)]
        : OneToOne.peers.map { ("1→1 per message", $0.0) })
    + ["1→1 batches", "single task", "fan-out", "4→4", "ack", "redeliver", "latency", "memory", "scale", "durable"].map
{
    ($0, nil)
}

/// Runs this executable with `arguments` in a child process and returns what it printed; throws
/// when the child fails. Its standard error (progress) goes to ours.
func runThisExecutable(_ arguments: [String]) throws -> Data {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: CommandLine.arguments[0])
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        throw CompareError(
            "openq-compare \(arguments.joined(separator: " ")) failed with status \(process.terminationStatus): "
                + String(decoding: data, as: UTF8.self))
    }
    return data
}

/// Runs one child run of this executable and reads its rows.
func runChild(only: String, peer: String?) throws -> [Row] {
    var arguments = [
        "--only", only, "--json", "--messages", String(options.messages), "--rounds", String(options.rounds),
    ]
    if let peer { arguments += ["--peer", peer] }
    if options.openQOnly { arguments.append("--openq-only") }
    return try JSONDecoder().decode([Row].self, from: try runThisExecutable(arguments))
}

/// Prints the rows, then (not in JSON, which is the rows only) the core-to-core round trip each
/// process measured when it started, labelled by what it ran.
func output(_ rows: [Row], roundTrips: [(ran: String, nanoseconds: Double?)]) throws {
    if options.json {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        print(String(decoding: try encoder.encode(rows), as: UTF8.self))
        return
    }
    print(table(rows))
    let trips = roundTrips.map { "\($0.ran) \($0.nanoseconds.map { String(Int($0.rounded())) } ?? "–")" }
    print("core-to-core round trip at the start, ns (see CoreToCore.swift): \(trips.joined(separator: ", "))")
}

if options.isolatesScenarios {
    log("openq-compare: one child process per scenario")
    var rows: [Row] = []
    var roundTrips: [(String, Double?)] = []
    for run in isolatedRuns {
        let childRows = try runChild(only: run.only, peer: run.peer)
        roundTrips.append(
            ([run.only, run.peer].compactMap { $0 }.joined(separator: " vs "), childRows.first?.coreToCore))
        rows += childRows
    }
    try output(rows, roundTrips: roundTrips)
    exit(0)
}

let n = options.messages
let rounds = options.rounds
/// Whether a group of scenarios runs: `--only` names the group ("1→1", "scale"), or one of its
/// scenarios by a part of its name ("1→1 batches", "10k topics"; `others` lists the names that do
/// not contain the group's key). ``compare(_:count:rounds:unit:openQ:peers:)`` then skips the
/// scenarios of the group that were not named.
func wanted(_ group: String, others: String...) -> Bool {
    guard let only = options.only else { return true }
    wholeGroup = group.contains(only)
    return wholeGroup || only.contains(group) || others.contains { $0.contains(only) || only.contains($0) }
}
nonisolated(unsafe) var wholeGroup = true
var rows: [Row] = []
let roundTripAtStart = CoreToCore.roundTripNanoseconds()
log(
    "openq-compare: \(n) messages, \(rounds) rounds, \(ProcessInfo.processInfo.activeProcessorCount) cores, "
        + "core-to-core round trip \(roundTripAtStart.map { "\(Int($0.rounded())) ns" } ?? "–")")

if wanted("1→1") {
    rows += try await compare(
        "1→1 per message", count: n, rounds: rounds, openQ: OneToOne.openQ, peers: OneToOne.peers)
    rows += try await compare(
        "1→1 batches of 256, read one by one", count: n, rounds: rounds, openQ: OneToOne.openQBatched,
        peers: [("hand-rolled, batches of 256", OneToOne.handRolledBatched)])
    rows += try await compare(
        "1→1 batches of 256, read as batches", count: n, rounds: rounds, openQ: OneToOne.openQBatchedReadInBatches,
        peers: [("hand-rolled, batches of 256", OneToOne.handRolledBatched)])
}
if wanted("single task") {
    rows += try await compare(
        "single task: publish all, then read all", count: n, rounds: rounds, openQ: SingleTask.openQ,
        peers: [("hand-rolled Mutex+Deque", SingleTask.handRolled)])
}
if wanted("fan-out") {
    rows += try await compare(
        "1→16 fan-out", count: max(n / 4, 1), rounds: rounds, unit: "deliveries/s", openQ: FanOut.openQ,
        peers: [("16 AsyncStreams", FanOut.asyncStreams)])
}
if wanted("4→4") {
    rows += try await compare(
        "4→4 competing, manual ack", count: n, rounds: rounds, openQ: WorkQueue.openQ,
        peers: [("OpenQ 1→1 automatic", OneToOne.openQ)])
}
if wanted("ack") {
    for (batch, batchAck) in [(1, false), (10, false), (10, true), (100, false), (100, true)] {
        let acks = batch == 1 ? "ack" : batchAck ? "batch ack" : "ack each"
        rows += try await compare(
            "publish→receive→\(acks), batch \(batch)", count: max(n / 4, 1), rounds: rounds,
            openQ: AtLeastOnce.openQ(batch: batch, batchAck: batchAck),
            peers: [("OpenQ 1→1 automatic", OneToOne.openQ)])
    }
}
if wanted("redeliver", others: "dead-letter") {
    rows += try await compare(
        "nack + redeliver", count: max(n / 4, 1), rounds: rounds, unit: "deliveries/s",
        openQ: Redelivery.nackAndRedeliver, peers: [])
    rows += try await compare(
        "reject → dead-letter", count: max(n / 4, 1), rounds: rounds, openQ: Redelivery.deadLetter, peers: [])
}
if wanted("latency") {
    let count = min(max(n / 5, 1_000), 200_000)
    for (label, offered) in [("latency at 100k msgs/s", Optional(100_000)), ("latency at saturation", nil)] {
        var openQ: [LatencyResult] = []
        var stream: [LatencyResult] = []
        for round in 1...rounds {
            openQ.append(try await Latency.openQ(count: count, rate: offered))
            stream.append(await Latency.asyncStream(count: count, rate: offered))
            log("  \(label): round \(round)/\(rounds)")
        }
        for (name, path) in [("p50", \LatencyResult.p50), ("p99", \LatencyResult.p99), ("p999", \LatencyResult.p999)] {
            rows.append(
                Row(
                    scenario: "\(label), \(name)", unit: "µs", higherIsBetter: false, peer: "AsyncStream",
                    openQ: openQ.map { $0[keyPath: path] }, peerSamples: stream.map { $0[keyPath: path] }))
        }
    }
}
if wanted("memory") {
    // Published in batches of 1 000 (one record per batch) and one by one (one record each).
    let count = max(n, 100_000)
    var batched: [Double] = []
    var single: [Double] = []
    var stream: [Double] = []
    for round in 1...max(rounds / 2, 1) {
        batched.append(try Memory.measure("openq", count: count))
        single.append(try Memory.measure("openq-single", count: count))
        stream.append(try Memory.measure("asyncstream", count: count))
        log("  memory: round \(round)")
    }
    rows.append(
        Row(
            scenario: "memory, \(count) held, batch-published", unit: "bytes/msg", higherIsBetter: false,
            peer: "AsyncStream", openQ: batched, peerSamples: stream))
    rows.append(
        Row(
            scenario: "memory, \(count) held, published one by one", unit: "bytes/msg", higherIsBetter: false,
            peer: "AsyncStream", openQ: single, peerSamples: stream))
}
if wanted("scale", others: "10k topics", "2 producers") {
    rows += try await compare(
        "10k topics, 1 subscriber each", count: max(n, Scale.topicCount), rounds: max(rounds / 2, 1),
        openQ: Scale.manyTopics, peers: [("10k AsyncStreams", Scale.manyAsyncStreams)])
    rows += try await compare(
        "2 producers on 2 topics (batches of 64)", count: n, rounds: rounds, openQ: Scale.parallelTopics(2),
        peers: [("OpenQ, 1 producer on 1 topic", Scale.parallelTopics(1))])
}

if wanted("durable") {
    rows += try await durableRows(messages: n, rounds: rounds)
}

for index in rows.indices { rows[index].coreToCore = roundTripAtStart }
try output(rows, roundTrips: [("this run", roundTripAtStart)])
