// Consumer: a handler run with a concurrency limit, acked after handling, its leases extended.

import Logging
import ServiceLifecycle

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
public final class Consumer<Payload: Sendable>: Service, Sendable {
    /// What a consumer runs for each delivery.
    typealias Body = @Sendable (Delivery<Payload>) async throws -> Void

    /// The subscription this consumer reads (generated when it was created without a name).
    public let subscription: String
    private let handle: SubscriptionHandle
    private let body: Body
    private let concurrency: Int
    private let maxLease: Duration
    private let lifecycle = LockedValueBox(Lifecycle())

    /// Where a consumer is in its life.
    private struct Lifecycle {
        enum Phase {
            /// Made by `consumer(...)`, not run yet.
            case created
            case running
            case ended
        }

        var phase = Phase.created
        /// The consumer's registration with its subscription, made when it begins, so that a
        /// shutdown right after `consume(...)` returns already sees a consumer that can drain.
        var consumer: ConsumerID?
        var stopRequested = false
        /// The running consumer, waiting for a stop request.
        var stopWaiter: UnsafeContinuation<Void, Never>?
        /// Who waits for the consumer to end, by a waiter id (a cancelled wait leaves the list).
        var endWaiters: [(id: UInt64, continuation: UnsafeContinuation<Void, Never>)] = []
    }

    init(
        handle: SubscriptionHandle,
        subscription: String,
        body: @escaping Body,
        concurrency: Int,
        maxLease: Duration
    ) {
        self.handle = handle
        self.subscription = subscription
        self.body = body
        self.concurrency = concurrency
        self.maxLease = maxLease
    }

    /// Runs the consumer in the calling task, as a swift-service-lifecycle `Service`: it returns
    /// when the consumer stops (``stop()``, a graceful shutdown of its service group, or
    /// cancellation of this task) or ends by itself (its subscription was removed, its topic
    /// deleted, or the broker shut down). Stopping cancels the running handlers; a handler that
    /// ends with `CancellationError` has its delivery made visible again at once.
    ///
    /// Use it with a consumer made by `Topic.consumer(subscription:acknowledgement:with:concurrency:maxLease:)`;
    /// one from `consume(...)` runs already.
    /// - Throws: ``OpenQError/Code/invalidConfiguration`` when the consumer runs or ran already.
    public func run() async throws {
        guard begin() else {
            throw OpenQError.invalidConfiguration(
                "Consumer of '\(subscription)' runs or ran already; run a consumer once, or use consume(...) alone.")
        }
        await runStarted(stopsOnGracefulShutdown: true)
    }

    /// Starts the consumer as a child task of the broker's background loop (for `consume(...)`).
    func startInBroker() {
        guard begin() else { return }
        let started = handle.runtime.driver.startChild { [self] in await runStarted(stopsOnGracefulShutdown: false) }
        if !started { unregister() }
    }

    /// Ends a consumer that began but will not run (the broker shut down meanwhile).
    private func unregister() {
        let (id, runtime) = (handle.id, handle.runtime)
        if let consumer = lifecycle.withLock({ $0.consumer }) {
            runtime.consumerEnded(id, consumer: consumer, unhanded: [])
        }
        end()
    }

    /// Stops the consumer: it takes no new messages, running handlers are cancelled (they may
    /// still finish and be acknowledged), and this returns when all of them ended. An anonymous
    /// subscription is removed. A consumer that was never run is marked ended.
    public func stop() async {
        let (waiter, neverRan) = lifecycle.withLock { lifecycle -> (UnsafeContinuation<Void, Never>?, Bool) in
            lifecycle.stopRequested = true
            if case .created = lifecycle.phase {
                lifecycle.phase = .ended
                return (nil, true)
            }
            defer { lifecycle.stopWaiter = nil }
            return (lifecycle.stopWaiter, false)
        }
        waiter?.resume()
        if !neverRan { await wait() }
    }

