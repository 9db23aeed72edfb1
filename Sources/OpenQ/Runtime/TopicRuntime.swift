// A topic's runtime: its state machine behind a lock, effects performed after unlocking, publish, timer.

import Logging
import Synchronization

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Owns one topic's ``TopicStateMachine`` behind a lock and carries out its effects after the lock
/// is released: resuming consumers and publishers, forwarding dead letters, arming the timer.
///
/// The public shells (``Topic``, ``Subscription``, ``Delivery``) only forward to this type; the
/// broker actor is not on this path.
@usableFromInline
final class TopicRuntime: Sendable {
    /// The core never sees a payload type: messages live in ``MessageRecord``s, allocated typed by the
    /// publishing shell, so the core is compiled once, specialized, in this module.
    /// `payloadType` says which type the topic carries.
    typealias StateMachine = TopicStateMachine

    let name: String
    let payloadType: Any.Type
    let clock: BrokerClock
    let logger: Logger
    /// Where dead letters go; `nil` when the topic has no dead-letter topic. Changes with the
    /// policy (``MessageQueue/setDeadLetterPolicy(_:of:)``); read when dead letters are forwarded.
    let deadLetterTargetBox: LockedValueBox<TopicRuntime?>
    var deadLetterTarget: TopicRuntime? { deadLetterTargetBox.withLock { $0 } }
    /// The topic's current configuration (its dead-letter policy may change while it runs).
    var configuration: TopicConfiguration { state.withLock { $0.configuration } }
    let state: LockedValueBox<StateMachine>
    /// Counts published messages, bumped after every publish call, outside the lock: a consumer
    /// whose buffer ran dry watches it for a moment before it parks (see
    /// `ConsumerCursor.awaitBatch()`).
    private let publishes = Atomic<UInt64>(0)
    var publishCount: UInt64 {
        @inline(__always) get { publishes.load(ordering: .relaxed) }
    }
    /// The broker's background loop: it fires this topic's timer and runs its consumers and page reads.
    let driver: BrokerDriver
    /// A durable topic's page reads under way (see `TopicRuntime+Paging`).
    let pageReads = LockedValueBox(PageReads())
    /// The broker's interceptors (``MessageInterceptor``), usually none.
    @usableFromInline let interceptors: [any MessageInterceptor]
    /// A durable topic's store (its journal); `nil` for an in-memory topic.
    let store: (any DurableStore)?
    /// How a durable topic's payloads become bytes and back; `nil` for an in-memory topic. A
    /// dead-letter topic created for it later (a policy changed at run time) uses the same.
    let durableBinding: DurableBinding?
    /// Whether the topic is durable: calls that change its state wait for their commit. A shared
    /// topic counts as durable too, so that the in-memory paths test this one flag only.
    @usableFromInline let isDurable: Bool
    /// A shared backend's topic (``SharedBackend``): its operations run in the database; `nil` for
    /// a topic this process decides (in memory or journaled).
    @usableFromInline let shared: SharedTopic?
    /// A durable topic's payload encoder (every message of a record), run before the lock.
    private let encodeRecord: (@Sendable (MessageRecord) throws -> [[UInt8]])?

    init(
        name: String,
        payloadType: Any.Type,
        configuration: TopicConfiguration,
        clock: BrokerClock,
        driver: BrokerDriver,
        logger: Logger,
        deadLetterTarget: TopicRuntime?,
        seed: UInt64 = .random(in: .min ... .max),
        parkedPublisherWarning: Duration? = nil,
        interceptors: [any MessageInterceptor] = [],
        durable: DurableBinding? = nil,
        shared: SharedTopic? = nil
    ) {
        self.interceptors = interceptors
        self.shared = shared
        self.store = durable?.store
        self.durableBinding = durable
        self.isDurable = durable != nil || shared != nil
        if let encode = durable?.encode {
            self.encodeRecord = { record in
                var encoded: [[UInt8]] = []
                encoded.reserveCapacity(record.count)
                for index in 0..<record.count { encoded.append(try encode(record, index)) }
                return encoded
            }
        } else {
            self.encodeRecord = nil
        }
        self.name = name
        self.payloadType = payloadType
        self.clock = clock
        self.driver = driver
        self.logger = logger
        self.deadLetterTargetBox = LockedValueBox(deadLetterTarget)
        self.state = LockedValueBox(
            StateMachine(
                topic: name,
                configuration: configuration,
                epoch: clock.epoch,
                seed: seed,
                parkedPublisherWarning: parkedPublisherWarning
            )
        )
        if let durable {
            state.withLock {
                $0.journal = Journal(encode: durable.encode)
                $0.residentLimit = durable.store.residentMessages
            }
        }
    }

