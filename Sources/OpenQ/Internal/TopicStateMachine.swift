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
/// ``TopicStorage`` owns one behind a lock; the tests drive it directly, event by state.
///
/// Time is a `Duration` since the broker's epoch (the clock reading when the broker was created);
/// `epoch` converts it to the wall-clock `Date` stamped on messages.
struct TopicStateMachine {
    typealias Continuation = UnsafeContinuation<WakeResult, Never>
    typealias PublisherContinuation = UnsafeContinuation<PublishReceipt, any Error>

    // MARK: Nested types

    /// One message as held by one subscription. The message itself is shared by every
    /// subscription that holds it (fan-out copies a reference, not the message).
    struct Pending {
        var stored: StoredMessage
        /// Deliveries made so far.
        var attempts: Int
        var lastError: String?
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
    }

    struct BlockedPublisher {
        var id: UInt64
        var requests: [PublishRequest]
        var continuation: PublisherContinuation
    }

    typealias ReceiptFate = ReceiptFates.Fate

    struct Subscription {
        let id: SubscriptionID
        let name: String
        let configuration: SubscriptionConfiguration
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

        var tracksDeliveries: Bool { configuration.acknowledgement.tracksDeliveries }
        var visibleCount: Int { retries.count + ready.count }
        var backlog: Int { retries.count + ready.count + scheduled.count + inFlight.count }

        mutating func popVisible() -> Pending? {
            if let retry = retries.popFirst() { return retry }
            return ready.popFirst().map { Pending(stored: $0, attempts: 0, lastError: nil) }
        }

