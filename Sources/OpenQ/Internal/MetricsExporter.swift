import CoreMetrics

/// Reports statistics snapshots through swift-metrics: totals as counters (incremented by the
/// change since the last export), backlogs as gauges. Topic totals include removed and anonymous
/// subscriptions; per-subscription metrics exist for named subscriptions only, to keep label
/// cardinality bounded.
///
/// Metrics of a topic or subscription that no longer exists are destroyed at the next export (and
/// at once through ``forget(topic:)`` when a topic is deleted), so that a deleted topic stops being
/// reported and one re-created under the same name counts from zero.
struct MetricsExporter {
    private let factory: any MetricsFactory
    private var counters: [String: Counter] = [:]
    private var gauges: [String: Gauge] = [:]
    private var last: [String: Int] = [:]
    /// The keys written by the export in progress.
    private var seen: Set<String> = []

    init(factory: any MetricsFactory) {
        self.factory = factory
    }

    mutating func export(_ statistics: BrokerStatistics) {
        seen.removeAll(keepingCapacity: true)
        defer {
            let seen = self.seen
            forget { !seen.contains($0) }
        }
        for topic in statistics.topics {
            let dimensions = [("topic", topic.name)]
            count("openq_messages_published_total", topic.published, dimensions)
            count("openq_messages_rejected_total", topic.rejected, dimensions)
            count("openq_messages_unrouted_total", topic.unrouted, dimensions)
            export(topic.totals, prefix: "openq_topic", dimensions)
            record("openq_topic_depth", Double(topic.depth), dimensions)
            record("openq_topic_in_flight", Double(topic.inFlight), dimensions)
            record("openq_topic_retained", Double(topic.retained), dimensions)
            for subscription in topic.subscriptions where !subscription.isAnonymous {
                let dimensions = dimensions + [("subscription", subscription.name)]
                export(subscription.counters, prefix: "openq_subscription", dimensions)
                record("openq_subscription_depth", Double(subscription.depth), dimensions)
                record("openq_subscription_scheduled", Double(subscription.scheduled), dimensions)
                record("openq_subscription_in_flight", Double(subscription.inFlight), dimensions)
                record("openq_subscription_consumers", Double(subscription.consumers), dimensions)
                record(
                    "openq_subscription_oldest_message_age_seconds",
                    subscription.oldestMessageAge?.seconds ?? 0,
                    dimensions
                )
            }
        }
    }

    private mutating func export(_ counters: SubscriptionCounters, prefix: String, _ dimensions: [(String, String)]) {
        count("\(prefix)_messages_routed_total", counters.routed, dimensions)
        count("\(prefix)_messages_delivered_total", counters.delivered, dimensions)
        count("\(prefix)_messages_acked_total", counters.acked, dimensions)
        count("\(prefix)_messages_nacked_total", counters.nacked, dimensions)
        count("\(prefix)_messages_redelivered_total", counters.redelivered, dimensions)
        count("\(prefix)_messages_expired_total", counters.expired, dimensions)
        count("\(prefix)_messages_dead_lettered_total", counters.deadLettered, dimensions)
        count("\(prefix)_messages_dropped_total", counters.dropped, dimensions)
        count("\(prefix)_messages_purged_total", counters.purged, dimensions)
    }

    /// Destroys every metric of the topic `name` and its subscriptions.
    mutating func forget(topic name: String) {
        forget { key in key.split(separator: "|").contains { $0 == "topic=\(name)" } }
    }

    private mutating func forget(where shouldForget: (String) -> Bool) {
        for key in Array(last.keys) where shouldForget(key) { last[key] = nil }
        for (key, counter) in counters where shouldForget(key) {
            counters[key] = nil
            counter.destroy()
        }
        for (key, gauge) in gauges where shouldForget(key) {
            gauges[key] = nil
            gauge.destroy()
        }
    }

    private static func key(_ label: String, _ dimensions: [(String, String)]) -> String {
        ([label] + dimensions.map { "\($0.0)=\($0.1)" }).joined(separator: "|")
    }

    private mutating func count(_ label: String, _ value: Int, _ dimensions: [(String, String)]) {
        let key = Self.key(label, dimensions)
        seen.insert(key)
        let delta = value - last[key, default: 0]
        last[key] = value
        guard delta > 0 else { return }
        let counter = counters[key] ?? Counter(label: label, dimensions: dimensions, factory: factory)
        counters[key] = counter
        counter.increment(by: Int64(delta))
    }

    private mutating func record(_ label: String, _ value: Double, _ dimensions: [(String, String)]) {
        let key = Self.key(label, dimensions)
        seen.insert(key)
        let gauge = gauges[key] ?? Gauge(label: label, dimensions: dimensions, factory: factory)
        gauges[key] = gauge
        gauge.record(value)
    }
}
