import Foundation
import OpenQTesting
import Testing

@testable import OpenQ

@Suite("Topic state machine: receipts taken back (purged, expired) answer as such, kept as runs")
struct StateMachineReceiptTests {
    @Test func settle_afterMoreThan4096ReceiptsWerePurged_answersReceiptExpired() throws {
        var machine = Machine(.init(capacity: 10_000, deadLetter: .after(deliveries: 3), retryBackoff: .immediate))
        let id = try machine.subscribe("s")
        machine.publish(Array(0..<5_000))
        let taken = machine.receive(id, max: 5_000)
        #expect(taken.count == 5_000)
        let (purged, _) = machine.state.purge(id, now: machine.now)
        #expect(try purged.get() == 5_000)
        var codes: [OpenQError.Code: Int] = [:]
        for handed in taken {
            if case .failure(let error) = machine.ack(id, handed.tag) { codes[error.code, default: 0] += 1 }
        }
        #expect(codes == [.receiptExpired: 5_000])
    }

    @Test func settle_afterMoreThan4096ReceiptsExpired_answersReceiptExpired() throws {
        var machine = Machine(.init(capacity: 10_000, deadLetter: .disabled, retryBackoff: .immediate))
        let id = try machine.subscribe("s", .manual(visibilityTimeout: .seconds(1)))
        machine.publish(Array(0..<5_000))
        let taken = machine.receive(id, max: 5_000)
        machine.advance(.seconds(2))
        #expect(machine.statistics("s").counters.expired == 5_000)
        let expired = taken.filter { isFailure(machine.ack(id, $0.tag), .receiptExpired) }
        #expect(expired.count == 5_000)
        // The redeliveries are live and settle normally; a second ack says "already settled".
        let again = machine.receive(id, max: 5_000)
        #expect(again.count == 5_000)
        #expect(again.allSatisfy { (try? machine.ack(id, $0.tag).get()) != nil })
        #expect(again.allSatisfy { isFailure(machine.ack(id, $0.tag), .receiptAlreadySettled) })
    }

    @Test func receiptFates_keepRunsNotTags_andForgetTheOldestRunBeyondTheirCapacity() {
        var fates = ReceiptFates()
        for tag in UInt64(1)...10_000 { fates.record(.purged, tag: tag) }
        #expect(fates.runs.count == 1)
        fates.record(.expired, tag: 10_002)
        fates.record(.expired, tag: 10_001)  // joins the run after it
        #expect(fates.runs.count == 2)
        #expect(fates.fate(of: 1) == .purged && fates.fate(of: 10_001) == .expired)
        #expect(fates.fate(of: 10_003) == nil)
        // Alternating fates cannot merge: beyond the capacity the oldest runs are forgotten.
        var scattered = ReceiptFates()
        for tag in stride(from: UInt64(1), through: UInt64(2 * ReceiptFates.capacity + 10), by: 2) {
            scattered.record(.expired, tag: tag)
        }
        #expect(scattered.runs.count == ReceiptFates.capacity)
        #expect(scattered.fate(of: 1) == nil)
        #expect(scattered.fate(of: UInt64(2 * ReceiptFates.capacity + 9)) == .expired)
    }
}
