// A subscription's handle: its runtime and id, long-polling receives, and waits that commit first.

import DequeModule

/// The runtime and id of one subscription, shared by its public shells and consumer cursors.
///
/// An anonymous subscription (from ``Topic/subscribe(startingAt:backlog:prefetch:)``) is removed
/// when the last handle to it is released, so a stream that is never iterated does not leak.
@usableFromInline
final class SubscriptionHandle: Sendable {
    @usableFromInline let runtime: TopicRuntime
    @usableFromInline let id: SubscriptionID
    let removeWhenReleased: Bool

    init(runtime: TopicRuntime, id: SubscriptionID, removeWhenReleased: Bool) {
        self.runtime = runtime
        self.id = id
        self.removeWhenReleased = removeWhenReleased
    }

    deinit {
        if removeWhenReleased { remove() }
    }

    /// A new anonymous subscription with a generated name, removed when its last handle goes.
    static func anonymous(on runtime: TopicRuntime, configuration: SubscriptionConfiguration) throws
        -> SubscriptionHandle
    {
        try configuration.validate()
        let name = "subscriber-\(MessageID.allocate())"
        let id = try runtime.withState { state, now in
            (state.addSubscription(name: name, configuration: configuration, isAnonymous: true, now: now), Effects())
        }.get()
        return SubscriptionHandle(runtime: runtime, id: id, removeWhenReleased: true)
    }

    /// The subscription's name, or `nil` once it was removed.
    var name: String? { runtime.state.withLock { $0.subscription(id)?.name } }

    func remove() {
        runtime.removeSubscription(id)
    }

    /// The long-polling pull behind ``Subscription/receive(max:waitingUpTo:visibilityTimeout:)``: validates its
    /// input and maps how the wait ended to the result or the error.
    @usableFromInline
    nonisolated(nonsending) func receive(
        max: Int,
        waitingUpTo timeout: Duration,
        visibilityTimeout: Duration? = nil,
        subscription name: String
    ) async throws -> [HandedMessage] {
        try validateReceive(max: max, waitingUpTo: timeout, visibilityTimeout: visibilityTimeout)
        // One await only, and `outcome` inlined: the durable branch here (a second await) and an
        // out-of-line `outcome` cost the nack row 9 %; callers choose ``receiveCommitted(...)``
        // for a durable topic.
        return try outcome(
            await wait(consumer: nil, max: max, pollTimeout: timeout, visibilityTimeout: visibilityTimeout),
            subscription: name)
    }

    /// ``receive(max:waitingUpTo:visibilityTimeout:subscription:)`` on a durable topic: the
    /// deliveries are handed over once their attempt counts are committed.
    @usableFromInline
    nonisolated(nonsending) func receiveCommitted(
        max: Int, waitingUpTo timeout: Duration, visibilityTimeout: Duration?, subscription name: String
    ) async throws -> [HandedMessage] {
        try validateReceive(max: max, waitingUpTo: timeout, visibilityTimeout: visibilityTimeout)
        if let shared = runtime.shared {
            return try await runtime.receiveShared(
                id, consumer: nil, max: max, waitingUpTo: timeout, visibilityTimeout: visibilityTimeout,
                subscriptionName: name, shared)
        }
        try runtime.refuseWhileFaulty()
        let (committed, failure) = await waitCommitted(
            consumer: nil, max: max, pollTimeout: timeout, visibilityTimeout: visibilityTimeout)
        if let failure { throw failure }
        return try outcome(committed, subscription: name)
    }

    private func validateReceive(max: Int, waitingUpTo timeout: Duration, visibilityTimeout: Duration?) throws {
        guard max >= 1 else { throw OpenQError.invalidConfiguration("receive(max:) needs max ≥ 1; it was \(max).") }
        guard timeout >= .zero else {
            throw OpenQError.invalidConfiguration("receive(waitingUpTo:) needs a timeout ≥ 0; it was \(timeout).")
        }
        if let visibilityTimeout, visibilityTimeout <= .zero {
            throw OpenQError.invalidConfiguration(
                "receive(visibilityTimeout:) needs a positive timeout; it was \(visibilityTimeout).")
        }
    }

