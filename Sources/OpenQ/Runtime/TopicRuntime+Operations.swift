// The topic's operations as the public shells call them: the one place an operation journals and waits.

/// The operations of a topic, as ``Topic``, ``Subscription``, ``Delivery`` and ``Consumer`` call
/// them: the shells only forward here, and never touch the state machine.
///
/// Each operation decides under the topic's lock (its event in the ``TopicStateMachine``, its
/// effects performed after unlocking) and, on a durable topic, returns once what it journaled is
/// committed: ``committed(_:)`` is the one place that reads the journal's mark and waits for the
/// commit. On an in-memory topic that is one test of a stored flag; the wrappers are
/// `@inlinable`, so a shell's call compiles to the in-memory decision directly.
///
/// This is the seam a topic's backends share: the in-process engine (memory, and SQLite through
/// the journal) implements it here; a backend whose database decides who gets which message
/// implements the same operations.
extension TopicRuntime {
    /// Runs `decide` and, on a durable topic, waits until everything it journaled is committed.
    /// The wait cannot be cancelled: the decision is made, and reporting a committed call as
    /// failed would be wrong (see `DurableStore.sync(since:)`).
    @inlinable
    nonisolated(nonsending) func committed<Result>(
        _ decide: () throws(OpenQError) -> Result
    ) async throws(OpenQError) -> Result {
        guard isDurable else { return try decide() }
        let mark = journalMark
        let result = try decide()
        try await syncJournal(since: mark)
        return result
    }

    // MARK: Settling deliveries

    /// Acknowledges a delivery (``Delivery/ack()``).
    @inlinable
    nonisolated(nonsending) func ack(_ subscription: SubscriptionID, tag: UInt64) async throws(OpenQError) {
        if isDurable, let shared {
            if let error = try await ackShared([tag], shared)[0] { throw error }
            return
        }
        try await committed { () throws(OpenQError) in try ackNow(subscription, tag: tag) }
    }

    /// Acknowledges several deliveries of one subscription under one lock acquisition
    /// (``Subscription/ack(_:)``).
    /// - Returns: each delivery's failure, in order (`nil`: acknowledged), or the commit's failure,
    ///   which fails them all (none of them counts as acknowledged).
    @inlinable
    nonisolated(nonsending) func ack(
        _ subscription: SubscriptionID, tags: [UInt64]
    ) async -> Result<[OpenQError?], OpenQError> {
        do throws(OpenQError) {
            if isDurable, let shared { return .success(try await ackShared(tags, shared)) }
            return .success(try await committed { () throws(OpenQError) in acksNow(subscription, tags: tags) })
        } catch {
            return .failure(error)
        }
    }

    /// Makes a delivery visible again after `retryAfter` (``Delivery/nack(retryAfter:error:)``).
    @inlinable
    nonisolated(nonsending) func nack(
        _ subscription: SubscriptionID, tag: UInt64, retryAfter: Duration?, error: String?
    ) async throws(OpenQError) {
        if isDurable, let shared {
            return try await failShared(tag, retryAfter: retryAfter, error: error, reject: false, shared)
        }
        try await committed { () throws(OpenQError) in
            try nackNow(subscription, tag: tag, retryAfter: retryAfter, error: error)
        }
    }

    /// Sends a delivery to the dead-letter topic (``Delivery/reject(reason:)``).
    @inlinable
    nonisolated(nonsending) func reject(
        _ subscription: SubscriptionID, tag: UInt64, reason: String
    ) async throws(OpenQError) {
        if isDurable, let shared {
            return try await failShared(tag, retryAfter: .zero, error: reason, reject: true, shared)
        }
        try await committed { () throws(OpenQError) in try rejectNow(subscription, tag: tag, reason: reason) }
    }

    @usableFromInline
    func ackNow(_ subscription: SubscriptionID, tag: UInt64) throws(OpenQError) {
        try withState { state, now in state.ack(subscription, tag: tag, now: now) }.get()
    }

    @usableFromInline
    func acksNow(_ subscription: SubscriptionID, tags: [UInt64]) -> [OpenQError?] {
        withState { state, now in state.ack(subscription, tags: tags, now: now) }
    }

    @usableFromInline
    func nackNow(_ subscription: SubscriptionID, tag: UInt64, retryAfter: Duration?, error: String?) throws(OpenQError)
    {
        try withState { state, now in
            state.nack(subscription, tag: tag, retryAfter: retryAfter, error: error, now: now)
        }.get()
    }

    @usableFromInline
    func rejectNow(_ subscription: SubscriptionID, tag: UInt64, reason: String) throws(OpenQError) {
        try withState { state, now in state.reject(subscription, tag: tag, reason: reason, now: now) }.get()
    }

    /// Extends a delivery's visibility (``Delivery/extendVisibility(by:)``); on a shared topic in
    /// the database, by its clock.
    @usableFromInline
    nonisolated(nonsending) func extend(
        _ subscription: SubscriptionID, tag: UInt64, by duration: Duration
    ) async throws(OpenQError) {
        if isDurable, let shared { return try await extendShared(tag, by: duration, shared) }
        try extendVisibility(subscription, tag: tag, by: duration)
    }

