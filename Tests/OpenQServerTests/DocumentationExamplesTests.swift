import Foundation
import Logging
import OpenQ
import OpenQSQLite
import OpenQServer  // not @testable: the documentation's examples may use public API only
import Prometheus
import ServiceLifecycle
import Testing

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// The examples of the OpenQServer DocC catalog (`Sources/OpenQServer/OpenQServer.docc`), kept
/// verbatim, compiling and passing here (DocumentationTests checks that every swift block of a
/// DocC article appears verbatim in a test). The servers listen on loopback ports only.
@Suite("OpenQServer documentation examples")
struct ServerDocumentationExamplesTests {
    /// The credentials file of the article *Running the server*, verbatim.
    static let credentialsJSON = """
        {"credentials": [
          {"accessKeyId": "AKIDEXAMPLE", "secretAccessKey": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
           "permissions": [{"queuePrefix": "", "actions": ["send", "consume", "admin"]}]},
          {"accessKeyId": "AKIDWORKER", "secretAccessKey": "another-secret",
           "permissions": [{"queuePrefix": "jobs-", "actions": ["consume"]}]}
        ]}
        """

    /// A fresh directory holding the article's credentials file, removed after.
    func withDirectory(_ body: (_ directory: String, _ credentialsFile: String) async throws -> Void) async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("openq-docs-\(UUID())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let credentialsFile = directory + "/credentials.json"
        try Data(Self.credentialsJSON.utf8).write(to: URL(fileURLWithPath: credentialsFile))
        try await body(directory, credentialsFile)
    }

    /// One SQS request (unsigned) over HTTP: its status and body.
    func post(_ port: Int, _ action: String, _ body: String) async throws -> (status: Int, body: String) {
        var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)/")!)
        request.httpMethod = "POST"
        request.setValue("application/x-amz-json-1.0", forHTTPHeaderField: "Content-Type")
        request.setValue("AmazonSQS.\(action)", forHTTPHeaderField: "X-Amz-Target")
        request.httpBody = Data(body.utf8)
        let (data, response) = try await URLSession.shared.data(for: request)
        return ((response as? HTTPURLResponse)?.statusCode ?? 0, String(decoding: data, as: UTF8.self))
    }

    /// The overview's example: a server in a service group, on a free port, stopped gracefully.
    @Test func anEmbeddedServer_listensOnAFreePort_checksSignatures_andStops() async throws {
        try await withDirectory { _, credentialsFile in
            let keys = try SQSCredentials(contentsOf: credentialsFile)
            let queue = MessageQueue()
            let (ports, listening) = AsyncStream.makeStream(of: Int.self)
            let server = SQSServer(
                queue: queue, configuration: .init(port: 0, credentials: keys), onListening: { listening.yield($0) })
            let group = ServiceGroup(services: [queue, server], logger: Logger(label: "sqs"))
            async let serving: Void = group.run()
            var bound = ports.makeAsyncIterator()
            let port = await bound.next()  // the port the system picked
            print("SQS endpoint: http://127.0.0.1:\(port ?? 0)")

            // Not in the documentation: the server answers, and refuses an unsigned request.
            let endpointPort = try #require(port)
            let healthURL = URL(string: "http://127.0.0.1:\(endpointPort)/health")!
            let (health, _) = try await URLSession.shared.data(from: healthURL)
            #expect(String(decoding: health, as: UTF8.self) == "ok\n")
            let unsigned = try await post(endpointPort, "CreateQueue", #"{"QueueName":"jobs"}"#)
            #expect(unsigned.status == 403 && unsigned.body.contains("MissingAuthenticationToken"), "\(unsigned)")
            #expect(await queue.topicNames().isEmpty, "the refused request ran nothing")
            #expect(keys.credentials.map(\.accessKeyId) == ["AKIDEXAMPLE", "AKIDWORKER"])
            #expect(keys.credentials[1].permissions == [.init(queuePrefix: "jobs-", actions: [.consume])])

            await group.triggerGracefulShutdown()  // what SIGTERM does, with gracefulShutdownSignals: [.sigterm]
            try await serving

            await #expect(throws: OpenQError.self, "the broker shut down with the group") {
                _ = try await queue.createTopic("later", of: Int.self)
            }
        }
    }

    /// The overview's second example: Swift code publishes into a queue that a client created.
    @Test func swiftCode_publishesIntoAQueue_thatAClientReceivesFrom() async throws {
        try await withServer(.init(allowAnonymous: true)) { port, queue in
            #expect(try await post(port, "CreateQueue", #"{"QueueName":"jobs"}"#).status == 200)

            let jobs = try await queue.topic("jobs", of: SQSMessage.self)
            let tenant = SQSMessageAttribute(dataType: "String", stringValue: "acme")
            try await jobs.publish(SQSMessage(body: "from Swift", attributes: ["tenant": tenant]))

            let received = try await post(
                port, "ReceiveMessage",
                #"{"QueueUrl":"http://127.0.0.1:\#(port)/000000000000/jobs","MessageAttributeNames":["All"]}"#)
            #expect(received.status == 200)
            let reply = try JSONSerialization.jsonObject(with: Data(received.body.utf8)) as? [String: Any]
            let message = try #require((reply?["Messages"] as? [[String: Any]])?.first, "\(received.body)")
            #expect(message["Body"] as? String == "from Swift")
            let attributes = message["MessageAttributes"] as? [String: [String: Any]]
            #expect(attributes?["tenant"]?["StringValue"] as? String == "acme", "the attribute came along")
        }
    }

    /// The article's example: what `openq-server --host 0.0.0.0 --public-url ... --data ...` builds.
    @Test func whatTheCommandLineBuilds_inSwift() async throws {
        try await withDirectory { directory, credentialsFile in
            let dataFile = directory + "/queues.sqlite"

            let metrics = SQSMetrics(registry: PrometheusCollectorRegistry())
            let queue = try await MessageQueue(
                storage: .sqlite(path: dataFile),
                configuration: .init(metricsInterval: .seconds(5), metricsFactory: metrics.brokerMetricsFactory))
            let configuration = SQSServer.Configuration(
                host: "0.0.0.0", credentials: try SQSCredentials(contentsOf: credentialsFile), metrics: metrics,
                durableQueues: true, region: "eu-west-1", publicURL: "https://sqs.example.com")

            #expect(try await queue.storeStatistics()?.path == dataFile, "the broker owns the store")
            #expect(configuration.credentials?.credentials.count == 2)
            #expect(configuration.durableQueues && configuration.region == "eu-west-1")
            #expect(configuration.port == 9324 && !configuration.allowAnonymous && !metrics.isPublic)
            _ = await queue.shutdown(gracePeriod: .zero)
        }
    }
}
