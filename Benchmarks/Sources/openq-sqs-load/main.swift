// openq-sqs-load: an SQS load client in Swift (boto3 spends ~2 ms of client CPU per call, too much
// to load a server). Each client holds one keep-alive HTTP/1.1 connection and signs every request
// with AWS Signature Version 4. Run it against openq-server and moto_server in the same run
// (Benchmarks/sqs-load.sh does), so that the figures come side by side.
//
//   openq-sqs-load --endpoint openq=http://127.0.0.1:9324 --endpoint moto=http://127.0.0.1:5000
//                  [--clients 16] [--seconds 5] [--wakeups 200]
import Crypto
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

struct Options {
    var endpoints: [(label: String, host: String, port: Int)] = []
    var clients = 16
    var seconds = 5.0
    var wakeups = 200
    var accessKey = "AKIDEXAMPLE"
    var secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"

    init(_ arguments: [String]) {
        var index = 0
        func value() -> String {
            index += 1
            guard index < arguments.count else { fatalError("\(arguments[index - 1]) needs a value") }
            return arguments[index]
        }
        while index < arguments.count {
            switch arguments[index] {
            case "--endpoint":
                let parts = value().split(separator: "=", maxSplits: 1).map(String.init)
                let url = URL(string: parts.count == 2 ? parts[1] : parts[0])!
                endpoints.append((parts.count == 2 ? parts[0] : url.absoluteString, url.host!, url.port ?? 80))
            case "--clients": clients = Int(value())!
            case "--seconds": seconds = Double(value())!
            case "--wakeups": wakeups = Int(value())!
            case "--access-key": accessKey = value()
            case "--secret": secret = value()
            default: fatalError("unknown option \(arguments[index])")
            }
            index += 1
        }
    }
}

/// Signs with AWS Signature Version 4, as botocore does for SQS's JSON protocol.
struct Signer {
    let accessKey: String
    let secret: String
    let formatter: DateFormatter = {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        return formatter
    }()

    static func hex<B: Sequence>(_ bytes: B) -> String where B.Element == UInt8 {
        bytes.map { String(format: "%02x", $0) }.joined()
    }

    func headers(host: String, target: String, body: [UInt8], now: Date = Date()) -> [(String, String)] {
        let amzDate = formatter.string(from: now)
        let day = String(amzDate.prefix(8))
        let contentType = "application/x-amz-json-1.0"
        let signedHeaders = "content-type;host;x-amz-date;x-amz-target"
        let canonical = [
            "POST", "/", "",
            "content-type:\(contentType)\nhost:\(host)\nx-amz-date:\(amzDate)\nx-amz-target:\(target)\n",
            signedHeaders, Self.hex(SHA256.hash(data: body)),
        ].joined(separator: "\n")
        let scope = "\(day)/us-east-1/sqs/aws4_request"
        let stringToSign =
            "AWS4-HMAC-SHA256\n\(amzDate)\n\(scope)\n\(Self.hex(SHA256.hash(data: Array(canonical.utf8))))"
        func hmac(_ key: [UInt8], _ data: String) -> [UInt8] {
            Array(HMAC<SHA256>.authenticationCode(for: Array(data.utf8), using: SymmetricKey(data: key)))
        }
        let key = hmac(hmac(hmac(hmac(Array("AWS4\(secret)".utf8), day), "us-east-1"), "sqs"), "aws4_request")
        let signature = Self.hex(hmac(key, stringToSign))
        return [
            ("Host", host), ("Content-Type", contentType), ("X-Amz-Date", amzDate), ("X-Amz-Target", target),
            (
                "Authorization",
                "AWS4-HMAC-SHA256 Credential=\(accessKey)/\(scope), SignedHeaders=\(signedHeaders), Signature=\(signature)"
            ),
            ("Content-Length", String(body.count)),
        ]
    }
}

/// One keep-alive connection; requests one at a time.
final class Client: @unchecked Sendable {  // used by one task at a time
    /// moto_server's development server does not keep connections alive reliably (a response
    /// without a length on a kept connection never ends): a new connection per request there.
    static func make(_ endpoint: (label: String, host: String, port: Int), signer: Signer) async throws -> Client {
        try await Client(host: endpoint.host, port: endpoint.port, signer: signer, reconnects: endpoint.label == "moto")
    }

    let reconnects: Bool
    let port: Int
    let host: String
    let signer: Signer
    var iterator: NIOAsyncChannelInboundStream<HTTPClientResponsePart>.AsyncIterator
    var outbound: NIOAsyncChannelOutboundWriter<HTTPClientRequestPart>
    let hostName: String

    init(host: String, port: Int, signer: Signer, reconnects: Bool = false) async throws {
        self.host = "\(host):\(port)"
        self.hostName = host
        self.port = port
        self.signer = signer
        self.reconnects = reconnects
        (iterator, outbound) = try await Self.connect(host: host, port: port)
    }

