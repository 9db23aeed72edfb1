// Shutting the broker down: topics drain in dead-letter order within the grace period, then finish.

extension MessageQueue {
    // MARK: Shutdown

    /// Shuts the broker down.
    ///
    /// New publishes throw ``OpenQError/Code/shutDown`` at once, and publishers waiting for room
    /// fail the same way. Consumers go on receiving and settling for up to `gracePeriod`, and
    /// shutdown returns as soon as there is nothing left to wait for: nothing is in flight, and
    /// nothing waits that a consumer (a stream, a handler's ``Consumer``, or a `receive` in
    /// progress) could still take. A subscription that nobody consumes does not hold the shutdown:
    /// its backlog is reported as undelivered at once. A message that is delayed or in retry
    /// backoff holds it only while its subscription has a consumer and only if it becomes visible
    /// before the grace period ends; otherwise it is reported as undelivered.
    ///
    /// Topics drain and finish in dead-letter order: a topic before its dead-letter topic, so that
    /// a message dead-lettered during the grace period reaches a dead-letter topic that is still
    /// open (and is delivered to the dead-letter topic's consumers, if it has any).
    ///
    /// Then every consumer sequence ends and the report says what stayed unacknowledged. A second
    /// call while the first is draining waits for it and returns the same report (as a second
    /// `run()` of a service group does); a call after shutdown finished returns a fresh report at
    /// once.
    public func shutdown(gracePeriod: Duration = .seconds(30)) async -> ShutdownReport {
        switch lifecycle {
        case .shuttingDown(var waiters):
            return await withCheckedContinuation { continuation in
                waiters.append(continuation)
                lifecycle = .shuttingDown(waiters: waiters)
            }
        case .shutDown:
            return report()
        case .running:
            lifecycle = .shuttingDown(waiters: [])
        }
        let waves = Self.shutdownWaves(Array(topics.values))
        logger.info("Shutting down", metadata: ["topics": "\(topics.count)", "gracePeriod": "\(gracePeriod)"])
        let clock = self.clock
        let deadline = clock.now() + gracePeriod
        for wave in waves {
            for runtime in wave { runtime.beginShutdown(deadline: deadline) }
        }
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                for wave in waves {
                    await withTaskGroup(of: Void.self) { idle in
                        for runtime in wave { idle.addTask { await runtime.waitUntilIdle() } }
                    }
                }
            }
            group.addTask { try? await clock.sleep(until: deadline) }
            await group.next()
            group.cancelAll()
        }
        for wave in waves {
            for runtime in wave { runtime.finish() }
        }
        metrics.export(statistics())
        driver.finish()
        // Page reads end before the store closes (a finished topic takes no page, but a read under
        // way completes), then what is pending is committed and the store released, so another
        // broker can open it.
        for wave in waves {
            for runtime in wave where runtime.isDurable { await runtime.waitForPageReads() }
        }
        await store?.close()
        await sharedBackend?.close()
        let report = report()
        if report.unacknowledged > 0 || report.undelivered > 0 {
            logger.warning(
                "Shut down with messages left",
                metadata: ["unacknowledged": "\(report.unacknowledged)", "undelivered": "\(report.undelivered)"]
            )
        } else {
            logger.info("Shut down cleanly")
        }
        if case .shuttingDown(let waiters) = lifecycle {
            for waiter in waiters { waiter.resume(returning: report) }
        }
        lifecycle = .shutDown
        return report
    }

    func report() -> ShutdownReport {
        ShutdownReport(statistics: statistics())
    }

    /// The topics in the order they drain and finish: every topic comes in an earlier wave than
    /// the dead-letter topic it feeds, so no dead letter meets a finished dead-letter topic.
    static func shutdownWaves(_ runtimes: [TopicRuntime]) -> [[TopicRuntime]] {
        var feeders: [ObjectIdentifier: Int] = [:]
        for runtime in runtimes {
            if let target = runtime.deadLetterTarget { feeders[ObjectIdentifier(target), default: 0] += 1 }
        }
        var remaining = runtimes
        var waves: [[TopicRuntime]] = []
        while !remaining.isEmpty {
            let wave = remaining.filter { feeders[ObjectIdentifier($0), default: 0] == 0 }
            // Dead-letter chains end at a topic without a dead-letter topic, so each wave takes at
            // least one topic; the fallback only guards against a cycle.
            guard !wave.isEmpty else {
                waves.append(remaining)
                break
            }
            for runtime in wave {
                if let target = runtime.deadLetterTarget { feeders[ObjectIdentifier(target), default: 0] -= 1 }
            }
            remaining.removeAll { runtime in wave.contains { $0 === runtime } }
            waves.append(wave.sorted { $0.name < $1.name })
        }
        return waves
    }
}

/// What ``MessageQueue/shutdown(gracePeriod:)`` left behind.
public struct ShutdownReport: Hashable, Sendable {
    /// Deliveries still in flight (handed out, never settled) when consumers were stopped.
    public var unacknowledged: Int
    /// Messages still waiting or delayed, never delivered.
    public var undelivered: Int
    /// The final statistics.
    public var statistics: BrokerStatistics

    init(statistics: BrokerStatistics) {
        self.statistics = statistics
        self.unacknowledged = statistics.topics.reduce(0) { $0 + $1.inFlight }
        self.undelivered = statistics.topics.reduce(0) { total, topic in
            total + topic.subscriptions.reduce(0) { $0 + $1.depth + $1.scheduled }
        }
    }
}
