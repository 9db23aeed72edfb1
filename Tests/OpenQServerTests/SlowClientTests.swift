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

    /// One complete, well-formed request on its own connection.
    func listQueues(_ port: Int) throws -> String? {
        let connection = try RawConnection(port: port)
        connection.send(
            "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-amz-json-1.0\r\n"
                + "X-Amz-Target: AmazonSQS.ListQueues\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
        return connection.readUntilClosed()
    }

    @Test func aHeaderThatNeverEnds_isClosedAfterTheIdleTimeout_whileOthersAreServed() async throws {
        try await withServer(.init(allowAnonymous: true, idleTimeout: .seconds(1))) { port, _ in
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
        try await withServer(.init(allowAnonymous: true, idleTimeout: .seconds(1))) { port, _ in
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
        try await withServer(.init(allowAnonymous: true, idleTimeout: .seconds(1))) { port, _ in
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
        try await withServer(.init(allowAnonymous: true, idleTimeout: .seconds(1))) { port, _ in
            let garbage = try RawConnection(port: port)
            garbage.send("\u{0}\u{1}GARBAGE / NOT-HTTP\r\n\r\n\r\n")
            let reply = try await blocking { garbage.readUntilClosed() }
            #expect(reply?.hasPrefix("HTTP/1.1 200") != true)
            #expect(try await blocking { try listQueues(port) }?.hasPrefix("HTTP/1.1 200") == true)
        }
    }
}
