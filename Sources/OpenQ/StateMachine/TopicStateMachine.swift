// The delivery state machine: its state, the lifecycle enum, and subscription management; a plain struct.

import DequeModule
import HeapModule

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

@usableFromInline typealias SubscriptionID = Int
typealias ConsumerID = UInt64

/// The delivery state machine of one topic: its subscriptions, their backlogs and in-flight
/// deliveries, suspended publishers and consumers, and the deadline heap.
///
/// A plain struct: no locks, no `async`, no clock reads. Every event takes the current time as an
/// argument and returns what the caller must do once it has released the lock (``Effects``).
/// ``TopicRuntime`` owns one behind a lock; the tests drive it directly, event by state.
///
/// Time is a `Duration` since the broker's epoch (the clock reading when the broker was created);
/// `epoch` converts it to the wall-clock `Date` stamped on messages.
///
/// The events, one family per file, each with the partners of a two-phase wait where it can wait:
///
/// | file | events |
/// | --- | --- |
/// | this file | `addSubscription`, `removeSubscription`, `registerConsumer` |
/// | `+Publishing` | `publish`, `publishSuspended`, `publishCancelled`, `tryPublish` |
/// | `+Receiving` | `receive`, `receiveSuspended`, `receiveCancelled`, `consumerEnded` |
/// | `+Settlement` | `ack`, `nack`, `reject`, `extendVisibility`, `extendLeases` |
/// | `+Deadlines` | `timerFired`, `processDue` (visibility, delays, long polls, parked publishers) |
/// | `+Maintenance` | `seek`, `purge`, `drain` / `restore` / `enqueue` (redrive), `acceptDeadLetters`, drain waiters |
/// | `+Shutdown` | `beginShutdown`, `finish`, idle waiters, `collectWaiters` after every event |
/// | `+Statistics` | `statistics` |
///
/// A durable topic's events also journal their decisions and page, in `Durability/`:
///
/// | file | what |
/// | --- | --- |
/// | `Durability/TopicStateMachine+Journal` | the journal: each decision recorded as it is made |
/// | `Durability/TopicStateMachine+Recovery` | `recover`: subscriptions rebuilt from the store's copies |
/// | `Durability/TopicStateMachine+Paging` | `pagedIn`, `pageInFailed`, `requestPageIns`, replays counted |
///
/// To add an event: write it as a `mutating func` returning its result and ``Effects`` (never
/// resume, log or call user code here), add a synchronous test event by state in
/// `TopicStateMachineTests`, and call it from ``TopicRuntime`` through `withState`.
struct TopicStateMachine {
    typealias Continuation = UnsafeContinuation<WakeResult, Never>
    typealias PublisherContinuation = UnsafeContinuation<PublishReceipt, any Error>

    // MARK: Nested types

    /// One message as held by one subscription. The message itself is shared by every
    /// subscription that holds it (fan-out copies a reference, not the message).
    ///
    /// 40 bytes, pinned by a layout test: in-flight and retry tables hold one per message. The
    /// attempt count sits in the tail of ``PublishedMessage``; the first delivery time is seconds of
    /// the broker's clock as a `Double` (NaN for none), which turns into a `Date` by one addition
    /// (a `Duration?` made it 64 bytes, and its conversions through `Duration.components`, a
    /// 128-bit division, cost the nack row about 12 %).
    struct Pending {
        var stored: PublishedMessage
        private var storedAttempts: UInt32
        var lastError: String?
        /// When the subscription first handed it out, in seconds of the broker's clock; NaN before.
        var firstDeliveredSeconds: Double

        init(stored: PublishedMessage, attempts: Int, lastError: String?, firstDeliveredAt: Duration? = nil) {
            self.stored = stored
            self.storedAttempts = UInt32(clamping: attempts)
            self.lastError = lastError
            self.firstDeliveredSeconds = firstDeliveredAt.map { $0 / .seconds(1) } ?? .nan
        }

        /// Deliveries made so far (saturates at `UInt32.max`).
        var attempts: Int {
            get { Int(storedAttempts) }
            set { storedAttempts = UInt32(clamping: newValue) }
        }

    }

    struct InFlight {
        var pending: Pending
        var consumer: ConsumerID?
        var deliveredAt: Duration
        var deadline: Duration
    }

