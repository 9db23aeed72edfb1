import Logging

/// A running consumer: reads one subscription and calls a ``MessageHandler`` for each message,
/// with up to `concurrency` handlers at a time.
///
/// In ``AcknowledgementMode/afterHandling`` mode (the default) a message is acknowledged when
/// `handle` returns and negatively acknowledged when it throws; while a handler runs, its
/// delivery's lease is extended every half visibility timeout, up to `maxLease` after delivery
/// (as Pub/Sub's lease management), so slow handlers are not redelivered behind their back.
///
/// ```swift
/// let consumer = try await orders.consume(subscription: "billing", with: Billing(), concurrency: 4)
/// // ...
/// await consumer.stop()
/// ```
///
/// A consumer runs until ``stop()``, until its subscription is removed or its topic deleted, or
/// until the broker shuts down; releasing the `Consumer` object does not stop it (a consumer kept
/// in a `let` that is never read again keeps running). Keep it to stop it earlier.
public final class Consumer<Payload: Sendable>: Sendable {
    /// What a consumer runs for each delivery.
    typealias Body = @Sendable (Delivery<Payload>) async throws -> Void

    /// The subscription this consumer reads (generated when it was created without a name).
    public let subscription: String
    private let task: Task<Void, Never>

    init(
        handle: SubscriptionHandle,
        subscription: String,
        body: @escaping Body,
        concurrency: Int,
        maxLease: Duration
    ) {
        self.subscription = subscription
        self.task = Task {
            await Self.run(
                handle: handle,
                subscription: subscription,
                body: body,
                concurrency: concurrency,
                maxLease: maxLease
            )
        }
    }

    /// Stops the consumer: it takes no new messages, running handlers are cancelled (they may
    /// still finish and be acknowledged), and this returns when all of them ended. An anonymous
    /// subscription is removed.
    public func stop() async {
        task.cancel()
        await task.value
    }

    /// Waits until the consumer ends by itself: its subscription was removed or the broker shut down.
    public func wait() async {
        await task.value
    }

    private static func run(
        handle: SubscriptionHandle,
        subscription: String,
        body: @escaping Body,
        concurrency: Int,
        maxLease: Duration
    ) async {
        let storage = handle.storage
        let id = handle.id
        guard let consumer = storage.state.withLock({ $0.registerConsumer(id) }) else { return }
        let mode = storage.state.withLock { $0.subscription(id)?.configuration.acknowledgement } ?? .automatic
        let leaseKeeper: Task<Void, Never>? =
            mode.tracksDeliveries
            ? Task {
                let period = mode.visibilityTimeout / 2
                while !Task.isCancelled {
                    do { try await storage.clock.sleep(until: storage.clock.now() + period) } catch { return }
                    storage.withState { state, now in
                        ((), state.extendLeases(id, consumer: consumer, maximum: maxLease, now: now))
                    }
                }
            } : nil
        await withTaskGroup(of: Void.self) { group in
            var running = 0
            while !Task.isCancelled {
                if running == concurrency {
                    await group.next()
                    running -= 1
                    continue
                }
                guard
                    case .messages(let batch) = await handle.wait(
                        consumer: consumer, max: concurrency - running, pollTimeout: nil)
                else { break }
                for handed in batch.all {
                    running += 1
                    let delivery = Delivery<Payload>(handed, handle: handle, subscription: subscription)
                    group.addTask { await Self.handle(delivery, with: body, logger: storage.logger) }
                }
            }
            await group.waitForAll()
        }
        leaseKeeper?.cancel()
        storage.withState { state, now in ((), state.consumerEnded(id, consumer: consumer, unhanded: [], now: now)) }
    }

    /// Runs the body for one delivery and settles it by how the body ended, unless the body
    /// settled it itself (then the consumer's settlement finds it settled and leaves it).
    private static func handle(_ delivery: Delivery<Payload>, with body: Body, logger: Logger) async {
        do {
            do {
                try await body(delivery)
            } catch is CancellationError {
                try await delivery.nack(retryAfter: .zero, error: "consumer stopped")
                return
            } catch {
                try await delivery.nack(error: String(describing: error))
                return
            }
            try await delivery.ack()
        } catch let error as OpenQError where error.code == .receiptAlreadySettled {
            return  // the handler settled it
        } catch {
            logger.debug(
                "Could not settle a delivery after handling",
                metadata: ["topic": "\(delivery.message.topic)", "error": "\(error)"]
            )
        }
    }
}