    /// Runs one event under the lock and performs its effects after.
    ///
    /// A durable topic takes its own path, decided before the lock is taken: anything more in the
    /// in-memory critical section, even a test of a flag, lengthens the time every other
    /// publisher and consumer of the topic waits for the lock (measured: 4% on 1→16 fan-out).
    @inline(__always)
    func withState<Result>(_ body: (inout StateMachine, Duration) -> (Result, Effects)) -> Result {
        if isDurable { return withJournaledState(body) }
        let now = clock.now()
        let (result, effects) = state.withLock { state in
            var (result, effects) = body(&state, now)
            state.collectWaiters(into: &effects)
            return (result, effects)
        }
        if !effects.isEmpty { perform(effects) }
        return result
    }

    /// `withState` for a durable topic: the decisions the event journaled go to the store before
    /// the lock is released, so the journal holds them in the order the state machine made them.
    private func withJournaledState<Result>(_ body: (inout StateMachine, Duration) -> (Result, Effects)) -> Result {
        let now = clock.now()
        let (result, effects) = state.withLock { state in
            var (result, effects) = body(&state, now)
            if let store, let entries = state.journal?.take(), !entries.isEmpty, !state.isFinished {
                store.append(topic: name, entries)
            }
            if !(state.journal?.pageIns.isEmpty ?? true) { swap(&effects.pageIns, &state.journal!.pageIns) }
            state.collectWaiters(into: &effects)
            return (result, effects)
        }
        if !effects.isEmpty { perform(effects) }
        return result
    }

    /// Does what an event decided, after the lock is released, in this order: pages to read,
    /// consumers and publishers resumed, warnings logged, dead letters forwarded, the timer armed,
    /// and last who waits for the topic to be idle or a subscription to drain.
    func perform(_ effects: consuming Effects) {
        for request in effects.pageIns { readPage(request) }
        effects.resumeConsumersAndPublishers()
        for warning in effects.warnings { log(warning) }
        if !effects.deadLetters.isEmpty { forwardDeadLetters(effects.deadLetters) }
        if let timerRequest = effects.armTimer { arm(timerRequest) }
        effects.resumeIdleAndDrainWaiters()
    }

    // MARK: Publishing (non-generic entry points, so the state machine runs specialized)

    /// Publishes one request (one message, or a batch atomically); waits for room for all of it
    /// under `suspend`.
    @usableFromInline
    nonisolated(nonsending) func publish(_ request: PublishRequest) async throws -> PublishReceipt {
        if isDurable { return try await publishDurably(request) }
        let decision = withState { state, now in state.publish(CollectionOfOne(request), now: now) }
        publishes.add(UInt64(request.record.count), ordering: .relaxed)
        return try await settle(decision) { [request] }
    }

    /// The receipt of publishing nothing (an empty batch): the next sequence number, count 0.
    @usableFromInline
    func emptyReceipt() -> PublishReceipt {
        state.withLock { state in
            PublishReceipt(firstID: .unassigned, firstSequenceNumber: state.nextSequence, count: 0)
        }
    }

    /// A durable publish: the payloads are encoded before the lock, and the call returns once the
    /// messages are committed.
    private nonisolated(nonsending) func publishDurably(_ request: PublishRequest) async throws -> PublishReceipt {
        if let shared { return try await publishShared(request, shared) }
        // While the store cannot commit, nothing is accepted: the message would only wait in
        // memory for a commit that may never come.
        try refuseWhileFaulty()
        let mark = journalMark
        let encoded: [[UInt8]]
        do {
            encoded = try encodeRecord?(request.record) ?? []
        } catch {
            throw OpenQError(
                .encodingFailed,
                "A payload of topic '\(name)' could not be encoded, so nothing was published: \(error)")
        }
        let decision = withState { state, now in
            // Taken by this publish if it is accepted now; a publish that must wait for room is
            // encoded again when it is let in (under the lock: rare, and never wrong).
            state.journal?.encoded = (ObjectIdentifier(request.record), encoded)
            defer { state.journal?.encoded = nil }
            return state.publish(CollectionOfOne(request), now: now)
        }
        publishes.add(UInt64(request.record.count), ordering: .relaxed)
        let receipt = try await settle(decision) { [request] }
        try await syncJournal(since: mark)
        return receipt
    }

    /// Waits until every decision of this topic made so far is committed (nothing to wait for on
    /// an in-memory topic).
    @usableFromInline
    nonisolated(nonsending) func syncJournal(since mark: UInt64) async throws(OpenQError) {
        try await store?.sync(since: mark)
    }

    /// Throws the store's fault while it cannot commit (a full disk, a read-only file): calls that
    /// would add work (publishes, receives) are refused before they change anything.
    func refuseWhileFaulty() throws(OpenQError) {
        if let fault = store?.fault {
            throw OpenQError(
                fault.code,
                "Topic '\(name)' accepts nothing new while its store cannot commit; it goes on by itself once "
                    + "the store can be written again. \(fault.message)")
        }
    }

