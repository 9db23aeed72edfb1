import Foundation
import OpenQTesting
import Testing

@testable import OpenQ

@Suite("Ready queue: priority levels that come and go")
struct ReadyQueueLevelTests {
    @Test func readyQueue_dropsPriorityLevelsThatRanEmpty() throws {
        var machine = Machine()
        let id = try machine.subscribe("s", .automatic)
        for round in 0..<4 {
            for priority in 0..<500 { machine.publish([priority], priority: round * 1_000 + priority) }
            #expect(machine.receive(id, max: 10_000).count == 500)
            #expect(machine.state.subscriptions[0].ready.levelCount <= 1, "round \(round)")
        }
        // Popping one message at a time empties levels too.
        for priority in 0..<50 { machine.publish([priority], priority: priority) }
        for _ in 0..<50 { #expect(machine.receive(id, max: 1).count == 1) }
        #expect(machine.state.subscriptions[0].ready.levelCount <= 1)
    }

    @Test func readyQueue_stillDeliversHigherPrioritiesFirst_afterLevelsCameAndWent() throws {
        var machine = Machine()
        let id = try machine.subscribe("s", .automatic)
        machine.publish([1], priority: 1)
        #expect(machine.receive(id, max: 1).map(\.message.payload) == [1])
        machine.publish([10], priority: 0)
        machine.publish([30], priority: 3)
        machine.publish([20], priority: 2)
        machine.publish([31], priority: 3)
        #expect(machine.receive(id, max: 10).map(\.message.payload) == [30, 31, 20, 10])
    }
}
