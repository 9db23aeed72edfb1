// Receipt handles: a random nonce signed with the server's key, bound to the queue.

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
        var generator = SystemRandomNumberGenerator()
        var nonce: [UInt8] = []
        nonce.reserveCapacity(16)
        for _ in 0..<2 {
            let random: UInt64 = generator.next()
            for shift in stride(from: 0, to: 64, by: 8) { nonce.append(UInt8(truncatingIfNeeded: random >> shift)) }
        }
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

    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)

    /// Base64url without padding, by hand (Foundation's encoder and three string replacements were
    /// a visible share of a receive's CPU).
    static func base64url(_ bytes: [UInt8]) -> String {
        var output: [UInt8] = []
        output.reserveCapacity((bytes.count * 4 + 2) / 3)
        var index = 0
        while index + 3 <= bytes.count {
            let chunk = UInt32(bytes[index]) << 16 | UInt32(bytes[index + 1]) << 8 | UInt32(bytes[index + 2])
            for shift in [18, 12, 6, 0] { output.append(alphabet[Int(chunk >> UInt32(shift) & 0x3F)]) }
            index += 3
        }
        let rest = bytes.count - index
        if rest > 0 {
            let chunk = UInt32(bytes[index]) << 16 | (rest == 2 ? UInt32(bytes[index + 1]) << 8 : 0)
            output.append(alphabet[Int(chunk >> 18 & 0x3F)])
            output.append(alphabet[Int(chunk >> 12 & 0x3F)])
            if rest == 2 { output.append(alphabet[Int(chunk >> 6 & 0x3F)]) }
        }
        return String(decoding: output, as: UTF8.self)
    }

    private static let values: [UInt8] = {
        var values = [UInt8](repeating: 0xFF, count: 256)
        for (index, character) in alphabet.enumerated() { values[Int(character)] = UInt8(index) }
        return values
    }()

    /// Base64url without padding, by hand; `nil` for anything else (or a handle over 64 characters).
    static func decode(_ handle: String) -> [UInt8]? {
        let characters = Array(handle.utf8)
        guard characters.count <= 64, characters.count % 4 != 1 else { return nil }
        var output: [UInt8] = []
        output.reserveCapacity(characters.count * 3 / 4)
        var buffer: UInt32 = 0
        var bits = 0
        for character in characters {
            let value = values[Int(character)]
            guard value != 0xFF else { return nil }
            buffer = buffer << 6 | UInt32(value)
            bits += 6
            if bits >= 8 {
                bits -= 8
                output.append(UInt8(truncatingIfNeeded: buffer >> UInt32(bits)))
            }
        }
        return output
    }
}
