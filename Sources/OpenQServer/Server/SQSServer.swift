// The server as a Service: its configuration, router and application built from hummingbird's parts.

import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import OpenQ
import Prometheus
import ServiceLifecycle

/// OpenQ over HTTP with the Amazon SQS API (AWS JSON 1.0 protocol), so that boto3, the AWS CLI
/// and every AWS SDK use a broker with only an endpoint URL.
///
/// Each SQS queue is a topic of ``SQSMessage`` on the broker you pass, with one subscription
/// (`sqs`): Swift code on the same broker sees the queues clients create, and publishes into
/// them.
///
/// ```swift
/// let queue = MessageQueue()
/// let server = SQSServer(queue: queue, configuration: .init(port: 9324, allowAnonymous: true))
/// let group = ServiceGroup(services: [queue, server], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
/// try await group.run()
/// ```
///
/// On graceful shutdown the server stops accepting connections, ends long polls at once (with
/// no messages), and lets requests in progress finish.
public struct SQSServer: Service {
    /// Where the server listens and what it accepts.
    public struct Configuration: Sendable {
        /// The address to bind. Default `127.0.0.1`.
        public var host: String
        /// The port to bind; 0 picks a free one (the `onListening` closure of
        /// ``SQSServer/init(queue:configuration:logger:onListening:)`` learns it). Default 9324.
        public var port: Int
        /// Accept requests without checking their signature. For local development only; the
        /// server logs a warning when it is on. Default `false`.
        public var allowAnonymous: Bool
        /// The keys whose AWS Signature Version 4 the server accepts, with their permissions
        /// (``SQSCredentials``). Needed unless ``allowAnonymous``. Default none.
        public var credentials: SQSCredentials?
        /// The largest request body read, in bytes; a longer one is refused with 413 before it
        /// is read whole. Default 2 MiB (SQS's largest message is 1 MiB).
        public var maximumRequestBytes: Int
        /// How long a connection may go without a complete request head, without the next part of
        /// a body being read, or idle between requests, before it is closed: the header-read and
        /// idle timeout. A client that trickles a header a byte at a time, or stalls in a body, is
        /// closed after this long. Default 60 s.
        public var idleTimeout: Duration
        /// `GET /metrics` in the Prometheus text format, and who may read it; `nil` (the default)
        /// serves no metrics.
        public var metrics: SQSMetrics?
        /// Whether queues are durable topics on the broker's store: every message, attribute and
        /// dead-letter policy survives a restart, and ``SQSServer/run()`` reopens the stored queues
        /// before it accepts connections. Needs a broker opened on a store
        /// (`MessageQueue(storage: .sqlite(path:))`). Default `false`: queues live in memory.
        public var durableQueues: Bool
        /// The AWS region the server is: a request must be signed for it (a credential scoped to
        /// another region is `SignatureDoesNotMatch`, as in SQS), and queue ARNs name it. Default
        /// `us-east-1`.
        public var region: String
        /// The URL clients reach the server by (behind a proxy or a load balancer, its URL), such as
        /// `https://sqs.example.com`: queue URLs are built from it, and a signed request must be
        /// signed for its host. Default `nil`: `http://<host>:<port>` of the bound address, where a
        /// loopback host also answers to `localhost`, `127.0.0.1` and `[::1]`; a server bound to
        /// every address (`0.0.0.0`, `::`) needs one.
        public var publicURL: String?
        /// Further `Host` values (`name` or `name:port`) a signed request may be signed for, beside
        /// the public URL's: other names of the same server. Default none.
        public var additionalHostNames: [String]

