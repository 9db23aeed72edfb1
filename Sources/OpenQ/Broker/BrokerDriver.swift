// The broker's one background loop: topic timers, metrics export, and the tasks it owns as children.

import HeapModule

/// The broker's one background loop: it fires every topic's timer (visibility timeouts, delays,
/// retries, long-poll timeouts, parked-publisher warnings), exports metrics, and runs the
/// ``Consumer``s that `consume(...)` started as its child tasks.
///
/// Structured concurrency: when the application runs the broker as a service
/// (``MessageQueue/run()``), the loop runs inside that call. Code that never calls `run()` keeps
/// working: the first timer, metrics export, consumer or page read then starts one internal task
/// per broker, which shutdown ends. The loop owns the consumers that `consume(...)` started and a
/// durable topic's page reads as its child tasks. The only other task of the core's products is a
/// SQLite store's writer (see `GroupCommitter`), which its store owns and awaits when it closes.
///
/// A topic asks for a wake-up with ``schedule(_:at:)``; a deadline earlier than the one the loop
/// sleeps until wakes it. A stale wake-up (the topic re-armed for an earlier time since) is
/// harmless: the topic processes what is due and re-arms for its earliest deadline.
final class BrokerDriver: Sendable {
    enum Job: Sendable {
        case topic(TopicRuntime, generation: UInt64)
        case metrics
    }

    fileprivate struct Entry: Comparable {
        var at: Duration
        var order: UInt64
        var job: Job

        static func < (lhs: Self, rhs: Self) -> Bool { (lhs.at, lhs.order) < (rhs.at, rhs.order) }
        static func == (lhs: Self, rhs: Self) -> Bool { lhs.at == rhs.at && lhs.order == rhs.order }
    }

    fileprivate enum Phase {
        /// Nobody drives yet: the first job starts the internal task, unless `run()` drives first.
        case idle
        case running
        /// Shut down: the loop ends once its children (consumers) ended.
        case finished
    }

    fileprivate enum Sleep {
        case until(Duration)
        case forever
    }

    fileprivate enum Step {
        case run([Job])
        case wait(Duration?)
        case finish
    }

    fileprivate struct State {
        var phase = Phase.idle
        var heap = Heap<Entry>()
        var order: UInt64 = 0
        /// How the loop sleeps now; `nil` while it is awake (it will look at the heap again).
        var sleeping: Sleep?
        /// The sleeping loop's wake-up.
        var wakeUp: UnsafeContinuation<Void, Never>?
        /// A wake-up that came before the loop stored its continuation.
        var pendingWakeUp = false
        /// Work to start as child tasks of the loop (consumers).
        var children: [@Sendable () async -> Void] = []
        var isLooping = false
        /// Who waits for the loop to end, by a waiter id (a cancelled wait leaves the list).
        var finishWaiters: [(id: UInt64, continuation: UnsafeContinuation<Void, Never>)] = []

        /// Moves an idle driver to running; true when the caller must start the internal task.
        mutating func startIfIdle() -> Bool {
            guard case .idle = phase else { return false }
            phase = .running
            return true
        }

        /// Wakes the loop if it sleeps (now, or as soon as it is about to).
        mutating func wakeUpIfSleeping(before deadline: Duration?) -> UnsafeContinuation<Void, Never>? {
            switch sleeping {
            case nil:
                return nil
            case .until(let time):
                if let deadline, deadline >= time { return nil }
            case .forever:
                break
            }
            if let wakeUp {
                self.wakeUp = nil
                return wakeUp
            }
            pendingWakeUp = true
            return nil
        }

        mutating func nextStep(now: Duration) -> (Step, [@Sendable () async -> Void]) {
            let children = self.children
            self.children = []
            if case .finished = phase { return (.finish, children) }
            var due: [Job] = []
            while let first = heap.min, first.at <= now { due.append(heap.removeMin().job) }
            if !due.isEmpty { return (.run(due), children) }
            let next = heap.min?.at
            sleeping = next.map(Sleep.until) ?? .forever
            return (.wait(next), children)
        }
    }

    private let clock: BrokerClock
    private let state = LockedValueBox(State())
    /// What a `.metrics` job runs: the broker's export, returning when to run again.
    private let metricsExport = LockedValueBox<(@Sendable () async -> Duration?)?>(nil)

    init(clock: BrokerClock) {
        self.clock = clock
    }

    /// Sets what a `.metrics` job runs; it returns when to run again, or `nil` for never.
    func onMetrics(_ body: @escaping @Sendable () async -> Duration?) {
        metricsExport.withLock { $0 = body }
    }

    // MARK: Work

    /// Asks for `job` to run at `deadline` (by the broker's clock). Ignored after shutdown.
    func schedule(_ job: Job, at deadline: Duration) {
        let (wakeUp, start) = state.withLock { state -> (UnsafeContinuation<Void, Never>?, Bool) in
            if case .finished = state.phase { return (nil, false) }
            state.order += 1
            state.heap.insert(Entry(at: deadline, order: state.order, job: job))
            let start = state.startIfIdle()
            return (state.wakeUpIfSleeping(before: deadline), start)
        }
        wakeUp?.resume()
        if start { startInternalTask() }
    }

