import DequeModule

/// The storage and id of one subscription, shared by its public shells and consumer cursors.
///
/// An anonymous subscription (from ``Topic/subscribe(startingAt:backlog:prefetch:)``) is removed
/// when the last handle to it is released, so a stream that is never iterated does not leak.
@usableFromInline
final class SubscriptionHandle: Sendable {
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
        try storage.refuseWhileFaulty()
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
            let storage = self.storage
            let id = self.id
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
        visibilityTimeout: Duration? = nil,
        isolation: isolated (any Actor)? = #isolation
    ) async -> WakeResult {
        if Task.isCancelled { return .cancelled }
        let id = self.id
        let storage = self.storage
        let decision = storage.withState { state, now in
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
                    storage.withState { state, now in
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
                storage.withState { state, _ in ((), state.receiveCancelled(id, waiter: waiter)) }
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
        let mark = storage.journalMark
        let result = await wait(
            consumer: consumer, max: max, pollTimeout: pollTimeout, visibilityTimeout: visibilityTimeout)
        guard case .messages = result else { return (result, nil) }
        do {
            try await storage.syncJournal(since: mark)
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
        var pause = Duration.milliseconds(10)
        while storage.store?.fault != nil {
            do {
                try await Task.sleep(for: pause)
            } catch {
                return (.cancelled, nil)
            }
            pause = Swift.min(pause * 2, .milliseconds(250))
        }
        let mark = storage.journalMark
        let result = await wait(consumer: consumer, max: max, pollTimeout: nil)
        guard case .messages(let batch) = result else { return (result, nil) }
        while true {
            do {
                try await storage.syncJournal(since: mark)
                return (.messages(batch), nil)
            } catch {
                // The store keeps the writes of a round that failed for a fault and retries them:
                // the next wait ends with that retry. Anything else (closed, a dropped round) ends.
                guard storage.store?.fault != nil, !Task.isCancelled else { return (.finished, batch) }
            }
        }
    }
}

/// Where a ``MessageStream``'s iterations get their anonymous subscription: the one created by
/// `subscribe()` while it lives, a fresh one (at the latest message) once an iteration ended it.
@usableFromInline
final class StreamSource: Sendable {
    private let handle: LockedValueBox<SubscriptionHandle>
    /// The configuration of the stream's subscriptions; later ones start at the latest message.
    private let configuration: SubscriptionConfiguration

    init(_ handle: SubscriptionHandle, configuration: SubscriptionConfiguration) {
        self.handle = LockedValueBox(handle)
        var configuration = configuration
        configuration.start = .latest
        self.configuration = configuration
    }

    /// The subscription of the latest iteration (or of `subscribe()`).
    var current: SubscriptionHandle { handle.withLock { $0 } }

    /// The subscription a new iteration reads: the current one while it exists, otherwise a new
    /// one with the same configuration starting at the latest message. When the topic no longer
    /// accepts subscriptions, the ended one (the iteration then ends at once).
    ///
    /// Runs under this source's lock, so that iterations started together share one subscription.
    /// Lock order: this lock, then the topic's (nothing takes them the other way round).
    @usableFromInline
    func handleForIteration() -> SubscriptionHandle {
        handle.withLock { handle in
            let storage = handle.storage
            let id = handle.id
            guard storage.state.withLock({ $0.subscription(id) == nil }) else { return handle }
            guard let fresh = try? SubscriptionHandle.anonymous(on: storage, configuration: configuration) else {
                return handle
            }
            handle = fresh
            return fresh
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
    let handle: SubscriptionHandle
    let consumer: ConsumerID?
    private let prefetch: Int
    // One task uses a cursor at a time (its iterators are not Sendable), so the per-access dynamic
    // exclusivity checks of class properties (5% of the batched benchmark) buy nothing here.

    /// The taken batch: tracked deliveries in reverse (the next one is the last element, so handing
    /// it out moves it out of the array instead of copying and retaining it), then first deliveries
    /// of an automatic subscription: the run being handed out (`current`), then the runs after it.
    @exclusivity(unchecked) private var handed: [HandedMessage] = []
    @exclusivity(unchecked) private var current: MessageRun?
    @exclusivity(unchecked) private var fresh: Deque<MessageRun> = []
    @exclusivity(unchecked) private var handedSinceCheck = 0
    @exclusivity(unchecked) private var ended = false
    @exclusivity(unchecked) private var lastSeen: UInt64 = .max
    /// Whether the last take brought less than a quarter of `prefetch` (see `takeBatch()`).
    @exclusivity(unchecked) private var caughtUp = false

    @usableFromInline
    init(handle: SubscriptionHandle, prefetch: Int) {
        self.handle = handle
        self.prefetch = prefetch
        self.consumer = handle.storage.state.withLock { $0.registerConsumer(handle.id) }
        self.ended = consumer == nil
    }

    deinit { end() }

    /// The next message of the batch already taken, without suspending; `nil` when the batch is
    /// used up (then ``next(isolation:)`` takes the next one) or the cursor ended.
    ///
    /// The iterators try this first, so that handing out a buffered message is a plain call and
    /// not an `async` one: each `async` call hops executors through `swift_task_switch`, which
    /// reads the task's status with a locked 16-byte atomic (perf: a fifth of the batched
    /// benchmark when paid per message).
    @usableFromInline
    func nextBuffered() -> HandedMessage? {
        guard holdsMessages else { return nil }
        // Cancellation is checked when the buffer is refilled and every `cancellationStride`
        // messages in between, not per message: reading a task's status is that same locked
        // atomic (8% of the batched benchmark when done per message).
        handedSinceCheck += 1
        if handedSinceCheck == Self.cancellationStride {
            handedSinceCheck = 0
            if Task.isCancelled {
                end()
                return nil
            }
        }
        return takeBuffered()
    }

    /// The next message: a buffered one, or the first of a newly taken batch, waiting for one when
    /// there is none; `nil` once the cursor ended.
    @usableFromInline
    func next(isolation: isolated (any Actor)? = #isolation) async -> HandedMessage? {
        if let buffered = nextBuffered() { return buffered }
        if ended { return nil }
        guard let batch = await takeBatch() else { return nil }
        handed = batch.handed
        handed.reverse()
        fresh = batch.fresh
        handedSinceCheck = 0
        return takeBuffered()
    }

    /// Everything the consumer holds, or the next batch it takes, waiting for one when there is
    /// none; `nil` once the cursor ended. Cancellation is checked once per batch.
    @usableFromInline
    func nextBatch(isolation: isolated (any Actor)? = #isolation) async -> DeliveryBatch? {
        if ended { return nil }
        if holdsMessages { return takeAll() }
        return await takeBatch()
    }

    /// Takes the next batch from the subscription, waiting for one when there is none; `nil` (and
    /// the cursor ends) when the task is cancelled or the subscription ends.
    ///
    /// A consumer whose last take brought less than a quarter of its `prefetch` has caught up with
    /// its producers. Before it takes again it yields its thread once: the producers, and the
    /// consumers of other subscriptions that share the few threads of the cooperative pool, run
    /// meanwhile and messages gather. Without it, a caught-up consumer takes a handful of messages
    /// per lock acquisition and meets the producer on the topic's lock and queues for each
    /// handful. Measured on 2 cores: 1 -> 16 fan-out 13 M -> 19 M deliveries/s (the takes grew
    /// from 19 to 125 messages), 1 -> 1 per message 3.8 M -> 4.4 M msgs/s.
    private func takeBatch(isolation: isolated (any Actor)? = #isolation) async -> DeliveryBatch? {
        if caughtUp { await Task.yield() }
        awaitBatch()
        let result: WakeResult
        if handle.storage.isDurable, let consumer {
            let (committed, failed) = await handle.waitCommittedThroughFaults(consumer: consumer, max: prefetch)
            if let failed {
                // Given up (the store closed, the task cancelled): ending returns the batch to the
                // subscription, as a consumer that ends before handing its messages out does.
                fresh = failed.fresh
                handed = failed.handed.reversed()
            }
            result = committed
        } else {
            result = await handle.wait(consumer: consumer, max: prefetch, pollTimeout: nil)
        }
        switch result {
        case .messages(let batch):
            caughtUp = batch.count < prefetch / 4
            return batch
        case .cancelled, .finished, .timedOut:
            end()
            return nil
        }
    }

    /// Whether the cursor holds messages it has not handed out.
    private var holdsMessages: Bool { (current?.count ?? 0) > 0 || !handed.isEmpty || !fresh.isEmpty }

    /// Removes and returns every message the cursor holds, in delivery order.
    private func takeAll() -> DeliveryBatch {
        if let current, current.count > 0 { fresh.prepend(current) }
        defer {
            handed = []
            current = nil
            fresh = []
        }
        return DeliveryBatch(handed: handed.reversed(), fresh: fresh)
    }

    /// The next buffered message; the buffer is not empty.
    private func takeBuffered() -> HandedMessage {
        if let next = handed.popLast() { return next }
        if (current?.count ?? 0) == 0 {
            let run = fresh.removeFirst()
            // A run of one message (a single publish) hands its record reference over to the
            // message instead of copying it: copying costs a retain now and a release when the
            // run is dropped, two atomic operations on the record, which a fan-out shares with the
            // producer's core and every other subscription. The used-up run before it is dropped
            // either way, so that it does not keep its record (a whole batch) alive.
            guard run.count > 1 else {
                current = nil
                return HandedMessage(firstAutomaticDeliveryOf: run.first)
            }
            current = run
        }
        return HandedMessage(firstAutomaticDeliveryOf: current!.popFirst())
    }

    /// Before a consumer whose buffer ran dry takes the lock to wait, it watches the topic's
    /// publish counter for a moment (about 2 µs at most) and goes on as soon as `batchTarget`
    /// messages came (a batch publish brings them all at once), or no publish came for about half
    /// a microsecond (the producer paused, or is not running: with many consumers on few cores,
    /// waiting longer only keeps it off the core). Watching longer was measured and is worse: 10 µs
    /// of quiet gap cut the batched benchmark by a third.
    ///
    /// Why: a consumer that is faster than its producer otherwise takes one message per lock
    /// acquisition, fights the producer for the lock and parks after every message, and on a
    /// virtual machine each park and wake-up costs microseconds of kernel time. Letting a few
    /// messages gather turns that into one lock acquisition per batch. A message that arrives
    /// while the consumer watches waits at most the quiet gap. Skipped on a single core, where
    /// spinning only delays the producer.
    private func awaitBatch() {
        guard runsOnSeveralCores else { return }
        let storage = handle.storage
        let start = storage.publishCount
        defer { lastSeen = storage.publishCount }
        // Something was published since the last take: go and take it now.
        guard start == lastSeen else { return }
        let target = UInt64(Swift.min(prefetch, Self.batchTarget))
        var last = start
        var quiet = 0
        for _ in 0..<Self.spinBudget {
            let current = storage.publishCount
            if current &- start >= target { return }
            if current != last {
                last = current
                quiet = 0
            } else {
                quiet += 1
                if quiet >= Self.quietGap { return }
            }
        }
    }

    /// Counter reads before parking anyway (about 2 µs on the 2-core VM the benchmarks run on).
    private static let spinBudget = 8_000
    /// Counter reads without a new publish before the consumer stops watching.
    private static let quietGap = 2_000
    private static let batchTarget = 64
    /// A consumer notices its task's cancellation within this many messages of its buffer.
    static let cancellationStride = 8

    func end() {
        guard !ended else { return }
        ended = true
        let unhanded = takeAll().all
        guard let consumer else { return }
        let id = handle.id
        handle.storage.withState { state, now in
            ((), state.consumerEnded(id, consumer: consumer, unhanded: unhanded, now: now))
        }
    }
}
