import Foundation
import OpenQSQLite
import OpenQTesting
import Testing

@testable import OpenQ

/// What the SQS server (issue "openq-server") needs from the core: a visibility timeout per
/// receive, releasing a delivery at once, changing a subscription's visibility timeout at run
/// time, and the first delivery time. Each over both storages.
@Suite("The core the SQS server needs")
struct SQSFoundationTests {
    let epoch = Date(timeIntervalSince1970: 1_700_000_000)

    func makeQueue(_ backend: Backend, clock: ManualClock) async throws -> MessageQueue {
        switch backend {
        case .memory:
            return MessageQueue(configuration: .init(metricsInterval: nil, randomSeed: 1), clock: clock, epoch: epoch)
        case .sqlite:
            let path = ScratchStores.path("sqs")
            return try await MessageQueue(
                storage: .sqlite(path: path, durability: .processCrash),
                configuration: .init(metricsInterval: nil, randomSeed: 1), clock: clock, epoch: epoch)
        }
    }

    @Test(arguments: Backend.allCases)
    func aReceiveMayAskForItsOwnVisibilityTimeout(_ backend: Backend) async throws {
        let clock = ManualClock()
        let queue = try await makeQueue(backend, clock: clock)
        let jobs = try await queue.createTopic("jobs", of: Int.self, configuration: backend.configure())
        let work = try await jobs.subscription("work", acknowledgement: .manual(visibilityTimeout: .seconds(30)))
        try await jobs.publish(contentsOf: [1, 2])
        let short = try #require(try await work.receive(max: 1, visibilityTimeout: .seconds(5)).first)
        let long = try #require(try await work.receive(max: 1).first)
        try await eventually("the visibility timer to be armed") { clock.sleeperCount >= 1 }
        clock.advance(by: .seconds(5))
        let again = try await work.receive(max: 10)
        #expect(again.map(\.message.payload) == [short.message.payload], "only the 5 s delivery expired")
        #expect(again.first?.attempt == 2)
        try await long.ack()
        await #expect(throws: OpenQError.self) { try await work.receive(visibilityTimeout: .zero) }
        _ = await queue.shutdown(gracePeriod: .zero)
    }

    @Test(arguments: Backend.allCases)
    func aWaitingReceive_appliesItsVisibilityTimeout_toWhatArrives(_ backend: Backend) async throws {
        let clock = ManualClock()
        let queue = try await makeQueue(backend, clock: clock)
        let jobs = try await queue.createTopic("jobs", of: Int.self, configuration: backend.configure())
        let work = try await jobs.subscription("work", acknowledgement: .manual(visibilityTimeout: .seconds(30)))
        let waiting = Task { try await work.receive(max: 1, waitingUpTo: .seconds(60), visibilityTimeout: .seconds(2)) }
        try await eventually("the receive to wait") { clock.sleeperCount >= 1 }
        try await jobs.publish(7)
        let first = try await withTimeout { try await waiting.value }
        #expect(first.map(\.message.payload) == [7])
        try await eventually("the visibility timer to be armed") { clock.sleeperCount >= 1 }
        clock.advance(by: .seconds(2))
        #expect(try await work.receive().first?.attempt == 2)
        _ = await queue.shutdown(gracePeriod: .zero)
    }

    @Test(arguments: Backend.allCases)
    func release_makesTheMessageVisibleAtOnce_andMaxDeliveriesStillApplies(_ backend: Backend) async throws {
        let clock = ManualClock()
        let queue = try await makeQueue(backend, clock: clock)
        let jobs = try await queue.createTopic(
            "jobs", of: Int.self, configuration: backend.configure(.init(deadLetter: .after(deliveries: 2))))
        let work = try await jobs.subscription("work")
        try await jobs.publish(1)
        try await #require(try await work.receive().first).release()
        let second = try #require(try await work.receive().first, "visible at once, no backoff")
        #expect(second.attempt == 2)
        try await second.release()
        #expect(try await work.receive().isEmpty, "its 2 deliveries are used: dead-lettered")
        #expect(await queue.statistics().subscription("dead-letters", of: "jobs.dlq")?.depth == 1)
        #expect(try work.statistics().counters.nacked == 2)
        _ = await queue.shutdown(gracePeriod: .zero)
    }

