// openq-compare: the throughput rows (in memory).

import AsyncAlgorithms
import NIOCore
import OpenQ
import Synchronization

/// One implementation of a scenario: runs `count` messages and returns the elapsed time and how
/// many deliveries it made (more than `count` for fan-out and redelivery).
typealias Run = @Sendable (_ count: Int) async throws -> (elapsed: Duration, deliveries: Int)

func benchQueue() -> MessageQueue {
    MessageQueue(configuration: .init(metricsInterval: nil))
}

let unboundedEnough = TopicConfiguration(capacity: 10_000, overflow: .suspend, deadLetter: .disabled)

/// Counts to `target` from any number of tasks and signals once when it gets there.
final class Countdown: Sendable {
    private let count = Atomic<Int>(0)
    private let target: Int
    let done: AsyncStream<Void>
    private let signal: AsyncStream<Void>.Continuation

    init(_ target: Int) {
        self.target = target
        (done, signal) = AsyncStream.makeStream(of: Void.self)
    }

    func add(_ amount: Int = 1) {
        if count.add(amount, ordering: .relaxed).newValue == target { signal.yield() }
    }

    func wait() async {
        for await _ in done { return }
    }
}

/// What a consumer read: how many payloads and the sum of their numbers. Every consumer here,
/// OpenQ's and the peers', reads each payload it is handed into one, so none skips work the
/// others do, and checks at the end that it got the numbers 0..<count, each once.
struct Tally {
    var received = 0
    var checksum = 0

    mutating func add(_ payload: Payload) {
        received += 1
        checksum &+= payload.number
    }

    func check(_ count: Int) {
        precondition(received == count && checksum == (count - 1) * count / 2, "lost or repeated messages")
    }
}

/// A consumer task that reads `count` messages of an OpenQ stream one by one.
func read(_ count: Int, from stream: MessageStream<Payload>) -> Task<Void, Never> {
    Task {
        var tally = Tally()
        for await message in stream {
            tally.add(message.payload)
            if tally.received == count { break }
        }
        tally.check(count)
    }
}

/// The same, reading the stream a batch at a time (``MessageStream/batches``), as the hand-rolled
/// consumer reads its queue.
func readBatches(_ count: Int, from stream: MessageStream<Payload>) -> Task<Void, Never> {
    Task {
        var tally = Tally()
        for await batch in stream.batches {
            for message in batch { tally.add(message.payload) }
            if tally.received >= count { break }
        }
        tally.check(count)
    }
}

/// An `AsyncStream` consumer that reads until the stream finishes.
func drain(_ stream: AsyncStream<Payload>, expecting count: Int) -> Task<Void, Never> {
    Task {
        var tally = Tally()
        for await payload in stream { tally.add(payload) }
        tally.check(count)
    }
}

/// The hand-rolled queue's consumer: it drains the queue a batch at a time and visits every element.
func drain(_ queue: HandRolledQueue<Payload>, expecting count: Int) -> Task<Void, Never> {
    Task {
        var tally = Tally()
        while let batch = await queue.nextBatch() {
            for payload in batch { tally.add(payload) }
        }
        tally.check(count)
    }
}

enum OneToOne {
    /// The peers of the per-message scenario, by the names the table shows.
    static let peers: [(String, Run)] = [
        ("AsyncStream", asyncStream), ("AsyncChannel", asyncChannel), ("MPSC channel", mpscChannel),
        ("NIOAsyncSequenceProducer", nioProducer), ("hand-rolled Mutex+Deque", handRolled),
    ]

    static let openQ: Run = { count in
        let topic = try await benchQueue().createTopic("bench", of: Payload.self, configuration: unboundedEnough)
        let consumer = read(count, from: try await topic.subscribe(prefetch: 256))
        let start = ContinuousClock.now
        for number in 0..<count { try await topic.publish(Payload(number)) }
        await consumer.value
        return (ContinuousClock.now - start, count)
    }

    /// Batches of 256 published, read one message at a time.
    static let openQBatched = batchPublished(readBy: read(_:from:))
    /// Batches of 256 published, read through `MessageStream.batches`.
    static let openQBatchedReadInBatches = batchPublished(readBy: readBatches(_:from:))

