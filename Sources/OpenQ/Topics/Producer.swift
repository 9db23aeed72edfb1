// A named publisher with default headers.

/// A named publisher: publishes to one topic with default headers, and stamps its name in the
/// ``MessageHeader/producer`` header.
///
/// ```swift
/// let api = orders.producer("api", headers: ["region": "eu"])
/// try await api.publish(OrderPlaced(id: 7))
/// ```
public struct Producer<Payload: Sendable>: Sendable {
    /// The producer's name.
    public let name: String
    /// The topic it publishes to.
    public let topic: Topic<Payload>
    /// Headers added to every message; headers passed to `publish` win on conflict.
    public let defaultHeaders: [String: String]

    init(name: String, topic: Topic<Payload>, headers: [String: String]) {
        self.name = name
        self.topic = topic
        var headers = headers
        headers[MessageHeader.producer] = name
        self.defaultHeaders = headers
    }

    /// Publishes a message with the producer's default headers; see ``Topic/publish(_:headers:priority:delay:)``.
    @discardableResult
    public nonisolated(nonsending) func publish(
        _ payload: Payload,
        headers: [String: String] = [:],
        priority: Int = 0,
        delay: Duration = .zero
    ) async throws -> PublishReceipt {
        try await topic.publish(payload, headers: merged(headers), priority: priority, delay: delay)
    }

    /// Publishes a batch with the producer's default headers; see
    /// ``Topic/publish(contentsOf:headers:priority:delay:)``.
    @discardableResult
    public nonisolated(nonsending) func publish(
        contentsOf payloads: some Sequence<Payload>,
        headers: [String: String] = [:],
        priority: Int = 0,
        delay: Duration = .zero
    ) async throws -> PublishReceipt {
        try await topic.publish(contentsOf: payloads, headers: merged(headers), priority: priority, delay: delay)
    }

    /// Publishes without waiting; see ``Topic/tryPublish(_:headers:priority:)``.
    public func tryPublish(_ payload: Payload, headers: [String: String] = [:], priority: Int = 0) -> PublishResult {
        topic.tryPublish(payload, headers: merged(headers), priority: priority)
    }

    private func merged(_ headers: [String: String]) -> [String: String] {
        headers.isEmpty ? defaultHeaders : defaultHeaders.merging(headers) { _, new in new }
    }
}

extension Topic {
    /// A named producer for this topic.
    /// - Throws: ``OpenQError/Code/invalidName`` for a name outside `A–Z a–z 0–9 . _ -`.
    public func producer(_ name: String, headers: [String: String] = [:]) throws -> Producer<Payload> {
        try validateName(name, kind: "producer")
        return Producer(name: name, topic: self, headers: headers)
    }
}
