// Reopening the queues a durable broker's store holds, at the server's start.

import Foundation
import Logging
import OpenQ

extension SQSQueues {
    /// Reopens the queues a durable broker's store holds (dead-letter queues before the queues
    /// that name them), with their attributes, waiting and in-flight messages.
    /// - Returns: how many queues were reopened.
    func restore() async throws -> Int {
        guard durable else { return 0 }
        let typeName = String(reflecting: SQSMessage.self)
        var pending = try await broker.storedTopics().filter { $0.payloadType == typeName }
        var restored = 0
        while !pending.isEmpty {
            let ready = pending.filter { stored in
                let policy = stored.configuration.deadLetter
                guard policy.maxDeliveries != nil, policy.usesExistingTopic, let target = policy.topicName else {
                    return true
                }
                return queues[target] != nil || !pending.contains { $0.name == target }
            }
            guard !ready.isEmpty else {
                throw SQSServerError("The stored queues' dead-letter policies form a circle: \(pending.map(\.name))")
            }
            for stored in ready {
                let configuration = stored.configuration
                let topic: Topic<SQSMessage>
                let subscription: Subscription<SQSMessage>
                do {
                    topic = try await broker.createTopic(stored.name, of: SQSMessage.self, configuration: configuration)
                    if let existing = try? topic.existingSubscription(Self.subscriptionName) {
                        subscription = existing
                    } else {
                        subscription = try await topic.subscription(
                            Self.subscriptionName, acknowledgement: .manual(visibilityTimeout: .seconds(30)))
                    }
                } catch {
                    // One queue that cannot be reopened must not keep the others down.
                    logger.error(
                        "Could not reopen a stored queue", metadata: ["queue": "\(stored.name)", "error": "\(error)"])
                    continue
                }
                // The metadata holds every attribute (VisibilityTimeout 0 too, which the subscription
                // keeps as 1 s: OpenQ's timeouts are positive; a receive with 0 releases at once).
                var attributes = QueueAttributes(metadata: configuration.metadata)
                if configuration.deadLetter.usesExistingTopic, let target = configuration.deadLetter.topicName,
                    let count = configuration.deadLetter.maxDeliveries
                {
                    attributes.redrivePolicy = RedrivePolicy(
                        maxReceiveCount: count, deadLetterTargetArn: arn(of: target))
                } else {
                    attributes.redrivePolicy = nil
                }
                let (created, modified) = QueueAttributes.timestamps(in: configuration.metadata)
                queues[stored.name] = Queue(
                    topic: topic, subscription: subscription, attributes: attributes, createdAt: created,
                    modifiedAt: modified)
                indexRedrive(of: stored.name, from: nil, to: attributes.redrivePolicy)
                restored += 1
            }
            pending.removeAll { stored in ready.contains { $0.name == stored.name } }
        }
        if restored > 0 { logger.info("Reopened stored queues", metadata: ["count": "\(restored)"]) }
        return restored
    }
}
