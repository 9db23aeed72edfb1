// The public Delivery shell: one attempt at a message, settled by ack, nack, release, reject or extend.

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// One attempt to hand a message to a consumer of a subscription.
///
/// Settle each delivery once: ``ack()`` when done, ``nack(retryAfter:error:)`` to try again later,
/// ``reject(reason:)`` to dead-letter it now. In automatic mode every delivery is done when handed
/// over and these calls do nothing.
///
/// ```swift
/// for await delivery in try billing.deliveries() {
///     do {
///         try await charge(delivery.message.payload)
///         try await delivery.ack()
///     } catch {
///         try await delivery.nack(error: "\(error)")
///     }
/// }
/// ```
public struct Delivery<Payload: Sendable>: Sendable {
    /// The message.
    public let message: Message<Payload>
    // The attempt sits in the tail of `message` and the first delivery time is a `Double` (NaN
    // for none): 64 bytes, as before the first delivery time existed (80 cost the nack row ~10 %).
    @usableFromInline let storedAttempt: UInt32
    /// The subscription the delivery belongs to.
    public let subscription: String
    @usableFromInline let firstDeliveredInterval: Double

    @usableFromInline let runtime: TopicRuntime
    @usableFromInline let subscriptionID: SubscriptionID
    @usableFromInline let tag: UInt64

    /// Which delivery of this message this is: 1 for the first, then one more per redelivery.
    @inlinable public var attempt: Int { Int(storedAttempt) }

    /// When the subscription first handed this message out (SQS's
    /// `ApproximateFirstReceiveTimestamp`): the time of this delivery for attempt 1, of the first
    /// one for a redelivery. `nil` in automatic mode, where each delivery is the only one.
    @inlinable public var firstDeliveredAt: Date? {
        firstDeliveredInterval.isNaN ? nil : Date(timeIntervalSinceReferenceDate: firstDeliveredInterval)
    }

    @inlinable
    init(_ handed: HandedMessage, handle: SubscriptionHandle, subscription: String) {
        self.message = Message(handed.stored)
        self.storedAttempt = handed.storedAttempt
        self.subscription = subscription
        self.firstDeliveredInterval = handed.firstDeliveredInterval
        self.runtime = handle.runtime
        self.subscriptionID = handle.id
        self.tag = handed.tag
    }

    /// Acknowledges the delivery: the message is done for this subscription.
    /// - Throws: ``OpenQError/Code/receiptExpired`` when the visibility timeout passed first (the
    ///   message may be with another consumer now, whose delivery is untouched);
    ///   ``OpenQError/Code/receiptAlreadySettled`` on a second settlement.
    @inlinable
    public nonisolated(nonsending) func ack() async throws {
        try await runtime.ack(subscriptionID, tag: tag)
    }

    /// Negatively acknowledges the delivery: the message becomes visible again after `retryAfter`,
    /// or after the topic's ``RetryBackoff`` when `nil`. Once it was delivered `maxDeliveries`
    /// times it moves to the dead-letter topic instead.
    /// - Parameters:
    ///   - retryAfter: the delay before redelivery; `nil` for the topic's backoff.
    ///   - error: a description kept for the dead-letter headers.
    @inlinable
    public nonisolated(nonsending) func nack(retryAfter: Duration? = nil, error: String? = nil) async throws {
        try await runtime.nack(subscriptionID, tag: tag, retryAfter: retryAfter, error: error)
    }

    /// Gives the message back at once, without a backoff and without an error (SQS's
    /// `ChangeMessageVisibility` to 0): it is visible again now, and its next delivery raises the
    /// attempt count. Counted as a nack; once the message used its `maxDeliveries` it is
    /// dead-lettered instead, as after any failed attempt.
    /// - Throws: as ``nack(retryAfter:error:)``.
    @inlinable
    public nonisolated(nonsending) func release() async throws {
        try await nack(retryAfter: .zero)
    }

    /// Sets the delivery's visibility timeout to `duration` from now, for work that takes longer
    /// than the subscription's timeout.
    @inlinable
    public nonisolated(nonsending) func extendVisibility(by duration: Duration) async throws {
        try await runtime.extend(subscriptionID, tag: tag, by: duration)
    }

    /// Sends the message straight to the dead-letter topic, with `reason` in its headers.
    @inlinable
    public nonisolated(nonsending) func reject(reason: String) async throws {
        try await runtime.reject(subscriptionID, tag: tag, reason: reason)
    }
}
