// Recovery in the state machine: a durable topic's subscriptions rebuilt from the copies its store holds.

import DequeModule

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

extension TopicStateMachine {

    /// Rebuilds a durable topic from its store: the named subscriptions with their copies, in
    /// sequence order. A copy with attempts was waiting for a retry or in flight when the process
    /// stopped: it is visible again at once (or when its retry was due), with its attempt count;
    /// one that had used its last allowed delivery is dead-lettered. Called before the topic is
    /// reachable; nothing is journaled but the dead letters' moves (by the runtime).
    mutating func recover(
        nextSequence: UInt64,
        subscriptions recovered: [(
            name: String, configuration: SubscriptionConfiguration, copies: [Pending], due: [Duration?],
            stored: [StoredLevel]
        )],
        now: Duration
    ) -> Effects {
        self.nextSequence = Swift.max(self.nextSequence, nextSequence)
        let journal = self.journal
        self.journal = nil
        defer { self.journal = journal }
        var effects = Effects()
        for subscription in recovered {
            guard
                case .success(let id) = addSubscription(
                    name: subscription.name, configuration: subscription.configuration, isAnonymous: false, now: now),
                let index = index(of: id)
            else { continue }
            for (pending, due) in zip(subscription.copies, subscription.due) {
                subscriptions[index].counters.routed += 1
                if let maxDeliveries = configuration.deadLetter.maxDeliveries, pending.attempts >= maxDeliveries {
                    // Its last allowed delivery was under way when the process stopped (a message
                    // that crashes its consumer every time ends here instead of looping).
                    var pending = pending
                    pending.lastError = pending.lastError ?? "the process stopped during its last allowed delivery"
                    deadLetter(pending, from: index, reason: "maxDeliveries", now: now, effects: &effects)
                } else if let due, due > now {
                    schedule(pending, in: index, at: due, effects: &effects)
                } else if pending.attempts > 0 {
                    subscriptions[index].retries.append(pending)
                } else {
                    subscriptions[index].ready.append(pending.stored)
                }
            }
            // What the store keeps beyond the messages loaded: read back in pages.
            subscriptions[index].paging.restore(subscription.stored)
            subscriptions[index].counters.routed += subscriptions[index].paging.stored
        }
        return effects
    }
}
