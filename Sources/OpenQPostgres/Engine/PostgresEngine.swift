// The PostgreSQL engine: a topic's operations as statements, the database deciding who gets which message.

import Foundation
import Logging
import OpenQ
import PostgresNIO

/// The topic operations of the PostgreSQL backend, each one or two statements on the schema that
/// ``PostgresSchema`` migrates. No process's memory decides anything here: a receive is a claim of
/// rows in the database, visibility is a column compared with the database's clock, sequence
/// numbers come from the database. Many brokers on one database share every topic.
///
/// - Publish: the range of sequence numbers is taken in a short statement of its own (the topic's
///   counter row is locked for that statement only), then the messages and their copies, one per
///   subscription, are written in one transaction (`publish()` in the schema). Numbers are unique
///   and increasing per topic; a failed publish leaves a gap; number order is not always commit
///   order (two publishers may commit in the other order).
/// - Claim: `FOR UPDATE SKIP LOCKED LIMIT n` inside a `MATERIALIZED` CTE (the fence keeps the
///   planner from running the LIMIT subquery again and claiming more rows than asked, Oban #652),
///   then an `UPDATE ... RETURNING` that raises the attempt and gives the copy a new claim nonce
///   (`claim()` in the schema, which dead-letters copies that used their deliveries).
/// - Settle: each statement checks the claim nonce and the visibility in its `WHERE` clause, so a
///   stale receipt (from before a redelivery, or past its timeout) settles nothing.
///
/// Message ids: `(topic id << 40) | sequence number`: unique in the database, increasing per
/// topic, consecutive within one publish call, with no counter of their own.
package final class PostgresEngine: Sendable {
    package let client: PostgresClient
    package let schema: PostgresIdentifier
    let logger: Logger

    /// - Parameters:
    ///   - client: a running postgres-nio client (its `run()` is the caller's to drive).
    ///   - schema: the schema OpenQ's tables live in.
    package init(client: PostgresClient, schema: PostgresIdentifier, logger: Logger) {
        self.client = client
        self.schema = schema
        self.logger = logger
    }

    /// Creates the schema or migrates it (see ``PostgresSchema/migrate(_:schema:logger:)``).
    @discardableResult
    package func migrate() async throws(OpenQError) -> Int {
        try await PostgresSchema.migrate(client, schema: schema, logger: logger)
    }

    /// A message id from a topic's id and a sequence number.
    package static func messageID(topic: Int64, sequence: UInt64) -> MessageID {
        MessageID(rawValue: UInt64(topic) << 40 | sequence)
    }

    // MARK: Topology

    /// Creates a topic, or finds the one that exists with that name and payload type.
    /// - Returns: the topic's id.
    /// - Throws: ``OpenQError/Code/payloadTypeMismatch`` when it exists with another payload type.
    package func openTopic(name: String, payloadType: String, configuration: String) async throws(OpenQError)
        -> Int64
    {
        let rows = try await run("opening topic '\(name)'") {
            "SELECT * FROM \(unescaped: schema.description).open_topic(\(name), \(payloadType), \(configuration)::jsonb)"
        }
        let found = try await decode(rows, as: (Int64, String).self, doing: "opening topic '\(name)'")
        guard let (id, storedType) = found.first else {
            throw OpenQError(.storageFailed, "PostgreSQL returned no row opening topic '\(name)'")
        }
        guard storedType == payloadType else {
            throw OpenQError(
                .payloadTypeMismatch,
                "topic '\(name)' holds \(storedType) in PostgreSQL schema \(schema), not \(payloadType)")
        }
        return id
    }

    /// Deletes a topic with its subscriptions, messages and copies, for every broker of the
    /// database. Waits for publishes in flight (the topic's exclusive lock).
    /// - Returns: whether the topic existed.
    @discardableResult
    package func deleteTopic(name: String) async throws(OpenQError) -> Bool {
        let s = schema.description
        let lock = schema.literal("topics")
        let deleted = try await transaction("deleting topic '\(name)'") { connection in
            let rows = try await connection.query(
                "SELECT id FROM \(unescaped: s).topics WHERE name = \(name)", logger: self.logger)
            var found: Int64?
            for try await id in rows.decode(Int64.self) { found = id }
            guard let id = found else { return false }
            try await connection.query(
                "SELECT pg_advisory_xact_lock(\(unescaped: lock), \(Int32(id)))", logger: self.logger)
            try await connection.query("DELETE FROM \(unescaped: s).copies WHERE topic_id = \(id)", logger: self.logger)
            try await connection.query(
                "DELETE FROM \(unescaped: s).messages WHERE topic_id = \(id)", logger: self.logger)
            try await connection.query("DELETE FROM \(unescaped: s).topics WHERE id = \(id)", logger: self.logger)
            return true
        }
        return deleted
    }

    /// Creates a named subscription of a topic, or finds it. It gets every message published
    /// after it exists and none from before (it waits for publishes in flight).
    /// - Returns: the subscription's id.
    package func subscribe(
        topic: Int64, name: String, configuration: String, visibilityTimeout: Duration
    ) async throws(OpenQError) -> Int64 {
        try Self.checkTimeout(visibilityTimeout)
        let rows = try await run("creating subscription '\(name)'") {
            """
            SELECT \(unescaped: schema.description).subscribe(
                \(topic), \(name), \(configuration)::jsonb, \(visibilityTimeout.microseconds))
            """
        }
        guard let id = try await decode(rows, as: Int64?.self, doing: "creating subscription '\(name)'").first ?? nil
        else {
            throw OpenQError(.storageFailed, "PostgreSQL returned no row creating subscription '\(name)'")
        }
        return id
    }

    /// Removes a named subscription and every copy it holds.
    /// - Returns: whether it existed.
    @discardableResult
    package func unsubscribe(topic: Int64, name: String) async throws(OpenQError) -> Bool {
        let rows = try await run("removing subscription '\(name)'") {
            "SELECT \(unescaped: schema.description).unsubscribe(\(topic), \(name))"
        }
        return try await decode(rows, as: Bool.self, doing: "removing subscription '\(name)'").first ?? false
    }

    // MARK: Publishing

    /// Publishes messages to a topic: each gets a copy in every subscription the topic has when
    /// the transaction runs; all or none of them commit.
    /// - Returns: the range of sequence numbers and ids, and how many subscriptions got copies.
    package func publish(topic: Int64, _ messages: [OutgoingMessage]) async throws(OpenQError) -> PublishedRange {
        let count = Int64(messages.count)
        guard count > 0 else { return PublishedRange(topic: topic, firstSequence: 0, count: 0, subscriptions: 0) }
        // Everything that can refuse the messages comes before the numbers are taken, so bad input
        // costs no round trip and leaves no gap.
        for message in messages where !(Int(Int32.min)...Int(Int32.max)).contains(message.priority) {
            throw OpenQError(.invalidConfiguration, "a priority must fit in 32 bits; it was \(message.priority)")
        }
        var payloads: [ByteBuffer] = []
        var headers: [String] = []
        var priorities: [Int64] = []
        var delays: [Int64] = []
        payloads.reserveCapacity(messages.count)
        headers.reserveCapacity(messages.count)
        priorities.reserveCapacity(messages.count)
        delays.reserveCapacity(messages.count)
        for message in messages {
            payloads.append(ByteBuffer(bytes: message.payload))
            headers.append(try HeadersJSON.encode(message.headers))
            priorities.append(Int64(message.priority))
            delays.append(message.delay.microseconds)
        }
        let counter = try await run("numbering a publish") {
            """
            UPDATE \(unescaped: schema.description).topics SET next_sequence = next_sequence + \(count)
            WHERE id = \(topic) RETURNING next_sequence - \(count)
            """
        }
        guard let first = try await decode(counter, as: Int64.self, doing: "numbering a publish").first else {
            throw OpenQError(.topicNotFound, "the topic (id \(topic)) is not in PostgreSQL schema \(schema)")
        }
        let rows = try await run("publishing") {
            """
            SELECT \(unescaped: schema.description).publish(
                \(topic), \(first), \(payloads)::bytea[], \(headers)::text[], \(priorities)::bigint[],
                \(delays)::bigint[])
            """
        }
        let subscriptions = try await decode(rows, as: Int.self, doing: "publishing").first ?? 0
        return PublishedRange(
            topic: topic, firstSequence: UInt64(first), count: messages.count, subscriptions: subscriptions)
    }

    // MARK: Claims and settlements

    /// Claims up to `limit` visible copies of a subscription, most urgent first, then in sequence
    /// order: each one's attempt is raised, it gets a new claim nonce and becomes invisible for
    /// `visibilityTimeout`. Rows another claim holds are skipped, never waited for. A copy that
    /// used the topic's `maxDeliveries` moves to its dead-letter topic instead (in the same
    /// transaction), so a claim may return fewer than it found.
    package func claim(
        subscription: Int64, limit: Int, visibilityTimeout: Duration
    ) async throws(OpenQError) -> [ClaimedCopy] {
        guard limit >= 1 else { throw OpenQError(.invalidConfiguration, "a claim takes at least 1; it was \(limit)") }
        try Self.checkTimeout(visibilityTimeout)
        let rows = try await run("claiming") {
            """
            SELECT * FROM \(unescaped: schema.description).claim(
                \(subscription), \(Int32(clamping: limit)), \(visibilityTimeout.microseconds))
            """
        }
        let found = try await decode(
            rows, as: (Int64, Int64, Int, Int64, Date, Date, ByteBuffer, String, Int, Date, String?).self,
            doing: "claiming")
        var claimed: [ClaimedCopy] = []
        claimed.reserveCapacity(found.count)
        for (
            topic, sequence, attempts, claim, visibleUntil, firstDelivered, payload, headers, priority, published,
            lastError
        )
            in found
        {
            claimed.append(
                ClaimedCopy(
                    receipt: PostgresReceipt(subscription: subscription, sequence: sequence, claim: claim),
                    id: Self.messageID(topic: topic, sequence: UInt64(sequence)),
                    attempts: attempts, visibleUntil: visibleUntil, firstDeliveredAt: firstDelivered,
                    payload: Array(payload.readableBytesView), headers: try HeadersJSON.decode(headers),
                    priority: priority, publishedAt: published, lastError: lastError))
        }
        claimed.sort { ($0.priority, $1.receipt.sequence) > ($1.priority, $0.receipt.sequence) }
        return claimed
    }

    /// Acknowledges claimed copies of one subscription: each is deleted when its receipt still
    /// holds (same claim, still invisible), and a message goes with its last copy.
    /// - Returns: the sequence numbers acknowledged; a receipt whose claim passed (its timeout ran
    ///   out, or the copy was claimed again or settled) is not among them.
    package func ack(subscription: Int64, _ receipts: [PostgresReceipt]) async throws(OpenQError) -> Set<Int64> {
        // In sequence order: two acks of overlapping copies lock them in one order, never crosswise.
        let mine = receipts.filter { $0.subscription == subscription }.sorted { $0.sequence < $1.sequence }
        guard !mine.isEmpty else { return [] }
        let sequences = mine.map(\.sequence)
        let claims = mine.map(\.claim)
        let rows = try await run("acknowledging") {
            "SELECT \(unescaped: schema.description).ack(\(subscription), \(sequences)::bigint[], \(claims)::bigint[])"
        }
        return Set(try await decode(rows, as: Int64.self, doing: "acknowledging"))
    }

    /// Gives a claimed copy back after a failed attempt: visible again after `delay` (0: now),
    /// the claim cleared, the error kept for the dead-letter headers (`nil` keeps the one before);
    /// its next claim raises the attempt. Once the copy used the topic's `maxDeliveries` it moves
    /// to the dead-letter topic instead.
    /// - Returns: what happened, or `nil` when the receipt no longer held.
    package func nack(_ receipt: PostgresReceipt, delay: Duration, error: String?) async throws(OpenQError)
        -> Settlement?
    {
        try await fail(receipt, delay: delay, error: error, reject: false)
    }

    /// Moves a claimed copy to the topic's dead-letter topic now, `reason` as its last error.
    /// - Returns: `.deadLettered`, or `nil` when the receipt no longer held.
    package func reject(_ receipt: PostgresReceipt, reason: String?) async throws(OpenQError) -> Settlement? {
        try await fail(receipt, delay: .zero, error: reason, reject: true)
    }

    private func fail(
        _ receipt: PostgresReceipt, delay: Duration, error: String?, reject: Bool
    ) async throws(OpenQError) -> Settlement? {
        let rows = try await run("giving a message back") {
            """
            SELECT \(unescaped: schema.description).nack(
                \(receipt.subscription), \(receipt.sequence), \(receipt.claim), \(delay.microseconds), \(error),
                \(reject))
            """
        }
        let outcome = try await decode(rows, as: String?.self, doing: "giving a message back").first ?? nil
        return outcome.flatMap(Settlement.init(rawValue:))
    }

    /// What a failed attempt did to a copy.
    package enum Settlement: String, Sendable {
        /// Visible again after its delay.
        case requeued
        /// Moved to the dead-letter topic (or dropped, when the topic has none).
        case deadLettered
    }

    /// Sets where a topic's dead letters go: after `maxDeliveries` deliveries (`nil`: never), into
    /// the topic with id `deadLetterTopic` (`nil`: they are dropped).
    /// - Throws: ``OpenQError/Code/invalidConfiguration`` for a topic that would dead-letter into
    ///   itself (a claim would wait on the lock it holds) or a `maxDeliveries` below 1. (Longer
    ///   cycles are refused by the broker's dead-letter graph check before it gets here.)
    package func setDeadLetters(
        topic: Int64, maxDeliveries: Int?, into deadLetterTopic: Int64?
    ) async throws(OpenQError) {
        guard deadLetterTopic != topic else {
            throw OpenQError(.invalidConfiguration, "a topic cannot be its own dead-letter topic")
        }
        if let maxDeliveries, maxDeliveries < 1 {
            throw OpenQError(.invalidConfiguration, "maxDeliveries must be at least 1; it was \(maxDeliveries)")
        }
        _ = try await run("setting a dead-letter policy") {
            """
            UPDATE \(unescaped: schema.description).topics
            SET max_deliveries = \(maxDeliveries.map { Int32(clamping: $0) }), dead_letter_topic = \(deadLetterTopic)
            WHERE id = \(topic)
            """
        }
    }

    /// Sets a claimed copy's visibility to `duration` from now (the database's now).
    /// - Returns: when it becomes visible again, or `nil` when the receipt no longer held.
    package func extend(_ receipt: PostgresReceipt, by duration: Duration) async throws(OpenQError) -> Date? {
        let s = schema.description
        let rows = try await run("extending a visibility timeout") {
            """
            UPDATE \(unescaped: s).copies SET
                visible_at = \(unescaped: s).clock() + \(duration.microseconds) * interval '1 microsecond'
            WHERE subscription_id = \(receipt.subscription) AND sequence = \(receipt.sequence)
                AND claim = \(receipt.claim) AND visible_at > \(unescaped: s).clock()
            RETURNING visible_at
            """
        }
        return try await decode(rows, as: Date.self, doing: "extending a visibility timeout").first
    }

    /// Gives claims back that were never handed to a consumer: visible now, the claim cleared,
    /// the attempt it counted taken back (and the first delivery's time with it, for a first
    /// attempt). A receipt whose claim passed changes nothing.
    package func unclaim(_ receipts: [PostgresReceipt]) async throws(OpenQError) {
        let s = schema.description
        for (subscription, mine) in Dictionary(grouping: receipts, by: \.subscription) {
            let sorted = mine.sorted { $0.sequence < $1.sequence }
            let sequences = sorted.map(\.sequence)
            let claims = sorted.map(\.claim)
            _ = try await run("giving claims back") {
                """
                UPDATE \(unescaped: s).copies c SET
                    claim = NULL, visible_at = \(unescaped: s).clock(), attempts = greatest(c.attempts - 1, 0),
                    first_delivered_at = CASE WHEN c.attempts <= 1 THEN NULL ELSE c.first_delivered_at END
                FROM unnest(\(sequences)::bigint[], \(claims)::bigint[]) AS r(sequence, claim)
                WHERE c.subscription_id = \(subscription) AND c.sequence = r.sequence AND c.claim = r.claim
                """
            }
        }
    }

    /// Sets where a topic's dead letters go, naming the dead-letter topic (`nil`: dropped).
    package func setDeadLetters(
        topic: Int64, maxDeliveries: Int?, intoTopicNamed deadLetterTopic: String?
    ) async throws(OpenQError) {
        var target: Int64?
        if let deadLetterTopic {
            let rows = try await run("finding dead-letter topic '\(deadLetterTopic)'") {
                "SELECT id FROM \(unescaped: schema.description).topics WHERE name = \(deadLetterTopic)"
            }
            guard let id = try await decode(rows, as: Int64.self, doing: "finding a dead-letter topic").first else {
                throw OpenQError(
                    .topicNotFound, "dead-letter topic '\(deadLetterTopic)' is not in PostgreSQL schema \(schema)")
            }
            target = id
        }
        try await setDeadLetters(topic: topic, maxDeliveries: maxDeliveries, into: target)
    }

    /// The topics of the schema, with how many copies their subscriptions hold.
    package func storedTopics() async throws(OpenQError) -> [(
        name: String, payloadType: String, configuration: String, copies: Int
    )] {
        let s = schema.description
        let rows = try await run("listing topics") {
            """
            SELECT t.name, t.payload_type, t.configuration::text,
                (SELECT count(*) FROM \(unescaped: s).copies c WHERE c.topic_id = t.id)::bigint
            FROM \(unescaped: s).topics t ORDER BY t.name
            """
        }
        return try await decode(rows, as: (String, String, String, Int).self, doing: "listing topics").map {
            (name: $0.0, payloadType: $0.1, configuration: $0.2, copies: $0.3)
        }
    }

    // MARK: Statistics

    /// A subscription's copies counted by the database, exact at the statement's time: waiting
    /// (visible, including those whose claim ran out), scheduled (delayed or waiting for a retry),
    /// in flight (claimed and not yet visible again).
    package func counts(subscription: Int64) async throws(OpenQError) -> CopyCounts {
        let s = schema.description
        let rows = try await run("counting a subscription's messages") {
            """
            SELECT
                count(*) FILTER (WHERE c.visible_at <= \(unescaped: s).clock()),
                count(*) FILTER (WHERE c.visible_at > \(unescaped: s).clock() AND c.claim IS NULL),
                count(*) FILTER (WHERE c.visible_at > \(unescaped: s).clock() AND c.claim IS NOT NULL)
            FROM \(unescaped: s).copies c WHERE c.subscription_id = \(subscription)
            """
        }
        let found = try await decode(rows, as: (Int, Int, Int).self, doing: "counting a subscription's messages")
        guard let (waiting, scheduled, inFlight) = found.first else { return CopyCounts() }
        return CopyCounts(waiting: waiting, scheduled: scheduled, inFlight: inFlight)
    }

    /// Every subscription of a topic with its copies counted by state (as ``counts(subscription:)``),
    /// in one statement.
    package func counts(topic: Int64) async throws(OpenQError) -> [String: CopyCounts] {
        let s = schema.description
        let rows = try await run("counting a topic's messages") {
            """
            SELECT x.name,
                count(c.sequence) FILTER (WHERE c.visible_at <= \(unescaped: s).clock()),
                count(c.sequence) FILTER (WHERE c.visible_at > \(unescaped: s).clock() AND c.claim IS NULL),
                count(c.sequence) FILTER (WHERE c.visible_at > \(unescaped: s).clock() AND c.claim IS NOT NULL)
            FROM \(unescaped: s).subscriptions x LEFT JOIN \(unescaped: s).copies c ON c.subscription_id = x.id
            WHERE x.topic_id = \(topic) GROUP BY x.name
            """
        }
        var counts: [String: CopyCounts] = [:]
        for (name, waiting, scheduled, inFlight) in try await decode(
            rows, as: (String, Int, Int, Int).self, doing: "counting a topic's messages")
        {
            counts[name] = CopyCounts(waiting: waiting, scheduled: scheduled, inFlight: inFlight)
        }
        return counts
    }

    /// How many messages of a topic some subscription still holds.
    package func heldMessages(topic: Int64) async throws(OpenQError) -> Int {
        let rows = try await run("counting a topic's messages") {
            "SELECT count(*) FROM \(unescaped: schema.description).messages WHERE topic_id = \(topic)"
        }
        return try await decode(rows, as: Int.self, doing: "counting a topic's messages").first ?? 0
    }

    // MARK: Running statements

    private static func checkTimeout(_ timeout: Duration) throws(OpenQError) {
        guard timeout.microseconds >= 1 else {
            throw OpenQError(.invalidConfiguration, "a visibility timeout must be positive; it was \(timeout)")
        }
    }

    /// Runs one statement (its own transaction), mapping failures to ``OpenQError``.
    private func run(
        _ what: @autoclosure () -> String, _ query: () -> PostgresQuery
    ) async throws(OpenQError) -> PostgresRowSequence {
        do {
            return try await client.query(query(), logger: logger)
        } catch {
            throw PostgresErrors.openQError(error, doing: what())
        }
    }

    private func transaction<T: Sendable>(
        _ what: @autoclosure () -> String, _ body: (PostgresConnection) async throws -> sending T
    ) async throws(OpenQError) -> T {
        do {
            return try await client.withTransaction(logger: logger, body)
        } catch {
            throw PostgresErrors.openQError(error, doing: what())
        }
    }

    private func decode<each Column: PostgresDecodable & Sendable>(
        _ rows: PostgresRowSequence, as type: (repeat each Column).Type, doing what: @autoclosure () -> String
    ) async throws(OpenQError) -> [(repeat each Column)] {
        do {
            var result: [(repeat each Column)] = []
            for try await row in rows.decode((repeat each Column).self) { result.append(row) }
            return result
        } catch {
            throw PostgresErrors.openQError(error, doing: what())
        }
    }

    private func decode<Column: PostgresDecodable & Sendable>(
        _ rows: PostgresRowSequence, as type: Column.Type, doing what: @autoclosure () -> String
    ) async throws(OpenQError) -> [Column] {
        do {
            var result: [Column] = []
            for try await row in rows.decode(Column.self) { result.append(row) }
            return result
        } catch {
            throw PostgresErrors.openQError(error, doing: what())
        }
    }
}

extension Duration {
    /// Whole microseconds, rounded down (PostgreSQL's interval resolution).
    var microseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000_000 + attoseconds / 1_000_000_000_000
    }
}
