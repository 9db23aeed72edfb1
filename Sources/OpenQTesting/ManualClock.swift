// The OpenQTesting product: a manual clock for tests of code built on OpenQ.

import OpenQ

/// A clock that moves only when a test calls ``advance(by:)``, so that code built on OpenQ tests
/// its timeouts, retries, delays and visibility timeouts without sleeping.
///
/// Give it to the broker, drive time from the test:
///
/// ```swift
/// import OpenQ
/// import OpenQTesting
///
/// let clock = ManualClock()
/// let queue = MessageQueue(clock: clock)
/// let jobs = try await queue.createTopic("jobs", of: Int.self)
/// let work = try await jobs.subscription("work", acknowledgement: .manual(visibilityTimeout: .seconds(30)))
/// try await jobs.publish(1)
/// _ = try await work.receive()            // taken, never acknowledged
/// clock.advance(by: .seconds(30))         // the visibility timeout passes at once
/// let again = try await work.receive(waitingUpTo: .seconds(1))
/// assert(again.first?.attempt == 2)
/// ```
///
/// Time starts at zero. Sleepers whose deadline is reached wake when the test advances the clock;
/// a sleeper whose task is cancelled throws `CancellationError` at once. Advancing the clock wakes
/// the broker's timer tasks, which then run on their own: a test that needs their effect waits for
/// it (poll a statistic, or receive with a real-time `waitingUpTo:`), it does not sleep.
public final class ManualClock: Clock, Sendable {
    /// A point in the manual clock's time: the time since it started.
    public struct Instant: InstantProtocol {
        /// The time since the clock started.
        public var offset: Duration

        /// An instant `offset` after the clock's start.
        public init(offset: Duration) { self.offset = offset }

        /// The instant `duration` later.
        public func advanced(by duration: Duration) -> Self { Self(offset: offset + duration) }
        /// The time from this instant to `other`.
        public func duration(to other: Self) -> Duration { other.offset - offset }
        /// Orders by value.
        public static func < (lhs: Self, rhs: Self) -> Bool { lhs.offset < rhs.offset }
    }

    private struct State {
        var now = Instant(offset: .zero)
        var nextID: UInt64 = 0
        var sleepers: [UInt64: (deadline: Instant, continuation: CheckedContinuation<Void, any Error>)] = [:]
        var cancelled: Set<UInt64> = []
    }

    private let state = LockedValueBox(State())

    /// A clock at time zero.
    public init() {}

    /// The current time: zero plus every ``advance(by:)`` so far.
    public var now: Instant { state.withLock { $0.now } }
    /// The clock has no resolution of its own.
    public var minimumResolution: Duration { .zero }

    /// How many tasks sleep on this clock now: wait until the code under test sleeps (it armed its
    /// timer) before you advance.
    public var sleeperCount: Int { state.withLock { $0.sleepers.count } }

    /// Sleeps until the clock is advanced to `deadline` or past it; throws `CancellationError`
    /// when the task is cancelled.
    public func sleep(until deadline: Instant, tolerance: Duration? = nil) async throws {
        let id = state.withLock { state in
            state.nextID += 1
            return state.nextID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                enum Action { case resume, cancel, wait }
                let action = state.withLock { state -> Action in
                    if state.cancelled.remove(id) != nil { return .cancel }
                    if deadline <= state.now { return .resume }
                    state.sleepers[id] = (deadline, continuation)
                    return .wait
                }
                switch action {
                case .resume: continuation.resume()
                case .cancel: continuation.resume(throwing: CancellationError())
                case .wait: break
                }
            }
        } onCancel: {
            let continuation = state.withLock { state -> CheckedContinuation<Void, any Error>? in
                if let sleeper = state.sleepers.removeValue(forKey: id) { return sleeper.continuation }
                state.cancelled.insert(id)
                return nil
            }
            continuation?.resume(throwing: CancellationError())
        }
    }

    /// Moves time forward by `duration` and wakes every sleeper whose deadline passed.
    public func advance(by duration: Duration) {
        let due = state.withLock { state in
            state.now = state.now.advanced(by: duration)
            let now = state.now
            let due = state.sleepers.filter { $0.value.deadline <= now }
            for id in due.keys { state.sleepers[id] = nil }
            return due.values.map(\.continuation)
        }
        for continuation in due { continuation.resume() }
    }
}
