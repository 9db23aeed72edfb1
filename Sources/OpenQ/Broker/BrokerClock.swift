// The broker's clock: any Clock<Duration> as offsets from an epoch, so time is injected and dates derived.

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// The broker's time source, erased from any `Clock<Duration>`.
///
/// Time inside OpenQ is a `Duration` since the broker was created (`epoch`); messages carry the
/// wall-clock `Date` that corresponds to it. With a manual clock in tests, every timeout, backoff
/// and delay is deterministic.
struct BrokerClock: Sendable {
    let epoch: Date
    private let readNow: @Sendable () -> Duration
    private let sleepUntil: @Sendable (Duration) async throws -> Void

    init<C: Clock>(_ clock: C, epoch: Date = Date()) where C.Duration == Duration {
        let origin = clock.now
        self.epoch = epoch
        self.readNow = { origin.duration(to: clock.now) }
        self.sleepUntil = { offset in try await clock.sleep(until: origin.advanced(by: offset), tolerance: nil) }
    }

    /// The time since the broker's epoch.
    func now() -> Duration { readNow() }

    /// Sleeps until the given time since the epoch; throws when cancelled.
    func sleep(until offset: Duration) async throws { try await sleepUntil(offset) }

    func date(at offset: Duration) -> Date { epoch.addingTimeInterval(offset.seconds) }
}
