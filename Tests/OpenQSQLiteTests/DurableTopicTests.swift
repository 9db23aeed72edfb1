import Foundation
import GRDB
import OpenQ
import OpenQTesting
import Testing

@testable import OpenQSQLite

@Suite("Durable topics: what survives a restart")
struct DurableTopicTests {
    @Test func waitingMessages_comeBackInOrder_withHeadersAndPriorities() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory + "/openq.sqlite"
            var queue = try await openBroker(path)
            var jobs = try await queue.createTopic("jobs", of: Job.self, configuration: durable)
            _ = try await jobs.subscription("work")
            let first = try await jobs.publish(Job(id: 1), headers: ["source": "api"])
            try await jobs.publish(contentsOf: [Job(id: 2), Job(id: 3)])
            try await jobs.publish(Job(id: 4), priority: 5)
            let published = await queue.statistics().subscription("work", of: "jobs")
            _ = await queue.shutdown(gracePeriod: .zero)

            queue = try await openBroker(path)
            jobs = try await queue.createTopic("jobs", of: Job.self, configuration: durable)
            let work = try await jobs.subscription("work")
            #expect(await queue.statistics().subscription("work", of: "jobs")?.depth == published?.depth)
            let batch = try await work.receive(max: 10, waitingUpTo: .zero)
            #expect(batch.map(\.message.payload.id) == [4, 1, 2, 3])
            #expect(batch.map(\.attempt) == [1, 1, 1, 1])
            let one = try #require(batch.first { $0.message.payload.id == 1 })
            #expect(one.message.headers["source"] == "api")
            #expect(one.message.id == first.firstID)
            #expect(one.message.sequenceNumber == first.firstSequenceNumber)
            #expect(one.message.publishedAt == epoch)
            _ = await queue.shutdown(gracePeriod: .zero)
        }
    }

    @Test func inFlightDeliveries_areVisibleAtOnce_withTheirAttempts_andAckedOnesNeverComeBack() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory + "/openq.sqlite"
            var queue = try await openBroker(path)
            var jobs = try await queue.createTopic("jobs", of: Job.self, configuration: durable)
            var work = try await jobs.subscription("work")
            let receipt = try await jobs.publish(contentsOf: (1...4).map(Job.init(id:)))
            let taken = try await work.receive(max: 4, waitingUpTo: .zero)
            try await taken[0].ack()
            try await taken[1].nack(retryAfter: .zero)
            _ = try await work.receive(max: 1, waitingUpTo: .zero)  // job 3 again? no: job 2 is a retry first
            _ = await queue.shutdown(gracePeriod: .zero)

            queue = try await openBroker(path, at: .seconds(3_600))
            jobs = try await queue.createTopic("jobs", of: Job.self, configuration: durable)
            work = try await jobs.subscription("work")
            let statistics = try #require(await queue.statistics().subscription("work", of: "jobs"))
            #expect(statistics.depth == 3 && statistics.inFlight == 0 && statistics.isBalanced)
            let again = try await work.receive(max: 10, waitingUpTo: .zero)
            let attempts = Dictionary(uniqueKeysWithValues: again.map { ($0.message.payload.id, $0.attempt) })
            #expect(attempts == [2: 3, 3: 2, 4: 2])
            // Sequence numbers and ids continue without reuse.
            let next = try await jobs.publish(Job(id: 5))
            #expect(next.firstSequenceNumber == receipt.firstSequenceNumber + 4)
            #expect(next.firstID > again.map(\.message.id).max()!)
            _ = await queue.shutdown(gracePeriod: .zero)
        }
    }

    @Test func delaysAndRetryBackoffs_comeBackOnTheClock_fromTheInjectedEpoch() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory + "/openq.sqlite"
            var queue = try await openBroker(path)
            var jobs = try await queue.createTopic("jobs", of: Job.self, configuration: durable)
            var work = try await jobs.subscription("work")
            try await jobs.publish(Job(id: 1), delay: .seconds(60))
            try await jobs.publish(Job(id: 2))
            let delivery = try #require(try await work.receive(max: 1, waitingUpTo: .zero).first)
            try await delivery.nack(retryAfter: .seconds(120), error: "busy")
            _ = await queue.shutdown(gracePeriod: .zero)

            // 30 s later by the wall clock: job 1 is due in 30 s, job 2 in 90 s.
            let clock = ManualClock()
            queue = try await openBroker(path, at: .seconds(30), clock: clock)
            jobs = try await queue.createTopic("jobs", of: Job.self, configuration: durable)
            work = try await jobs.subscription("work")
            #expect(try await work.receive(max: 10, waitingUpTo: .zero).isEmpty)
            #expect(await queue.statistics().subscription("work", of: "jobs")?.scheduled == 2)
            clock.advance(by: .seconds(31))
            let one = try await work.receive(max: 10, waitingUpTo: .zero)
            #expect(one.map(\.message.payload.id) == [1])
            try await one.first?.ack()
            clock.advance(by: .seconds(60))
            let two = try await work.receive(max: 10, waitingUpTo: .zero)
            #expect(two.map(\.message.payload.id) == [2])
            #expect(two.first?.attempt == 2)
            _ = await queue.shutdown(gracePeriod: .zero)
        }
    }

    @Test func deadLetters_andRedrive_surviveARestart() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory + "/openq.sqlite"
            let configuration = TopicConfiguration(deadLetter: .after(deliveries: 2), durability: .durable)
            var queue = try await openBroker(path)
            var jobs = try await queue.createTopic("jobs", of: Job.self, configuration: configuration)
            var work = try await jobs.subscription("work")
            try await jobs.publish(contentsOf: [Job(id: 1), Job(id: 2)])
            for delivery in try await work.receive(max: 2, waitingUpTo: .zero) {
                if delivery.message.payload.id == 1 { try await delivery.reject(reason: "bad") }
            }
            _ = await queue.shutdown(gracePeriod: .zero)

            queue = try await openBroker(path)
            jobs = try await queue.createTopic("jobs", of: Job.self, configuration: configuration)
            work = try await jobs.subscription("work")
            let statistics = await queue.statistics()
            #expect(statistics.subscription("dead-letters", of: "jobs.dlq")?.depth == 1)
            #expect(statistics.subscription("work", of: "jobs")?.depth == 1)
            #expect(try await queue.redrive(from: "jobs.dlq") == 1)
            _ = await queue.shutdown(gracePeriod: .zero)

            queue = try await openBroker(path)
            jobs = try await queue.createTopic("jobs", of: Job.self, configuration: configuration)
            work = try await jobs.subscription("work")
            #expect(await queue.statistics().subscription("dead-letters", of: "jobs.dlq")?.depth == 0)
            let back = try await work.receive(max: 10, waitingUpTo: .zero)
            #expect(Set(back.map(\.message.payload.id)) == [1, 2])
            let redriven = try #require(back.first { $0.message.payload.id == 1 })
            #expect(redriven.message.topic == "jobs")
            #expect(redriven.message.headers[MessageHeader.sourceTopic] == nil)
            _ = await queue.shutdown(gracePeriod: .zero)
        }
    }

    @Test func aMessageWhoseLastAllowedDeliveryWasUnderWay_isDeadLetteredOnRecovery() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory + "/openq.sqlite"
            let configuration = TopicConfiguration(deadLetter: .after(deliveries: 2), durability: .durable)
            for round in 1...3 {
                let queue = try await openBroker(path)
                let jobs = try await queue.createTopic("jobs", of: Job.self, configuration: configuration)
                let work = try await jobs.subscription("work")
                if round == 1 { try await jobs.publish(Job(id: 1)) }
                let taken = try await work.receive(max: 1, waitingUpTo: .zero)
                // Rounds 1 and 2 take it and stop without settling (as a crash would); round 3 finds it dead.
                #expect(taken.map(\.attempt) == (round < 3 ? [round] : []))
                if round == 3 {
                    let statistics = await queue.statistics()
                    #expect(statistics.subscription("dead-letters", of: "jobs.dlq")?.depth == 1)
                    let dead = try await queue.topic("jobs.dlq", of: Job.self).existingSubscription("dead-letters")
                    let letter = try #require(try await dead.receive(max: 1, waitingUpTo: .zero).first)
                    #expect(letter.message.headers[MessageHeader.attempts] == "2")
                }
                _ = await queue.shutdown(gracePeriod: .zero)
            }
        }
    }

    @Test func purgeUnsubscribeAndTopicDeletion_areCommitted() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory + "/openq.sqlite"
            var queue = try await openBroker(path)
            var jobs = try await queue.createTopic("jobs", of: Job.self, configuration: durable)
            let work = try await jobs.subscription("work")
            _ = try await jobs.subscription("audit")
            let other = try await queue.createTopic("other", of: Job.self, configuration: durable)
            _ = try await other.subscription("x")
            try await other.publish(Job(id: 9))
            try await jobs.publish(contentsOf: (1...3).map(Job.init(id:)))
            #expect(try await work.purge() == 3)
            try await jobs.unsubscribe("audit")
            try await queue.deleteTopic("other")
            _ = await queue.shutdown(gracePeriod: .zero)

            queue = try await openBroker(path)
            // Deleting a topic keeps its dead-letter topic, as in memory.
            #expect(try await queue.storedTopics().map(\.name) == ["jobs", "jobs.dlq", "other.dlq"])
            jobs = try await queue.createTopic("jobs", of: Job.self, configuration: durable)
            #expect(jobs.subscriptionNames == ["work"])
            #expect(await queue.statistics().subscription("work", of: "jobs")?.depth == 0)
            _ = await queue.shutdown(gracePeriod: .zero)
            let rows = try await DatabaseQueue(path: path).read { db in
                try Int.fetchOne(db, sql: "SELECT count(*) FROM messages")
            }
            #expect(rows == 0, "no message row outlives its last copy")
        }
    }
}

