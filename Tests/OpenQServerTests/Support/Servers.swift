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

/// Runs `body` against a server with `configuration` on a free loopback port (its own port is
/// ignored) and its broker, then shuts the service group down gracefully.
func withServer(
    _ configuration: SQSServer.Configuration, _ body: (_ port: Int, _ queue: MessageQueue) async throws -> Void
) async throws {
    var configuration = configuration
    configuration.port = 0
    let queue = MessageQueue(configuration: .init(metricsInterval: nil, shutdownGracePeriod: .zero))
    let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
    let server = SQSServer(
        queue: queue, configuration: configuration, logger: Logger(label: "test"),
        onListening: { continuation.yield($0) })
    let group = ServiceGroup(services: [queue, server], logger: Logger(label: "test"))
    try await withThrowingTaskGroup(of: Void.self) { tasks in
        tasks.addTask { try await group.run() }
        var iterator = ports.makeAsyncIterator()
        let port = try #require(await iterator.next())
        try await body(port, queue)
        await group.triggerGracefulShutdown()
        try await tasks.waitForAll()
    }
}

/// Runs blocking socket calls on a thread of their own: on the cooperative pool (two threads on
/// two cores) they would starve the server's handlers.
func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread.detachNewThread { continuation.resume(with: Result { try body() }) }
    }
}

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
