// Group commit: writes appended meanwhile share one transaction and one fsync; faults keep them.

import GRDB
import OpenQ

/// Group commit: writes appended while a transaction runs share the next one, and its fsync.
///
/// Appending never blocks (the broker appends under a topic's lock). One writer task, started when
/// there is something to commit and ending when nothing is left, commits everything pending in
/// one transaction per round, in append order, then resumes every caller waiting for a write of
/// that round. No fsync per write, no timer: under load a transaction carries everything that
/// arrived during the previous one.
///
/// The committer owns its writer task and ``close()`` waits for it to end, so no write outlives
/// the store. It is not a child of the broker's loop on purpose: a child is cancelled with its
/// parent (a service group cancels `MessageQueue.run()`), and GRDB's asynchronous writes honour
/// cancellation, so a cancelled writer would fail commits the state machine already made.
///
/// A round that fails because of the store (a full disk, a file that can only be read, an I/O
/// error: a *fault*) fails the callers waiting for its writes, but its writes are kept, in order,
/// and retried with a growing pause (5 ms to 1 s) together with whatever is appended meanwhile,
/// until a round commits. So the store never skips a write that the state machine made (a dead
/// letter's insertion into its topic is never dropped while the removal of its source copy
/// commits later), and the broker's memory and its file agree again once the fault clears, with
/// no restart. While the fault lasts, ``fault`` says so and the broker refuses publishes and
/// receives before they change anything. A round that fails for any other reason (a bug: the
/// journal's statements tolerate every row state) fails its callers and is dropped, so one bad
/// round never wedges the store.
package final class GroupCommitter: Sendable {
    /// One caller's writes, applied in order inside the shared transaction.
    package typealias Write = @Sendable (Database) throws -> Void

    private struct Waiter {
        var since: UInt64
        var through: UInt64
        var continuation: UnsafeContinuation<Result<Void, OpenQError>, Never>
    }

    private struct State {
        /// Writes not committed yet, in append order: the `pending.count` writes up to `appended`.
        var pending: [Write] = []
        /// Writes appended so far, and writes whose transaction ended (committed, or failed and
        /// dropped).
        var appended: UInt64 = 0
        var finished: UInt64 = 0
        /// The writes of the latest dropped rounds, and up to which write older failures were
        /// forgotten (a wait that began before that point is reported as failed: never a false
        /// success).
        var failures: [(range: ClosedRange<UInt64>, error: OpenQError)] = []
        var forgottenThrough: UInt64 = 0
        var forgottenError: OpenQError?
        /// The store's fault while a round of kept writes waits to be retried.
        var fault: OpenQError?
        /// Set by ``close()``: a failing round is no longer retried.
        var closing = false
        var writing = false
        /// The latest writer task: ``close()`` waits for it.
        var writer: Task<Void, Never>?
        var waiters: [Waiter] = []
        var commits = 0
        var writes = 0
        var failedRounds = 0

        /// The failure of a dropped round holding a write in `since + 1 ... through`, if any.
        func failure(since: UInt64, through: UInt64) -> OpenQError? {
            guard through > since else { return nil }
            if since < forgottenThrough, let forgottenError { return forgottenError }
            return failures.last { $0.range.upperBound > since && $0.range.lowerBound <= through }?.error
        }
    }

    private typealias Resumption = (UnsafeContinuation<Result<Void, OpenQError>, Never>, Result<Void, OpenQError>)

    private let pool: DatabasePool
    private let state = LockedValueBox(State())

    init(pool: DatabasePool) {
        self.pool = pool
    }

    /// How many writes were appended so far: a caller reads it before it makes its writes and
    /// passes it to ``sync(since:)``.
    package var mark: UInt64 { state.withLock { $0.appended } }

    /// The store's fault (``OpenQError/Code/storeFull``, ``OpenQError/Code/storeReadOnly``, ...)
    /// while writes wait to be retried; `nil` when the last round committed.
    package var fault: OpenQError? { state.withLock { $0.fault } }

    /// Appends a write to the next transaction; never blocks.
    package func append(_ write: @escaping Write) {
        state.withLock { state in
            state.pending.append(write)
            state.appended += 1
            guard !state.writing else { return }
            state.writing = true
            // Made under the lock, so that `close()` always finds the latest writer.
            state.writer = Task { await self.writeAll() }
        }
    }

    /// Returns once every write appended so far is committed.
    ///
    /// Not cancellable, on purpose: the caller's decision (a publish, an ack) is made and its write
    /// appended; a cancelled wait would report a call that then commits as failed.
    /// - Parameter since: the ``mark`` read before the caller made its writes: a failed
    ///   transaction holding any write appended after it fails the wait (so a caller never learns
    ///   of a success its writes did not have; it may learn of a failure of writes appended
    ///   meanwhile by others).
    /// - Throws: the fault (``OpenQError/Code/storeFull``, ``OpenQError/Code/storeReadOnly``,
    ///   ``OpenQError/Code/storeCorrupted``, ``OpenQError/Code/storageFailed``) of such a
    ///   transaction. After a fault the writes are kept and committed by a later round: a second
    ///   `sync` with the same mark returns once they are.
    package func sync(since: UInt64) async throws(OpenQError) {
        let result = await withUnsafeContinuation {
            (continuation: UnsafeContinuation<Result<Void, OpenQError>, Never>) in
            let ready = state.withLock { state -> Result<Void, OpenQError>? in
                let through = state.appended
                guard through > state.finished else {
                    return state.failure(since: since, through: through).map { .failure($0) } ?? .success(())
                }
                state.waiters.append(Waiter(since: since, through: through, continuation: continuation))
                return nil
            }
            if let ready { continuation.resume(returning: ready) }
        }
        try result.get()
    }

    /// Appends `write` and waits for its commit.
    package func commit(_ write: @escaping Write) async throws(OpenQError) {
        let since = mark
        append(write)
        try await sync(since: since)
    }

    /// Commits what is pending and stops retrying: after a fault, the kept writes get one more
    /// round, and if it fails they are dropped and their callers failed (the process is about to
    /// stop them anyway).
    package func close() async {
        let since = state.withLock { state -> UInt64 in
            state.closing = true
            return state.appended
        }
        // Waits for everything appended before (`since` is the end: this call has no writes of
        // its own, so a failure is not reported to it), then for the writer task to end.
        try? await sync(since: since)
        await state.withLock { $0.writer }?.value
    }

    /// Commits what is pending, one transaction per round, until nothing is left. The task is
    /// suspended while GRDB's writer commits, so no cooperative thread blocks on the fsync.
    private func writeAll() async {
        var pause = Duration.milliseconds(5)
        while true {
            let (batch, last) = state.withLock { state -> ([Write], UInt64) in
                guard !state.pending.isEmpty else {
                    state.writing = false
                    return ([], 0)
                }
                return (state.pending, state.appended)
            }
            guard !batch.isEmpty else { return }
            var failure: OpenQError?
            var isFault = false
            do {
                try await pool.write { db in
                    for write in batch { try write(db) }
                }
            } catch {
                failure = OpenQError.storageFailure(error)
                isFault = Self.isFault(error)
            }
            let (resumed, retry) = state.withLock { state -> ([Resumption], Bool) in
                let first = last - UInt64(batch.count) + 1
                let keep = isFault && !state.closing
                if let failure {
                    state.failedRounds += 1
                    if keep {
                        state.fault = failure
                    } else {
                        // Nothing is kept, so nothing waits for the store to recover.
                        state.fault = nil
                        state.pending.removeFirst(batch.count)
                        state.finished = last
                        state.failures.append((first...last, failure))
                        if state.failures.count > 64 {
                            let forgotten = state.failures.removeFirst()
                            state.forgottenThrough = forgotten.range.upperBound
                            state.forgottenError = forgotten.error
                        }
                    }
                } else {
                    state.pending.removeFirst(batch.count)
                    state.finished = last
                    state.fault = nil
                    state.commits += 1
                    state.writes += batch.count
                }
                var resumed: [Resumption] = []
                var waiting: [Waiter] = []
                for waiter in state.waiters {
                    guard waiter.through <= last else {
                        waiting.append(waiter)
                        continue
                    }
                    if keep {
                        // Its writes were in the failed round: it learns of the fault now; the
                        // writes stay pending. A waiter with no writes of its own waits on.
                        guard waiter.through > waiter.since, let failure else {
                            waiting.append(waiter)
                            continue
                        }
                        resumed.append((waiter.continuation, .failure(failure)))
                    } else {
                        let failed = state.failure(since: waiter.since, through: waiter.through)
                        resumed.append((waiter.continuation, failed.map { .failure($0) } ?? .success(())))
                    }
                }
                state.waiters = waiting
                return (resumed, keep)
            }
            for (continuation, result) in resumed { continuation.resume(returning: result) }
            if retry {
                // The kept writes are retried after a pause that grows while the fault lasts.
                try? await Task.sleep(for: pause)
                pause = min(pause * 2, .seconds(1))
                continue
            }
            pause = .milliseconds(5)
            // With several callers, let the ones just resumed run before the next round is taken:
            // a publisher that publishes again at once then joins it instead of waiting a whole
            // commit for the one after (measured, 16 publishers: 10.8 -> 16 writes per commit,
            // 29 k -> 35 k msgs/s). A lone caller gains nothing from it and would pay the hop.
            if resumed.count > 1 { await Task.yield() }
        }
    }

    /// Whether a failed round's error comes from the store's medium (space, permissions, I/O,
    /// locks, memory, a damaged file) rather than from what was written: such a round is kept and
    /// retried.
    static func isFault(_ error: any Error) -> Bool {
        guard let error = error as? DatabaseError else { return false }
        switch error.resultCode {
        case .SQLITE_FULL, .SQLITE_READONLY, .SQLITE_CORRUPT, .SQLITE_NOTADB, .SQLITE_IOERR, .SQLITE_BUSY,
            .SQLITE_LOCKED, .SQLITE_NOMEM, .SQLITE_CANTOPEN, .SQLITE_PROTOCOL:
            return true
        default:
            return false
        }
    }

    /// How many transactions were committed and writes they carried, and how many rounds failed.
    package var counts: (commits: Int, writes: Int, failedRounds: Int, pending: Int) {
        state.withLock { ($0.commits, $0.writes, $0.failedRounds, $0.pending.count) }
    }
}

