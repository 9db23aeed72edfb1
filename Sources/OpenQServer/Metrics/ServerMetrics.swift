// The server's own metrics: requests by action and status, and their durations.

import CoreMetrics
import OpenQ
import Prometheus

/// The server's own metrics, beside the broker's (`openq_*`, exported by the broker through the
/// same factory): requests by action and status, and their durations.
///
/// Handlers are made once per action and status and kept: a registry look-up per request would
/// take its lock every time.
final class ServerMetrics: Sendable {
    private let factory: any MetricsFactory
    private let handlers = LockedValueBox<[String: (any CounterHandler, any TimerHandler)]>([:])

    init(factory: any MetricsFactory) {
        self.factory = factory
    }

    func record(action: String, status: Int, duration: Duration) {
        let key = "\(action) \(status)"
        let (counter, timer) = handlers.withLock { handlers in
            if let existing = handlers[key] { return existing }
            let made: (any CounterHandler, any TimerHandler) = (
                factory.makeCounter(
                    label: "openq_server_requests_total", dimensions: [("action", action), ("status", String(status))]),
                factory.makeTimer(label: "openq_server_request_duration_seconds", dimensions: [("action", action)])
            )
            handlers[key] = made
            return made
        }
        counter.increment(by: 1)
        let (seconds, attoseconds) = duration.components
        timer.recordNanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}
