import Foundation
import HTTPTypes
import Hummingbird
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
        /// The port to bind; 0 picks a free one (see ``SQSServer/onListening``). Default 9324.
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
        let actions = SQSActions(queues: queues)
        let router = Router()
        let configuration = self.configuration
        let logger = self.logger
        router.get("/health") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "text/plain"], body: .init(byteBuffer: ByteBuffer(string: "ok\n")))
        }
        let verifier = configuration.credentials.map { credentials in
            SigV4Verifier(region: configuration.region) { credentials.secret(of: $0) }
        }
        let serverMetrics = configuration.metrics.map {
            ServerMetrics(factory: PrometheusMetricsFactory(registry: $0.registry))
        }
        router.post("/") { request, _ in
            try await Self.serve(
                request, actions: actions, verifier: verifier, configuration: configuration,
                endpoint: endpoint.withLock { $0 }, logger: logger, metrics: serverMetrics)
        }
        if let metrics = configuration.metrics {
            router.get("/metrics") { request, _ in
                Self.metrics(
                    request, metrics: metrics, verifier: verifier, configuration: configuration,
                    endpoint: endpoint.withLock { $0 })
            }
        }
        let onListening: @Sendable (Int) async -> Void = { [onListening] port in
            if let bound = try? SQSEndpoint(configuration, boundPort: port) { endpoint.withLock { $0 = bound } }
            await onListening(port)
        }
        let app = Application(
            router: router,
            server: .http1(
                configuration: .init(
                    idleTimeout: .nanoseconds(
                        Int64(configuration.idleTimeout / .nanoseconds(1))))),
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: nil),
            onServerRunning: { channel in await onListening(channel.localAddress?.port ?? 0) },
            logger: logger
        )
        let queues = self.queues
        try await withGracefulShutdownHandler {
            try await app.run()
        } onGracefulShutdown: {
            Task { await queues.beginShutdown() }
        }
    }

    static func serve(
        _ request: Request, actions: SQSActions, verifier: SigV4Verifier?, configuration: Configuration,
        endpoint: SQSEndpoint, logger: Logger, metrics: ServerMetrics? = nil
    ) async throws -> Response {
        let started = ContinuousClock.now
        let target = request.headers[HTTPField.Name("X-Amz-Target")!]
        let reply: SQSActions.Reply
        var accessKey: String?
        if let length = request.headers[.contentLength].flatMap(Int.init), length > configuration.maximumRequestBytes {
            reply = SQSActions.reply(Self.tooLarge(configuration))
        } else {
            let collected = await Self.collect(request.body, configuration: configuration)
            if case .success(let body) = collected {
                do {
                    var caller: SQSActions.Caller?
                    if !configuration.allowAnonymous, let verifier, let credentials = configuration.credentials {
                        let accessKeyId = try Self.authenticate(
                            request, body: body, verifier: verifier, endpoint: endpoint)
                        caller = SQSActions.Caller(accessKeyId: accessKeyId, credentials: credentials)
                        accessKey = accessKeyId
                    }
                    reply = await actions.handle(target: target, body: body, baseURL: endpoint.baseURL, caller: caller)
                } catch {
                    reply = SQSActions.reply(error)
                }
            } else if case .failure(let error) = collected {
                reply = SQSActions.reply(error)
            } else {
                reply = SQSActions.reply(Self.tooLarge(configuration))
            }
        }
        var headers = Self.headers(of: reply)
        // After a body that was too large, the rest of it is not read: close.
        if reply.status == 413 { headers[.connection] = "close" }
        headers[HTTPField.Name("x-amzn-RequestId")!] = UUID().uuidString
        metrics?.record(
            action: target.map { $0.hasPrefix("AmazonSQS.") ? String($0.dropFirst(10)) : "unknown" } ?? "none",
            status: reply.status, duration: ContinuousClock.now - started)
        // The access log: one structured line per request.
        logger.info(
            "request",
            metadata: [
                "action": "\(target.map { $0.hasPrefix("AmazonSQS.") ? String($0.dropFirst(10)) : $0 } ?? "-")",
                "status": "\(reply.status)", "key": "\(accessKey ?? "-")",
                "duration_us": "\(Int((ContinuousClock.now - started) / .microseconds(1)))",
            ])
        return Response(
            status: .init(code: reply.status), headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: reply.body)))
    }

    /// Reads a body within the size limit (in this task: the body's sequence allows one reader,
    /// and the server drains what is left after the reply).
    static func collect(_ body: RequestBody, configuration: Configuration) async -> Result<[UInt8], SQSError> {
        do {
            return .success(Array(buffer: try await body.collect(upTo: configuration.maximumRequestBytes)))
        } catch {
            return .failure(tooLarge(configuration))
        }
    }

    /// `GET /metrics`: the registry in the Prometheus text format, for anyone when the metrics are
    /// public or the server anonymous, otherwise for a signed request of an admin of every queue.
    static func metrics(
        _ request: Request, metrics: SQSMetrics, verifier: SigV4Verifier?, configuration: Configuration,
        endpoint: SQSEndpoint
    ) -> Response {
        if !metrics.isPublic, !configuration.allowAnonymous {
            do {
                guard let verifier, let credentials = configuration.credentials else {
                    throw SigV4Verifier.denied("MissingAuthenticationToken", "Request is missing Authentication Token")
                }
                let key = try authenticate(request, body: [], verifier: verifier, endpoint: endpoint)
                guard credentials.allows(key, "GetMetrics", queue: "") else {
                    throw SQSError.accessDenied("GET /metrics", queue: nil)
                }
            } catch {
                let reply = SQSActions.reply(SQSQueues.mapped(error))
                return Response(
                    status: .init(code: reply.status), headers: headers(of: reply),
                    body: .init(byteBuffer: ByteBuffer(bytes: reply.body)))
            }
        }
        return Response(
            status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(bytes: metrics.emit())))
    }

    /// Checks who signed a request: one `Authorization` header, a signature for this server's host
    /// and region, by a known key.
    /// - Returns: the access key id.
    static func authenticate(
        _ request: Request, body: [UInt8], verifier: SigV4Verifier, endpoint: SQSEndpoint
    ) throws(SQSError) -> String {
        guard request.headers[values: .authorization].count <= 1 else {
            throw SigV4Verifier.denied(
                "IncompleteSignature", "The request has more than one Authorization header; send exactly one.")
        }
        let signed = signed(request, authority: request.head.authority, body: body)
        if signed.headers["authorization"] != nil { try endpoint.checkSigned(forHost: request.head.authority) }
        return try verifier.verify(signed)
    }

    /// What SigV4 verification needs of a request (the `Host` header is HTTP's authority).
    static func signed(_ request: Request, authority: String?, body: [UInt8]) -> SigV4Verifier.Request {
        var headers: [String: String] = [:]
        for field in request.headers {
            let name = field.name.canonicalName
            headers[name] = headers[name].map { "\($0),\(field.value)" } ?? field.value
        }
        if let authority { headers["host"] = authority }
        return SigV4Verifier.Request(
            method: request.method.rawValue, path: request.uri.path, query: request.uri.query ?? "", headers: headers,
            body: body)
    }

    /// The headers every SQS reply carries: its content type, and an error's query-protocol code.
    static func headers(of reply: SQSActions.Reply) -> HTTPFields {
        var headers: HTTPFields = [.contentType: "application/x-amz-json-1.0"]
        if let queryError = reply.queryError { headers[HTTPField.Name("x-amzn-query-error")!] = queryError }
        return headers
    }

    static func tooLarge(_ configuration: Configuration) -> SQSError {
        SQSError(
            "RequestEntityTooLarge", query: "RequestEntityTooLarge",
            "The request body is larger than \(configuration.maximumRequestBytes) bytes.", status: 413)
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
