// Where GET /metrics comes from, and who may read it.

import CoreMetrics
import Prometheus

/// Where `GET /metrics` comes from, and who may read it.
///
/// ```swift
/// let metrics = SQSMetrics(registry: PrometheusCollectorRegistry())
/// let queue = MessageQueue(configuration: .init(metricsFactory: metrics.brokerMetricsFactory))
/// let server = SQSServer(queue: queue, configuration: .init(credentials: keys, metrics: metrics))
/// ```
public struct SQSMetrics: Sendable {
    /// The registry of the server's own metrics (`openq_server_*`); `GET /metrics` serves it and
    /// the broker's.
    public let registry: PrometheusCollectorRegistry
    /// Serve `GET /metrics` to anyone. Default `false`: it needs a request signed (SigV4, service
    /// `sqs`) by a key with the `admin` permission on every queue (`queuePrefix` `""`), unless the
    /// server runs with `allowAnonymous`.
    public var isPublic: Bool
    let brokerMetrics: BrokerMetricsRegistry

    /// The factory to give the broker as its `MessageQueue.Configuration.metricsFactory`: its
    /// `openq_*` metrics are served by `GET /metrics` beside the server's. Made for a broker with
    /// many topics: creating or deleting a queue costs its own metrics, whatever the number of
    /// queues. (`PrometheusMetricsFactory(registry:)` works too, but swift-prometheus copies a
    /// metric family's table for every metric made or destroyed: with 5 000 queues each
    /// `DeleteQueue` took milliseconds.)
    public var brokerMetricsFactory: any MetricsFactory { brokerMetrics }

    /// Metrics from `registry` and ``brokerMetricsFactory``, public or for admin keys.
    public init(registry: PrometheusCollectorRegistry, isPublic: Bool = false) {
        self.registry = registry
        self.isPublic = isPublic
        self.brokerMetrics = BrokerMetricsRegistry(fallback: PrometheusMetricsFactory(registry: registry))
    }

    /// Both registries in the Prometheus text format.
    func emit() -> [UInt8] {
        var buffer = registry.emitToBuffer()
        brokerMetrics.emit(into: &buffer)
        return buffer
    }
}
