// The PostgreSQL backend of a broker: the schema migrated on open, topics opened as engines, the client run.

import Foundation
import Logging
import OpenQ
import PostgresNIO

/// A broker's shared backend on PostgreSQL (``OpenQ/MessageQueue/Storage/postgres(_:schema:pollInterval:)``):
/// it migrates the schema when it opens, opens each durable topic as a ``PostgresTopicEngine``, and
/// runs the postgres-nio client when the broker created it.
package final class PostgresBackend: SharedBackend {
    let engine: PostgresEngine
    package let pollInterval: Duration
    /// The client's `run()`, when the broker runs it; cancelled by ``close()``.
    private let running: Task<Void, Never>?

    private init(engine: PostgresEngine, pollInterval: Duration, running: Task<Void, Never>?) {
        self.engine = engine
        self.pollInterval = pollInterval
        self.running = running
    }

    /// Opens the backend: runs `client` when `runsClient` (a client of the broker's own), then
    /// creates or migrates the schema.
    static func open(
        client: PostgresClient, schema: String, pollInterval: Duration, runsClient: Bool, logger: Logger
    ) async throws(OpenQError) -> PostgresBackend {
        let identifier: PostgresIdentifier
        do {
            identifier = try PostgresIdentifier(schema)
        } catch {
            throw OpenQError(.invalidName, "\(error)")
        }
        guard pollInterval > .zero else {
            throw OpenQError(.invalidConfiguration, "a poll interval must be positive; it was \(pollInterval)")
        }
        let running = runsClient ? Task { await client.run() } : nil
        let backend = PostgresBackend(
            engine: PostgresEngine(client: client, schema: identifier, logger: logger), pollInterval: pollInterval,
            running: running)
        do {
            try await backend.engine.migrate()
        } catch {
            await backend.close()
            throw error
        }
        return backend
    }

    package func openTopic(
        name: String, payloadType: String, configuration: TopicConfiguration
    ) async throws(OpenQError) -> any SharedTopicEngine {
        let id = try await engine.openTopic(
            name: name, payloadType: payloadType, configuration: try JSONText.encode(configuration))
        return PostgresTopicEngine(engine: engine, topic: id, name: name)
    }

    package func deleteTopic(name: String) async throws(OpenQError) -> Bool {
        try await engine.deleteTopic(name: name)
    }

    package func storedTopics() async throws(OpenQError) -> [StoredTopic] {
        var topics: [StoredTopic] = []
        for row in try await engine.storedTopics() {
            let configuration: TopicConfiguration = try JSONText.decode(row.configuration, what: "topic '\(row.name)'")
            topics.append(
                StoredTopic(
                    name: row.name, payloadType: row.payloadType, configuration: configuration,
                    storedCopies: row.copies))
        }
        return topics
    }

    package func close() async {
        guard let running else { return }
        running.cancel()
        await running.value
    }
}

/// One topic's operations on PostgreSQL: ``PostgresEngine``'s statements for the topic's id.
package struct PostgresTopicEngine: SharedTopicEngine {
    let engine: PostgresEngine
    let topic: Int64
    let name: String

    package func publish(_ messages: [SharedMessage]) async throws(OpenQError) -> SharedPublished {
        let range = try await engine.publish(
            topic: topic,
            messages.map {
                OutgoingMessage(payload: $0.payload, headers: $0.headers, priority: $0.priority, delay: $0.delay)
            })
        return SharedPublished(
            firstID: range.firstID, firstSequence: range.firstSequence, count: range.count,
            subscriptions: range.subscriptions)
    }

    package func subscribe(name: String, configuration: SubscriptionConfiguration) async throws(OpenQError) -> Int64 {
        try await engine.subscribe(
            topic: topic, name: name, configuration: try JSONText.encode(configuration),
            visibilityTimeout: configuration.acknowledgement.visibilityTimeout)
    }

    package func unsubscribe(name: String) async throws(OpenQError) -> Bool {
        try await engine.unsubscribe(topic: topic, name: name)
    }

    package func claim(
        subscription: Int64, max: Int, visibilityTimeout: Duration
    ) async throws(OpenQError) -> [SharedClaim] {
        try await engine.claim(subscription: subscription, limit: max, visibilityTimeout: visibilityTimeout)
    }

    package func ack(subscription: Int64, _ receipts: [SharedReceipt]) async throws(OpenQError) -> Set<Int64> {
        try await engine.ack(subscription: subscription, receipts)
    }

    package func fail(
        _ receipt: SharedReceipt, delay: Duration, error: String?, reject: Bool
    ) async throws(OpenQError) -> Bool {
        let outcome =
            reject
            ? try await engine.reject(receipt, reason: error)
            : try await engine.nack(receipt, delay: delay, error: error)
        return outcome != nil
    }

    package func unclaim(_ receipts: [SharedReceipt]) async throws(OpenQError) {
        try await engine.unclaim(receipts)
    }

    package func extend(_ receipt: SharedReceipt, by duration: Duration) async throws(OpenQError) -> Bool {
        try await engine.extend(receipt, by: duration) != nil
    }

    package func counts() async throws(OpenQError) -> [String: SharedCounts] {
        try await engine.counts(topic: topic)
    }

    package func setDeadLetters(maxDeliveries: Int?, into deadLetterTopic: String?) async throws(OpenQError) {
        try await engine.setDeadLetters(topic: topic, maxDeliveries: maxDeliveries, intoTopicNamed: deadLetterTopic)
    }
}

/// Configurations as the `configuration` columns keep them: JSON.
enum JSONText {
    static func encode(_ value: some Encodable) throws(OpenQError) -> String {
        do {
            let encoder = JSONEncoder()
            encoder.outputFormatting = .sortedKeys
            return String(decoding: try encoder.encode(value), as: UTF8.self)
        } catch {
            throw OpenQError(.encodingFailed, "a configuration could not be written as JSON: \(error)")
        }
    }

    static func decode<Value: Decodable>(_ text: String, what: String) throws(OpenQError) -> Value {
        do {
            return try JSONDecoder().decode(Value.self, from: Data(text.utf8))
        } catch {
            throw OpenQError(.storeCorrupted, "the configuration of \(what) in PostgreSQL does not decode: \(error)")
        }
    }
}
