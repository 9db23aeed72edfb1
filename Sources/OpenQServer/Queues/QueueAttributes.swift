// A queue's attributes with SQS's defaults and bounds, and its RedrivePolicy.

import Foundation

/// A queue's `RedrivePolicy`: after `maxReceiveCount` receives without a delete, a message moves
/// to the dead-letter queue `deadLetterTargetArn`.
struct RedrivePolicy: Equatable, Sendable {
    var maxReceiveCount: Int
    var deadLetterTargetArn: String

    /// The dead-letter queue's name: the last `:` field of the ARN.
    var targetName: String { deadLetterTargetArn.split(separator: ":").last.map(String.init) ?? deadLetterTargetArn }

    init(maxReceiveCount: Int, deadLetterTargetArn: String) {
        self.maxReceiveCount = maxReceiveCount
        self.deadLetterTargetArn = deadLetterTargetArn
    }

    /// Parses the JSON SQS clients send (`maxReceiveCount` as a number or a string).
    init(json: String) throws(SQSError) {
        guard let object = (try? JSONReader.parse(Array(json.utf8))) as? [String: Any] else {
            throw .invalidAttributeValue("RedrivePolicy", "Redrive policy is not a valid JSON map.")
        }
        let count: Int? =
            switch object["maxReceiveCount"] {
            case let number as Int: number
            case let number as Double: Int(exactly: number)
            case let string as String: Int(string)
            default: nil
            }
        guard let count, (1...1_000).contains(count) else {
            throw .invalidAttributeValue(
                "RedrivePolicy", "Value for parameter maxReceiveCount must be an integer between 1 and 1000.")
        }
        guard let arn = object["deadLetterTargetArn"] as? String, arn.hasPrefix("arn:aws:sqs:"),
            arn.split(separator: ":").count == 6
        else {
            throw .invalidAttributeValue(
                "RedrivePolicy", "Value for parameter deadLetterTargetArn is not a valid SQS ARN.")
        }
        self.init(maxReceiveCount: count, deadLetterTargetArn: arn)
    }

    var json: String { #"{"deadLetterTargetArn":"\#(deadLetterTargetArn)","maxReceiveCount":\#(maxReceiveCount)}"# }
}

/// The attributes of a queue that clients set, with SQS's defaults and bounds.
struct QueueAttributes: Equatable, Sendable {
    /// How many messages a queue holds (waiting, delayed and in flight) before `SendMessage`
    /// answers `OverLimit`: SQS has no such bound, a broker in one process's memory needs one.
    static let capacity = 1_000_000

    var visibilityTimeout = 30
    var delaySeconds = 0
    /// SQS's default since 2025 (it was 262 144): a queue created without the attribute takes a
    /// message of up to 1 MiB.
    var maximumMessageSize = 1_048_576
    var messageRetentionPeriod = 345_600
    var receiveMessageWaitTimeSeconds = 0
    var redrivePolicy: RedrivePolicy?

    /// The attributes `GetQueueAttributes` answers (besides these settable ones).
    static let readable: Set<String> = [
        "VisibilityTimeout", "DelaySeconds", "MaximumMessageSize", "MessageRetentionPeriod",
        "ReceiveMessageWaitTimeSeconds", "RedrivePolicy", "QueueArn", "CreatedTimestamp", "LastModifiedTimestamp",
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed",
        "SqsManagedSseEnabled",
    ]

    /// The settable attributes as SQS lists them.
    var values: [String: String] {
        var values = [
            "VisibilityTimeout": String(visibilityTimeout),
            "DelaySeconds": String(delaySeconds),
            "MaximumMessageSize": String(maximumMessageSize),
            "MessageRetentionPeriod": String(messageRetentionPeriod),
            "ReceiveMessageWaitTimeSeconds": String(receiveMessageWaitTimeSeconds),
            "SqsManagedSseEnabled": "false",
        ]
        if let redrivePolicy { values["RedrivePolicy"] = redrivePolicy.json }
        return values
    }

    /// Applies attributes a client sent, checking each name and bound; nothing changes when one
    /// is refused.
    mutating func apply(_ requested: [String: String], creating: Bool) throws(SQSError) {
        var updated = self
        for (name, value) in requested {
            func integer(in range: ClosedRange<Int>) throws(SQSError) -> Int {
                guard let number = Int(value), range.contains(number) else {
                    throw .invalidAttributeValue(
                        name, "Must be an integer from \(range.lowerBound) to \(range.upperBound).")
                }
                return number
            }
            switch name {
            case "VisibilityTimeout": updated.visibilityTimeout = try integer(in: 0...43_200)
            case "DelaySeconds": updated.delaySeconds = try integer(in: 0...900)
            case "MaximumMessageSize": updated.maximumMessageSize = try integer(in: 1_024...1_048_576)
            case "MessageRetentionPeriod": updated.messageRetentionPeriod = try integer(in: 60...1_209_600)
            case "ReceiveMessageWaitTimeSeconds": updated.receiveMessageWaitTimeSeconds = try integer(in: 0...20)
            case "RedrivePolicy": updated.redrivePolicy = value.isEmpty ? nil : try RedrivePolicy(json: value)
            case "SqsManagedSseEnabled":
                guard value == "false" else {
                    throw .invalidAttributeValue(
                        name, "openq-server does not encrypt queues (SqsManagedSseEnabled=false only).")
                }
            case "FifoQueue", "ContentBasedDeduplication", "DeduplicationScope", "FifoThroughputLimit":
                guard value == "false" else {
                    throw .unsupported("FIFO queues are not supported by openq-server yet; create a standard queue.")
                }
            default:
                throw .invalidAttributeName(name)
            }
        }
        self = updated
    }

    /// The attributes as a topic's metadata (`sqs.` and the attribute's name), with the queue's
    /// creation and modification times: what a durable store keeps for a restart.
    func metadata(created: Date, modified: Date) -> [String: String] {
        var metadata: [String: String] = [:]
        for (name, value) in values where name != "RedrivePolicy" && name != "SqsManagedSseEnabled" {
            metadata["sqs.\(name)"] = value
        }
        metadata["sqs.CreatedTimestamp"] = String(Int(created.timeIntervalSince1970))
        metadata["sqs.LastModifiedTimestamp"] = String(Int(modified.timeIntervalSince1970))
        return metadata
    }

    /// SQS's defaults.
    init() {}

    /// Attributes read back from a topic's metadata (the redrive policy comes from its
    /// dead-letter policy, the visibility timeout from its subscription).
    init(metadata: [String: String]) {
        self.init()
        var values: [String: String] = [:]
        for (key, value) in metadata where key.hasPrefix("sqs.") { values[String(key.dropFirst(4))] = value }
        values["CreatedTimestamp"] = nil
        values["LastModifiedTimestamp"] = nil
        try? apply(values, creating: true)
    }

    static func timestamps(in metadata: [String: String]) -> (created: Date, modified: Date) {
        func date(_ key: String) -> Date {
            metadata[key].flatMap(TimeInterval.init).map(Date.init(timeIntervalSince1970:)) ?? Date()
        }
        return (date("sqs.CreatedTimestamp"), date("sqs.LastModifiedTimestamp"))
    }

    /// Whether `CreateQueue` with these attributes names the queue as it is (SQS answers
    /// `QueueAlreadyExists` otherwise).
    func matches(_ requested: [String: String]) -> Bool {
        var other = QueueAttributes()
        guard (try? other.apply(requested, creating: true)) != nil else { return false }
        let current = values
        return requested.keys.allSatisfy { current[$0] == other.values[$0] || $0 == "FifoQueue" }
    }
}
