// Dead-letter topics on the broker: where a topic's dead letters go, policy changes, and redrive.

extension MessageQueue {
    /// Checks where a topic's dead letters would go, without creating anything (a durable topic
    /// runs this before it touches the store).
    /// - Returns: the dead-letter topic's name, and its runtime when it exists.
    func checkDeadLetterTopic(
        for name: String,
        payloadType: Any.Type,
        configuration: TopicConfiguration,
        isDurable: Bool
    ) throws -> (name: String, existing: TopicRuntime?) {
        let deadLetterName = configuration.deadLetter.topicName ?? "\(name).dlq"
        guard configuration.deadLetter.topicName != nil || deadLetterName.utf8.count <= 255 else {
            throw OpenQError(
                .invalidName,
                "Topic '\(name)' has \(name.utf8.count) characters, too many for its default dead-letter topic "
                    + "'<name>.dlq' (at most 255): use a name of at most 251 characters, name the dead-letter "
                    + "topic with DeadLetterPolicy.after(deliveries:topic:), or pass deadLetter: .disabled."
            )
        }
        try validateName(deadLetterName, kind: "dead-letter topic")
        guard deadLetterName != name else {
            throw OpenQError.invalidConfiguration(
                "Topic '\(name)' cannot be its own dead-letter topic; name another one in DeadLetterPolicy.")
        }
        if configuration.deadLetter.usesExistingTopic, topics[deadLetterName] == nil {
            throw OpenQError(
                .topicNotFound,
                "Dead-letter topic '\(deadLetterName)' of '\(name)' does not exist: create it first, or use "
                    + "DeadLetterPolicy.after(deliveries:topic:) to have OpenQ create it.")
        }
        guard let existing = topics[deadLetterName] else { return (deadLetterName, nil) }
        guard existing.carries(payloadType) else {
            throw OpenQError(
                .payloadTypeMismatch,
                "Dead-letter topic '\(deadLetterName)' carries \(existing.payloadType), not \(payloadType); "
                    + "name another dead-letter topic in DeadLetterPolicy.after(deliveries:topic:)."
            )
        }
        guard existing.isDurable || !isDurable else {
            throw OpenQError.invalidConfiguration(
                "Durable topic '\(name)' cannot dead-letter into the in-memory topic '\(deadLetterName)': its "
                    + "dead letters would not survive a restart. Name another dead-letter topic.")
        }
        var next: TopicRuntime? = existing
        while let link = next {
            guard link.name != name else {
                throw OpenQError.invalidConfiguration(
                    "Topic '\(name)' cannot dead-letter into '\(deadLetterName)': dead letters would go round in a "
                        + "circle ('\(deadLetterName)' leads back to '\(name)').")
            }
            next = link.deadLetterTarget
        }
        return (deadLetterName, existing)
    }
    func deadLetterTopic(
        for name: String,
        payloadType: Any.Type,
        configuration: TopicConfiguration,
        durable: DurableSetup?
    ) throws -> TopicRuntime {
        let (deadLetterName, existing) = try checkDeadLetterTopic(
            for: name, payloadType: payloadType, configuration: configuration, isDurable: durable != nil)
        let runtime: TopicRuntime
        if let existing {
            if configuration.deadLetter.usesExistingTopic { return existing }
            runtime = existing
        } else {
            runtime = TopicRuntime(
                name: deadLetterName,
                payloadType: payloadType,
                configuration: Self.deadLetterConfiguration(of: configuration),
                clock: clock,
                driver: driver,
                logger: logger,
                deadLetterTarget: nil,
                seed: seeds.next(),
                parkedPublisherWarning: self.configuration.parkedPublisherWarning,
                interceptors: self.configuration.interceptors,
                durable: durable?.binding
            )
            if let durable { try durable.recover(runtime) }
        }
        try runtime.ensureSubscription(
            DeadLetterPolicy.subscriptionName, configuration: .init(acknowledgement: .manual))
        topics[deadLetterName] = runtime
        return runtime
    }
    /// The configuration of the dead-letter topic a topic's policy creates.
    static func deadLetterConfiguration(of configuration: TopicConfiguration) -> TopicConfiguration {
        TopicConfiguration(
            capacity: configuration.deadLetter.capacity,
            overflow: .dropOldest,
            deadLetter: .disabled,
            retryBackoff: configuration.retryBackoff,
            durability: configuration.durability
        )
    }
    /// Moves messages from a dead-letter topic back to the subscriptions they came from, with a
    /// fresh attempt count and without the dead-letter headers.
    ///
    /// Messages whose source topic or subscription no longer exists stay in the dead-letter topic.
    /// Redriven messages may take a subscription past its capacity; redrive in chunks with `max`
    /// to keep a bound. A durable dead-letter topic whose messages wait in the store (beyond
    /// `residentMessages`) is read back page by page as the redrive goes.
    /// - Returns: how many messages moved.
    @discardableResult
    public func redrive(from deadLetterTopic: String, max: Int = .max) async throws -> Int {
        guard let runtime = self.topics[deadLetterTopic] else { throw OpenQError.topicNotFound(deadLetterTopic) }
        guard max >= 1 else { throw OpenQError.invalidConfiguration("redrive(max:) needs max ≥ 1; it was \(max).") }
        let topics = self.topics
        let mark = store?.journalMark ?? 0
        var moved = runtime.redrive(max: max) { topics[$0] }
        // A paging dead-letter topic: wait for each page it reads back, and go on.
        while moved < max, await runtime.waitForPage(of: DeadLetterPolicy.subscriptionName) {
            let more = runtime.redrive(max: max - moved) { topics[$0] }
            if more == 0 { break }
            moved += more
        }
        try await store?.sync(since: mark)
        logger.info("Redrove dead letters", metadata: ["deadLetterTopic": "\(deadLetterTopic)", "count": "\(moved)"])
        return moved
    }
    /// Changes a topic's dead-letter policy while it runs: from the next failed delivery on,
    /// messages are dead-lettered by the new bound into the new dead-letter topic.
    ///
    /// ```swift
    /// let failed = try await queue.createTopic("failed-jobs", of: Job.self)
    /// try await queue.setDeadLetterPolicy(.after(deliveries: 3, into: "failed-jobs"), of: "jobs")
    /// ```
    ///
    /// The dead-letter topic is resolved as at ``createTopic(_:of:configuration:)-3a1sr``: a
    /// ``DeadLetterPolicy/after(deliveries:topic:capacity:)`` topic is created when missing (with its
    /// ``DeadLetterPolicy/subscriptionName`` subscription), a ``DeadLetterPolicy/after(deliveries:into:)``
    /// topic must exist. Deliveries in flight keep their attempt counts and are judged by the new
    /// bound when they next fail; messages already dead-lettered stay where they are. Pass
    /// ``DeadLetterPolicy/disabled`` to stop dead-lettering (rejected messages are then
    /// discarded). The old dead-letter topic is left as it is.
    ///
    /// A durable topic's new configuration is committed before this returns and is the one a
    /// restart finds (``storedTopics()``): declaring the topic again with the configuration it was
    /// created with is then ``OpenQError/Code/topicAlreadyExists``, as Amazon SQS answers
    /// `CreateQueue` with other attributes.
    /// - Throws: ``OpenQError/Code/topicNotFound`` (the topic, or an `into:` dead-letter topic),
    ///   ``OpenQError/Code/invalidConfiguration`` (an invalid bound, the topic itself, a circle of
    ///   dead-letter topics, an in-memory dead-letter topic for a durable topic),
    ///   ``OpenQError/Code/payloadTypeMismatch``, ``OpenQError/Code/invalidName``,
    ///   ``OpenQError/Code/shutDown``, ``OpenQError/Code/storageFailed``.
    public func setDeadLetterPolicy(_ policy: DeadLetterPolicy, of topic: String) async throws {
        guard let source = topics[topic] else { throw OpenQError.topicNotFound(topic) }
        guard !isShutDown else { throw OpenQError.shutDown("The message queue") }
        var configuration = source.configuration
        configuration.deadLetter = policy
        try configuration.validate()
        var setup: DurableSetup?
        if let binding = source.durableBinding {
            setup = DurableSetup(binding: binding)
            if policy.maxDeliveries != nil,
                case (let deadLetterName, nil) = try checkDeadLetterTopic(
                    for: topic, payloadType: source.payloadType, configuration: configuration, isDurable: true)
            {
                setup?.recovered[deadLetterName] = try await binding.store.openTopic(
                    name: deadLetterName, payloadType: binding.payloadTypeName,
                    configuration: Self.deadLetterConfiguration(of: configuration))
            }
        }
        // The await above lets other calls of this actor run: the topic may be gone.
        guard topics[topic] === source, !isShutDown else { throw OpenQError.topicNotFound(topic) }
        var target: TopicRuntime?
        if policy.maxDeliveries != nil {
            target = try deadLetterTopic(
                for: topic, payloadType: source.payloadType, configuration: configuration, durable: setup)
        }
        if let setup, let store {
            for (name, row, reason) in setup.undecodable {
                try await store.quarantine(topic: name, sequence: row.sequence, payload: row.payload, reason: reason)
            }
        }
        // The policy changes in memory at once (a durable topic's commit follows), so the index does.
        if let previous = source.deadLetterTopicName { deadLetterSources[previous]?.remove(topic) }
        if let target { deadLetterSources[target.name, default: []].insert(topic) }
        try await source.setDeadLetterPolicy(policy, target: target)
        logger.info(
            "Changed dead-letter policy",
            metadata: ["topic": "\(topic)", "deadLetterTopic": "\(target?.name ?? "none")"])
    }
}
