// The decisions of a durable topic's state machine, as its journal records them (package access).

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// One decision of a durable topic's state machine, as its journal records it.
package enum JournalEntry: Sendable {
    /// A message entered the topic (stamped); its copies follow as ``copies(subscription:first:count:visibleAt:)``.
    case message(StoredMessageRow)
    /// `count` consecutive messages from `first` entered a subscription's backlog, visible at
    /// `visibleAt` (`nil`: at once), with no attempt yet.
    case copies(subscription: String, first: UInt64, count: Int, visibleAt: Date?)
    /// A message was handed to a consumer of a subscription that tracks deliveries: its attempt
    /// count is now `attempts` (committed before the consumer sees it), first handed out at
    /// `firstDeliveredAt`.
    case delivered(subscription: String, sequence: UInt64, attempts: Int, firstDeliveredAt: Date?)
    /// A copy is gone: acknowledged, handed out at most once, dropped, purged or redriven.
    case removed(subscription: String, sequences: [UInt64])
    /// A copy was dead-lettered; removed only while it still has `attempts` (a redrive may have
    /// put the same message back meanwhile, with none).
    case deadLettered(subscription: String, sequence: UInt64, attempts: Int)
    /// A copy is waiting again (nacked, expired, returned): with `attempts`, visible at `visibleAt`.
    case retry(subscription: String, sequence: UInt64, attempts: Int, visibleAt: Date?, lastError: String?)
    /// A named subscription was created.
    case subscriptionCreated(name: String, configuration: SubscriptionConfiguration)
    /// A named subscription was removed with everything it held.
    case subscriptionRemoved(name: String)
    /// Every copy a subscription holds was purged.
    case purged(subscription: String)
    /// The copies of a subscription that were never delivered were purged (a seek): those in
    /// memory are ``removed(subscription:sequences:)`` too; this reaches those waiting in the
    /// store only.
    case purgedStored(subscription: String)
    /// Sequence numbers up to `next - 1` are used (messages no named subscription keeps).
    case sequenceUsed(next: UInt64)
    /// A durable topic with retention published: keep the latest `keepLast` messages (`nil`: no
    /// bound by count) published since `publishedSince` (`nil`: no bound by age); older messages
    /// that no subscription holds go, in one range.
    case retained(keepLast: Int?, publishedSince: Date?)
    /// Retained messages from `fromSequence`, published since `publishedSince`, up to `before`,
    /// are copied into a subscription (a replay: its creation at a position in the past, or a seek).
    case replayed(subscription: String, fromSequence: UInt64, publishedSince: Date?, before: UInt64)
    /// The topic's configuration changed while it ran (its dead-letter policy).
    case topicConfigured(TopicConfiguration)
}
