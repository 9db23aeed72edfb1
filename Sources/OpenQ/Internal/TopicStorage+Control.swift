/// The broker's control-plane operations on a topic: creation of the dead-letter subscription,
/// shutdown, and redrive.
extension TopicStorage {
    /// True when the topic carries `type`.
    func carries(_ type: Any.Type) -> Bool { ObjectIdentifier(payloadType) == ObjectIdentifier(type) }

    var deadLetterTopicName: String? { deadLetterTarget?.name }

    /// Creates the named subscription, or finds it when it exists with the same configuration.
    @discardableResult
    func ensureSubscription(_ name: String, configuration: SubscriptionConfiguration) throws -> SubscriptionID {
        try withState { state, now in
            (state.addSubscription(name: name, configuration: configuration, isAnonymous: false, now: now), Effects())
        }.get()
    }

    /// Stops publishing; consumers go on until the topic is idle or `deadline` passes.
    func beginShutdown(deadline: Duration) {
        withState { state, _ in ((), state.beginShutdown(deadline: deadline)) }
    }

    func finish() {
        withState { state, _ in ((), state.finish()) }
        cancelTimer()
    }

    func waitUntilIdle() async {
        let waiter = MessageID.allocate()
        await withTaskCancellationHandler {
            await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
                let resumeNow = state.withLock { $0.addIdleWaiter(waiter, continuation) }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            state.withLock { $0.cancelIdleWaiter(waiter) }?.resume()
        }
    }

    func redrive(max: Int, resolve: (String) -> TopicStorage?) -> Int {
        guard let id = state.withLock({ $0.subscriptionID(named: DeadLetterPolicy.subscriptionName) }) else { return 0 }
        let messages = withState { state, now in state.drain(id, max: max, now: now) }
        var bySource: [String: [String: [StoredMessage]]] = [:]
        var unroutable: [StoredMessage] = []
        for message in messages {
            guard let topic = message.headers[MessageHeader.sourceTopic],
                let subscription = message.headers[MessageHeader.sourceSubscription]
            else {
                unroutable.append(message)
                continue
            }
            bySource[topic, default: [:]][subscription, default: []].append(message)
        }
        var moved = 0
        var movedSequences: [UInt64] = []
        for (topic, groups) in bySource {
            for (subscription, group) in groups {
                guard let source = resolve(topic), source.carries(payloadType),
                    let sourceID = source.state.withLock({ $0.subscriptionID(named: subscription) }),
                    (try? source.withState({ state, now in state.enqueue(group, into: sourceID, now: now) }).get())
                        != nil
                else {
                    unroutable += group
                    continue
                }
                moved += group.count
                movedSequences += group.map(\.sequenceNumber)
            }
        }
        // Only after their sources journaled them do the moved copies leave the dead-letter
        // topic's store: a crash in between keeps both (at least once), never neither.
        if let store, !movedSequences.isEmpty {
            store.append(
                topic: name, [.removed(subscription: DeadLetterPolicy.subscriptionName, sequences: movedSequences)])
        }
        if !unroutable.isEmpty {
            logger.warning(
                "Kept dead letters whose source topic or subscription no longer exists",
                metadata: ["deadLetterTopic": "\(name)", "count": "\(unroutable.count)"]
            )
            withState { state, now in state.restore(unroutable, into: id, now: now) }
        }
        return moved
    }
}

// MARK: Replay from the store

extension TopicStorage {
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

extension TopicStorage {
    /// Waits (polling, up to 10 s) until a subscription that pages has messages in memory again;
    /// false when it has none left in memory or in the store (or is gone), or the wait timed out.
    func waitForPage(of subscription: String) async -> Bool {
        for _ in 0..<10_000 {
            let (memory, stored) = state.withLock { state -> (Int, Int) in
                guard let id = state.subscriptionID(named: subscription), let index = state.index(of: id) else {
                    return (0, 0)
                }
                return (state.subscriptions[index].visibleCount, state.subscriptions[index].paging.stored)
            }
            if memory > 0 { return true }
            if stored == 0 { return false }
            do { try await Task.sleep(for: .milliseconds(1)) } catch { return false }
        }
        return false
    }
}

// MARK: Recovery of a durable topic

extension TopicStorage {
    /// Rebuilds the topic from what its store holds, before anyone can reach it. CPU only: the
    /// store was read before (off the cooperative pool). A message whose payload no longer decodes
    /// is counted in statistics and returned, for the caller to move to the store's quarantine;
    /// it never reaches a consumer.
    /// - Returns: the messages to quarantine, with the reason.
    func recover(
        _ recovered: RecoveredTopic,
        makeRecord: (StoredMessageRow) throws -> MessageRecord
    ) -> [(row: StoredMessageRow, reason: String)] {
        var records: [UInt64: MessageRecord] = [:]
        records.reserveCapacity(recovered.messages.count)
        var undecodable: [(row: StoredMessageRow, reason: String)] = []
        for row in recovered.messages {
            do {
                records[row.sequence] = try makeRecord(row)
            } catch {
                undecodable.append((row, "the payload no longer decodes as \(payloadType): \(error)"))
            }
        }
        let epoch = clock.epoch
        let subscriptions = recovered.subscriptions.map { subscription in
            var copies: [TopicStateMachine.Pending] = []
            var due: [Duration?] = []
            for copy in subscription.copies {
                guard let record = records[copy.sequence] else { continue }
                copies.append(
                    TopicStateMachine.Pending(
                        stored: StoredMessage(record), attempts: copy.attempts, lastError: copy.lastError,
                        firstDeliveredAt: copy.firstDeliveredAt.map { .seconds($0.timeIntervalSince(epoch)) }))
                due.append(copy.visibleAt.map { .seconds($0.timeIntervalSince(epoch)) })
            }
            return (
                name: subscription.name, configuration: subscription.configuration, copies: copies, due: due,
                stored: subscription.stored
            )
        }
        let quarantined = recovered.quarantined + undecodable.count
        withState { state, now in
            state.counters.quarantined = quarantined
            state.retainedSince = recovered.retainedSince
            return ((), state.recover(nextSequence: recovered.nextSequence, subscriptions: subscriptions, now: now))
        }
        // Subscriptions whose messages mostly wait in the store read their first pages.
        withState { state, _ in
            state.requestPageIns()
            return ((), Effects())
        }
        return undecodable
    }
}
