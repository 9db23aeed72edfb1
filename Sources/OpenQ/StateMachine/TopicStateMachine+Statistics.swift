// The state machine's statistics snapshot.

import DequeModule
import HeapModule

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Statistics: a snapshot of the topic and its subscriptions.
extension TopicStateMachine {
    // MARK: Statistics

    func statistics(now: Duration) -> TopicStatistics {
        let nowDate = date(at: now)
        let subscriptionStatistics = subscriptions.map { subscription in
            let oldest = [
                subscription.retries.lazy.map(\.stored.publishedAt).min(),
                subscription.ready.heads.map(\.publishedAt).min(),
            ]
            .compactMap { $0 }.min()
            return SubscriptionStatistics(
                name: subscription.name,
                isAnonymous: subscription.isAnonymous,
                acknowledgement: subscription.configuration.acknowledgement,
                counters: subscription.counters,
                depth: subscription.visibleCount + subscription.paging.stored,
                scheduled: subscription.scheduled.count,
                inFlight: subscription.inFlight.count,
                consumers: subscription.consumers.count,
                oldestMessageAge: oldest.map { .seconds(nowDate.timeIntervalSince($0)) },
                pagedOut: subscription.paging.stored
            )
        }
        var totals = removedCounters
        for subscription in subscriptions { totals.add(subscription.counters) }
        return TopicStatistics(
            name: topic,
            published: counters.published,
            rejected: counters.rejected,
            unrouted: counters.unrouted,
            retained: journal != nil && configuration.retention.isEnabled
                ? Int(nextSequence - Swift.min(retainedSince, nextSequence)) : retained.count,
            suspendedPublishers: blockedPublishers.count,
            totals: totals,
            subscriptions: subscriptionStatistics,
            quarantined: counters.quarantined
        )
    }
}
