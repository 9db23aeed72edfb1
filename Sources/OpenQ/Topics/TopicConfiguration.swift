// A topic's configuration: capacity, overflow, dead letters, retry backoff, retention, durability, metadata.

/// What a topic does when a publish finds it (or one of its subscriptions) full.
public enum OverflowPolicy: Hashable, Sendable, Codable {
    /// The publisher waits until there is room: backpressure. The default.
    case suspend
    /// `publish` throws ``OpenQError/Code/topicFull``; nothing is enqueued.
    case reject
    /// The oldest message that is waiting (not in flight) is dropped to make room, and counted.
    case dropOldest
    /// The new message is dropped, and counted.
    case dropNewest
}

/// How many deliveries a message gets before it moves to the topic's dead-letter topic.
///
/// Two kinds of dead-letter topic:
/// - ``after(deliveries:topic:capacity:)`` (the default kind): OpenQ creates the dead-letter topic
///   when it is missing and gives it a ``subscriptionName`` subscription that holds the dead letters
///   until they are consumed or redriven with ``MessageQueue/redrive(from:max:)``.
/// - ``after(deliveries:into:)``: an existing, ordinary topic that its own subscriptions consume,
///   the way an Amazon SQS dead-letter queue is an ordinary queue. OpenQ neither creates it nor adds
///   a subscription to it.
///
/// A topic's policy can change while it runs: ``MessageQueue/setDeadLetterPolicy(_:of:)``.
public struct DeadLetterPolicy: Hashable, Sendable, Codable {
    /// The number of deliveries after which an unacknowledged message is dead-lettered, or `nil`
    /// when the topic has no dead-letter topic.
    public let maxDeliveries: Int?
    /// The dead-letter topic's name, or `nil` for the default `<topic>.dlq`.
    public let topicName: String?
    /// How many messages the dead-letter topic holds before it drops its oldest (counted in its
    /// statistics). Independent of the source topic's capacity: a burst of failures must not
    /// push out dead letters nobody has looked at yet. Unused by ``after(deliveries:into:)``, whose
    /// topic keeps its own configuration.
    public let capacity: Int
    /// Whether the dead-letter topic is an existing, ordinary topic (``after(deliveries:into:)``):
    /// it must exist when the policy is applied, keeps its own configuration, gets no
    /// ``subscriptionName`` subscription, and its own subscriptions receive the dead letters.
    public let usesExistingTopic: Bool

    init(maxDeliveries: Int?, topicName: String?, capacity: Int, usesExistingTopic: Bool = false) {
        self.maxDeliveries = maxDeliveries
        self.topicName = topicName
        self.capacity = capacity
        self.usesExistingTopic = usesExistingTopic
    }

    /// Decodes a policy; one stored before ``usesExistingTopic`` existed reads as `false`.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        maxDeliveries = try container.decodeIfPresent(Int.self, forKey: .maxDeliveries)
        topicName = try container.decodeIfPresent(String.self, forKey: .topicName)
        capacity = try container.decode(Int.self, forKey: .capacity)
        usesExistingTopic = try container.decodeIfPresent(Bool.self, forKey: .usesExistingTopic) ?? false
    }

    /// The subscription every dead-letter topic has, which holds its messages until they are
    /// consumed or redriven with ``MessageQueue/redrive(from:max:)``.
    public static let subscriptionName = "dead-letters"

    /// No dead-letter topic: nacked messages are redelivered without end, and a message passed to
    /// ``Delivery/reject(reason:)`` is discarded (counted as dead-lettered, logged as a warning).
    public static let disabled = Self(maxDeliveries: nil, topicName: nil, capacity: 0)

    /// Dead-letter a message once it was delivered `deliveries` times without an acknowledgement,
    /// or on ``Delivery/reject(reason:)``.
    /// - Parameters:
    ///   - deliveries: the `maxDeliveries` bound, at least 1.
    ///   - topic: the dead-letter topic's name; `nil` for `<topic>.dlq`.
    ///   - capacity: the dead-letter topic's capacity when OpenQ creates it. Default 100 000.
    public static func after(deliveries: Int, topic: String? = nil, capacity: Int = 100_000) -> Self {
        Self(maxDeliveries: deliveries, topicName: topic, capacity: capacity)
    }

    /// Dead-letter a message once it was delivered `deliveries` times without an acknowledgement,
    /// or on ``Delivery/reject(reason:)``, into an existing topic that its own subscriptions
    /// consume (an SQS-style dead-letter queue).
    ///
    /// ```swift
    /// let failed = try await queue.createTopic("failed-jobs", of: Job.self)
    /// let inspect = try await failed.subscription("inspect")
    /// let jobs = try await queue.createTopic(
    ///     "jobs", of: Job.self, configuration: .init(deadLetter: .after(deliveries: 3, into: "failed-jobs")))
    /// ```
    ///
    /// The topic must exist when the policy is applied (``OpenQError/Code/topicNotFound``
    /// otherwise), carry the same payload type, and be durable when the source topic is. A dead
    /// letter is published into it like any message, with the dead-letter headers
    /// (``MessageHeader``), and is accepted even when its subscriptions are full.
    /// ``MessageQueue/redrive(from:max:)`` needs a ``subscriptionName`` subscription, which such a
    /// topic has only if you created one.
    /// - Parameters:
    ///   - deliveries: the `maxDeliveries` bound, at least 1.
    ///   - topic: the existing dead-letter topic's name.
    public static func after(deliveries: Int, into topic: String) -> Self {
        Self(maxDeliveries: deliveries, topicName: topic, capacity: 0, usesExistingTopic: true)
    }
}

