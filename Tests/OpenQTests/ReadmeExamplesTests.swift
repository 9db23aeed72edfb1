import Logging
import OpenQ  // not @testable: README examples may use public API only
import OpenQTesting
import OpenQTracing
import ServiceLifecycle
import Testing

// README.md's examples, kept verbatim, compiling and passing here (DocumentationTests checks that
// every swift block of README.md and of the DocC articles appears verbatim in a test). The types
// below are the ones the other examples of this target use.
struct OrderPlaced: Sendable {
    var id: Int
}

func charge<Order>(_ order: Order) async throws {}

struct AuditLog: MessageHandler {
    func handle(_ message: Message<OrderPlaced>) async throws {
        print("audit", message.sequenceNumber, message.payload.id)
    }
}

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

struct Fulfilment: DeliveryHandler {
    func handle(_ delivery: Delivery<OrderPlaced>) async throws {
        guard delivery.message.payload.id > 0 else {
            return try await delivery.reject(reason: "no such order")  // straight to orders.dlq
        }
        print("fulfil", delivery.message.payload.id, "attempt", delivery.attempt)
    }
}

@Suite("README examples")
struct ReadmeExamplesTests {
    /// README.md's quick start, verbatim: its types are local here (they shadow the file's own,
    /// which the other examples use).
    @Test func quickStart() async throws {

        struct OrderPlaced: Sendable { var id: Int }

        let queue = MessageQueue()
        let orders = try await queue.createTopic(
            "orders", of: OrderPlaced.self,
            configuration: .init(capacity: 10_000, overflow: .suspend, deadLetter: .after(deliveries: 5)))

        // Fan-out: every subscriber gets every message (automatic acknowledgement).
        let updates = try await orders.subscribe()
        Task { for await message in updates { print("update", message.payload.id) } }

        // The fastest way through a topic: read a subscriber's messages a batch at a time.
        let ledger = try await orders.subscribe(prefetch: 1_024)
        Task { for await batch in ledger.batches { print("ledger", batch.count, "up to", batch.last!.payload.id) } }

        // Work queue: consumers of "billing" compete; manual acks with a visibility timeout.
        let billing = try await orders.subscription(
            "billing", acknowledgement: .manual(visibilityTimeout: .seconds(30)))
        Task {
            for await delivery in try billing.deliveries() {
                do {
                    try await charge(delivery.message.payload)
                    try await delivery.ack()
                } catch {
                    try await delivery.nack(error: "\(error)")  // retried with backoff, then dead-lettered
                }
            }
        }

        // A MessageHandler run by a Consumer: ack after handling, nack when it throws.
        struct AuditLog: MessageHandler {
            func handle(_ message: Message<OrderPlaced>) async throws {
                print("audit", message.sequenceNumber, message.payload.id)
            }
        }
        let audit = try await orders.consume(subscription: "audit", with: AuditLog(), concurrency: 4)

        // A DeliveryHandler sees the delivery: its attempt, and reject / nack / extendVisibility.
        struct Fulfilment: DeliveryHandler {
            func handle(_ delivery: Delivery<OrderPlaced>) async throws {
                guard delivery.message.payload.id > 0 else {
                    return try await delivery.reject(reason: "no such order")  // straight to orders.dlq
                }
                print("fulfil", delivery.message.payload.id, "attempt", delivery.attempt)
            }
        }
        let fulfilment = try await orders.consume(subscription: "fulfilment", with: Fulfilment())

        // A subscription receives what is published after it exists.
        let reports = try await orders.subscription("reports")

        // publish returns a receipt: the message's id and sequence number, and what full subscriptions dropped.
        let receipt = try await orders.publish(OrderPlaced(id: 1), headers: ["source": "api"])
        print("published", receipt.messageID, "as", receipt.sequenceNumber)
        try await orders.publish(contentsOf: (2...10).map(OrderPlaced.init))

        // Long-polling pull, as SQS ReceiveMessage, and one acknowledgement for the whole batch.
        let batch = try await reports.receive(max: 10, waitingUpTo: .seconds(5))
        for delivery in batch { print("report", delivery.message.payload.id) }
        let failed = await reports.ack(batch)  // the deliveries it could not ack, with the reason
        print("not acknowledged:", failed.count)

        print(await queue.statistics())

        // Not in the README: the test waits for the event it checks (every consumer acked all ten)
        // instead of counting on the shutdown's grace period to be long enough on a loaded machine.
        for name in ["billing", "audit", "fulfilment"] {
            try await eventually("'\(name)' to ack all ten") {
                orders.statistics().subscription(name)?.counters.acked == 10
            }
        }
        try await eventually("both streams (updates, ledger) to be handed all ten") {
            let streams = orders.statistics().subscriptions.filter(\.isAnonymous)
            return streams.count == 2 && streams.allSatisfy { $0.counters.delivered == 10 }
        }

        let report = await queue.shutdown(gracePeriod: .seconds(5))
        print("unacknowledged:", report.unacknowledged)
        _ = await (audit.wait(), fulfilment.wait())
        #expect(receipt.sequenceNumber == 1)
        #expect(report.unacknowledged == 0 && report.undelivered == 0)
        #expect(report.statistics.topic("orders")?.published == 10)
        #expect(report.statistics.topic("orders")?.subscription("billing")?.counters.acked == 10)
        #expect(batch.count == 10 && failed.isEmpty)
        #expect(report.statistics.topic("orders")?.subscription("reports")?.counters.acked == 10)
        #expect(report.statistics.topic("orders")?.subscription("fulfilment")?.counters.acked == 10)
        #expect(report.statistics.topic("orders")?.subscription("audit")?.counters.acked == 10)
    }