    static func batchPublished(
        readBy reader: @escaping @Sendable (Int, MessageStream<Payload>) -> Task<Void, Never>
    ) -> Run {
        { count in
            let topic = try await benchQueue().createTopic("bench", of: Payload.self, configuration: unboundedEnough)
            let consumer = reader(count, try await topic.subscribe(prefetch: 256))
            let start = ContinuousClock.now
            for first in stride(from: 0, to: count, by: 256) {
                try await topic.publish(contentsOf: (first..<min(first + 256, count)).map(Payload.init))
            }
            await consumer.value
            return (ContinuousClock.now - start, count)
        }
    }

    static let asyncStream: Run = { count in
        let (stream, continuation) = AsyncStream.makeStream(of: Payload.self)
        let consumer = drain(stream, expecting: count)
        let start = ContinuousClock.now
        for number in 0..<count { continuation.yield(Payload(number)) }
        continuation.finish()
        await consumer.value
        return (ContinuousClock.now - start, count)
    }

    static let asyncChannel: Run = { count in
        let channel = AsyncChannel<Payload>()
        let consumer = Task {
            var tally = Tally()
            for await payload in channel { tally.add(payload) }
            tally.check(count)
        }
        let start = ContinuousClock.now
        for number in 0..<count { await channel.send(Payload(number)) }
        channel.finish()
        await consumer.value
        return (ContinuousClock.now - start, count)
    }

    static let mpscChannel: Run = { count in
        var channelAndSource = MultiProducerSingleConsumerAsyncChannel.makeChannel(
            of: Payload.self, backpressureStrategy: .watermark(low: 256, high: 1024))
        let box = ChannelBox(channelAndSource.takeChannel())
        var source = consume channelAndSource.source
        let consumer = Task {
            var channel = box.take()
            var tally = Tally()
            while let payload = await channel.next() { tally.add(payload) }
            tally.check(count)
        }
        let start = ContinuousClock.now
        for number in 0..<count { try await source.send(Payload(number)) }
        source.finish()
        await consumer.value
        return (ContinuousClock.now - start, count)
    }

    static let nioProducer: Run = { count in
        let gate = ProducerGate()
        let made = NIOAsyncSequenceProducer.makeSequence(
            elementType: Payload.self,
            backPressureStrategy: NIOAsyncSequenceProducerBackPressureStrategies.HighLowWatermark(
                lowWatermark: 256, highWatermark: 1024),
            finishOnDeinit: false,
            delegate: gate
        )
        let sequence = made.sequence
        let source = made.source
        let consumer = Task {
            var tally = Tally()
            for await payload in sequence { tally.add(payload) }
            tally.check(count)
        }
        let start = ContinuousClock.now
        for number in 0..<count {
            if case .stopProducing = source.yield(Payload(number)) { await gate.waitForDemand() }
        }
        source.finish()
        await consumer.value
        return (ContinuousClock.now - start, count)
    }

    static let handRolled: Run = { count in
        let queue = HandRolledQueue<Payload>()
        let consumer = drain(queue, expecting: count)
        let start = ContinuousClock.now
        for number in 0..<count { queue.send(Payload(number)) }
        queue.finish()
        await consumer.value
        return (ContinuousClock.now - start, count)
    }

    static let handRolledBatched: Run = { count in
        let queue = HandRolledQueue<Payload>()
        let consumer = drain(queue, expecting: count)
        let start = ContinuousClock.now
        for first in stride(from: 0, to: count, by: 256) {
            queue.send(contentsOf: (first..<min(first + 256, count)).map(Payload.init))
        }
        queue.finish()
        await consumer.value
        return (ContinuousClock.now - start, count)
    }
}

enum SingleTask {
    /// Publish `count` messages, then read them back, in one task: the broker's own per-message
    /// work, without any task switch or wake-up.
    static let openQ: Run = { count in
        let topic = try await benchQueue().createTopic(
            "bench", of: Payload.self, configuration: .init(capacity: count, deadLetter: .disabled))
        let stream = try await topic.subscribe(prefetch: 256)
        var iterator = stream.makeAsyncIterator()
        let start = ContinuousClock.now
        for number in 0..<count { try await topic.publish(Payload(number)) }
        var tally = Tally()
        for _ in 0..<count { if let message = await iterator.next() { tally.add(message.payload) } }
        tally.check(count)
        return (ContinuousClock.now - start, count)
    }

