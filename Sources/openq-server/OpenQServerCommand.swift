// The openq-server command line.

import ArgumentParser
import Foundation
import Logging
import OpenQ
import OpenQSQLite
import OpenQServer
import Prometheus
import ServiceLifecycle

@main
struct OpenQServerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "openq-server",
        abstract: "OpenQ over HTTP with the Amazon SQS API (AWS JSON 1.0), for boto3, the AWS CLI and the AWS SDKs.",
        discussion: """
            Without --data, queues live in this process's memory and are gone when it stops. With --data PATH \
            every queue is a durable topic in that SQLite file (messages, attributes, dead-letter policies), \
            committed before each call returns, and reopened at the next start. Each queue is an OpenQ topic \
            of SQSMessage with one subscription.

            Every request must be signed (AWS Signature Version 4) with a key of the credentials file, and \
            the key must have the permission for the action and the queue:
              {"credentials": [{"accessKeyId": "AKID...", "secretAccessKey": "...",
                "permissions": [{"queuePrefix": "", "actions": ["send", "consume", "admin"]}]}]}
            --allow-anonymous turns checking off, for local development on a loopback address.

            Stops on SIGTERM or SIGINT: long polls end at once, requests in progress finish, and the broker \
            shuts down with its grace period.
            """
    )

    @Option(help: "The address to bind.")
    var host = "127.0.0.1"

    @Option(help: "The port to bind (0: any free port, printed at start).")
    var port = 9324

    @Option(help: "The AWS region this server is: requests must be signed for it; queue ARNs name it.")
    var region = "us-east-1"

    @Option(
        help: ArgumentHelp(
            "The URL clients reach this server by (http(s)://name[:port]); queue URLs are built from it and "
                + "signatures must name its host.",
            discussion: "Default: http://<host>:<port>, where a loopback host also answers to localhost, "
                + "127.0.0.1 and [::1]. Needed "
                + "when --host binds every address (0.0.0.0)."))
    var publicURL: String?

    @Option(help: "Another name (name or name:port) requests may be signed for; repeat for several.")
    var hostName: [String] = []

    @Option(help: "Keep every queue in this SQLite file (created when missing) and reopen them at start.")
    var data: String?

    @Option(help: "The credentials file (JSON): access keys, secrets and permissions.")
    var credentials: String?

    @Flag(help: "Accept unsigned requests: every caller may do everything. Local development only.")
    var allowAnonymous = false

    @Flag(help: "Serve GET /metrics to anyone (default: to requests signed by an admin of every queue).")
    var publicMetrics = false

    @Option(help: "Seconds the broker gives consumers to settle at shutdown.")
    var gracePeriod = 5

    @Option(help: "The log level: trace, debug, info, notice, warning, error or critical.")
    var logLevel = "info"

    func validate() throws {
        guard credentials != nil || allowAnonymous else {
            throw ValidationError(
                "Give --credentials FILE (who may call, checked by AWS Signature Version 4), or --allow-anonymous "
                    + "for local development.")
        }
        guard (0...65_535).contains(port) else { throw ValidationError("--port must be 0...65535.") }
        guard gracePeriod >= 0 else { throw ValidationError("--grace-period must not be negative.") }
    }

    func run() async throws {
        var logger = Logger(label: "openq-server")
        logger.logLevel = Logger.Level(rawValue: logLevel) ?? .info
        // The broker's metrics (exported every 5 s) and the server's, both served by GET /metrics.
        let metrics = SQSMetrics(registry: PrometheusCollectorRegistry(), isPublic: publicMetrics)
        let brokerConfiguration = MessageQueue.Configuration(
            metricsInterval: .seconds(5), metricsFactory: metrics.brokerMetricsFactory,
            shutdownGracePeriod: .seconds(gracePeriod))
        let queue: MessageQueue
        if let data {
            queue = try await MessageQueue(
                storage: .sqlite(path: data), configuration: brokerConfiguration, logger: logger)
        } else {
            queue = MessageQueue(configuration: brokerConfiguration, logger: logger)
        }
        let keys = try credentials.map { try SQSCredentials(contentsOf: $0) }
        let server = SQSServer(
            queue: queue,
            configuration: .init(
                host: host, port: port, allowAnonymous: allowAnonymous, credentials: keys,
                metrics: metrics, durableQueues: data != nil, region: region, publicURL: publicURL,
                additionalHostNames: hostName),
            logger: logger,
            onListening: { port in
                // One line on stdout, for scripts that started the server on port 0.
                FileHandle.standardOutput.write(Data("openq-server listening on \(self.host):\(port)\n".utf8))
            })
        let group = ServiceGroup(
            configuration: .init(
                services: [
                    .init(service: queue),
                    .init(service: server, successTerminationBehavior: .gracefullyShutdownGroup),
                ],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger))
        try await group.run()
    }
}