    struct Scheduled {
        var pending: Pending
        var visibleAt: Duration
    }

    struct Waiter {
        var id: UInt64
        var consumer: ConsumerID?
        var max: Int
        var continuation: Continuation
        var pollDeadline: Duration?
        /// The visibility timeout this receive asked for instead of the subscription's.
        var visibilityTimeout: Duration?
    }

    struct BlockedPublisher {
        var id: UInt64
        var requests: [PublishRequest]
        var continuation: PublisherContinuation
    }

    typealias ReceiptFate = ReceiptFates.Fate

    struct SubscriptionState {
        let id: SubscriptionID
        let name: String
        var configuration: SubscriptionConfiguration
        let isAnonymous: Bool
        var capacity: Int
        var overflow: OverflowPolicy

        var retries: Deque<Pending> = []
        /// Messages waiting for their first delivery; their attempt count is 0 and they have no
        /// error yet, so the queue holds just the messages, in runs of consecutive ones.
        var ready = ReadyQueue()
        var scheduled: [UInt64: Scheduled] = [:]
        var inFlight: [UInt64: InFlight] = [:]
        var fates = ReceiptFates()
        var nextTag: UInt64 = 1
        var nextScheduleKey: UInt64 = 1
        var waiters: Deque<Waiter> = []
        var consumers: Set<ConsumerID> = []
        var counters = SubscriptionCounters()
        /// The messages a durable topic's subscription keeps in the store only (see
        /// `TopicStateMachine+Paging`); empty otherwise.
        var paging = Paging()

        var tracksDeliveries: Bool { configuration.acknowledgement.tracksDeliveries }
        var visibleCount: Int { retries.count + ready.count }
        var backlog: Int { retries.count + ready.count + scheduled.count + inFlight.count + paging.stored }

        mutating func popVisible() -> Pending? {
            if let retry = retries.popFirst() { return retry }
            return ready.popFirst().map { Pending(stored: $0, attempts: 0, lastError: nil) }
        }

        /// Removes the messages that wait (visible, scheduled or stored); returns how many.
        mutating func purgeWaiting() -> Int {
            let removed = retries.count + ready.removeAll() + scheduled.count + paging.removeAll()
            retries.removeAll()
            scheduled.removeAll()
            return removed
        }

        /// Removes every message, waiting, scheduled and in flight; returns how many.
        mutating func purgeAll() -> Int {
            var removed = purgeWaiting()
            for tag in inFlight.keys.sorted() { fates.record(.purged, tag: tag) }
            removed += inFlight.count
            inFlight.removeAll()
            return removed
        }

    }

    struct Deadline: Comparable {
        enum Kind {
            /// The visibility timeout of deliveries handed out together (consecutive tags, one
            /// deadline): one heap entry per batch, not per message.
            case visibility(SubscriptionID, tags: Range<UInt64>)
            case scheduled(SubscriptionID, key: UInt64)
            case poll(SubscriptionID, waiter: UInt64)
            /// A publisher parked by a full subscription has waited long enough to be reported.
            case parkedPublisher(UInt64)
        }

        var at: Duration
        var order: UInt64
        var kind: Kind

        static func < (lhs: Self, rhs: Self) -> Bool { (lhs.at, lhs.order) < (rhs.at, rhs.order) }
        static func == (lhs: Self, rhs: Self) -> Bool { lhs.at == rhs.at && lhs.order == rhs.order }
    }

    /// Where the topic is in its life. Publishing needs `open`; consumers receive and settle in
    /// `open` and `draining`; `finished` ends every sequence.
    enum Lifecycle {
        case open
        /// Shutting down: publishes fail, consumers go on until the topic is idle (see ``isIdle``)
        /// or the broker's grace period ends.
        case draining(DrainState)
        case finished
    }

    /// What a draining topic keeps: when the grace period ends, and who waits for idleness.
    struct DrainState {
        /// The end of the grace period: a delayed message or a retry due later than this does
        /// not hold the shutdown.
        var deadline: Duration
        var idleWaiters: [UInt64: UnsafeContinuation<Void, Never>] = [:]
        /// Shutdown waiters cancelled before they were stored (the cancellation handler can run
        /// first); `addIdleWaiter` must then resume at once instead of waiting forever.
        var cancelledIdleWaiters: Set<UInt64> = []
    }