extension OpenQError {
    /// A SQLite error as a typed error: ``OpenQError/Code/storeFull``,
    /// ``OpenQError/Code/storeReadOnly``, ``OpenQError/Code/storeCorrupted``, or
    /// ``OpenQError/Code/storageFailed`` with SQLite's message.
    static func storageFailure(_ error: any Error) -> OpenQError {
        if let error = error as? OpenQError { return error }
        guard let error = error as? DatabaseError else {
            return OpenQError(.storageFailed, "The durable store failed: \(error)")
        }
        switch error.resultCode {
        case .SQLITE_FULL:
            return OpenQError(
                .storeFull,
                "The durable store is full (the disk, or the file's page limit): \(error). Nothing more is "
                    + "accepted until space is freed; writes already made are kept and committed then.")
        case .SQLITE_READONLY:
            return OpenQError(
                .storeReadOnly,
                "The durable store can only be read (a read-only file, directory or mount): \(error). "
                    + "Nothing more is accepted until it can be written again; writes already made are kept "
                    + "and committed then.")
        case .SQLITE_CORRUPT, .SQLITE_NOTADB:
            return OpenQError(
                .storeCorrupted, "The durable store's file is damaged or is not a SQLite database: \(error).")
        default:
            return OpenQError(.storageFailed, "The durable store failed: \(error)")
        }
    }
}
