import Logging
import OpenQ  // not @testable: the articles show public API only
import OpenQTesting
import OpenQTracing
import ServiceLifecycle
import ServiceLifecycleTestKit
import Testing

// The examples of the OpenQ catalog's articles (Sources/OpenQ/OpenQ.docc), each verbatim in a test
// here, compiling and checked: DocumentationTests checks that every swift block of a DocC article
// appears verbatim in a test. The types they use (OrderPlaced, AuditLog) are ReadmeExamplesTests'.
@Suite("DocC article examples")
struct ArticleExamplesTests {
    /// The example of the catalog's landing page (OpenQ.md).
    @Test func theLandingPageExample() async throws {
        let queue = MessageQueue()
        let orders = try await queue.createTopic("orders", of: OrderPlaced.self)
        let billing = try await orders.subscription(
            "billing", acknowledgement: .manual(visibilityTimeout: .seconds(30)))
        Task {
            for await delivery in try billing.deliveries() {
                try await charge(delivery.message.payload)
                try await delivery.ack()
            }
        }
        try await orders.publish(OrderPlaced(id: 1), headers: ["source": "api"])

        try await eventually("billing to ack it") { try billing.statistics().counters.acked == 1 }
        _ = await queue.shutdown(gracePeriod: .zero)
    }

    /// ConfigurationAndDefaults.md: a receive's own visibility timeout, `release()`,
    /// `setVisibilityTimeout(_:)` and `firstDeliveredAt`.
    @Test func configuration_aReceivesOwnTimeout_release_andTheFirstDeliveryTime() async throws {
        let queue = MessageQueue()
        let jobs = try await queue.createTopic("jobs", of: Int.self)
        let work = try await jobs.subscription("work", acknowledgement: .manual(visibilityTimeout: .seconds(30)))
        try await jobs.publish(1)
        let taken = try await work.receive(visibilityTimeout: .seconds(300))  // this receive's own timeout
        for delivery in taken {
            try await delivery.release()  // visible again now: no backoff, but the attempt counts
        }
        try await work.setVisibilityTimeout(.seconds(60))  // for the deliveries made from now on
        let again = try await work.receive()
        print(again.map(\.attempt), again.map(\.firstDeliveredAt) == taken.map(\.firstDeliveredAt))  // [2] true

        #expect(taken.count == 1 && again.count == 1)
        #expect(again.first?.attempt == 2 && again.first?.message.id == taken.first?.message.id)
        #expect(again.first?.firstDeliveredAt != nil)
        #expect(again.first?.firstDeliveredAt == taken.first?.firstDeliveredAt)
        #expect(work.configuration?.acknowledgement.visibilityTimeout == .seconds(60))
        #expect(try work.statistics().counters.nacked == 1, "a release counts as a nack")
        _ = await queue.shutdown(gracePeriod: .zero)
    }

    /// Errors.md: matching on a code.
    @Test func errors_matchingOnACode() async throws {
        let queue = MessageQueue()
        let orders = try await queue.createTopic(
            "orders", of: OrderPlaced.self, configuration: .init(capacity: 1, overflow: .reject))
        _ = try await orders.subscription("billing")
        try await orders.publish(OrderPlaced(id: 1))
        let order = OrderPlaced(id: 2)

        do {
            try await orders.publish(order)
        } catch let error as OpenQError where error.code == .topicFull {
            // back off and try again later
        }

        #expect(orders.statistics().rejected == 1, "the second publish was refused with topicFull")
        #expect(orders.statistics().subscription("billing")?.depth == 1)
        _ = await queue.shutdown(gracePeriod: .zero)
    }

    /// Observability.md: a snapshot, taken once a subscription drained.
    @Test func observability_statistics() async throws {
        try await withTimeout("the statistics example") {
            let queue = MessageQueue()
            let orders = try await queue.createTopic("orders", of: OrderPlaced.self)
            let audit = try await orders.consume(subscription: "audit", with: AuditLog())
            try await orders.publish(contentsOf: (1...3).map(OrderPlaced.init))
            try await orders.existingSubscription("audit").waitUntilDrained()  // no polling
            let statistics = await queue.statistics()
            print(statistics.subscription("audit", of: "orders")?.counters.acked ?? 0)  // 3
            print(statistics)  // a table, one row per subscription

            #expect(statistics.subscription("audit", of: "orders")?.counters.acked == 3)
            #expect(statistics.topic("orders")?.published == 3)
            #expect(statistics.subscription("audit", of: "orders")?.isDrained == true)
            _ = await queue.shutdown(gracePeriod: .zero)
            await audit.wait()
        }
    }