    /// A suspension reserved in the first phase of a two-phase wait (a receive or a publish that
    /// must wait), before its continuation is stored in the second.
    enum Reservation {
        case reserved
        /// The task was cancelled between the phases: the second phase resumes at once with
        /// cancellation (unless the topic finished meanwhile, which wins: shutdown is reported as
        /// shutdown, never as cancellation).
        case cancelled
    }

    // MARK: State

    let topic: String
    /// The topic's configuration; only its dead-letter policy and metadata change after creation
    /// (``setDeadLetterPolicy(_:)``, ``setMetadata(_:)``).
    var configuration: TopicConfiguration
    let epoch: Date

    var subscriptions: [SubscriptionState] = []
    var nextSubscriptionID: SubscriptionID = 1
    var nextSequence: UInt64 = 1
    var nextWaiterID: UInt64 = 1
    var nextConsumerID: ConsumerID = 1
    var nextPublisherID: UInt64 = 1
    var pendingWaiters: [UInt64: Reservation] = [:]
    var pendingPublishers: [UInt64: Reservation] = [:]
    var blockedPublishers: Deque<BlockedPublisher> = []
    var retained: Deque<PublishedMessage> = []
    var deadlines = Heap<Deadline>()
    var deadlineOrder: UInt64 = 0
    var pushesSinceCompaction = 0
    var armedDeadline: Duration?
    var timerGeneration: UInt64 = 0
    var random: SplitMix64
    var lifecycle = Lifecycle.open
    /// The latest publish time stamped: publish times never go backwards against sequence numbers
    /// (time is read before the lock is taken, so a later publisher can bring an earlier reading).
    var lastPublishTime: Duration = .zero
    var counters = TopicCounters()
    /// Counters of removed subscriptions, so topic totals still add up.
    var removedCounters = SubscriptionCounters()

    /// After how long a publisher parked by a full subscription is reported (a warning, at most
    /// one per topic per this interval); `nil` for never.
    let parkedPublisherWarning: Duration?
    var lastParkedWarning: Duration?
    /// A durable topic's journal of decisions; `nil` for an in-memory topic.
    var journal: Journal?
    /// How many messages waiting for their first delivery a named subscription of a durable
    /// topic keeps in memory; the others wait in the store (`TopicStateMachine+Paging`). `.max`:
    /// all (in-memory topics).
    var residentLimit = Int.max
    /// A durable topic's first retained sequence number by the retention count (its store keeps
    /// the history: statistics only).
    var retainedSince: UInt64 = 1
    /// Who waits for a subscription to drain (``Subscription/waitUntilDrained()``).
    var drainWaiters: [UInt64: DrainWaiter] = [:]
    var cancelledDrainWaiters: Set<UInt64> = []

    init(
        topic: String,
        configuration: TopicConfiguration,
        epoch: Date,
        seed: UInt64,
        parkedPublisherWarning: Duration? = nil
    ) {
        self.topic = topic
        self.configuration = configuration
        self.epoch = epoch
        self.random = SplitMix64(seed: seed)
        self.parkedPublisherWarning = parkedPublisherWarning
    }

    func date(at time: Duration) -> Date { epoch.addingTimeInterval(time.seconds) }

    /// When a pending message was first handed out, as a date; `nil` before.
    func firstDeliveryDate(of pending: Pending) -> Date? {
        pending.firstDeliveredSeconds.isNaN ? nil : epoch.addingTimeInterval(pending.firstDeliveredSeconds)
    }

    /// True while the topic accepts publishes.
    var isOpen: Bool {
        if case .open = lifecycle { return true }
        return false
    }

    /// True once every consumer sequence was ended (shutdown or deletion).
    var isFinished: Bool {
        if case .finished = lifecycle { return true }
        return false
    }

    // MARK: Subscriptions

    func subscriptionID(named name: String) -> SubscriptionID? {
        subscriptions.first { $0.name == name }?.id
    }

    func subscription(_ id: SubscriptionID) -> SubscriptionState? {
        subscriptions.first { $0.id == id }
    }

    func index(of id: SubscriptionID) -> Int? {
        subscriptions.firstIndex { $0.id == id }
    }

