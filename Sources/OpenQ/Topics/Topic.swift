// The public Topic shell: publishing, subscribing, purging; it forwards to the topic's runtime.

/// A named, typed, bounded stream of messages with a set of subscriptions.
///
/// Get one from ``MessageQueue/createTopic(_:of:configuration:)-3a1sr`` or
/// ``MessageQueue/topic(_:of:)``. A `Topic` is a cheap handle: copy it freely, across tasks too.
/// Publishing and consuming never go through the broker actor.
///
/// ```swift
/// let orders = try await queue.createTopic("orders", of: OrderPlaced.self)
/// let stream = try await orders.subscribe()                 // fan-out, automatic ack
/// let receipt = try await orders.publish(OrderPlaced(id: 1), headers: ["source": "api"])
/// for await message in stream { print(message.payload, receipt.sequenceNumber); break }
/// ```
public struct Topic<Payload: Sendable>: Sendable {
    @usableFromInline
    let runtime: TopicRuntime

    init(runtime: TopicRuntime) {
        self.runtime = runtime
    }

    /// The topic's name.
    public var name: String { runtime.name }
    /// The topic's configuration: the one it was created with, with the dead-letter policy it has
    /// now (``MessageQueue/setDeadLetterPolicy(_:of:)`` changes it).
    public var configuration: TopicConfiguration { runtime.configuration }
    /// The name of the dead-letter topic, or `nil` when dead-lettering is disabled.
    public var deadLetterTopicName: String? { runtime.deadLetterTopicName }

    // MARK: Publishing

    /// Publishes a message to every subscription of this topic.
    ///
    /// When a subscription is full, its ``OverflowPolicy`` decides: `suspend` waits here until
    /// there is room (backpressure), `reject` throws, the drop policies drop and count.
    ///
    /// On a durable topic the call returns once the message is committed to the store; publishes
    /// made at the same time share one commit.
    /// - Parameters:
    ///   - payload: the message's payload.
    ///   - headers: string headers delivered with the message.
    ///   - priority: higher priorities are delivered first within a subscription. Default 0.
    ///   - delay: the message becomes visible only after this delay. Default none.
    /// - Returns: the message's id and sequence number, and what full subscriptions dropped.
    /// - Throws: ``OpenQError/Code/topicFull`` under `reject`; ``OpenQError/Code/shutDown`` after
    ///   shutdown or deletion; ``OpenQError/Code/invalidConfiguration`` for a negative delay;
    ///   `CancellationError` when the task is cancelled while waiting for room (the message is
    ///   then not published); ``OpenQError/Code/encodingFailed`` on a durable topic when the
    ///   payload cannot be encoded (nothing is published); ``OpenQError/Code/storeFull``,
    ///   ``OpenQError/Code/storeReadOnly``, ``OpenQError/Code/storeCorrupted`` or
    ///   ``OpenQError/Code/storageFailed`` when the store cannot commit (refused before anything
    ///   changes while the store is known to be faulty; in doubt when this call's own commit
    ///   failed, see ``OpenQError/Code/storageFailed``).
    @inlinable
    @discardableResult
    public nonisolated(nonsending) func publish(
        _ payload: Payload,
        headers: [String: String] = [:],
        priority: Int = 0,
        delay: Duration = .zero
    ) async throws -> PublishReceipt {
        try validateDelay(delay)
        let headers = runtime.publishHeaders(headers, priority: priority, count: 1)
        return try await runtime.publish(
            PublishRequest(TypedRecord(payload: payload, headers: headers, priority: priority), delay: delay))
    }

