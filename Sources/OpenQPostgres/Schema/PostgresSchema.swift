// The engine's PostgreSQL schema: its tables and functions, versioned migrations under an advisory lock.

import Logging
import OpenQ
import PostgresNIO

/// OpenQ's tables in one PostgreSQL schema (default `openq`), created and migrated by
/// ``migrate(_:logger:)``.
///
/// - `migrations`: one row per applied migration; a schema with a version this code does not know
///   is refused and left as it is.
/// - `clock()`: the one place every statement reads time, `clock_timestamp()` (the statement's
///   time, never `now()`, which is the transaction's start). Visibility is judged by the
///   database's clock, never a host's: hosts' clocks differ. Tests redefine it to read a row they
///   move.
/// - `topics`: one row per topic (ids below 2^24 and sequence numbers up to 2^40: a message id is
///   `id << 40 | sequence`; a topic's id is also the second key of its advisory lock, shared by
///   publishes, exclusive for a subscribe or unsubscribe): payload type, configuration (JSON),
///   the dead-letter policy (`max_deliveries`, `dead_letter_topic`), and `next_sequence`, the
///   counter a publish takes its range of sequence numbers from in a short statement of its own
///   (the row is locked for that statement only, not for the publish's transaction).
/// - `subscriptions`: one row per named subscription, with its configuration (JSON) and its
///   visibility timeout in microseconds.
/// - `messages`: one row per message some subscription still holds: payload bytes, headers
///   (JSON), priority, the database's time of the publish, and `copies_left`, how many
///   subscriptions still hold it (the last acknowledgement deletes the row).
/// - `copies`: one row per message a subscription holds: priority (copied, for the claim order),
///   `visible_at` (when it may be claimed), `attempts`, `claim` (the nonce of the current claim,
///   from the `claims` sequence; `NULL` while nobody holds it), the last error and the first
///   delivery's time. Fill factor 70: every delivery updates its row, and room on the page lets
///   PostgreSQL update it in place (a HOT update) instead of moving it.
package enum PostgresSchema {
    /// The newest migration this code knows.
    package static var version: Int { migrations.count }

    /// A migration: the statements that take the schema from the version before to this one.
    struct Migration: Sendable {
        var version: Int
        var statements: @Sendable (PostgresIdentifier) -> [String]
    }

    /// The migrations, oldest first. Never edit one that has shipped: add the next.
    static let migrations: [Migration] = [
        Migration(version: 1) { schema in
            [
                "CREATE SCHEMA IF NOT EXISTS \(schema)",
                """
                CREATE TABLE \(schema).migrations (
                    version integer PRIMARY KEY,
                    applied_at timestamptz NOT NULL DEFAULT clock_timestamp()
                )
                """,
                """
                CREATE FUNCTION \(schema).clock() RETURNS timestamptz LANGUAGE sql STABLE
                AS $$ SELECT clock_timestamp() $$
                """,
                "CREATE SEQUENCE \(schema).claims AS bigint",
                """
                CREATE TABLE \(schema).topics (
                    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY CHECK (id < 16777216),
                    name text NOT NULL UNIQUE,
                    payload_type text NOT NULL,
                    configuration jsonb NOT NULL,
                    next_sequence bigint NOT NULL DEFAULT 1 CHECK (next_sequence >= 1 AND next_sequence <= 1099511627776),
                    max_deliveries integer CHECK (max_deliveries >= 1),
                    dead_letter_topic bigint REFERENCES \(schema).topics (id) ON DELETE SET NULL,
                    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
                )
                """,
                """
                CREATE TABLE \(schema).subscriptions (
                    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                    topic_id bigint NOT NULL REFERENCES \(schema).topics (id) ON DELETE CASCADE,
                    name text NOT NULL,
                    configuration jsonb NOT NULL,
                    visibility_timeout_us bigint NOT NULL CHECK (visibility_timeout_us > 0),
                    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
                    UNIQUE (topic_id, name)
                )
                """,
                """
                CREATE TABLE \(schema).messages (
                    topic_id bigint NOT NULL,
                    sequence bigint NOT NULL,
                    payload bytea NOT NULL,
                    headers jsonb NOT NULL,
                    priority integer NOT NULL,
                    published_at timestamptz NOT NULL,
                    copies_left integer NOT NULL CHECK (copies_left >= 0),
                    PRIMARY KEY (topic_id, sequence)
                )
                """,
                """
                CREATE TABLE \(schema).copies (
                    subscription_id bigint NOT NULL,
                    topic_id bigint NOT NULL,
                    sequence bigint NOT NULL,
                    priority integer NOT NULL,
                    visible_at timestamptz NOT NULL,
                    attempts integer NOT NULL DEFAULT 0,
                    claim bigint,
                    last_error text,
                    first_delivered_at timestamptz,
                    PRIMARY KEY (subscription_id, sequence)
                ) WITH (fillfactor = 70)
                """,
                // The claim order: most urgent first, then publish order.
                "CREATE INDEX copies_claim_order ON \(schema).copies (subscription_id, priority DESC, sequence)",
                // Publishing: the messages and one copy per subscription, in one transaction (the
                // range of sequence numbers was taken before, in a statement of its own). The
                // topic's shared lock keeps an unsubscribe (exclusive) from missing copies being
                // written; the subscriptions are read after it, so a finished unsubscribe is seen.
                """
                CREATE FUNCTION \(schema).publish(
                    topic bigint, first_sequence bigint, payloads bytea[], headers text[], priorities bigint[],
                    delays_us bigint[]
                ) RETURNS integer LANGUAGE plpgsql AS $$
                DECLARE
                    subscribers bigint[];
                BEGIN
                    PERFORM pg_advisory_xact_lock_shared(\(schema.literal("topics")), topic::integer);
                    SELECT array_agg(id) INTO subscribers FROM \(schema).subscriptions WHERE topic_id = topic;
                    IF subscribers IS NULL THEN
                        RETURN 0;
                    END IF;
                    INSERT INTO \(schema).messages (topic_id, sequence, payload, headers, priority, published_at, copies_left)
                    SELECT topic, first_sequence + m.ord - 1, m.payload, m.headers::jsonb, m.priority::integer,
                        \(schema).clock(), cardinality(subscribers)
                    FROM unnest(payloads, headers, priorities) WITH ORDINALITY AS m(payload, headers, priority, ord);
                    INSERT INTO \(schema).copies (subscription_id, topic_id, sequence, priority, visible_at)
                    SELECT s.id, topic, first_sequence + m.ord - 1, m.priority::integer,
                        \(schema).clock() + m.delay_us * interval '1 microsecond'
                    FROM unnest(priorities, delays_us) WITH ORDINALITY AS m(priority, delay_us, ord)
                    CROSS JOIN unnest(subscribers) AS s(id);
                    RETURN cardinality(subscribers);
                END
                $$
                """,
                // The one place a message's count of copies goes down: called with the sequence
                // numbers of copies just deleted (one per message and subscription), it locks their
                // messages in sequence order (two callers never lock crosswise), counts each down,
                // and deletes the messages no subscription holds any more.
                """
                CREATE FUNCTION \(schema).copies_gone(topic bigint, sequences bigint[])
                RETURNS void LANGUAGE plpgsql AS $$
                BEGIN
                    PERFORM 1 FROM \(schema).messages m WHERE m.topic_id = topic AND m.sequence = ANY (sequences)
                    ORDER BY m.sequence FOR NO KEY UPDATE;
                    UPDATE \(schema).messages m SET copies_left = m.copies_left - 1
                    WHERE m.topic_id = topic AND m.sequence = ANY (sequences);
                    DELETE FROM \(schema).messages m
                    WHERE m.topic_id = topic AND m.sequence = ANY (sequences) AND m.copies_left = 0;
                END
                $$
                """,
                // Dead-lettering copies of one subscription (locked or checked by the caller):
                // each message published to the topic's dead-letter topic with the dead-letter
                // headers, in the same transaction as the source copy's removal, so a dead letter
                // is never lost nor doubled. Without a dead-letter topic the copies just go.
                """
                CREATE FUNCTION \(schema).dead_letter(subscription bigint, sequences bigint[], reason text)
                RETURNS integer LANGUAGE plpgsql AS $$
                DECLARE
                    source bigint;
                    source_name text;
                    subscription_name text;
                    target bigint;
                    first_number bigint;
                    subscribers bigint[];
                    moved bigint[];
                    moved_attempts integer[];
                    moved_errors text[];
                BEGIN
                    SELECT s.topic_id, t.name, s.name, t.dead_letter_topic
                    INTO source, source_name, subscription_name, target
                    FROM \(schema).subscriptions s JOIN \(schema).topics t ON t.id = s.topic_id
                    WHERE s.id = subscription;
                    WITH deleted AS (
                        DELETE FROM \(schema).copies c
                        WHERE c.subscription_id = subscription AND c.sequence = ANY (sequences)
                        RETURNING c.sequence, c.attempts, c.last_error
                    )
                    SELECT array_agg(d.sequence ORDER BY d.sequence), array_agg(d.attempts ORDER BY d.sequence),
                        array_agg(d.last_error ORDER BY d.sequence)
                    INTO moved, moved_attempts, moved_errors FROM deleted d;
                    IF moved IS NULL THEN
                        RETURN 0;
                    END IF;
                    IF target IS NOT NULL THEN
                        PERFORM pg_advisory_xact_lock_shared(\(schema.literal("topics")), target::integer);
                        SELECT array_agg(s.id) INTO subscribers FROM \(schema).subscriptions s WHERE s.topic_id = target;
                    END IF;
                    IF subscribers IS NOT NULL THEN
                        UPDATE \(schema).topics t SET next_sequence = t.next_sequence + cardinality(moved)
                        WHERE t.id = target RETURNING t.next_sequence - cardinality(moved) INTO first_number;
                        INSERT INTO \(schema).messages
                            (topic_id, sequence, payload, headers, priority, published_at, copies_left)
                        SELECT target, first_number + r.ord - 1, m.payload,
                            m.headers || jsonb_build_object(
                                'openq-source-topic', source_name,
                                'openq-source-subscription', subscription_name,
                                'openq-source-sequence-number', m.sequence::text,
                                'openq-attempts', r.attempts::text,
                                'openq-dead-letter-reason', reason,
                                'openq-dead-lettered-at', extract(epoch FROM \(schema).clock())::text)
                            || CASE WHEN r.last_error IS NULL THEN '{}'::jsonb
                                ELSE jsonb_build_object('openq-last-error', r.last_error) END
                            || CASE WHEN m.headers ? 'openq-first-published-at' THEN '{}'::jsonb
                                ELSE jsonb_build_object(
                                    'openq-first-published-at', extract(epoch FROM m.published_at)::text) END,
                            m.priority, \(schema).clock(), cardinality(subscribers)
                        FROM unnest(moved, moved_attempts, moved_errors) WITH ORDINALITY
                            AS r(sequence, attempts, last_error, ord)
                        JOIN \(schema).messages m ON m.topic_id = source AND m.sequence = r.sequence;
                        INSERT INTO \(schema).copies (subscription_id, topic_id, sequence, priority, visible_at)
                        SELECT s.id, target, first_number + r.ord - 1, m.priority, \(schema).clock()
                        FROM unnest(moved) WITH ORDINALITY AS r(sequence, ord)
                        JOIN \(schema).messages m ON m.topic_id = source AND m.sequence = r.sequence
                        CROSS JOIN unnest(subscribers) AS s(id);
                    END IF;
                    PERFORM \(schema).copies_gone(source, moved);
                    RETURN cardinality(moved);
                END
                $$
                """,
                // Claiming: up to `claim_limit` visible copies, most urgent first, then in sequence
                // order, locked with SKIP LOCKED inside a MATERIALIZED CTE (the fence keeps the
                // planner from running the LIMIT subquery again and claiming more than asked,
                // Oban #652). A copy that used its deliveries goes to the dead letters instead.
                """
                CREATE FUNCTION \(schema).claim(subscription bigint, claim_limit integer, visibility_us bigint)
                RETURNS TABLE (
                    topic bigint, copy_sequence bigint, copy_attempts integer, copy_claim bigint,
                    visible_until timestamptz, first_delivered timestamptz, payload bytea, headers text,
                    priority integer, published timestamptz, last_error text
                ) LANGUAGE plpgsql AS $$
                DECLARE
                    allowed integer;
                    picked bigint[];
                    exhausted bigint[];
                BEGIN
                    SELECT t.max_deliveries INTO allowed FROM \(schema).subscriptions s
                    JOIN \(schema).topics t ON t.id = s.topic_id WHERE s.id = subscription;
                    WITH candidates AS MATERIALIZED (
                        SELECT c.sequence, c.attempts FROM \(schema).copies c
                        WHERE c.subscription_id = subscription AND c.visible_at <= \(schema).clock()
                        ORDER BY c.priority DESC, c.sequence
                        LIMIT claim_limit
                        FOR UPDATE SKIP LOCKED
                    )
                    SELECT array_agg(k.sequence) FILTER (WHERE allowed IS NULL OR k.attempts < allowed),
                        array_agg(k.sequence) FILTER (WHERE k.attempts >= allowed)
                    INTO picked, exhausted FROM candidates k;
                    IF exhausted IS NOT NULL THEN
                        PERFORM \(schema).dead_letter(subscription, exhausted, 'maxDeliveries');
                    END IF;
                    IF picked IS NULL THEN
                        RETURN;
                    END IF;
                    RETURN QUERY
                    UPDATE \(schema).copies c SET
                        visible_at = \(schema).clock() + visibility_us * interval '1 microsecond',
                        attempts = c.attempts + 1,
                        claim = nextval(\(schema.sequence("claims"))),
                        first_delivered_at = coalesce(c.first_delivered_at, \(schema).clock())
                    FROM \(schema).messages m
                    WHERE c.subscription_id = subscription AND c.sequence = ANY (picked)
                        AND m.topic_id = c.topic_id AND m.sequence = c.sequence
                    RETURNING c.topic_id, c.sequence, c.attempts, c.claim, c.visible_at, c.first_delivered_at,
                        m.payload, m.headers::text, m.priority, m.published_at, c.last_error;
                END
                $$
                """,
                // A failed attempt: the copy visible again after its delay, or dead-lettered once
                // it used its deliveries; a rejection dead-letters at once. The receipt (claim
                // nonce, still invisible) is checked under the row's lock before anything changes.
                """
                CREATE FUNCTION \(schema).nack(
                    subscription bigint, copy_sequence bigint, copy_claim bigint, delay_us bigint, error text,
                    reject boolean
                ) RETURNS text LANGUAGE plpgsql AS $$
                DECLARE
                    allowed integer;
                    used integer;
                BEGIN
                    SELECT t.max_deliveries INTO allowed FROM \(schema).subscriptions s
                    JOIN \(schema).topics t ON t.id = s.topic_id WHERE s.id = subscription;
                    SELECT c.attempts INTO used FROM \(schema).copies c
                    WHERE c.subscription_id = subscription AND c.sequence = copy_sequence AND c.claim = copy_claim
                        AND c.visible_at > \(schema).clock()
                    FOR UPDATE;
                    IF used IS NULL THEN
                        RETURN NULL;
                    END IF;
                    IF reject OR used >= allowed THEN
                        UPDATE \(schema).copies c SET last_error = coalesce(error, c.last_error)
                        WHERE c.subscription_id = subscription AND c.sequence = copy_sequence;
                        PERFORM \(schema).dead_letter(
                            subscription, ARRAY[copy_sequence],
                            CASE WHEN reject THEN 'rejected' ELSE 'maxDeliveries' END);
                        RETURN 'deadLettered';
                    END IF;
                    UPDATE \(schema).copies c SET
                        claim = NULL,
                        visible_at = \(schema).clock() + delay_us * interval '1 microsecond',
                        last_error = coalesce(error, c.last_error)
                    WHERE c.subscription_id = subscription AND c.sequence = copy_sequence;
                    RETURN 'requeued';
                END
                $$
                """,
                // Acknowledging: a copy gone, its message's count down, the message gone with its
                // last copy. One function, so one round trip; each statement sees the one before.
                """
                CREATE FUNCTION \(schema).ack(subscription bigint, sequences bigint[], claims bigint[])
                RETURNS SETOF bigint LANGUAGE plpgsql AS $$
                DECLARE
                    topic bigint;
                    done bigint[];
                BEGIN
                    WITH deleted AS (
                        DELETE FROM \(schema).copies c
                        USING unnest(sequences, claims) AS r(sequence, claim)
                        WHERE c.subscription_id = subscription AND c.sequence = r.sequence AND c.claim = r.claim
                            AND c.visible_at > \(schema).clock()
                        RETURNING c.topic_id, c.sequence
                    )
                    SELECT array_agg(deleted.sequence), min(deleted.topic_id) INTO done, topic FROM deleted;
                    IF done IS NULL THEN
                        RETURN;
                    END IF;
                    PERFORM \(schema).copies_gone(topic, done);
                    RETURN QUERY SELECT unnest(done);
                END
                $$
                """,
                // A topic found or created, safe against another broker creating it at the same
                // moment (each statement sees what committed before it): found first, so an
                // existing topic uses up no identity value.
                """
                CREATE FUNCTION \(schema).open_topic(topic_name text, type_name text, topic_configuration jsonb)
                RETURNS TABLE (topic bigint, payload text) LANGUAGE plpgsql AS $$
                BEGIN
                    LOOP
                        RETURN QUERY SELECT t.id, t.payload_type FROM \(schema).topics t WHERE t.name = topic_name;
                        IF FOUND THEN
                            RETURN;
                        END IF;
                        RETURN QUERY INSERT INTO \(schema).topics AS t (name, payload_type, configuration)
                        VALUES (topic_name, type_name, topic_configuration)
                        ON CONFLICT (name) DO NOTHING RETURNING t.id, t.payload_type;
                        IF FOUND THEN
                            RETURN;
                        END IF;
                    END LOOP;
                END
                $$
                """,
                // A subscription found or created. The topic's exclusive lock waits for publishes in
                // flight, so a publish that commits after this one sees the subscription, and one
                // that committed before did not copy to it: a subscription gets every message
                // published after it exists, and none from before.
                """
                CREATE FUNCTION \(schema).subscribe(
                    topic bigint, subscription_name text, subscription_configuration jsonb, visibility_us bigint
                ) RETURNS bigint LANGUAGE plpgsql AS $$
                DECLARE
                    found_id bigint;
                BEGIN
                    SELECT s.id INTO found_id FROM \(schema).subscriptions s
                    WHERE s.topic_id = topic AND s.name = subscription_name;
                    IF found_id IS NOT NULL THEN
                        RETURN found_id;
                    END IF;
                    PERFORM pg_advisory_xact_lock(\(schema.literal("topics")), topic::integer);
                    INSERT INTO \(schema).subscriptions AS s (topic_id, name, configuration, visibility_timeout_us)
                    VALUES (topic, subscription_name, subscription_configuration, visibility_us)
                    ON CONFLICT (topic_id, name) DO NOTHING RETURNING s.id INTO found_id;
                    IF found_id IS NULL THEN
                        SELECT s.id INTO found_id FROM \(schema).subscriptions s
                        WHERE s.topic_id = topic AND s.name = subscription_name;
                    END IF;
                    RETURN found_id;
                END
                $$
                """,
                // A subscription removed: its copies gone, their messages' counts down.
                """
                CREATE FUNCTION \(schema).unsubscribe(topic bigint, subscription_name text)
                RETURNS boolean LANGUAGE plpgsql AS $$
                DECLARE
                    subscription bigint;
                    held bigint[];
                BEGIN
                    PERFORM pg_advisory_xact_lock(\(schema.literal("topics")), topic::integer);
                    DELETE FROM \(schema).subscriptions WHERE topic_id = topic AND name = subscription_name
                    RETURNING id INTO subscription;
                    IF subscription IS NULL THEN
                        RETURN false;
                    END IF;
                    PERFORM 1 FROM \(schema).copies c WHERE c.subscription_id = subscription
                    ORDER BY c.sequence FOR UPDATE;
                    WITH deleted AS (
                        DELETE FROM \(schema).copies WHERE subscription_id = subscription RETURNING sequence
                    )
                    SELECT array_agg(deleted.sequence) INTO held FROM deleted;
                    IF held IS NOT NULL THEN
                        PERFORM \(schema).copies_gone(topic, held);
                    END IF;
                    RETURN true;
                END
                $$
                """,
            ]
        }
    ]

    /// The two keys of the transaction-level advisory lock that migrations hold
    /// (`pg_advisory_xact_lock(int, int)`): OpenQ's, and the schema name's hash. A transaction lock,
    /// not a session lock: session locks break behind a transaction pooler such as PgBouncer.
    static let lockKey: Int32 = 0x4F70_6E51  // "OpnQ"

    /// Creates the schema or brings it to ``version``, once however many processes start together:
    /// every migration runs in one transaction that first takes the advisory lock, so a second
    /// process waits, then finds the work done.
    /// - Returns: the version the schema had before (0: it was created).
    /// - Throws: ``OpenQError/Code/storeIncompatible`` when the schema is newer than this code or
    ///   belongs to another application (both left as they are);
    ///   ``OpenQError/Code/storageFailed`` when the database fails.
    @discardableResult
    package static func migrate(
        _ client: PostgresClient, schema: PostgresIdentifier, logger: Logger
    ) async throws(OpenQError) -> Int {
        do {
            return try await client.withTransaction(logger: logger) { connection in
                // Read committed whatever the server's default: each statement after the lock
                // must see what a process that migrated before committed.
                try await connection.query("SET TRANSACTION ISOLATION LEVEL READ COMMITTED", logger: logger)
                try await connection.query(
                    "SELECT pg_advisory_xact_lock(\(lockKey), hashtext(\(schema.name)))", logger: logger)
                let found = try await installedVersion(connection, schema: schema, logger: logger)
                guard found < version else {
                    if found > version {
                        throw OpenQError(
                            .storeIncompatible,
                            "PostgreSQL schema \(schema) was migrated by a newer version of OpenQ (schema version "
                                + "\(found), this version knows \(version)); it was left as it is. Use that version.")
                    }
                    return found
                }
                for migration in migrations where migration.version > found {
                    for statement in migration.statements(schema) {
                        try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                    }
                    try await connection.query(
                        PostgresQuery(
                            unsafeSQL: "INSERT INTO \(schema).migrations (version) VALUES (\(migration.version))"),
                        logger: logger)
                }
                logger.info(
                    "migrated the PostgreSQL schema",
                    metadata: ["schema": "\(schema.name)", "from": "\(found)", "to": "\(version)"])
                return found
            }
        } catch let error as OpenQError {
            throw error
        } catch {
            throw PostgresErrors.openQError(error, doing: "migrating schema \(schema)")
        }
    }

    /// The schema's version: 0 when it does not exist or is empty.
    /// - Throws: ``OpenQError/Code/storeIncompatible`` when it holds tables but no OpenQ migrations
    ///   (another application's schema).
    private static func installedVersion(
        _ connection: PostgresConnection, schema: PostgresIdentifier, logger: Logger
    ) async throws -> Int {
        let relations = try await connection.query(
            """
            SELECT count(*) FILTER (WHERE c.relname = 'migrations'), count(*) FROM pg_catalog.pg_class c
            JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = \(schema.name)
            """, logger: logger)
        var migrationsTable = 0
        var count = 0
        for try await (hasMigrations, all) in relations.decode((Int, Int).self) {
            migrationsTable = hasMigrations
            count = all
        }
        if count == 0 { return 0 }
        guard migrationsTable == 1 else {
            throw OpenQError(
                .storeIncompatible,
                "PostgreSQL schema \(schema) holds \(count) relations but no OpenQ migrations: it belongs to another "
                    + "application; it was left as it is. Name another schema.")
        }
        let rows = try await connection.query(
            PostgresQuery(unsafeSQL: "SELECT coalesce(max(version), 0) FROM \(schema).migrations"), logger: logger)
        for try await found in rows.decode(Int.self) { return found }
        return 0
    }
}

