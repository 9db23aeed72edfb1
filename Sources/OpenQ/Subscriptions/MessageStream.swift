// MessageStream and DeliverySequence: a subscription's messages or deliveries as async sequences.

/// The messages of an anonymous, automatically acknowledged subscription, from
/// ``Topic/subscribe(startingAt:backlog:prefetch:)``.
///
/// An iteration ends when its task is cancelled, it stops early (`break`), the broker shuts down
/// or the topic is deleted. A cancelled task gets at most 7 more messages of a batch it already
/// took (cancellation is checked every 8 messages, not on each one, to keep the hot path cheap).
/// The anonymous subscription ends with the iteration: messages it took in a batch but had not
/// returned from `next()`, and what still waited for it, are counted as purged. So a stream kept
/// after its iteration ended never holds back publishers.
///
/// Iterating the stream again works: the new iteration subscribes afresh, at the latest message
/// (messages published between two iterations are not delivered, as fits at-most-once delivery).
/// Two iterations at once share one subscription and compete for its messages; iterate it from
/// one task at a time.
///
/// ```swift
/// let updates = try await orders.subscribe()
/// for await message in updates { if message.payload.id == 10 { break } }
/// // later: a new iteration, from the messages published from now on
/// for await message in updates { print(message.payload.id) }
/// ```
///
/// For readers that keep up with batch publishers, ``batches`` reads the same messages a batch
/// at a time, without an `await` per message.
public struct MessageStream<Payload: Sendable>: AsyncSequence, Sendable {
    /// The element type.
    public typealias Element = Message<Payload>
    /// Iteration never throws.
    public typealias Failure = Never

    @usableFromInline let source: StreamSource
    @usableFromInline let prefetch: Int

    /// The generated name of the underlying subscription, as it appears in statistics (the latest
    /// one, when the stream was iterated more than once).
    public var subscriptionName: String { source.current.name ?? "" }

    init(source: StreamSource, prefetch: Int) {
        self.source = source
        self.prefetch = prefetch
    }

    /// Starts an iteration (one consumer).
    @inlinable
    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(cursor: ConsumerCursor(handle: source.handleForIteration(), prefetch: prefetch))
    }

    /// Iterates the stream from one task.
    public struct AsyncIterator: AsyncIteratorProtocol {
        @usableFromInline let cursor: ConsumerCursor

        @inlinable
        init(cursor: ConsumerCursor) { self.cursor = cursor }

        /// The next element, or `nil` once the iteration ended.
        @inlinable
        public mutating func next() async -> Message<Payload>? {
            await next(isolation: nil)
        }

        /// The next element, or `nil` once the iteration ended, on the caller's actor.
        @inlinable
        public mutating func next(isolation actor: isolated (any Actor)?) async -> Message<Payload>? {
            // A buffered message is handed out by a plain call; only a refill is `async`.
            if let handed = cursor.nextBuffered() { return Message(handed.stored) }
            guard let handed = await cursor.next(isolation: actor) else { return nil }
            return Message(handed.stored)
        }
    }
}

@available(*, unavailable)
extension MessageStream.AsyncIterator: Sendable {}

/// The deliveries of a named subscription, from ``Subscription/deliveries(prefetch:)``.
///
/// Each iterator is one consumer; consumers of the same subscription compete for its messages.
/// The sequence ends when its task is cancelled (within at most 7 more deliveries of a batch it
/// already took), the subscription is removed or the broker shuts down; deliveries the consumer
/// still holds unacknowledged then become visible again at once.
public struct DeliverySequence<Payload: Sendable>: AsyncSequence, Sendable {
    /// The element type.
    public typealias Element = Delivery<Payload>
    /// Iteration never throws.
    public typealias Failure = Never

    let handle: SubscriptionHandle
    let name: String
    let prefetch: Int

    /// Starts an iteration (one consumer).
    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(cursor: ConsumerCursor(handle: handle, prefetch: prefetch), name: name)
    }

    /// One consumer; iterate it from one task.
    public struct AsyncIterator: AsyncIteratorProtocol {
        let cursor: ConsumerCursor
        let name: String

        /// The next element, or `nil` once the iteration ended.
        public mutating func next() async -> Delivery<Payload>? {
            await next(isolation: nil)
        }

        /// The next element, or `nil` once the iteration ended, on the caller's actor.
        public mutating func next(isolation actor: isolated (any Actor)?) async -> Delivery<Payload>? {
            if let handed = cursor.nextBuffered() { return Delivery(handed, handle: cursor.handle, subscription: name) }
            guard let handed = await cursor.next(isolation: actor) else { return nil }
            return Delivery(handed, handle: cursor.handle, subscription: name)
        }
    }
}

@available(*, unavailable)
extension DeliverySequence.AsyncIterator: Sendable {}