    @Test(arguments: Backend.allCases)
    func theVisibilityTimeout_changesAtRunTime_forDeliveriesMadeAfter(_ backend: Backend) async throws {
        let clock = ManualClock()
        let queue = try await makeQueue(backend, clock: clock)
        let jobs = try await queue.createTopic("jobs", of: Int.self, configuration: backend.configure())
        let work = try await jobs.subscription("work", acknowledgement: .manual(visibilityTimeout: .seconds(30)))
        try await jobs.publish(contentsOf: [1, 2])
        let before = try #require(try await work.receive(max: 1).first)
        try await work.setVisibilityTimeout(.seconds(5))
        #expect(work.configuration?.acknowledgement == .manual(visibilityTimeout: .seconds(5)))
        let after = try #require(try await work.receive(max: 1).first)
        try await eventually("the visibility timer to be armed") { clock.sleeperCount >= 1 }
        clock.advance(by: .seconds(5))
        #expect(try await work.receive(max: 10).map(\.message.payload) == [after.message.payload])
        try await before.ack()
        await #expect(throws: OpenQError.self) { try await work.setVisibilityTimeout(.zero) }
        let automatic = try await jobs.subscription("auto", acknowledgement: .automatic)
        let error = await #expect(throws: OpenQError.self) { try await automatic.setVisibilityTimeout(.seconds(1)) }
        #expect(error?.code == .invalidConfiguration)
        _ = await queue.shutdown(gracePeriod: .zero)
    }

    @Test(arguments: Backend.allCases)
    func aDelivery_carriesWhenTheMessageWasFirstDelivered(_ backend: Backend) async throws {
        let clock = ManualClock()
        let queue = try await makeQueue(backend, clock: clock)
        let jobs = try await queue.createTopic("jobs", of: Int.self, configuration: backend.configure())
        let work = try await jobs.subscription("work", acknowledgement: .manual(visibilityTimeout: .seconds(30)))
        try await jobs.publish(1)
        clock.advance(by: .seconds(10))
        let first = try #require(try await work.receive().first)
        #expect(first.firstDeliveredAt == epoch.addingTimeInterval(10))
        clock.advance(by: .seconds(30))
        let second = try #require(try await work.receive().first)
        #expect(second.attempt == 2)
        #expect(second.firstDeliveredAt == epoch.addingTimeInterval(10), "the first delivery's time, not this one's")
        let automatic = try await jobs.subscription("auto", acknowledgement: .automatic)
        try await jobs.publish(2)
        #expect(try await automatic.receive().first?.firstDeliveredAt == nil)
        _ = await queue.shutdown(gracePeriod: .zero)
    }
}

@Suite("The core the SQS server needs, across a restart")
struct SQSFoundationDurableTests {
    @Test func theVisibilityTimeoutChange_andTheFirstDeliveryTime_surviveARestart() async throws {
        let epoch = Date(timeIntervalSince1970: 1_700_000_000)
        let path = ScratchStores.path("sqs")
        let durable = TopicConfiguration(durability: .durable)
        var queue = try await MessageQueue(
            storage: .sqlite(path: path, durability: .processCrash), configuration: .init(metricsInterval: nil),
            clock: ManualClock(), epoch: epoch)
        var jobs = try await queue.createTopic("jobs", of: Int.self, configuration: durable)
        let work = try await jobs.subscription("work", acknowledgement: .manual(visibilityTimeout: .seconds(30)))
        try await work.setVisibilityTimeout(.seconds(7))
        try await jobs.publish(1)
        _ = try await work.receive()
        _ = await queue.shutdown(gracePeriod: .zero)

        queue = try await MessageQueue(
            storage: .sqlite(path: path, durability: .processCrash), configuration: .init(metricsInterval: nil),
            clock: ManualClock(), epoch: epoch.addingTimeInterval(100))
        jobs = try await queue.createTopic("jobs", of: Int.self, configuration: durable)
        let reopened = try jobs.existingSubscription("work")
        #expect(reopened.configuration?.acknowledgement == .manual(visibilityTimeout: .seconds(7)))
        let again = try #require(try await reopened.receive().first)
        #expect(again.attempt == 2)
        #expect(again.firstDeliveredAt == epoch)
        _ = await queue.shutdown(gracePeriod: .zero)
    }
}
