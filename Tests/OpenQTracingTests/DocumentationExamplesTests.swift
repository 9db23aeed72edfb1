import InMemoryTracing
import OpenQ  // not @testable: the documentation's examples may use public API only
import OpenQTracing
import Testing
import Tracing

/// The examples of the OpenQTracing DocC catalog (`Sources/OpenQTracing/OpenQTracing.docc`), kept
/// verbatim, compiling and passing here (DocumentationTests checks that every swift block of a
/// DocC article appears verbatim in a test).
@Suite("OpenQTracing documentation examples")
struct TracingDocumentationExamplesTests {
    @Test func theInterceptor_isInstalledOnTheBroker() async throws {
        let queue = MessageQueue(configuration: .init(interceptors: [TracingInterceptor()]))

        #expect(queue.configuration.interceptors.count == 1)
        #expect(queue.configuration.interceptors.contains { $0 is TracingInterceptor })
        _ = await queue.shutdown(gracePeriod: .zero)
    }

    @Test func anInMemoryTracer_recordsTheProducerSpan_andTheLinkedConsumerSpan() async throws {
        let tracer = InMemoryTracer()
        let queue = MessageQueue(configuration: .init(interceptors: [TracingInterceptor(tracer: tracer)]))
        let orders = try await queue.createTopic("orders", of: Int.self)
        let billing = try await orders.consume(subscription: "billing") { message in print("charge", message.payload) }
        try await orders.publish(42)  // the span "orders publish"; its context travels in the message's headers

        try await eventually { tracer.finishedSpans.contains { $0.operationName == "orders process" } }
        await billing.stop()
        let spans = tracer.finishedSpans
        let publish = try #require(spans.first { $0.operationName == "orders publish" })
        let process = try #require(spans.first { $0.operationName == "orders process" })
        #expect(publish.kind == .producer && process.kind == .consumer)
        let linked = try #require(process.links.first?.context.inMemorySpanContext)
        #expect(linked.spanID == publish.spanID && linked.traceID == publish.traceID)
        _ = await queue.shutdown(gracePeriod: .zero)
    }
}
