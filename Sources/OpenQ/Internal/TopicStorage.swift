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
final class TopicStorage: Sendable {
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
    private let deadLetterTargetBox: LockedValueBox<TopicStorage?>
    var deadLetterTarget: TopicStorage? { deadLetterTargetBox.withLock { $0 } }
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
    /// The broker's background loop: it fires this topic's timer and runs its consumers.
    let driver: BrokerDriver
    /// The broker's interceptors (``MessageInterceptor``), usually none.
    @usableFromInline let interceptors: [any MessageInterceptor]
    /// A durable topic's store (its journal); `nil` for an in-memory topic.
    let store: (any DurableStore)?
    /// How a durable topic's payloads become bytes and back; `nil` for an in-memory topic. A
    /// dead-letter topic created for it later (a policy changed at run time) uses the same.
    let durableBinding: DurableBinding?
    /// Whether the topic is durable: calls that change its state wait for their commit.
    @usableFromInline let isDurable: Bool
    /// A durable topic's payload encoder (every message of a record), run before the lock.
    private let encodeRecord: (@Sendable (MessageRecord) throws -> [[UInt8]])?

    init(
        name: String,
        payloadType: Any.Type,
        configuration: TopicConfiguration,
        clock: BrokerClock,
        driver: BrokerDriver,
        logger: Logger,
        deadLetterTarget: TopicStorage?,
        seed: UInt64 = .random(in: .min ... .max),
        parkedPublisherWarning: Duration? = nil,
        interceptors: [any MessageInterceptor] = [],
        durable: DurableBinding? = nil
    ) {
        self.interceptors = interceptors
        self.store = durable?.store
        self.durableBinding = durable
        self.isDurable = durable != nil
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
        let (result, effects, idle, drained) = state.withLock { state in
            let (result, effects) = body(&state, now)
            // Only a shutting-down topic has idle waiters, and only a topic someone waits on to
            // drain has drain waiters: the common path pays two comparisons.
            let idle = state.isOpen ? [] : state.takeIdleWaitersIfIdle()
            let drained = state.drainWaiters.isEmpty ? [] : state.takeFinishedDrainWaiters()
            return (result, effects, idle, drained)
        }
        if !effects.isEmpty { perform(effects) }
        for waiter in idle { waiter.resume() }
        for (continuation, outcome) in drained { continuation.resume(returning: outcome) }
        return result
    }

    /// `withState` for a durable topic: the decisions the event journaled go to the store before
    /// the lock is released, so the journal holds them in the order the state machine made them.
    private func withJournaledState<Result>(_ body: (inout StateMachine, Duration) -> (Result, Effects)) -> Result {
        let now = clock.now()
        let (result, effects, idle, drained, pageIns) = state.withLock { state in
            let (result, effects) = body(&state, now)
            if let store, let entries = state.journal?.take(), !entries.isEmpty, !state.isFinished {
                store.append(topic: name, entries)
            }
            var pageIns: [PageInRequest] = []
            if !(state.journal?.pageIns.isEmpty ?? true) { swap(&pageIns, &state.journal!.pageIns) }
            let idle = state.isOpen ? [] : state.takeIdleWaitersIfIdle()
            let drained = state.drainWaiters.isEmpty ? [] : state.takeFinishedDrainWaiters()
            return (result, effects, idle, drained, pageIns)
        }
        for request in pageIns { readPage(request) }
        if !effects.isEmpty { perform(effects) }
        for waiter in idle { waiter.resume() }
        for (continuation, outcome) in drained { continuation.resume(returning: outcome) }
        return result
    }

    /// Reads a page that a paging subscription asked for (see `TopicStateMachine+Paging`), once
    /// everything journaled before is committed, and hands it to the state machine. Payloads that
    /// no longer decode go to the store's quarantine. A failed read is asked for again after a
    /// pause (the store may be faulty for a while).
    private func readPage(_ request: PageInRequest) {
        guard let store, let binding = durableBinding else { return }
        let topic = name
        let payloadType = payloadType
        Task {
            do {
                try await store.sync(since: store.journalMark)
                var page: [(sequence: UInt64, message: StoredMessage?)] = []
                for row in try await store.readPage(topic: topic, request) {
                    do {
                        page.append((row.sequence, StoredMessage(try binding.decode(row, topic))))
                    } catch {
                        page.append((row.sequence, nil))
                        try? await store.quarantine(
                            topic: topic, sequence: row.sequence, payload: row.payload,
                            reason: "the payload no longer decodes as \(payloadType): \(error)")
                        withState { state, _ in
                            state.counters.quarantined += 1
                            return ((), Effects())
                        }
                    }
                }
                withState { state, now in ((), state.pagedIn(request, rows: page, now: now)) }
            } catch {
                withState { state, _ in
                    state.pageInFailed(request)
                    return ((), Effects())
                }
                try? await Task.sleep(for: .milliseconds(100))
                withState { state, _ in
                    state.requestPageIns()
                    return ((), Effects())
                }
            }
        }
    }