/// A PostgreSQL identifier (a schema name), quoted wherever it goes into a statement, so that any
/// name is taken as a name and never as SQL.
package struct PostgresIdentifier: Sendable, Hashable, CustomStringConvertible {
    /// The name as the catalog holds it.
    package let name: String

    /// - Throws: ``OpenQError/Code/invalidConfiguration`` for an empty name, one longer than
    ///   PostgreSQL's 63 bytes (it would silently cut it), or one with a NUL, a `$` (the schema's
    ///   functions are `$$`-quoted bodies that name it) or a `\\` (string literals name it too,
    ///   and a server with `standard_conforming_strings` off reads a backslash as an escape).
    package init(_ name: String) throws(OpenQError) {
        guard !name.isEmpty, name.utf8.count <= 63, !name.utf8.contains(0), !name.contains("$"), !name.contains("\\")
        else {
            throw OpenQError(
                .invalidConfiguration,
                "a PostgreSQL schema name must have 1 to 63 bytes and no NUL, '$' or '\\' character: '\(name)'")
        }
        self.name = name
    }

    /// The name quoted as an identifier: `"name"`, any `"` inside doubled.
    package var description: String { "\"" + name.replacing("\"", with: "\"\"") + "\"" }

    /// `hashtext('<name>.<purpose>')` as SQL, with the name as a string literal (any `'` doubled):
    /// the first key of the advisory locks for `purpose` in this schema, so that two OpenQ schemas
    /// in one database lock apart.
    func literal(_ purpose: String) -> String {
        "hashtext('" + (name + "." + purpose).replacing("'", with: "''") + "')"
    }

    /// A sequence of this schema as a `regclass` literal, for `nextval`.
    func sequence(_ sequence: String) -> String {
        "'" + (description + "." + sequence).replacing("'", with: "''") + "'"
    }
}