        /// A configuration; every parameter has the default described on its property.
        public init(
            host: String = "127.0.0.1",
            port: Int = 9324,
            allowAnonymous: Bool = false,
            credentials: SQSCredentials? = nil,
            maximumRequestBytes: Int = 2 * 1_048_576,
            idleTimeout: Duration = .seconds(60),
            metrics: SQSMetrics? = nil,
            durableQueues: Bool = false,
            region: String = "us-east-1",
            publicURL: String? = nil,
            additionalHostNames: [String] = []
        ) {
            self.host = host
            self.port = port
            self.allowAnonymous = allowAnonymous
            self.credentials = credentials
            self.maximumRequestBytes = maximumRequestBytes
            self.idleTimeout = idleTimeout
            self.durableQueues = durableQueues
            self.metrics = metrics
            self.region = region
            self.publicURL = publicURL
            self.additionalHostNames = additionalHostNames
        }
    }

    let configuration: Configuration
    let logger: Logger
    let queues: SQSQueues
    let onListening: @Sendable (Int) async -> Void

    /// A server for `queue`.
    /// - Parameters:
    ///   - queue: the broker whose topics are the queues.
    ///   - configuration: where to listen and what to accept.
    ///   - logger: access and lifecycle logs.
    ///   - onListening: called with the bound port once the server accepts connections.
    public init(
        queue: MessageQueue,
        configuration: Configuration = .init(),
        logger: Logger = Logger(label: "openq-server"),
        onListening: @escaping @Sendable (Int) async -> Void = { _ in }
    ) {
        self.configuration = configuration
        self.logger = logger
        self.queues = SQSQueues(
            broker: queue, durable: configuration.durableQueues, region: configuration.region, logger: logger)
        self.onListening = onListening
    }

    /// Serves until graceful shutdown (or cancellation).
    ///
    /// Every SQS request must carry a valid AWS Signature Version 4 of a key in
    /// ``Configuration/credentials`` (within 5 minutes of the server's clock, over the body as
    /// received, for the server's ``Configuration/region`` and one of its host names: see
    /// ``Configuration/publicURL``), in one `Authorization` header and without a session token,
    /// and its key must have the permission for the action and queue; otherwise it is answered 403
    /// (`MissingAuthenticationToken`, `IncompleteSignature`, `InvalidClientTokenId`,
    /// `SignatureDoesNotMatch`, `AccessDenied`) and nothing is executed. With
    /// ``Configuration/allowAnonymous`` no request is checked. Queue URLs in replies are built from
    /// the configuration, never from a request's `Host`. `GET /health` needs no signature.
    /// - Throws: ``SQSServerError`` without credentials and without `allowAnonymous`, for a
    ///   malformed public URL or a server bound to every address without one; an error when the
    ///   address cannot be bound.
    public func run() async throws {
        if configuration.allowAnonymous {
            logger.warning(
                "Serving without authentication (allow-anonymous): every caller may do everything",
                metadata: ["host": "\(configuration.host)", "port": "\(configuration.port)"])
        } else if configuration.credentials == nil {
            throw SQSServerError(
                "openq-server needs credentials (--credentials FILE) to check who is calling, or "
                    + "--allow-anonymous for local development.")
        }
        // Checked before anything starts; the port is the bound one once the server listens.
        let endpoint = LockedValueBox(try SQSEndpoint(configuration, boundPort: configuration.port))
        let reopened = try await queues.restore()
        if configuration.durableQueues {
            logger.info("Durable queues", metadata: ["reopened": "\(reopened)"])
        }
        let app = buildApplication(router: buildRouter(endpoint: { endpoint.withLock { $0 } })) { port in
            if let bound = try? SQSEndpoint(configuration, boundPort: port) { endpoint.withLock { $0 = bound } }
        }
        // Long polls end at once on a graceful shutdown (with no messages); the application then
        // stops accepting and lets requests in progress finish. The service group that runs the
        // application owns both tasks: nothing is left running when `run()` returns.
        let queues = self.queues
        try await withThrowingTaskGroup(of: Bool.self) { group in
            group.addTask {
                try await app.run()
                return true
            }
            group.addTask {
                // Suspends until the graceful shutdown; cancelled (and throws) once the app ended.
                do {
                    try await gracefulShutdown()
                    await queues.beginShutdown()
                } catch {}
                return false
            }
            // The app ends by itself on the graceful shutdown (requests in progress finish); only
            // then is the watcher cancelled.
            while let appEnded = try await group.next() {
                if appEnded { group.cancelAll() }
            }
        }
    }