/// Backoff before a negatively acknowledged message becomes visible again.
///
/// The delay before attempt `n + 1` is `initial × multiplier^(n − 1)`, capped at `maximum`, then
/// spread by `± jitter` (a fraction) so that failing consumers do not retry in lock-step.
public struct RetryBackoff: Hashable, Sendable, Codable {
    /// The delay after the first failed attempt.
    public var initial: Duration
    /// The largest delay.
    public var maximum: Duration
    /// The growth factor per attempt, at least 1.
    public var multiplier: Double
    /// The random spread as a fraction of the delay, in `0...1`.
    public var jitter: Double

    /// Exponential backoff. Defaults: 100 ms, doubling, capped at 60 s, ±20 % jitter.
    public static func exponential(
        initial: Duration = .milliseconds(100),
        maximum: Duration = .seconds(60),
        multiplier: Double = 2,
        jitter: Double = 0.2
    ) -> Self {
        Self(initial: initial, maximum: maximum, multiplier: multiplier, jitter: jitter)
    }

    /// No delay: a nacked message is visible again at once.
    public static let immediate = Self(initial: .zero, maximum: .zero, multiplier: 1, jitter: 0)

    /// The delay before the next attempt after `attempts` failed deliveries, for a `random`
    /// number in `0..<1`.
    func delay(afterAttempts attempts: Int, random: Double) -> Duration {
        guard initial > .zero else { return .zero }
        let ceiling = maximum.seconds
        var capped = initial.seconds
        var step = 1
        while step < attempts, capped < ceiling {
            capped *= multiplier
            step += 1
        }
        capped = min(capped, ceiling)
        let spread = capped * jitter * (random * 2 - 1)
        return .seconds(max(0, capped + spread))
    }
}

/// How long a topic keeps messages for replay, whether or not they were acknowledged.
///
/// Without retention (the default) a topic forgets a message once every subscription is done
/// with it, and new subscriptions start at the next message published.
///
/// A durable topic keeps its retained history in its store, not in memory: a named subscription
/// created at a position in the past (or sought there) gets the retained messages copied in by one
/// statement and reads them back in pages, after a restart too and however long the history. Each
/// publish moves the retention bound and deletes the messages that fell out of it, and that no
/// subscription holds, in one statement over that range.
public struct Retention: Hashable, Sendable, Codable {
    /// Keep at most this many of the latest messages; `nil` for no bound by count.
    public var count: Int?
    /// Keep messages for at most this long; `nil` for no bound by age.
    public var age: Duration?

    /// Bound by count, age, or both (whichever is reached first).
    public init(count: Int? = nil, age: Duration? = nil) {
        self.count = count
        self.age = age
    }

    /// Keep nothing for replay.
    public static let none = Self(count: 0, age: nil)
    /// Keep the latest `count` messages.
    public static func count(_ count: Int) -> Self { Self(count: count) }
    /// Keep messages published in the last `age`.
    public static func age(_ age: Duration) -> Self { Self(count: nil, age: age) }

    package var isEnabled: Bool { count != 0 }
}

/// Whether a topic's messages survive the process.
///
/// | level | survives | needs |
/// | --- | --- | --- |
/// | ``inMemory`` | nothing: a restart starts empty | nothing |
/// | ``durable`` | a crash or a restart (and power loss, at the store's default level) | a broker on a store, a `Codable` payload |
///
/// See the article <doc:DurableTopics> for what a durable topic commits and when.
public enum Durability: Hashable, Sendable, Codable {
    /// The topic lives in the process's memory only: the fastest, gone at exit.
    case inMemory
    /// Every state change a caller learns of (publish, receive with its attempt count, ack, nack,
    /// reject, dead-letter, redrive, purge, subscription create and delete) is committed to the
    /// broker's store before the call returns.
    case durable
}

