// The child process of the crash tests (Tests/OpenQSQLiteTests/CrashTests.swift): it opens a
// durable store and drives traffic, printing one line per call that RETURNED, until its parent
// kills it with SIGKILL. The parent then checks the store against what the lines promised.
//
//   openq-crash-child <store path> traffic <seed> <first job id> [resident messages]
//   openq-crash-child <store path> poison <publish: 0|1>
//   openq-crash-child <store path> stats - - [resident messages]
//   openq-crash-child <store path> backlog <count> - <resident messages>
//     publishes <count> 1 KiB messages nobody consumes, then prints "M <resident memory growth in
//     bytes> <paged out>"; then reopens the store and prints "O <resident memory growth of the
//     reopened broker in bytes> <depth>".
//
// With a small number of resident messages, the subscriptions page: most waiting messages are in
// the store only, and pages are read back while the child is killed.
//
// Lines: READY, P <id> (publish returned), R <id> <attempt> (receive returned it), a <id> (an ack
// starts: from here the message may be gone), A <id> (ack returned), N <id> (nack returned), D <id> (reject returned), V <count> (redrive returned),
// DLQ <depth> <attempts header> (poison: the message is dead), S <work waiting> <work in flight>
// <dead letters> <work paged out> (stats, after a recovery).
import OpenQ
import OpenQSQLite

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

struct Job: Codable, Sendable, Hashable {
    var id: Int
}

struct Bulk: Codable, Sendable {
    var id: Int
    var bulk: String
}

/// The process's resident memory in bytes (`/proc/self/statm`).
func residentBytes() -> Int {
    let descriptor = open("/proc/self/statm", O_RDONLY)
    guard descriptor >= 0 else { return 0 }
    defer { close(descriptor) }
    var buffer = [UInt8](repeating: 0, count: 128)
    let count = read(descriptor, &buffer, buffer.count)
    guard count > 0 else { return 0 }
    let fields = String(decoding: buffer[..<count], as: UTF8.self).split(separator: " ")
    guard fields.count > 1, let resident = Int(fields[1]) else { return 0 }
    return resident * Int(sysconf(Int32(_SC_PAGESIZE)))
}

func say(_ line: String) {
    // One write per line: a line is in the pipe whole, or not at all.
    let text = line + "\n"
    _ = text.withCString { write(1, $0, strlen($0)) }
}

let arguments = CommandLine.arguments
guard arguments.count >= 4 else {
    say("usage: openq-crash-child <path> traffic <seed> <first id> | <path> poison <0|1>")
    exit(2)
}
let path = arguments[1]

/// The traffic's topic: a capacity far above any resident limit, so that a backlog pages, and a
/// retained history, so that every publish's commit deletes the range that fell out of it.
let jobsConfiguration = TopicConfiguration(
    capacity: 1_000_000, deadLetter: .after(deliveries: 4), retention: .count(200), durability: .durable)

