import CoreMetrics
import Logging

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// The broker: creates, finds and deletes topics, reports statistics, and shuts down.
///
/// `MessageQueue` is the control plane only. Publishing and consuming go straight to a topic's
/// own lock-protected state, never through this actor, so topics scale across cores.
///
/// ```swift
/// let queue = MessageQueue()
/// let orders = try await queue.createTopic("orders", of: OrderPlaced.self)
/// let billing = try await orders.subscription("billing", acknowledgement: .manual(visibilityTimeout: .seconds(30)))
/// try await orders.publish(OrderPlaced(id: 1))
/// let report = await queue.shutdown(gracePeriod: .seconds(5))
/// ```
public actor MessageQueue {
    /// Broker-wide settings.
    public struct Configuration: Sendable {
        /// How often statistics are exported through swift-metrics; `nil` turns the export off.
        /// Default 10 s. Until the application bootstraps a metrics backend, the export is a no-op.
        public var metricsInterval: Duration?
        /// The metrics factory; `nil` for the process-wide `MetricsSystem.factory`.
        public var metricsFactory: (any MetricsFactory)?
        /// The seed of the jitter in retry backoff; `nil` for a random one.
        public var randomSeed: UInt64?
        /// After how long a publisher that a full `suspend` subscription keeps waiting is logged
        /// as a warning naming the topic, the full subscription, its depth and its consumers (at
        /// most one warning per topic per this interval). Default 5 s; `nil` turns it off.
        /// ``TopicStatistics/suspendedPublishers`` counts the publishers waiting now.
        public var parkedPublisherWarning: Duration?
        /// The grace period of the shutdown that a graceful shutdown of ``MessageQueue/run()``
        /// starts (as a swift-service-lifecycle `Service`). Default 30 s.
        public var shutdownGracePeriod: Duration
        /// Code that runs around every publish and every message a ``Consumer`` handles, the first
        /// one outermost (see ``MessageInterceptor``). Default none.
        public var interceptors: [any MessageInterceptor]

        /// Creates a configuration; each parameter defaults as its property says.
        public init(
            metricsInterval: Duration? = .seconds(10), metricsFactory: (any MetricsFactory)? = nil,
            randomSeed: UInt64? = nil, parkedPublisherWarning: Duration? = .seconds(5),
            shutdownGracePeriod: Duration = .seconds(30), interceptors: [any MessageInterceptor] = []
        ) {
            self.metricsInterval = metricsInterval
            self.metricsFactory = metricsFactory
            self.randomSeed = randomSeed
            self.parkedPublisherWarning = parkedPublisherWarning
            self.shutdownGracePeriod = shutdownGracePeriod
            self.interceptors = interceptors
        }
    }

    /// The broker's settings.
    public nonisolated let configuration: Configuration
    let clock: BrokerClock
    let logger: Logger
    private var topics: [String: TopicStorage] = [:]
    private var lifecycle = Lifecycle.running
    /// The topics whose dead letters go to each topic, by the dead-letter topic's name: a topic
    /// in use as a dead-letter topic cannot be deleted, and the check costs no scan of every topic.
    private var deadLetterSources: [String: Set<String>] = [:]
    private var metrics: MetricsExporter
    /// The broker's background loop (timers, metrics export, started consumers).
    let driver: BrokerDriver
    private var metricsScheduled = false
    private var seeds: SplitMix64
    /// The store of durable topics; `nil` for a broker without storage.
    package let store: (any DurableStore)?

    /// Creates a broker.
    /// - Parameters:
    ///   - configuration: broker-wide settings.
    ///   - clock: the source of time for timeouts, backoff, delays and timestamps. Inject a manual
    ///     clock in tests to make them deterministic. Default `ContinuousClock`.
    ///   - epoch: the wall-clock date that corresponds to `clock`'s reading now: every
    ///     ``Message/publishedAt``, dead-letter time and statistics snapshot is this date plus the
    ///     clock's time since. Default: now. With a manual clock, a fixed date makes them
    ///     deterministic too.
    ///   - logger: where OpenQ logs; nothing per message above `trace`.
    public init(
        configuration: Configuration = .init(),
        clock: some Clock<Duration> = ContinuousClock(),
        epoch: Date = Date(),
        logger: Logger = Logger(label: "openq")
    ) {
        self.init(configuration: configuration, clock: clock, epoch: epoch, logger: logger, store: nil)
    }

    /// Creates a broker whose durable topics live in `storage`, and takes ownership of the store.
    ///
    /// ```swift
    /// import OpenQSQLite
    ///
    /// let queue = try await MessageQueue(storage: .sqlite(path: "data/openq.sqlite"))
    /// let jobs = try await queue.createTopic("jobs", of: Job.self, configuration: .init(durability: .durable))
    /// ```
    ///
    /// Topics are durable only when their configuration says ``Durability/durable``; one broker
    /// holds durable and in-memory topics side by side. Declaring a durable topic again after a
    /// restart brings back what it held (see the article <doc:DurableTopics>). ``shutdown(gracePeriod:)``
    /// commits what is pending and releases the store.
    /// - Parameters:
    ///   - storage: where durable topics live, such as `.sqlite(path:)` from `OpenQSQLite`.
    ///   - configuration: broker-wide settings.
    ///   - clock: the source of time, as in ``init(configuration:clock:epoch:logger:)``.
    ///   - epoch: the wall-clock date of the clock's reading now. It also places stored times
    ///     (delays, retry backoffs) on the clock after a restart: inject both to test recovery
    ///     without sleeping.
    ///   - logger: where OpenQ logs.
    /// - Throws: ``OpenQError/Code/storeInUse`` when another broker, in this process or another,
    ///   owns the store (by this path or another name of the file); ``OpenQError/Code/storeCorrupted``
    ///   (a damaged file, or not a database), ``OpenQError/Code/storeIncompatible`` (another
    ///   application's database, a newer OpenQ's store), ``OpenQError/Code/storeReadOnly``,
    ///   ``OpenQError/Code/storeFull`` or ``OpenQError/Code/storageFailed`` when it cannot be
    ///   opened. A file that fails to open is left as it was, byte for byte, and nothing opening it
    ///   created stays beside it.
    public init(
        storage: Storage,
        configuration: Configuration = .init(),
        clock: some Clock<Duration> = ContinuousClock(),
        epoch: Date = Date(),
        logger: Logger = Logger(label: "openq")
    ) async throws {
        let store = try await storage.open()
        // Message ids continue after the stored ones: an id is never reused.
        MessageID.advance(past: store.nextMessageID)
        self.init(configuration: configuration, clock: clock, epoch: epoch, logger: logger, store: store)
    }

    private init(
        configuration: Configuration,
        clock: some Clock<Duration>,
        epoch: Date,
        logger: Logger,
        store: (any DurableStore)?
    ) {
        self.store = store
        self.configuration = configuration
        self.clock = BrokerClock(clock, epoch: epoch)
        self.driver = BrokerDriver(clock: self.clock)
        self.logger = logger
        self.metrics = MetricsExporter(factory: configuration.metricsFactory ?? MetricsSystem.factory)
        self.seeds = SplitMix64(seed: configuration.randomSeed ?? .random(in: .min ... .max))
        let interval = configuration.metricsInterval
        driver.onMetrics { [weak self] in
            guard let self, await self.exportMetricsIfRunning() else { return nil }
            return interval
        }
    }

    /// The broker's own life: a second `shutdown` while the first drains waits for the same report.
    private enum Lifecycle {
        case running
        case shuttingDown(waiters: [CheckedContinuation<ShutdownReport, Never>])
        case shutDown
    }

    private var isShutDown: Bool {
        if case .running = lifecycle { return false }
        return true
    }

    // MARK: Topics

    /// Creates a topic for one payload type, or returns the existing one when it was created
    /// with the same type and configuration.
    ///
    /// When the configuration has a dead-letter policy, the dead-letter topic (default
    /// `<name>.dlq`) is created too, with a ``DeadLetterPolicy/subscriptionName`` subscription
    /// that holds dead letters until they are consumed or redriven; a
    /// ``DeadLetterPolicy/after(deliveries:into:)`` topic must exist already and is used as it is.
    /// - Throws: ``OpenQError/Code/invalidName``, ``OpenQError/Code/invalidConfiguration``,
    ///   ``OpenQError/Code/topicAlreadyExists`` (another type or configuration),
    ///   ``OpenQError/Code/payloadTypeMismatch`` (an existing dead-letter topic of another type),
    ///   ``OpenQError/Code/topicNotFound`` (a missing `into:` dead-letter topic),
    ///   ``OpenQError/Code/shutDown``.
    public func createTopic<Payload: Sendable>(
        _ name: String,
        of type: Payload.Type = Payload.self,
        configuration: TopicConfiguration = .init()
    ) async throws -> Topic<Payload> {
        // `async` like the `Codable` overload, so that the two differ only in their constraint and
        // the more specific one is always chosen (a sync/async pair made Swift pick this one for a
        // Codable type in top-level code).
        if configuration.durability == .durable {
            throw OpenQError.invalidConfiguration(
                "Topic '\(name)' is durable, but its payload \(Payload.self) is not Codable: make it Codable, or "
                    + "pass a PayloadCodec with createTopic(_:of:configuration:codec:).")
        }
        return try createTopic(name, payloadType: Payload.self, configuration: configuration, durable: nil)
    }

    /// Creates a topic for a `Codable` payload type, or returns the existing one when it was
    /// created with the same type and configuration.
    ///
    /// As ``createTopic(_:of:configuration:)-3a1sr``; a ``Durability/durable`` topic stores its payloads as
    /// JSON (`Data` and `[UInt8]` as they are), and on a restart brings back what the store holds
    /// for it.
    /// - Throws: as the other overload; for a durable topic also
    ///   ``OpenQError/Code/invalidConfiguration`` when the broker has no storage,
    ///   ``OpenQError/Code/payloadTypeMismatch`` or ``OpenQError/Code/topicAlreadyExists`` when the
    ///   store holds the topic with another payload type or configuration,
    ///   ``OpenQError/Code/storageFailed``.
    public func createTopic<Payload: Codable & Sendable>(
        _ name: String,
        of type: Payload.Type = Payload.self,
        configuration: TopicConfiguration = .init()
    ) async throws -> Topic<Payload> {
        guard configuration.durability == .durable else {
            return try createTopic(name, payloadType: Payload.self, configuration: configuration, durable: nil)
        }
        return try await createTopic(
            name, of: type, configuration: configuration, codec: defaultCodec(for: Payload.self))
    }

    /// Creates a topic whose payloads a durable store keeps through `codec`, or returns the
    /// existing one when it was created with the same type and configuration.
    ///
    /// ```swift
    /// let events = try await queue.createTopic(
    ///     "events", of: String.self, configuration: .init(durability: .durable), codec: Utf8Codec())
    /// ```
    /// - Throws: as ``createTopic(_:of:configuration:)-3a1sr``.
    public func createTopic<Payload: Sendable>(
        _ name: String,
        of type: Payload.Type = Payload.self,
        configuration: TopicConfiguration = .init(),
        codec: some PayloadCodec<Payload>
    ) async throws -> Topic<Payload> {
        guard configuration.durability == .durable else {
            return try createTopic(name, payloadType: Payload.self, configuration: configuration, durable: nil)
        }
        guard let store else {
            throw OpenQError.invalidConfiguration(
                "Topic '\(name)' is durable, but the broker has no storage: create it with "
                    + "MessageQueue(storage: .sqlite(path:)) from OpenQSQLite.")
        }
        let binding = DurableBinding(
            store: store, payloadTypeName: String(reflecting: Payload.self),
            encode: { record, index in
                try codec.encode(unsafeDowncast(record, to: TypedRecord<Payload>.self).payload(at: index))
            },
            decode: { row, topic in try Self.record(of: row, in: topic, codec: codec) })
        let setup = DurableSetup(binding: binding)
        // Read what the store holds for the topic (and a new dead-letter topic) first, off the
        // cooperative pool; then create the topic without a suspension point, so no other call of
        // this actor runs between the look-up of the name and the registration.
        try validateName(name, kind: "topic")
        try configuration.validate()
        var recovered: [String: RecoveredTopic] = [:]
        if topics[name] == nil {
            guard !isShutDown else { throw OpenQError.shutDown("The message queue") }
            if configuration.deadLetter.maxDeliveries != nil {
                // Refuse a bad dead-letter topic before the store records anything.
                let (deadLetterName, existing) = try checkDeadLetterTopic(
                    for: name, payloadType: Payload.self, configuration: configuration, isDurable: true)
                if existing == nil {
                    recovered[deadLetterName] = try await store.openTopic(
                        name: deadLetterName, payloadType: binding.payloadTypeName,
                        configuration: Self.deadLetterConfiguration(of: configuration))
                }
            }
            recovered[name] = try await store.openTopic(
                name: name, payloadType: binding.payloadTypeName, configuration: configuration)
        }
        setup.recovered = recovered
        let topic = try createTopic(name, payloadType: Payload.self, configuration: configuration, durable: setup)
        for (topic, row, reason) in setup.undecodable {
            try await store.quarantine(topic: topic, sequence: row.sequence, payload: row.payload, reason: reason)
        }
        return topic
    }

    /// A stored message as a record of the topic's payload type again (a dead letter with its
    /// origin).
    private static func record<Payload: Sendable>(
        of row: StoredMessageRow, in topic: String, codec: some PayloadCodec<Payload>
    ) throws -> MessageRecord {
        let payload = try codec.decode(row.payload)
        let record: TypedRecord<Payload>
        if let originTopic = row.originTopic, let originSequence = row.originSequence,
            let originPublishedAt = row.originPublishedAt
        {
            record = DeadLetterRecord(
                payload: payload, headers: row.headers, priority: row.priority, id: MessageID(rawValue: row.id),
                origin: MessageOrigin(
                    topic: originTopic, sequenceNumber: originSequence, publishedAt: originPublishedAt))
        } else {
            record = TypedRecord(
                payload: payload, headers: row.headers, priority: row.priority, id: MessageID(rawValue: row.id))
        }
        record.stamp(firstID: row.id, topic: topic, firstSequence: row.sequence, publishedAt: row.publishedAt)
        return record
    }

    private func createTopic<Payload: Sendable>(
        _ name: String,
        payloadType: Payload.Type,
        configuration: TopicConfiguration,
        durable: DurableSetup?
    ) throws -> Topic<Payload> {
        try validateName(name, kind: "topic")
        try configuration.validate()
        guard !isShutDown else { throw OpenQError.shutDown("The message queue") }
        if let existing = topics[name] {
            guard existing.carries(Payload.self), existing.configuration == configuration else {
                throw OpenQError(
                    .topicAlreadyExists,
                    "Topic '\(name)' exists with payload \(existing.payloadType) and \(existing.configuration); "
                        + "look it up with topic(_:of:) or choose another name."
                )
            }
            return Topic(storage: existing)
        }
        var deadLetterTarget: TopicStorage?
        if configuration.deadLetter.maxDeliveries != nil {
            deadLetterTarget = try deadLetterTopic(
                for: name, payloadType: Payload.self, configuration: configuration, durable: durable)
        }
        let storage = TopicStorage(
            name: name,
            payloadType: Payload.self,
            configuration: configuration,
            clock: clock,
            driver: driver,
            logger: logger,
            deadLetterTarget: deadLetterTarget,
            seed: seeds.next(),
            parkedPublisherWarning: self.configuration.parkedPublisherWarning,
            interceptors: self.configuration.interceptors,
            durable: durable?.binding
        )
        if let durable { try durable.recover(storage) }
        topics[name] = storage
        if let deadLetterTarget { deadLetterSources[deadLetterTarget.name, default: []].insert(name) }
        startMetricsIfNeeded()
        logger.debug("Created topic", metadata: ["topic": "\(name)", "payload": "\(Payload.self)"])
        return Topic(storage: storage)
    }

    /// Checks where a topic's dead letters would go, without creating anything (a durable topic
    /// runs this before it touches the store).
    /// - Returns: the dead-letter topic's name, and its storage when it exists.
    private func checkDeadLetterTopic(
        for name: String,
        payloadType: Any.Type,
        configuration: TopicConfiguration,
        isDurable: Bool
    ) throws -> (name: String, existing: TopicStorage?) {
        let deadLetterName = configuration.deadLetter.topicName ?? "\(name).dlq"
        guard configuration.deadLetter.topicName != nil || deadLetterName.utf8.count <= 255 else {
            throw OpenQError(
                .invalidName,
                "Topic '\(name)' has \(name.utf8.count) characters, too many for its default dead-letter topic "
                    + "'<name>.dlq' (at most 255): use a name of at most 251 characters, name the dead-letter "
                    + "topic with DeadLetterPolicy.after(deliveries:topic:), or pass deadLetter: .disabled."
            )
        }
        try validateName(deadLetterName, kind: "dead-letter topic")
        guard deadLetterName != name else {
            throw OpenQError.invalidConfiguration(
                "Topic '\(name)' cannot be its own dead-letter topic; name another one in DeadLetterPolicy.")
        }
        if configuration.deadLetter.usesExistingTopic, topics[deadLetterName] == nil {
            throw OpenQError(
                .topicNotFound,
                "Dead-letter topic '\(deadLetterName)' of '\(name)' does not exist: create it first, or use "
                    + "DeadLetterPolicy.after(deliveries:topic:) to have OpenQ create it.")
        }
        guard let existing = topics[deadLetterName] else { return (deadLetterName, nil) }
        guard existing.carries(payloadType) else {
            throw OpenQError(
                .payloadTypeMismatch,
                "Dead-letter topic '\(deadLetterName)' carries \(existing.payloadType), not \(payloadType); "
                    + "name another dead-letter topic in DeadLetterPolicy.after(deliveries:topic:)."
            )
        }
        guard existing.isDurable || !isDurable else {
            throw OpenQError.invalidConfiguration(
                "Durable topic '\(name)' cannot dead-letter into the in-memory topic '\(deadLetterName)': its "
                    + "dead letters would not survive a restart. Name another dead-letter topic.")
        }
        var next: TopicStorage? = existing
        while let link = next {
            guard link.name != name else {
                throw OpenQError.invalidConfiguration(
                    "Topic '\(name)' cannot dead-letter into '\(deadLetterName)': dead letters would go round in a "
                        + "circle ('\(deadLetterName)' leads back to '\(name)').")
            }
            next = link.deadLetterTarget
        }
        return (deadLetterName, existing)
    }

    private func deadLetterTopic(
        for name: String,
        payloadType: Any.Type,
        configuration: TopicConfiguration,
        durable: DurableSetup?
    ) throws -> TopicStorage {
        let (deadLetterName, existing) = try checkDeadLetterTopic(
            for: name, payloadType: payloadType, configuration: configuration, isDurable: durable != nil)
        let storage: TopicStorage
        if let existing {
            if configuration.deadLetter.usesExistingTopic { return existing }
            storage = existing
        } else {
            storage = TopicStorage(
                name: deadLetterName,
                payloadType: payloadType,
                configuration: Self.deadLetterConfiguration(of: configuration),
                clock: clock,
                driver: driver,
                logger: logger,
                deadLetterTarget: nil,
                seed: seeds.next(),
                parkedPublisherWarning: self.configuration.parkedPublisherWarning,
                interceptors: self.configuration.interceptors,
                durable: durable?.binding
            )
            if let durable { try durable.recover(storage) }
        }
        try storage.ensureSubscription(
            DeadLetterPolicy.subscriptionName, configuration: .init(acknowledgement: .manual))
        topics[deadLetterName] = storage
        return storage
    }

    /// The configuration of the dead-letter topic a topic's policy creates.
    static func deadLetterConfiguration(of configuration: TopicConfiguration) -> TopicConfiguration {
        TopicConfiguration(
            capacity: configuration.deadLetter.capacity,
            overflow: .dropOldest,
            deadLetter: .disabled,
            retryBackoff: configuration.retryBackoff,
            durability: configuration.durability
        )
    }

    /// Looks up a topic by name and payload type.
    /// - Throws: ``OpenQError/Code/topicNotFound``, ``OpenQError/Code/payloadTypeMismatch``.
    public func topic<Payload: Sendable>(_ name: String, of type: Payload.Type = Payload.self) throws -> Topic<Payload>
    {
        guard let existing = topics[name] else { throw OpenQError.topicNotFound(name) }
        guard existing.carries(Payload.self) else {
            throw OpenQError(
                .payloadTypeMismatch,
                "Topic '\(name)' carries \(existing.payloadType), not \(Payload.self); look it up with that type."
            )
        }
        return Topic(storage: existing)
    }

    /// Every topic's storage, for tests.
    func storagesForTesting() -> [TopicStorage] { Array(topics.values) }

    /// The topics the broker's store holds (name, payload type name, configuration), so that a
    /// process such as a server can reopen topics it did not declare in code. Empty for a broker
    /// without storage.
    ///
    /// Reopen a topic whose policy is ``DeadLetterPolicy/after(deliveries:into:)`` after its
    /// dead-letter topic: that one must exist first.
    /// - Throws: ``OpenQError/Code/storageFailed``.
    public func storedTopics() async throws -> [StoredTopic] {
        try await store?.storedTopics() ?? []
    }

    /// The messages the store quarantined because their payload no longer decoded (see
    /// ``TopicStatistics/quarantined``), oldest first, with their bytes and the reason. Empty for a
    /// broker without storage.
    /// - Throws: ``OpenQError/Code/storageFailed``.
    public func quarantinedMessages() async throws -> [QuarantinedMessage] {
        try await store?.quarantinedMessages() ?? []
    }

    /// The size of the broker's store and of its write-ahead log, its commits, and its fault if it
    /// cannot commit now (a full disk, a read-only file); `nil` for a broker without storage.
    ///
    /// ```swift
    /// if let store = try await queue.storeStatistics(), let fault = store.fault {
    ///     print("the store cannot commit: \(fault.code)")   // publishes are refused meanwhile
    /// }
    /// ```
    /// - Throws: ``OpenQError/Code/storageFailed`` when the sizes cannot be read.
    public func storeStatistics() async throws -> StoreStatistics? {
        try await store?.statistics()
    }

    /// The names of all topics, sorted.
    public func topicNames() -> [String] {
        topics.keys.sorted()
    }

    /// Deletes a topic: its subscriptions' sequences end, publishing to it throws
    /// ``OpenQError/Code/shutDown``, and what it held is discarded.
    /// - Returns: the statistics of the topic at deletion (its depth and in-flight counts are the
    ///   messages discarded).
    /// - Throws: ``OpenQError/Code/topicNotFound``; ``OpenQError/Code/topicInUse`` for the
    ///   dead-letter topic of a live topic (delete that topic first).
    @discardableResult
    public func deleteTopic(_ name: String) async throws -> TopicStatistics {
        guard let storage = topics[name] else { throw OpenQError.topicNotFound(name) }
        if let user = deadLetterSources[name]?.min() {
            throw OpenQError(
                .topicInUse,
                "Topic '\(name)' is the dead-letter topic of '\(user)'; delete '\(user)' first."
            )
        }
        topics[name] = nil
        if let target = storage.deadLetterTopicName { deadLetterSources[target]?.remove(name) }
        storage.finish()
        metrics.forget(topic: name)
        let statistics = storage.statistics()
        if storage.isDurable, let store {
            let mark = store.journalMark
            store.deleteTopic(name)
            try await store.sync(since: mark)
        }
        logger.debug("Deleted topic", metadata: ["topic": "\(name)"])
        return statistics
    }

    /// Moves messages from a dead-letter topic back to the subscriptions they came from, with a
    /// fresh attempt count and without the dead-letter headers.
    ///
    /// Messages whose source topic or subscription no longer exists stay in the dead-letter topic.
    /// Redriven messages may take a subscription past its capacity; redrive in chunks with `max`
    /// to keep a bound. A durable dead-letter topic whose messages wait in the store (beyond
    /// `residentMessages`) is read back page by page as the redrive goes.
    /// - Returns: how many messages moved.
    @discardableResult
    public func redrive(from deadLetterTopic: String, max: Int = .max) async throws -> Int {
        guard let storage = topics[deadLetterTopic] else { throw OpenQError.topicNotFound(deadLetterTopic) }
        guard max >= 1 else { throw OpenQError.invalidConfiguration("redrive(max:) needs max ≥ 1; it was \(max).") }
        let topics = self.topics
        let mark = store?.journalMark ?? 0
        var moved = storage.redrive(max: max) { topics[$0] }
        // A paging dead-letter topic: wait for each page it reads back, and go on.
        while moved < max, await storage.waitForPage(of: DeadLetterPolicy.subscriptionName) {
            let more = storage.redrive(max: max - moved) { topics[$0] }
            if more == 0 { break }
            moved += more
        }
        try await store?.sync(since: mark)
        logger.info("Redrove dead letters", metadata: ["deadLetterTopic": "\(deadLetterTopic)", "count": "\(moved)"])
        return moved
    }

    /// Changes a topic's dead-letter policy while it runs: from the next failed delivery on,
    /// messages are dead-lettered by the new bound into the new dead-letter topic.
    ///
    /// ```swift
    /// let failed = try await queue.createTopic("failed-jobs", of: Job.self)
    /// try await queue.setDeadLetterPolicy(.after(deliveries: 3, into: "failed-jobs"), of: "jobs")
    /// ```
    ///
    /// The dead-letter topic is resolved as at ``createTopic(_:of:configuration:)-3a1sr``: a
    /// ``DeadLetterPolicy/after(deliveries:topic:capacity:)`` topic is created when missing (with its
    /// ``DeadLetterPolicy/subscriptionName`` subscription), a ``DeadLetterPolicy/after(deliveries:into:)``
    /// topic must exist. Deliveries in flight keep their attempt counts and are judged by the new
    /// bound when they next fail; messages already dead-lettered stay where they are. Pass
    /// ``DeadLetterPolicy/disabled`` to stop dead-lettering (rejected messages are then
    /// discarded). The old dead-letter topic is left as it is.
    ///
    /// A durable topic's new configuration is committed before this returns and is the one a
    /// restart finds (``storedTopics()``): declaring the topic again with the configuration it was
    /// created with is then ``OpenQError/Code/topicAlreadyExists``, as Amazon SQS answers
    /// `CreateQueue` with other attributes.
    /// - Throws: ``OpenQError/Code/topicNotFound`` (the topic, or an `into:` dead-letter topic),
    ///   ``OpenQError/Code/invalidConfiguration`` (an invalid bound, the topic itself, a circle of
    ///   dead-letter topics, an in-memory dead-letter topic for a durable topic),
    ///   ``OpenQError/Code/payloadTypeMismatch``, ``OpenQError/Code/invalidName``,
    ///   ``OpenQError/Code/shutDown``, ``OpenQError/Code/storageFailed``.
    public func setDeadLetterPolicy(_ policy: DeadLetterPolicy, of topic: String) async throws {
        guard let source = topics[topic] else { throw OpenQError.topicNotFound(topic) }
        guard !isShutDown else { throw OpenQError.shutDown("The message queue") }
        var configuration = source.configuration
        configuration.deadLetter = policy
        try configuration.validate()
        var setup: DurableSetup?
        if let binding = source.durableBinding {
            setup = DurableSetup(binding: binding)
            if policy.maxDeliveries != nil,
                case (let deadLetterName, nil) = try checkDeadLetterTopic(
                    for: topic, payloadType: source.payloadType, configuration: configuration, isDurable: true)
            {
                setup?.recovered[deadLetterName] = try await binding.store.openTopic(
                    name: deadLetterName, payloadType: binding.payloadTypeName,
                    configuration: Self.deadLetterConfiguration(of: configuration))
            }
        }
        // The await above lets other calls of this actor run: the topic may be gone.
        guard topics[topic] === source, !isShutDown else { throw OpenQError.topicNotFound(topic) }
        var target: TopicStorage?
        if policy.maxDeliveries != nil {
            target = try deadLetterTopic(
                for: topic, payloadType: source.payloadType, configuration: configuration, durable: setup)
        }
        if let setup, let store {
            for (name, row, reason) in setup.undecodable {
                try await store.quarantine(topic: name, sequence: row.sequence, payload: row.payload, reason: reason)
            }
        }
        // The policy changes in memory at once (a durable topic's commit follows), so the index does.
        if let previous = source.deadLetterTopicName { deadLetterSources[previous]?.remove(topic) }
        if let target { deadLetterSources[target.name, default: []].insert(topic) }
        try await source.setDeadLetterPolicy(policy, target: target)
        logger.info(
            "Changed dead-letter policy",
            metadata: ["topic": "\(topic)", "deadLetterTopic": "\(target?.name ?? "none")"])
    }

    /// Replaces a topic's ``TopicConfiguration/metadata`` while it runs. A durable topic's new
    /// metadata is committed before this returns and is what ``storedTopics()`` lists after a
    /// restart (declare the topic with it then).
    ///
    /// ```swift
    /// try await queue.setMetadata(["owner": "billing"], of: "jobs")
    /// ```
    /// - Throws: ``OpenQError/Code/topicNotFound``, ``OpenQError/Code/invalidConfiguration`` (more
    ///   than 64 pairs, or a key or value longer than 256 bytes), ``OpenQError/Code/shutDown``,
    ///   ``OpenQError/Code/storageFailed``.
    public func setMetadata(_ metadata: [String: String], of topic: String) async throws {
        guard let storage = topics[topic] else { throw OpenQError.topicNotFound(topic) }
        guard !isShutDown else { throw OpenQError.shutDown("The message queue") }
        try TopicConfiguration.validate(metadata: metadata)
        try await storage.setMetadata(metadata)
    }

    // MARK: Statistics

    /// A snapshot of every topic and subscription.
    public func statistics() -> BrokerStatistics {
        BrokerStatistics(
            takenAt: clock.date(at: clock.now()),
            topics: topics.keys.sorted().compactMap { topics[$0]?.statistics() }
        )
    }

    /// Snapshots taken every `interval` (by the broker's clock), the first at once, as an
    /// `AsyncSequence`. It ends when the broker shuts down or the iterating task is cancelled.
    ///
    /// The snapshots are taken in the iterating task, when it asks for the next one (no task of
    /// its own, no buffering): a reader slower than `interval` gets fresh snapshots, not a backlog.
    ///
    /// ```swift
    /// for await snapshot in queue.statisticsUpdates(every: .seconds(5)) {
    ///     print(snapshot.subscription("billing", of: "orders")?.depth ?? 0)
    /// }
    /// ```
    public nonisolated func statisticsUpdates(every interval: Duration) -> StatisticsUpdates {
        StatisticsUpdates(queue: self, interval: interval)
    }

    /// A snapshot, or `nil` once the broker is shut down.
    func statisticsIfRunning() -> BrokerStatistics? {
        isShutDown ? nil : statistics()
    }

    /// Exports the current statistics through swift-metrics now (also done every
    /// ``Configuration/metricsInterval``).
    public func exportMetrics() {
        metrics.export(statistics())
    }

    /// The periodic export, run by the driver; false once the broker is shut down.
    private func exportMetricsIfRunning() -> Bool {
        guard !isShutDown else { return false }
        exportMetrics()
        return true
    }

    private func startMetricsIfNeeded() {
        guard !metricsScheduled, let interval = configuration.metricsInterval else { return }
        metricsScheduled = true
        driver.schedule(.metrics, at: clock.now() + interval)
    }

    // MARK: Shutdown

    /// Shuts the broker down.
    ///
    /// New publishes throw ``OpenQError/Code/shutDown`` at once, and publishers waiting for room
    /// fail the same way. Consumers go on receiving and settling for up to `gracePeriod`, and
    /// shutdown returns as soon as there is nothing left to wait for: nothing is in flight, and
    /// nothing waits that a consumer (a stream, a handler's ``Consumer``, or a `receive` in
    /// progress) could still take. A subscription that nobody consumes does not hold the shutdown:
    /// its backlog is reported as undelivered at once. A message that is delayed or in retry
    /// backoff holds it only while its subscription has a consumer and only if it becomes visible
    /// before the grace period ends; otherwise it is reported as undelivered.
    ///
    /// Topics drain and finish in dead-letter order: a topic before its dead-letter topic, so that
    /// a message dead-lettered during the grace period reaches a dead-letter topic that is still
    /// open (and is delivered to the dead-letter topic's consumers, if it has any).
    ///
    /// Then every consumer sequence ends and the report says what stayed unacknowledged. A second
    /// call while the first is draining waits for it and returns the same report (as a second
    /// `run()` of a service group does); a call after shutdown finished returns a fresh report at
    /// once.
    public func shutdown(gracePeriod: Duration = .seconds(30)) async -> ShutdownReport {
        switch lifecycle {
        case .shuttingDown(var waiters):
            return await withCheckedContinuation { continuation in
                waiters.append(continuation)
                lifecycle = .shuttingDown(waiters: waiters)
            }
        case .shutDown:
            return report()
        case .running:
            lifecycle = .shuttingDown(waiters: [])
        }
        let waves = Self.shutdownWaves(Array(topics.values))
        logger.info("Shutting down", metadata: ["topics": "\(topics.count)", "gracePeriod": "\(gracePeriod)"])
        let clock = self.clock
        let deadline = clock.now() + gracePeriod
        for wave in waves {
            for storage in wave { storage.beginShutdown(deadline: deadline) }
        }
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                for wave in waves {
                    await withTaskGroup(of: Void.self) { idle in
                        for storage in wave { idle.addTask { await storage.waitUntilIdle() } }
                    }
                }
            }
            group.addTask { try? await clock.sleep(until: deadline) }
            await group.next()
            group.cancelAll()
        }
        for wave in waves {
            for storage in wave { storage.finish() }
        }
        metrics.export(statistics())
        driver.finish()
        // Commit what is pending and release the store, so another broker can open it.
        await store?.close()
        let report = report()
        if report.unacknowledged > 0 || report.undelivered > 0 {
            logger.warning(
                "Shut down with messages left",
                metadata: ["unacknowledged": "\(report.unacknowledged)", "undelivered": "\(report.undelivered)"]
            )
        } else {
            logger.info("Shut down cleanly")
        }
        if case .shuttingDown(let waiters) = lifecycle {
            for waiter in waiters { waiter.resume(returning: report) }
        }
        lifecycle = .shutDown
        return report
    }

    private func report() -> ShutdownReport {
        ShutdownReport(statistics: statistics())
    }

    /// The topics in the order they drain and finish: every topic comes in an earlier wave than
    /// the dead-letter topic it feeds, so no dead letter meets a finished dead-letter topic.
    static func shutdownWaves(_ storages: [TopicStorage]) -> [[TopicStorage]] {
        var feeders: [ObjectIdentifier: Int] = [:]
        for storage in storages {
            if let target = storage.deadLetterTarget { feeders[ObjectIdentifier(target), default: 0] += 1 }
        }
        var remaining = storages
        var waves: [[TopicStorage]] = []
        while !remaining.isEmpty {
            let wave = remaining.filter { feeders[ObjectIdentifier($0), default: 0] == 0 }
            // Dead-letter chains end at a topic without a dead-letter topic, so each wave takes at
            // least one topic; the fallback only guards against a cycle.
            guard !wave.isEmpty else {
                waves.append(remaining)
                break
            }
            for storage in wave {
                if let target = storage.deadLetterTarget { feeders[ObjectIdentifier(target), default: 0] -= 1 }
            }
            remaining.removeAll { storage in wave.contains { $0 === storage } }
            waves.append(wave.sorted { $0.name < $1.name })
        }
        return waves
    }
}