    /// Observability.md: an interceptor around every publish and every handled message, beside
    /// OpenQTracing's. The type is local: it is the article's (and shadows ReadmeExamplesTests').
    @Test func observability_interceptors() async throws {
        struct Timing: MessageInterceptor {
            func willPublish(_ publish: inout PublishContext) {
                publish.headers["published-by"] = "checkout"
            }

            func intercept(_ handling: HandlingContext, next: () async throws -> Void) async throws {
                let start = ContinuousClock.now
                try await next()  // the handler, and the interceptors after this one
                print(handling.topic, handling.messageID, "attempt", handling.attempt, ContinuousClock.now - start)
            }
        }
        let traced = MessageQueue(configuration: .init(interceptors: [Timing(), TracingInterceptor()]))

        let orders = try await traced.createTopic("orders", of: OrderPlaced.self)
        let reports = try await orders.subscription("reports", acknowledgement: .automatic)
        try await orders.publish(OrderPlaced(id: 1), headers: ["source": "api"])
        let received = try await reports.receive()
        #expect(received.first?.message.headers["published-by"] == "checkout")
        #expect(received.first?.message.headers["source"] == "api")
        _ = await traced.shutdown(gracePeriod: .zero)
    }

    /// RunningAsAService.md: the broker and a consumer in a service group, whose graceful shutdown
    /// (what SIGTERM does) was triggered before it runs: the group starts its services, then shuts
    /// them down in reverse order, the consumer before the broker.
    @Test func runningAsAService_aGracefulShutdownStopsTheConsumer_thenTheBroker() async throws {
        try await afterAGracefulShutdown("the service group to end") {
            let queue = MessageQueue()
            let orders = try await queue.createTopic("orders", of: OrderPlaced.self)
            let audit = try await orders.consumer(subscription: "audit", with: AuditLog(), concurrency: 4)
            let group = ServiceGroup(
                services: [queue, audit], gracefulShutdownSignals: [.sigterm, .sigint], logger: Logger(label: "app"))
            try await group.run()  // SIGTERM: audit stops, then the broker drains and shuts down

            let error = await #expect(throws: OpenQError.self) { try await orders.publish(OrderPlaced(id: 1)) }
            #expect(error?.code == .shutDown)
            #expect(orders.statistics().subscription("audit")?.consumers == 0)
            await #expect(throws: OpenQError.self, "a consumer runs once") { try await audit.run() }
            _ = await queue.shutdown(gracePeriod: .zero)
        }
    }

    /// RunningAsAService.md: code that never calls `run()`; the broker runs the consumer itself.
    @Test func runningAsAService_withoutRun() async throws {
        let queue = MessageQueue()
        let orders = try await queue.createTopic("orders", of: OrderPlaced.self)
        let audit = try await orders.consume(subscription: "audit", with: AuditLog())  // runs now, in the broker
        try await orders.publish(OrderPlaced(id: 1))

        try await eventually("audit to acknowledge the message") {
            orders.statistics().subscription("audit")?.counters.acked == 1
        }
        let report = await queue.shutdown(gracePeriod: .zero)  // ends the broker's task, and audit with it
        try await withTimeout("the consumer to end with the broker") { await audit.wait() }
        #expect(report.unacknowledged == 0 && report.undelivered == 0)
        #expect(orders.statistics().subscription("audit")?.consumers == 0)
    }

    /// Testing.md: a visibility timeout passes at once on a manual clock.
    @Test func testing_aManualClock() async throws {
        try await withTimeout("the redelivery") {
            let clock = ManualClock()
            let queue = MessageQueue(clock: clock)
            let jobs = try await queue.createTopic("jobs", of: Int.self)
            let work = try await jobs.subscription("work", acknowledgement: .manual(visibilityTimeout: .seconds(30)))
            try await jobs.publish(1)
            _ = try await work.receive()  // taken, never acknowledged
            clock.advance(by: .seconds(30))  // the visibility timeout passes at once
            let again = try await work.receive(waitingUpTo: .seconds(1))  // the wait is on the manual clock too
            #expect(again.first?.attempt == 2)

            #expect(try work.statistics().counters.expired == 1)
            _ = await queue.shutdown(gracePeriod: .zero)
        }
    }
}

/// Runs `body` in a task whose graceful shutdown (what SIGTERM does to a service group) was
/// triggered already, failing instead of hanging when it does not end.
private func afterAGracefulShutdown(_ what: String, _ body: @escaping @Sendable () async throws -> Void) async throws {
    try await withTimeout(what) {
        try await testGracefulShutdown { trigger in
            trigger.triggerGracefulShutdown()
            try await body()
        }
    }
}
