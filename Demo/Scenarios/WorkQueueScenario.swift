// Demo scenario: a work queue with manual acks; a crashed consumer's job is redelivered.

import OpenQ

enum WorkQueueScenario {
    /// Jobs per publish call.
    static let batchSize = 1_000

    static func run(_ options: DemoOptions, narrator: Narrator) async throws -> ScenarioOutcome {
        let count = max(options.messages, 1)
        let queue = narrator.makeQueue()
        let jobs = try await queue.createTopic("jobs", of: Int.self)
        // The good workers' deliveries get a long visibility timeout (at least 30 s), so that only
        // the crashed job's expires, however loaded the machine; the crasher takes its job with
        // the scenario's visibility timeout (`--visibility-timeout`), the per-receive override.
        let workersTimeout = max(options.visibilityTimeout, .seconds(30))
        let workers = try await jobs.subscription(
            "workers", acknowledgement: .manual(visibilityTimeout: workersTimeout))
        narrator.say("topic 'jobs', subscription 'workers' with manual acks (visibility timeout \(workersTimeout))")

        // The crasher takes one job and dies without acknowledging it.
        try await jobs.publish(1)
        let taken = try await workers.receive(max: 1, visibilityTimeout: options.visibilityTimeout)
        let crashedJob = taken.first?.message.payload ?? -1
        narrator.say(
            "the crasher took job #\(crashedJob) (attempt 1) with a \(options.visibilityTimeout) visibility timeout "
                + "and died without acking")

        let handled = Collected<[(job: Int, worker: Int, attempt: Int)]>([])
        let transientFailures = Collected(0)
        let sequence = try workers.deliveries(prefetch: 8)
        let consumers = (1...max(options.consumers, 1)).map { worker in
            Task {
                var random = SplitMix64(seed: options.seed &+ UInt64(worker))
                for await delivery in sequence {
                    // About 2 % of first attempts fail transiently (seeded by --seed): nack, retry at once.
                    // A settlement can fail when the visibility timeout passed first: the job is
                    // then redelivered, and only the settlements that succeeded count.
                    if delivery.attempt == 1, random.next() % 50 == 0 {
                        if (try? await delivery.nack(retryAfter: .zero, error: "transient failure")) != nil {
                            transientFailures.withValue { $0 += 1 }
                        }
                        continue
                    }
                    guard (try? await delivery.ack()) != nil else { continue }
                    handled.withValue { $0.append((delivery.message.payload, worker, delivery.attempt)) }
                    if delivery.message.payload == crashedJob {
                        narrator.say(
                            "job #\(delivery.message.payload) redelivered to worker-\(worker) (attempt \(delivery.attempt)) after the visibility timeout"
                        )
                    }
                }
            }
        }
        narrator.say("\(consumers.count) good workers compete for \(count) jobs")
        // In batches well below the topic's capacity: a batch larger than a suspending
        // subscription's capacity could never fit, and smaller ones wait for room as workers drain.
        var next = 2
        while next <= count {
            let last = min(next + Self.batchSize - 1, count)
            try await jobs.publish(contentsOf: next...last)
            next = last + 1
        }
        try await waitUntil("every job to be acknowledged", seconds: options.patience) {
            (try? workers.statistics().counters.acked) == count
        }
        for consumer in consumers { consumer.cancel() }
        for consumer in consumers { await consumer.value }

        let results = handled.current
        let perWorker = Dictionary(grouping: results, by: \.worker).mapValues(\.count)
        narrator.say("\(transientFailures.current) transient failures (seed \(options.seed)) were nacked and retried")
        let expired = (try? workers.statistics().counters.expired) ?? 0
        if expired > 1 {
            narrator.say("\(expired - 1) more deliveries outlived the visibility timeout and were redelivered")
        }
        narrator.say(
            "done: " + perWorker.keys.sorted().map { "worker-\($0) acked \(perWorker[$0]!)" }.joined(separator: ", "))
        var outcome = ScenarioOutcome(
            .workQueue, statistics: await queue.statistics(),
            figures: ["crashedJob": crashedJob, "transientFailures": transientFailures.current])
        let statistics = try workers.statistics()
        outcome.check("every job acknowledged exactly once", results.map(\.job).sorted() == Array(1...count))
        outcome.check(
            "the crashed job was redelivered to a good worker",
            results.contains { $0.job == crashedJob && $0.attempt >= 2 })
        outcome.check("every transient failure was retried", statistics.counters.nacked == transientFailures.current)
        outcome.check("nothing left in flight or waiting", statistics.inFlight == 0 && statistics.depth == 0)
        outcome.check(
            "the crashed job's visibility timeout expired, and every expired or nacked delivery was redelivered",
            statistics.counters.expired >= 1
                && statistics.counters.redelivered == statistics.counters.expired + statistics.counters.nacked)
        outcome.checkAccounting()
        _ = await queue.shutdown(gracePeriod: .seconds(1))
        return outcome
    }
}
