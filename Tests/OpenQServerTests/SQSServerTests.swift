import Foundation
import Logging
import OpenQ
import Prometheus
import ServiceLifecycle
import Testing

@testable import OpenQServer

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// The server embedded in a Swift service, as the DocC of ``SQSServer`` shows it: over real HTTP
/// on a loopback port, then a graceful shutdown of the group.
@Suite("SQS server over HTTP")
struct SQSServerTests {
    /// Runs `body` against an anonymous server on a free loopback port, by its base URL.
    func withServer(_ body: (URL, MessageQueue) async throws -> Void) async throws {
        try await OpenQServerTests.withServer(.init(allowAnonymous: true)) { port, queue in
            try await body(URL(string: "http://127.0.0.1:\(port)")!, queue)
        }
    }

    func post(_ base: URL, _ action: String, _ body: String) async throws -> (Int, String, [AnyHashable: Any]) {
        var request = URLRequest(url: base.appendingPathComponent("/"))
        request.httpMethod = "POST"
        request.setValue("application/x-amz-json-1.0", forHTTPHeaderField: "Content-Type")
        request.setValue("AmazonSQS.\(action)", forHTTPHeaderField: "X-Amz-Target")
        request.httpBody = Data(body.utf8)
        let (data, response) = try await URLSession.shared.data(for: request)
        let http = try #require(response as? HTTPURLResponse)
        return (http.statusCode, String(decoding: data, as: UTF8.self), http.allHeaderFields)
    }

    @Test func anEmbeddedServer_servesSQS_andStopsWithItsGroup() async throws {
        try await withServer { base, queue in
            let (health, _) = try await URLSession.shared.data(from: base.appendingPathComponent("health"))
            #expect(String(decoding: health, as: UTF8.self) == "ok\n")

            let (status, body, _) = try await post(base, "CreateQueue", #"{"QueueName":"jobs"}"#)
            #expect(status == 200)
            #expect(body.contains("/000000000000/jobs"))
            #expect(await queue.topicNames() == ["jobs"])

            let (missing, error, headers) = try await post(base, "GetQueueUrl", #"{"QueueName":"nope"}"#)
            #expect(missing == 400)
            #expect(error.contains("com.amazonaws.sqs#QueueDoesNotExist"))
            let queryError = headers.first { ($0.key as? String)?.lowercased() == "x-amzn-query-error" }?.value
            #expect(queryError as? String == "AWS.SimpleQueueService.NonExistentQueue;Sender")
        }
    }

    @Test func metrics_arePrometheusText_andNeedAnAdminUnlessPublic() async throws {
        let registry = PrometheusCollectorRegistry()
        let credentials = SQSCredentials(credentials: [
            .init(accessKeyId: "admin", secretAccessKey: "s", permissions: [.init(queuePrefix: "", actions: [.admin])])
        ])
        for isPublic in [false, true] {
            let metrics = SQSMetrics(registry: registry, isPublic: isPublic)
            let queue = MessageQueue(
                configuration: .init(
                    metricsInterval: nil, metricsFactory: metrics.brokerMetricsFactory, shutdownGracePeriod: .zero))
            let topic = try await queue.createTopic("jobs", of: Int.self)
            try await topic.publish(1)
            await queue.exportMetrics()
            let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
            let server = SQSServer(
                queue: queue,
                configuration: .init(port: 0, credentials: credentials, metrics: metrics),
                logger: Logger(label: "test"), onListening: { continuation.yield($0) })
            let group = ServiceGroup(services: [queue, server], logger: Logger(label: "test"))
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                tasks.addTask { try await group.run() }
                var iterator = ports.makeAsyncIterator()
                let port = try #require(await iterator.next())
                let base = URL(string: "http://127.0.0.1:\(port)")!
                _ = try await post(base, "ListQueues", "{}")  // unsigned: 403, counted
                let (data, response) = try await URLSession.shared.data(from: base.appendingPathComponent("metrics"))
                let status = (response as? HTTPURLResponse)?.statusCode
                if isPublic {
                    #expect(status == 200)
                    let text = String(decoding: data, as: UTF8.self)
                    #expect(text.contains(#"openq_server_requests_total{action="ListQueues",status="403"}"#), "\(text)")
                    // The broker's metrics, beside the server's.
                    #expect(text.contains("# TYPE openq_messages_published_total counter\n"))
                    #expect(text.contains(#"openq_messages_published_total{topic="jobs"} 1"#), "\(text)")
                    #expect(text.contains(#"openq_topic_depth{topic="jobs"} 0"#))
                } else {
                    #expect(status == 403, "unsigned GET /metrics")
                }
                await group.triggerGracefulShutdown()
                try await tasks.waitForAll()
            }
        }
    }

    @Test func withoutAllowAnonymous_theServerRefusesToStart() async throws {
        let server = SQSServer(queue: MessageQueue(), configuration: .init(port: 0))
        await #expect(throws: SQSServerError.self) { try await server.run() }
    }

    @Test func anOversizedBody_isRefusedWith413() async throws {
        try await withServer { base, _ in
            let big = String(repeating: "x", count: 2 * 1_048_576 + 10)
            let (status, body, _) = try await post(base, "SendMessage", big)
            #expect(status == 413)
            #expect(body.contains("RequestEntityTooLarge"))
        }
    }
}