        /// Removes the messages that wait (visible or scheduled); returns how many.
        mutating func purgeWaiting() -> Int {
            let removed = retries.count + ready.removeAll() + scheduled.count
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
    let configuration: TopicConfiguration
    let epoch: Date

    private(set) var subscriptions: [Subscription] = []
    private var nextSubscriptionID: SubscriptionID = 1
    private var nextSequence: UInt64 = 1
    /// The sequence number the next published message gets.
    var nextSequenceNumber: UInt64 { nextSequence }
    private var nextWaiterID: UInt64 = 1
    private var nextConsumerID: ConsumerID = 1
    private var nextPublisherID: UInt64 = 1
    private var pendingWaiters: [UInt64: Reservation] = [:]
    private var pendingPublishers: [UInt64: Reservation] = [:]
    private var blockedPublishers: Deque<BlockedPublisher> = []
    private(set) var retained: Deque<StoredMessage> = []
    private var deadlines = Heap<Deadline>()
    private var deadlineOrder: UInt64 = 0
    private var pushesSinceCompaction = 0
    private var armedDeadline: Duration?
    private var timerGeneration: UInt64 = 0
    private var random: SplitMix64
    private(set) var lifecycle = Lifecycle.open
    /// The latest publish time stamped: publish times never go backwards against sequence numbers
    /// (time is read before the lock is taken, so a later publisher can bring an earlier reading).
    private var lastPublishTime: Duration = .zero
    private(set) var counters = TopicCounters()
    /// Counters of removed subscriptions, so topic totals still add up.
    private var removedCounters = SubscriptionCounters()

    /// After how long a publisher parked by a full subscription is reported (a warning, at most
    /// one per topic per this interval); `nil` for never.
    let parkedPublisherWarning: Duration?
    private var lastParkedWarning: Duration?
    /// Who waits for a subscription to drain (``Subscription/waitUntilDrained()``).
    private(set) var drainWaiters: [UInt64: DrainWaiter] = [:]
    private var cancelledDrainWaiters: Set<UInt64> = []

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

    func subscription(_ id: SubscriptionID) -> Subscription? {
        subscriptions.first { $0.id == id }
    }

    private func index(of id: SubscriptionID) -> Int? {
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
        var subscription = Subscription(
            id: id,
            name: name,
            configuration: configuration,
            isAnonymous: isAnonymous,
            capacity: configuration.backlog?.capacity ?? self.configuration.capacity,
            overflow: configuration.backlog?.overflow ?? self.configuration.overflow
        )
        replay(into: &subscription, from: configuration.start, now: now)
        subscriptions.append(subscription)
        return .success(id)
    }

    /// Removes a subscription: its backlog is purged, its consumers end, and publishers waiting
    /// for its room go on.
    mutating func removeSubscription(_ id: SubscriptionID, now: Duration) -> Effects {
        var effects = Effects()
        guard let index = index(of: id) else { return effects }
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

    mutating func registerConsumer(_ subscriptionID: SubscriptionID) -> ConsumerID? {
        guard let index = index(of: subscriptionID), !isFinished else { return nil }
        let id = nextConsumerID
        nextConsumerID += 1
        subscriptions[index].consumers.insert(id)
        return id
    }

    // MARK: Publishing

    /// Assigns identity to the requests and decides whether they can be enqueued now.
    /// Generic over the collection so that a single publish passes a `CollectionOfOne` and
    /// allocates nothing; only a publisher that must wait copies its requests into an array.
    mutating func publish<Requests: Collection<PublishRequest>>(
        _ requests: Requests,
        now: Duration
    ) -> (PublishDecision, Effects) {
        var effects = Effects()
        processDue(now: now, effects: &effects)
        guard isOpen else { return (.failed(.shutDown("Topic '\(topic)'")), effects) }
        let count = Self.messageCount(requests)
        if !blockedPublishers.isEmpty {
            // A batch that can never fit is refused at once, even behind waiting publishers.
            if count > 1, let error = neverFits(count: count) {
                counters.rejected += count
                return (.failed(error), effects)
            }
            // Publishers already waiting for room go first.
            return (.mustWait(reserveBlockedPublisher()), effects)
        }
        switch evaluate(count: count) {
        case .fits:
            return (.accepted(commit(requests, now: now, effects: &effects)), effects)
        case .mustWait:
            return (.mustWait(reserveBlockedPublisher()), effects)
        case .reject(let error):
            counters.rejected += count
            return (.failed(error), effects)
        }
    }

    /// A non-suspending publish: under a `suspend` policy a full topic rejects instead of waiting.
    mutating func tryPublish(_ request: PublishRequest, now: Duration) -> (PublishResult, Effects) {
        let (decision, effects) = publish(CollectionOfOne(request), now: now)
        switch decision {
        case .accepted(let receipt):
            return (receipt.droppedNew > 0 ? .dropped(receipt) : .enqueued(receipt), effects)
        case .mustWait(let id):
            pendingPublishers[id] = nil
            counters.rejected += Self.messageCount(CollectionOfOne(request))
            return (.rejected, effects)
        case .failed(let error):
            return (error.code == .topicFull ? .rejected : .failed(error), effects)
        }
    }

    /// The number of messages in `requests` (a batch publish is one request).
    private static func messageCount(_ requests: some Collection<PublishRequest>) -> Int {
        requests.reduce(0) { $0 + $1.record.count }
    }

    private mutating func reserveBlockedPublisher() -> UInt64 {
        let id = nextPublisherID
        nextPublisherID += 1
        pendingPublishers[id] = .reserved
        return id
    }

    /// The second phase of a publish that must wait: re-checks under the lock and either enqueues
    /// at once or stores the continuation.
    mutating func suspendPublisher(
        _ id: UInt64,
        requests: [PublishRequest],
        continuation: PublisherContinuation,
        now: Duration
    ) -> Effects {
        var effects = Effects()
        let reservation = pendingPublishers.removeValue(forKey: id) ?? .cancelled
        // Shutdown wins over cancellation: a publisher racing shutdown learns that it was shut down.
        guard isOpen else {
            effects.resumePublisher(continuation, with: .failure(OpenQError.shutDown("Topic '\(topic)'")))
            return effects
        }
        if case .cancelled = reservation {
            effects.resumePublisher(continuation, with: .failure(CancellationError()))
            return effects
        }
        blockedPublishers.append(BlockedPublisher(id: id, requests: requests, continuation: continuation))
        serveBlockedPublishers(now: now, effects: &effects)
        if let parkedPublisherWarning, blockedPublishers.contains(where: { $0.id == id }) {
            pushDeadline(at: now + parkedPublisherWarning, .parkedPublisher(id), effects: &effects)
        }
        return effects
    }

    /// A parked publisher's warning is due: reports it, naming the full subscription, unless the
    /// publisher went on meanwhile or the topic warned less than one interval ago; while it stays
    /// parked, it is looked at again every interval.
    private mutating func warnAboutParkedPublisher(_ id: UInt64, now: Duration, effects: inout Effects) {
        guard let interval = parkedPublisherWarning,
            let publisher = blockedPublishers.first(where: { $0.id == id })
        else { return }
        // Still parked: look again one interval from now (a warning per interval while it waits).
        pushDeadline(at: now + interval, .parkedPublisher(id), effects: &effects)
        if let last = lastParkedWarning, now - last < interval { return }
        lastParkedWarning = now
        let count = Self.messageCount(publisher.requests)
        let full = subscriptions.first { $0.overflow == .suspend && $0.backlog + count > $0.capacity }
        effects.warnings.append(
            ParkedPublisherWarning(
                topic: topic,
                subscription: full?.name ?? "?",
                depth: full?.backlog ?? 0,
                capacity: full?.capacity ?? 0,
                consumers: full.map { $0.consumers.count + $0.waiters.count } ?? 0,
                parkedPublishers: blockedPublishers.count,
                waited: interval
            )
        )
    }

    mutating func cancelPublisher(_ id: UInt64) -> Effects {
        var effects = Effects()
        if pendingPublishers[id] != nil {
            pendingPublishers[id] = .cancelled
        } else if let index = blockedPublishers.firstIndex(where: { $0.id == id }) {
            let publisher = blockedPublishers.remove(at: index)
            effects.resumePublisher(publisher.continuation, with: .failure(CancellationError()))
        }
        return effects
    }

    private enum Evaluation {
        case fits
        case mustWait
        case reject(OpenQError)
    }

    /// The error for a batch larger than a suspending subscription's capacity, which waiting
    /// could never make room for; `nil` when every suspending subscription could take it.
    private func neverFits(count: Int) -> OpenQError? {
        for subscription in subscriptions where subscription.overflow == .suspend && count > subscription.capacity {
            return .invalidConfiguration(
                "A batch of \(count) messages can never fit subscription '\(subscription.name)' "
                    + "of topic '\(topic)' (capacity \(subscription.capacity)); publish smaller batches."
            )
        }
        return nil
    }

    private func evaluate(count: Int) -> Evaluation {
        var wait = false
        for subscription in subscriptions where subscription.backlog + count > subscription.capacity {
            switch subscription.overflow {
            case .suspend:
                if let error = neverFits(count: count) { return .reject(error) }
                wait = true
            case .reject:
                return .reject(
                    OpenQError(
                        .topicFull,
                        "Topic '\(topic)' is full: subscription '\(subscription.name)' holds \(subscription.backlog) "
                            + "of \(subscription.capacity) messages. Retry later, or consume faster."
                    )
                )
            case .dropOldest, .dropNewest:
                continue
            }
        }
        return wait ? .mustWait : .fits
    }

    private mutating func serveBlockedPublishers(now: Duration, effects: inout Effects) {
        while let first = blockedPublishers.first, isOpen {
            let count = Self.messageCount(first.requests)
            switch evaluate(count: count) {
            case .mustWait:
                return
            case .fits:
                blockedPublishers.removeFirst()
                let receipt = commit(first.requests, now: now, effects: &effects)
                effects.resumePublisher(first.continuation, with: .success(receipt))
            case .reject(let error):
                blockedPublishers.removeFirst()
                counters.rejected += count
                effects.resumePublisher(first.continuation, with: .failure(error))
            }
        }
    }

    /// Stamps the requests and routes them to every subscription. A request's messages are
    /// stamped together (consecutive ids and sequence numbers, one time) and routed as one run.
    private mutating func commit<Requests: Collection<PublishRequest>>(
        _ requests: Requests,
        now: Duration,
        effects: inout Effects
    ) -> PublishReceipt {
        // Publish times follow sequence numbers: `now` was read before the lock, so a publisher
        // that read the clock earlier may commit later; it gets the latest time stamped so far.
        lastPublishTime = Swift.max(lastPublishTime, now)
        let publishedAt = date(at: lastPublishTime)
        let total = Self.messageCount(requests)
        var nextID = MessageID.allocate(count: total)
        var receipt = PublishReceipt(
            firstID: MessageID(rawValue: nextID), firstSequenceNumber: nextSequence, count: total)
        for request in requests {
            let record = request.record
            let count = record.count
            record.stamp(firstID: nextID, topic: topic, firstSequence: nextSequence, publishedAt: publishedAt)
            nextID += UInt64(count)
            nextSequence += UInt64(count)
            counters.published += count
            if configuration.retention.isEnabled {
                for index in 0..<count { retain(StoredMessage(record, index: index), now: now) }
            }
            if subscriptions.isEmpty {
                counters.unrouted += count
                continue
            }
            let run = MessageRun(record, 0..<count)
            for index in subscriptions.indices {
                route(run, into: index, delay: request.delay, now: now, receipt: &receipt, effects: &effects)
            }
        }
        for index in subscriptions.indices where !subscriptions[index].waiters.isEmpty {
            serveWaiters(index, now: now, effects: &effects)
        }
        return receipt
    }

    /// Puts one request's messages into one subscription's backlog: as one run when they all fit
    /// and are visible now (the common case), otherwise message by message. Drops are counted in
    /// `receipt`.
    private mutating func route(
        _ run: MessageRun,
        into index: Int,
        delay: Duration,
        now: Duration,
        receipt: inout PublishReceipt,
        effects: inout Effects
    ) {
        if delay == .zero, subscriptions[index].backlog + run.count <= subscriptions[index].capacity {
            subscriptions[index].counters.routed += run.count
            subscriptions[index].ready.append(run)
            return
        }
        let visibleAt = delay > .zero ? now + delay : nil
        for message in run.messages {
            let pending = Pending(stored: message, attempts: 0, lastError: nil)
            route(pending, into: index, visibleAt: visibleAt, now: now, receipt: &receipt, effects: &effects)
        }
    }

    /// Puts one message into one subscription's backlog, applying its overflow policy.
    private mutating func route(
        _ pending: Pending,
        into index: Int,
        visibleAt: Duration?,
        now: Duration,
        receipt: inout PublishReceipt,
        effects: inout Effects
    ) {
        subscriptions[index].counters.routed += 1
        if subscriptions[index].backlog >= subscriptions[index].capacity {
            switch subscriptions[index].overflow {
            case .dropOldest where subscriptions[index].ready.popLeastUrgent() != nil:
                subscriptions[index].counters.dropped += 1
                receipt.droppedOlder += 1
            case .dropOldest, .dropNewest:
                subscriptions[index].counters.dropped += 1
                receipt.droppedNew += 1
                return
            case .suspend, .reject:
                // Evaluated before commit; reaching a full backlog here only happens for replays
                // and redrives, which are allowed past the bound.
                break
            }
        }
        if let visibleAt {
            schedule(pending, in: index, at: visibleAt, effects: &effects)
        } else {
            subscriptions[index].ready.append(pending.stored)
        }
    }

    private mutating func schedule(
        _ pending: Pending,
        in index: Int,
        at visibleAt: Duration,
        effects: inout Effects
    ) {
        let key = subscriptions[index].nextScheduleKey
        subscriptions[index].nextScheduleKey += 1
        subscriptions[index].scheduled[key] = Scheduled(pending: pending, visibleAt: visibleAt)
        pushDeadline(at: visibleAt, .scheduled(subscriptions[index].id, key: key), effects: &effects)
    }

    private mutating func retain(_ message: StoredMessage, now: Duration) {
        retained.append(message)
        if let count = configuration.retention.count, retained.count > count {
            retained.removeFirst(retained.count - count)
        }
        if let age = configuration.retention.age {
            let cutoff = date(at: now - age)
            while let first = retained.first, first.publishedAt < cutoff { retained.removeFirst() }
        }
    }

    // MARK: Replay

    private mutating func replay(into subscription: inout Subscription, from start: StartPosition, now: Duration) {
        let cutoff = configuration.retention.age.map { date(at: now - $0) }
        for message in retained {
            if let cutoff, message.publishedAt < cutoff { continue }
            switch start {
            case .latest: return
            case .earliest: break
            case .sequenceNumber(let first): if message.sequenceNumber < first { continue }
            case .time(let time): if message.publishedAt < time { continue }
            }
            subscription.counters.routed += 1
            subscription.ready.append(message)
        }
    }

    /// Moves a subscription to another position in the retained messages: what waits is purged
    /// (counted), then the retained messages from the position on are enqueued. In-flight
    /// deliveries are untouched.
    mutating func seek(
        _ id: SubscriptionID,
        to position: StartPosition,
        now: Duration
    ) -> (Result<Int, OpenQError>, Effects) {
        var effects = Effects()
        guard let index = index(of: id) else { return (.failure(subscriptionGone(id)), effects) }
        var subscription = subscriptions[index]
        subscription.counters.purged += subscription.purgeWaiting()
        let before = subscription.counters.routed
        replay(into: &subscription, from: position, now: now)
        subscriptions[index] = subscription
        serveWaiters(index, now: now, effects: &effects)
        serveBlockedPublishers(now: now, effects: &effects)
        return (.success(subscriptions[index].counters.routed - before), effects)
    }

    // MARK: Receiving

    /// The first phase of a receive: hands out visible messages at once or reserves a waiter id.
    mutating func receive(
        _ id: SubscriptionID,
        consumer: ConsumerID?,
        max: Int,
        canWait: Bool = true,
        now: Duration
    ) -> (ReceiveDecision, Effects) {
        var effects = Effects()
        processDue(now: now, effects: &effects)
        guard let index = index(of: id) else { return (.finished(subscriptionGone(id)), effects) }
        if isFinished { return (.finished(.shutDown("Topic '\(topic)'")), effects) }
        if subscriptions[index].visibleCount > 0 {
            return (.messages(take(from: index, max: max, consumer: consumer, now: now, effects: &effects)), effects)
        }
        guard canWait else { return (.empty, effects) }
        let waiter = nextWaiterID
        nextWaiterID += 1
        pendingWaiters[waiter] = .reserved
        return (.mustWait(waiter), effects)
    }

    /// The second phase of a receive: re-checks under the lock, then resumes at once or waits.
    mutating func suspend(
        _ id: SubscriptionID,
        waiter: UInt64,
        consumer: ConsumerID?,
        max: Int,
        pollDeadline: Duration?,
        continuation: Continuation,
        now: Duration
    ) -> Effects {
        var effects = Effects()
        let reservation = pendingWaiters.removeValue(forKey: waiter) ?? .cancelled
        guard let index = index(of: id) else {
            effects.resume(continuation, with: .finished)
            return effects
        }
        // Shutdown wins over cancellation: a receive racing shutdown learns that it was shut down.
        if isFinished {
            effects.resume(continuation, with: .finished)
        } else if case .cancelled = reservation {
            effects.resume(continuation, with: .cancelled)
        } else if subscriptions[index].visibleCount > 0 {
            let batch = take(from: index, max: max, consumer: consumer, now: now, effects: &effects)
            effects.resume(continuation, with: .messages(batch))
        } else if let pollDeadline, pollDeadline <= now {
            effects.resume(continuation, with: .timedOut)
        } else {
            subscriptions[index].waiters.append(
                Waiter(id: waiter, consumer: consumer, max: max, continuation: continuation, pollDeadline: pollDeadline)
            )
            if let pollDeadline {
                pushDeadline(at: pollDeadline, .poll(id, waiter: waiter), effects: &effects)
            }
        }
        return effects
    }

    mutating func cancelWaiter(_ id: SubscriptionID, waiter: UInt64) -> Effects {
        var effects = Effects()
        if pendingWaiters[waiter] != nil {
            pendingWaiters[waiter] = .cancelled
        } else if let index = index(of: id),
            let position = subscriptions[index].waiters.firstIndex(where: { $0.id == waiter })
        {
            let removed = subscriptions[index].waiters.remove(at: position)
            effects.resume(removed.continuation, with: .cancelled)
        }
        return effects
    }

    /// A consumer ended (cancelled, finished, or its iterator was dropped). Its in-flight
    /// deliveries become visible again at once; those it never handed to user code (`unhanded`)
    /// get their attempt back. An anonymous subscription ends with its consumer, so that a stream
    /// kept after its iteration ended never holds back publishers (iterating it again subscribes
    /// afresh: ``StreamSource``).
    mutating func consumerEnded(
        _ id: SubscriptionID,
        consumer: ConsumerID,
        unhanded: [HandedMessage],
        now: Duration
    ) -> Effects {
        var effects = Effects()
        guard let index = index(of: id) else { return effects }
        subscriptions[index].consumers.remove(consumer)
        if subscriptions[index].isAnonymous {
            subscriptions[index].counters.acked -= unhanded.count
            subscriptions[index].counters.delivered -= unhanded.count
            subscriptions[index].counters.purged += unhanded.count
            return removeSubscription(id, now: now)
        }
        var returned: [Pending] = []
        if subscriptions[index].tracksDeliveries {
            let unhandedTags = Set(unhanded.map(\.tag))
            let owned = subscriptions[index].inFlight.filter { $0.value.consumer == consumer }.keys.sorted()
            for tag in owned {
                guard let entry = subscriptions[index].inFlight.removeValue(forKey: tag) else { continue }
                subscriptions[index].fates.record(.returned, tag: tag)
                if unhandedTags.contains(tag) {
                    var pending = entry.pending
                    pending.attempts -= 1
                    subscriptions[index].counters.delivered -= 1
                    if pending.attempts > 0 { subscriptions[index].counters.redelivered -= 1 }
                    returned.append(pending)
                } else {
                    requeue(entry.pending, in: index, delay: .zero, now: now, effects: &effects)
                }
            }
        } else {
            for handed in unhanded {
                returned.append(Pending(stored: handed.stored, attempts: handed.attempt - 1, lastError: nil))
            }
            subscriptions[index].counters.acked -= unhanded.count
            subscriptions[index].counters.delivered -= unhanded.count
        }
        subscriptions[index].retries.insert(contentsOf: returned, at: 0)
        serveWaiters(index, now: now, effects: &effects)
        return effects
    }

    /// Takes up to `max` visible messages; tracked subscriptions record them in flight.
    private mutating func take(
        from index: Int,
        max: Int,
        consumer: ConsumerID?,
        now: Duration,
        effects: inout Effects
    ) -> DeliveryBatch {
        let tracks = subscriptions[index].tracksDeliveries
        if !tracks, subscriptions[index].retries.isEmpty {
            let (fresh, count) = subscriptions[index].ready.take(upTo: max)
            subscriptions[index].counters.delivered += count
            subscriptions[index].counters.acked += count
            if count > 0 { serveBlockedPublishers(now: now, effects: &effects) }
            return DeliveryBatch(fresh: fresh)
        }
        var batch: [HandedMessage] = []
        batch.reserveCapacity(Swift.min(max, subscriptions[index].visibleCount))
        // Every delivery of one take shares one visibility deadline (and one heap entry).
        let deadline = now + subscriptions[index].configuration.acknowledgement.visibilityTimeout
        let subscriptionID = subscriptions[index].id
        let firstTag = subscriptions[index].nextTag
        while batch.count < max, var pending = subscriptions[index].popVisible() {
            pending.attempts += 1
            subscriptions[index].counters.delivered += 1
            if pending.attempts > 1 { subscriptions[index].counters.redelivered += 1 }
            if tracks {
                let tag = subscriptions[index].nextTag
                subscriptions[index].nextTag += 1
                subscriptions[index].inFlight[tag] = InFlight(
                    pending: pending,
                    consumer: consumer,
                    deliveredAt: now,
                    deadline: deadline
                )
                batch.append(HandedMessage(stored: pending.stored, tag: tag, attempt: pending.attempts))
            } else {
                subscriptions[index].counters.acked += 1
                batch.append(HandedMessage(stored: pending.stored, tag: 0, attempt: pending.attempts))
            }
        }
        if tracks, !batch.isEmpty {
            let tags = firstTag..<subscriptions[index].nextTag
            pushDeadline(at: deadline, .visibility(subscriptionID, tags: tags), effects: &effects)
        }
        if !tracks, !batch.isEmpty { serveBlockedPublishers(now: now, effects: &effects) }
        return DeliveryBatch(handed: batch)
    }

    private mutating func serveWaiters(_ index: Int, now: Duration, effects: inout Effects) {
        while subscriptions[index].visibleCount > 0, let waiter = subscriptions[index].waiters.popFirst() {
            let batch = take(from: index, max: waiter.max, consumer: waiter.consumer, now: now, effects: &effects)
            effects.resume(waiter.continuation, with: .messages(batch))
        }
    }

    // MARK: Settling deliveries

    /// Looks up a live in-flight delivery; an expired one is expired now (the deadline passed even
    /// if the timer has not fired yet) and reported as such.
    private mutating func liveDelivery(
        _ id: SubscriptionID,
        tag: UInt64,
        now: Duration,
        effects: inout Effects
    ) -> Result<Int, OpenQError> {
        if isFinished { return .failure(.shutDown("Topic '\(topic)'")) }
        guard let index = index(of: id) else { return .failure(subscriptionGone(id)) }
        if let entry = subscriptions[index].inFlight[tag] {
            if entry.deadline <= now {
                expire(tag, in: index, now: now, effects: &effects)
                return .failure(receiptError(.expired, index: index))
            }
            return .success(index)
        }
        if let fate = subscriptions[index].fates.fate(of: tag) { return .failure(receiptError(fate, index: index)) }
        return .failure(
            OpenQError(
                .receiptAlreadySettled,
                "This delivery of subscription '\(subscriptions[index].name)' was already acknowledged, "
                    + "nacked or rejected; settle each delivery once."
            )
        )
    }

    private func receiptError(_ fate: ReceiptFate, index: Int) -> OpenQError {
        let name = subscriptions[index].name
        return switch fate {
        case .expired:
            OpenQError(
                .receiptExpired,
                "The visibility timeout of this delivery (subscription '\(name)') passed before it was settled; "
                    + "the message was made visible again. Extend the visibility timeout for long work."
            )
        case .purged:
            OpenQError(.receiptExpired, "This delivery's message was purged from subscription '\(name)'.")
        case .returned:
            OpenQError(
                .receiptExpired,
                "This delivery was returned to subscription '\(name)' because its consumer ended."
            )
        }
    }

    private func subscriptionGone(_ id: SubscriptionID) -> OpenQError {
        OpenQError(.subscriptionNotFound, "The subscription of topic '\(topic)' was removed.")
    }

    mutating func ack(_ id: SubscriptionID, tag: UInt64, now: Duration) -> (Result<Void, OpenQError>, Effects) {
        var effects = Effects()
        let result = settle(id, tag: tag, now: now, effects: &effects)
        if case .success = result { serveBlockedPublishers(now: now, effects: &effects) }
        return (result, effects)
    }

    /// Acknowledges several deliveries of one subscription in one event; each succeeds or fails
    /// on its own.
    /// - Returns: per tag, in order, `nil` when it was acknowledged or the reason it was not.
    mutating func ack(_ id: SubscriptionID, tags: [UInt64], now: Duration) -> ([OpenQError?], Effects) {
        var effects = Effects()
        var failures: [OpenQError?] = []
        failures.reserveCapacity(tags.count)
        var acked = false
        for tag in tags {
            switch settle(id, tag: tag, now: now, effects: &effects) {
            case .success:
                acked = true
                failures.append(nil)
            case .failure(let error):
                failures.append(error)
            }
        }
        if acked { serveBlockedPublishers(now: now, effects: &effects) }
        return (failures, effects)
    }

    /// The acknowledgement itself: the delivery leaves the in-flight set and counts as acked.
    private mutating func settle(
        _ id: SubscriptionID,
        tag: UInt64,
        now: Duration,
        effects: inout Effects
    ) -> Result<Void, OpenQError> {
        if let index = index(of: id), !subscriptions[index].tracksDeliveries { return .success(()) }
        switch liveDelivery(id, tag: tag, now: now, effects: &effects) {
        case .failure(let error):
            return .failure(error)
        case .success(let index):
            subscriptions[index].inFlight[tag] = nil
            subscriptions[index].counters.acked += 1
            return .success(())
        }
    }

    mutating func nack(
        _ id: SubscriptionID,
        tag: UInt64,
        retryAfter: Duration?,
        error: String?,
        now: Duration
    ) -> (Result<Void, OpenQError>, Effects) {
        var effects = Effects()
        if let index = index(of: id), !subscriptions[index].tracksDeliveries { return (.success(()), effects) }
        switch liveDelivery(id, tag: tag, now: now, effects: &effects) {
        case .failure(let error):
            return (.failure(error), effects)
        case .success(let index):
            guard var entry = subscriptions[index].inFlight.removeValue(forKey: tag) else {
                return (.success(()), effects)
            }
            subscriptions[index].counters.nacked += 1
            entry.pending.lastError = error ?? entry.pending.lastError
            let delay =
                retryAfter
                ?? configuration.retryBackoff.delay(afterAttempts: entry.pending.attempts, random: random.nextUnit())
            requeue(entry.pending, in: index, delay: delay, now: now, effects: &effects)
            return (.success(()), effects)
        }
    }

    mutating func reject(
        _ id: SubscriptionID,
        tag: UInt64,
        reason: String,
        now: Duration
    ) -> (Result<Void, OpenQError>, Effects) {
        var effects = Effects()
        if let index = index(of: id), !subscriptions[index].tracksDeliveries { return (.success(()), effects) }
        switch liveDelivery(id, tag: tag, now: now, effects: &effects) {
        case .failure(let error):
            return (.failure(error), effects)
        case .success(let index):
            guard var entry = subscriptions[index].inFlight.removeValue(forKey: tag) else {
                return (.success(()), effects)
            }
            entry.pending.lastError = reason
            deadLetter(entry.pending, from: index, reason: "rejected", now: now, effects: &effects)
            serveBlockedPublishers(now: now, effects: &effects)
            return (.success(()), effects)
        }
    }

    /// Sets a delivery's visibility deadline to `now + duration` (as SQS's ChangeMessageVisibility).
    mutating func extendVisibility(
        _ id: SubscriptionID,
        tag: UInt64,
        by duration: Duration,
        now: Duration
    ) -> (Result<Void, OpenQError>, Effects) {
        var effects = Effects()
        guard duration > .zero else {
            return (
                .failure(.invalidConfiguration("A visibility extension must be positive; it was \(duration).")), effects
            )
        }
        if let index = index(of: id), !subscriptions[index].tracksDeliveries { return (.success(()), effects) }
        switch liveDelivery(id, tag: tag, now: now, effects: &effects) {
        case .failure(let error):
            return (.failure(error), effects)
        case .success(let index):
            let deadline = now + duration
            subscriptions[index].inFlight[tag]?.deadline = deadline
            pushDeadline(at: deadline, .visibility(id, tags: tag..<tag + 1), effects: &effects)
            return (.success(()), effects)
        }
    }

    /// Extends every delivery a consumer holds by its subscription's visibility timeout, as long as
    /// the delivery is younger than `maximum` (lease management for handler consumers).
    mutating func extendLeases(
        _ id: SubscriptionID,
        consumer: ConsumerID,
        maximum: Duration,
        now: Duration
    ) -> Effects {
        var effects = Effects()
        guard !isFinished else { return effects }
        processDue(now: now, effects: &effects)
        guard let index = index(of: id), subscriptions[index].tracksDeliveries else { return effects }
        let timeout = subscriptions[index].configuration.acknowledgement.visibilityTimeout
        for (tag, entry) in subscriptions[index].inFlight where entry.consumer == consumer {
            let deadline = Swift.min(now + timeout, entry.deliveredAt + maximum)
            guard deadline > entry.deadline else { continue }
            subscriptions[index].inFlight[tag]?.deadline = deadline
            pushDeadline(at: deadline, .visibility(id, tags: tag..<tag + 1), effects: &effects)
        }
        return effects
    }

    /// Puts a message back after a failed attempt: dead-lettered once it had `maxDeliveries`
    /// deliveries, otherwise visible again after `delay`.
    private mutating func requeue(
        _ pending: Pending,
        in index: Int,
        delay: Duration,
        now: Duration,
        effects: inout Effects
    ) {
        if let maxDeliveries = configuration.deadLetter.maxDeliveries, pending.attempts >= maxDeliveries {
            deadLetter(pending, from: index, reason: "maxDeliveries", now: now, effects: &effects)
            serveBlockedPublishers(now: now, effects: &effects)
        } else if delay > .zero {
            schedule(pending, in: index, at: now + delay, effects: &effects)
        } else {
            subscriptions[index].retries.append(pending)
            serveWaiters(index, now: now, effects: &effects)
        }
    }

    private mutating func deadLetter(
        _ pending: Pending,
        from index: Int,
        reason: String,
        now: Duration,
        effects: inout Effects
    ) {
        subscriptions[index].counters.deadLettered += 1
        var headers = pending.stored.headers
        headers[MessageHeader.sourceTopic] = topic
        headers[MessageHeader.sourceSubscription] = subscriptions[index].name
        headers[MessageHeader.sourceSequenceNumber] = String(pending.stored.sequenceNumber)
        headers[MessageHeader.attempts] = String(pending.attempts)
        headers[MessageHeader.deadLetterReason] = reason
        if let lastError = pending.lastError { headers[MessageHeader.lastError] = lastError }
        if headers[MessageHeader.firstPublishedAt] == nil {
            headers[MessageHeader.firstPublishedAt] = String(pending.stored.publishedAt.timeIntervalSince1970)
        }
        headers[MessageHeader.deadLetteredAt] = String(date(at: now).timeIntervalSince1970)
        let message = pending.stored.withHeaders(headers, origin: pending.stored.identity)
        effects.deadLetters.append(message)
    }

    private mutating func expire(_ tag: UInt64, in index: Int, now: Duration, effects: inout Effects) {
        guard var entry = subscriptions[index].inFlight.removeValue(forKey: tag) else { return }
        subscriptions[index].counters.expired += 1
        subscriptions[index].fates.record(.expired, tag: tag)
        entry.pending.lastError = entry.pending.lastError ?? "visibility timeout expired"
        requeue(entry.pending, in: index, delay: .zero, now: now, effects: &effects)
    }

    // MARK: Deadlines

    private mutating func pushDeadline(at time: Duration, _ kind: Deadline.Kind, effects: inout Effects) {
        deadlineOrder += 1
        deadlines.insert(Deadline(at: time, order: deadlineOrder, kind: kind))
        pushesSinceCompaction += 1
        if pushesSinceCompaction >= 1024 { compactDeadlines() }
        arm(at: time, effects: &effects)
    }

    /// Arms the timer for `time` unless it is armed for an earlier time already.
    private mutating func arm(at time: Duration, effects: inout Effects) {
        // A finished topic (shut down or deleted) processes no more deadlines: arming a timer
        // would keep its storage alive until the deadline.
        guard !isFinished else { return }
        guard armedDeadline.map({ time < $0 }) ?? true else { return }
        armedDeadline = time
        timerGeneration += 1
        effects.armTimer = TimerRequest(deadline: time, generation: timerGeneration)
    }

    /// Drops stale heap entries (acknowledged deliveries, extended deadlines) once they outnumber
    /// the live ones, so that the heap stays proportional to what is in flight.
    private mutating func compactDeadlines() {
        pushesSinceCompaction = 0
        let live = subscriptions.reduce(0) { $0 + $1.inFlight.count + $1.scheduled.count + $1.waiters.count }
        guard deadlines.count > 2 * live + 1024 else { return }
        deadlines = Heap(deadlines.unordered.filter { isLive($0) })
    }

    private func isLive(_ deadline: Deadline) -> Bool {
        switch deadline.kind {
        case .visibility(let id, let tags):
            guard let subscription = subscription(id) else { return false }
            return tags.contains { subscription.inFlight[$0]?.deadline == deadline.at }
        case .scheduled(let id, let key):
            return subscription(id)?.scheduled[key] != nil
        case .poll(let id, let waiter):
            return subscription(id)?.waiters.contains { $0.id == waiter } ?? false
        case .parkedPublisher(let id):
            return blockedPublishers.contains { $0.id == id }
        }
    }

    /// The timer fired: process what is due and ask for the next wake-up.
    mutating func timerFired(generation: UInt64, now: Duration) -> Effects {
        var effects = Effects()
        if generation == timerGeneration { armedDeadline = nil }
        processDue(now: now, effects: &effects)
        // Processing may have armed the timer for a later deadline (a redelivery's visibility
        // timeout); the earliest deadline left must still get its wake-up.
        if let next = deadlines.min?.at { arm(at: next, effects: &effects) }
        return effects
    }

    /// Handles every deadline at or before `now`: visibility timeouts, delayed messages and
    /// long-poll timeouts.
    mutating func processDue(now: Duration, effects: inout Effects) {
        while let first = deadlines.min, first.at <= now {
            deadlines.removeMin()
            switch first.kind {
            case .visibility(let id, let tags):
                guard let index = index(of: id) else { continue }
                for tag in tags where subscriptions[index].inFlight[tag]?.deadline == first.at {
                    expire(tag, in: index, now: now, effects: &effects)
                }
            case .scheduled(let id, let key):
                guard let index = index(of: id),
                    let scheduled = subscriptions[index].scheduled.removeValue(forKey: key)
                else { continue }
                if scheduled.pending.attempts > 0 {
                    subscriptions[index].retries.append(scheduled.pending)
                } else {
                    subscriptions[index].ready.append(scheduled.pending.stored)
                }
                serveWaiters(index, now: now, effects: &effects)
            case .poll(let id, let waiter):
                guard let index = index(of: id),
                    let position = subscriptions[index].waiters.firstIndex(where: { $0.id == waiter })
                else { continue }
                let removed = subscriptions[index].waiters.remove(at: position)
                effects.resume(removed.continuation, with: .timedOut)
            case .parkedPublisher(let id):
                warnAboutParkedPublisher(id, now: now, effects: &effects)
            }
        }
    }

    // MARK: Purge, redrive, dead-letter intake

    /// Empties one subscription (or all, and the retained messages, when `id` is nil).
    /// - Returns: the number of message copies removed.
    mutating func purge(_ id: SubscriptionID?, now: Duration) -> (Result<Int, OpenQError>, Effects) {
        var effects = Effects()
        var total = 0
        if let id {
            guard let index = index(of: id) else { return (.failure(subscriptionGone(id)), effects) }
            total = subscriptions[index].purgeAll()
            subscriptions[index].counters.purged += total
        } else {
            for index in subscriptions.indices {
                let removed = subscriptions[index].purgeAll()
                subscriptions[index].counters.purged += removed
                total += removed
            }
            retained.removeAll()
        }
        serveBlockedPublishers(now: now, effects: &effects)
        return (.success(total), effects)
    }

    /// Takes up to `max` waiting messages out of a subscription (for redrive); they count as
    /// acknowledged there.
    mutating func drain(_ id: SubscriptionID, max: Int, now: Duration) -> ([StoredMessage], Effects) {
        var effects = Effects()
        guard let index = index(of: id) else { return ([], effects) }
        var drained: [StoredMessage] = []
        while drained.count < max, let pending = subscriptions[index].popVisible() {
            drained.append(pending.stored)
        }
        subscriptions[index].counters.acked += drained.count
        serveBlockedPublishers(now: now, effects: &effects)
        return (drained, effects)
    }

    /// Puts messages back into the subscription they were drained from, keeping their headers;
    /// they count as neither routed nor acknowledged again.
    mutating func restore(_ messages: [StoredMessage], into id: SubscriptionID, now: Duration) -> (
        (), Effects
    ) {
        var effects = Effects()
        guard let index = index(of: id) else { return ((), effects) }
        subscriptions[index].counters.acked -= messages.count
        for message in messages { subscriptions[index].ready.append(message) }
        serveWaiters(index, now: now, effects: &effects)
        return ((), effects)
    }

    /// Puts messages straight into one subscription, past its bound (redrive), without the
    /// dead-letter headers and with a fresh attempt count.
    mutating func enqueue(
        _ messages: [StoredMessage],
        into id: SubscriptionID,
        now: Duration
    ) -> (Result<Void, OpenQError>, Effects) {
        var effects = Effects()
        guard !isFinished else { return (.failure(.shutDown("Topic '\(topic)'")), effects) }
        guard let index = index(of: id) else { return (.failure(subscriptionGone(id)), effects) }
        for message in messages {
            var headers = message.headers
            for key in MessageHeader.deadLetterKeys { headers[key] = nil }
            let origin = message.record.origin
            let message = message.withHeaders(headers)
            // Back home, the message is again the one its source published: this topic's name, its
            // original sequence number and publish time (not the dead-letter topic's).
            message.record.restamp(
                as: MessageOrigin(
                    topic: topic,
                    sequenceNumber: origin?.sequenceNumber ?? message.sequenceNumber,
                    publishedAt: origin?.publishedAt ?? message.publishedAt
                )
            )
            subscriptions[index].counters.routed += 1
            subscriptions[index].ready.append(message)
        }
        serveWaiters(index, now: now, effects: &effects)
        return (.success(()), effects)
    }

    /// Takes dead letters from a source topic. They are never refused while the topic is open or
    /// draining: a full dead-letter topic applies its drop policies, and goes past its bound under
    /// `suspend` or `reject` rather than lose a message that was already accepted once.
    mutating func acceptDeadLetters(_ requests: [PublishRequest], now: Duration) -> (Bool, Effects) {
        var effects = Effects()
        guard !isFinished else { return (false, effects) }
        _ = commit(requests, now: now, effects: &effects)
        return (true, effects)
    }

    // MARK: Shutdown

    /// Stops accepting publishes; publishers waiting for room fail with `shutDown`. Consumers
    /// keep receiving and settling until the topic is idle or `deadline` (the end of the grace
    /// period) passes.
    mutating func beginShutdown(deadline: Duration) -> Effects {
        var effects = Effects()
        guard isOpen else { return effects }
        lifecycle = .draining(DrainState(deadline: deadline))
        failBlockedPublishers(effects: &effects)
        return effects
    }

    private mutating func failBlockedPublishers(effects: inout Effects) {
        while let publisher = blockedPublishers.popFirst() {
            effects.resumePublisher(publisher.continuation, with: .failure(OpenQError.shutDown("Topic '\(topic)'")))
        }
        // Reserved publishers fail in their second phase, which checks the lifecycle first.
    }

    /// True when a draining topic has nothing left that shutdown should wait for: in every
    /// subscription nothing is in flight, and nothing waits that a consumer could still take.
    ///
    /// A subscription without a consumer (no stream or handler registered, no `receive` waiting)
    /// holds its backlog until the next start: nobody could drain it, so waiting for it would only
    /// burn the grace period. A subscription with a consumer is idle once nothing is visible and
    /// no delayed message or retry becomes visible before the grace period ends.
    var isIdle: Bool {
        let deadline: Duration
        switch lifecycle {
        case .open: deadline = .zero
        case .draining(let drain): deadline = drain.deadline
        case .finished: return true
        }
        return subscriptions.allSatisfy { subscription in
            guard subscription.inFlight.isEmpty else { return false }
            guard !subscription.consumers.isEmpty || !subscription.waiters.isEmpty else { return true }
            return subscription.visibleCount == 0
                && !subscription.scheduled.values.contains { $0.visibleAt <= deadline }
        }
    }

    /// Registers a shutdown waiter; returns true when it must be resumed at once (not stored):
    /// the topic is idle, not draining, or the waiter was cancelled before it got here.
    mutating func addIdleWaiter(_ id: UInt64, _ continuation: UnsafeContinuation<Void, Never>) -> Bool {
        guard case .draining(var drain) = lifecycle else { return true }
        if drain.cancelledIdleWaiters.remove(id) != nil || isIdle {
            lifecycle = .draining(drain)
            return true
        }
        drain.idleWaiters[id] = continuation
        lifecycle = .draining(drain)
        return false
    }

    /// A shutdown waiter was cancelled: hands back its continuation, or remembers the
    /// cancellation when the waiter is not stored yet.
    mutating func cancelIdleWaiter(_ id: UInt64) -> UnsafeContinuation<Void, Never>? {
        guard case .draining(var drain) = lifecycle else { return nil }
        defer { lifecycle = .draining(drain) }
        if let continuation = drain.idleWaiters.removeValue(forKey: id) { return continuation }
        drain.cancelledIdleWaiters.insert(id)
        return nil
    }

    /// While draining, hands back the shutdown waiters once the topic became idle.
    mutating func takeIdleWaitersIfIdle() -> [UnsafeContinuation<Void, Never>] {
        guard case .draining(var drain) = lifecycle, !drain.idleWaiters.isEmpty, isIdle else { return [] }
        let waiters = Array(drain.idleWaiters.values)
        drain.idleWaiters.removeAll()
        lifecycle = .draining(drain)
        return waiters
    }

    /// Ends every consumer sequence. What stays in flight or waiting is reported, not lost: it
    /// stays in the (now closed) topic and is counted.
    mutating func finish() -> Effects {
        var effects = Effects()
        if case .draining(let drain) = lifecycle {
            effects.idleWaiters = Array(drain.idleWaiters.values)
        }
        failBlockedPublishers(effects: &effects)
        lifecycle = .finished
        for index in subscriptions.indices {
            while let waiter = subscriptions[index].waiters.popFirst() {
                effects.resume(waiter.continuation, with: .finished)
            }
        }
        // Reserved receives end in their second phase, which checks the lifecycle first.
        return effects
    }

    // MARK: Waiting for a subscription to drain

    /// One caller of ``Subscription/waitUntilDrained()``.
    struct DrainWaiter {
        var subscription: SubscriptionID
        var continuation: UnsafeContinuation<Result<Void, OpenQError>, Never>
    }

    /// Whether a subscription holds nothing: nothing waiting, delayed or in flight.
    func isDrained(_ id: SubscriptionID) -> Bool {
        guard let subscription = subscription(id) else { return false }
        return subscription.backlog == 0
    }

    /// Registers a drain waiter; returns the result to resume it with at once, or `nil` when it was
    /// stored. A waiter cancelled before it got here is resumed with `nil`'s caller-side meaning:
    /// the caller checks cancellation itself.
    mutating func addDrainWaiter(
        _ waiter: UInt64,
        subscription id: SubscriptionID,
        continuation: UnsafeContinuation<Result<Void, OpenQError>, Never>
    ) -> Result<Void, OpenQError>? {
        if cancelledDrainWaiters.remove(waiter) != nil { return .success(()) }
        guard index(of: id) != nil else { return .failure(subscriptionGone(id)) }
        if isDrained(id) { return .success(()) }
        if isFinished { return .failure(.shutDown("Topic '\(topic)'")) }
        drainWaiters[waiter] = DrainWaiter(subscription: id, continuation: continuation)
        return nil
    }

    /// A drain waiter was cancelled: hands back its continuation, or remembers the cancellation.
    mutating func cancelDrainWaiter(_ waiter: UInt64) -> UnsafeContinuation<Result<Void, OpenQError>, Never>? {
        if let stored = drainWaiters.removeValue(forKey: waiter) { return stored.continuation }
        cancelledDrainWaiters.insert(waiter)
        return nil
    }

    /// Hands back the drain waiters whose wait is over (their subscription drained, was removed,
    /// or the topic finished), with how it ended. Called after every event while any waits.
    mutating func takeFinishedDrainWaiters() -> [(
        UnsafeContinuation<Result<Void, OpenQError>, Never>, Result<Void, OpenQError>
    )] {
        var done: [(UnsafeContinuation<Result<Void, OpenQError>, Never>, Result<Void, OpenQError>)] = []
        for (key, waiter) in drainWaiters {
            let result: Result<Void, OpenQError>
            if index(of: waiter.subscription) == nil {
                result = .failure(subscriptionGone(waiter.subscription))
            } else if isDrained(waiter.subscription) {
                result = .success(())
            } else if isFinished {
                result = .failure(.shutDown("Topic '\(topic)'"))
            } else {
                continue
            }
            drainWaiters[key] = nil
            done.append((waiter.continuation, result))
        }
        return done
    }

    // MARK: Statistics

    func statistics(now: Duration) -> TopicStatistics {
        let nowDate = date(at: now)
        let subscriptionStatistics = subscriptions.map { subscription in
            let oldest = [
                subscription.retries.lazy.map(\.stored.publishedAt).min(),
                subscription.ready.heads.map(\.publishedAt).min(),
            ]
            .compactMap { $0 }.min()
            return SubscriptionStatistics(
                name: subscription.name,
                isAnonymous: subscription.isAnonymous,
                acknowledgement: subscription.configuration.acknowledgement,
                counters: subscription.counters,
                depth: subscription.visibleCount,
                scheduled: subscription.scheduled.count,
                inFlight: subscription.inFlight.count,
                consumers: subscription.consumers.count,
                oldestMessageAge: oldest.map { .seconds(nowDate.timeIntervalSince($0)) }
            )
        }
        var totals = removedCounters
        for subscription in subscriptions { totals.add(subscription.counters) }
        return TopicStatistics(
            name: topic,
            published: counters.published,
            rejected: counters.rejected,
            unrouted: counters.unrouted,
            retained: retained.count,
            suspendedPublishers: blockedPublishers.count,
            totals: totals,
            subscriptions: subscriptionStatistics
        )
    }
}

// MARK: - Supporting types

/// What a publish asks for: the messages of one publish call, not yet stamped, and when they
/// become visible.
@usableFromInline
struct PublishRequest: Sendable {
    @usableFromInline var record: MessageRecord
    @usableFromInline var delay: Duration

    @inlinable
    init(_ record: MessageRecord, delay: Duration = .zero) {
        self.record = record
        self.delay = delay
    }
}

enum PublishDecision {
    case accepted(PublishReceipt)
    /// Wait for room with this publisher id (second phase: `suspendPublisher`).
    case mustWait(UInt64)
    case failed(OpenQError)
}

enum ReceiveDecision {
    case messages(DeliveryBatch)
    /// Nothing visible: wait with this waiter id (second phase: `suspend`).
    case mustWait(UInt64)
    /// Nothing visible and the caller did not want to wait.
    case empty
    /// The subscription was removed or the topic finished.
    case finished(OpenQError)
}

/// A message handed to a consumer, with the receipt tag that settles it.
@usableFromInline
struct HandedMessage: Sendable {
    @usableFromInline var stored: StoredMessage
    @usableFromInline var tag: UInt64
    @usableFromInline var attempt: Int
}

extension HandedMessage {
    /// The first delivery of a message to an automatically acknowledged subscription: attempt 1,
    /// and no receipt to settle.
    init(firstAutomaticDeliveryOf stored: StoredMessage) {
        self.init(stored: stored, tag: 0, attempt: 1)
    }
}

/// What a consumer takes in one go.
///
/// An automatically acknowledged subscription's first deliveries are moved out of its queue whole
/// (`fresh`: runs of messages, each delivery attempt 1 with no receipt), so taking them holds the
/// lock for a moment whatever their number; tracked deliveries and repeated ones carry their
/// receipt (`handed`).
@usableFromInline
struct DeliveryBatch: Sendable {
    var handed: [HandedMessage] = []
    var fresh: Deque<MessageRun> = []

    /// How many messages the batch holds.
    var count: Int { fresh.reduce(handed.count) { $0 + $1.count } }

    /// Every message of the batch with its receipt, `handed` first.
    var all: [HandedMessage] {
        handed + fresh.lazy.flatMap(\.messages).map(HandedMessage.init(firstAutomaticDeliveryOf:))
    }
}

/// How a waiting consumer is resumed.
enum WakeResult: Sendable {
    case messages(DeliveryBatch)
    case timedOut
    case finished
    case cancelled
}

struct TimerRequest: Hashable {
    var deadline: Duration
    var generation: UInt64
}

/// What the storage must do after releasing the lock.
struct Effects {
    /// The first consumer resumption is stored inline: a publish wakes at most one waiter in the
    /// common case, and this keeps that path free of an array allocation.
    private var firstResumption: (UnsafeContinuation<WakeResult, Never>, WakeResult)?
    private var moreResumptions: [(UnsafeContinuation<WakeResult, Never>, WakeResult)] = []
    var publishers: [(UnsafeContinuation<PublishReceipt, any Error>, Result<PublishReceipt, any Error>)] = []
    var deadLetters: [StoredMessage] = []
    var armTimer: TimerRequest?
    /// Shutdown waiters to resume (a draining topic that finished).
    var idleWaiters: [UnsafeContinuation<Void, Never>] = []
    /// Warnings to log.
    var warnings: [ParkedPublisherWarning] = []

    var isEmpty: Bool {
        firstResumption == nil && publishers.isEmpty && deadLetters.isEmpty && armTimer == nil && idleWaiters.isEmpty
            && warnings.isEmpty
    }

    mutating func resume(
        _ continuation: UnsafeContinuation<WakeResult, Never>, with result: WakeResult
    ) {
        if firstResumption == nil {
            firstResumption = (continuation, result)
        } else {
            moreResumptions.append((continuation, result))
        }
    }

    mutating func resumePublisher(
        _ continuation: UnsafeContinuation<PublishReceipt, any Error>,
        with result: Result<PublishReceipt, any Error>
    ) {
        publishers.append((continuation, result))
    }

    /// Resumes every continuation. Call only after the lock is released.
    consuming func resumeAll() {
        if let first = firstResumption {
            first.0.resume(returning: first.1)
            for resumption in moreResumptions { resumption.0.resume(returning: resumption.1) }
        }
        for (continuation, result) in publishers { continuation.resume(with: result) }
        for waiter in idleWaiters { waiter.resume() }
    }
}

/// What a topic logs when a publisher has waited `waited` for room in a full subscription.
struct ParkedPublisherWarning: Hashable, Sendable {
    var topic: String
    var subscription: String
    var depth: Int
    var capacity: Int
    var consumers: Int
    var parkedPublishers: Int
    var waited: Duration
}

/// A small, seedable generator for backoff jitter, so tests are deterministic; the demo uses it
/// for its seeded failures.
package struct SplitMix64 {
    private var state: UInt64

    package init(seed: UInt64) { state = seed }

    package mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A number in `0..<1`.
    mutating func nextUnit() -> Double { Double(next() >> 11) / Double(1 << 53) }
}

extension MessageHeader {
    static let deadLetterKeys = [
        sourceTopic, sourceSubscription, attempts, lastError, deadLetterReason, deadLetteredAt, sourceSequenceNumber,
        firstPublishedAt,
    ]
}
