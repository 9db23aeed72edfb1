import OpenQTesting
import Testing

@testable import OpenQ

@Suite("Interceptors: code around each publish and each handled message")
struct InterceptorTests {
    /// Stamps a header on publish and records the order in which interceptors run around handling.
    struct Recording: MessageInterceptor {
        let name: String
        let log: LockedValueBox<[String]>

        func willPublish(_ publish: inout PublishContext) {
            publish.headers["seen-by", default: ""] += name
            log.withLock { $0.append("publish \(name) \(publish.topic) \(publish.count)") }
        }

        func intercept(_ handling: HandlingContext, next: () async throws -> Void) async throws {
            log.withLock { $0.append("before \(name) #\(handling.sequenceNumber) attempt \(handling.attempt)") }
            try await next()
            log.withLock { $0.append("after \(name) #\(handling.sequenceNumber)") }
        }
    }

    /// Fails the first handling of every message.
    struct FailFirst: MessageInterceptor {
        struct Refused: Error {}

        func intercept(_ handling: HandlingContext, next: () async throws -> Void) async throws {
            guard handling.attempt > 1 else { throw Refused() }
            try await next()
        }
    }

    @Test func interceptors_changePublishedHeaders_andWrapHandling_firstOutermost() async throws {
        let log = LockedValueBox<[String]>([])
        let queue = MessageQueue(
            configuration: .init(
                metricsInterval: nil,
                interceptors: [Recording(name: "a", log: log), Recording(name: "b", log: log)]),
            clock: ManualClock())
        let topic = try await queue.createTopic("t", of: Int.self)
        let work = try await topic.subscription("pull", acknowledgement: .automatic)
        let handled = LockedValueBox<[String]>([])
        let consumer = try await topic.consume(subscription: "w") { message in
            handled.withLock { $0.append(message.headers["seen-by"] ?? "-") }
            log.withLock { $0.append("handle #\(message.sequenceNumber)") }
        }
        try await topic.publish(1)
        try await topic.publish(contentsOf: [2, 3])
        #expect(topic.tryPublish(4).receipt != nil)
        try await eventually("every message handled") { handled.withLock { $0.count } == 4 }
        await consumer.stop()
        #expect(handled.withLock { $0 } == ["ab", "ab", "ab", "ab"])
        #expect(try await work.receive(max: 10).allSatisfy { $0.message.headers["seen-by"] == "ab" })
        let entries = log.withLock { $0 }
        #expect(
            entries.filter { $0.hasPrefix("publish") } == [
                "publish a t 1", "publish b t 1", "publish a t 2", "publish b t 2", "publish a t 1", "publish b t 1",
            ])
        let first = entries.filter { $0.hasSuffix("#1") || $0.contains("#1 ") }
        #expect(first == ["before a #1 attempt 1", "before b #1 attempt 1", "handle #1", "after b #1", "after a #1"])
    }

    @Test func anInterceptorThatThrows_failsTheHandling_andTheMessageIsRetried() async throws {
        let queue = MessageQueue(
            configuration: .init(metricsInterval: nil, interceptors: [FailFirst()]), clock: ManualClock())
        let topic = try await queue.createTopic(
            "t", of: Int.self, configuration: .init(retryBackoff: .immediate))
        let attempts = LockedValueBox<[Int]>([])
        let consumer = try await topic.consume(subscription: "w") { message in
            attempts.withLock { $0.append(message.payload) }
        }
        try await topic.publish(7)
        try await eventually("the retry to be handled") { attempts.withLock { $0 } == [7] }
        await consumer.stop()
        let counters = try #require(topic.statistics().subscription("w")?.counters)
        #expect(counters.nacked == 1 && counters.acked == 1 && counters.redelivered == 1)
    }
}
