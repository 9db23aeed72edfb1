import InMemoryTracing
import OpenQ
import OpenQTesting
import OpenQTracing
import Testing
import Tracing

@Suite("OpenQTracing: a producer span per publish, a linked consumer span per handled message")
struct TracingInterceptorTests {
    @Test func theConsumerSpan_linksToTheProducerSpan_throughTheHeaders() async throws {
        let tracer = InMemoryTracer()
        let queue = MessageQueue(
            configuration: .init(metricsInterval: nil, interceptors: [TracingInterceptor(tracer: tracer)]),
            clock: ManualClock())
        let topic = try await queue.createTopic("orders", of: Int.self)
        let pulled = try await topic.subscription("pull", acknowledgement: .automatic)
        let consumer = try await topic.consume(subscription: "billing") { _ in }
        let request = tracer.startSpan("request", context: .topLevel, ofKind: .server)
        try await InstrumentationContext.$current.withValue(request.context) {
            _ = try await topic.publish(42)
        }
        request.end()
        try await eventually { tracer.finishedSpans.contains { $0.operationName == "orders process" } }
        await consumer.stop()

        let spans = tracer.finishedSpans
        let publish = try #require(spans.first { $0.operationName == "orders publish" })
        let process = try #require(spans.first { $0.operationName == "orders process" })
        #expect(publish.kind == .producer && process.kind == .consumer)
        #expect(publish.traceID == request.spanContext.traceID, "the producer span continues the request's trace")
        #expect(publish.parentSpanID == request.spanContext.spanID)
        #expect(process.links.count == 1)
        let linked = try #require(process.links.first?.context.inMemorySpanContext)
        #expect(linked.spanID == publish.spanID && linked.traceID == publish.traceID)
        #expect(process.attributes["messaging.consumer.group.name"]?.toSpanAttribute() == "billing")
        #expect(process.attributes["openq.attempt"]?.toSpanAttribute() == 1)

        // The context travels in the message's headers, under the tracer's own keys.
        let message = try #require(try await pulled.receive().first).message
        #expect(message.headers[InMemoryTracer.spanIDKey] == publish.spanID)
        _ = await queue.shutdown(gracePeriod: .zero)
    }

    @Test func aFailedHandling_isRecordedOnTheConsumerSpan() async throws {
        struct Declined: Error {}
        let tracer = InMemoryTracer()
        let queue = MessageQueue(
            configuration: .init(metricsInterval: nil, interceptors: [TracingInterceptor(tracer: tracer)]),
            clock: ManualClock())
        let topic = try await queue.createTopic(
            "orders", of: Int.self, configuration: .init(deadLetter: .after(deliveries: 1)))
        let consumer = try await topic.consume(subscription: "billing") { _ in throw Declined() }
        try await topic.publish(1)
        try await eventually { tracer.finishedSpans.contains { $0.operationName == "orders process" } }
        await consumer.stop()
        let process = try #require(tracer.finishedSpans.first { $0.operationName == "orders process" })
        #expect(process.status?.code == .error)
        #expect(process.errors.count == 1)
        _ = await queue.shutdown(gracePeriod: .zero)
    }
}
