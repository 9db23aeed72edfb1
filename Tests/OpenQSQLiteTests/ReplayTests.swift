import Foundation
import GRDB
import OpenQ
import OpenQTesting
import Testing

@testable import OpenQSQLite

@Suite("Retention and replay from the store")
struct ReplayTests {
    @Test func aSubscriptionCreatedAfterARestart_replaysTheRetainedMessages_inOrder() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory + "/openq.sqlite"
            var queue = try await openPagingBroker(path, resident: 16)
            var jobs = try await queue.createTopic("jobs", of: Blob.self, configuration: retaining(.count(100)))
            for id in 1...300 { try await jobs.publish(Blob(id: id)) }
            #expect(await queue.statistics().topic("jobs")?.retained == 100)
            _ = await queue.shutdown(gracePeriod: .zero)

            queue = try await openPagingBroker(path, resident: 16)
            jobs = try await queue.createTopic("jobs", of: Blob.self, configuration: retaining(.count(100)))
            #expect(await queue.statistics().topic("jobs")?.retained == 100)
            let audit = try await jobs.subscription("audit", startingAt: .earliest)
            let statistics = try audit.statistics()
            #expect(statistics.depth == 100 && statistics.pagedOut > 0 && statistics.isBalanced)
            // Published while the replay pages: behind the replayed ones.
            try await jobs.publish(Blob(id: 301))
            #expect(try await receiveAll(audit, max: 7) == Array(201...301))
            let fromSequence = try await jobs.subscription("late", startingAt: .sequenceNumber(290))
            #expect(try await receiveAll(fromSequence) == Array(290...301))
            // The retained range was deleted (one statement per publish, over the newly old range).
            let rows = try await DatabaseQueue(path: path).read { db in
                try Int.fetchOne(db, sql: "SELECT count(*) FROM messages")
            }
            #expect(rows == 100)
            _ = await queue.shutdown(gracePeriod: .zero)
        }
    }

    @Test func retentionByAge_keepsWhatIsYoungEnough_andReplaysByTime() async throws {
        try await withTemporaryDirectory { directory in
            let clock = ManualClock()
            let queue = try await openPagingBroker(directory + "/openq.sqlite", resident: 8, clock: clock)
            let jobs = try await queue.createTopic("jobs", of: Blob.self, configuration: retaining(.age(.seconds(60))))
            for id in 1...20 { try await jobs.publish(Blob(id: id)) }
            clock.advance(by: .seconds(45))
            for id in 21...40 { try await jobs.publish(Blob(id: id)) }
            clock.advance(by: .seconds(30))
            // Past 60 s for the first twenty: the next publish's commit drops them.
            try await jobs.publish(Blob(id: 41))
            let everything = try await jobs.subscription("everything", startingAt: .earliest)
            #expect(try await receiveAll(everything) == Array(21...41))
            let recent = try await jobs.subscription(
                "recent", startingAt: .time(epoch.addingTimeInterval(75)))
            #expect(try await receiveAll(recent) == [41])
            _ = await queue.shutdown(gracePeriod: .zero)
        }
    }

    @Test func aReplayOfManyMessages_streamsThemInPages() async throws {
        try await withTemporaryDirectory { directory in
            let queue = try await openPagingBroker(directory + "/openq.sqlite", resident: 64)
            let jobs = try await queue.createTopic(
                "jobs", of: Blob.self, configuration: retaining(Retention(count: nil, age: nil)))
            let count = underThreadSanitizer ? 4_000 : 20_000
            for first in stride(from: 1, through: count, by: 500) {
                try await jobs.publish(contentsOf: (first..<first + 500).map { Blob(id: $0) })
            }
            let audit = try await jobs.subscription("audit", startingAt: .earliest)
            // `drain` checks after every take that memory holds at most the 64 resident messages.
            let ids = try await drain(audit, count: count, max: 100, resident: 64) { try? audit.statistics() }
            #expect(ids == Array(1...count))
            _ = await queue.shutdown(gracePeriod: .zero)
        }
    }

    @Test func seek_replaysFromTheStore() async throws {
        try await withTemporaryDirectory { directory in
            let queue = try await openPagingBroker(directory + "/openq.sqlite", resident: 8)
            let jobs = try await queue.createTopic("jobs", of: Blob.self, configuration: retaining(.count(50)))
            let work = try await jobs.subscription("work")
            for id in 1...60 { try await jobs.publish(Blob(id: id)) }
            #expect(try await receiveAll(work) == Array(1...60))
            #expect(try await work.seek(to: .sequenceNumber(40)) == 21)
            #expect(try await receiveAll(work) == Array(40...60))
            #expect(try await work.seek(to: .earliest) == 50)
            #expect(try work.statistics().isBalanced)
            _ = await queue.shutdown(gracePeriod: .zero)
        }
    }

    @Test func aStreamCannotReplayADurableTopic() async throws {
        try await withTemporaryDirectory { directory in
            let queue = try await openPagingBroker(directory + "/openq.sqlite", resident: 8)
            let jobs = try await queue.createTopic("jobs", of: Blob.self, configuration: retaining(.count(10)))
            let error = await #expect(throws: OpenQError.self) { _ = try await jobs.subscribe(startingAt: .earliest) }
            #expect(error?.code == .unsupportedOperation)
            _ = try await jobs.subscribe()
            _ = await queue.shutdown(gracePeriod: .zero)
        }
    }
}
