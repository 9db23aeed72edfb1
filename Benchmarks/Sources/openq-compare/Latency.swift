// openq-compare: the latency rows.

import OpenQ

/// Publish-to-handler latency percentiles, in microseconds.
struct LatencyResult: Sendable {
    var p50: Double
    var p99: Double
    var p999: Double
}

enum Latency {
    /// Nanoseconds since the first call, carried in the payload's number.
    static let base = ContinuousClock.now

    static func nanosecondsNow() -> Int {
        let (seconds, attoseconds) = (ContinuousClock.now - base).components
        return Int(seconds) * 1_000_000_000 + Int(attoseconds / 1_000_000_000)
    }

    /// Busy-waits until `deadline` (nanoseconds since `base`): pacing finer than a sleep can.
    static func spin(until deadline: Int) {
        while nanosecondsNow() < deadline {}
    }

    static func percentiles(_ samples: [Int]) -> LatencyResult {
        let sorted = samples.sorted()
        func at(_ fraction: Double) -> Double {
            Double(sorted[min(sorted.count - 1, Int(Double(sorted.count) * fraction))]) / 1_000
        }
        return LatencyResult(p50: at(0.5), p99: at(0.99), p999: at(0.999))
    }

    /// OpenQ: one producer publishing at `rate` messages per second (nil: as fast as it can).
    static func openQ(count: Int, rate: Int?) async throws -> LatencyResult {
        let topic = try await benchQueue().createTopic("latency", of: Payload.self, configuration: unboundedEnough)
        let stream = try await topic.subscribe(prefetch: 256)
        let consumer = Task {
            var samples: [Int] = []
            samples.reserveCapacity(count)
            for await message in stream {
                samples.append(nanosecondsNow() - message.payload.number)
                if samples.count == count { break }
            }
            return samples
        }
        let interval = rate.map { 1_000_000_000 / $0 } ?? 0
        let start = nanosecondsNow()
        for index in 0..<count {
            if interval > 0 { spin(until: start + index * interval) }
            try await topic.publish(Payload(nanosecondsNow()))
        }
        return percentiles(await consumer.value)
    }

    static func asyncStream(count: Int, rate: Int?) async -> LatencyResult {
        let (stream, continuation) = AsyncStream.makeStream(of: Payload.self)
        let consumer = Task {
            var samples: [Int] = []
            samples.reserveCapacity(count)
            for await payload in stream { samples.append(nanosecondsNow() - payload.number) }
            return samples
        }
        let interval = rate.map { 1_000_000_000 / $0 } ?? 0
        let start = nanosecondsNow()
        for index in 0..<count {
            if interval > 0 { spin(until: start + index * interval) }
            continuation.yield(Payload(nanosecondsNow()))
        }
        continuation.finish()
        return percentiles(await consumer.value)
    }
}
