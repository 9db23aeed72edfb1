import Foundation
import OpenQ  // not @testable: the documentation's examples may use public API only
import OpenQSQLite
import Testing

/// The examples of the OpenQSQLite DocC catalog (`Sources/OpenQSQLite/OpenQSQLite.docc`), kept
/// verbatim, compiling and passing here (DocumentationTests checks that every swift block of a
/// DocC article appears verbatim in a test). Their `Job` is local: it shadows the target's.
@Suite("OpenQSQLite documentation examples")
struct SQLiteDocumentationExamplesTests {
    /// A fresh directory for one test's store; the test removes it.
    func makeDirectory() throws -> String {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("openq-docs-\(UUID())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        return directory
    }

    @Test func aDurableTopic_bringsItsMessageBack_afterARestart() async throws {
        let directory = try makeDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/openq.sqlite"
        struct Job: Codable, Sendable { var id: Int }

        let queue = try await MessageQueue(storage: .sqlite(path: path))
        let jobs = try await queue.createTopic("jobs", of: Job.self, configuration: .init(durability: .durable))
        _ = try await jobs.subscription("workers", acknowledgement: .manual(visibilityTimeout: .seconds(30)))
        try await jobs.publish(Job(id: 1))  // returns once the message is committed
        _ = await queue.shutdown()  // commits what is pending, releases the file

        // After a restart (or kill -9), the same file and the same declarations bring the message back.
        let restarted = try await MessageQueue(storage: .sqlite(path: path))
        let again = try await restarted.createTopic("jobs", of: Job.self, configuration: .init(durability: .durable))
        let work = try await again.subscription("workers", acknowledgement: .manual(visibilityTimeout: .seconds(30)))
        for delivery in try await work.receive(max: 10) {
            print("job", delivery.message.payload.id, "attempt", delivery.attempt)
            try await delivery.ack()  // returns once the ack is committed
        }

        let statistics = try work.statistics()
        #expect(statistics.counters.routed == 1, "the message came back from the file")
        #expect(statistics.counters.acked == 1 && statistics.depth == 0)
        _ = await restarted.shutdown(gracePeriod: .zero)
    }

    @Test func theStorageParameters_andTheStoreStatistics() async throws {
        let directory = try makeDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/openq.sqlite"

        let queue = try await MessageQueue(
            storage: .sqlite(path: path, durability: .processCrash, residentMessages: 1_000))
        if let store = try await queue.storeStatistics() {
            print(store.path, store.fileBytes, "bytes,", store.commits, "commits")
        }

        let store = try #require(try await queue.storeStatistics())
        #expect(store.path == path && store.fault == nil)
        #expect(FileManager.default.fileExists(atPath: path), "the file was created")
        _ = await queue.shutdown(gracePeriod: .zero)

        await #expect(throws: OpenQError.self, "residentMessages must be at least 2") {
            _ = try await MessageQueue(storage: .sqlite(path: path, residentMessages: 1))
        }
    }
}
