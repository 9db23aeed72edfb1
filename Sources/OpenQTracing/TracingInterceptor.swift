// The OpenQTracing product: a producer span per publish, a consumer span per handled message.

import OpenQ
import Tracing

/// Traces messages from publish to handling with swift-distributed-tracing: a producer span per
/// publish call, whose context travels in the messages' headers through the `Instrument` API (with
/// a W3C Trace Context propagator, such as swift-otel's, as the `traceparent` header), and a
/// consumer span for each message a `Consumer` handles, linked to the producer span.
///
/// Install it on the broker; the tracer is the one the application bootstrapped (or the task's,
/// with `withTracer`) unless you pass one.
///
/// ```swift
/// import OpenQ
/// import OpenQTracing
///
/// let queue = MessageQueue(configuration: .init(interceptors: [TracingInterceptor()]))
/// ```
///
/// Spans are named `"<topic> publish"` (kind `.producer`) and `"<topic> process"` (kind
/// `.consumer`), with OpenTelemetry's messaging attributes: `messaging.system` (`openq`),
/// `messaging.destination.name`, `messaging.operation.type`, `messaging.message.id`,
/// `messaging.consumer.group.name` (the subscription), `messaging.batch.message_count` and
/// `openq.attempt`. The consumer span is a child of the handling task's current context (none, in a
/// consumer run by the broker) and links to the producer span, as OpenTelemetry's messaging
/// conventions recommend for asynchronous hand-offs.
public struct TracingInterceptor: MessageInterceptor {
    private let tracer: (any Tracer)?

    /// Traces with the process's tracer (`InstrumentationSystem.tracer`, or the task's tracer set
    /// with `withTracer`), looked up at each publish and handling.
    public init() {
        self.tracer = nil
    }

    /// Traces with `tracer`.
    public init(tracer: any Tracer) {
        self.tracer = tracer
    }

    private var currentTracer: any Tracer { tracer ?? InstrumentationSystem.tracer }

    /// Starts and ends a producer span for the publish call, and injects its context into the
    /// messages' headers.
    public func willPublish(_ publish: inout PublishContext) {
        let tracer = currentTracer
        let span = tracer.startSpan(
            "\(publish.topic) publish", context: InstrumentationContext.current ?? .topLevel, ofKind: .producer)
        span.attributes["messaging.system"] = "openq"
        span.attributes["messaging.destination.name"] = publish.topic
        span.attributes["messaging.operation.type"] = "send"
        span.attributes["messaging.batch.message_count"] = publish.count
        tracer.inject(span.context, into: &publish.headers, using: HeadersInjector())
        span.end()
    }

    /// Runs the handling inside a consumer span linked to the producer span found in the headers.
    public func intercept(_ handling: HandlingContext, next: () async throws -> Void) async throws {
        let tracer = currentTracer
        var producer = InstrumentationContext.topLevel
        tracer.extract(handling.headers, into: &producer, using: HeadersExtractor())
        let span = tracer.startSpan(
            "\(handling.topic) process", context: InstrumentationContext.current ?? .topLevel, ofKind: .consumer)
        defer { span.end() }
        if !producer.isEmpty { span.addLink(SpanLink(context: producer, attributes: [:])) }
        span.attributes["messaging.system"] = "openq"
        span.attributes["messaging.destination.name"] = handling.topic
        span.attributes["messaging.operation.type"] = "process"
        span.attributes["messaging.message.id"] = handling.messageID.description
        span.attributes["messaging.consumer.group.name"] = handling.subscription
        span.attributes["openq.attempt"] = handling.attempt
        do {
            try await InstrumentationContext.$current.withValue(span.context) { try await next() }
        } catch {
            span.recordError(error)
            span.setStatus(SpanStatus(code: .error))
            throw error
        }
    }
}

/// Writes trace context into message headers.
struct HeadersInjector: Injector {
    func inject(_ value: String, forKey key: String, into carrier: inout [String: String]) {
        carrier[key] = value
    }
}

/// Reads trace context from message headers.
struct HeadersExtractor: Extractor {
    func extract(key: String, from carrier: [String: String]) -> String? {
        carrier[key]
    }
}