    /// Adds a subscription, or returns the existing one of that name if its configuration matches.
    mutating func addSubscription(
        name: String,
        configuration: SubscriptionConfiguration,
        isAnonymous: Bool,
        now: Duration
    ) -> Result<SubscriptionID, OpenQError> {
        guard isOpen else { return .failure(.shutDown("Topic '\(topic)'")) }
        if let existing = subscriptions.first(where: { $0.name == name }) {
            guard existing.configuration == configuration, !isAnonymous else {
                return .failure(
                    OpenQError(
                        .subscriptionAlreadyExists,
                        "Topic '\(topic)' already has a subscription '\(name)' with \(existing.configuration); "
                            + "use the same configuration or another name."
                    )
                )
            }
            return .success(existing.id)
        }
        let id = nextSubscriptionID
        nextSubscriptionID += 1
        var subscription = SubscriptionState(
            id: id,
            name: name,
            configuration: configuration,
            isAnonymous: isAnonymous,
            capacity: configuration.backlog?.capacity ?? self.configuration.capacity,
            overflow: configuration.backlog?.overflow ?? self.configuration.overflow
        )
        replay(into: &subscription, from: configuration.start, now: now)
        subscriptions.append(subscription)
        if _slowPath(journal != nil), !isAnonymous {
            journal!.entries.append(.subscriptionCreated(name: name, configuration: configuration))
            // A durable topic's history is in its store: the replay happens there.
            journalReplay(subscriptions.count - 1, from: configuration.start, now: now)
        }
        return .success(id)
    }

    /// Removes a subscription: its backlog is purged, its consumers end, and publishers waiting
    /// for its room go on.
    mutating func removeSubscription(_ id: SubscriptionID, now: Duration) -> Effects {
        var effects = Effects()
        guard let index = index(of: id) else { return effects }
        if isJournaled(index) { journal!.entries.append(.subscriptionRemoved(name: subscriptions[index].name)) }
        var subscription = subscriptions.remove(at: index)
        let removed = subscription.purgeAll()
        subscription.counters.purged += removed
        for waiter in subscription.waiters {
            effects.resume(waiter.continuation, with: .finished)
        }
        removedCounters.add(subscription.counters)
        serveBlockedPublishers(now: now, effects: &effects)
        return effects
    }

    /// Changes a subscription's visibility timeout for the deliveries made from now on.
    mutating func setVisibilityTimeout(_ id: SubscriptionID, _ timeout: Duration) -> Result<Void, OpenQError> {
        guard timeout > .zero else {
            return .failure(.invalidConfiguration("A visibility timeout must be positive; it was \(timeout)."))
        }
        guard let index = index(of: id) else { return .failure(subscriptionGone(id)) }
        let mode = subscriptions[index].configuration.acknowledgement
        guard mode.tracksDeliveries else {
            return .failure(
                .invalidConfiguration(
                    "Subscription '\(subscriptions[index].name)' acknowledges automatically: it has no visibility timeout."
                ))
        }
        subscriptions[index].configuration.acknowledgement = AcknowledgementMode(
            kind: mode.kind, visibilityTimeout: timeout)
        if isJournaled(index) {
            journal!.entries.append(
                .subscriptionCreated(name: subscriptions[index].name, configuration: subscriptions[index].configuration)
            )
        }
        return .success(())
    }

    /// Changes the dead-letter policy: the next failed delivery is judged by it (deliveries that
    /// already used more attempts than the new bound are dead-lettered at their next failure).
    mutating func setDeadLetterPolicy(_ policy: DeadLetterPolicy) {
        configuration.deadLetter = policy
        if _slowPath(journal != nil) { journal!.entries.append(.topicConfigured(configuration)) }
    }

    /// Replaces the topic's metadata (OpenQ never reads it).
    mutating func setMetadata(_ metadata: [String: String]) {
        configuration.metadata = metadata
        if _slowPath(journal != nil) { journal!.entries.append(.topicConfigured(configuration)) }
    }

    mutating func registerConsumer(_ subscriptionID: SubscriptionID) -> ConsumerID? {
        guard let index = index(of: subscriptionID), !isFinished else { return nil }
        let id = nextConsumerID
        nextConsumerID += 1
        subscriptions[index].consumers.insert(id)
        return id
    }
}
