// Allocation benchmarks (ordo-one/benchmark) that CI checks against Benchmarks/Thresholds.

import Benchmark
import OpenQ

// Allocation counts of OpenQ's hot paths, checked in CI against the committed thresholds in
// Benchmarks/Thresholds (`swift package benchmark thresholds check`). Each benchmark runs in one
// task, so no consumer ever suspends and the counts do not depend on scheduling.

struct Payload: Sendable {
    var number: Int
    var label: String
}

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.mallocCountTotal, .throughput, .wallClock],
        warmupIterations: 2,
        scalingFactor: .kilo,
        maxDuration: .seconds(2),
        maxIterations: 50,
        thresholds: [.mallocCountTotal: .init(relative: [.p90: 5.0], absolute: [.p90: 20])]
    )

    Benchmark("PublishThenStreamAutomaticAck") { benchmark in
        let queue = MessageQueue(configuration: .init(metricsInterval: nil))
        let topic = try await queue.createTopic("bench", of: Payload.self, configuration: .init(capacity: 1_000_000))
        let stream = try await topic.subscribe(prefetch: 256)
        var iterator = stream.makeAsyncIterator()
        benchmark.startMeasurement()
        for number in benchmark.scaledIterations {
            try await topic.publish(Payload(number: number, label: "order"))
        }
        for _ in benchmark.scaledIterations {
            blackHole(await iterator.next())
        }
        benchmark.stopMeasurement()
    }

    Benchmark("BatchPublish256ThenStream") { benchmark in
        let queue = MessageQueue(configuration: .init(metricsInterval: nil))
        let topic = try await queue.createTopic("bench", of: Payload.self, configuration: .init(capacity: 1_000_000))
        let stream = try await topic.subscribe(prefetch: 256)
        var iterator = stream.makeAsyncIterator()
        let batch = (0..<256).map { Payload(number: $0, label: "order") }
        benchmark.startMeasurement()
        for _ in 0..<(benchmark.scaledIterations.count / 256) {
            try await topic.publish(contentsOf: batch)
        }
        for _ in 0..<(benchmark.scaledIterations.count / 256 * 256) {
            blackHole(await iterator.next())
        }
        benchmark.stopMeasurement()
    }

    Benchmark("BatchPublish256ThenBatches") { benchmark in
        let queue = MessageQueue(configuration: .init(metricsInterval: nil))
        let topic = try await queue.createTopic("bench", of: Payload.self, configuration: .init(capacity: 1_000_000))
        let stream = try await topic.subscribe(prefetch: 256)
        var batches = stream.batches.makeAsyncIterator()
        let batch = (0..<256).map { Payload(number: $0, label: "order") }
        let total = benchmark.scaledIterations.count / 256 * 256
        benchmark.startMeasurement()
        for _ in 0..<(total / 256) {
            try await topic.publish(contentsOf: batch)
        }
        var read = 0
        while read < total, let taken = await batches.next() {
            for message in taken { blackHole(message) }
            read += taken.count
        }
        benchmark.stopMeasurement()
    }

    Benchmark("PublishReceive100AckManual") { benchmark in
        let queue = MessageQueue(configuration: .init(metricsInterval: nil))
        let topic = try await queue.createTopic("bench", of: Payload.self, configuration: .init(capacity: 1_000_000))
        let subscription = try await topic.subscription("work", acknowledgement: .manual)
        benchmark.startMeasurement()
        for number in benchmark.scaledIterations {
            try await topic.publish(Payload(number: number, label: "order"))
        }
        while case let batch = try await subscription.receive(max: 100), !batch.isEmpty {
            for delivery in batch { try await delivery.ack() }
        }
        benchmark.stopMeasurement()
    }

    Benchmark("FanOutTo16Subscriptions") { benchmark in
        let queue = MessageQueue(configuration: .init(metricsInterval: nil))
        let topic = try await queue.createTopic("bench", of: Payload.self, configuration: .init(capacity: 1_000_000))
        var streams: [MessageStream<Payload>] = []
        for _ in 0..<16 { streams.append(try await topic.subscribe(prefetch: 256)) }
        var iterators = streams.map { $0.makeAsyncIterator() }
        benchmark.startMeasurement()
        for number in benchmark.scaledIterations {
            try await topic.publish(Payload(number: number, label: "order"))
        }
        for index in iterators.indices {
            for _ in benchmark.scaledIterations { blackHole(await iterators[index].next()) }
        }
        benchmark.stopMeasurement()
    }
}