    /// Extends a delivery's visibility in this process. Not journaled: a lease ends with its
    /// process.
    @usableFromInline
    func extendVisibility(_ subscription: SubscriptionID, tag: UInt64, by duration: Duration) throws(OpenQError) {
        try withState { state, now in state.extendVisibility(subscription, tag: tag, by: duration, now: now) }.get()
    }

    // MARK: Subscriptions

    /// Creates the named subscription, or finds it when it exists with the same configuration;
    /// a durable topic's subscription at a past position gets the retained messages replayed.
    func subscribe(named name: String, configuration: SubscriptionConfiguration) async throws(OpenQError)
        -> SubscriptionID
    {
        if let shared { return try await subscribeShared(named: name, configuration: configuration, shared) }
        let id = try await committed { () throws(OpenQError) in
            try ensureSubscription(name, configuration: configuration)
        }
        // A durable topic replays retained messages from its store.
        if isDurable { _ = try await completeReplay(id) }
        return id
    }

    /// Removes a subscription (``Subscription/delete()``, ``Topic/unsubscribe(_:)``).
    func unsubscribe(_ id: SubscriptionID) async throws(OpenQError) {
        if let shared { return try await unsubscribeShared(id, shared) }
        try await committed { () throws(OpenQError) in removeSubscription(id) }
    }

    /// Removes a subscription without waiting for its commit (an anonymous one going with its
    /// last handle).
    func removeSubscription(_ id: SubscriptionID) {
        withState { state, now in ((), state.removeSubscription(id, now: now)) }
    }

    /// The id of a subscription by name; `nil` when there is none.
    func subscriptionID(named name: String) -> SubscriptionID? {
        state.withLock { $0.subscriptionID(named: name) }
    }

    /// The names of the topic's subscriptions (anonymous ones included).
    var subscriptionNames: [String] {
        state.withLock { $0.subscriptions.map(\.name) }
    }

    /// A subscription's name and configuration; `nil` once it was removed.
    func subscription(_ id: SubscriptionID) -> (name: String, configuration: SubscriptionConfiguration)? {
        state.withLock { state in state.subscription(id).map { ($0.name, $0.configuration) } }
    }

    /// Changes a subscription's visibility timeout for the deliveries made from now on.
    func setVisibilityTimeout(_ id: SubscriptionID, _ timeout: Duration) async throws(OpenQError) {
        if shared != nil {
            throw unsupportedOnShared(
                "setVisibilityTimeout", "every broker of the database reads a subscription's timeout; not yet shared")
        }
        try await committed { () throws(OpenQError) in
            try withState { state, _ in (state.setVisibilityTimeout(id, timeout), Effects()) }.get()
        }
    }

    // MARK: Maintenance

    /// Removes what a subscription (`nil`: every subscription) holds, but what is in flight.
    /// - Returns: how many messages were removed.
    func purge(_ id: SubscriptionID?) async throws(OpenQError) -> Int {
        if shared != nil { throw unsupportedOnShared("purge", "not yet written as a statement of the database") }
        return try await committed { () throws(OpenQError) in
            try withState { state, now in state.purge(id, now: now) }.get()
        }
    }

    /// Moves a subscription's cursor; a durable topic replays from its store.
    /// - Returns: how many messages the seek enqueued.
    func seek(_ id: SubscriptionID, to position: StartPosition) async throws(OpenQError) -> Int {
        if shared != nil { throw unsupportedOnShared("seek", "a shared topic keeps no history yet") }
        let enqueued = try await committed { () throws(OpenQError) in
            try withState { state, now in state.seek(id, to: position, now: now) }.get()
        }
        if isDurable { return try await completeReplay(id) }
        return enqueued
    }

    // MARK: Consumers

    /// Registers a consumer of a subscription; `nil` when the subscription is gone.
    func registerConsumer(_ id: SubscriptionID) -> ConsumerID? {
        state.withLock { $0.registerConsumer(id) }
    }

    /// A consumer ended: its deliveries are visible again at once, the messages it took and never
    /// handed out (`unhanded`) get their attempt back.
    func consumerEnded(_ id: SubscriptionID, consumer: ConsumerID, unhanded: [HandedMessage]) {
        if let shared { sharedConsumerEnded(consumer, unhanded: unhanded, shared) }
        withState { state, now in ((), state.consumerEnded(id, consumer: consumer, unhanded: unhanded, now: now)) }
    }

    /// Extends the leases of a consumer's deliveries, up to `maximum` after each delivery.
    func extendLeases(_ id: SubscriptionID, consumer: ConsumerID, maximum: Duration) {
        if let shared { return extendSharedLeases(consumer, maximum: maximum, shared) }
        withState { state, now in ((), state.extendLeases(id, consumer: consumer, maximum: maximum, now: now)) }
    }
}
