// The engine tests' fixture: an engine on a fresh schema of the test cluster, and a clock the test moves.

import Foundation
import Logging
import OpenQ
import PostgresNIO
import Testing

@testable import OpenQPostgres

/// Whether the PostgreSQL tests run (the condition of their `.enabled(if:)` traits).
let postgresAvailable = PostgresCluster.isAvailable

/// A schema name no other test uses. With a quote and a space in it: every statement must quote
/// the schema as an identifier.
func freshSchemaName(_ label: String = "t") -> String {
    "openq \"\(label)\" \(UInt32.random(in: 0...UInt32.max))"
}

/// Runs `body` with an engine on a fresh, migrated schema, its clock replaced by ``TestClock``.
func withEngine<T: Sendable>(
    _ body: @Sendable (PostgresEngine, TestClock) async throws -> T
) async throws -> T {
    let cluster = try PostgresCluster.shared.get()
    return try await cluster.withClient { client in
        let schema = try PostgresIdentifier(freshSchemaName())
        let engine = PostgresEngine(client: client, schema: schema, logger: Logger(label: "openq.test.engine"))
        try await engine.migrate()
        let clock = try await TestClock.install(client, schema: schema)
        return try await body(engine, clock)
    }
}

/// The schema's `clock()` redefined to read a row the test moves: visibility timeouts and delays
/// are judged by the database's clock, so a test moves that clock rather than sleeping.
struct TestClock: Sendable {
    let client: PostgresClient
    let schema: PostgresIdentifier

    static func install(_ client: PostgresClient, schema: PostgresIdentifier) async throws -> TestClock {
        let s = schema.description
        try await client.query(PostgresQuery(unsafeSQL: "CREATE TABLE \(s).test_clock (now timestamptz NOT NULL)"))
        try await client.query(PostgresQuery(unsafeSQL: "INSERT INTO \(s).test_clock VALUES (clock_timestamp())"))
        try await client.query(
            PostgresQuery(
                unsafeSQL: """
                    CREATE OR REPLACE FUNCTION \(s).clock() RETURNS timestamptz LANGUAGE sql STABLE
                    AS $$ SELECT now FROM \(s).test_clock $$
                    """))
        return TestClock(client: client, schema: schema)
    }

    /// Moves the database's clock forward.
    func advance(by duration: Duration) async throws {
        try await client.query(
            "UPDATE \(unescaped: schema.description).test_clock SET now = now + \(duration.microseconds) * interval '1 microsecond'"
        )
    }
}

/// `count` payloads `"<prefix>0"`, `"<prefix>1"`, ... as messages.
func messages(_ count: Int, prefix: String = "m", priority: Int = 0, delay: Duration = .zero) -> [OutgoingMessage] {
    (0..<count).map { OutgoingMessage(payload: Array("\(prefix)\($0)".utf8), priority: priority, delay: delay) }
}

extension ClaimedCopy {
    var text: String { String(decoding: payload, as: UTF8.self) }
}

extension PostgresEngine {
    /// Rows that break the schema's bookkeeping: messages whose `copies_left` is not the number of
    /// their copies, and copies without a message or without a subscription. 0 when sound.
    func drift() async throws -> Int {
        let s = schema.description
        let rows = try await client.query(
            PostgresQuery(
                unsafeSQL: """
                    SELECT
                        (SELECT count(*) FROM \(s).messages m WHERE m.copies_left <> (SELECT count(*) FROM \(s).copies c
                            WHERE c.topic_id = m.topic_id AND c.sequence = m.sequence))
                        + (SELECT count(*) FROM \(s).copies c WHERE NOT EXISTS (SELECT 1 FROM \(s).messages m
                            WHERE m.topic_id = c.topic_id AND m.sequence = c.sequence))
                        + (SELECT count(*) FROM \(s).copies c WHERE NOT EXISTS (SELECT 1 FROM \(s).subscriptions x
                            WHERE x.id = c.subscription_id))
                    """))
        for try await count in rows.decode(Int.self) { return count }
        return 0
    }
}
