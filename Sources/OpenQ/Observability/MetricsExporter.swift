// Statistics exported through swift-metrics, kept per topic so a deletion costs its own metrics.

import CoreMetrics

/// Reports statistics snapshots through swift-metrics: totals as counters (incremented by the
/// change since the last export), backlogs as gauges. Topic totals include removed and anonymous
/// subscriptions; per-subscription metrics exist for named subscriptions only, to keep label
/// cardinality bounded.
///
/// Metrics of a topic or subscription that no longer exists are destroyed at the next export (and
/// at once through ``forget(topic:)`` when a topic is deleted), so that a deleted topic stops being
/// reported and one re-created under the same name counts from zero. Metrics are kept per topic,
/// so deleting a topic costs its own metrics, whatever the number of topics.
struct MetricsExporter {
    /// One topic's metrics (its subscriptions' included), by label and dimensions: deleting a
    /// topic destroys its own metrics and touches no other topic's.
    fileprivate struct TopicMetrics {
        var counters: [String: Counter] = [:]
        var gauges: [String: Gauge] = [:]
        var last: [String: Int] = [:]
        /// The keys written by the export in progress.
        var seen: Set<String> = []

        mutating func count(
            _ label: String, _ value: Int, _ dimensions: [(String, String)], factory: any MetricsFactory
        ) {
            let key = MetricsExporter.key(label, dimensions)
            seen.insert(key)
            let delta = value - last[key, default: 0]
            last[key] = value
            guard delta > 0 else { return }
            let counter = counters[key] ?? Counter(label: label, dimensions: dimensions, factory: factory)
            counters[key] = counter
            counter.increment(by: Int64(delta))
        }

        mutating func record(
            _ label: String, _ value: Double, _ dimensions: [(String, String)], factory: any MetricsFactory
        ) {
            let key = MetricsExporter.key(label, dimensions)
            seen.insert(key)
            let gauge = gauges[key] ?? Gauge(label: label, dimensions: dimensions, factory: factory)
            gauges[key] = gauge
            gauge.record(value)
        }

        /// Destroys the metrics the last export did not write (a removed subscription's).
        mutating func forgetUnseen() {
            let seen = self.seen
            for key in Array(last.keys) where !seen.contains(key) { last[key] = nil }
            for (key, counter) in counters where !seen.contains(key) {
                counters[key] = nil
                counter.destroy()
            }
            for (key, gauge) in gauges where !seen.contains(key) {
                gauges[key] = nil
                gauge.destroy()
            }
            self.seen.removeAll(keepingCapacity: true)
        }

        func destroyAll() {
            for counter in counters.values { counter.destroy() }
            for gauge in gauges.values { gauge.destroy() }
        }
    }

    private let factory: any MetricsFactory
    private var topics: [String: TopicMetrics] = [:]

    init(factory: any MetricsFactory) {
        self.factory = factory
    }

    mutating func export(_ statistics: BrokerStatistics) {
        var exported: Set<String> = []
        for topic in statistics.topics {
            exported.insert(topic.name)
            // Mutated in place (no copy of the topic's dictionaries per metric).
            topics[topic.name, default: TopicMetrics()].export(topic, factory: factory)
            topics[topic.name]!.forgetUnseen()
        }
        // Topics that no longer exist (deleted without ``forget(topic:)``).
        for name in Array(topics.keys) where !exported.contains(name) { forget(topic: name) }
    }

    /// Destroys every metric of the topic `name` and its subscriptions.
    mutating func forget(topic name: String) {
        topics.removeValue(forKey: name)?.destroyAll()
    }

    fileprivate static func key(_ label: String, _ dimensions: [(String, String)]) -> String {
        ([label] + dimensions.map { "\($0.0)=\($0.1)" }).joined(separator: "|")
    }
}

extension MetricsExporter.TopicMetrics {
    fileprivate mutating func export(_ topic: TopicStatistics, factory: any MetricsFactory) {
        let dimensions = [("topic", topic.name)]
        count("openq_messages_published_total", topic.published, dimensions, factory: factory)
        count("openq_messages_rejected_total", topic.rejected, dimensions, factory: factory)
        count("openq_messages_unrouted_total", topic.unrouted, dimensions, factory: factory)
        export(topic.totals, prefix: "openq_topic", dimensions, factory: factory)
        record("openq_topic_depth", Double(topic.depth), dimensions, factory: factory)
        record("openq_topic_in_flight", Double(topic.inFlight), dimensions, factory: factory)
        record("openq_topic_retained", Double(topic.retained), dimensions, factory: factory)
        for subscription in topic.subscriptions where !subscription.isAnonymous {
            let dimensions = dimensions + [("subscription", subscription.name)]
            export(subscription.counters, prefix: "openq_subscription", dimensions, factory: factory)
            record("openq_subscription_depth", Double(subscription.depth), dimensions, factory: factory)
            record("openq_subscription_scheduled", Double(subscription.scheduled), dimensions, factory: factory)
            record("openq_subscription_in_flight", Double(subscription.inFlight), dimensions, factory: factory)
            record("openq_subscription_consumers", Double(subscription.consumers), dimensions, factory: factory)
            record(
                "openq_subscription_oldest_message_age_seconds", subscription.oldestMessageAge?.seconds ?? 0,
                dimensions, factory: factory)
        }
    }

    private mutating func export(
        _ counters: SubscriptionCounters, prefix: String, _ dimensions: [(String, String)],
        factory: any MetricsFactory
    ) {
        count("\(prefix)_messages_routed_total", counters.routed, dimensions, factory: factory)
        count("\(prefix)_messages_delivered_total", counters.delivered, dimensions, factory: factory)
        count("\(prefix)_messages_acked_total", counters.acked, dimensions, factory: factory)
        count("\(prefix)_messages_nacked_total", counters.nacked, dimensions, factory: factory)
        count("\(prefix)_messages_redelivered_total", counters.redelivered, dimensions, factory: factory)
        count("\(prefix)_messages_expired_total", counters.expired, dimensions, factory: factory)
        count("\(prefix)_messages_dead_lettered_total", counters.deadLettered, dimensions, factory: factory)
        count("\(prefix)_messages_dropped_total", counters.dropped, dimensions, factory: factory)
        count("\(prefix)_messages_purged_total", counters.purged, dimensions, factory: factory)
    }
}
