// One consumer of a subscription: batches taken per wake-up and handed out one by one.

import DequeModule

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
        self.consumer = handle.runtime.registerConsumer(handle.id)
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
        if handle.runtime.isDurable, let consumer {
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
        let runtime = handle.runtime
        let start = runtime.publishCount
        defer { lastSeen = runtime.publishCount }
        // Something was published since the last take: go and take it now.
        guard start == lastSeen else { return }
        let target = UInt64(Swift.min(prefetch, Self.batchTarget))
        var last = start
        var quiet = 0
        for _ in 0..<Self.spinBudget {
            let current = runtime.publishCount
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
        handle.runtime.consumerEnded(id, consumer: consumer, unhanded: unhanded)
    }
}
