// Sending and receiving messages: SendMessage(Batch) and ReceiveMessage with its long poll.

import Foundation
import Logging
import OpenQ

extension SQSQueues {
    /// The validated message and delay of a `SendMessage` (or of one batch entry).
    func prepare(url: String, input: SendInput) throws(SQSError) -> (
        queue: Queue, message: SQSMessage, delay: Int, size: Int
    ) {
        let (_, queue) = try queue(fromURL: url)
        let message = SQSMessage(body: input.body, attributes: input.attributes)
        let size = try Self.validate(message, maximumSize: queue.attributes.maximumMessageSize)
        let delay = input.delay ?? queue.attributes.delaySeconds
        guard (0...900).contains(delay) else {
            throw .invalidParameterValue(
                "Value \(delay) for parameter DelaySeconds is invalid. Reason: must be between 0 and 900.")
        }
        return (queue, message, delay, size)
    }

    func send(_ message: SQSMessage, to queue: Queue, delay: Int) async throws(SQSError) {
        do {
            try await queue.topic.publish(message, delay: .seconds(delay))
        } catch {
            throw Self.mapped(error)
        }
    }

    struct Received {
        let message: SQSMessage
        let handle: String
        let attempt: Int
        let sentAt: Date
        let firstReceivedAt: Date?
    }

    /// `ReceiveMessage`; a `wait` of `nil` is the queue's `ReceiveMessageWaitTimeSeconds`.
    func receive(url: String, max: Int, wait: Int?, visibilityTimeout: Int?) async throws(SQSError) -> [Received] {
        let (name, queue) = try queue(fromURL: url)
        let wait = wait ?? queue.attributes.receiveMessageWaitTimeSeconds
        guard (1...10).contains(max) else {
            throw .invalidParameterValue(
                "Value \(max) for parameter MaxNumberOfMessages is invalid. Reason: Must be between 1 and 10, if provided."
            )
        }
        guard (0...20).contains(wait) else {
            throw .invalidParameterValue(
                "Value \(wait) for parameter WaitTimeSeconds is invalid. Reason: Must be >= 0 and <= 20, if provided.")
        }
        if let visibilityTimeout, !(0...43_200).contains(visibilityTimeout) {
            throw .invalidParameterValue(
                "Value \(visibilityTimeout) for parameter VisibilityTimeout is invalid. Reason: Must be between 0 and 43200."
            )
        }
        let timeout = visibilityTimeout ?? queue.attributes.visibilityTimeout
        let deliveries: [Delivery<SQSMessage>]
        let subscription = queue.subscription
        let pollFor = isShuttingDown ? 0 : wait
        let poll = nextPoll
        nextPoll += 1
        let task = Task {
            try await subscription.receive(
                max: max, waitingUpTo: .seconds(pollFor), visibilityTimeout: .seconds(Swift.max(timeout, 1)))
        }
        polls[poll] = task
        defer { polls[poll] = nil }
        do {
            deliveries = try await task.value
        } catch is CancellationError {
            return []
        } catch let error as OpenQError where error.code == .shutDown || error.code == .subscriptionNotFound {
            return []
        } catch {
            throw Self.mapped(error)
        }
        var received: [Received] = []
        let visibleAt = clock.now + .seconds(timeout)
        for delivery in deliveries {
            let handle = signer.makeHandle(queue: name)
            received.append(
                Received(
                    message: delivery.message.payload, handle: handle, attempt: delivery.attempt,
                    sentAt: delivery.message.publishedAt, firstReceivedAt: delivery.firstDeliveredAt))
            if timeout == 0 {
                // Visible again at once, as SQS does with VisibilityTimeout 0.
                try? await delivery.release()
                continue
            }
            let sequence = delivery.message.sequenceNumber
            if let previous = latestReceipt[name]?[sequence] { receipts[previous] = nil }
            latestReceipt[name, default: [:]][sequence] = handle
            receipts[handle] = Receipt(queue: name, delivery: delivery, visibleAt: visibleAt)
        }
        pruneIfNeeded()
        return received
    }
}