    /// Publishes several messages at once, in order, with one lock hand-over.
    ///
    /// The messages are stored together: one allocation for the batch, consecutive ids and
    /// sequence numbers, one `publishedAt`. Publishing in batches is the fastest way in. The
    /// batch's storage is freed when its last message is done everywhere: one message of it that a
    /// subscription still holds, or that your code keeps, keeps the whole batch's payloads alive.
    ///
    /// The batch is atomic with respect to `suspend` and `reject`: it is enqueued whole once there
    /// is room for all of it, or rejected whole. A batch larger than a suspending subscription's
    /// capacity can never fit and throws ``OpenQError/Code/invalidConfiguration`` at once, even
    /// when other publishers are waiting for room.
    /// - Parameters:
    ///   - payloads: the messages' payloads, in order.
    ///   - headers: string headers delivered with every message of the batch.
    ///   - priority: the priority of every message of the batch. Default 0.
    ///   - delay: every message of the batch becomes visible only after this delay. Default none.
    /// - Returns: the first id and sequence number (the rest follow consecutively) and what full
    ///   subscriptions dropped. An empty sequence publishes nothing and returns a receipt of
    ///   `count` 0.
    @inlinable
    @discardableResult
    public nonisolated(nonsending) func publish(
        contentsOf payloads: some Sequence<Payload>,
        headers: [String: String] = [:],
        priority: Int = 0,
        delay: Duration = .zero
    ) async throws -> PublishReceipt {
        try validateDelay(delay)
        let payloads = Array(payloads)
        guard !payloads.isEmpty else { return runtime.emptyReceipt() }
        let headers = runtime.publishHeaders(headers, priority: priority, count: payloads.count)
        return try await runtime.publish(
            PublishRequest(TypedRecord(payloads: payloads, headers: headers, priority: priority), delay: delay))
    }

    /// Publishes without ever waiting, and says what happened.
    ///
    /// Under `suspend` a full topic makes this return ``PublishResult/rejected`` instead of waiting.
    /// An accepted message's result carries its ``PublishReceipt``, which says whether a
    /// `dropOldest` subscription dropped an older message to make room.
    ///
    /// On a durable topic it returns ``PublishResult/failed(_:)`` with
    /// ``OpenQError/Code/unsupportedOperation`` and publishes nothing: a durable publish returns
    /// only once the message is committed, which means waiting. Use ``publish(_:headers:priority:delay:)``.
    @inlinable
    public func tryPublish(_ payload: Payload, headers: [String: String] = [:], priority: Int = 0) -> PublishResult {
        let headers = runtime.publishHeaders(headers, priority: priority, count: 1)
        return runtime.tryPublish(PublishRequest(TypedRecord(payload: payload, headers: headers, priority: priority)))
    }

    // MARK: Subscribing

    /// Subscribes a new anonymous subscription with automatic acknowledgement (at most once) and
    /// returns its messages as an `AsyncSequence`.
    ///
    /// The subscription exists from the moment this returns, so nothing published after it is
    /// missed. It is removed when its iteration ends (the loop stops, its task is cancelled, or the
    /// broker shuts down), or when the stream is released without being iterated. Until it is
    /// iterated it holds its messages like any subscription: under `suspend`, a full one makes
    /// publishers wait. Iterating the stream again subscribes afresh (see ``MessageStream``).
    /// Iterate it from one task at a time.
    /// - Parameters:
    ///   - start: where to start; positions other than `latest` replay retained messages.
    ///   - backlog: a bound of its own, so a slow reader does not hold back others.
    ///   - prefetch: messages taken per wake-up. At least 1. Default 256.
    /// - Throws: ``OpenQError/Code/invalidConfiguration`` for a prefetch below 1 or a bad
    ///   backlog; ``OpenQError/Code/shutDown`` after shutdown or deletion;
    ///   ``OpenQError/Code/unsupportedOperation`` for a position other than `latest` on a durable
    ///   topic (its history is in the store: replay it with a named subscription,
    ///   ``subscription(_:acknowledgement:startingAt:backlog:)``).
    public nonisolated(nonsending) func subscribe(
        startingAt start: StartPosition = .latest,
        backlog: BacklogLimit? = nil,
        prefetch: Int = 256
    ) async throws -> MessageStream<Payload> {
        try validatePrefetch(prefetch)
        if runtime.shared != nil {
            throw runtime.unsupportedOnShared(
                "A stream (subscribe())",
                "a stream's subscription would outlive a process that dies; use a named subscription")
        }
        if runtime.isDurable, start != .latest {
            throw OpenQError(
                .unsupportedOperation,
                "A stream of durable topic '\(name)' cannot replay its retained messages (they are in the store, and "
                    + "a stream is not journaled); create a named subscription with startingAt:, which reads them "
                    + "back in pages.")
        }
        let configuration = SubscriptionConfiguration(acknowledgement: .automatic, start: start, backlog: backlog)
        let handle = try SubscriptionHandle.anonymous(on: runtime, configuration: configuration)
        return MessageStream(source: StreamSource(handle, configuration: configuration), prefetch: prefetch)
    }

