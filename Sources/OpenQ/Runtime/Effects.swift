// What an event decides and the runtime does after unlocking: resumptions, dead letters, timer, logs.

import DequeModule
import HeapModule

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

// The values the state machine hands back to ``TopicRuntime``: what an event decided
// (`PublishDecision`, `ReceiveDecision`, `WakeResult`) and what to do once the lock is released
// (`Effects`). Never resume a continuation, log or call user code while holding the topic's lock:
// the state machine only collects them here, and the runtime performs them after unlocking.

/// What a publish asks for: the messages of one publish call, not yet stamped, and when they
/// become visible.
@usableFromInline
struct PublishRequest: Sendable {
    @usableFromInline var record: MessageRecord
    @usableFromInline var delay: Duration

    @inlinable
    init(_ record: MessageRecord, delay: Duration = .zero) {
        self.record = record
        self.delay = delay
    }
}

enum PublishDecision {
    case accepted(PublishReceipt)
    /// Wait for room with this publisher id (second phase: `publishSuspended`).
    case mustWait(UInt64)
    case failed(OpenQError)
}

enum ReceiveDecision {
    case messages(DeliveryBatch)
    /// Nothing visible: wait with this waiter id (second phase: `receiveSuspended`).
    case mustWait(UInt64)
    /// Nothing visible and the caller did not want to wait.
    case empty
    /// The subscription was removed or the topic finished.
    case finished(OpenQError)
}

/// A message handed to a consumer, with the receipt tag that settles it.
@usableFromInline
///
/// 32 bytes, and kept so: consumers take handed messages by the batch, and fan-out moves millions
/// a second (a `Date?` field, 48 bytes in all, cost 1→16 fan-out 10-15 %; 40 bytes did too). The
/// attempt count sits in the tail of ``PublishedMessage`` (12 bytes), and the first delivery time is
/// stored as the `Date`'s own interval (exact), NaN for none.
struct HandedMessage: Sendable {
    @usableFromInline var stored: PublishedMessage
    @usableFromInline var storedAttempt: UInt32
    @usableFromInline var tag: UInt64
    @usableFromInline var firstDeliveredInterval: Double

    init(stored: PublishedMessage, tag: UInt64, attempt: Int, firstDeliveredAt: Date? = nil) {
        self.stored = stored
        self.storedAttempt = UInt32(clamping: attempt)
        self.tag = tag
        self.firstDeliveredInterval = firstDeliveredAt?.timeIntervalSinceReferenceDate ?? .nan
    }

    /// The delivery attempt, from 1 (saturates at `UInt32.max`).
    @inlinable var attempt: Int { Int(storedAttempt) }

    /// When the subscription first handed the message out; `nil` for an automatic subscription,
    /// where every delivery is the only one.
    @inlinable var firstDeliveredAt: Date? {
        firstDeliveredInterval.isNaN ? nil : Date(timeIntervalSinceReferenceDate: firstDeliveredInterval)
    }
}

extension HandedMessage {
    /// The first delivery of a message to an automatically acknowledged subscription: attempt 1,
    /// and no receipt to settle.
    init(firstAutomaticDeliveryOf stored: PublishedMessage) {
        self.init(stored: stored, tag: 0, attempt: 1)
    }
}

/// What a consumer takes in one go.
///
/// An automatically acknowledged subscription's first deliveries are moved out of its queue whole
/// (`fresh`: runs of messages, each delivery attempt 1 with no receipt), so taking them holds the
/// lock for a moment whatever their number; tracked deliveries and repeated ones carry their
/// receipt (`handed`).
@usableFromInline
struct DeliveryBatch: Sendable {
    var handed: [HandedMessage] = []
    var fresh: Deque<MessageRun> = []

    /// How many messages the batch holds.
    var count: Int { fresh.reduce(handed.count) { $0 + $1.count } }

    /// Every message of the batch with its receipt, `handed` first.
    var all: [HandedMessage] {
        handed + fresh.lazy.flatMap(\.messages).map(HandedMessage.init(firstAutomaticDeliveryOf:))
    }
}

/// How a waiting consumer is resumed.
enum WakeResult: Sendable {
    case messages(DeliveryBatch)
    case timedOut
    case finished
    case cancelled
}

struct TimerRequest: Hashable {
    var deadline: Duration
    var generation: UInt64
}

/// What the runtime must do after releasing the lock.
struct Effects {
    /// The first consumer resumption is stored inline: a publish wakes at most one waiter in the
    /// common case, and this keeps that path free of an array allocation.
    private var firstResumption: (UnsafeContinuation<WakeResult, Never>, WakeResult)?
    private var moreResumptions: [(UnsafeContinuation<WakeResult, Never>, WakeResult)] = []
    var publishers: [(UnsafeContinuation<PublishReceipt, any Error>, Result<PublishReceipt, any Error>)] = []
    var deadLetters: [PublishedMessage] = []
    var armTimer: TimerRequest?
    /// Shutdown waiters to resume (a draining topic that finished).
    var idleWaiters: [UnsafeContinuation<Void, Never>] = []
    /// `waitUntilDrained()` callers to resume, with their outcome (the subscription drained, or
    /// ended).
    var drainWaiters: [(UnsafeContinuation<Result<Void, OpenQError>, Never>, Result<Void, OpenQError>)] = []
    /// Pages a durable topic's paging subscriptions asked for: read from the store after
    /// unlocking (see `TopicRuntime+Paging`).
    var pageIns: [PageInRequest] = []
    /// Warnings to log.
    var warnings: [ParkedPublisherWarning] = []

    var isEmpty: Bool {
        firstResumption == nil && publishers.isEmpty && deadLetters.isEmpty && armTimer == nil && idleWaiters.isEmpty
            && drainWaiters.isEmpty && pageIns.isEmpty && warnings.isEmpty
    }

    mutating func resume(
        _ continuation: UnsafeContinuation<WakeResult, Never>, with result: WakeResult
    ) {
        if firstResumption == nil {
            firstResumption = (continuation, result)
        } else {
            moreResumptions.append((continuation, result))
        }
    }

    mutating func resumePublisher(
        _ continuation: UnsafeContinuation<PublishReceipt, any Error>,
        with result: Result<PublishReceipt, any Error>
    ) {
        publishers.append((continuation, result))
    }

    /// Resumes the consumers and publishers. Call only after the lock is released.
    func resumeConsumersAndPublishers() {
        if let first = firstResumption {
            first.0.resume(returning: first.1)
            for resumption in moreResumptions { resumption.0.resume(returning: resumption.1) }
        }
        for (continuation, result) in publishers { continuation.resume(with: result) }
    }

    /// Resumes who waits for the topic to be idle or a subscription to drain: last, once dead
    /// letters are forwarded, so a shutdown that goes on never finishes a dead-letter topic
    /// before this topic's dead letters reached it.
    func resumeIdleAndDrainWaiters() {
        for waiter in idleWaiters { waiter.resume() }
        for (continuation, outcome) in drainWaiters { continuation.resume(returning: outcome) }
    }
}

/// What a topic logs when a publisher has waited `waited` for room in a full subscription.
struct ParkedPublisherWarning: Hashable, Sendable {
    var topic: String
    var subscription: String
    var depth: Int
    var capacity: Int
    var consumers: Int
    var parkedPublishers: Int
    var waited: Duration
}

extension MessageHeader {
    static let deadLetterKeys = [
        sourceTopic, sourceSubscription, attempts, lastError, deadLetterReason, deadLetteredAt, sourceSequenceNumber,
        firstPublishedAt,
    ]
}
