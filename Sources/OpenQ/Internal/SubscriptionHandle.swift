/// The storage and id of one subscription, shared by its public shells and consumer cursors.
///
/// An anonymous subscription (from ``Topic/subscribe(startingAt:backlog:prefetch:)``) is removed
/// when the last handle to it is released, so a stream that is never iterated does not leak.
@usableFromInline
final class SubscriptionHandle: Sendable {
    @usableFromInline typealias Payload = TopicStorage.Payload

    @usableFromInline let storage: TopicStorage
    @usableFromInline let id: SubscriptionID
    let removeWhenReleased: Bool

    init(storage: TopicStorage, id: SubscriptionID, removeWhenReleased: Bool) {
        self.storage = storage
        self.id = id
        self.removeWhenReleased = removeWhenReleased
    }

    deinit {
        if removeWhenReleased { remove() }
    }

    /// A new anonymous subscription with a generated name, removed when its last handle goes.
    static func anonymous(on storage: TopicStorage, configuration: SubscriptionConfiguration) throws
        -> SubscriptionHandle
    {
        try configuration.validate()
        let name = "subscriber-\(MessageID.allocate())"
        let id = try storage.withState { state, now in
            (state.addSubscription(name: name, configuration: configuration, isAnonymous: true, now: now), Effects())
        }.get()
        return SubscriptionHandle(storage: storage, id: id, removeWhenReleased: true)
    }

    /// The subscription's name, or `nil` once it was removed.
    var name: String? { storage.state.withLock { $0.subscription(id)?.name } }

    func remove() {
        storage.withState { state, now in ((), state.removeSubscription(id, now: now)) }
    }

    /// The long-polling pull behind ``Subscription/receive(max:waitingUpTo:)``: validates its
    /// input and maps how the wait ended to the result or the error.
    @usableFromInline
    nonisolated(nonsending) func receive(
        max: Int,
        waitingUpTo timeout: Duration,
        subscription name: String
    ) async throws -> [HandedMessage<Payload>] {
        guard max >= 1 else { throw OpenQError.invalidConfiguration("receive(max:) needs max ≥ 1; it was \(max).") }
        guard timeout >= .zero else {
            throw OpenQError.invalidConfiguration("receive(waitingUpTo:) needs a timeout ≥ 0; it was \(timeout).")
        }
        switch await wait(consumer: nil, max: max, pollTimeout: timeout) {
        case .messages(let batch):
            return batch
        case .timedOut:
            return []
        case .cancelled:
            throw CancellationError()
        case .finished:
            let error = storage.state.withLock { state -> OpenQError in
                state.subscription(id) == nil
                    ? .subscriptionNotFound(name, topic: storage.name) : .shutDown("Topic '\(storage.name)'")
            }
            throw error
        }
    }

    /// Takes visible messages at once, or waits for some: without a `pollTimeout` until messages
    /// arrive, the subscription ends or the task is cancelled; with one, at most that long.
    func wait(
        consumer: ConsumerID?,
        max: Int,
        pollTimeout: Duration?,
        isolation: isolated (any Actor)? = #isolation
    ) async -> WakeResult<Payload> {
        if Task.isCancelled { return .cancelled }
        let id = self.id
        let storage = self.storage
        let decision = storage.withState { state, now in
            state.receive(id, consumer: consumer, max: max, canWait: pollTimeout != .zero, now: now)
        }
        switch decision {
        case .messages(let batch):
            return .messages(batch)
        case .empty:
            return .timedOut
        case .finished:
            return .finished
        case .mustWait(let waiter):
            return await withTaskCancellationHandler {
                await withUnsafeContinuation(isolation: isolation) { continuation in
                    storage.withState { state, now in
                        let effects = state.suspend(
                            id,
                            waiter: waiter,
                            consumer: consumer,
                            max: max,
                            pollDeadline: pollTimeout.map { now + $0 },
                            continuation: continuation,
                            now: now
                        )
                        return ((), effects)
                    }
                }
            } onCancel: {
                storage.withState { state, _ in ((), state.cancelWaiter(id, waiter: waiter)) }
            }
        }
    }
}

/// One consumer of a subscription: registers itself, takes batches of up to `prefetch` messages
/// per wake-up and hands them out one by one.
///
/// When it ends (its task is cancelled, the subscription ends, or its iterator is dropped) the
/// deliveries it holds become visible again at once; those it never handed out get their attempt
/// back.
@usableFromInline
final class ConsumerCursor {
    @usableFromInline typealias Payload = TopicStorage.Payload

    let handle: SubscriptionHandle
    let consumer: ConsumerID?
    private let prefetch: Int
    private var buffer: [HandedMessage<Payload>] = []
    private var position = 0
    private var ended = false

    @usableFromInline
    init(handle: SubscriptionHandle, prefetch: Int) {
        self.handle = handle
        self.prefetch = prefetch
        self.consumer = handle.storage.state.withLock { $0.registerConsumer(handle.id) }
        self.ended = consumer == nil
    }

    deinit { end() }

    @usableFromInline
    func next(isolation: isolated (any Actor)? = #isolation) async -> HandedMessage<Payload>? {
        if ended { return nil }
        if Task.isCancelled {
            end()
            return nil
        }
        if position < buffer.count {
            position += 1
            return buffer[position - 1]
        }
        switch await handle.wait(consumer: consumer, max: prefetch, pollTimeout: nil) {
        case .messages(let batch):
            buffer = batch
            position = 1
            return batch[0]
        case .cancelled, .finished, .timedOut:
            end()
            return nil
        }
    }

    func end() {
        guard !ended else { return }
        ended = true
        let unhanded = Array(buffer[position...])
        buffer = []
        position = 0
        guard let consumer else { return }
        let id = handle.id
        handle.storage.withState { state, now in
            ((), state.consumerEnded(id, consumer: consumer, unhanded: unhanded, now: now))
        }
    }
}
