// A throwaway PostgreSQL cluster for the tests: initdb in a temporary directory, a Unix socket, removed at exit.

import Foundation
import Logging
import PostgresNIO
import Testing

/// One PostgreSQL cluster per test process, started on first use and removed when the process
/// exits: `initdb` in a temporary directory, a server listening on a Unix socket in that directory
/// only (no TCP port, so parallel runs never collide), `fsync` off (the tests check OpenQ, not
/// PostgreSQL's durability).
///
/// The binaries come from `OPENQ_POSTGRES_BIN`, else Debian's `/usr/lib/postgresql/<version>/bin`
/// (newest first), else the directory of `initdb` on `PATH`. `initdb` and `postgres` refuse to run
/// as root, so as root they run as the `postgres` user (`runuser`) on a directory it owns.
///
/// Without the binaries the PostgreSQL tests are skipped with one line saying why; with
/// `OPENQ_REQUIRE_POSTGRES=1` (CI) ``requireAvailable()`` fails instead.
final class PostgresCluster: Sendable {
    /// The process's cluster, or why there is none.
    static let shared: Result<PostgresCluster, ClusterError> = {
        do throws(ClusterError) {
            let cluster = try PostgresCluster.start()
            atexit { PostgresCluster.stopShared() }
            return .success(cluster)
        } catch {
            print("◇ PostgreSQL tests skipped: \(error.reason)")
            return .failure(error)
        }
    }()

    /// Whether the PostgreSQL tests can run here (the condition of their `.enabled(if:)` trait).
    static var isAvailable: Bool {
        if case .success = shared { return true }
        return false
    }

    /// Why there is no cluster.
    struct ClusterError: Error, CustomStringConvertible {
        var reason: String
        var description: String { reason }
    }

    /// The directory that holds the data directory and the socket.
    let directory: URL
    /// The database user initdb created (trust authentication on the socket).
    static let user = "openq"
    /// The socket port: only the socket file's name, `.s.PGSQL.<port>`.
    let port: Int

    private init(directory: URL, port: Int) {
        self.directory = directory
        self.port = port
    }

    /// A client configuration for the cluster's socket.
    var clientConfiguration: PostgresClient.Configuration {
        var configuration = PostgresClient.Configuration(
            unixSocketPath: directory.appendingPathComponent(".s.PGSQL.\(port)").path,
            username: Self.user, password: nil, database: "postgres")
        configuration.options.maximumConnections = 8
        return configuration
    }

