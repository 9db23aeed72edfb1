import OpenQ

enum WorkQueueScenario {
    static func run(_ options: DemoOptions, narrator: Narrator) async throws -> ScenarioOutcome {
        let count = max(options.messages, 1)
        let queue = narrator.makeQueue()
        let jobs = try await queue.createTopic("jobs", of: Int.self)
        let workers = try jobs.subscription(
            "workers", acknowledgement: .manual(visibilityTimeout: options.visibilityTimeout))
        narrator.say(
            "topic 'jobs', subscription 'workers' with manual acks and a \(options.visibilityTimeout) visibility timeout"
        )

        // The crasher takes one job and dies without acknowledging it.
        try await jobs.publish(1)
        let taken = try await workers.receive(max: 1)
        let crashedJob = taken.first?.message.payload ?? -1
        narrator.say("the crasher took job #\(crashedJob) (attempt 1) and died without acking")

        let handled = Collected<[(job: Int, worker: Int, attempt: Int)]>([])
        let transientFailures = Collected(0)
        let consumers = (1...max(options.consumers, 1)).map { worker in
            Task {
                var random = SplitMix64(seed: options.seed &+ UInt64(worker))
                for await delivery in workers.deliveries(prefetch: 8) {
                    // About 2 % of first attempts fail transiently (seeded by --seed): nack, retry at once.
                    if delivery.attempt == 1, random.next() % 50 == 0 {
                        transientFailures.withValue { $0 += 1 }
                        try? await delivery.nack(retryAfter: .zero, error: "transient failure")
                        continue
                    }
                    handled.withValue { $0.append((delivery.message.payload, worker, delivery.attempt)) }
                    try? await delivery.ack()
                    if delivery.message.payload == crashedJob {
                        narrator.say(
                            "job #\(delivery.message.payload) redelivered to worker-\(worker) (attempt \(delivery.attempt)) after the visibility timeout"
                        )
                    }
                }
            }
        }
        narrator.say("\(consumers.count) good workers compete for \(count) jobs")
        if count > 1 { try await jobs.publish(contentsOf: 2...count) }
        try await waitUntil("every job to be acknowledged") {
            (try? workers.statistics().counters.acked) == count
        }
        for consumer in consumers { consumer.cancel() }
        for consumer in consumers { await consumer.value }

        let results = handled.current
        let perWorker = Dictionary(grouping: results, by: \.worker).mapValues(\.count)
        narrator.say("\(transientFailures.current) transient failures (seed \(options.seed)) were nacked and retried")
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
        outcome.check("exactly one visibility timeout expired", statistics.counters.expired == 1)
        outcome.checkAccounting()
        _ = await queue.shutdown(gracePeriod: .seconds(1))
        return outcome
    }
}