do {
    let resident = arguments.count > 5 ? Int(arguments[5]) ?? 10_000 : 10_000
    let queue = try await MessageQueue(
        storage: .sqlite(path: path, durability: .powerLoss, residentMessages: resident),
        configuration: .init(metricsInterval: nil))
    switch arguments[2] {
    case "backlog":
        let count = Int(arguments[3]) ?? 0
        let bulk = String(repeating: "x", count: 1_024)
        let before = residentBytes()
        let jobs = try await queue.createTopic("backlog", of: Bulk.self, configuration: jobsConfiguration)
        _ = try await jobs.subscription("work")
        for first in stride(from: 0, to: count, by: 500) {
            // Each payload its own 1 KiB string, as payloads that arrive from outside are.
            try await jobs.publish(
                contentsOf: (first..<min(first + 500, count)).map { Bulk(id: $0, bulk: bulk + String($0)) })
        }
        let statistics = await queue.statistics().subscription("work", of: "backlog")
        say("M \(residentBytes() - before) \(statistics?.pagedOut ?? -1)")
        _ = await queue.shutdown(gracePeriod: .zero)
        let reopenedBefore = residentBytes()
        let reopened = try await MessageQueue(
            storage: .sqlite(path: path, durability: .powerLoss, residentMessages: resident),
            configuration: .init(metricsInterval: nil))
        _ = try await reopened.createTopic("backlog", of: Bulk.self, configuration: jobsConfiguration)
        let depth = await reopened.statistics().subscription("work", of: "backlog")?.depth ?? -1
        say("O \(residentBytes() - reopenedBefore) \(depth)")
        _ = await reopened.shutdown(gracePeriod: .zero)
    case "stats":
        _ = try await queue.createTopic("jobs", of: Job.self, configuration: jobsConfiguration)
        let statistics = await queue.statistics()
        _ = await queue.shutdown(gracePeriod: .zero)
        let work = statistics.subscription("work", of: "jobs")
        let dead = statistics.subscription("dead-letters", of: "jobs.dlq")
        say(
            "S \((work?.depth ?? -1) + (work?.scheduled ?? 0)) \(work?.inFlight ?? -1) "
                + "\((dead?.depth ?? -1) + (dead?.scheduled ?? 0) + (dead?.inFlight ?? 0)) \(work?.pagedOut ?? -1)")
    case "poison":
        let topic = try await queue.createTopic(
            "poison", of: Job.self, configuration: .init(deadLetter: .after(deliveries: 3), durability: .durable))
        let work = try await topic.subscription("work")
        if arguments[3] == "1" { try await topic.publish(Job(id: 1)) }
        say("READY")
        if let delivery = try await work.receive(max: 1, waitingUpTo: .zero).first {
            say("R \(delivery.message.payload.id) \(delivery.attempt)")
            // The handler crashes the process, every time.
            kill(getpid(), SIGKILL)
        }
        let dead = try await queue.topic("poison.dlq", of: Job.self).existingSubscription("dead-letters")
        let letters = try await dead.receive(max: 10, waitingUpTo: .zero)
        say("DLQ \(letters.count) \(letters.first?.message.headers[MessageHeader.attempts] ?? "-")")
        _ = await queue.shutdown(gracePeriod: .zero)
    default:
        var random = SplitMix64(seed: UInt64(arguments[3]) ?? 1)
        var nextID = Int(arguments[4]) ?? 1
        let jobs = try await queue.createTopic("jobs", of: Job.self, configuration: jobsConfiguration)
        let work = try await jobs.subscription("work", acknowledgement: .manual(visibilityTimeout: .milliseconds(200)))
        say("READY")
        // A paging life publishes more than it consumes, so that its backlog outgrows memory.
        let publishes = resident < 100 ? 55 : 30
        while true {
            let choice = random.below(100)
            if choice < publishes {
                let id = nextID
                nextID += 1
                try await jobs.publish(Job(id: id))
                say("P \(id)")
            } else if choice < publishes + 10 {
                let ids = Array(nextID..<nextID + 5)
                nextID += 5
                try await jobs.publish(contentsOf: ids.map(Job.init(id:)))
                for id in ids { say("P \(id)") }
            } else if choice < 95 {
                let deliveries = try await work.receive(max: 5, waitingUpTo: .milliseconds(20))
                for delivery in deliveries { say("R \(delivery.message.payload.id) \(delivery.attempt)") }
                for delivery in deliveries {
                    let id = delivery.message.payload.id
                    let fate = random.below(100)
                    do {
                        if fate < 60 {
                            say("a \(id)")
                            try await delivery.ack()
                            say("A \(id)")
                        } else if fate < 80 {
                            try await delivery.nack(retryAfter: .milliseconds(random.below(30)), error: "try later")
                            say("N \(id)")
                        } else if fate < 85 {
                            try await delivery.reject(reason: "poison")
                            say("D \(id)")
                        }  // else: left to expire
                    } catch let error as OpenQError where error.code == .receiptExpired {
                        // The visibility timeout passed first: the message is visible again.
                    }
                }
            } else {
                let moved = try await queue.redrive(from: "jobs.dlq", max: 3)
                say("V \(moved)")
            }
        }
    }
} catch {
    say("ERROR \(error)")
    exit(1)
}
