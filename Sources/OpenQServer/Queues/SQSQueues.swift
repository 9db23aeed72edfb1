// The SQS queues of one broker: the registry of queues, their attributes and their redrive policies.

import Foundation
import Logging
import OpenQ

/// The SQS queues of one broker, and what each SQS action does to them.
///
/// Each SQS queue is an OpenQ topic of ``SQSMessage`` with one subscription,
/// ``SQSQueues/subscriptionName``, whose visibility timeout is the queue's `VisibilityTimeout`.
/// A `RedrivePolicy` is the topic's ``DeadLetterPolicy/after(deliveries:into:)``: the
/// dead-letter queue is an ordinary queue that clients receive from.
actor SQSQueues {
    /// The subscription every queue's topic has; SQS clients receive from it.
    static let subscriptionName = "sqs"
    /// The account id in queue URLs and ARNs.
    static let accountID = "000000000000"
    /// The region in queue ARNs: the server's.
    let region: String

    struct Queue {
        let topic: Topic<SQSMessage>
        let subscription: Subscription<SQSMessage>
        var attributes: QueueAttributes
        let createdAt: Date
        var modifiedAt: Date
    }

    /// A delivery a client holds, by its receipt handle.
    struct Receipt {
        let queue: String
        let delivery: Delivery<SQSMessage>
        /// When it stops being in flight unless extended (by the server's clock, for pruning).
        var visibleAt: ContinuousClock.Instant
    }

    let broker: MessageQueue
    let logger: Logger
    /// Whether queues are durable topics (the broker has a store): they survive a restart, and
    /// ``restore()`` reopens them.
    let durable: Bool
    var queues: [String: Queue] = [:]
    /// The queues whose redrive policy names each dead-letter queue, by its name: deleting a queue
    /// and `ListDeadLetterSourceQueues` cost no scan of every queue.
    var redriveSources: [String: Set<String>] = [:]
    var receipts: [String: Receipt] = [:]
    /// The handle of each message's latest delivery, by queue and sequence number: a new receipt
    /// of a message replaces the old one.
    var latestReceipt: [String: [UInt64: String]] = [:]
    var receiptsAtLastPrune = 0
    let signer = ReceiptSigner()
    let clock = ContinuousClock()
    /// Long polls in progress, ended at once by ``beginShutdown()``.
    var polls: [UInt64: Task<[Delivery<SQSMessage>], any Error>] = [:]
    var nextPoll: UInt64 = 0
    var isShuttingDown = false

    /// Ends every long poll now (with what it has, usually nothing) and makes later receives
    /// return at once: a server shutting down does not keep clients for 20 s.
    func beginShutdown() {
        isShuttingDown = true
        for poll in polls.values { poll.cancel() }
    }

    init(broker: MessageQueue, durable: Bool = false, region: String = "us-east-1", logger: Logger) {
        self.broker = broker
        self.durable = durable
        self.region = region
        self.logger = logger
    }

    /// The configuration of a queue's topic: its attributes are its metadata, its redrive policy
    /// its dead-letter policy.
    func configuration(
        _ attributes: QueueAttributes, deadLetter: DeadLetterPolicy, created: Date, modified: Date
    )
        -> TopicConfiguration
    {
        TopicConfiguration(
            capacity: QueueAttributes.capacity, overflow: .reject, deadLetter: deadLetter, retryBackoff: .immediate,
            durability: durable ? .durable : .inMemory,
            metadata: attributes.metadata(created: created, modified: modified))
    }

    // MARK: Names and URLs

    /// The queue name in a queue URL (`http://host:port/<account>/<name>`), or the URL itself
    /// when it is only a name.
    static func queueName(fromURL url: String) -> String {
        url.split(separator: "/", omittingEmptySubsequences: true).last.map(String.init) ?? url
    }

    func arn(of name: String) -> String { "arn:aws:sqs:\(region):\(Self.accountID):\(name)" }

    func queue(fromURL url: String) throws(SQSError) -> (name: String, queue: Queue) {
        let name = Self.queueName(fromURL: url)
        guard let queue = queues[name] else { throw .queueDoesNotExist(name) }
        return (name, queue)
    }

    // MARK: Queues

    func createQueue(name: String, attributes requested: [String: String]) async throws(SQSError) -> String {
        try Self.validateQueueName(name)
        var attributes = QueueAttributes()
        try attributes.apply(requested, creating: true)
        if let existing = queues[name] {
            guard existing.attributes.matches(requested) else {
                throw SQSError(
                    "QueueNameExists", query: "QueueAlreadyExists",
                    "A queue already exists with the same name and a different value for attribute(s) "
                        + requested.keys.sorted().joined(separator: ", "))
            }
            return name
        }
        let deadLetter = try deadLetterPolicy(for: name, attributes.redrivePolicy)
        let now = Date()
        do {
            let topic = try await broker.createTopic(
                name, of: SQSMessage.self,
                configuration: configuration(attributes, deadLetter: deadLetter, created: now, modified: now))
            let subscription = try await topic.subscription(
                Self.subscriptionName,
                acknowledgement: .manual(visibilityTimeout: .seconds(max(1, attributes.visibilityTimeout))))
            if queues[name] == nil {
                queues[name] = Queue(
                    topic: topic, subscription: subscription, attributes: attributes, createdAt: now, modifiedAt: now)
                indexRedrive(of: name, from: nil, to: attributes.redrivePolicy)
            }
        } catch let error as OpenQError where error.code == .topicAlreadyExists || error.code == .payloadTypeMismatch {
            throw SQSError(
                "QueueNameExists", query: "QueueAlreadyExists", "A topic named \(name) exists already: \(error.message)"
            )
        } catch {
            throw Self.mapped(error)
        }
        logger.info("Created queue", metadata: ["queue": "\(name)"])
        return name
    }

    /// The OpenQ dead-letter policy for a `RedrivePolicy`.
    func deadLetterPolicy(for name: String, _ redrive: RedrivePolicy?) throws(SQSError) -> DeadLetterPolicy {
        guard let redrive else { return .disabled }
        guard redrive.targetName != name else {
            throw .invalidAttributeValue("RedrivePolicy", "A queue cannot be its own dead-letter queue.")
        }
        guard queues[redrive.targetName] != nil else {
            throw .invalidAttributeValue(
                "RedrivePolicy", "Dead-letter target does not exist: \(redrive.deadLetterTargetArn)")
        }
        return .after(deliveries: redrive.maxReceiveCount, into: redrive.targetName)
    }

    /// Keeps ``redriveSources`` in step with a queue's redrive policy.
    func indexRedrive(of name: String, from old: RedrivePolicy?, to new: RedrivePolicy?) {
        if let old { redriveSources[old.targetName]?.remove(name) }
        if let new { redriveSources[new.targetName, default: []].insert(name) }
    }

    func getQueueURL(name: String) throws(SQSError) -> String {
        guard queues[name] != nil else { throw .queueDoesNotExist(name) }
        return name
    }

    func listQueues(prefix: String?) -> [String] {
        queues.keys.filter { prefix == nil || $0.hasPrefix(prefix!) }.sorted()
    }

    func listDeadLetterSourceQueues(url: String) throws(SQSError) -> [String] {
        let (name, _) = try queue(fromURL: url)
        return redriveSources[name, default: []].sorted()
    }

    func deleteQueue(url: String) async throws(SQSError) {
        let (name, queue) = try queue(fromURL: url)
        // SQS lets a dead-letter queue go while others name it: they stop dead-lettering.
        for source in redriveSources[name, default: []].sorted() {
            do {
                try await broker.setDeadLetterPolicy(.disabled, of: source)
            } catch {
                throw Self.mapped(error)
            }
            indexRedrive(of: source, from: queues[source]?.attributes.redrivePolicy, to: nil)
            queues[source]?.attributes.redrivePolicy = nil
        }
        indexRedrive(of: name, from: queues[name]?.attributes.redrivePolicy, to: nil)
        redriveSources[name] = nil
        queues[name] = nil
        for handle in latestReceipt.removeValue(forKey: name)?.values ?? [:].values { receipts[handle] = nil }
        do {
            try await broker.deleteTopic(queue.topic.name)
        } catch let error as OpenQError where error.code == .topicNotFound {
            // Deleted from Swift meanwhile.
        } catch {
            throw Self.mapped(error)
        }
        logger.info("Deleted queue", metadata: ["queue": "\(name)"])
    }

    func purgeQueue(url: String) async throws(SQSError) {
        let (name, queue) = try queue(fromURL: url)
        do {
            _ = try await queue.subscription.purge()
        } catch {
            throw Self.mapped(error)
        }
        for handle in latestReceipt.removeValue(forKey: name)?.values ?? [:].values { receipts[handle] = nil }
    }

    func getQueueAttributes(url: String, names: [String]) throws(SQSError) -> [String: String] {
        let (name, queue) = try queue(fromURL: url)
        var all = queue.attributes.values
        all["QueueArn"] = arn(of: name)
        all["CreatedTimestamp"] = String(Int(queue.createdAt.timeIntervalSince1970))
        all["LastModifiedTimestamp"] = String(Int(queue.modifiedAt.timeIntervalSince1970))
        let statistics = try? queue.subscription.statistics()
        all["ApproximateNumberOfMessages"] = String(statistics?.depth ?? 0)
        all["ApproximateNumberOfMessagesNotVisible"] = String(statistics?.inFlight ?? 0)
        all["ApproximateNumberOfMessagesDelayed"] = String(statistics?.scheduled ?? 0)
        if names.isEmpty { return [:] }
        if names.contains("All") { return all }
        var result: [String: String] = [:]
        for requested in names {
            guard QueueAttributes.readable.contains(requested) else { throw .invalidAttributeName(requested) }
            if let value = all[requested] { result[requested] = value }
        }
        return result
    }

    func setQueueAttributes(url: String, attributes requested: [String: String]) async throws(SQSError) {
        let (name, queue) = try queue(fromURL: url)
        var attributes = queue.attributes
        try attributes.apply(requested, creating: false)
        do {
            if attributes.visibilityTimeout != queue.attributes.visibilityTimeout {
                try await queue.subscription.setVisibilityTimeout(.seconds(max(1, attributes.visibilityTimeout)))
            }
            if attributes.redrivePolicy != queue.attributes.redrivePolicy {
                let policy = try deadLetterPolicy(for: name, attributes.redrivePolicy)
                try await broker.setDeadLetterPolicy(policy, of: name)
            }
            try await broker.setMetadata(attributes.metadata(created: queue.createdAt, modified: Date()), of: name)
        } catch let error as SQSError {
            throw error
        } catch {
            throw Self.mapped(error)
        }
        indexRedrive(of: name, from: queues[name]?.attributes.redrivePolicy, to: attributes.redrivePolicy)
        queues[name]?.attributes = attributes
        queues[name]?.modifiedAt = Date()
    }
}
