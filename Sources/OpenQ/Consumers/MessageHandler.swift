// The handler protocols a Consumer runs: MessageHandler, DeliveryHandler, ClosureHandler.

/// Handles the messages of one subscription, for a ``Consumer``.
///
/// ```swift
/// struct Billing: MessageHandler {
///     func handle(_ message: Message<OrderPlaced>) async throws {
///         try await charge(message.payload)   // a throw is a nack: the message is retried
///     }
/// }
/// let consumer = try await orders.consume(subscription: "billing", with: Billing(), concurrency: 4)
/// ```
public protocol MessageHandler<Payload>: Sendable {
    /// The payload type of the topic the handler reads.
    associatedtype Payload: Sendable

    /// Handles one message. Returning acknowledges it (in ``AcknowledgementMode/afterHandling``
    /// mode); throwing negatively acknowledges it, so it is retried after the topic's backoff and
    /// dead-lettered after `maxDeliveries` attempts.
    func handle(_ message: Message<Payload>) async throws
}

/// Handles the deliveries of one subscription, for a ``Consumer``: a ``MessageHandler`` that
/// also sees each delivery's context, its ``Delivery/attempt``, and can settle it or extend its
/// lease itself.
///
/// ```swift
/// struct Billing: DeliveryHandler {
///     func handle(_ delivery: Delivery<OrderPlaced>) async throws {
///         guard delivery.message.payload.id > 0 else {
///             try await delivery.reject(reason: "no such order")  // poison: dead-letter it now
///             return
///         }
///         if delivery.attempt > 1 { print("retry", delivery.attempt) }
///         try await delivery.extendVisibility(by: .seconds(120))  // long work ahead
///         try await charge(delivery.message.payload)
///     }
/// }
/// let consumer = try await orders.consume(subscription: "billing", with: Billing())
/// ```
///
/// As with a ``MessageHandler``, returning acknowledges the delivery and throwing negatively
/// acknowledges it, unless the handler settled it itself (``Delivery/ack()``,
/// ``Delivery/nack(retryAfter:error:)``, ``Delivery/reject(reason:)``): then the consumer leaves
/// it as the handler settled it.
public protocol DeliveryHandler<Payload>: Sendable {
    /// The payload type of the topic the handler reads.
    associatedtype Payload: Sendable

    /// Handles one delivery. Returning acknowledges it (unless the handler settled it); throwing
    /// negatively acknowledges it, so it is retried after the topic's backoff and dead-lettered
    /// after `maxDeliveries` attempts.
    func handle(_ delivery: Delivery<Payload>) async throws
}

/// A ``MessageHandler`` made from a closure.
public struct ClosureHandler<Payload: Sendable>: MessageHandler {
    private let body: @Sendable (Message<Payload>) async throws -> Void

    /// Wraps `body`.
    public init(_ body: @escaping @Sendable (Message<Payload>) async throws -> Void) {
        self.body = body
    }

    /// Calls the closure.
    public func handle(_ message: Message<Payload>) async throws {
        try await body(message)
    }
}
