// Paging and replay of a durable topic at run time: pages read back from the store, and what waits for them.

// MARK: Replay from the store

extension TopicRuntime {
    /// Counts what a journaled replay put into a subscription of a durable topic, once it is
    /// committed (the caller synced), so the subscription pages it in. Nothing to do otherwise.
    /// - Returns: how many messages the replay enqueued.
    func completeReplay(_ id: SubscriptionID) async throws(OpenQError) -> Int {
        guard let store, let (subscription, before) = state.withLock({ $0.pendingReplay(id) }) else { return 0 }
        let levels = try await store.replayedLevels(topic: name, subscription: subscription, before: before)
        return withState { state, now in state.replayCounted(id, levels: levels, now: now) }
    }
}

// MARK: Paging

/// The page reads of one topic in flight, and who waits for one to end. Page reads are child tasks
/// of the broker's background loop (``BrokerDriver``): the runtime counts them so that a waiter
/// wakes by continuation when a page arrives, and shutdown waits for them before it closes the
/// store.
struct PageReads {
    /// Reads started and not ended (a failed read counts until its retry is asked for).
    var inFlight = 0
    /// Reads ended so far: a waiter that saw this number wakes once it moves.
    var ended: UInt64 = 0
    var waiters: [(id: UInt64, continuation: UnsafeContinuation<Bool, Never>)] = []
}

extension TopicRuntime {
    /// Waits until a subscription that pages has messages in memory again; false when it has none
    /// left in memory or in the store (or is gone), when no page read is under way to bring them,
    /// or when the task is cancelled. Woken by the end of each page read, never by polling.
    func waitForPage(of subscription: String) async -> Bool {
        while !Task.isCancelled {
            let seen = pageReads.withLock { $0.ended }
            let (memory, stored) = state.withLock { state -> (Int, Int) in
                guard let id = state.subscriptionID(named: subscription), let index = state.index(of: id) else {
                    return (0, 0)
                }
                return (state.subscriptions[index].visibleCount, state.subscriptions[index].paging.stored)
            }
            if memory > 0 { return true }
            if stored == 0 { return false }
            guard await waitForPageRead(after: seen) else { return false }
        }
        return false
    }

    /// Waits until a page read ends after `seen` reads had ended; returns at once when one ended
    /// since. False when no read is under way (nothing would wake the waiter). Cancellable: it
    /// decides nothing.
    func waitForPageRead(after seen: UInt64) async -> Bool {
        let id = MessageID.allocate()
        return await withTaskCancellationHandler {
            await withUnsafeContinuation { (continuation: UnsafeContinuation<Bool, Never>) in
                let now = pageReads.withLock { reads -> Bool? in
                    if reads.ended != seen { return true }
                    if reads.inFlight == 0 || Task.isCancelled { return false }
                    reads.waiters.append((id, continuation))
                    return nil
                }
                if let now { continuation.resume(returning: now) }
            }
        } onCancel: {
            pageReads.withLock { reads -> UnsafeContinuation<Bool, Never>? in
                guard let index = reads.waiters.firstIndex(where: { $0.id == id }) else { return nil }
                return reads.waiters.remove(at: index).continuation
            }?.resume(returning: false)
        }
    }

    /// Waits until no page read of this topic is under way (at shutdown, before the store closes).
    func waitForPageReads() async {
        while true {
            let seen = pageReads.withLock { $0.inFlight == 0 ? nil : $0.ended }
            guard let seen, await waitForPageRead(after: seen) else { return }
        }
    }

    private func pageReadEnded() {
        let waiters = pageReads.withLock { reads -> [UnsafeContinuation<Bool, Never>] in
            reads.inFlight -= 1
            reads.ended &+= 1
            defer { reads.waiters = [] }
            return reads.waiters.map(\.continuation)
        }
        for waiter in waiters { waiter.resume(returning: true) }
    }

    /// Reads a page that a paging subscription asked for (see `TopicStateMachine+Paging`), once
    /// everything journaled before is committed, and hands it to the state machine. Payloads that
    /// no longer decode go to the store's quarantine. A failed read is asked for again after a
    /// pause (the store may be faulty for a while). The read runs as a child task of the broker's
    /// background loop; after shutdown it is not started.
    func readPage(_ request: PageInRequest) {
        guard let store, let binding = durableBinding else { return }
        let topic = name
        let payloadType = payloadType
        pageReads.withLock { $0.inFlight += 1 }
        let started = driver.startChild { [self] in
            defer { pageReadEnded() }
            do {
                try await store.sync(since: store.journalMark)
                var page: [(sequence: UInt64, message: PublishedMessage?)] = []
                for row in try await store.readPage(topic: topic, request) {
                    do {
                        page.append((row.sequence, PublishedMessage(try binding.decode(row, topic))))
                    } catch {
                        page.append((row.sequence, nil))
                        try? await store.quarantine(
                            topic: topic, sequence: row.sequence, payload: row.payload,
                            reason: "the payload no longer decodes as \(payloadType): \(error)")
                        withState { state, _ in
                            state.counters.quarantined += 1
                            return ((), Effects())
                        }
                    }
                }
                withState { state, now in ((), state.pagedIn(request, rows: page, now: now)) }
            } catch {
                withState { state, _ in
                    state.pageInFailed(request)
                    return ((), Effects())
                }
                try? await Task.sleep(for: .milliseconds(100))
                withState { state, _ in
                    state.requestPageIns()
                    return ((), Effects())
                }
            }
        }
        if !started { pageReadEnded() }
    }
}
