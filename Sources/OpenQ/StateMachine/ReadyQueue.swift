// A subscription's buffer: FIFO runs of messages per priority level.

import DequeModule

/// The waiting messages of one subscription: FIFO within a priority level, higher levels first.
///
/// Messages wait in runs (``MessageRun``): a batch publish is one entry, whatever its size, and a
/// single publish one entry of one message. Almost every topic uses one level, so the levels live
/// in a small array sorted by descending priority and the common case touches only its first
/// element. `count` counts messages, not runs.
///
/// A level that runs empty is removed (except the last one left, whose storage the next publish
/// reuses), so a topic that used many priorities over time does not pay for them on every publish.
struct ReadyQueue {
    private var levels: [(priority: Int, runs: Deque<MessageRun>)] = []
    private(set) var count = 0

    mutating func append(_ message: PublishedMessage) {
        append(MessageRun(message))
    }

    /// Queues a run at its record's priority.
    mutating func append(_ run: MessageRun) {
        guard run.count > 0 else { return }
        let priority = run.record.priority
        count += run.count
        if !levels.isEmpty, levels[0].priority == priority {
            levels[0].runs.append(run)
            return
        }
        // Levels are sorted by descending priority: find the first one not above `priority`.
        var low = 0
        var high = levels.count
        while low < high {
            let middle = (low + high) / 2
            if levels[middle].priority > priority { low = middle + 1 } else { high = middle }
        }
        let index = low
        if index < levels.count, levels[index].priority == priority {
            levels[index].runs.append(run)
        } else {
            levels.insert((priority, [run]), at: index)
        }
    }

    /// Removes the next message to deliver: the oldest of the highest priority.
    mutating func popFirst() -> PublishedMessage? {
        guard count > 0, let level = levels.firstIndex(where: { !$0.runs.isEmpty }) else { return nil }
        return popFront(of: level)
    }

    /// Removes the message an overflow policy gives up first: the oldest of the lowest priority.
    mutating func popLeastUrgent() -> PublishedMessage? {
        guard count > 0, let level = levels.lastIndex(where: { !$0.runs.isEmpty }) else { return nil }
        return popFront(of: level)
    }

    private mutating func popFront(of level: Int) -> PublishedMessage {
        count -= 1
        let start = levels[level].runs.startIndex
        guard levels[level].runs[start].count == 1 else { return levels[level].runs[start].popFirst() }
        let message = levels[level].runs.removeFirst().first
        if levels[level].runs.isEmpty { removeLevelIfEmpty(level) }
        return message
    }

    /// Removes an empty level unless it is the only one.
    private mutating func removeLevelIfEmpty(_ level: Int) {
        guard levels.count > 1, levels[level].runs.isEmpty else { return }
        levels.remove(at: level)
    }

    /// Removes the empty levels; when all are empty, `level` stays (its storage is reused).
    private mutating func removeEmptyLevels(keeping level: Int = 0) {
        guard levels.count > 1 else { return }
        let kept = levels[level]
        levels.removeAll { $0.runs.isEmpty }
        if levels.isEmpty { levels.append(kept) }
    }

    /// Removes the newest message of the lowest priority level, if that level is below
    /// `priority`: what a paging subscription moves back to its store to make room for a more
    /// urgent message.
    mutating func popNewest(below priority: Int) -> PublishedMessage? {
        guard count > 0, let level = levels.lastIndex(where: { !$0.runs.isEmpty }), levels[level].priority < priority
        else { return nil }
        count -= 1
        let last = levels[level].runs.index(before: levels[level].runs.endIndex)
        guard levels[level].runs[last].count == 1 else { return levels[level].runs[last].popLast() }
        let message = levels[level].runs.removeLast().first
        if levels[level].runs.isEmpty { removeLevelIfEmpty(level) }
        return message
    }

    /// The number of priority levels held, empty ones included (for tests).
    var levelCount: Int { levels.count }

    /// Removes up to `max` messages in delivery order, as runs. When they are all of one level's
    /// messages, that level's storage is moved out whole instead of run by run (the common case:
    /// one priority level, a consumer that keeps up).
    /// - Returns: the runs and the number of messages in them.
    mutating func take(upTo max: Int) -> (runs: Deque<MessageRun>, count: Int) {
        guard count > 0, max > 0 else { return ([], 0) }
        if count <= max, let level = levels.firstIndex(where: { !$0.runs.isEmpty }),
            levels[(level + 1)...].allSatisfy({ $0.runs.isEmpty })
        {
            var replacement = Deque<MessageRun>()
            replacement.reserveCapacity(Swift.min(levels[level].runs.count, 1_024))
            let taken = count
            count = 0
            swap(&levels[level].runs, &replacement)
            removeEmptyLevels(keeping: level)
            return (replacement, taken)
        }
        var taken = Deque<MessageRun>()
        // At most one run per message; runs of single publishes are the common case here.
        taken.reserveCapacity(Swift.min(max, count))
        var remaining = Swift.min(max, count)
        let total = remaining
        for level in levels.indices where remaining > 0 {
            while remaining > 0, let front = levels[level].runs.first {
                if front.count <= remaining {
                    taken.append(levels[level].runs.removeFirst())
                    remaining -= front.count
                } else {
                    let start = levels[level].runs.startIndex
                    taken.append(levels[level].runs[start].prefix(remaining))
                    remaining = 0
                }
            }
        }
        count -= total
        removeEmptyLevels()
        return (taken, total)
    }

    /// The oldest message of each level (the candidates for "oldest waiting message").
    var heads: some Sequence<PublishedMessage> { levels.lazy.compactMap { $0.runs.first?.first } }

    mutating func removeAll() -> Int {
        let removed = count
        levels.removeAll()
        count = 0
        return removed
    }

    /// The sequence numbers of every waiting message (for a durable topic's journal).
    func sequenceNumbers() -> [UInt64] {
        levels.flatMap { $0.runs.flatMap { $0.messages.map(\.sequenceNumber) } }
    }
}
