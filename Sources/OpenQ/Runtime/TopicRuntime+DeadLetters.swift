// Dead letters of a topic: forwarding them to the dead-letter topic, and redrive back to their sources.

extension TopicRuntime {

    /// Changes the dead-letter policy and where dead letters go, together under the topic's lock;
    /// a durable topic's new configuration is committed before this returns.
    func setDeadLetterPolicy(_ policy: DeadLetterPolicy, target: TopicRuntime?) async throws(OpenQError) {
        let mark = journalMark
        withState { state, _ in
            state.setDeadLetterPolicy(policy)
            deadLetterTargetBox.withLock { $0 = target }
            return ((), Effects())
        }
        if isDurable { try await syncJournal(since: mark) }
    }

    /// Journals that dead-lettered copies left their subscriptions (read from the headers the
    /// dead-letter copy carries).
    func journalDeadLettered(_ messages: [PublishedMessage]) {
        guard let store else { return }
        let entries = messages.compactMap { message -> JournalEntry? in
            guard let subscription = message.headers[MessageHeader.sourceSubscription],
                let attempts = message.headers[MessageHeader.attempts].flatMap({ Int($0) })
            else { return nil }
            return .deadLettered(
                subscription: subscription, sequence: message.record.origin?.sequenceNumber ?? message.sequenceNumber,
                attempts: attempts)
        }
        if !entries.isEmpty { store.append(topic: name, entries) }
    }

    func forwardDeadLetters(_ messages: [PublishedMessage]) {
        guard let deadLetterTarget else {
            journalDeadLettered(messages)
            logger.warning(
                "Discarded rejected messages: the topic has no dead-letter topic",
                metadata: ["topic": "\(name)", "count": "\(messages.count)"]
            )
            return
        }
        // Each dead letter is a one-message copy (`PublishedMessage.withHeaders`), so its record is
        // the whole request.
        let requests = messages.map { PublishRequest($0.record) }
        let accepted = deadLetterTarget.withState { state, now in state.acceptDeadLetters(requests, now: now) }
        // Only now, after the dead-letter topic journaled them, do the copies leave this topic's
        // store: a crash in between keeps both (at least once), never neither.
        if accepted { journalDeadLettered(messages) }
        if !accepted {
            logger.error(
                "Dead-letter topic is shut down; dead letters were not stored",
                metadata: [
                    "topic": "\(name)", "deadLetterTopic": "\(deadLetterTarget.name)", "count": "\(messages.count)",
                ]
            )
        }
    }
}

extension TopicRuntime {
    func redrive(max: Int, resolve: (String) -> TopicRuntime?) -> Int {
        guard let id = state.withLock({ $0.subscriptionID(named: DeadLetterPolicy.subscriptionName) }) else { return 0 }
        let messages = withState { state, now in state.drain(id, max: max, now: now) }
        var bySource: [String: [String: [PublishedMessage]]] = [:]
        var unroutable: [PublishedMessage] = []
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
