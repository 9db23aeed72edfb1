// The broker as a swift-service-lifecycle Service: run() drives its loop, a graceful shutdown shuts it down.

import ServiceLifecycle

extension MessageQueue: Service {
    /// Runs the broker's background work in the calling task, as a swift-service-lifecycle
    /// `Service`: its timers (visibility timeouts, delays, retries, long-poll timeouts), its
    /// metrics export, and the ``Consumer``s started with `consume(...)`.
    ///
    /// A graceful shutdown of the service group (or cancellation of this task) shuts the broker
    /// down with ``Configuration/shutdownGracePeriod``; `run()` returns once the broker is shut down
    /// and its consumers have ended. Calling ``shutdown(gracePeriod:)`` yourself ends it too.
    ///
    /// ```swift
    /// let queue = MessageQueue()
    /// let consumer = try await orders.consumer(subscription: "billing", with: Billing())
    /// let group = ServiceGroup(services: [queue, consumer], logger: logger)
    /// try await group.run()   // SIGTERM: the consumer stops, then the broker drains and shuts down
    /// ```
    ///
    /// Code that never calls `run()` keeps working: the broker then runs the same work in one
    /// internal task of its own, which ``shutdown(gracePeriod:)`` ends. When that task started
    /// before `run()` was called, `run()` waits for it instead of starting a second loop.
    public nonisolated func run() async throws {
        let driver = self.driver
        let gracePeriod = configuration.shutdownGracePeriod
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await driver.drive() }
            group.addTask {
                // Returns on a graceful shutdown; throws when this task is cancelled, or when the
                // broker shut down by itself (the group cancels this child then).
                try? await gracefulShutdown()
                _ = await self.shutdown(gracePeriod: gracePeriod)
            }
            await group.next()
            group.cancelAll()
            await group.waitForAll()
        }
    }
}