    func perform(_ effects: consuming Effects) {
        let deadLetters = effects.deadLetters
        let timerRequest = effects.armTimer
        let warnings = effects.warnings
        effects.resumeAll()
        for warning in warnings { log(warning) }
        if !deadLetters.isEmpty { forwardDeadLetters(deadLetters) }
        if let timerRequest { arm(timerRequest) }
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
    var journalMark: UInt64 { isDurable ? store.unsafelyUnwrapped.journalMark : 0 }

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

    // MARK: Settling deliveries (non-generic entry points for the typed Delivery)

    @usableFromInline
    func ack(_ subscription: SubscriptionID, tag: UInt64) throws(OpenQError) {
        try withState { state, now in state.ack(subscription, tag: tag, now: now) }.get()
    }

    /// Acknowledges several deliveries of one subscription under one lock acquisition.
    @usableFromInline
    func ack(_ subscription: SubscriptionID, tags: [UInt64]) -> [OpenQError?] {
        withState { state, now in state.ack(subscription, tags: tags, now: now) }
    }

    @usableFromInline
    func nack(_ subscription: SubscriptionID, tag: UInt64, retryAfter: Duration?, error: String?) throws(OpenQError) {
        try withState { state, now in
            state.nack(subscription, tag: tag, retryAfter: retryAfter, error: error, now: now)
        }.get()
    }

    @usableFromInline
    func extendVisibility(_ subscription: SubscriptionID, tag: UInt64, by duration: Duration) throws(OpenQError) {
        try withState { state, now in state.extendVisibility(subscription, tag: tag, by: duration, now: now) }.get()
    }

    @usableFromInline
    func reject(_ subscription: SubscriptionID, tag: UInt64, reason: String) throws(OpenQError) {
        try withState { state, now in state.reject(subscription, tag: tag, reason: reason, now: now) }.get()
    }

    func statistics() -> TopicStatistics {
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
    /// The driver holds the storage strongly until the deadline, or until `finish()` (topic
    /// deletion, shutdown) cancels its wake-ups. Not weakly: a weak reference gives the storage a
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
        let mark = journalMark
        withState { state, _ in
            state.setMetadata(metadata)
            return ((), Effects())
        }
        if isDurable { try await syncJournal(since: mark) }
    }

    // MARK: Dead letters

    /// Changes the dead-letter policy and where dead letters go, together under the topic's lock;
    /// a durable topic's new configuration is committed before this returns.
    func setDeadLetterPolicy(_ policy: DeadLetterPolicy, target: TopicStorage?) async throws(OpenQError) {
        let mark = journalMark
        withState { state, _ in
            state.setDeadLetterPolicy(policy)
            deadLetterTargetBox.withLock { $0 = target }
            return ((), Effects())
        }
        if isDurable { try await syncJournal(since: mark) }
    }

    /// Journals that dead-lettered copies left their subscriptions (read from the headers the
    /// dead-letter copy carries).
    private func journalDeadLettered(_ messages: [StoredMessage]) {
        guard let store else { return }
        let entries = messages.compactMap { message -> JournalEntry? in
            guard let subscription = message.headers[MessageHeader.sourceSubscription],
                let attempts = message.headers[MessageHeader.attempts].flatMap({ Int($0) })
            else { return nil }
            return .deadLettered(
                subscription: subscription, sequence: message.record.origin?.sequenceNumber ?? message.sequenceNumber,
                attempts: attempts)
        }
        if !entries.isEmpty { store.append(topic: name, entries) }
    }

    private func forwardDeadLetters(_ messages: [StoredMessage]) {
        guard let deadLetterTarget else {
            journalDeadLettered(messages)
            logger.warning(
                "Discarded rejected messages: the topic has no dead-letter topic",
                metadata: ["topic": "\(name)", "count": "\(messages.count)"]
            )
            return
        }
        // Each dead letter is a one-message copy (`StoredMessage.withHeaders`), so its record is
        // the whole request.
        let requests = messages.map { PublishRequest($0.record) }
        let accepted = deadLetterTarget.withState { state, now in state.acceptDeadLetters(requests, now: now) }
        // Only now, after the dead-letter topic journaled them, do the copies leave this topic's
        // store: a crash in between keeps both (at least once), never neither.
        if accepted { journalDeadLettered(messages) }
        if !accepted {
            logger.error(
                "Dead-letter topic is shut down; dead letters were not stored",
                metadata: [
                    "topic": "\(name)", "deadLetterTopic": "\(deadLetterTarget.name)", "count": "\(messages.count)",
                ]
            )
        }
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
