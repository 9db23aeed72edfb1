// Who the server is to its clients: the base of its queue URLs and the hosts a request may be signed for.

import Foundation

/// The server as its clients name it: queue URLs are built from ``baseURL`` (never from a
/// request's `Host` header), and a signed request must have been signed for one of
/// ``acceptedHosts``, so a signature made for another server (another region's SQS endpoint, a
/// host an attacker chose) is not accepted here.
struct SQSEndpoint: Sendable, Equatable {
    /// `scheme://host[:port]`, without a trailing slash.
    let baseURL: String
    /// Lowercased `Host` values (`name:port`, and `name` alone where the port is the scheme's).
    let acceptedHosts: Set<String>

    /// The endpoint of a server bound to `port` (the port it really bound: with port 0, the one
    /// the system chose).
    /// - Throws: ``SQSServerError`` for a public URL that is not `http(s)://host[:port]`, or a
    ///   server bound to every address without a public URL.
    init(_ configuration: SQSServer.Configuration, boundPort port: Int) throws {
        var hosts: Set<String> = []
        if let publicURL = configuration.publicURL {
            guard let url = URL(string: publicURL), let scheme = url.scheme?.lowercased(),
                scheme == "http" || scheme == "https", let host = url.host, !host.isEmpty,
                url.path.isEmpty || url.path == "/", url.query == nil
            else {
                throw SQSServerError(
                    "The public URL '\(publicURL)' is not of the form http(s)://host[:port] (no path).")
            }
            let name = host.contains(":") && !host.hasPrefix("[") ? "[\(host)]" : host
            let defaultPort = scheme == "https" ? 443 : 80
            let explicit = url.port
            baseURL = "\(scheme)://\(name)" + (explicit.map { ":\($0)" } ?? "")
            hosts.insert("\(name):\(explicit ?? defaultPort)".lowercased())
            if explicit == nil || explicit == defaultPort { hosts.insert(name.lowercased()) }
        } else {
            let host = configuration.host.lowercased()
            guard !["0.0.0.0", "::", "[::]", ""].contains(host) else {
                throw SQSServerError(
                    "A server bound to every address (\(configuration.host)) needs its public URL (--public-url "
                        + "http://name:port): the URL clients reach it by, which queue URLs are built from and "
                        + "signatures must name.")
            }
            let name = host.contains(":") && !host.hasPrefix("[") ? "[\(host)]" : host
            baseURL = "http://\(name):\(port)"
            hosts.insert("\(name):\(port)")
            if Self.loopback.contains(name) {
                for alias in Self.loopback { hosts.insert("\(alias):\(port)") }
            }
        }
        for extra in configuration.additionalHostNames { hosts.insert(extra.lowercased()) }
        acceptedHosts = hosts
    }

    /// The names of the loopback interface a local client may use.
    private static let loopback: Set<String> = ["127.0.0.1", "localhost", "[::1]"]

    /// Refuses a request signed for another host.
    /// - Throws: `SignatureDoesNotMatch` (403), naming the hosts this server answers to.
    func checkSigned(forHost host: String?) throws(SQSError) {
        guard let host, acceptedHosts.contains(host.lowercased()) else {
            throw SigV4Verifier.denied(
                "SignatureDoesNotMatch",
                "The request was signed for host '\(host ?? "")', which is not this server; sign it for "
                    + acceptedHosts.sorted().joined(separator: " or ") + ".")
        }
    }
}
