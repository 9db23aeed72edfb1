import Foundation
import MetricsTestKit
import OpenQTesting
import Testing

@testable import OpenQ

@Suite("Redrive: a redriven message is the message its source published")
struct RedriveIdentityTests {
    @Test func redrive_restoresTopicSequenceNumberAndPublishTime_andStripsDeadLetterHeaders() async throws {
        let clock = ManualClock()
        let queue = makeQueue(clock: clock)
        let topic = try await queue.createTopic(
            "t", of: Int.self, configuration: .init(deadLetter: .after(deliveries: 1)))
        let work = try await topic.subscription("w")
        try await topic.publish(contentsOf: [1, 2])
        clock.advance(by: .seconds(7))
        try await topic.publish(3, headers: ["k": "v"])
        let batch = try await work.receive(max: 3)
        let original = batch[2].message
        try await batch[0].ack()
        try await batch[1].ack()
        clock.advance(by: .seconds(5))
        try await batch[2].nack(error: "boom")
        let letters = try await queue.topic("t.dlq", of: Int.self).existingSubscription("dead-letters")
        #expect(try letters.statistics().depth == 1)

        #expect(try await queue.redrive(from: "t.dlq") == 1)
        let redriven = try #require(try await work.receive(max: 1).first)
        #expect(redriven.message.topic == "t")
        #expect(redriven.message.sequenceNumber == 3)
        #expect(redriven.message.publishedAt == original.publishedAt)
        #expect(redriven.message.id == original.id)
        #expect(redriven.message.headers == ["k": "v"], "every openq- dead-letter header is stripped")
        #expect(redriven.attempt == 1)

        // It fails again: the new dead letter names the right source sequence number and time.
        clock.advance(by: .seconds(5))
        try await redriven.nack(error: "boom again")
        let letter = try #require(try await letters.receive(max: 1).first).message
        #expect(letter.topic == "t.dlq")
        #expect(letter.headers[MessageHeader.sourceSequenceNumber] == "3")
        #expect(letter.headers[MessageHeader.lastError] == "boom again")
        let first = try #require(letter.headers[MessageHeader.firstPublishedAt].flatMap(Double.init))
        #expect(abs(first - original.publishedAt.timeIntervalSince1970) < 0.001)
    }
}
