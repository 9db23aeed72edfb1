// The PostgreSQL schema: migrated once by processes starting together, refused when newer or foreign, names quoted.

import Foundation
import Logging
import OpenQ
import PostgresNIO
import Testing

@testable import OpenQPostgres

@Suite("PostgreSQL schema")
struct PostgresSchemaTests {
    @Test("CI runs the PostgreSQL tests: with OPENQ_REQUIRE_POSTGRES=1 a missing server fails")
    func postgresIsThereWhenRequired() {
        PostgresCluster.requireAvailable()
    }

    @Test("clients migrating one schema at once migrate it once", .enabled(if: postgresAvailable))
    func concurrentMigrations() async throws {
        let cluster = try PostgresCluster.shared.get()
        let schema = try PostgresIdentifier(freshSchemaName("migrate"))
        let before = try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<6 {
                group.addTask {
                    try await cluster.withClient { client in
                        try await PostgresSchema.migrate(client, schema: schema, logger: Logger(label: "test"))
                    }
                }
            }
            return try await group.reduce(into: [Int]()) { $0.append($1) }
        }
        #expect(before.sorted() == [0] + Array(repeating: PostgresSchema.version, count: 5))
        let versions = try await cluster.withClient { client in
            try await client.query(PostgresQuery(unsafeSQL: "SELECT version FROM \(schema).migrations ORDER BY 1"))
                .decode(Int.self).reduce(into: [Int]()) { $0.append($1) }
        }
        #expect(versions == Array(1...PostgresSchema.version))
    }

    @Test("a schema a newer OpenQ migrated is refused and left as it is", .enabled(if: postgresAvailable))
    func newerSchemaRefused() async throws {
        let cluster = try PostgresCluster.shared.get()
        let schema = try PostgresIdentifier(freshSchemaName("newer"))
        try await cluster.withClient { client in
            try await PostgresSchema.migrate(client, schema: schema, logger: Logger(label: "test"))
            try await client.query(
                PostgresQuery(
                    unsafeSQL: "INSERT INTO \(schema).migrations (version) VALUES (\(PostgresSchema.version + 1))"))
            try await client.query(
                PostgresQuery(unsafeSQL: "CREATE TABLE \(schema).from_the_future (x integer)"))
            let error = await #expect(throws: OpenQError.self) {
                try await PostgresSchema.migrate(client, schema: schema, logger: Logger(label: "test"))
            }
            #expect(error?.code == .storeIncompatible)
            #expect(error?.message.contains("newer version of OpenQ") == true)
            let versions = try await client.query(
                PostgresQuery(unsafeSQL: "SELECT count(*) FROM \(schema).migrations")
            ).decode(Int.self).reduce(into: [Int]()) { $0.append($1) }
            #expect(versions == [PostgresSchema.version + 1])
            let future = try await client.query(
                PostgresQuery(unsafeSQL: "SELECT to_regclass('\(schema).from_the_future') IS NOT NULL")
            ).decode(Bool.self).reduce(into: [Bool]()) { $0.append($1) }
            #expect(future == [true])
        }
    }

    @Test("another application's schema is refused and left as it is", .enabled(if: postgresAvailable))
    func foreignSchemaRefused() async throws {
        let cluster = try PostgresCluster.shared.get()
        let schema = try PostgresIdentifier(freshSchemaName("foreign"))
        try await cluster.withClient { client in
            try await client.query(PostgresQuery(unsafeSQL: "CREATE SCHEMA \(schema)"))
            try await client.query(PostgresQuery(unsafeSQL: "CREATE TABLE \(schema).orders (id integer)"))
            try await client.query(PostgresQuery(unsafeSQL: "INSERT INTO \(schema).orders VALUES (7)"))
            let error = await #expect(throws: OpenQError.self) {
                try await PostgresSchema.migrate(client, schema: schema, logger: Logger(label: "test"))
            }
            #expect(error?.code == .storeIncompatible)
            let relations = try await client.query(
                """
                SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = \(schema.name)
                """
            ).decode(String.self).reduce(into: [String]()) { $0.append($1) }
            #expect(relations == ["orders"])
        }
    }

    @Test("schema names are identifiers: quoted, never SQL; impossible names refused")
    func schemaNames() throws {
        #expect(try PostgresIdentifier("openq").description == #""openq""#)
        #expect(try PostgresIdentifier(#"a"b"#).description == #""a""b""#)
        #expect(
            try PostgresIdentifier("x'; DROP SCHEMA public; --").literal("topics")
                == "hashtext('x''; DROP SCHEMA public; --.topics')")
        for bad in ["", String(repeating: "x", count: 64), "a$$b", "nul\0"] {
            #expect(throws: OpenQError.self) { try PostgresIdentifier(bad) }
        }
    }
}