@Suite("Durable topics: typed errors, one owner, group commit")
struct DurableTopicErrorTests {
    @Test func declaringAStoredTopicWithAnotherTypeOrConfiguration_isATypedError() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory + "/openq.sqlite"
            var queue = try await openBroker(path)
            _ = try await queue.createTopic("jobs", of: Job.self, configuration: durable)
            _ = await queue.shutdown(gracePeriod: .zero)

            queue = try await openBroker(path)
            let type = await #expect(throws: OpenQError.self) {
                try await queue.createTopic("jobs", of: String.self, configuration: durable)
            }
            #expect(type?.code == .payloadTypeMismatch)
            let configuration = await #expect(throws: OpenQError.self) {
                try await queue.createTopic(
                    "jobs", of: Job.self, configuration: .init(capacity: 5, durability: .durable))
            }
            #expect(configuration?.code == .topicAlreadyExists)
            let stored = try await queue.storedTopics()
            #expect(stored.first?.name == "jobs")
            #expect(stored.first?.payloadType == String(reflecting: Job.self))
            #expect(stored.first?.configuration == durable)
            _ = try await queue.createTopic("jobs", of: Job.self, configuration: stored[0].configuration)
            _ = await queue.shutdown(gracePeriod: .zero)
        }
    }

    @Test func aDurableTopic_needsACodablePayload_andABrokerWithStorage() async throws {
        try await withTemporaryDirectory { directory in
            let queue = try await openBroker(directory + "/openq.sqlite")
            let opaque = await #expect(throws: OpenQError.self) {
                try await queue.createTopic("o", of: Opaque.self, configuration: durable)
            }
            #expect(opaque?.code == .invalidConfiguration)
            _ = await queue.shutdown(gracePeriod: .zero)
            let memory = MessageQueue()
            let noStorage = await #expect(throws: OpenQError.self) {
                try await memory.createTopic("jobs", of: Job.self, configuration: durable)
            }
            #expect(noStorage?.code == .invalidConfiguration)
        }
    }

    @Test func tryPublish_onADurableTopic_isATypedFailure_andPublishesNothing() async throws {
        try await withTemporaryDirectory { directory in
            let queue = try await openBroker(directory + "/openq.sqlite")
            let jobs = try await queue.createTopic("jobs", of: Job.self, configuration: durable)
            _ = try await jobs.subscription("work")
            guard case .failed(let error) = jobs.tryPublish(Job(id: 1)) else {
                Issue.record("tryPublish on a durable topic must fail")
                return
            }
            #expect(error.code == .unsupportedOperation)
            #expect(jobs.statistics().published == 0)
            _ = await queue.shutdown(gracePeriod: .zero)
        }
    }

    @Test func aSecondBrokerOnTheSameStore_getsStoreInUse_untilTheFirstShutsDown() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory + "/openq.sqlite"
            let first = try await openBroker(path)
            let error = await #expect(throws: OpenQError.self) { try await openBroker(path) }
            #expect(error?.code == .storeInUse)
            _ = await first.shutdown(gracePeriod: .zero)
            let second = try await openBroker(path)
            _ = await second.shutdown(gracePeriod: .zero)
        }
    }

    @Test func concurrentPublishes_shareCommits() async throws {
        try await withTemporaryDirectory { directory in
            let queue = try await openBroker(directory + "/openq.sqlite")
            let jobs = try await queue.createTopic("jobs", of: Job.self, configuration: durable)
            _ = try await jobs.subscription("work")
            let store = try #require(await queue.store as? SQLiteStore)
            let before = store.committer.counts
            let publishers = 200
            try await withThrowingTaskGroup(of: Void.self) { group in
                for id in 1...publishers { group.addTask { try await jobs.publish(Job(id: id)) } }
                try await group.waitForAll()
            }
            let commits = store.committer.counts.commits - before.commits
            #expect(commits < publishers / 4, "\(commits) commits for \(publishers) concurrent publishes")
            #expect(await queue.statistics().subscription("work", of: "jobs")?.depth == publishers)
            _ = await queue.shutdown(gracePeriod: .zero)
        }
    }

    @Test func aPayloadThatNoLongerDecodes_isQuarantinedWithItsBytes_andCounted() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory + "/openq.sqlite"
            var queue = try await openBroker(path)
            var jobs = try await queue.createTopic("jobs", of: Job.self, configuration: durable)
            _ = try await jobs.subscription("work")
            try await jobs.publish(contentsOf: [Job(id: 1), Job(id: 2)])
            _ = await queue.shutdown(gracePeriod: .zero)
            // The type changed under the stored payload (as a renamed field would).
            try await DatabaseQueue(path: path).write { db in
                try db.execute(
                    sql: "UPDATE messages SET payload = CAST('{\"identifier\":1}' AS BLOB) WHERE sequence = 1")
            }

            queue = try await openBroker(path)
            jobs = try await queue.createTopic("jobs", of: Job.self, configuration: durable)
            let work = try await jobs.subscription("work")
            #expect(jobs.statistics().quarantined == 1)
            #expect(try await work.receive(max: 10, waitingUpTo: .zero).map(\.message.payload.id) == [2])
            let quarantined = try await queue.quarantinedMessages()
            #expect(quarantined.map(\.sequenceNumber) == [1])
            #expect(quarantined.first?.topic == "jobs")
            #expect(quarantined.first?.payload == Array("{\"identifier\":1}".utf8))
            #expect(quarantined.first?.reason.contains("no longer decodes") == true)
            _ = await queue.shutdown(gracePeriod: .zero)
        }
    }

    @Test func aCodec_plugsIn_andBytesAreStoredAsTheyAre() async throws {
        struct Utf8Codec: PayloadCodec {
            func encode(_ payload: String) throws -> [UInt8] { Array(payload.utf8) }
            func decode(_ bytes: [UInt8]) throws -> String { String(decoding: bytes, as: UTF8.self) }
        }
        try await withTemporaryDirectory { directory in
            let path = directory + "/openq.sqlite"
            var queue = try await openBroker(path)
            let text = try await queue.createTopic("text", of: String.self, configuration: durable, codec: Utf8Codec())
            _ = try await text.subscription("s")
            try await text.publish("héllo")
            let bytes = try await queue.createTopic("bytes", of: [UInt8].self, configuration: durable)
            _ = try await bytes.subscription("s")
            try await bytes.publish([0, 255])
            _ = await queue.shutdown(gracePeriod: .zero)
            let stored = try await DatabaseQueue(path: path).read { db in
                try Data.fetchAll(db, sql: "SELECT payload FROM messages ORDER BY topic")
            }
            #expect(stored == [Data([0, 255]), Data("héllo".utf8)])

            queue = try await openBroker(path)
            let reopened = try await queue.createTopic(
                "text", of: String.self, configuration: durable, codec: Utf8Codec())
            let s = try await reopened.subscription("s")
            #expect(try await s.receive(max: 1, waitingUpTo: .zero).first?.message.payload == "héllo")
            _ = await queue.shutdown(gracePeriod: .zero)
        }
    }
}