    /// How a receive's wait ended, as its result or its error.
    @inline(__always)
    private func outcome(_ result: consuming WakeResult, subscription name: String) throws -> [HandedMessage] {
        switch result {
        case .messages(let batch):
            return batch.all
        case .timedOut:
            return []
        case .cancelled:
            throw CancellationError()
        case .finished:
            let runtime = self.runtime
            let id = self.id
            let error = runtime.state.withLock { state -> OpenQError in
                state.subscription(id) == nil
                    ? .subscriptionNotFound(name, topic: runtime.name) : .shutDown("Topic '\(runtime.name)'")
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
        visibilityTimeout: Duration? = nil,
        isolation: isolated (any Actor)? = #isolation
    ) async -> WakeResult {
        if Task.isCancelled { return .cancelled }
        let id = self.id
        let runtime = self.runtime
        let decision = runtime.withState { state, now in
            state.receive(
                id, consumer: consumer, max: max, canWait: pollTimeout != .zero, visibilityTimeout: visibilityTimeout,
                now: now)
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
                    runtime.withState { state, now in
                        let effects = state.receiveSuspended(
                            id,
                            waiter: waiter,
                            consumer: consumer,
                            max: max,
                            pollDeadline: pollTimeout.map { now + $0 },
                            visibilityTimeout: visibilityTimeout,
                            continuation: continuation,
                            now: now
                        )
                        return ((), effects)
                    }
                }
            } onCancel: {
                runtime.withState { state, _ in ((), state.receiveCancelled(id, waiter: waiter)) }
            }
        }
    }

    /// ``wait(consumer:max:pollTimeout:isolation:)`` for a durable topic: a batch is handed over
    /// only once its take (the attempt counts) is committed, so a message that crashes its
    /// consumer every time still reaches its dead-letter topic. A function of its own, chosen by
    /// the callers, so that an in-memory topic's wait has no extra suspension point (measured: 8%
    /// on fan-out). The failure of the commit comes beside the result, not in it: a case more in
    /// `WakeResult`, which every `Effects` carries, slowed fan-out too.
    /// - Returns: how the wait ended, or `.finished` and the error when the take's commit failed.
    func waitCommitted(
        consumer: ConsumerID?,
        max: Int,
        pollTimeout: Duration?,
        visibilityTimeout: Duration? = nil,
        isolation: isolated (any Actor)? = #isolation
    ) async -> (WakeResult, OpenQError?) {
        let mark = runtime.journalMark
        let result = await wait(
            consumer: consumer, max: max, pollTimeout: pollTimeout, visibilityTimeout: visibilityTimeout)
        guard case .messages = result else { return (result, nil) }
        do {
            try await runtime.syncJournal(since: mark)
            return (result, nil)
        } catch {
            return (.finished, error)
        }
    }

    /// ``waitCommitted(consumer:max:pollTimeout:visibilityTimeout:isolation:)`` for a consumer
    /// (a stream or a ``Consumer``), which outlives a fault of the store instead of ending: while
    /// the store cannot commit it takes nothing; when the commit of its take fails (the store
    /// turned faulty meanwhile) it waits for the store to commit the kept writes, then hands the
    /// batch over. `failed` carries a batch it gives up on (the store was closed, or the task
    /// cancelled), for the cursor to return.
    func waitCommittedThroughFaults(
        consumer: ConsumerID,
        max: Int,
        isolation: isolated (any Actor)? = #isolation
    ) async -> (result: WakeResult, failed: DeliveryBatch?) {
        if let shared = runtime.shared {
            guard let name else { return (.finished, nil) }
            return (await runtime.waitShared(consumer: consumer, max: max, subscriptionName: name, id, shared), nil)
        }
        var pause = Duration.milliseconds(10)
        while runtime.store?.fault != nil {
            do {
                try await Task.sleep(for: pause)
            } catch {
                return (.cancelled, nil)
            }
            pause = Swift.min(pause * 2, .milliseconds(250))
        }
        let mark = runtime.journalMark
        let result = await wait(consumer: consumer, max: max, pollTimeout: nil)
        guard case .messages(let batch) = result else { return (result, nil) }
        while true {
            do {
                try await runtime.syncJournal(since: mark)
                return (.messages(batch), nil)
            } catch {
                // The store keeps the writes of a round that failed for a fault and retries them:
                // the next wait ends with that retry. Anything else (closed, a dropped round) ends.
                guard runtime.store?.fault != nil, !Task.isCancelled else { return (.finished, batch) }
            }
        }
    }
}
