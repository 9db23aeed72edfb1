import Crypto
import Foundation
import Logging
import OpenQ
import ServiceLifecycle
import Testing

@testable import OpenQServer

/// A signature is bound to this server: its region and the host names it answers to. Requests are
/// signed here (with the verifier's own canonical forms, which the botocore vector in
/// `SigV4Tests` pins) and sent over raw HTTP, so that the `Host` header is whatever the test says.
@Suite("Signatures bound to this server: region, host, session tokens, one Authorization header")
struct AuthenticationTests {
    static let credentials = SQSCredentials(credentials: [
        .init(
            accessKeyId: "AKIDADMIN", secretAccessKey: "admin-secret",
            permissions: [.init(queuePrefix: "", actions: [.send, .consume, .admin])]),
        .init(
            accessKeyId: "AKIDWORKER", secretAccessKey: "worker-secret",
            permissions: [.init(queuePrefix: "jobs", actions: [.consume])]),
    ])

    /// Runs `body` against a server with `configuration` on a free loopback port.
    func withServer(
        _ configuration: SQSServer.Configuration = .init(credentials: credentials), _ body: (Int) async throws -> Void
    ) async throws {
        try await OpenQServerTests.withServer(configuration) { port, _ in try await body(port) }
    }

    /// One SQS request over a raw connection, signed for `region` and `host` (the `Host` header
    /// sent); `authorizations` copies of the Authorization header.
    func send(
        port: Int, _ action: String, _ body: String, host: String? = nil, region: String = "us-east-1",
        key: String = "AKIDADMIN", secret: String = "admin-secret", extraHeaders: [(String, String)] = [],
        authorizations: Int = 1
    ) async throws -> (status: Int, body: String) {
        let host = host ?? "127.0.0.1:\(port)"
        let now = Date()
        let amzDate = Self.amzDate(now)
        var headers: [(String, String)] = [
            ("content-type", "application/x-amz-json-1.0"), ("host", host), ("x-amz-date", amzDate),
            ("x-amz-target", "AmazonSQS.\(action)"),
        ]
        headers += extraHeaders.map { ($0.0.lowercased(), $0.1) }
        headers.sort { $0.0 < $1.0 }
        let signedHeaders = headers.map(\.0).joined(separator: ";")
        let canonical = [
            "POST", "/", "", headers.map { "\($0.0):\($0.1)\n" }.joined(), signedHeaders,
            SigV4Verifier.hex(SHA256.hash(data: Array(body.utf8))),
        ].joined(separator: "\n")
        let day = String(amzDate.prefix(8))
        let scope = "\(day)/\(region)/sqs/aws4_request"
        let stringToSign = [
            "AWS4-HMAC-SHA256", amzDate, scope, SigV4Verifier.hex(SHA256.hash(data: Array(canonical.utf8))),
        ].joined(separator: "\n")
        let signature = SigV4Verifier.signature(
            secret: secret, day: day, region: region, service: "sqs", stringToSign: stringToSign)
        let authorization =
            "AWS4-HMAC-SHA256 Credential=\(key)/\(scope), SignedHeaders=\(signedHeaders), Signature=\(signature)"
        var head = "POST / HTTP/1.1\r\n"
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        for _ in 0..<authorizations { head += "authorization: \(authorization)\r\n" }
        head += "content-length: \(body.utf8.count)\r\nconnection: close\r\n\r\n"
        let connection = try RawConnection(port: port)
        connection.send(head + body)
        let reply = try #require(
            try await blocking { connection.readUntilClosed() }, "the server closed the connection")
        let status = Int(reply.split(separator: " ", maxSplits: 2).dropFirst().first ?? "") ?? 0
        let replyBody = reply.components(separatedBy: "\r\n\r\n").dropFirst().joined(separator: "\r\n\r\n")
        return (status, replyBody)
    }

    static func amzDate(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        return formatter.string(from: date)
    }

    @Test func aRequestSignedForAnotherRegion_isSignatureDoesNotMatch_andRunsNothing() async throws {
        try await withServer { port in
            for region in ["eu-west-1", "nowhere-1"] {
                let reply = try await send(port: port, "CreateQueue", #"{"QueueName":"jobs"}"#, region: region)
                #expect(reply.status == 403, "\(region): \(reply.body)")
                #expect(reply.body.contains("InvalidSignatureException") && reply.body.contains("region"))
            }
            let listed = try await send(port: port, "ListQueues", "{}")
            #expect(listed.status == 200 && !listed.body.contains("jobs"), "nothing was created: \(listed.body)")
            #expect(try await send(port: port, "CreateQueue", #"{"QueueName":"jobs"}"#).status == 200)
        }
    }

    @Test func aRequestSignedForAnotherHost_isSignatureDoesNotMatch() async throws {
        try await withServer { port in
            for host in ["sqs.eu-west-1.amazonaws.com", "evil.example:8080", "127.0.0.1:\(port + 1)"] {
                let reply = try await send(port: port, "CreateQueue", #"{"QueueName":"jobs"}"#, host: host)
                #expect(reply.status == 403, "\(host): \(reply.body)")
                #expect(reply.body.contains("InvalidSignatureException") && reply.body.contains("not this server"))
            }
            // A loopback server answers to its loopback names.
            for host in ["127.0.0.1:\(port)", "localhost:\(port)", "LOCALHOST:\(port)"] {
                #expect(try await send(port: port, "ListQueues", "{}", host: host).status == 200, "\(host)")
            }
        }
    }

    @Test func queueURLs_comeFromTheConfiguration_notFromTheHostHeader() async throws {
        try await withServer(.init(allowAnonymous: true)) { port in
            // Anonymous: nothing is verified, and still the URL names this server.
            let reply = try await send(port: port, "CreateQueue", #"{"QueueName":"jobs"}"#, host: "evil.example:8080")
            #expect(reply.status == 200)
            #expect(reply.body.contains("http://127.0.0.1:\(port)/000000000000/jobs"), "\(reply.body)")
            #expect(!reply.body.contains("evil"))
        }
        let configured = SQSServer.Configuration(
            credentials: Self.credentials, publicURL: "https://sqs.example.com", additionalHostNames: ["queue.internal"]
        )
        try await withServer(configured) { port in
            let reply = try await send(
                port: port, "CreateQueue", #"{"QueueName":"jobs"}"#, host: "sqs.example.com")
            #expect(reply.status == 200, "\(reply.body)")
            #expect(reply.body.contains("https://sqs.example.com/000000000000/jobs"), "\(reply.body)")
            #expect(try await send(port: port, "ListQueues", "{}", host: "sqs.example.com:443").status == 200)
            #expect(try await send(port: port, "ListQueues", "{}", host: "queue.internal").status == 200)
            // The bound address is not one of its public names.
            #expect(try await send(port: port, "ListQueues", "{}").status == 403)
        }
    }

    @Test func aServerBoundToEveryAddress_needsItsPublicURL() async throws {
        let server = SQSServer(
            queue: MessageQueue(), configuration: .init(host: "0.0.0.0", port: 0, credentials: Self.credentials))
        let error = await #expect(throws: SQSServerError.self) { try await server.run() }
        #expect(error?.description.contains("public URL") == true)
        let malformed = SQSServer(
            queue: MessageQueue(),
            configuration: .init(port: 0, credentials: Self.credentials, publicURL: "sqs.example.com/path"))
        await #expect(throws: SQSServerError.self) { try await malformed.run() }
    }

    @Test func aSessionToken_isRefused_withAClearError() async throws {
        try await withServer { port in
            let reply = try await send(
                port: port, "ListQueues", "{}", extraHeaders: [("X-Amz-Security-Token", "FQoGZXIvYXdzE...")])
            #expect(reply.status == 403)
            #expect(reply.body.contains("Session tokens"), "\(reply.body)")
        }
    }

    @Test func twoAuthorizationHeaders_areRefused() async throws {
        try await withServer { port in
            let reply = try await send(port: port, "ListQueues", "{}", authorizations: 2)
            #expect(reply.status == 403)
            #expect(reply.body.contains("more than one Authorization header"), "\(reply.body)")
        }
    }

    /// A worker that may only consume looks its queue up and reads its attributes (it could not:
    /// AccessDenied), and still may not administer it or touch other queues.
    @Test func aConsumeOnlyKey_looksItsQueueUp_andReadsItsAttributes() async throws {
        try await withServer { port in
            #expect(try await send(port: port, "CreateQueue", #"{"QueueName":"jobs"}"#).status == 200)
            #expect(try await send(port: port, "CreateQueue", #"{"QueueName":"other"}"#).status == 200)
            let url = "http://127.0.0.1:\(port)/000000000000/jobs"
            let calls: [(action: String, body: String, status: Int)] = [
                ("GetQueueUrl", #"{"QueueName":"jobs"}"#, 200),
                ("GetQueueAttributes", #"{"QueueUrl":"\#(url)","AttributeNames":["All"]}"#, 200),
                ("ReceiveMessage", #"{"QueueUrl":"\#(url)"}"#, 200),
                ("GetQueueUrl", #"{"QueueName":"other"}"#, 403),
                ("SendMessage", #"{"QueueUrl":"\#(url)","MessageBody":"x"}"#, 403),
                ("SetQueueAttributes", #"{"QueueUrl":"\#(url)","Attributes":{}}"#, 403),
                ("PurgeQueue", #"{"QueueUrl":"\#(url)"}"#, 403),
            ]
            for call in calls {
                let reply = try await send(
                    port: port, call.action, call.body, key: "AKIDWORKER", secret: "worker-secret")
                #expect(reply.status == call.status, "\(call.action) \(call.body): \(reply.body)")
            }
        }
    }
}
