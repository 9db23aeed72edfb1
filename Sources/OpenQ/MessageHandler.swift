/// Handles the messages of one subscription, for a ``Consumer``.
///
/// ```swift
/// struct Billing: MessageHandler {
///     func handle(_ message: Message<OrderPlaced>) async throws {
///         try await charge(message.payload)   // a throw is a nack: the message is retried
///     }
/// }
/// let consumer = try orders.consume(subscription: "billing", with: Billing(), concurrency: 4)
/// ```
public protocol MessageHandler<Payload>: Sendable {
    /// The payload type of the topic the handler reads.
    associatedtype Payload: Sendable

    /// Handles one message. Returning acknowledges it (in ``AcknowledgementMode/afterHandling``
    /// mode); throwing negatively acknowledges it, so it is retried after the topic's backoff and
    /// dead-lettered after `maxDeliveries` attempts.
    func handle(_ message: Message<Payload>) async throws
}

/// A ``MessageHandler`` made from a closure.
public struct ClosureHandler<Payload: Sendable>: MessageHandler {
    private let body: @Sendable (Message<Payload>) async throws -> Void

    /// Wraps `body`.
    public init(_ body: @escaping @Sendable (Message<Payload>) async throws -> Void) {
        self.body = body
    }

    public func handle(_ message: Message<Payload>) async throws {
        try await body(message)
    }
}