    static func connect(host: String, port: Int) async throws -> (
        NIOAsyncChannelInboundStream<HTTPClientResponsePart>.AsyncIterator,
        NIOAsyncChannelOutboundWriter<HTTPClientRequestPart>
    ) {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    return try NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>(
                        wrappingChannelSynchronously: channel)
                }
            }
        return (channel.inbound.makeAsyncIterator(), channel.outbound)
    }

    /// NIO's writer must be finished before it goes (this closes the connection).
    deinit { outbound.finish() }

    func call(_ action: String, _ object: [String: Any]) async throws -> [String: Any] {
        let body = Array(try JSONSerialization.data(withJSONObject: object))
        if reconnects {
            outbound.finish()
            (iterator, outbound) = try await Self.connect(host: hostName, port: port)
        }
        var head = HTTPRequestHead(version: .http1_1, method: .POST, uri: "/")
        if reconnects { head.headers.add(name: "Connection", value: "close") }
        for (name, value) in signer.headers(host: host, target: "AmazonSQS.\(action)", body: body) {
            head.headers.add(name: name, value: value)
        }
        try await outbound.write(contentsOf: [.head(head), .body(.byteBuffer(ByteBuffer(bytes: body))), .end(nil)])
        var status = 0
        var received = ByteBuffer()
        while let part = try await iterator.next() {
            switch part {
            case .head(let response): status = Int(response.status.code)
            case .body(var buffer): received.writeBuffer(&buffer)
            case .end:
                let json =
                    (try? JSONSerialization.jsonObject(with: Data(received.readableBytesView))) as? [String: Any] ?? [:]
                guard status == 200 else { throw LoadError.status(action, status, "\(json)") }
                return json
            }
        }
        throw LoadError.closed
    }
}

enum LoadError: Error {
    case status(String, Int, String)
    case closed
}

func percentile(_ values: [Double], _ p: Double) -> Double {
    let sorted = values.sorted()
    return sorted.isEmpty ? .nan : sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]
}

/// SendMessageBatch(10) + ReceiveMessage(10) + DeleteMessageBatch, from `clients` connections for
/// `seconds`: messages sent, received and deleted per second, end to end.
func throughput(_ endpoint: (label: String, host: String, port: Int), options: Options) async throws -> Double {
    let signer = Signer(accessKey: options.accessKey, secret: options.secret)
    let setup = try await Client.make(endpoint, signer: signer)
    let url =
        try await setup.call("CreateQueue", ["QueueName": "load-\(UUID().uuidString.prefix(8))"])["QueueUrl"] as! String
    let deadline = Date().addingTimeInterval(options.seconds)
    let deleted = try await withThrowingTaskGroup(of: Int.self) { group in
        for _ in 0..<options.clients {
            group.addTask {
                let client = try await Client.make(endpoint, signer: signer)
                var done = 0
                while Date() < deadline {
                    let entries = (0..<10).map { ["Id": "\($0)", "MessageBody": "load message \($0)"] }
                    _ = try await client.call("SendMessageBatch", ["QueueUrl": url, "Entries": entries])
                    let messages =
                        try await client.call(
                            "ReceiveMessage", ["QueueUrl": url, "MaxNumberOfMessages": 10, "WaitTimeSeconds": 1])[
                            "Messages"] as? [[String: Any]] ?? []
                    guard !messages.isEmpty else { continue }
                    let deletes = messages.enumerated().map {
                        ["Id": "\($0.offset)", "ReceiptHandle": $0.element["ReceiptHandle"]!]
                    }
                    _ = try await client.call("DeleteMessageBatch", ["QueueUrl": url, "Entries": deletes])
                    done += messages.count
                }
                return done
            }
        }
        return try await group.reduce(0, +)
    }
    _ = try await setup.call("DeleteQueue", ["QueueUrl": url])
    return Double(deleted) / options.seconds
}

/// A long poll waits; a send arrives; how long until the poll returns it (ms), `wakeups` times.
func wakeUp(_ endpoint: (label: String, host: String, port: Int), options: Options) async throws -> [Double] {
    let signer = Signer(accessKey: options.accessKey, secret: options.secret)
    let sender = try await Client(host: endpoint.host, port: endpoint.port, signer: signer)
    let poller = try await Client(host: endpoint.host, port: endpoint.port, signer: signer)
    let url =
        try await sender.call("CreateQueue", ["QueueName": "wake-\(UUID().uuidString.prefix(8))"])["QueueUrl"]
        as! String
    var samples: [Double] = []
    for _ in 0..<options.wakeups {
        let poll = Task { () -> (Date, String?) in
            let messages =
                try await poller.call("ReceiveMessage", ["QueueUrl": url, "WaitTimeSeconds": 20])["Messages"]
                as? [[String: Any]]
            if let handle = messages?.first?["ReceiptHandle"] as? String { return (Date(), handle) }
            return (Date(), nil)
        }
        try await Task.sleep(for: .milliseconds(20))  // the poll is waiting by now
        let sent = Date()
        _ = try await sender.call("SendMessage", ["QueueUrl": url, "MessageBody": "wake"])
        let (returned, handle) = try await poll.value
        samples.append(returned.timeIntervalSince(sent) * 1000)
        if let handle { _ = try await sender.call("DeleteMessage", ["QueueUrl": url, "ReceiptHandle": handle]) }
    }
    _ = try await sender.call("DeleteQueue", ["QueueUrl": url])
    return samples
}

let options = Options(Array(CommandLine.arguments.dropFirst()))
print("endpoint | clients | msgs/s (send 10 + receive 10 + delete 10) | long-poll wake-up p50 / p99 ms")
var rates: [String: Double] = [:]
for endpoint in options.endpoints {
    let rate = try await throughput(endpoint, options: options)
    // moto_server answers one request at a time: a waiting long poll holds back the send that
    // would end it, so its wake-up is the poll's full 20 s; measured for openq-server only.
    let wake = options.wakeups > 0 && endpoint.label != "moto" ? try await wakeUp(endpoint, options: options) : []
    rates[endpoint.label] = rate
    print(
        "\(endpoint.label) | \(options.clients) | \(Int(rate)) | "
            + String(format: "%.2f / %.2f", percentile(wake, 0.5), percentile(wake, 0.99)))
}
if let openq = rates["openq"], let moto = rates["moto"] {
    print(String(format: "openq-server / moto_server: %.1f×", openq / moto))
}
