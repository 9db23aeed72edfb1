import OpenQTesting
import Testing

@testable import OpenQ

@Suite("Reading a stream a batch at a time: order, bounds, hand-back, cancellation, shutdown")
struct MessageBatchTests {
    /// The first batch the stream's consumer takes.
    func firstBatch<Payload>(of stream: MessageStream<Payload>) async throws -> MessageBatch<Payload> {
        try #require(try await collect(1, from: stream.batches).first)
    }

    @Test func aBatch_holdsEveryWaitingMessageInOrder_acrossPublishCalls() async throws {
        let queue = makeQueue()
        let topic = try await queue.createTopic("b", of: Int.self)
        let stream = try await topic.subscribe()
        try await topic.publish(1)
        try await topic.publish(2, headers: ["single": "yes"])
        try await topic.publish(contentsOf: 3...6, headers: ["batch": "yes"])
        try await topic.publish(7)

        let batch = try await firstBatch(of: stream)
        #expect(batch.count == 7)
        #expect(batch.map(\.payload) == Array(1...7))
        #expect(batch.indices.map { batch[$0].payload } == Array(1...7), "subscripts agree with iteration")
        #expect(batch.map(\.sequenceNumber) == Array(1...7))
        #expect(Set(batch.map(\.id)).count == 7)
        #expect(batch[1].headers == ["single": "yes"])
        #expect(batch[2...5].allSatisfy { $0.headers == ["batch": "yes"] })
        #expect(batch.last?.payload == 7 && batch.first?.payload == 1)
        #expect(batch.reversed().map(\.payload) == Array((1...7).reversed()))
    }

    @Test func aBatchOfOneBatchPublish_readsItsMessagesByIndex() async throws {
        let queue = makeQueue()
        let topic = try await queue.createTopic("b", of: String.self)
        let stream = try await topic.subscribe()
        try await topic.publish(contentsOf: ["a", "b", "c"])

        let batch = try await firstBatch(of: stream)
        #expect(batch.count == 3)
        #expect(batch[0].payload == "a" && batch[2].payload == "c")
        #expect(Array(batch[1...]).map(\.payload) == ["b", "c"])
        var changed = batch[1]
        changed.payload = "B"
        #expect(batch[1].payload == "b" && changed.sequenceNumber == 2, "a message of a batch is still a value")
    }

    @Test func batches_holdAtMostPrefetchMessages_andLoseNone() async throws {
        let queue = makeQueue()
        let topic = try await queue.createTopic("b", of: Int.self)
        let stream = try await topic.subscribe(prefetch: 4)
        try await topic.publish(contentsOf: 1...10)

        let batches = try await collect(3, from: stream.batches)
        #expect(batches.map(\.count) == [4, 4, 2])
        #expect(batches.flatMap { $0.map(\.payload) } == Array(1...10))
        let totals = topic.statistics().totals
        #expect(totals.routed == 10 && totals.acked == 10 && totals.purged == 0)
    }

    @Test func aBatchWithHandedBackMessages_putsThemFirst_thenItsRuns() {
        // What a take yields when messages an ended consumer handed back are waiting in front of
        // new runs (possible for named subscriptions; anonymous ones end with their consumer).
        let handedBack = TypedRecord(payloads: [1, 2, 3], headers: [:], priority: 0)
        let batchRecord = TypedRecord(payloads: [10, 11, 12, 13], headers: [:], priority: 0)
        let single = TypedRecord(payload: 20, headers: [:], priority: 0)
        let delivery = DeliveryBatch(
            handed: [2, 3].map {
                HandedMessage(stored: PublishedMessage(handedBack, index: $0 - 1), tag: 0, attempt: 1)
            },
            fresh: [MessageRun(batchRecord, 1..<4), MessageRun(single, 0..<1)]
        )
        let batch = MessageBatch<Int>(delivery)
        #expect(batch.count == 6)
        #expect(batch.map(\.payload) == [2, 3, 11, 12, 13, 20])
        #expect(batch.indices.map { batch[$0].payload } == [2, 3, 11, 12, 13, 20])
    }

    @Test func aWaitingBatchReader_isWokenByAPublish() async throws {
        let queue = makeQueue()
        let topic = try await queue.createTopic("b", of: Int.self)
        let stream = try await topic.subscribe()
        let reader = Task { try await firstBatch(of: stream).map(\.payload) }
        try await eventually("the reader to wait") { topic.statistics().subscriptions.first?.consumers == 1 }
        try await topic.publish(contentsOf: [5, 6])
        #expect(try await withTimeout { try await reader.value } == [5, 6])
    }

    @Test func cancellingABatchReader_endsItsSequencePromptly() async throws {
        let queue = makeQueue()
        let topic = try await queue.createTopic("b", of: Int.self)
        let stream = try await topic.subscribe()
        let reader = Task {
            var read = 0
            for await batch in stream.batches { read += batch.count }
            return read
        }
        try await topic.publish(contentsOf: 1...3)
        try await eventually("the reader to read and wait again") {
            topic.statistics().subscriptions.first.map { $0.counters.acked == 3 && $0.consumers == 1 } ?? false
        }
        reader.cancel()
        #expect(try await withTimeout { await reader.value } == 3)
        #expect(topic.subscriptionNames.isEmpty, "an anonymous subscription ends with its reader")
    }

    @Test func shutdown_endsABatchReader_afterItDrainedTheTopic() async throws {
        let queue = makeQueue()
        let topic = try await queue.createTopic("b", of: Int.self)
        let stream = try await topic.subscribe(prefetch: 2)
        try await topic.publish(contentsOf: 1...5)
        let reader = Task {
            var read: [Int] = []
            for await batch in stream.batches { read += batch.map(\.payload) }
            return read
        }
        _ = await queue.shutdown(gracePeriod: .zero)
        #expect(try await withTimeout { await reader.value } == Array(1...5))
    }

    @Test func manyBatchPublishers_oneBatchReader_everyMessageOnce_inEachPublishersOrder() async throws {
        let queue = MessageQueue(configuration: .init(metricsInterval: nil))
        let topic = try await queue.createTopic(
            "b", of: Order.self, configuration: .init(capacity: 64, overflow: .suspend))
        let stream = try await topic.subscribe(prefetch: 32)
        let producers = 4
        let perProducer = 2_000
        let reader = Task {
            var read: [Order] = []
            for await batch in stream.batches {
                read += batch.map(\.payload)
                if read.count >= producers * perProducer { break }
            }
            return read
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for producer in 0..<producers {
                group.addTask {
                    var next = 0
                    while next < perProducer {
                        // Batches of 1 to 17 messages, and single publishes, interleaved.
                        let size = Swift.min(1 + (next * 7 + producer) % 17, perProducer - next)
                        let orders = (next..<next + size).map { Order(id: producer * perProducer + $0) }
                        if size == 1 {
                            try await topic.publish(orders[0])
                        } else {
                            try await topic.publish(contentsOf: orders)
                        }
                        next += size
                    }
                }
            }
            try await group.waitForAll()
        }
        let read = try await withTimeout { await reader.value }
        #expect(read.count == producers * perProducer)
        #expect(Set(read.map(\.id)).count == producers * perProducer, "nothing lost, nothing twice")
        for producer in 0..<producers {
            let own = read.map(\.id).filter { $0 / perProducer == producer }
            #expect(own == own.sorted(), "producer \(producer)'s messages keep their order")
        }
    }
}
