// The public statistics: broker, topic and subscription snapshots and counters.

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Running totals of one subscription (or, summed, of a topic).
///
/// They obey one invariant at every instant, which the tests check:
/// `routed == acked + deadLettered + dropped + purged + depth + scheduled + inFlight`.
public struct SubscriptionCounters: Hashable, Sendable {
    /// Message copies that reached the subscription: published while it existed, replayed, or redriven.
    public var routed = 0
    /// Hand-overs to a consumer, first deliveries and redeliveries.
    public var delivered = 0
    /// Deliveries that were done: acknowledged, or handed over in automatic mode.
    public var acked = 0
    /// Negative acknowledgements (a handler throwing counts as one).
    public var nacked = 0
    /// Deliveries after the first of the same message.
    public var redelivered = 0
    /// Deliveries whose visibility timeout passed before they were settled.
    public var expired = 0
    /// Messages moved to the dead-letter topic (or discarded by `reject` when there is none).
    public var deadLettered = 0
    /// Messages dropped by an overflow policy.
    public var dropped = 0
    /// Messages removed by purge, seek, or removal of the subscription.
    public var purged = 0

    /// Counters at zero.
    public init() {}

    mutating func add(_ other: Self) {
        routed += other.routed
        delivered += other.delivered
        acked += other.acked
        nacked += other.nacked
        redelivered += other.redelivered
        expired += other.expired
        deadLettered += other.deadLettered
        dropped += other.dropped
        purged += other.purged
    }
}

/// Topic-level totals that do not belong to a subscription.
struct TopicCounters: Hashable, Sendable {
    var published = 0
    var rejected = 0
    var unrouted = 0
    var quarantined = 0
}

/// A snapshot of one subscription.
public struct SubscriptionStatistics: Hashable, Sendable {
    /// The subscription's name (generated for `subscribe()` streams).
    public var name: String
    /// True for the subscription behind a ``Topic/subscribe(startingAt:backlog:prefetch:)`` stream.
    public var isAnonymous: Bool
    /// Its acknowledgement mode.
    public var acknowledgement: AcknowledgementMode
    /// Its running totals.
    public var counters: SubscriptionCounters
    /// Messages visible and waiting for a consumer (those waiting in the store only included).
    public var depth: Int
    /// Messages waiting for a delay or a retry backoff to pass.
    public var scheduled: Int
    /// Deliveries handed out and not yet settled.
    public var inFlight: Int
    /// Consumers currently reading the subscription.
    public var consumers: Int
    /// How long ago the oldest waiting message in memory was published, or `nil` when none waits.
    public var oldestMessageAge: Duration?
    /// Of ``depth``, the messages that wait in the store only: a durable topic's subscription keeps
    /// at most `residentMessages` (a parameter of the storage, such as `.sqlite(path:)`) waiting in
    /// memory and reads the rest back in pages, in delivery order, as its consumers drain. Always 0
    /// for an in-memory topic.
    public var pagedOut = 0

    /// True when the subscription holds nothing: nothing waiting, delayed or in flight.
    public var isDrained: Bool { depth == 0 && scheduled == 0 && inFlight == 0 }
}

/// A snapshot of one topic.
public struct TopicStatistics: Hashable, Sendable {
    /// The topic's name.
    public var name: String
    /// Messages accepted by publish.
    public var published: Int
    /// Messages refused because the topic was full (policy `reject`, or `tryPublish` under `suspend`).
    public var rejected: Int
    /// Accepted messages that found no subscription (kept only by retention, if any).
    public var unrouted: Int
    /// Messages kept for replay. For a durable topic, the history its store keeps by the
    /// retention count (messages past the retention age go at the store's next commit).
    public var retained: Int
    /// Publishers waiting for room (policy `suspend`).
    public var suspendedPublishers: Int
    /// The totals over every subscription, including removed ones.
    public var totals: SubscriptionCounters
    /// One entry per live subscription.
    public var subscriptions: [SubscriptionStatistics]
    /// Stored messages of a durable topic whose payload no longer decoded when the topic was
    /// opened (its type changed): kept as raw bytes with the reason in the store's quarantine,
    /// never delivered. Always 0 for an in-memory topic.
    public var quarantined: Int = 0

    /// Messages waiting over all subscriptions.
    public var depth: Int { subscriptions.reduce(0) { $0 + $1.depth } }
    /// Deliveries in flight over all subscriptions.
    public var inFlight: Int { subscriptions.reduce(0) { $0 + $1.inFlight } }
    /// Consumers over all subscriptions.
    public var consumers: Int { subscriptions.reduce(0) { $0 + $1.consumers } }

    /// The statistics of the subscription with that name.
    public func subscription(_ name: String) -> SubscriptionStatistics? {
        subscriptions.first { $0.name == name }
    }
}

/// A snapshot of the whole broker.
public struct BrokerStatistics: Hashable, Sendable, CustomStringConvertible {
    /// When the snapshot was taken, by the broker's clock.
    public var takenAt: Date
    /// One entry per topic, sorted by name.
    public var topics: [TopicStatistics]

    /// The statistics of the topic with that name.
    public func topic(_ name: String) -> TopicStatistics? { topics.first { $0.name == name } }

    /// The statistics of one subscription of one topic, in one look-up:
    /// `statistics.subscription("billing", of: "orders")`.
    public func subscription(_ name: String, of topic: String) -> SubscriptionStatistics? {
        self.topic(topic)?.subscription(name)
    }

    /// An aligned text table, one row per subscription.
    public var description: String {
        var rows = [
            [
                "topic", "subscription", "published", "delivered", "acked", "nacked", "dlq", "dropped", "depth",
                "in flight",
            ]
        ]
        for topic in topics {
            if topic.subscriptions.isEmpty {
                rows.append([topic.name, "-", "\(topic.published)", "0", "0", "0", "0", "0", "0", "0"])
            }
            for subscription in topic.subscriptions {
                let counters = subscription.counters
                rows.append([
                    topic.name, subscription.name, "\(topic.published)", "\(counters.delivered)", "\(counters.acked)",
                    "\(counters.nacked)", "\(counters.deadLettered)", "\(counters.dropped)", "\(subscription.depth)",
                    "\(subscription.inFlight)",
                ])
            }
        }
        let widths = rows[0].indices.map { column in rows.map { $0[column].count }.max() ?? 0 }
        return rows.map { row in
            row.indices.map { column in
                let cell = row[column]
                let padding = String(repeating: " ", count: widths[column] - cell.count)
                return column < 2 ? cell + padding : padding + cell
            }.joined(separator: "  ")
        }.joined(separator: "\n")
    }
}