    static let handRolled: Run = { count in
        let queue = HandRolledQueue<Payload>()
        let start = ContinuousClock.now
        for number in 0..<count { queue.send(Payload(number)) }
        queue.finish()
        var tally = Tally()
        while let batch = await queue.nextBatch() {
            for payload in batch { tally.add(payload) }
        }
        tally.check(count)
        return (ContinuousClock.now - start, count)
    }
}

enum FanOut {
    static let width = 16

    static let openQ: Run = { count in
        let topic = try await benchQueue().createTopic("bench", of: Payload.self, configuration: unboundedEnough)
        var streams: [MessageStream<Payload>] = []
        for _ in 0..<width { streams.append(try await topic.subscribe(prefetch: 256)) }
        let consumers = streams.map { read(count, from: $0) }
        let start = ContinuousClock.now
        for number in 0..<count { try await topic.publish(Payload(number)) }
        for consumer in consumers { await consumer.value }
        return (ContinuousClock.now - start, count * width)
    }

    static let asyncStreams: Run = { count in
        let pairs = (0..<width).map { _ in AsyncStream.makeStream(of: Payload.self) }
        let consumers = pairs.map { drain($0.stream, expecting: count) }
        let start = ContinuousClock.now
        for number in 0..<count {
            let payload = Payload(number)
            for pair in pairs { pair.continuation.yield(payload) }
        }
        for pair in pairs { pair.continuation.finish() }
        for consumer in consumers { await consumer.value }
        return (ContinuousClock.now - start, count * width)
    }
}

enum WorkQueue {
    /// 4 producers → 4 competing consumers on one subscription, manual acks.
    static let openQ: Run = { count in
        let topic = try await benchQueue().createTopic("bench", of: Payload.self, configuration: unboundedEnough)
        let subscription = try await topic.subscription("work", acknowledgement: .manual)
        let countdown = Countdown(count)
        let consumers = (0..<4).map { _ in
            Task {
                for await delivery in try subscription.deliveries(prefetch: 64) {
                    try? await delivery.ack()
                    countdown.add()
                }
            }
        }
        let start = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for producer in 0..<4 {
                group.addTask {
                    for number in stride(from: producer, to: count, by: 4) { try await topic.publish(Payload(number)) }
                }
            }
            try await group.waitForAll()
        }
        await countdown.wait()
        let elapsed = ContinuousClock.now - start
        for consumer in consumers { consumer.cancel() }
        return (elapsed, count)
    }
}

enum AtLeastOnce {
    /// publish → receive(max: batch) → ack, with the producer and the consumer in their own tasks.
    /// `batchAck` acknowledges each received batch with one `Subscription.ack(_:)` call instead of
    /// one `Delivery.ack()` per message.
    static func openQ(batch: Int, batchAck: Bool) -> Run {
        { count in
            let topic = try await benchQueue().createTopic("bench", of: Payload.self, configuration: unboundedEnough)
            let subscription = try await topic.subscription("work", acknowledgement: .manual)
            let start = ContinuousClock.now
            let producer = Task {
                for number in 0..<count { try await topic.publish(Payload(number)) }
            }
            var acked = 0
            while acked < count {
                let deliveries = try await subscription.receive(max: batch, waitingUpTo: .seconds(5))
                if batchAck {
                    let failures = await subscription.ack(deliveries)
                    precondition(failures.isEmpty, "batch ack failed: \(failures.map(\.error))")
                } else {
                    for delivery in deliveries { try await delivery.ack() }
                }
                acked += deliveries.count
            }
            try await producer.value
            return (ContinuousClock.now - start, count)
        }
    }
}

enum Redelivery {
    /// Each message is nacked once and redelivered at once, then acked: deliveries per second.
    static let nackAndRedeliver: Run = { count in
        let topic = try await benchQueue().createTopic(
            "bench", of: Payload.self,
            configuration: .init(capacity: count, deadLetter: .disabled, retryBackoff: .immediate))
        let subscription = try await topic.subscription("work", acknowledgement: .manual)
        try await topic.publish(contentsOf: (0..<count).map(Payload.init))
        let start = ContinuousClock.now
        var deliveries = 0
        var acked = 0
        while acked < count {
            for delivery in try await subscription.receive(max: 100) {
                deliveries += 1
                if delivery.attempt == 1 {
                    try await delivery.nack(retryAfter: .zero)
                } else {
                    try await delivery.ack()
                    acked += 1
                }
            }
        }
        return (ContinuousClock.now - start, deliveries)
    }