    /// Waits until the consumer ended: it was stopped, its subscription was removed or the broker
    /// shut down. Returns early when the waiting task is cancelled (the consumer goes on).
    public func wait() async {
        let id = MessageID.allocate()
        await withTaskCancellationHandler {
            await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
                let now = lifecycle.withLock { lifecycle -> Bool in
                    if case .ended = lifecycle.phase { return true }
                    if Task.isCancelled { return true }
                    lifecycle.endWaiters.append((id, continuation))
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: { [lifecycle] in
            lifecycle.withLock { lifecycle -> UnsafeContinuation<Void, Never>? in
                guard let index = lifecycle.endWaiters.firstIndex(where: { $0.id == id }) else { return nil }
                return lifecycle.endWaiters.remove(at: index).continuation
            }?.resume()
        }
    }

    private func begin() -> Bool {
        let id = handle.id
        let runtime = handle.runtime
        return lifecycle.withLock { lifecycle in
            guard case .created = lifecycle.phase else { return false }
            lifecycle.phase = .running
            // Lock order: the consumer's lifecycle, then the topic's (nothing takes them the other way).
            lifecycle.consumer = runtime.registerConsumer(id)
            return true
        }
    }

    private func end() {
        let waiters = lifecycle.withLock { lifecycle -> [UnsafeContinuation<Void, Never>] in
            lifecycle.phase = .ended
            defer { lifecycle.endWaiters = [] }
            return lifecycle.endWaiters.map(\.continuation)
        }
        for waiter in waiters { waiter.resume() }
    }

    /// The consumer's life once it began: consume until a stop request (or cancellation) or until
    /// the subscription ends, whichever comes first. A consumer run as its own service also stops
    /// on a graceful shutdown; one the broker runs (`consume(...)`) goes on through the broker's
    /// grace period and ends when the broker finishes its topics.
    private func runStarted(stopsOnGracefulShutdown: Bool) async {
        if stopsOnGracefulShutdown {
            await withGracefulShutdownHandler {
                await consumeUntilStopped()
            } onGracefulShutdown: { [lifecycle] in
                let waiter = lifecycle.withLock { lifecycle -> UnsafeContinuation<Void, Never>? in
                    lifecycle.stopRequested = true
                    defer { lifecycle.stopWaiter = nil }
                    return lifecycle.stopWaiter
                }
                waiter?.resume()
            }
        } else {
            await consumeUntilStopped()
        }
        end()
    }

    private func consumeUntilStopped() async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.consume() }
            group.addTask { await self.waitForStopRequest() }
            await group.next()
            group.cancelAll()
            await group.waitForAll()
        }
    }

    private func waitForStopRequest() async {
        await withTaskCancellationHandler {
            await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
                let now = lifecycle.withLock { lifecycle -> Bool in
                    if lifecycle.stopRequested || Task.isCancelled { return true }
                    lifecycle.stopWaiter = continuation
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: { [lifecycle] in
            lifecycle.withLock { lifecycle -> UnsafeContinuation<Void, Never>? in
                defer { lifecycle.stopWaiter = nil }
                return lifecycle.stopWaiter
            }?.resume()
        }
    }

    /// Takes deliveries and runs up to `concurrency` handlers at a time; the lease keeper runs
    /// beside them as a child task. Ends when the task is cancelled or the subscription ends.
    private func consume() async {
        let handle = self.handle
        let runtime = handle.runtime
        let id = handle.id
        let subscription = self.subscription
        let body = self.body
        let concurrency = self.concurrency
        let maxLease = self.maxLease
        guard let consumer = lifecycle.withLock({ $0.consumer }) else { return }
        let mode = runtime.subscription(id)?.configuration.acknowledgement ?? .automatic
        var unhanded: [HandedMessage] = []
        await withTaskGroup(of: Void.self) { outer in
            if mode.tracksDeliveries {
                outer.addTask {
                    let period = mode.visibilityTimeout / 2
                    while !Task.isCancelled {
                        do { try await runtime.clock.sleep(until: runtime.clock.now() + period) } catch { return }
                        runtime.extendLeases(id, consumer: consumer, maximum: maxLease)
                    }
                }
            }
            unhanded = await withTaskGroup(of: Void.self) { group -> [HandedMessage] in
                var running = 0
                var unhanded: [HandedMessage] = []
                while !Task.isCancelled {
                    if running == concurrency {
                        await group.next()
                        running -= 1
                        continue
                    }
                    let taken: WakeResult
                    if runtime.isDurable {
                        // Outlives a fault of the store (a full disk): it waits and goes on. A
                        // batch it gives up on (the store closed) is handed back when it ends.
                        let (committed, failed) = await handle.waitCommittedThroughFaults(
                            consumer: consumer, max: concurrency - running)
                        unhanded = failed?.all ?? []
                        taken = committed
                    } else {
                        taken = await handle.wait(consumer: consumer, max: concurrency - running, pollTimeout: nil)
                    }
                    guard case .messages(let batch) = taken else { break }
                    for handed in batch.all {
                        running += 1
                        let delivery = Delivery<Payload>(handed, handle: handle, subscription: subscription)
                        group.addTask { await Self.handle(delivery, with: body, runtime: runtime) }
                    }
                }
                await group.waitForAll()
                return unhanded
            }
            outer.cancelAll()
        }
        runtime.consumerEnded(id, consumer: consumer, unhanded: unhanded)
    }

    /// Runs the body for one delivery and settles it by how the body ended, unless the body
    /// settled it itself (then the consumer's settlement finds it settled and leaves it).
    private static func handle(_ delivery: Delivery<Payload>, with body: Body, runtime: TopicRuntime) async {
        do {
            do {
                if runtime.interceptors.isEmpty {
                    try await body(delivery)
                } else {
                    let message = delivery.message
                    let context = HandlingContext(
                        topic: message.topic, subscription: delivery.subscription, messageID: message.id,
                        sequenceNumber: message.sequenceNumber, headers: message.headers, attempt: delivery.attempt)
                    try await runtime.interceptHandling(context) { try await body(delivery) }
                }
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
            runtime.logger.debug(
                "Could not settle a delivery after handling",
                metadata: ["topic": "\(delivery.message.topic)", "error": "\(error)"]
            )
        }
    }
}

extension Topic {
    /// Starts a ``Consumer`` that runs `handler` for each message of a subscription.
    ///
    /// The consumer runs at once, in the broker's background loop (see ``MessageQueue/run()``),
    /// until ``Consumer/stop()``, its subscription's removal or the broker's shutdown; during a
    /// shutdown it goes on handling through the grace period. To run it in a service group
    /// instead (where a graceful shutdown stops it before the broker), make it with
    /// `consumer(subscription:acknowledgement:with:concurrency:maxLease:)` and hand it to the
    /// group.
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
        let consumer = try await self.consumer(
            subscription: subscription, acknowledgement: acknowledgement, with: handler, concurrency: concurrency,
            maxLease: maxLease)
        consumer.startInBroker()
        return consumer
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
        let consumer = try await self.consumer(
            subscription: subscription, acknowledgement: acknowledgement, with: handler, concurrency: concurrency,
            maxLease: maxLease)
        consumer.startInBroker()
        return consumer
    }

    /// Starts a ``Consumer`` running a closure for each message; the parameters are those of the
    /// ``MessageHandler`` form (leases are extended up to 10 minutes).
    public nonisolated(nonsending) func consume(
        subscription: String? = nil,
        acknowledgement: AcknowledgementMode = .afterHandling,
        concurrency: Int = 1,
        _ body: @escaping @Sendable (Message<Payload>) async throws -> Void
    ) async throws -> Consumer<Payload> {
        let consumer = try await self.consumer(
            subscription: subscription, acknowledgement: acknowledgement, with: ClosureHandler(body),
            concurrency: concurrency)
        consumer.startInBroker()
        return consumer
    }

    /// Makes a ``Consumer`` that runs `handler` for each message of a subscription once it is run:
    /// a swift-service-lifecycle `Service` for a `ServiceGroup` (or call ``Consumer/run()``
    /// yourself). The subscription is created now, so nothing published from now on is missed.
    /// The parameters are those of
    /// `consume(subscription:acknowledgement:with:concurrency:maxLease:)`.
    ///
    /// ```swift
    /// let billing = try await orders.consumer(subscription: "billing", with: Billing(), concurrency: 4)
    /// let group = ServiceGroup(services: [queue, billing], logger: logger)
    /// try await group.run()
    /// ```
    public nonisolated(nonsending) func consumer<Handler: MessageHandler<Payload>>(
        subscription: String? = nil,
        acknowledgement: AcknowledgementMode = .afterHandling,
        with handler: Handler,
        concurrency: Int = 1,
        maxLease: Duration = .seconds(600)
    ) async throws -> Consumer<Payload> {
        try await makeConsumer(
            subscription: subscription, acknowledgement: acknowledgement, concurrency: concurrency, maxLease: maxLease
        ) { delivery in
            try await handler.handle(delivery.message)
        }
    }

    /// Makes a ``Consumer`` running a ``DeliveryHandler`` once it is run; see the
    /// ``MessageHandler`` form.
    public nonisolated(nonsending) func consumer<Handler: DeliveryHandler<Payload>>(
        subscription: String? = nil,
        acknowledgement: AcknowledgementMode = .afterHandling,
        with handler: Handler,
        concurrency: Int = 1,
        maxLease: Duration = .seconds(600)
    ) async throws -> Consumer<Payload> {
        try await makeConsumer(
            subscription: subscription, acknowledgement: acknowledgement, concurrency: concurrency, maxLease: maxLease
        ) { delivery in
            try await handler.handle(delivery)
        }
    }

    private nonisolated(nonsending) func makeConsumer(
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
                on: runtime, configuration: SubscriptionConfiguration(acknowledgement: acknowledgement))
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
