// Durable topics on a shared backend: declared in the database, where every broker on it finds them.

extension MessageQueue {
    /// Creates a durable topic on the broker's shared backend, or finds it: in the database when
    /// another broker created it, here when this broker did. Its dead-letter topic is created or
    /// found the same way, with its ``DeadLetterPolicy/subscriptionName`` subscription, and the
    /// policy is written where the database's claims read it.
    func createSharedTopic<Payload: Sendable>(
        _ name: String, of type: Payload.Type, configuration: TopicConfiguration, codec: some PayloadCodec<Payload>,
        backend: any SharedBackend
    ) async throws -> Topic<Payload> {
        try validateName(name, kind: "topic")
        try configuration.validate()
        if let existing = try existingTopic(name, of: type, configuration: configuration) { return existing }
        guard !isShutDown else { throw OpenQError.shutDown("The message queue") }
        guard !configuration.retention.isEnabled else {
            throw OpenQError(
                .unsupportedOperation,
                "Topic '\(name)' asks for retention, which a shared backend (PostgreSQL) does not keep yet; create it "
                    + "with retention: .none.")
        }
        var deadLetterTarget: TopicRuntime?
        if configuration.deadLetter.maxDeliveries != nil {
            let (deadLetterName, existing) = try checkDeadLetterTopic(
                for: name, payloadType: Payload.self, configuration: configuration, isDurable: true)
            if let existing, existing.shared == nil {
                throw OpenQError.invalidConfiguration(
                    "Topic '\(name)' is shared by the brokers of its database, so its dead-letter topic "
                        + "'\(deadLetterName)' must be too; it is not.")
            }
            let target: TopicRuntime
            if let existing {
                target = existing
            } else {
                target = try await createSharedTopic(
                    deadLetterName, of: type, configuration: Self.deadLetterConfiguration(of: configuration),
                    codec: codec, backend: backend
                ).runtime
            }
            if !configuration.deadLetter.usesExistingTopic {
                _ = try await target.subscribe(
                    named: DeadLetterPolicy.subscriptionName, configuration: .init(acknowledgement: .manual))
            }
            deadLetterTarget = target
        }
        let payloadTypeName = String(reflecting: Payload.self)
        let engine = try await backend.openTopic(
            name: name, payloadType: payloadTypeName, configuration: configuration)
        try await engine.setDeadLetters(
            maxDeliveries: configuration.deadLetter.maxDeliveries, into: deadLetterTarget?.name)
        // Another call of this actor may have declared it while this one waited for the database.
        if let existing = try existingTopic(name, of: type, configuration: configuration) { return existing }
        guard !isShutDown else { throw OpenQError.shutDown("The message queue") }
        let shared = SharedTopic(
            engine: engine, pollInterval: backend.pollInterval, payloadTypeName: payloadTypeName,
            encode: { record, index in
                try codec.encode(unsafeDowncast(record, to: TypedRecord<Payload>.self).payload(at: index))
            },
            decode: { row, topic in try Self.record(of: row, in: topic, codec: codec) })
        let runtime = TopicRuntime(
            name: name,
            payloadType: Payload.self,
            configuration: configuration,
            clock: clock,
            driver: driver,
            logger: logger,
            deadLetterTarget: deadLetterTarget,
            seed: seeds.next(),
            parkedPublisherWarning: self.configuration.parkedPublisherWarning,
            interceptors: self.configuration.interceptors,
            shared: shared
        )
        topics[name] = runtime
        if let deadLetterTarget { deadLetterSources[deadLetterTarget.name, default: []].insert(name) }
        startMetricsIfNeeded()
        logger.debug("Opened shared topic", metadata: ["topic": "\(name)", "payload": "\(Payload.self)"])
        return Topic(runtime: runtime)
    }

    /// The topic this broker has by that name, when it carries that type with that configuration;
    /// `nil` when it has none.
    /// - Throws: ``OpenQError/Code/topicAlreadyExists`` when it has one of another type or
    ///   configuration.
    private func existingTopic<Payload: Sendable>(
        _ name: String, of type: Payload.Type, configuration: TopicConfiguration
    ) throws -> Topic<Payload>? {
        guard let existing = topics[name] else { return nil }
        guard existing.carries(Payload.self), existing.configuration == configuration else {
            throw OpenQError(
                .topicAlreadyExists,
                "Topic '\(name)' exists with payload \(existing.payloadType) and \(existing.configuration); "
                    + "look it up with topic(_:of:) or choose another name.")
        }
        return Topic(runtime: existing)
    }
}
