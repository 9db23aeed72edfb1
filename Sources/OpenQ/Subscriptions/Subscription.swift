// The public Subscription shell: receive, deliveries, batch acks, purge, seek, statistics; it forwards.

/// A named cursor on one topic: it receives every message published to the topic (fan-out),
/// and its consumers compete for those messages (work queue).
///
/// ```swift
/// let billing = try await orders.subscription("billing", acknowledgement: .manual(visibilityTimeout: .seconds(30)))
/// Task {
///     for await delivery in try billing.deliveries() {
///         try await charge(delivery.message.payload)
///         try await delivery.ack()
///     }
/// }
/// let batch = try await billing.receive(max: 10, waitingUpTo: .seconds(5))   // long polling pull
/// ```
public struct Subscription<Payload: Sendable>: Sendable {
    @usableFromInline
    let handle: SubscriptionHandle

    /// The subscription's name.
    public let name: String

    init(handle: SubscriptionHandle, name: String) {
        self.handle = handle
        self.name = name
    }

    /// The name of the topic.
    public var topic: String { handle.runtime.name }

    /// The subscription's configuration, or `nil` once it was removed.
    public var configuration: SubscriptionConfiguration? {
        handle.runtime.subscription(handle.id)?.configuration
    }

    /// The deliveries of this subscription as an `AsyncSequence`; each iterator is one consumer.
    /// - Parameter prefetch: deliveries taken per wake-up (all in flight, so their visibility
    ///   timeout runs while they wait in the consumer). At least 1. Default 16.
    /// - Throws: ``OpenQError/Code/invalidConfiguration`` for a prefetch below 1.
    public func deliveries(prefetch: Int = 16) throws(OpenQError) -> DeliverySequence<Payload> {
        try validatePrefetch(prefetch)
        return DeliverySequence(handle: handle, name: name, prefetch: prefetch)
    }

    /// Pulls up to `max` deliveries, waiting up to `waitingUpTo` for the first one to arrive
    /// (long polling); returns an empty array when none arrived in time.
    /// - Parameters:
    ///   - max: the most deliveries to return, at least 1. Default 10.
    ///   - timeout: how long to wait for the first delivery. Default: not at all.
    ///   - visibilityTimeout: the visibility timeout of these deliveries instead of the
    ///     subscription's (SQS's `VisibilityTimeout` on `ReceiveMessage`); positive. Default `nil`:
    ///     the subscription's. Ignored in automatic mode.
    /// - Throws: ``OpenQError/Code/subscriptionNotFound`` when the subscription was removed,
    ///   ``OpenQError/Code/shutDown`` after shutdown, `CancellationError` when cancelled,
    ///   ``OpenQError/Code/invalidConfiguration`` for a `max` below 1, a negative wait or a
    ///   visibility timeout that is not positive. On a durable topic, while its store cannot commit
    ///   (``OpenQError/Code/storeFull``, ``OpenQError/Code/storeReadOnly``, ...), the call is refused
    ///   at once with that code; when the commit of the attempt counts fails, it throws the fault's
    ///   code and the messages come back after their visibility timeout (see
    ///   ``OpenQError/Code/storageFailed``).
    @inlinable
    public nonisolated(nonsending) func receive(
        max: Int = 10,
        waitingUpTo timeout: Duration = .zero,
        visibilityTimeout: Duration? = nil
    ) async throws -> [Delivery<Payload>] {
        let name = self.name
        let handle = self.handle
        let handed =
            handle.runtime.isDurable
            ? try await handle.receiveCommitted(
                max: max, waitingUpTo: timeout, visibilityTimeout: visibilityTimeout, subscription: name)
            : try await handle.receive(
                max: max, waitingUpTo: timeout, visibilityTimeout: visibilityTimeout, subscription: name)
        return handed.map { Delivery($0, handle: handle, subscription: name) }
    }

    /// Changes the subscription's visibility timeout (SQS's `SetQueueAttributes`
    /// `VisibilityTimeout`): deliveries made from now on get it; deliveries in flight keep theirs.
    /// On a durable topic the change is committed before the call returns, and a restart brings
    /// the subscription back with it (declare it with the new configuration, or look it up with
    /// ``Topic/existingSubscription(_:)``).
    /// - Throws: ``OpenQError/Code/invalidConfiguration`` for a timeout that is not positive or an
    ///   automatic subscription (it has no visibility timeout); ``OpenQError/Code/subscriptionNotFound``
    ///   once the subscription was removed.
    public nonisolated(nonsending) func setVisibilityTimeout(_ timeout: Duration) async throws {
        try await handle.runtime.setVisibilityTimeout(handle.id, timeout)
    }

