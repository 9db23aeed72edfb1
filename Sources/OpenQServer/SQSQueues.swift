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
    private var queues: [String: Queue] = [:]
    /// The queues whose redrive policy names each dead-letter queue, by its name: deleting a queue
    /// and `ListDeadLetterSourceQueues` cost no scan of every queue.
    private var redriveSources: [String: Set<String>] = [:]
    private var receipts: [String: Receipt] = [:]
    /// The handle of each message's latest delivery, by queue and sequence number: a new receipt
    /// of a message replaces the old one.
    private var latestReceipt: [String: [UInt64: String]] = [:]
    private var receiptsAtLastPrune = 0
    private let signer = ReceiptSigner()
    private let clock = ContinuousClock()
    /// Long polls in progress, ended at once by ``beginShutdown()``.
    private var polls: [UInt64: Task<[Delivery<SQSMessage>], any Error>] = [:]
    private var nextPoll: UInt64 = 0
    private var isShuttingDown = false

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
    private func configuration(
        _ attributes: QueueAttributes, deadLetter: DeadLetterPolicy, created: Date, modified: Date
    )
        -> TopicConfiguration
    {
        TopicConfiguration(
            capacity: QueueAttributes.capacity, overflow: .reject, deadLetter: deadLetter, retryBackoff: .immediate,
            durability: durable ? .durable : .inMemory,
            metadata: attributes.metadata(created: created, modified: modified))
    }

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

    // MARK: Names and URLs

    static func validateQueueName(_ name: String) throws(SQSError) {
        if name.hasSuffix(".fifo") {
            throw .unsupported("FIFO queues are not supported by openq-server yet; create a standard queue.")
        }
        guard (1...80).contains(name.count),
            name.unicodeScalars.allSatisfy({
                $0.isASCII && (CharacterSet.alphanumerics.contains($0) || $0 == "-" || $0 == "_")
            })
        else {
            throw .invalidParameterValue(
                "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length")
        }
    }

    /// The queue name in a queue URL (`http://host:port/<account>/<name>`), or the URL itself
    /// when it is only a name.
    static func queueName(fromURL url: String) -> String {
        url.split(separator: "/", omittingEmptySubsequences: true).last.map(String.init) ?? url
    }

    func arn(of name: String) -> String { "arn:aws:sqs:\(region):\(Self.accountID):\(name)" }

    private func queue(fromURL url: String) throws(SQSError) -> (name: String, queue: Queue) {
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
    private func deadLetterPolicy(for name: String, _ redrive: RedrivePolicy?) throws(SQSError) -> DeadLetterPolicy {
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
    private func indexRedrive(of name: String, from old: RedrivePolicy?, to new: RedrivePolicy?) {
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

    // MARK: Messages

    /// Checks a message against SQS's rules and the queue's `MaximumMessageSize`.
    /// - Returns: its size in bytes as SQS counts it.
    static func validate(_ message: SQSMessage, maximumSize: Int) throws(SQSError) -> Int {
        guard !message.body.isEmpty else {
            throw .invalidParameterValue("The request must contain the parameter MessageBody.")
        }
        let allowed = message.body.unicodeScalars.allSatisfy { scalar in
            switch scalar.value {
            case 0x9, 0xA, 0xD, 0x20...0xD7FF, 0xE000...0xFFFD, 0x10000...0x10FFFF: true
            default: false
            }
        }
        guard allowed else {
            throw SQSError(
                "InvalidMessageContents",
                "Invalid characters found. Valid unicode characters are #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF"
            )
        }
        guard message.attributes.count <= 10 else {
            throw .invalidParameterValue(
                "Number of message attributes [\(message.attributes.count)] exceeds the allowed maximum [10].")
        }
        var size = message.body.utf8.count
        for (name, attribute) in message.attributes {
            try validateAttributeName(name)
            let base = attribute.dataType.split(separator: ".", maxSplits: 1).first.map(String.init) ?? ""
            guard ["String", "Number", "Binary"].contains(base), attribute.dataType.utf8.count <= 256 else {
                throw .invalidParameterValue(
                    "The type of message (user) attribute '\(name)' is invalid. You must use only the following "
                        + "supported type prefixes: Binary, Number, String.")
            }
            if base == "Binary" {
                guard let binary = attribute.binaryValue, !binary.isEmpty, attribute.stringValue == nil else {
                    throw .invalidParameterValue(
                        "Message (user) attribute '\(name)' must contain a non-empty value of type 'Binary'.")
                }
                size += binary.count
            } else {
                guard let string = attribute.stringValue, !string.isEmpty, attribute.binaryValue == nil else {
                    throw .invalidParameterValue(
                        "Message (user) attribute '\(name)' must contain a non-empty value of type '\(base)'.")
                }
                if base == "Number", Decimal(string: string) == nil || Double(string) == nil {
                    throw .invalidParameterValue(
                        "Can't cast the value of message (user) attribute '\(name)' to a number.")
                }
                size += string.utf8.count
            }
            size += name.utf8.count + attribute.dataType.utf8.count
        }
        guard size <= maximumSize else {
            throw .invalidParameterValue(
                "One or more parameters are invalid. Reason: Message must be shorter than \(maximumSize) bytes.")
        }
        return size
    }

    static func validateAttributeName(_ name: String) throws(SQSError) {
        let lowered = name.lowercased()
        let valid =
            (1...256).contains(name.utf8.count)
            && name.unicodeScalars.allSatisfy {
                $0.isASCII && (CharacterSet.alphanumerics.contains($0) || $0 == "_" || $0 == "-" || $0 == ".")
            }
            && !name.hasPrefix(".") && !name.hasSuffix(".") && !name.contains("..")
            && !lowered.hasPrefix("aws.") && !lowered.hasPrefix("amazon.")
        guard valid else {
            throw .invalidParameterValue("Message (user) attribute name '\(name)' is invalid.")
        }
    }

    /// What a `SendMessage` (or one batch entry) asks for, read from its request.
    struct SendInput: Sendable {
        var body: String
        var attributes: [String: SQSMessageAttribute]
        var delay: Int?

        init(_ request: SQSRequest) throws(SQSError) {
            body = try request.requiredString("MessageBody")
            attributes = try request.messageAttributes("MessageAttributes")
            delay = try request.int("DelaySeconds")
        }
    }

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

    /// Forgets receipts whose visibility ended more than a minute ago (their messages are
    /// visible again, or were received again), once the table doubled since the last pass.
    private func pruneIfNeeded() {
        guard receipts.count > Swift.max(1_024, receiptsAtLastPrune * 2) else { return }
        let cutoff = clock.now - .seconds(60)
        for (handle, receipt) in receipts where receipt.visibleAt < cutoff {
            receipts[handle] = nil
            let sequence = receipt.delivery.message.sequenceNumber
            if latestReceipt[receipt.queue]?[sequence] == handle { latestReceipt[receipt.queue]?[sequence] = nil }
        }
        receiptsAtLastPrune = receipts.count
    }

    private func forget(_ handle: String) {
        guard let receipt = receipts.removeValue(forKey: handle) else { return }
        let sequence = receipt.delivery.message.sequenceNumber
        if latestReceipt[receipt.queue]?[sequence] == handle { latestReceipt[receipt.queue]?[sequence] = nil }
    }

    /// `DeleteMessage`: a stale handle (the message was deleted, or its visibility ended) succeeds
    /// without deleting anything, as SQS answers; a handle this server did not make for this
    /// queue is `ReceiptHandleIsInvalid`.
    func delete(url: String, handle: String) async throws(SQSError) {
        let (name, _) = try queue(fromURL: url)
        guard signer.isValid(handle, queue: name) else { throw .receiptHandleIsInvalid(handle) }
        guard let receipt = receipts[handle] else { return }
        forget(handle)
        do {
            try await receipt.delivery.ack()
        } catch let error as OpenQError
            where error.code == .receiptExpired || error.code == .receiptAlreadySettled
            || error.code == .subscriptionNotFound
        {
            return
        } catch {
            throw Self.mapped(error)
        }
    }

    /// `ChangeMessageVisibility`: 0 makes the message visible at once (its next receive counts),
    /// more sets its visibility to that many seconds from now. A stale handle is
    /// `MessageNotInflight`.
    func changeVisibility(url: String, handle: String, timeout: Int) async throws(SQSError) {
        let (name, _) = try queue(fromURL: url)
        guard signer.isValid(handle, queue: name) else { throw .receiptHandleIsInvalid(handle) }
        guard (0...43_200).contains(timeout) else {
            throw .invalidParameterValue(
                "Value \(timeout) for parameter VisibilityTimeout is invalid. Reason: Must be between 0 and 43200.")
        }
        guard let receipt = receipts[handle] else { throw .messageNotInflight() }
        do {
            if timeout == 0 {
                forget(handle)
                try await receipt.delivery.release()
            } else {
                try await receipt.delivery.extendVisibility(by: .seconds(timeout))
                receipts[handle]?.visibleAt = clock.now + .seconds(timeout)
            }
        } catch let error as OpenQError
            where error.code == .receiptExpired || error.code == .receiptAlreadySettled
            || error.code == .subscriptionNotFound
        {
            forget(handle)
            throw .messageNotInflight()
        } catch {
            throw Self.mapped(error)
        }
    }

    /// An OpenQ error as the SQS error a client should see.
    static func mapped(_ error: any Error) -> SQSError {
        if let error = error as? SQSError { return error }
        guard let error = error as? OpenQError else { return .internalFailure("\(error)") }
        switch error.code {
        case .topicNotFound: return .queueDoesNotExist(error.message)
        case .topicFull:
            return SQSError("OverLimit", "The queue holds its maximum number of messages: \(error.message)")
        case .invalidConfiguration, .invalidName: return .invalidParameterValue(error.message)
        case .shutDown: return SQSError("ServiceUnavailable", error.message, status: 503, senderFault: false)
        case .storeFull, .storeReadOnly, .storageFailed:
            // The store cannot commit for now (and the broker goes on when it can): SDKs retry a 503.
            return SQSError("ServiceUnavailable", error.message, status: 503, senderFault: false)
        default: return .internalFailure(error.message)
        }
    }
}
