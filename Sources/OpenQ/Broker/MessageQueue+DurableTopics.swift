// Durable topics on the broker: creating a topic whose store keeps it, reading back what the store holds.

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

extension MessageQueue {
    /// Creates a topic for a `Codable` payload type, or returns the existing one when it was
    /// created with the same type and configuration.
    ///
    /// As ``createTopic(_:of:configuration:)-3a1sr``; a ``Durability/durable`` topic stores its payloads as
    /// JSON (`Data` and `[UInt8]` as they are), and on a restart brings back what the store holds
    /// for it.
    /// - Throws: as the other overload; for a durable topic also
    ///   ``OpenQError/Code/invalidConfiguration`` when the broker has no storage,
    ///   ``OpenQError/Code/payloadTypeMismatch`` or ``OpenQError/Code/topicAlreadyExists`` when the
    ///   store holds the topic with another payload type or configuration,
    ///   ``OpenQError/Code/storageFailed``.
    public func createTopic<Payload: Codable & Sendable>(
        _ name: String,
        of type: Payload.Type = Payload.self,
        configuration: TopicConfiguration = .init()
    ) async throws -> Topic<Payload> {
        guard configuration.durability == .durable else {
            return try createTopic(name, payloadType: Payload.self, configuration: configuration, durable: nil)
        }
        return try await createTopic(
            name, of: type, configuration: configuration, codec: defaultCodec(for: Payload.self))
    }
    /// Creates a topic whose payloads a durable store keeps through `codec`, or returns the
    /// existing one when it was created with the same type and configuration.
    ///
    /// ```swift
    /// let events = try await queue.createTopic(
    ///     "events", of: String.self, configuration: .init(durability: .durable), codec: Utf8Codec())
    /// ```
    /// - Throws: as ``createTopic(_:of:configuration:)-3a1sr``.
    public func createTopic<Payload: Sendable>(
        _ name: String,
        of type: Payload.Type = Payload.self,
        configuration: TopicConfiguration = .init(),
        codec: some PayloadCodec<Payload>
    ) async throws -> Topic<Payload> {
        guard configuration.durability == .durable else {
            return try createTopic(name, payloadType: Payload.self, configuration: configuration, durable: nil)
        }
        if let sharedBackend {
            return try await createSharedTopic(
                name, of: type, configuration: configuration, codec: codec, backend: sharedBackend)
        }
        guard let store else {
            throw OpenQError.invalidConfiguration(
                "Topic '\(name)' is durable, but the broker has no storage: create it with "
                    + "MessageQueue(storage: .sqlite(path:)) from OpenQSQLite.")
        }
        let binding = DurableBinding(
            store: store, payloadTypeName: String(reflecting: Payload.self),
            encode: { record, index in
                try codec.encode(unsafeDowncast(record, to: TypedRecord<Payload>.self).payload(at: index))
            },
            decode: { row, topic in try Self.record(of: row, in: topic, codec: codec) })
        let setup = DurableSetup(binding: binding)
        // Read what the store holds for the topic (and a new dead-letter topic) first, off the
        // cooperative pool; then create the topic without a suspension point, so no other call of
        // this actor runs between the look-up of the name and the registration.
        try validateName(name, kind: "topic")
        try configuration.validate()
        var recovered: [String: RecoveredTopic] = [:]
        if topics[name] == nil {
            guard !isShutDown else { throw OpenQError.shutDown("The message queue") }
            if configuration.deadLetter.maxDeliveries != nil {
                // Refuse a bad dead-letter topic before the store records anything.
                let (deadLetterName, existing) = try checkDeadLetterTopic(
                    for: name, payloadType: Payload.self, configuration: configuration, isDurable: true)
                if existing == nil {
                    recovered[deadLetterName] = try await store.openTopic(
                        name: deadLetterName, payloadType: binding.payloadTypeName,
                        configuration: Self.deadLetterConfiguration(of: configuration))
                }
            }
            recovered[name] = try await store.openTopic(
                name: name, payloadType: binding.payloadTypeName, configuration: configuration)
        }
        setup.recovered = recovered
        let topic = try createTopic(name, payloadType: Payload.self, configuration: configuration, durable: setup)
        for (topic, row, reason) in setup.undecodable {
            try await store.quarantine(topic: topic, sequence: row.sequence, payload: row.payload, reason: reason)
        }
        return topic
    }
    /// A stored message as a record of the topic's payload type again (a dead letter with its
    /// origin).
    static func record<Payload: Sendable>(
        of row: StoredMessageRow, in topic: String, codec: some PayloadCodec<Payload>
    ) throws -> MessageRecord {
        let payload = try codec.decode(row.payload)
        let record: TypedRecord<Payload>
        if let originTopic = row.originTopic, let originSequence = row.originSequence,
            let originPublishedAt = row.originPublishedAt
        {
            record = DeadLetterRecord(
                payload: payload, headers: row.headers, priority: row.priority, id: MessageID(rawValue: row.id),
                origin: MessageOrigin(
                    topic: originTopic, sequenceNumber: originSequence, publishedAt: originPublishedAt))
        } else {
            record = TypedRecord(
                payload: payload, headers: row.headers, priority: row.priority, id: MessageID(rawValue: row.id))
        }
        record.stamp(firstID: row.id, topic: topic, firstSequence: row.sequence, publishedAt: row.publishedAt)
        return record
    }
    /// The topics the broker's store holds (name, payload type name, configuration), so that a
    /// process such as a server can reopen topics it did not declare in code. Empty for a broker
    /// without storage.
    ///
    /// Reopen a topic whose policy is ``DeadLetterPolicy/after(deliveries:into:)`` after its
    /// dead-letter topic: that one must exist first.
    /// - Throws: ``OpenQError/Code/storageFailed``.
    public func storedTopics() async throws -> [StoredTopic] {
        if let sharedBackend { return try await sharedBackend.storedTopics() }
        return try await store?.storedTopics() ?? []
    }
    /// The messages the store quarantined because their payload no longer decoded (see
    /// ``TopicStatistics/quarantined``), oldest first, with their bytes and the reason. Empty for a
    /// broker without storage.
    /// - Throws: ``OpenQError/Code/storageFailed``.
    public func quarantinedMessages() async throws -> [QuarantinedMessage] {
        try await store?.quarantinedMessages() ?? []
    }
    /// The size of the broker's store and of its write-ahead log, its commits, and its fault if it
    /// cannot commit now (a full disk, a read-only file); `nil` for a broker without storage.
    ///
    /// ```swift
    /// if let store = try await queue.storeStatistics(), let fault = store.fault {
    ///     print("the store cannot commit: \(fault.code)")   // publishes are refused meanwhile
    /// }
    /// ```
    /// - Throws: ``OpenQError/Code/storageFailed`` when the sizes cannot be read.
    public func storeStatistics() async throws -> StoreStatistics? {
        try await store?.statistics()
    }
}

/// What a durable topic needs from its typed creator: how to encode its payloads, how to turn a
/// stored row back into a record of its payload type, and what the store held for the topics
/// being created (read before, off the cooperative pool). A class: the creation records in it the
/// messages that no longer decode, which the creator then moves to the quarantine.
final class DurableSetup {
    let binding: DurableBinding
    var recovered: [String: RecoveredTopic] = [:]
    var undecodable: [(topic: String, row: StoredMessageRow, reason: String)] = []

    init(binding: DurableBinding) {
        self.binding = binding
    }

    /// Brings back what the store held for the topic (nothing, for a new one).
    func recover(_ runtime: TopicRuntime) throws(OpenQError) {
        guard let recovered = recovered[runtime.name] else {
            throw OpenQError(
                .storageFailed,
                "Topic '\(runtime.name)' changed while it was being opened (created or deleted meanwhile); try again.")
        }
        let name = runtime.name
        let makeRecord = binding.decode
        for (row, reason) in runtime.recover(recovered, makeRecord: { row in try makeRecord(row, name) }) {
            undecodable.append((name, row, reason))
        }
    }
}
