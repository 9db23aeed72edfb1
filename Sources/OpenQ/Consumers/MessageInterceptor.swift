// The interceptor seam around publishes and handled messages.

/// Code that runs around each publish and around each message a ``Consumer`` handles: middleware,
/// as Watermill's and gRPC's interceptors, for tracing, logging, metrics or tenancy.
///
/// Install interceptors on the broker (``MessageQueue/Configuration/interceptors``); every topic of
/// the broker runs them, the first one outermost. A broker without interceptors pays one
/// comparison per publish and per handled message.
///
/// ```swift
/// struct Tenant: MessageInterceptor {
///     func willPublish(_ publish: inout PublishContext) {
///         publish.headers["tenant"] = publish.headers["tenant"] ?? "default"
///     }
///
///     func intercept(_ handling: HandlingContext, next: () async throws -> Void) async throws {
///         let start = ContinuousClock.now
///         try await next()  // the handler (and the interceptors after this one)
///         print(handling.topic, handling.messageID, ContinuousClock.now - start)
///     }
/// }
/// let queue = MessageQueue(configuration: .init(interceptors: [Tenant()]))
/// ```
///
/// Interceptors see publishes through ``Topic``, ``Producer`` and `tryPublish`, and the handling of
/// messages by handlers run by a ``Consumer``; they do not see dead-lettering, redrive, or
/// messages read straight from a ``MessageStream``, a ``DeliverySequence`` or `receive`.
public protocol MessageInterceptor: Sendable {
    /// Called once per publish call, before its messages are stored: it may change the headers
    /// they will carry (every message of a batch carries the same headers). Runs on the
    /// publisher's task; keep it short and do not block.
    func willPublish(_ publish: inout PublishContext)

    /// Runs around one delivery's handling: call `next()` exactly once to run the handler (and
    /// the interceptors after this one). Throwing makes the delivery count as failed: it is
    /// negatively acknowledged, as when the handler throws.
    func intercept(_ handling: HandlingContext, next: () async throws -> Void) async throws
}

extension MessageInterceptor {
    /// Leaves the publish as it is.
    public func willPublish(_ publish: inout PublishContext) {}

    /// Runs the handler.
    public func intercept(_ handling: HandlingContext, next: () async throws -> Void) async throws {
        try await next()
    }
}

/// A publish call as an interceptor sees it, before its messages are stored.
public struct PublishContext: Sendable {
    /// The topic published to.
    public let topic: String
    /// The headers every message of the call will carry; an interceptor may change them.
    public var headers: [String: String]
    /// The messages' priority.
    public let priority: Int
    /// How many messages the call publishes.
    public let count: Int
}

/// One delivery about to be handled by a ``Consumer``, as an interceptor sees it.
public struct HandlingContext: Sendable {
    /// The topic of the message.
    public let topic: String
    /// The subscription the consumer reads.
    public let subscription: String
    /// The message's id.
    public let messageID: MessageID
    /// The message's sequence number in its topic.
    public let sequenceNumber: UInt64
    /// The message's headers (where a publish interceptor put, say, a trace context).
    public let headers: [String: String]
    /// Which delivery of the message this is: 1 for the first.
    public let attempt: Int
}

extension TopicRuntime {
    /// The headers a publish call's messages carry: as given when the broker has no interceptors
    /// (one comparison on the hot path), otherwise as the interceptors leave them.
    @inlinable
    func publishHeaders(_ headers: [String: String], priority: Int, count: Int) -> [String: String] {
        interceptors.isEmpty ? headers : interceptPublish(headers: headers, priority: priority, count: count)
    }

    /// Runs the publish interceptors over one publish call's headers.
    @usableFromInline
    func interceptPublish(headers: [String: String], priority: Int, count: Int) -> [String: String] {
        var context = PublishContext(topic: name, headers: headers, priority: priority, count: count)
        for interceptor in interceptors { interceptor.willPublish(&context) }
        return context.headers
    }

    /// Runs `handle` inside every interceptor, the first one outermost.
    func interceptHandling(_ context: HandlingContext, _ handle: () async throws -> Void) async throws {
        try await intercept(from: interceptors[...], context, handle)
    }

    private func intercept(
        from remaining: ArraySlice<any MessageInterceptor>,
        _ context: HandlingContext,
        _ handle: () async throws -> Void
    ) async throws {
        guard let first = remaining.first else { return try await handle() }
        try await first.intercept(context) {
            try await intercept(from: remaining.dropFirst(), context, handle)
        }
    }
}