    /// Each message is rejected into the dead-letter topic: messages dead-lettered per second.
    static let deadLetter: Run = { count in
        let queue = benchQueue()
        let topic = try await queue.createTopic(
            "bench", of: Payload.self,
            configuration: .init(capacity: count, deadLetter: .after(deliveries: 1, capacity: count)))
        let subscription = try await topic.subscription("work", acknowledgement: .manual)
        try await topic.publish(contentsOf: (0..<count).map(Payload.init))
        let start = ContinuousClock.now
        var rejected = 0
        while rejected < count {
            for delivery in try await subscription.receive(max: 100) {
                try await delivery.reject(reason: "benchmark")
                rejected += 1
            }
        }
        return (ContinuousClock.now - start, count)
    }
}

enum Scale {
    static let topicCount = 10_000

    /// 10 000 topics with one subscriber each; one producer publishes round-robin across them.
    static let manyTopics: Run = { count in
        let queue = benchQueue()
        var topics: [Topic<Payload>] = []
        var consumers: [Task<Void, Never>] = []
        let perTopic = max(count / topicCount, 1)
        for index in 0..<topicCount {
            let topic = try await queue.createTopic("t\(index)", of: Payload.self, configuration: unboundedEnough)
            consumers.append(read(perTopic, from: try await topic.subscribe(prefetch: 64)))
            topics.append(topic)
        }
        let start = ContinuousClock.now
        for round in 0..<perTopic {
            for topic in topics { try await topic.publish(Payload(round)) }
        }
        for consumer in consumers { await consumer.value }
        return (ContinuousClock.now - start, perTopic * topicCount)
    }

    static let manyAsyncStreams: Run = { count in
        let perTopic = max(count / topicCount, 1)
        let pairs = (0..<topicCount).map { _ in AsyncStream.makeStream(of: Payload.self) }
        let consumers = pairs.map { drain($0.stream, expecting: perTopic) }
        let start = ContinuousClock.now
        for round in 0..<perTopic {
            for pair in pairs { pair.continuation.yield(Payload(round)) }
        }
        for pair in pairs { pair.continuation.finish() }
        for consumer in consumers { await consumer.value }
        return (ContinuousClock.now - start, perTopic * topicCount)
    }

    /// `producers` producers, each on its own topic with its own consumer.
    static func parallelTopics(_ producers: Int) -> Run {
        { count in
            let queue = benchQueue()
            let perProducer = count / producers
            var topics: [Topic<Payload>] = []
            var consumers: [Task<Void, Never>] = []
            for index in 0..<producers {
                let topic = try await queue.createTopic("p\(index)", of: Payload.self, configuration: unboundedEnough)
                consumers.append(read(perProducer, from: try await topic.subscribe(prefetch: 256)))
                topics.append(topic)
            }
            let start = ContinuousClock.now
            try await withThrowingTaskGroup(of: Void.self) { group in
                for topic in topics {
                    group.addTask {
                        for first in stride(from: 0, to: perProducer, by: 64) {
                            try await topic.publish(
                                contentsOf: (first..<min(first + 64, perProducer)).map(Payload.init))
                        }
                    }
                }
                try await group.waitForAll()
            }
            for consumer in consumers { await consumer.value }
            return (ContinuousClock.now - start, perProducer * producers)
        }
    }
}

/// Hands the `~Copyable` MPSC channel to its consumer task.
final class ChannelBox: @unchecked Sendable {
    private var channel: MultiProducerSingleConsumerAsyncChannel<Payload, Never>?

    init(_ channel: consuming MultiProducerSingleConsumerAsyncChannel<Payload, Never>) {
        self.channel = consume channel
    }

    func take() -> MultiProducerSingleConsumerAsyncChannel<Payload, Never> {
        channel.take()!
    }
}