    /// Forgets every wake-up of a finished topic, so the loop no longer holds it.
    func cancel(_ runtime: TopicRuntime) {
        state.withLock { state in
            let kept = state.heap.unordered.filter { entry in
                if case .topic(let other, _) = entry.job { return other !== runtime }
                return true
            }
            if kept.count != state.heap.count { state.heap = Heap(kept) }
        }
    }

    /// Runs `body` as a child task of the loop; false (and `body` is not run) after shutdown.
    func startChild(_ body: @escaping @Sendable () async -> Void) -> Bool {
        let (accepted, wakeUp, start) = state.withLock {
            state -> (Bool, UnsafeContinuation<Void, Never>?, Bool) in
            if case .finished = state.phase { return (false, nil, false) }
            state.children.append(body)
            let start = state.startIfIdle()
            return (true, state.wakeUpIfSleeping(before: nil), start)
        }
        wakeUp?.resume()
        if start { startInternalTask() }
        return accepted
    }

    // MARK: Driving

    /// Drives the loop in the calling task until shutdown ended it; when the internal task drives
    /// it already, waits for the loop to end instead.
    func drive() async {
        let mustDrive = state.withLock { state -> Bool in
            guard case .idle = state.phase else { return false }
            state.phase = .running
            return true
        }
        if mustDrive { await loop() } else { await waitUntilFinished() }
    }

    /// Ends the loop: it stops firing timers and returns once its children (consumers, which end
    /// as their topics finish) have ended.
    func finish() {
        let (wakeUp, waiters) = state.withLock {
            state -> (UnsafeContinuation<Void, Never>?, [UnsafeContinuation<Void, Never>]) in
            state.phase = .finished
            state.heap = Heap()
            let wakeUp = state.wakeUpIfSleeping(before: nil)
            guard !state.isLooping, state.children.isEmpty else { return (wakeUp, []) }
            // No loop runs (none ever did): nobody else will resume the finish waiters.
            defer { state.finishWaiters = [] }
            return (wakeUp, state.finishWaiters.map(\.continuation))
        }
        wakeUp?.resume()
        for waiter in waiters { waiter.resume() }
    }

    /// Waits until the loop ended; returns at once when it is finished and not running, and
    /// early when the waiting task is cancelled.
    func waitUntilFinished() async {
        let id = MessageID.allocate()
        await withTaskCancellationHandler {
            await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
                let resumeNow = state.withLock { state -> Bool in
                    if case .finished = state.phase, !state.isLooping { return true }
                    if Task.isCancelled { return true }
                    state.finishWaiters.append((id, continuation))
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            state.withLock { state -> UnsafeContinuation<Void, Never>? in
                guard let index = state.finishWaiters.firstIndex(where: { $0.id == id }) else { return nil }
                return state.finishWaiters.remove(at: index).continuation
            }?.resume()
        }
    }

    private func startInternalTask() {
        Task { await self.loop() }
    }

    private func loop() async {
        state.withLock { $0.isLooping = true }
        await withDiscardingTaskGroup { group in
            while true {
                let now = clock.now()
                let (step, children) = state.withLock { $0.nextStep(now: now) }
                for child in children { group.addTask(operation: child) }
                switch step {
                case .finish:
                    return
                case .run(let jobs):
                    for job in jobs { await run(job) }
                case .wait(let deadline):
                    await wait(until: deadline)
                }
            }
        }
        let waiters = state.withLock { state -> [UnsafeContinuation<Void, Never>] in
            state.isLooping = false
            defer { state.finishWaiters = [] }
            return state.finishWaiters.map(\.continuation)
        }
        for waiter in waiters { waiter.resume() }
    }

    private func run(_ job: Job) async {
        switch job {
        case .topic(let runtime, let generation):
            runtime.timerFired(generation: generation)
        case .metrics:
            guard let export = metricsExport.withLock({ $0 }), let interval = await export() else { return }
            schedule(.metrics, at: clock.now() + interval)
        }
    }

    /// Sleeps until `deadline` (with none, until woken), or until an earlier deadline, new work or
    /// shutdown wakes it.
    private func wait(until deadline: Duration?) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.waitForWakeUp() }
            if let deadline {
                let clock = self.clock
                group.addTask { try? await clock.sleep(until: deadline) }
            }
            await group.next()
            group.cancelAll()
        }
        state.withLock { state in
            state.sleeping = nil
            state.pendingWakeUp = false
        }
    }

    private func waitForWakeUp() async {
        await withTaskCancellationHandler {
            await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
                let resumeNow = state.withLock { state -> Bool in
                    if state.pendingWakeUp || Task.isCancelled {
                        state.pendingWakeUp = false
                        return true
                    }
                    state.wakeUp = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let stored = state.withLock { state -> UnsafeContinuation<Void, Never>? in
                defer { state.wakeUp = nil }
                return state.wakeUp
            }
            stored?.resume()
        }
    }
}