    /// The journal's position before a call makes its decisions (0 for an in-memory topic).
    @usableFromInline
    var journalMark: UInt64 { store?.journalMark ?? 0 }

    @usableFromInline
    func tryPublish(_ request: PublishRequest) -> PublishResult {
        if isDurable {
            return .failed(
                OpenQError(
                    .unsupportedOperation,
                    "tryPublish cannot wait for the commit that a durable topic ('\(name)') makes before a publish "
                        + "returns; use publish(_:), which returns once the message is committed."))
        }
        return withState { state, now in state.tryPublish(request, now: now) }
    }

    private nonisolated(nonsending) func settle(
        _ decision: PublishDecision,
        requests: () -> [PublishRequest]
    ) async throws -> PublishReceipt {
        switch decision {
        case .accepted(let receipt):
            return receipt
        case .failed(let error):
            throw error
        case .mustWait(let id):
            let requests = requests()
            return try await withTaskCancellationHandler {
                try await withUnsafeThrowingContinuation {
                    (continuation: UnsafeContinuation<PublishReceipt, any Error>) in
                    withState { state, now in
                        ((), state.publishSuspended(id, requests: requests, continuation: continuation, now: now))
                    }
                }
            } onCancel: {
                withState { state, _ in ((), state.publishCancelled(id)) }
            }
        }
    }

    func statistics() -> TopicStatistics {
        if let shared { return sharedStatistics(shared) }
        let now = clock.now()
        return state.withLock { $0.statistics(now: now) }
    }

    private func log(_ warning: ParkedPublisherWarning) {
        logger.warning(
            "A publisher has waited \(warning.waited) for room in a full subscription",
            metadata: [
                "topic": "\(warning.topic)", "subscription": "\(warning.subscription)",
                "depth": "\(warning.depth)", "capacity": "\(warning.capacity)",
                "consumers": "\(warning.consumers)", "parkedPublishers": "\(warning.parkedPublishers)",
            ]
        )
    }

    /// Waits until the subscription holds nothing (see ``Subscription/waitUntilDrained()``).
    func waitUntilDrained(_ id: SubscriptionID) async throws {
        if let shared { return try await waitUntilDrainedShared(id, shared) }
        let waiter = MessageID.allocate()
        let result = await withTaskCancellationHandler {
            await withUnsafeContinuation { (continuation: UnsafeContinuation<Result<Void, OpenQError>, Never>) in
                let now = state.withLock { $0.addDrainWaiter(waiter, subscription: id, continuation: continuation) }
                if let now { continuation.resume(returning: now) }
            }
        } onCancel: {
            state.withLock { $0.cancelDrainWaiter(waiter) }?.resume(returning: .success(()))
        }
        try Task.checkCancellation()
        try result.get()
    }

    // MARK: Timer

    /// Asks the broker's driver for a wake-up at the request's deadline.
    ///
    /// The driver holds the runtime strongly until the deadline, or until `finish()` (topic
    /// deletion, shutdown) cancels its wake-ups. Not weakly: a weak reference gives the runtime a
    /// side table, and from then on every retain and release of it, one per delivery, takes the
    /// runtime's slow path (perf: 9% of the manual-ack benchmark).
    private func arm(_ request: TimerRequest) {
        driver.schedule(.topic(self, generation: request.generation), at: request.deadline)
    }

    /// The driver's wake-up came. Through withState like every other event, so a timer-driven
    /// change (an expiry that dead-letters the last in-flight message) also wakes a shutdown
    /// waiting for idle.
    func timerFired(generation: UInt64) {
        withState { state, now in ((), state.timerFired(generation: generation, now: now)) }
    }

    func cancelTimer() {
        driver.cancel(self)
    }

    /// Replaces the topic's metadata; a durable topic's is committed before this returns.
    func setMetadata(_ metadata: [String: String]) async throws(OpenQError) {
        if shared != nil {
            throw unsupportedOnShared(
                "setMetadata", "a shared topic's metadata is the one it was created with, for now")
        }
        let mark = journalMark
        withState { state, _ in
            state.setMetadata(metadata)
            return ((), Effects())
        }
        if isDurable { try await syncJournal(since: mark) }
    }

}

/// What makes a topic durable: its store, how its payloads become bytes, and how a stored row
/// becomes a record of the topic's payload type again (`decode(row, topic name)`).
struct DurableBinding: Sendable {
    let store: any DurableStore
    /// The name the store keeps the payload type under (`String(reflecting:)`).
    let payloadTypeName: String
    let encode: @Sendable (MessageRecord, Int) throws -> [UInt8]
    let decode: @Sendable (StoredMessageRow, String) throws -> MessageRecord
}
