import Foundation
import Logging
import OpenQ
import ServiceLifecycle
import Testing

@testable import OpenQServer

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Slow, stalled and half-closed connections, driven over raw sockets: each gets a closed
/// connection or an error reply within the stated timeouts, and the server keeps serving others
/// meanwhile. The idle timeout is shortened to 1 s so that the suite stays quick; every
/// wait is bounded.
@Suite("Slow and broken clients")
struct SlowClientTests {
    /// A blocking TCP client with a receive timeout, for byte-level control.
    final class RawConnection: @unchecked Sendable {  // one task at a time uses it
        let descriptor: Int32

        init(port: Int) throws {
            descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = in_port_t(UInt16(port).bigEndian)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            guard connected == 0 else { throw POSIXError(.ECONNREFUSED) }
            var timeout = timeval(tv_sec: 10, tv_usec: 0)
            setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        }

        deinit { close(descriptor) }

        func send(_ text: String) {
            let bytes = Array(text.utf8)
            _ = bytes.withUnsafeBytes { Glibc.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        }

        func shutdownWrite() { shutdown(descriptor, Int32(SHUT_WR)) }

        /// Everything until the peer closes (or 10 s pass): `nil` when it timed out still open.
        func readUntilClosed() -> String? {
            var received: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                let count = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
                if count == 0 { return String(decoding: received, as: UTF8.self) }
                if count < 0 { return errno == ECONNRESET ? String(decoding: received, as: UTF8.self) : nil }
                received += buffer[0..<count]
            }
        }
    }

    /// Runs blocking socket calls on a thread of their own: on the cooperative pool (two threads on
    /// two cores) they would starve the server's handlers.
    func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread { continuation.resume(with: Result { try body() }) }
        }
    }

    func withServer(_ body: (Int) async throws -> Void) async throws {
        let queue = MessageQueue(configuration: .init(metricsInterval: nil, shutdownGracePeriod: .zero))
        let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
        let server = SQSServer(
            queue: queue,
            configuration: .init(port: 0, allowAnonymous: true, idleTimeout: .seconds(1)),
            logger: Logger(label: "test"), onListening: { continuation.yield($0) })
        let group = ServiceGroup(services: [queue, server], logger: Logger(label: "test"))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            var iterator = ports.makeAsyncIterator()
            let port = try #require(await iterator.next())
            try await body(port)
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
    }

    /// One complete, well-formed request on its own connection.
    func listQueues(_ port: Int) throws -> String? {
        let connection = try RawConnection(port: port)
        connection.send(
            "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-amz-json-1.0\r\n"
                + "X-Amz-Target: AmazonSQS.ListQueues\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
        return connection.readUntilClosed()
    }

    @Test func aHeaderThatNeverEnds_isClosedAfterTheIdleTimeout_whileOthersAreServed() async throws {
        try await withServer { port in
            let stalled = try RawConnection(port: port)
            stalled.send("POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Amz-Tar")
            // Others are served meanwhile.
            #expect(try await blocking { try listQueues(port) }?.hasPrefix("HTTP/1.1 200") == true)
            let started = ContinuousClock.now
            let reply = try await blocking { stalled.readUntilClosed() }
            #expect(reply != nil, "the stalled connection was closed")
            // Closed by the configured 1 s timeout, not the 60 s default (a generous bound: the
            // suites share the machine).
            #expect(ContinuousClock.now - started < .seconds(30))
        }
    }

    @Test func aBodyThatStalls_isClosedAfterTheIdleTimeout_whileOthersAreServed() async throws {
        try await withServer { port in
            let stalled = try RawConnection(port: port)
            stalled.send(
                "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Amz-Target: AmazonSQS.ListQueues\r\nContent-Length: 100\r\n\r\n{"
            )
            #expect(try await blocking { try listQueues(port) }?.hasPrefix("HTTP/1.1 200") == true)
            let started = ContinuousClock.now
            let reply = try await blocking { stalled.readUntilClosed() }
            #expect(reply != nil, "the stalled connection was closed")
            // Closed by the configured 1 s timeout, not the 60 s default (a generous bound: the
            // suites share the machine).
            #expect(ContinuousClock.now - started < .seconds(30))
            #expect(try await blocking { try listQueues(port) }?.hasPrefix("HTTP/1.1 200") == true)
        }
    }

    @Test func aHalfClosedClient_stillGetsItsAnswer() async throws {
        try await withServer { port in
            let connection = try RawConnection(port: port)
            connection.send(
                "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Amz-Target: AmazonSQS.CreateQueue\r\n"
                    + "Content-Length: 20\r\n\r\n{\"QueueName\":\"half\"}")
            connection.shutdownWrite()
            let reply = try await blocking { connection.readUntilClosed() }
            #expect(reply?.hasPrefix("HTTP/1.1 200") == true, "\(reply ?? "still open")")
            #expect(reply?.contains("/000000000000/half") == true)
        }
    }

    @Test func garbageInsteadOfHTTP_closesThatConnectionOnly() async throws {
        try await withServer { port in
            let garbage = try RawConnection(port: port)
            garbage.send("\u{0}\u{1}GARBAGE / NOT-HTTP\r\n\r\n\r\n")
            let reply = try await blocking { garbage.readUntilClosed() }
            #expect(reply?.hasPrefix("HTTP/1.1 200") != true)
            #expect(try await blocking { try listQueues(port) }?.hasPrefix("HTTP/1.1 200") == true)
        }
    }
}
