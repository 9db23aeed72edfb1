import Crypto
import Foundation
import OpenQ

/// Receipt handles: opaque strings that name one delivery, and that nobody can forge.
///
/// A handle is 16 random bytes and the first 16 bytes of their HMAC-SHA256 under the server's
/// key (made at start), bound to the queue's name, in base64url. A handle whose signature does
/// not check is `ReceiptHandleIsInvalid`; one that checks but names no delivery any more
/// (deleted, expired and pruned, released) is stale, which SQS answers per action.
struct ReceiptSigner: Sendable {
    /// The key's bytes (`SymmetricKey` is not `Sendable`).
    private let key: [UInt8]

    init() {
        key = SymmetricKey(size: .bits256).withUnsafeBytes { Array($0) }
    }

    func makeHandle(queue: String) -> String {
        var nonce = [UInt8](repeating: 0, count: 16)
        var generator = SystemRandomNumberGenerator()
        for index in nonce.indices { nonce[index] = generator.next() }
        return Self.base64url(nonce + signature(nonce, queue: queue))
    }

    /// Whether the handle was made by this server for this queue.
    func isValid(_ handle: String, queue: String) -> Bool {
        guard let bytes = Self.decode(handle), bytes.count == 32 else { return false }
        let expected = signature(Array(bytes[0..<16]), queue: queue)
        // Constant time: no early exit on the first differing byte.
        var difference: UInt8 = 0
        for (left, right) in zip(bytes[16..<32], expected) { difference |= left ^ right }
        return difference == 0
    }

    private func signature(_ nonce: [UInt8], queue: String) -> [UInt8] {
        var hmac = HMAC<SHA256>(key: SymmetricKey(data: key))
        hmac.update(data: nonce)
        hmac.update(data: Array(queue.utf8))
        return Array(Array(hmac.finalize()).prefix(16))
    }

    static func base64url(_ bytes: [UInt8]) -> String {
        Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    static func decode(_ handle: String) -> [UInt8]? {
        guard handle.count <= 64 else { return nil }
        var base64 = handle.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.count % 4 != 0 { base64 += "=" }
        return Data(base64Encoded: base64).map(Array.init)
    }
}
