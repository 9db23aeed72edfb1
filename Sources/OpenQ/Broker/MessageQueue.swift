// The broker actor: its configuration, topology (create, look up, delete topics) and metadata; the control plane only.

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
    var topics: [String: TopicRuntime] = [:]
    var lifecycle = Lifecycle.running
    /// The topics whose dead letters go to each topic, by the dead-letter topic's name: a topic
    /// in use as a dead-letter topic cannot be deleted, and the check costs no scan of every topic.
    var deadLetterSources: [String: Set<String>] = [:]
    var metrics: MetricsExporter
    /// The broker's background loop (timers, metrics export, started consumers).
    let driver: BrokerDriver
    var metricsScheduled = false
    var seeds: SplitMix64
    /// The store of durable topics; `nil` for a broker without storage or on a shared backend.
    package let store: (any DurableStore)?
    /// The shared backend of durable topics (PostgreSQL); `nil` unless the broker was opened on one.
    package let sharedBackend: (any SharedBackend)?

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
        switch try await storage.open() {
        case .journal(let store):
            // Message ids continue after the stored ones: an id is never reused.
            MessageID.advance(past: store.nextMessageID)
            self.init(configuration: configuration, clock: clock, epoch: epoch, logger: logger, store: store)
        case .shared(let backend):
            // Ids of a shared topic's messages come from the database.
            self.init(
                configuration: configuration, clock: clock, epoch: epoch, logger: logger, store: nil,
                sharedBackend: backend)
        }
    }

    private init(
        configuration: Configuration,
        clock: some Clock<Duration>,
        epoch: Date,
        logger: Logger,
        store: (any DurableStore)?,
        sharedBackend: (any SharedBackend)? = nil
    ) {
        self.store = store
        self.sharedBackend = sharedBackend
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
    enum Lifecycle {
        case running
        case shuttingDown(waiters: [CheckedContinuation<ShutdownReport, Never>])
        case shutDown
    }

    var isShutDown: Bool {
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
    func createTopic<Payload: Sendable>(
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
            return Topic(runtime: existing)
        }
        var deadLetterTarget: TopicRuntime?
        if configuration.deadLetter.maxDeliveries != nil {
            deadLetterTarget = try deadLetterTopic(
                for: name, payloadType: Payload.self, configuration: configuration, durable: durable)
        }
        let runtime = TopicRuntime(
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
        if let durable { try durable.recover(runtime) }
        topics[name] = runtime
        if let deadLetterTarget { deadLetterSources[deadLetterTarget.name, default: []].insert(name) }
        startMetricsIfNeeded()
        logger.debug("Created topic", metadata: ["topic": "\(name)", "payload": "\(Payload.self)"])
        return Topic(runtime: runtime)
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
        return Topic(runtime: existing)
    }
    /// Every topic's runtime, for tests.
    func runtimesForTesting() -> [TopicRuntime] { Array(topics.values) }
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
        guard let runtime = topics[name] else { throw OpenQError.topicNotFound(name) }
        if let user = deadLetterSources[name]?.min() {
            throw OpenQError(
                .topicInUse,
                "Topic '\(name)' is the dead-letter topic of '\(user)'; delete '\(user)' first."
            )
        }
        topics[name] = nil
        if let target = runtime.deadLetterTopicName { deadLetterSources[target]?.remove(name) }
        runtime.finish()
        metrics.forget(topic: name)
        let statistics = runtime.statistics()
        if runtime.shared != nil, let sharedBackend {
            _ = try await sharedBackend.deleteTopic(name: name)
        } else if runtime.isDurable, let store {
            let mark = store.journalMark
            store.deleteTopic(name)
            try await store.sync(since: mark)
        }
        logger.debug("Deleted topic", metadata: ["topic": "\(name)"])
        return statistics
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
        guard let runtime = topics[topic] else { throw OpenQError.topicNotFound(topic) }
        guard !isShutDown else { throw OpenQError.shutDown("The message queue") }
        try TopicConfiguration.validate(metadata: metadata)
        try await runtime.setMetadata(metadata)
    }
}
