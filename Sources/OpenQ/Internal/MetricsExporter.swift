import CoreMetrics

/// Reports statistics snapshots through swift-metrics: totals as counters (incremented by the
/// change since the last export), backlogs as gauges. Topic totals include removed and anonymous
/// subscriptions; per-subscription metrics exist for named subscriptions only, to keep label
/// cardinality bounded.
struct MetricsExporter {
    private let factory: any MetricsFactory
    private var counters: [String: Counter] = [:]
    private var gauges: [String: Gauge] = [:]
    private var last: [String: Int] = [:]

    init(factory: any MetricsFactory) {
        self.factory = factory
    }

    mutating func export(_ statistics: BrokerStatistics) {
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

    private static func key(_ label: String, _ dimensions: [(String, String)]) -> String {
        ([label] + dimensions.map { "\($0.0)=\($0.1)" }).joined(separator: "|")
    }

    private mutating func count(_ label: String, _ value: Int, _ dimensions: [(String, String)]) {
        let key = Self.key(label, dimensions)
        let delta = value - last[key, default: 0]
        last[key] = value
        guard delta > 0 else { return }
        let counter = counters[key] ?? Counter(label: label, dimensions: dimensions, factory: factory)
        counters[key] = counter
        counter.increment(by: Int64(delta))
    }

    private mutating func record(_ label: String, _ value: Double, _ dimensions: [(String, String)]) {
        let key = Self.key(label, dimensions)
        let gauge = gauges[key] ?? Gauge(label: label, dimensions: dimensions, factory: factory)
        gauges[key] = gauge
        gauge.record(value)
    }
}