/// Statistics snapshots taken at an interval; see ``MessageQueue/statisticsUpdates(every:)``.
public struct StatisticsUpdates: AsyncSequence, Sendable {
    /// One snapshot of the broker.
    public typealias Element = BrokerStatistics
    /// Iteration never throws.
    public typealias Failure = Never

    let queue: MessageQueue
    let interval: Duration

    /// Starts an iteration: the first snapshot at once, then one per interval.
    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(queue: queue, interval: interval)
    }

    /// Takes the snapshots, in the iterating task.
    public struct AsyncIterator: AsyncIteratorProtocol {
        let queue: MessageQueue
        let interval: Duration
        var next: Duration?

        /// The next snapshot, or `nil` once the broker shut down or the task was cancelled.
        public mutating func next() async -> BrokerStatistics? {
            await next(isolation: nil)
        }

        /// The next snapshot, or `nil` once the broker shut down or the task was cancelled.
        public mutating func next(isolation actor: isolated (any Actor)?) async -> BrokerStatistics? {
            let clock = queue.clock
            if let next {
                do { try await clock.sleep(until: next) } catch { return nil }
            }
            guard !Task.isCancelled, let snapshot = await queue.statisticsIfRunning() else { return nil }
            next = (next ?? clock.now()) + interval
            return snapshot
        }
    }
}