    /// Runs `body` with a client of the cluster that runs meanwhile (postgres-nio's client answers
    /// nothing unless something runs it).
    func withClient<T: Sendable>(_ body: @Sendable (PostgresClient) async throws -> T) async throws -> T {
        var logger = Logger(label: "openq.test.pg")
        logger.logLevel = .error  // not the pool's notices of a client started and stopped per test
        let client = PostgresClient(configuration: clientConfiguration, backgroundLogger: logger)
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await client.run() }
            defer { group.cancelAll() }
            return try await body(client)
        }
    }

    private static func start() throws(ClusterError) -> PostgresCluster {
        let binaries = try findBinaries()
        removeAbandonedClusters(pgCtl: binaries.appendingPathComponent("pg_ctl").path)
        let directory = URL(fileURLWithPath: NSTemporaryDirectory())
            .appendingPathComponent("openq-pg-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        } catch {
            throw ClusterError(reason: "cannot create \(directory.path): \(error)")
        }
        let asRoot = geteuid() == 0
        if asRoot {
            // The postgres user owns the directory it runs in; the tests (root) reach the socket.
            try run("/bin/chown", ["postgres:postgres", directory.path], asPostgres: false)
        }
        let port = Int.random(in: 20_000...60_000)
        // Whatever fails from here on, nothing is left behind: the server stopped, the directory gone.
        let pgCtl = binaries.appendingPathComponent("pg_ctl").path
        let data = directory.appendingPathComponent("data").path
        func abandon(_ error: ClusterError) -> ClusterError {
            _ = try? run(pgCtl, ["-D", data, "-m", "immediate", "-w", "stop"], asPostgres: asRoot)
            try? FileManager.default.removeItem(at: directory)
            return error
        }
        do throws(ClusterError) {
            try startServer(binaries: binaries, directory: directory, data: data, port: port, asRoot: asRoot)
        } catch {
            throw abandon(error)
        }
        let cluster = PostgresCluster(directory: directory, port: port)
        shutdownState = (pgCtl, data, directory.path, asRoot)
        return cluster
    }

    private static func startServer(
        binaries: URL, directory: URL, data: String, port: Int, asRoot: Bool
    ) throws(ClusterError) {
        try run(
            binaries.appendingPathComponent("initdb").path,
            ["-D", data, "-U", user, "-A", "trust", "-E", "UTF8", "--no-sync", "--no-instructions"],
            asPostgres: asRoot)
        let options =
            "-c listen_addresses='' -k '\(directory.path)' -p \(port) -c fsync=off -c synchronous_commit=off "
            + "-c full_page_writes=off -c max_connections=200"
        try run(
            binaries.appendingPathComponent("pg_ctl").path,
            [
                "-D", data, "-o", options, "-l", directory.appendingPathComponent("server.log").path, "-w", "-t", "120",
                "start",
            ],
            asPostgres: asRoot)
    }

    /// What `stopShared` needs: plain values an `atexit` handler can reach.
    nonisolated(unsafe) private static var shutdownState:
        (pgCtl: String, data: String, directory: String, asRoot: Bool)?

    private static func stopShared() {
        guard let state = shutdownState else { return }
        _ = try? run(state.pgCtl, ["-D", state.data, "-m", "immediate", "-w", "stop"], asPostgres: state.asRoot)
        try? FileManager.default.removeItem(atPath: state.directory)
    }

    /// Stops and removes the clusters of test processes that died without their `atexit` (killed
    /// by a timeout, say), so that their servers do not outlive them for good.
    private static func removeAbandonedClusters(pgCtl: String) {
        let temporary = NSTemporaryDirectory()
        for name in (try? FileManager.default.contentsOfDirectory(atPath: temporary)) ?? []
        where name.hasPrefix("openq-pg-") {
            let parts = name.split(separator: "-")
            guard parts.count == 4, let pid = pid_t(parts[2]), pid != getpid(), kill(pid, 0) != 0, errno == ESRCH
            else { continue }
            let directory = (temporary as NSString).appendingPathComponent(name)
            let data = (directory as NSString).appendingPathComponent("data")
            if FileManager.default.fileExists(atPath: data) {
                _ = try? run(pgCtl, ["-D", data, "-m", "immediate", "-w", "stop"], asPostgres: geteuid() == 0)
            }
            try? FileManager.default.removeItem(atPath: directory)
        }
    }

    private static func findBinaries() throws(ClusterError) -> URL {
        let manager = FileManager.default
        func hasServer(_ directory: String) -> Bool {
            manager.isExecutableFile(atPath: directory + "/initdb")
                && manager.isExecutableFile(atPath: directory + "/pg_ctl")
                && manager.isExecutableFile(atPath: directory + "/postgres")
        }
        if let configured = ProcessInfo.processInfo.environment["OPENQ_POSTGRES_BIN"] {
            guard hasServer(configured) else {
                throw ClusterError(reason: "OPENQ_POSTGRES_BIN=\(configured) has no initdb, pg_ctl and postgres")
            }
            return URL(fileURLWithPath: configured)
        }
        let debian = "/usr/lib/postgresql"
        let versions = ((try? manager.contentsOfDirectory(atPath: debian)) ?? []).compactMap(Int.init).sorted(by: >)
        for version in versions where hasServer("\(debian)/\(version)/bin") {
            return URL(fileURLWithPath: "\(debian)/\(version)/bin")
        }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        for directory in path.split(separator: ":") {
            let initdb = URL(fileURLWithPath: String(directory)).appendingPathComponent("initdb")
                .resolvingSymlinksInPath()
            let bin = initdb.deletingLastPathComponent().path
            if hasServer(bin) { return URL(fileURLWithPath: bin) }
        }
        throw ClusterError(
            reason: "no PostgreSQL server binaries (initdb, pg_ctl, postgres) in /usr/lib/postgresql/*/bin or on PATH; "
                + "install Debian's postgresql package or set OPENQ_POSTGRES_BIN")
    }

    /// Runs a command to its end with posix_spawn and waitpid (Foundation's `Process` waited
    /// forever here for `pg_ctl start`, whose server outlives it), its output in a file.
    @discardableResult
    private static func run(_ executable: String, _ arguments: [String], asPostgres: Bool) throws(ClusterError)
        -> String
    {
        let argv =
            asPostgres
            ? ["/usr/sbin/runuser", "-u", "postgres", "--", executable] + arguments : [executable] + arguments
        let outputPath = NSTemporaryDirectory() + "openq-pg-output-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { try? FileManager.default.removeItem(atPath: outputPath) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        var cArguments = argv.map { strdup($0) } + [nil]
        defer { for argument in cArguments { free(argument) } }
        var pid = pid_t()
        let spawned = posix_spawn(&pid, argv[0], &actions, nil, &cArguments, environ)
        guard spawned == 0 else { throw ClusterError(reason: "cannot run \(argv[0]): errno \(spawned)") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
        let text = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
        // WIFEXITED and WEXITSTATUS by hand: the low 7 bits are the signal, the next 8 the code.
        guard status & 0x7f == 0, (status >> 8) & 0xff == 0 else {
            throw ClusterError(
                reason: "\(executable) \(arguments.joined(separator: " ")) failed (status \(status)): \(text)")
        }
        return text
    }

    /// Fails the calling test when PostgreSQL is required (`OPENQ_REQUIRE_POSTGRES=1`, as in CI)
    /// and there is no cluster.
    static func requireAvailable() {
        guard ProcessInfo.processInfo.environment["OPENQ_REQUIRE_POSTGRES"] == "1" else { return }
        if case .failure(let error) = shared {
            Issue.record("OPENQ_REQUIRE_POSTGRES=1 but the PostgreSQL tests cannot run: \(error.reason)")
        }
    }
}
