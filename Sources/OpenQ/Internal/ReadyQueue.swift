import DequeModule

/// The waiting messages of one subscription: FIFO within a priority level, higher levels first.
///
/// Almost every topic uses one level, so the levels live in a small array sorted by descending
/// priority and the common case touches only its first element.
struct ReadyQueue<Element> {
    private var levels: [(priority: Int, items: Deque<Element>)] = []
    private(set) var count = 0

    mutating func append(_ element: Element, priority: Int) {
        count += 1
        if !levels.isEmpty, levels[0].priority == priority {
            levels[0].items.append(element)
            return
        }
        var index = 0
        while index < levels.count, levels[index].priority > priority { index += 1 }
        if index < levels.count, levels[index].priority == priority {
            levels[index].items.append(element)
        } else {
            levels.insert((priority, [element]), at: index)
        }
    }

    /// Removes the next message to deliver: the oldest of the highest priority.
    mutating func popFirst() -> Element? {
        guard count > 0 else { return nil }
        for index in levels.indices where !levels[index].items.isEmpty {
            count -= 1
            return levels[index].items.removeFirst()
        }
        return nil
    }

    /// Removes up to `max` elements in delivery order. When they are all of one level's elements,
    /// that level's storage is moved out whole instead of element by element (the common case: one
    /// priority level, a consumer that keeps up).
    mutating func take(upTo max: Int) -> Deque<Element> {
        guard count > 0, max > 0 else { return [] }
        if count <= max, let level = levels.firstIndex(where: { !$0.items.isEmpty }),
            levels[level].items.count == count
        {
            var replacement = Deque<Element>()
            replacement.reserveCapacity(Swift.min(count, 1_024))
            count = 0
            swap(&levels[level].items, &replacement)
            return replacement
        }
        var taken = Deque<Element>()
        taken.reserveCapacity(Swift.min(max, count))
        while taken.count < max, let element = popFirst() { taken.append(element) }
        return taken
    }

    /// Removes the message an overflow policy gives up first: the oldest of the lowest priority.
    mutating func popLeastUrgent() -> Element? {
        guard count > 0 else { return nil }
        for index in levels.indices.reversed() where !levels[index].items.isEmpty {
            count -= 1
            return levels[index].items.removeFirst()
        }
        return nil
    }

    /// The oldest element of each level (the candidates for "oldest waiting message").
    var heads: some Sequence<Element> { levels.lazy.compactMap { $0.items.first } }

    mutating func removeAll() -> Int {
        let removed = count
        levels.removeAll()
        count = 0
        return removed
    }
}
