// Demo scenario: poison messages dead-lettered, then redriven.

import OpenQ

struct Payment: Sendable {
    var id: Int
}

struct DeclinedError: Error, CustomStringConvertible {
    var id: Int
    var description: String { "card declined for payment \(id)" }
}

/// A handler with a bug: every payment fails.
struct BrokenProcessor: MessageHandler {
    func handle(_ message: Message<Payment>) async throws {
        throw DeclinedError(id: message.payload.id)
    }
}

enum DeadLetterScenario {
    static func run(_ options: DemoOptions, narrator: Narrator) async throws -> ScenarioOutcome {
        let count = min(max(options.messages, 1), 50)
        let queue = narrator.makeQueue()
        let payments = try await queue.createTopic(
            "payments", of: Payment.self,
            configuration: .init(
                deadLetter: .after(deliveries: 3),
                retryBackoff: .exponential(initial: .milliseconds(10), maximum: .milliseconds(80))
            ))
        let deadLetterTopic = try await queue.topic(payments.deadLetterTopicName!, of: Payment.self)
        narrator.say(
            "topic 'payments' dead-letters after 3 deliveries into '\(deadLetterTopic.name)'; backoff from 10 ms")

        let alerts = try await deadLetterTopic.subscribe()
        let firstAlert = Task { () -> Message<Payment>? in
            for await message in alerts { return message }
            return nil
        }
        let broken = try await payments.consume(subscription: "processor", with: BrokenProcessor(), concurrency: 4)
        narrator.say("a broken processor fails every one of \(count) payments")
        try await payments.publish(contentsOf: (1...count).map(Payment.init))

        try await waitUntil("every payment to be dead-lettered", seconds: options.patience) {
            payments.statistics().subscription("processor")?.counters.deadLettered == count
        }
        await broken.stop()
        let alert = await firstAlert.value
        if let alert {
            let headers = alert.headers
            narrator.say(
                "dead letter #\(alert.payload.id): attempts=\(headers[MessageHeader.attempts] ?? "?"), "
                    + "last error='\(headers[MessageHeader.lastError] ?? "?")', from \(headers[MessageHeader.sourceTopic] ?? "?")/"
                    + "\(headers[MessageHeader.sourceSubscription] ?? "?")"
            )
        }
        let processor = try payments.existingSubscription("processor")
        let nackedBeforeFix = try processor.statistics().counters.nacked

        let fixedHandled = Collected<Set<Int>>([])
        let fixed = try await payments.consume(subscription: "processor", concurrency: 4) { message in
            fixedHandled.withValue { _ = $0.insert(message.payload.id) }
        }
        let moved = try await queue.redrive(from: deadLetterTopic.name)
        narrator.say("the processor is fixed; redrive moved \(moved) dead letters back to 'payments/processor'")
        try await waitUntil("the fixed processor to drain the redriven payments", seconds: options.patience) {
            fixedHandled.current.count == count
        }
        try await waitUntil("the acknowledgements", seconds: options.patience) {
            (try? processor.statistics().counters.acked) == count
        }
        await fixed.stop()
        narrator.say("the fixed processor handled all \(fixedHandled.current.count)")

        var outcome = ScenarioOutcome(.deadLetter, statistics: await queue.statistics(), figures: ["redriven": moved])
        let deadLetters = try deadLetterTopic.existingSubscription(DeadLetterPolicy.subscriptionName).statistics()
        outcome.check("every payment was dead-lettered after 3 attempts", nackedBeforeFix == 3 * count)
        outcome.check(
            "dead letters name their attempts and last error",
            alert?.headers[MessageHeader.attempts] == "3"
                && alert?.headers[MessageHeader.lastError]?.contains("card declined") == true)
        outcome.check("redrive moved every dead letter back", moved == count)
        outcome.check("the fixed processor handled every payment", fixedHandled.current == Set(1...count))
        outcome.check("the dead-letter topic is empty", deadLetters.depth == 0 && deadLetters.inFlight == 0)
        outcome.checkAccounting()
        _ = await queue.shutdown(gracePeriod: .seconds(1))
        return outcome
    }
}