    /// The server's routes: `POST /` for the SQS actions (through the access log and metrics, body
    /// limit and authentication middleware), `GET /health`, and `GET /metrics` when
    /// ``Configuration/metrics`` is set. Other fronts mount their routes beside these and reuse the
    /// same middleware.
    /// - Parameter endpoint: the server's names, read per request.
    func buildRouter(endpoint: @escaping @Sendable () -> SQSEndpoint) -> Router<SQSRequestContext> {
        let configuration = self.configuration
        let actions = SQSActions(queues: queues)
        let authenticator = configuration.credentials.flatMap { credentials -> SQSAuthenticator? in
            guard !configuration.allowAnonymous else { return nil }
            return SQSAuthenticator(
                verifier: SigV4Verifier(region: configuration.region) { credentials.secret(of: $0) },
                credentials: credentials, endpoint: endpoint)
        }
        let router = Router(context: SQSRequestContext.self)
        router.get("/health") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "text/plain"], body: .init(byteBuffer: ByteBuffer(string: "ok\n")))
        }
        let serverMetrics = configuration.metrics.map {
            ServerMetrics(factory: PrometheusMetricsFactory(registry: $0.registry))
        }
        router.group()
            .add(middleware: AccessLogMiddleware(logger: logger, metrics: serverMetrics))
            .add(middleware: RequestBodyMiddleware(maximumBytes: configuration.maximumRequestBytes))
            .add(middleware: SigV4AuthenticationMiddleware(authenticator: authenticator))
            .post("/") { request, context in
                SQSReply.response(
                    await actions.handle(
                        target: request.headers[SQSReply.target], body: context.body, baseURL: endpoint().baseURL,
                        caller: context.caller))
            }
        if let metrics = configuration.metrics {
            router.get("/metrics") { request, _ in
                Self.metrics(request, metrics: metrics, authenticator: authenticator)
            }
        }
        return router
    }

    /// The HTTP server around `router`: HTTP/1.1 with the configured idle timeout (a caller that
    /// upgrades to WebSocket passes hummingbird-websocket's server builder), on the configured
    /// address; `onListening` learns the bound port.
    func buildApplication(
        router: Router<SQSRequestContext>, server: HTTPServerBuilder? = nil,
        onBound: @escaping @Sendable (Int) -> Void = { _ in }
    ) -> some ApplicationProtocol {
        let onListening = self.onListening
        return Application(
            router: router,
            server: server
                ?? .http1(
                    configuration: .init(
                        idleTimeout: .nanoseconds(Int64(configuration.idleTimeout / .nanoseconds(1))))),
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: nil),
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? 0
                onBound(port)
                await onListening(port)
            },
            logger: logger
        )
    }

    /// `GET /metrics`: the registries in the Prometheus text format, for anyone when the metrics
    /// are public or the server anonymous, otherwise for a signed request of an admin of every
    /// queue.
    static func metrics(_ request: Request, metrics: SQSMetrics, authenticator: SQSAuthenticator?) -> Response {
        if !metrics.isPublic, let authenticator {
            do throws(SQSError) {
                let key = try authenticator.authenticate(request, body: [])
                // An admin of every queue: a permission with the prefix "".
                guard authenticator.credentials.allows(key, .group(.admin), queue: "") else {
                    throw SQSError.accessDenied("GET /metrics", queue: nil)
                }
            } catch {
                return SQSReply.response(SQSActions.reply(error))
            }
        }
        return Response(
            status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(bytes: metrics.emit())))
    }
}

/// Why the server could not start.
public struct SQSServerError: Error, CustomStringConvertible, Sendable {
    /// What went wrong, and what to do.
    public let description: String

    init(_ description: String) {
        self.description = description
    }
}
