import Foundation
import Testing

@testable import OpenQ

/// The sizes the hot path was measured with. Consumers take handed messages by the batch and
/// fan-out moves millions a second: a handed message that grew from 32 to 48 bytes (a `Date?`
/// field) cost 1→16 fan-out 10-15 % (and 40 bytes did too), so the sizes are pinned here, where a
/// change shows up at once rather than as a slower benchmark row weeks later.
@Suite("Hot-path layouts")
struct LayoutTests {
    @Test func aHandedMessage_isThirtyTwoBytes() {
        #expect(MemoryLayout<PublishedMessage>.size == 12)
        #expect(MemoryLayout<HandedMessage>.size == 32)
        #expect(MemoryLayout<HandedMessage>.stride == 32)
    }

    @Test func aMessage_isTwelveBytes_andADelivery_sixtyFour() {
        #expect(MemoryLayout<Message<Int>>.size == 12)
        #expect(MemoryLayout<Delivery<Int>>.size == 64)
    }

    @Test func aPendingMessage_isFortyBytes_andKeepsItsFirstDeliveryTime() {
        #expect(MemoryLayout<TopicStateMachine.Pending>.size == 40)
        let record = MessageRecord(count: 1, headers: [:], priority: 0, firstID: .unassigned)
        var pending = TopicStateMachine.Pending(stored: PublishedMessage(record), attempts: 3, lastError: nil)
        #expect(pending.firstDeliveredSeconds.isNaN)
        pending.firstDeliveredSeconds = 12.5
        pending.attempts += 1
        #expect(pending.firstDeliveredSeconds == 12.5)
        #expect(pending.attempts == 4)
        let recovered = TopicStateMachine.Pending(
            stored: PublishedMessage(record), attempts: 1, lastError: nil, firstDeliveredAt: .milliseconds(1_500))
        #expect(recovered.firstDeliveredSeconds == 1.5)
    }

    @Test func aHandedMessage_keepsItsAttempt_andItsFirstDeliveryTimeExactly() {
        let record = MessageRecord(count: 3, headers: [:], priority: 0, firstID: .unassigned)
        let time = Date(timeIntervalSinceReferenceDate: 812_345_678.123_456_7)
        let handed = HandedMessage(
            stored: PublishedMessage(record, index: 2), tag: 9, attempt: 7, firstDeliveredAt: time)
        #expect(handed.stored.index == 2)
        #expect(handed.attempt == 7)
        #expect(handed.tag == 9)
        #expect(handed.firstDeliveredAt == time)
        #expect(HandedMessage(stored: PublishedMessage(record), tag: 0, attempt: 1).firstDeliveredAt == nil)
        #expect(HandedMessage(stored: PublishedMessage(record), tag: 0, attempt: .max).attempt == Int(UInt32.max))
    }
}
