// Statistics on the broker: snapshots, snapshots at an interval, and the swift-metrics export.

extension MessageQueue {
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
    func exportMetricsIfRunning() -> Bool {
        guard !isShutDown else { return false }
        exportMetrics()
        return true
    }

    func startMetricsIfNeeded() {
        guard !metricsScheduled, let interval = configuration.metricsInterval else { return }
        metricsScheduled = true
        driver.schedule(.metrics, at: clock.now() + interval)
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
