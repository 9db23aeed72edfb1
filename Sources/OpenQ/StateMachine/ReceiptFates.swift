// Which receipts expired, were purged or returned, kept as runs of tags.

/// What became of a subscription's receipts that were taken back from their consumer, so that
/// settling one later answers ``OpenQError/Code/receiptExpired`` (with the reason) rather than
/// ``OpenQError/Code/receiptAlreadySettled``.
///
/// Receipt tags are consecutive per subscription and are taken back in runs (a take's
/// deliveries share one deadline and expire together; a purge or a consumer's end returns all it
/// held), so the fates are kept as sorted, disjoint runs of tags with one fate each: expiring or
/// purging any number of consecutive receipts costs one entry. At most ``capacity`` runs are kept;
/// beyond that the oldest run is forgotten, and a receipt of it is answered as already settled.
struct ReceiptFates {
    enum Fate: Hashable {
        /// The visibility timeout passed; the message was made visible again.
        case expired
        /// The message was purged.
        case purged
        /// The consumer holding it ended; the message was made visible again.
        case returned
    }

    struct Run: Hashable {
        var tags: Range<UInt64>
        var fate: Fate
    }

    /// How many runs are remembered per subscription (16 bytes and a fate each).
    static let capacity = 4_096

    /// Sorted by tag, disjoint.
    private(set) var runs: [Run] = []

    /// The fate of `tag`, if it was taken back and is still remembered.
    func fate(of tag: UInt64) -> Fate? {
        let index = firstRun(after: tag)
        guard index > 0, runs[index - 1].tags.contains(tag) else { return nil }
        return runs[index - 1].fate
    }

    /// Remembers that `tag` was taken back with `fate`.
    mutating func record(_ fate: Fate, tag: UInt64) {
        let index = firstRun(after: tag)
        let joinsPrevious = index > 0 && runs[index - 1].tags.upperBound == tag && runs[index - 1].fate == fate
        let joinsNext = index < runs.count && runs[index].tags.lowerBound == tag &+ 1 && runs[index].fate == fate
        switch (joinsPrevious, joinsNext) {
        case (true, true):
            runs[index - 1].tags = runs[index - 1].tags.lowerBound..<runs[index].tags.upperBound
            runs.remove(at: index)
        case (true, false):
            runs[index - 1].tags = runs[index - 1].tags.lowerBound..<tag &+ 1
        case (false, true):
            runs[index].tags = tag..<runs[index].tags.upperBound
        case (false, false):
            if index > 0, runs[index - 1].tags.contains(tag) { return }  // a tag is taken back once
            runs.insert(Run(tags: tag..<tag &+ 1, fate: fate), at: index)
            if runs.count > Self.capacity { runs.removeFirst() }
        }
    }

    /// The index of the first run whose tags start after `tag`.
    private func firstRun(after tag: UInt64) -> Int {
        var low = 0
        var high = runs.count
        while low < high {
            let middle = (low + high) / 2
            if runs[middle].tags.lowerBound <= tag { low = middle + 1 } else { high = middle }
        }
        return low
    }
}
