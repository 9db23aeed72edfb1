// A shared topic's local side: its engine, the claims this process holds, a snapshot of its counts, wake-ups.

import Synchronization

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// What a ``TopicRuntime`` of a shared backend keeps in this process: the engine that runs its
/// operations in the database, how its payloads become bytes and back, and what only this process
/// knows: the claims it holds (a ``Delivery`` carries a tag, which finds its claim here), the
/// database ids of its subscriptions, the last counts read from the database, and the receives
/// waiting in it (a publish from this process wakes them at once; one from another process is
/// seen at the next poll).
@usableFromInline
final class SharedTopic: Sendable {
    let engine: any SharedTopicEngine
    let pollInterval: Duration
    let payloadTypeName: String
    let encode: @Sendable (MessageRecord, Int) throws -> [UInt8]
    let decode: @Sendable (StoredMessageRow, String) throws -> MessageRecord
    /// How old a snapshot of the counts may be when a publish checks the topic's capacity, and
    /// when ``TopicRuntime/statistics()`` reports it.
    static let countsMaxAge: Duration = .seconds(1)

    struct Claim {
        var receipt: SharedReceipt
        var consumer: ConsumerID?
        var visibilityTimeout: Duration
        var attempt: Int
        /// When this process claimed it (a ``Consumer``'s leases stop growing `maxLease` after it).
        var claimedAt: ContinuousClock.Instant
        /// Set when a settlement found the claim gone: a second one gets the same answer.
        var expired = false
    }

    struct State {
        var subscriptions: [SubscriptionID: Int64] = [:]
        var claims: [UInt64: Claim] = [:]
        var nextTag: UInt64 = 1
        /// `claims.count` after the last sweep of expired claims.
        var sweptAt = 0
        var counts: [String: SharedCounts] = [:]
        var countsTakenAt: ContinuousClock.Instant?
        var published = 0
        var wakeGeneration: UInt64 = 0
        var waiters: [UInt64: UnsafeContinuation<Void, Never>] = [:]
        var nextWaiter: UInt64 = 0
    }

    let state = Mutex(State())

    init(
        engine: any SharedTopicEngine, pollInterval: Duration, payloadTypeName: String,
        encode: @escaping @Sendable (MessageRecord, Int) throws -> [UInt8],
        decode: @escaping @Sendable (StoredMessageRow, String) throws -> MessageRecord
    ) {
        self.engine = engine
        self.pollInterval = pollInterval
        self.payloadTypeName = payloadTypeName
        self.encode = encode
        self.decode = decode
    }

    // MARK: Subscriptions and claims

    func row(of subscription: SubscriptionID) -> Int64? {
        state.withLock { $0.subscriptions[subscription] }
    }

    func setRow(_ row: Int64?, of subscription: SubscriptionID) {
        state.withLock { $0.subscriptions[subscription] = row }
    }

    /// Remembers a claim and returns the tag its ``Delivery`` carries.
    func remember(_ claim: Claim) -> UInt64 {
        state.withLock { state in
            let tag = state.nextTag
            state.nextTag += 1
            state.claims[tag] = claim
            // Claims nobody settles (a consumer that dropped its deliveries) would pile up: once
            // their number doubled since the last sweep, the ones long past their timeout go.
            if state.claims.count >= 4_096, state.claims.count >= 2 * state.sweptAt {
                let now = ContinuousClock.now
                state.claims = state.claims.filter { _, claim in
                    claim.claimedAt + claim.visibilityTimeout + .seconds(600) > now
                }
                state.sweptAt = state.claims.count
            }
            return tag
        }
    }

    func claim(_ tag: UInt64) -> Claim? {
        state.withLock { $0.claims[tag] }
    }

    /// Forgets a settled claim, or marks one the database no longer held.
    func settled(_ tag: UInt64, held: Bool) {
        state.withLock { state in
            if held { state.claims[tag] = nil } else { state.claims[tag]?.expired = true }
        }
    }

    /// Removes and returns the claims a consumer holds.
    func takeClaims(of consumer: ConsumerID) -> [UInt64: Claim] {
        state.withLock { state in
            let mine = state.claims.filter { $0.value.consumer == consumer && !$0.value.expired }
            for tag in mine.keys { state.claims[tag] = nil }
            return mine
        }
    }

    func claims(of consumer: ConsumerID) -> [Claim] {
        state.withLock { state in state.claims.values.filter { $0.consumer == consumer && !$0.expired } }
    }

    // MARK: Counts

    /// The last counts read, and whether they are older than ``countsMaxAge``.
    func snapshot() -> (counts: [String: SharedCounts], isStale: Bool, published: Int) {
        state.withLock { state in
            let isStale = state.countsTakenAt.map { ContinuousClock.now - $0 > Self.countsMaxAge } ?? true
            return (state.counts, isStale, state.published)
        }
    }

    /// Reads the counts from the database now.
    @discardableResult
    func refreshCounts() async throws(OpenQError) -> [String: SharedCounts] {
        let counts = try await engine.counts()
        state.withLock { state in
            state.counts = counts
            state.countsTakenAt = .now
        }
        return counts
    }

    // MARK: Wake-ups

    /// The generation a waiting receive compares against: a local publish raises it.
    var wakeGeneration: UInt64 { state.withLock { $0.wakeGeneration } }

    /// A publish of this process committed: receives waiting here look again at once.
    func published(_ count: Int) {
        let waiters = state.withLock { state in
            state.published += count
            state.wakeGeneration += 1
            defer { state.waiters = [:] }
            return state.waiters.values
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Wakes every waiting receive (the topic finished, a subscription went).
    func wakeAll() {
        let waiters = state.withLock { state in
            state.wakeGeneration += 1
            defer { state.waiters = [:] }
            return state.waiters.values
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Waits until a local publish after `generation`, `timeout`, or cancellation, whichever is
    /// first.
    func wait(after generation: UInt64, upTo timeout: Duration) async {
        guard timeout > .zero else { return }
        let id = state.withLock { state in
            state.nextWaiter += 1
            return state.nextWaiter
        }
        await withTaskGroup(of: Void.self) { group in
            group.addTask { try? await Task.sleep(for: timeout) }
            group.addTask {
                await withTaskCancellationHandler {
                    await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
                        let now = self.state.withLock { state -> Bool in
                            // Cancellation is read under the lock: a cancel that comes later finds
                            // the waiter registered and resumes it.
                            guard state.wakeGeneration == generation, !Task.isCancelled else { return true }
                            state.waiters[id] = continuation
                            return false
                        }
                        if now { continuation.resume() }
                    }
                } onCancel: {
                    self.state.withLock { $0.waiters.removeValue(forKey: id) }?.resume()
                }
            }
            await group.next()
            group.cancelAll()
        }
    }
}