/// A topic's configuration.
///
/// ```swift
/// let orders = try await queue.createTopic(
///     "orders", of: OrderPlaced.self,
///     configuration: .init(capacity: 10_000, overflow: .suspend, deadLetter: .after(deliveries: 5)))
/// ```
public struct TopicConfiguration: Hashable, Sendable, Codable {
    /// The most messages one subscription of the topic holds (waiting, delayed and in flight).
    /// Default 10 000.
    public var capacity: Int
    /// What a publish does when a subscription is at ``capacity``. Default ``OverflowPolicy/suspend``.
    public var overflow: OverflowPolicy
    /// When messages move to the dead-letter topic. Default: after 5 deliveries, to `<topic>.dlq`.
    public var deadLetter: DeadLetterPolicy
    /// The delay before a nacked message is visible again. Default exponential from 100 ms to 60 s.
    public var retryBackoff: RetryBackoff
    /// How long messages are kept for replay. Default ``Retention/none``.
    public var retention: Retention
    /// Whether the topic's messages survive a restart. Default ``Durability/inMemory``;
    /// ``Durability/durable`` needs a broker opened on a store (``MessageQueue/init(storage:configuration:clock:epoch:logger:)``)
    /// and a `Codable` payload.
    public var durability: Durability
    /// Your own string pairs, kept with the topic and never read by OpenQ: a durable topic's store
    /// keeps them, so that a process reopening it (``MessageQueue/storedTopics()``) finds what it
    /// recorded, such as the SQS server's queue attributes. At most 64 pairs of at most 256 bytes
    /// each. Changed at run time with ``MessageQueue/setMetadata(_:of:)``. Default none.
    public var metadata: [String: String]

    /// Creates a configuration; every parameter has the default described on its property.
    public init(
        capacity: Int = 10_000,
        overflow: OverflowPolicy = .suspend,
        deadLetter: DeadLetterPolicy = .after(deliveries: 5),
        retryBackoff: RetryBackoff = .exponential(),
        retention: Retention = .none,
        durability: Durability = .inMemory,
        metadata: [String: String] = [:]
    ) {
        self.capacity = capacity
        self.overflow = overflow
        self.deadLetter = deadLetter
        self.retryBackoff = retryBackoff
        self.retention = retention
        self.durability = durability
        self.metadata = metadata
    }

    private enum CodingKeys: String, CodingKey {
        case capacity, overflow, deadLetter, retryBackoff, retention, durability, metadata
    }

    /// Decodes a configuration; one stored before ``metadata`` existed has none.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        capacity = try container.decode(Int.self, forKey: .capacity)
        overflow = try container.decode(OverflowPolicy.self, forKey: .overflow)
        deadLetter = try container.decode(DeadLetterPolicy.self, forKey: .deadLetter)
        retryBackoff = try container.decode(RetryBackoff.self, forKey: .retryBackoff)
        retention = try container.decode(Retention.self, forKey: .retention)
        durability = try container.decode(Durability.self, forKey: .durability)
        metadata = try container.decodeIfPresent([String: String].self, forKey: .metadata) ?? [:]
    }

    func validate() throws(OpenQError) {
        guard capacity > 0 else {
            throw .invalidConfiguration("A topic's capacity must be at least 1; it was \(capacity).")
        }
        if let maxDeliveries = deadLetter.maxDeliveries, maxDeliveries < 1 {
            throw .invalidConfiguration("maxDeliveries must be at least 1; it was \(maxDeliveries).")
        }
        if deadLetter.maxDeliveries != nil, deadLetter.capacity < 1, !deadLetter.usesExistingTopic {
            throw .invalidConfiguration(
                "A dead-letter topic's capacity must be at least 1; it was \(deadLetter.capacity).")
        }
        guard retryBackoff.initial >= .zero, retryBackoff.maximum >= retryBackoff.initial,
            retryBackoff.multiplier >= 1, (0...1).contains(retryBackoff.jitter)
        else {
            throw .invalidConfiguration(
                "Retry backoff needs 0 ≤ initial ≤ maximum, multiplier ≥ 1 and jitter in 0...1; it was \(retryBackoff)."
            )
        }
        if let count = retention.count, count < 0 {
            throw .invalidConfiguration("Retention count must not be negative; it was \(count).")
        }
        if let age = retention.age, age <= .zero {
            throw .invalidConfiguration("Retention age must be positive; it was \(age).")
        }
        try Self.validate(metadata: metadata)
    }
}

extension TopicConfiguration {
    static func validate(metadata: [String: String]) throws(OpenQError) {
        guard metadata.count <= 64 else {
            throw .invalidConfiguration("A topic's metadata holds at most 64 pairs; it had \(metadata.count).")
        }
        for (key, value) in metadata where key.utf8.count > 256 || value.utf8.count > 256 {
            throw .invalidConfiguration(
                "A topic's metadata keys and values are at most 256 bytes; '\(key.prefix(40))' is longer.")
        }
    }
}

extension Duration {
    /// The duration in seconds, as a `Double`.
    /// One conversion of the 128-bit attoseconds to `Double`, then a division: `components`
    /// divides 128-bit integers, which costs more than the rest of a delivery's bookkeeping.
    var seconds: Double { self / .seconds(1) }
}