/// What ``MessageQueue/shutdown(gracePeriod:)`` left behind.
public struct ShutdownReport: Hashable, Sendable {
    /// Deliveries still in flight (handed out, never settled) when consumers were stopped.
    public var unacknowledged: Int
    /// Messages still waiting or delayed, never delivered.
    public var undelivered: Int
    /// The final statistics.
    public var statistics: BrokerStatistics

    init(statistics: BrokerStatistics) {
        self.statistics = statistics
        self.unacknowledged = statistics.topics.reduce(0) { $0 + $1.inFlight }
        self.undelivered = statistics.topics.reduce(0) { total, topic in
            total + topic.subscriptions.reduce(0) { $0 + $1.depth + $1.scheduled }
        }
    }
}

/// What a durable topic needs from its typed creator: how to encode its payloads, how to turn a
/// stored row back into a record of its payload type, and what the store held for the topics
/// being created (read before, off the cooperative pool). A class: the creation records in it the
/// messages that no longer decode, which the creator then moves to the quarantine.
final class DurableSetup {
    let binding: DurableBinding
    var recovered: [String: RecoveredTopic] = [:]
    var undecodable: [(topic: String, row: StoredMessageRow, reason: String)] = []

    init(binding: DurableBinding) {
        self.binding = binding
    }

    /// Brings back what the store held for the topic (nothing, for a new one).
    func recover(_ storage: TopicStorage) throws(OpenQError) {
        guard let recovered = recovered[storage.name] else {
            throw OpenQError(
                .storageFailed,
                "Topic '\(storage.name)' changed while it was being opened (created or deleted meanwhile); try again.")
        }
        let name = storage.name
        let makeRecord = binding.decode
        for (row, reason) in storage.recover(recovered, makeRecord: { row in try makeRecord(row, name) }) {
            undecodable.append((name, row, reason))
        }
    }
}