extension Topic {
    /// Starts a ``Consumer`` that runs `handler` for each message of a subscription.
    /// - Parameters:
    ///   - subscription: the named subscription to read (created if needed, with
    ///     `acknowledgement`); `nil` for a new anonymous subscription removed when the consumer stops.
    ///   - acknowledgement: the mode of a subscription this creates. Default ``AcknowledgementMode/afterHandling``.
    ///   - handler: the handler.
    ///   - concurrency: how many messages are handled at once, at least 1. Default 1.
    ///   - maxLease: how long after delivery a running handler's lease is still extended. Default 10 min.
    /// - Throws: ``OpenQError/Code/invalidConfiguration`` for a concurrency below 1 or a
    ///   non-positive `maxLease`; the errors of ``subscription(_:acknowledgement:startingAt:backlog:)``.
    public nonisolated(nonsending) func consume<Handler: MessageHandler<Payload>>(
        subscription: String? = nil,
        acknowledgement: AcknowledgementMode = .afterHandling,
        with handler: Handler,
        concurrency: Int = 1,
        maxLease: Duration = .seconds(600)
    ) async throws -> Consumer<Payload> {
        try await startConsumer(
            subscription: subscription, acknowledgement: acknowledgement, concurrency: concurrency, maxLease: maxLease
        ) { delivery in
            try await handler.handle(delivery.message)
        }
    }

    /// Starts a ``Consumer`` that runs a ``DeliveryHandler`` for each delivery of a subscription:
    /// the handler sees the attempt and can reject, nack or extend the delivery itself. The
    /// parameters are those of the ``MessageHandler`` form.
    public nonisolated(nonsending) func consume<Handler: DeliveryHandler<Payload>>(
        subscription: String? = nil,
        acknowledgement: AcknowledgementMode = .afterHandling,
        with handler: Handler,
        concurrency: Int = 1,
        maxLease: Duration = .seconds(600)
    ) async throws -> Consumer<Payload> {
        try await startConsumer(
            subscription: subscription, acknowledgement: acknowledgement, concurrency: concurrency, maxLease: maxLease
        ) { delivery in
            try await handler.handle(delivery)
        }
    }

    /// Starts a ``Consumer`` running a closure for each message; the parameters are those of the
    /// ``MessageHandler`` form (leases are extended up to 10 minutes).
    public nonisolated(nonsending) func consume(
        subscription: String? = nil,
        acknowledgement: AcknowledgementMode = .afterHandling,
        concurrency: Int = 1,
        _ body: @escaping @Sendable (Message<Payload>) async throws -> Void
    ) async throws -> Consumer<Payload> {
        try await startConsumer(
            subscription: subscription, acknowledgement: acknowledgement, concurrency: concurrency,
            maxLease: .seconds(600)
        ) { delivery in
            try await body(delivery.message)
        }
    }

    private nonisolated(nonsending) func startConsumer(
        subscription name: String?,
        acknowledgement: AcknowledgementMode,
        concurrency: Int,
        maxLease: Duration,
        body: @escaping Consumer<Payload>.Body
    ) async throws -> Consumer<Payload> {
        guard concurrency >= 1 else {
            throw OpenQError.invalidConfiguration("A consumer's concurrency must be at least 1; it was \(concurrency).")
        }
        guard maxLease > .zero else {
            throw OpenQError.invalidConfiguration("maxLease must be positive; it was \(maxLease).")
        }
        let handle: SubscriptionHandle
        let subscriptionName: String
        if let name {
            handle = try await subscription(name, acknowledgement: acknowledgement).handle
            subscriptionName = name
        } else {
            handle = try .anonymous(
                on: storage, configuration: SubscriptionConfiguration(acknowledgement: acknowledgement))
            subscriptionName = handle.name ?? ""
        }
        return Consumer(
            handle: handle,
            subscription: subscriptionName,
            body: body,
            concurrency: concurrency,
            maxLease: maxLease
        )
    }
}
