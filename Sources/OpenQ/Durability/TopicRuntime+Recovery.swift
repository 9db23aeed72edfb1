// Recovery of a durable topic: the topic rebuilt from what its store holds, before anyone reaches it.

extension TopicRuntime {
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
                        stored: PublishedMessage(record), attempts: copy.attempts, lastError: copy.lastError,
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
