// The broker's per-topic metrics in the Prometheus text format, with O(1) registration and removal.

import CoreMetrics
import OpenQ
import Prometheus
import Synchronization

/// A swift-metrics backend for the broker's metrics (`MessageQueue.Configuration.metricsFactory`),
/// which `GET /metrics` serves beside the server's own in the Prometheus text format.
///
/// Why not swift-prometheus's registry for these: a broker has a few dozen metrics per topic, and
/// swift-prometheus 2.4 copies a metric family's whole table of label sets each time a metric of it
/// is made or destroyed, so creating or deleting a queue cost time in proportion to the number of
/// queues (5 000 deletions took 43 s, most of it in those copies). Here a family is an object whose
/// table is changed in place: a deleted topic costs its own metrics. Counters and gauges (all the
/// broker makes) live here; other kinds go to `fallback`.
final class BrokerMetricsRegistry: MetricsFactory, Sendable {
    /// One metric family: its type and its metrics by their rendered label set. Only touched under
    /// the registry's lock.
    private final class Family: @unchecked Sendable {
        let type: String
        var metrics: [String: Sample] = [:]
        init(type: String) { self.type = type }
    }

    private let families = LockedValueBox<[String: Family]>([:])
    private let fallback: any MetricsFactory

    init(fallback: any MetricsFactory) {
        self.fallback = fallback
    }

    // MARK: MetricsFactory

    func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        register(Sample(.counter, name: label, labels: Self.render(dimensions)), type: "counter")
    }

    func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        guard !aggregate else { return fallback.makeRecorder(label: label, dimensions: dimensions, aggregate: true) }
        return register(Sample(.gauge, name: label, labels: Self.render(dimensions)), type: "gauge")
    }

    func makeFloatingPointCounter(label: String, dimensions: [(String, String)]) -> any FloatingPointCounterHandler {
        fallback.makeFloatingPointCounter(label: label, dimensions: dimensions)
    }

    func makeMeter(label: String, dimensions: [(String, String)]) -> any MeterHandler {
        fallback.makeMeter(label: label, dimensions: dimensions)
    }

    func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
        fallback.makeTimer(label: label, dimensions: dimensions)
    }

    func destroyCounter(_ handler: any CounterHandler) {
        guard let sample = handler as? Sample else { return fallback.destroyCounter(handler) }
        unregister(sample)
    }

    func destroyRecorder(_ handler: any RecorderHandler) {
        guard let sample = handler as? Sample else { return fallback.destroyRecorder(handler) }
        unregister(sample)
    }

    func destroyFloatingPointCounter(_ handler: any FloatingPointCounterHandler) {
        fallback.destroyFloatingPointCounter(handler)
    }

    func destroyMeter(_ handler: any MeterHandler) {
        fallback.destroyMeter(handler)
    }

    func destroyTimer(_ handler: any TimerHandler) {
        fallback.destroyTimer(handler)
    }

    // MARK: Registry

    /// The metric of the same name and labels when one exists (swift-metrics may ask twice),
    /// otherwise `sample`, registered.
    private func register(_ sample: Sample, type: String) -> Sample {
        families.withLock { families in
            let family = families[sample.name] ?? Family(type: type)
            families[sample.name] = family
            if let existing = family.metrics[sample.labels] { return existing }
            family.metrics[sample.labels] = sample
            return sample
        }
    }

    private func unregister(_ sample: Sample) {
        families.withLock { families in
            guard let family = families[sample.name], family.metrics[sample.labels] === sample else { return }
            family.metrics[sample.labels] = nil
            if family.metrics.isEmpty { families[sample.name] = nil }
        }
    }

    /// Every metric in the Prometheus text format (0.0.4), families sorted by name.
    func emit(into buffer: inout [UInt8]) {
        var text = ""
        families.withLock { families in
            for name in families.keys.sorted() {
                let family = families[name]!
                text += "# TYPE \(name) \(family.type)\n"
                for labels in family.metrics.keys.sorted() {
                    text += "\(name)\(labels) \(family.metrics[labels]!.value)\n"
                }
            }
        }
        buffer.append(contentsOf: text.utf8)
    }

    /// `{name="value",...}` with the text format's escapes (backslash, quote, newline); empty
    /// for no labels.
    static func render(_ dimensions: [(String, String)]) -> String {
        guard !dimensions.isEmpty else { return "" }
        let pairs = dimensions.map { name, value in
            let escaped = value.replacingOccurrences(of: "\\", with: "\\\\")
                .replacingOccurrences(of: "\"", with: "\\\"").replacingOccurrences(of: "\n", with: "\\n")
            return "\(name)=\"\(escaped)\""
        }
        return "{" + pairs.joined(separator: ",") + "}"
    }
}

/// A metric this registry renders: a counter (an integer that only grows) or a gauge (the last
/// value recorded), its value kept in one atomic word.
private final class Sample: CounterHandler, RecorderHandler, Sendable {
    enum Kind {
        case counter, gauge
    }

    let kind: Kind
    let name: String
    /// The rendered label set, `{name="value",...}`.
    let labels: String
    /// A counter's `Int64` or a gauge's `Double`, as bits.
    private let bits = Atomic<UInt64>(0)

    init(_ kind: Kind, name: String, labels: String) {
        self.kind = kind
        self.name = name
        self.labels = labels
    }

    /// The value as the text format writes it.
    var value: String {
        let bits = bits.load(ordering: .relaxed)
        guard case .gauge = kind else { return String(Int64(bitPattern: bits)) }
        let number = Double(bitPattern: bits)
        if number.isNaN { return "NaN" }
        if number.isInfinite { return number > 0 ? "+Inf" : "-Inf" }
        return number == number.rounded() && abs(number) < 1e15 ? String(Int64(number)) : String(number)
    }

    func increment(by amount: Int64) { bits.add(UInt64(bitPattern: amount), ordering: .relaxed) }
    func reset() { bits.store(0, ordering: .relaxed) }
    func record(_ value: Int64) { record(Double(value)) }
    func record(_ value: Double) { bits.store(value.bitPattern, ordering: .relaxed) }
}
