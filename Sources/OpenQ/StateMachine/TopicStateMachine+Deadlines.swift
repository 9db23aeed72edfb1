// State machine events of time: visibility timeouts, delays, retries, long-poll deadlines, the timer.

import DequeModule
import HeapModule

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Deadlines: the heap of visibility timeouts, delayed messages, poll timeouts and parked
/// publisher warnings, served by one timer per topic.
extension TopicStateMachine {
    // MARK: Deadlines

    mutating func pushDeadline(at time: Duration, _ kind: Deadline.Kind, effects: inout Effects) {
        deadlineOrder += 1
        deadlines.insert(Deadline(at: time, order: deadlineOrder, kind: kind))
        pushesSinceCompaction += 1
        if pushesSinceCompaction >= 1024 { compactDeadlines() }
        arm(at: time, effects: &effects)
    }

    /// Arms the timer for `time` unless it is armed for an earlier time already.
    mutating func arm(at time: Duration, effects: inout Effects) {
        // A finished topic (shut down or deleted) processes no more deadlines: arming a timer
        // would keep its runtime alive until the deadline.
        guard !isFinished else { return }
        guard armedDeadline.map({ time < $0 }) ?? true else { return }
        armedDeadline = time
        timerGeneration += 1
        effects.armTimer = TimerRequest(deadline: time, generation: timerGeneration)
    }

    /// Drops stale heap entries (acknowledged deliveries, extended deadlines) once they outnumber
    /// the live ones, so that the heap stays proportional to what is in flight.
    mutating func compactDeadlines() {
        pushesSinceCompaction = 0
        let live = subscriptions.reduce(0) { $0 + $1.inFlight.count + $1.scheduled.count + $1.waiters.count }
        guard deadlines.count > 2 * live + 1024 else { return }
        deadlines = Heap(deadlines.unordered.filter { isLive($0) })
    }

    func isLive(_ deadline: Deadline) -> Bool {
        switch deadline.kind {
        case .visibility(let id, let tags):
            guard let subscription = subscription(id) else { return false }
            return tags.contains { subscription.inFlight[$0]?.deadline == deadline.at }
        case .scheduled(let id, let key):
            return subscription(id)?.scheduled[key] != nil
        case .poll(let id, let waiter):
            return subscription(id)?.waiters.contains { $0.id == waiter } ?? false
        case .parkedPublisher(let id):
            return blockedPublishers.contains { $0.id == id }
        }
    }

    /// The timer fired: process what is due and ask for the next wake-up.
    mutating func timerFired(generation: UInt64, now: Duration) -> Effects {
        var effects = Effects()
        if generation == timerGeneration { armedDeadline = nil }
        processDue(now: now, effects: &effects)
        // Processing may have armed the timer for a later deadline (a redelivery's visibility
        // timeout); the earliest deadline left must still get its wake-up.
        if let next = deadlines.min?.at { arm(at: next, effects: &effects) }
        return effects
    }

    /// Handles every deadline at or before `now`: visibility timeouts, delayed messages and
    /// long-poll timeouts.
    mutating func processDue(now: Duration, effects: inout Effects) {
        while let first = deadlines.min, first.at <= now {
            deadlines.removeMin()
            switch first.kind {
            case .visibility(let id, let tags):
                guard let index = index(of: id) else { continue }
                for tag in tags where subscriptions[index].inFlight[tag]?.deadline == first.at {
                    expire(tag, in: index, now: now, effects: &effects)
                }
            case .scheduled(let id, let key):
                guard let index = index(of: id),
                    let scheduled = subscriptions[index].scheduled.removeValue(forKey: key)
                else { continue }
                if scheduled.pending.attempts > 0 {
                    subscriptions[index].retries.append(scheduled.pending)
                } else {
                    subscriptions[index].ready.append(scheduled.pending.stored)
                }
                serveWaiters(index, now: now, effects: &effects)
            case .poll(let id, let waiter):
                guard let index = index(of: id),
                    let position = subscriptions[index].waiters.firstIndex(where: { $0.id == waiter })
                else { continue }
                let removed = subscriptions[index].waiters.remove(at: position)
                effects.resume(removed.continuation, with: .timedOut)
            case .parkedPublisher(let id):
                warnAboutParkedPublisher(id, now: now, effects: &effects)
            }
        }
    }
}
