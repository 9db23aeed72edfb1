import OpenQ  // not @testable: the documentation's examples may use public API only
import OpenQTesting
import Testing

/// The examples of the OpenQTesting DocC catalog (`Sources/OpenQTesting/OpenQTesting.docc`), kept
/// verbatim, compiling and passing here (DocumentationTests checks that every swift block of a
/// DocC article appears verbatim in a test).
@Suite("OpenQTesting documentation examples")
struct TestingDocumentationExamplesTests {
    @Test func aManualClock_movesDelays_andVisibilityTimeouts_withoutSleeping() async throws {
        let clock = ManualClock()
        let queue = MessageQueue(clock: clock)
        let jobs = try await queue.createTopic("jobs", of: Int.self)
        let work = try await jobs.subscription("work", acknowledgement: .manual(visibilityTimeout: .seconds(30)))
        try await jobs.publish(1, delay: .seconds(60))
        let early = try await work.receive()  // nothing yet: the message waits for its delay
        clock.advance(by: .seconds(60))  // the minute passes at once
        let due = try await work.receive(waitingUpTo: .seconds(1))  // the first delivery, attempt 1
        clock.advance(by: .seconds(30))  // never acknowledged: its visibility timeout passes
        let again = try await work.receive(waitingUpTo: .seconds(1))  // delivered again, attempt 2

        #expect(early.isEmpty)
        #expect(due.map(\.attempt) == [1] && due.first?.message.payload == 1)
        #expect(again.map(\.attempt) == [2])
        #expect(clock.now == ManualClock.Instant(offset: .seconds(90)), "no real time counted")
        _ = await queue.shutdown(gracePeriod: .zero)
    }
}
