// The storage a user names: `.postgres(configuration)` or `.postgres(client:)`.

import Logging
import OpenQ
import PostgresNIO

extension MessageQueue.Storage {
    /// Durable topics in a PostgreSQL database, shared by every broker opened on it.
    ///
    /// ```swift
    /// import OpenQ
    /// import OpenQPostgres
    /// import PostgresNIO
    ///
    /// let database = PostgresClient.Configuration(
    ///     host: "db.internal", username: "app", password: ProcessInfo.processInfo.environment["PGPASSWORD"],
    ///     database: "app", tls: .prefer(.makeClientConfiguration()))
    /// let queue = try await MessageQueue(storage: .postgres(database))
    /// let jobs = try await queue.createTopic("jobs", of: Job.self, configuration: .init(durability: .durable))
    /// ```
    ///
    /// The broker creates the client, runs it, and stops it when it shuts down. The client asks for
    /// `default_transaction_isolation` `read committed` whatever the server's default: the claims
    /// rely on it. Each topic the broker declares with ``OpenQ/Durability/durable`` lives in the
    /// database, in the schema `schema` (created and migrated when the broker opens), where every
    /// other broker on the database finds it: a message published by one is received by another.
    /// - Parameters:
    ///   - configuration: where the database is and how to reach it (host or Unix socket, user,
    ///     password, database, TLS: postgres-nio's `PostgresClient.Configuration`). Nothing of it is
    ///     logged.
    ///   - schema: the PostgreSQL schema OpenQ's tables live in, quoted as an identifier. Default
    ///     `openq`.
    ///   - pollInterval: how often a waiting receive looks at the database when no publish of this
    ///     process woke it. Default 250 ms.
    /// - Throws (when the broker opens): ``OpenQ/OpenQError/Code/invalidName`` for a schema name PostgreSQL
    ///   cannot take; ``OpenQ/OpenQError/Code/storeIncompatible`` for a schema a newer OpenQ (or
    ///   another application) wrote; ``OpenQ/OpenQError/Code/storageFailed`` when the database cannot be
    ///   reached or refuses the migration.
    public static func postgres(
        _ configuration: PostgresClient.Configuration, schema: String = "openq",
        pollInterval: Duration = .milliseconds(250)
    ) -> Self {
        Self(shared: { () async throws(OpenQError) in
            var configuration = configuration
            configuration.options.additionalStartupParameters.append(
                ("default_transaction_isolation", "read committed"))
            let logger = Logger(label: "openq.postgres")
            let client = PostgresClient(configuration: configuration, backgroundLogger: logger)
            return try await PostgresBackend.open(
                client: client, schema: schema, pollInterval: pollInterval, runsClient: true, logger: logger)
        })
    }

    /// Durable topics in a PostgreSQL database, through a `PostgresClient` of your own.
    ///
    /// Run the client yourself, before the broker opens and until it has shut down: as a
    /// swift-service-lifecycle `Service` in your `ServiceGroup`, or in a task of its own
    /// (`Task { await client.run() }`). A query of a client that nothing runs waits for ever.
    /// The claims need `read committed`, PostgreSQL's default; a client whose sessions default to
    /// another isolation level must not be used.
    /// - Parameters:
    ///   - client: a running postgres-nio client.
    ///   - schema: as in ``postgres(_:schema:pollInterval:)``.
    ///   - pollInterval: as in ``postgres(_:schema:pollInterval:)``.
    public static func postgres(
        client: PostgresClient, schema: String = "openq", pollInterval: Duration = .milliseconds(250)
    ) -> Self {
        Self(shared: { () async throws(OpenQError) in
            try await PostgresBackend.open(
                client: client, schema: schema, pollInterval: pollInterval, runsClient: false,
                logger: Logger(label: "openq.postgres"))
        })
    }
}