    /// Acknowledges several deliveries of this subscription at once, under one lock acquisition
    /// (like SQS's `DeleteMessageBatch`). Each delivery is settled on its own: one that expired or
    /// was settled already does not keep the others from being acknowledged.
    ///
    /// ```swift
    /// let batch = try await jobs.receive(max: 100, waitingUpTo: .seconds(1))
    /// for delivery in batch { process(delivery.message.payload) }
    /// let failures = await jobs.ack(batch)
    /// ```
    /// - Returns: the deliveries that were not acknowledged, each with the reason
    ///   (``OpenQError/Code/receiptExpired``, ``OpenQError/Code/receiptAlreadySettled``,
    ///   ``OpenQError/Code/shutDown``, ...), in the order given; empty when all were. A failed
    ///   acknowledgement loses nothing: an expired delivery's message is delivered again, a settled
    ///   one stays settled. A delivery of another subscription is returned with
    ///   ``OpenQError/Code/invalidConfiguration`` and left alone.
    @inlinable
    @discardableResult
    public nonisolated(nonsending) func ack(
        _ deliveries: some Collection<Delivery<Payload>>
    ) async -> [(delivery: Delivery<Payload>, error: OpenQError)] {
        let runtime = handle.runtime
        let id = handle.id
        let isOwn = { (delivery: Delivery<Payload>) in delivery.runtime === runtime && delivery.subscriptionID == id }
        var tags: [UInt64] = []
        tags.reserveCapacity(deliveries.count)
        for delivery in deliveries where isOwn(delivery) { tags.append(delivery.tag) }
        var results: [OpenQError?] = []
        if !tags.isEmpty {
            switch await runtime.ack(id, tags: tags) {
            case .success(let each): results = each
            // Not committed: none of them counts as acknowledged to the caller.
            case .failure(let error): return deliveries.map { ($0, error) }
            }
        }
        if tags.count == deliveries.count, !results.contains(where: { $0 != nil }) { return [] }
        // Report in the caller's order.
        var failures: [(delivery: Delivery<Payload>, error: OpenQError)] = []
        var index = 0
        for delivery in deliveries {
            if isOwn(delivery) {
                if let error = results[index] { failures.append((delivery, error)) }
                index += 1
            } else {
                let error = OpenQError.deliveryOfAnotherSubscription(
                    delivery.subscription, topic: delivery.runtime, expected: name, expectedTopic: runtime)
                failures.append((delivery, error))
            }
        }
        return failures
    }

    /// Removes every message waiting, delayed or in flight in this subscription.
    /// - Returns: how many messages were removed.
    @discardableResult
    public nonisolated(nonsending) func purge() async throws -> Int {
        try await handle.runtime.purge(handle.id)
    }

    /// Moves the subscription to another position in the topic's retained messages: messages
    /// waiting now are purged, then the retained messages from `position` on are enqueued.
    /// Deliveries in flight are not touched.
    /// - Returns: how many retained messages were enqueued.
    @discardableResult
    public nonisolated(nonsending) func seek(to position: StartPosition) async throws -> Int {
        try await handle.runtime.seek(handle.id, to: position)
    }

    /// Waits until the subscription holds nothing: no message waiting, delayed or in flight (for
    /// example, until a work queue's consumers have acknowledged everything published so far).
    /// Returns at once when it is drained already. Bound the wait yourself if you need to (it is
    /// cancellable).
    ///
    /// ```swift
    /// try await orders.publish(contentsOf: jobs)
    /// try await workers.waitUntilDrained()
    /// ```
    /// - Throws: ``OpenQError/Code/subscriptionNotFound`` when the subscription is removed,
    ///   ``OpenQError/Code/shutDown`` when the broker shuts down before it drained,
    ///   `CancellationError` when the task is cancelled.
    public nonisolated(nonsending) func waitUntilDrained() async throws {
        try await handle.runtime.waitUntilDrained(handle.id)
    }

    /// A snapshot of this subscription's statistics.
    /// - Throws: ``OpenQError/Code/subscriptionNotFound`` once it was removed.
    public func statistics() throws -> SubscriptionStatistics {
        guard let statistics = handle.runtime.statistics().subscription(name) else {
            throw OpenQError.subscriptionNotFound(name, topic: topic)
        }
        return statistics
    }

    /// Removes the subscription, as ``Topic/unsubscribe(_:)``: its waiting messages are purged
    /// (counted) and its consumers' sequences end. Deleting it again does nothing.
    public nonisolated(nonsending) func delete() async {
        try? await handle.runtime.unsubscribe(handle.id)
    }
}