/// README.md's "Durable topics" example, verbatim (its `Job` is local: it shadows the target's).
@Suite("README: durable topics")
struct DurableReadmeTests {
    @Test func theReadmeExample_compilesAndRuns() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory + "/openq.sqlite"
            struct Job: Codable, Sendable { var id: Int }

            let queue = try await MessageQueue(storage: .sqlite(path: path))
            let jobs = try await queue.createTopic("jobs", of: Job.self, configuration: .init(durability: .durable))
            let work = try await jobs.subscription("workers", acknowledgement: .manual(visibilityTimeout: .seconds(30)))
            try await jobs.publish(Job(id: 1))  // returns once the message is committed
            for delivery in try await work.receive(max: 10) {
                try await delivery.ack()  // returns once the ack is committed
            }
            _ = await queue.shutdown()  // commits what is pending, releases the file

            let rows = try await DatabaseQueue(path: path).read { db in
                try Int.fetchOne(db, sql: "SELECT count(*) FROM copies")
            }
            #expect(rows == 0, "the ack is committed")
            let reopened = try await MessageQueue(storage: .sqlite(path: path))
            #expect(try await reopened.storedTopics().map(\.name) == ["jobs", "jobs.dlq"])
            _ = await reopened.shutdown()
        }
    }
}