    /// Creates the named subscription, or returns it if it exists with the same configuration.
    ///
    /// Consumers of one subscription compete: each message goes to one of them (a work queue).
    /// Every subscription of a topic receives every message (fan-out).
    /// - Throws: ``OpenQError/Code/subscriptionAlreadyExists`` when it exists with another
    ///   configuration; ``OpenQError/Code/invalidName``; ``OpenQError/Code/invalidConfiguration``;
    ///   ``OpenQError/Code/shutDown`` after shutdown or deletion.
    public nonisolated(nonsending) func subscription(
        _ name: String,
        acknowledgement: AcknowledgementMode = .manual,
        startingAt start: StartPosition = .latest,
        backlog: BacklogLimit? = nil
    ) async throws -> Subscription<Payload> {
        try await subscription(
            name,
            configuration: SubscriptionConfiguration(acknowledgement: acknowledgement, start: start, backlog: backlog))
    }

    /// Creates the named subscription with a full configuration, or returns the existing one.
    /// - Throws: as ``subscription(_:acknowledgement:startingAt:backlog:)``.
    public nonisolated(nonsending) func subscription(
        _ name: String,
        configuration: SubscriptionConfiguration
    ) async throws -> Subscription<Payload> {
        try validateName(name, kind: "subscription")
        try configuration.validate()
        let id = try await runtime.subscribe(named: name, configuration: configuration)
        return Subscription(handle: SubscriptionHandle(runtime: runtime, id: id, removeWhenReleased: false), name: name)
    }

    /// Looks up an existing named subscription.
    /// - Throws: ``OpenQError/Code/subscriptionNotFound``.
    public func existingSubscription(_ name: String) throws -> Subscription<Payload> {
        guard let id = runtime.subscriptionID(named: name) else {
            throw OpenQError.subscriptionNotFound(name, topic: self.name)
        }
        return Subscription(handle: SubscriptionHandle(runtime: runtime, id: id, removeWhenReleased: false), name: name)
    }

    /// The names of the topic's subscriptions, anonymous ones included.
    public var subscriptionNames: [String] {
        runtime.subscriptionNames
    }

    /// Removes a named subscription: its waiting messages are purged (counted) and its consumers'
    /// sequences end. Deliveries in flight can no longer be settled.
    /// - Throws: ``OpenQError/Code/subscriptionNotFound``.
    public nonisolated(nonsending) func unsubscribe(_ name: String) async throws {
        try await runtime.unsubscribe(try existingSubscription(name).handle.id)
    }

    // MARK: Maintenance

    /// Removes every message waiting or in flight in every subscription, and the retained
    /// messages.
    /// - Returns: the number of message copies removed from subscriptions.
    @discardableResult
    public nonisolated(nonsending) func purge() async throws -> Int {
        try await runtime.purge(nil)
    }

    /// A snapshot of this topic's statistics.
    public func statistics() -> TopicStatistics {
        runtime.statistics()
    }
}

@usableFromInline
func validateDelay(_ delay: Duration) throws(OpenQError) {
    guard delay >= .zero else {
        throw .invalidConfiguration("A publish delay must not be negative; it was \(delay).")
    }
}

func validatePrefetch(_ prefetch: Int) throws(OpenQError) {
    guard prefetch >= 1 else {
        throw .invalidConfiguration("prefetch must be at least 1; it was \(prefetch).")
    }
}
