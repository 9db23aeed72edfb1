import GRDB
import OpenQ

/// Group commit: concurrent writers share one transaction and one fsync.
///
/// A caller hands its writes in and waits for the commit that holds them. The first caller that
/// finds no commit running leads: it takes everything pending, commits it in one transaction,
/// resumes every caller of that commit, and leads again while more arrived meanwhile. No task of
/// its own, no timer, no fsync per write: under load a commit carries everything that arrived
/// during the previous one.
package final class GroupCommitter: Sendable {
    /// One caller's writes, applied in order inside the shared transaction.
    package typealias Write = @Sendable (Database) throws -> Void

    private struct State {
        var nextID: UInt64 = 0
        var pending: [(id: UInt64, write: Write)] = []
        var leading = false
        /// Callers waiting for their commit, and results that came before their caller waited.
        var waiting: [UInt64: UnsafeContinuation<Result<Void, StoreError>, Never>] = [:]
        var results: [UInt64: Result<Void, StoreError>] = [:]
        var commits = 0
        var writes = 0
    }

    private let pool: DatabasePool
    private let state = LockedValueBox(State())

    init(pool: DatabasePool) {
        self.pool = pool
    }

    /// Commits `write` together with whatever else is pending; returns once it is committed.
    /// - Throws: ``StoreError/failed(_:)`` when the transaction failed (none of its writes is
    ///   committed).
    package func commit(_ write: @escaping Write) async throws {
        let (id, leads) = state.withLock { state -> (UInt64, Bool) in
            state.nextID += 1
            state.pending.append((state.nextID, write))
            guard !state.leading else { return (state.nextID, false) }
            state.leading = true
            return (state.nextID, true)
        }
        if leads { await lead() }
        let result = await withUnsafeContinuation {
            (continuation: UnsafeContinuation<Result<Void, StoreError>, Never>) in
            let ready = state.withLock { state -> Result<Void, StoreError>? in
                if let result = state.results.removeValue(forKey: id) { return result }
                state.waiting[id] = continuation
                return nil
            }
            if let ready { continuation.resume(returning: ready) }
        }
        try result.get()
    }

    /// Commits what is pending, one transaction per round, until nothing is left. The leader is
    /// suspended while GRDB's writer commits, so no cooperative thread blocks on the fsync.
    private func lead() async {
        while true {
            let batch = state.withLock { state -> [(id: UInt64, write: Write)] in
                guard !state.pending.isEmpty else {
                    state.leading = false
                    return []
                }
                defer { state.pending = [] }
                return state.pending
            }
            guard !batch.isEmpty else { return }
            let writes = batch.map(\.write)
            let result: Result<Void, StoreError>
            do {
                try await pool.write { db in
                    for write in writes { try write(db) }
                }
                result = .success(())
            } catch {
                result = .failure(.failed("\(error)"))
            }
            let resumed = state.withLock { state -> [UnsafeContinuation<Result<Void, StoreError>, Never>] in
                state.commits += 1
                state.writes += batch.count
                var resumed: [UnsafeContinuation<Result<Void, StoreError>, Never>] = []
                for (id, _) in batch {
                    if let waiter = state.waiting.removeValue(forKey: id) {
                        resumed.append(waiter)
                    } else {
                        state.results[id] = result
                    }
                }
                return resumed
            }
            for waiter in resumed { waiter.resume(returning: result) }
        }
    }

    /// How many transactions and writes were committed so far.
    package var counts: (commits: Int, writes: Int) {
        state.withLock { ($0.commits, $0.writes) }
    }
}
