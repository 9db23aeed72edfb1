// MessageBatches: a subscriber's messages a batch per wake-up, the fastest way through a topic.

import DequeModule

/// The messages a stream's consumer took in one hop, in delivery order: up to the stream's
/// `prefetch`, never empty. From ``MessageStream/batches``.
///
/// A batch is a random-access collection of ``Message`` values. Its messages are done when the
/// batch is handed over (automatic acknowledgement: at most once), so a batch dropped before it is
/// read is not delivered again.
///
/// ```swift
/// for await batch in try events.subscribe().batches {
///     for message in batch { total += message.payload.amount }
///     print("read up to", batch.last!.sequenceNumber)
/// }
/// ```
///
/// Reading a batch costs no lock, no `await` and no allocation per message: it is the fastest way
/// through a topic, for consumers that keep up with batch publishers.
public struct MessageBatch<Payload: Sendable>: RandomAccessCollection, Sendable {
    /// The element type.
    public typealias Element = Message<Payload>
    /// Positions in the batch.
    public typealias Index = Int

    /// The batch's messages as runs of the records they were published in.
    @usableFromInline let runs: Deque<MessageRun>
    /// Where each run starts in the batch, for subscripts; empty when the batch is one run.
    @usableFromInline let runStarts: [Int]
    /// The number of messages.
    public let count: Int

    @usableFromInline
    init(_ batch: DeliveryBatch) {
        var runs = batch.fresh
        if !batch.handed.isEmpty {
            // Messages an ended consumer handed back, taken again: each is a run of one.
            runs.insert(contentsOf: batch.handed.map { MessageRun($0.stored) }, at: 0)
        }
        var starts: [Int] = []
        var count = 0
        if runs.count > 1 {
            starts.reserveCapacity(runs.count)
            for run in runs {
                starts.append(count)
                count += run.count
            }
        } else {
            count = runs.first?.count ?? 0
        }
        self.runs = runs
        self.runStarts = starts
        self.count = count
    }

    /// The position of the first message.
    @inlinable public var startIndex: Int { 0 }
    /// The position after the last message.
    @inlinable public var endIndex: Int { count }

    /// The message at `position`.
    @inlinable
    public subscript(position: Int) -> Message<Payload> {
        precondition(position >= 0 && position < count, "MessageBatch index \(position) out of range 0..<\(count)")
        guard !runStarts.isEmpty else {
            let run = runs[runs.startIndex]
            return Message(run.record, index: Int(run.start) + position)
        }
        // The last run that starts at or before `position`.
        var low = 0
        var high = runStarts.count - 1
        while low < high {
            let middle = (low + high + 1) / 2
            if runStarts[middle] <= position { low = middle } else { high = middle - 1 }
        }
        let run = runs[runs.index(runs.startIndex, offsetBy: low)]
        return Message(run.record, index: Int(run.start) + position - runStarts[low])
    }

    /// Iterates the batch's messages in order.
    @inlinable
    public func makeIterator() -> Iterator { Iterator(runs: runs.makeIterator()) }

    /// Walks the batch run by run.
    public struct Iterator: IteratorProtocol {
        @usableFromInline var runs: Deque<MessageRun>.Iterator
        @usableFromInline var record: MessageRecord?
        @usableFromInline var position = 0
        @usableFromInline var end = 0

        @inlinable
        init(runs: Deque<MessageRun>.Iterator) { self.runs = runs }

        /// The next element, or `nil` once the iteration ended.
        @inlinable
        public mutating func next() -> Message<Payload>? {
            while position == end {
                guard let run = runs.next() else { return nil }
                record = run.record
                position = Int(run.start)
                end = Int(run.end)
            }
            defer { position += 1 }
            return Message(record.unsafelyUnwrapped, index: position)
        }
    }
}

/// The messages of a ``MessageStream`` a batch at a time: each element is what its consumer took
/// in one hop (up to the stream's `prefetch`), from ``MessageStream/batches``.
///
/// Iterating it makes one consumer of the stream's subscription, as iterating the stream does; the
/// sequence ends as the stream's does. Cancellation is checked before each batch is taken.
public struct MessageBatches<Payload: Sendable>: AsyncSequence, Sendable {
    /// The element type.
    public typealias Element = MessageBatch<Payload>
    /// Iteration never throws.
    public typealias Failure = Never

    @usableFromInline let stream: MessageStream<Payload>

    @inlinable
    init(stream: MessageStream<Payload>) { self.stream = stream }

    /// Starts an iteration (one consumer).
    @inlinable
    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(cursor: ConsumerCursor(handle: stream.source.handleForIteration(), prefetch: stream.prefetch))
    }

    /// Iterates the batches from one task.
    public struct AsyncIterator: AsyncIteratorProtocol {
        @usableFromInline let cursor: ConsumerCursor

        @inlinable
        init(cursor: ConsumerCursor) { self.cursor = cursor }

        /// The next element, or `nil` once the iteration ended.
        @inlinable
        public mutating func next() async -> MessageBatch<Payload>? {
            await next(isolation: nil)
        }

        /// The next element, or `nil` once the iteration ended, on the caller's actor.
        @inlinable
        public mutating func next(isolation actor: isolated (any Actor)?) async -> MessageBatch<Payload>? {
            guard let batch = await cursor.nextBatch(isolation: actor) else { return nil }
            return MessageBatch(batch)
        }
    }
}

@available(*, unavailable)
extension MessageBatches.AsyncIterator: Sendable {}

extension MessageStream {
    /// The same messages a batch at a time, for consumers that read fast: each ``MessageBatch`` is
    /// everything one hop took, so reading it costs no `await` per message.
    ///
    /// ```swift
    /// for await batch in try topic.subscribe(prefetch: 1_024).batches {
    ///     for message in batch { handle(message.payload) }
    /// }
    /// ```
    @inlinable
    public var batches: MessageBatches<Payload> { MessageBatches(stream: self) }
}