    @Test func runningAsAService() async throws {
        let queue = MessageQueue()
        let orders = try await queue.createTopic("orders", of: OrderPlaced.self)
        let audit = try await orders.consumer(subscription: "audit", with: AuditLog(), concurrency: 4)
        let group = ServiceGroup(
            services: [queue, audit], gracefulShutdownSignals: [.sigterm, .sigint], logger: Logger(label: "app"))
        let running = Task { try await group.run() }  // SIGTERM: audit stops, then the broker drains and shuts down
        try await orders.publish(OrderPlaced(id: 1))
        await group.triggerGracefulShutdown()  // what SIGTERM does
        try await running.value
        await #expect(throws: OpenQError.self) { try await orders.publish(OrderPlaced(id: 2)) }
    }

    @Test func interceptors() async throws {
        let traced = MessageQueue(configuration: .init(interceptors: [Timing(), TracingInterceptor()]))
        let orders = try await traced.createTopic("orders", of: OrderPlaced.self)
        let reports = try await orders.subscription("reports", acknowledgement: .automatic)
        try await orders.publish(OrderPlaced(id: 1))
        #expect(try await reports.receive().first?.message.headers["published-by"] == "checkout")
        _ = await traced.shutdown(gracePeriod: .zero)
    }

    @Test func testingWithAManualClock() async throws {
        let clock = ManualClock()
        let queue = MessageQueue(clock: clock)
        let jobs = try await queue.createTopic("jobs", of: Int.self)
        let work = try await jobs.subscription("work", acknowledgement: .manual(visibilityTimeout: .seconds(30)))
        try await jobs.publish(1)
        _ = try await work.receive()  // taken, never acknowledged
        clock.advance(by: .seconds(30))  // the visibility timeout passes at once
        let again = try await work.receive(waitingUpTo: .seconds(1))
        #expect(again.first?.attempt == 2)
        _ = await queue.shutdown(gracePeriod: .zero)
    }

    @Test func errors() async throws {
        let queue = MessageQueue()
        let orders = try await queue.createTopic(
            "orders", of: OrderPlaced.self, configuration: .init(capacity: 1, overflow: .reject))
        _ = try await orders.subscription("billing")
        try await orders.publish(OrderPlaced(id: 1))
        do {
            try await orders.publish(OrderPlaced(id: 2))
            Issue.record("a full topic under reject accepted a message")
        } catch let error as OpenQError where error.code == .topicFull {
            print(error.message)  // says what happened and what to do
        }
        _ = await queue.shutdown(gracePeriod: .zero)
    }
}
