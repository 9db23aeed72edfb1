// SQSMessage, the payload of a queue's topic: body, attributes, MD5s.

import Crypto
import Foundation

/// A message of an SQS queue as its topic holds it: the body, the message attributes and the
/// SQS message id, each as the client sent them.
///
/// Every queue the server creates is a topic of this payload type, so Swift code on the same
/// broker reads and writes the same queues:
///
/// ```swift
/// let jobs = try await queue.topic("jobs", of: SQSMessage.self)
/// try await jobs.publish(SQSMessage(body: "from Swift"))
/// ```
public struct SQSMessage: Codable, Sendable, Hashable {
    /// The message id SQS clients see (a UUID string).
    public var messageID: String
    /// The message body, as sent.
    public var body: String
    /// The message attributes (`MessageAttributes`), by name.
    public var attributes: [String: SQSMessageAttribute]

    /// A message with a fresh message id.
    public init(body: String, attributes: [String: SQSMessageAttribute] = [:], messageID: String = UUID().uuidString) {
        self.messageID = messageID
        self.body = body
        self.attributes = attributes
    }

    /// `MD5OfMessageBody`: the MD5 of the body's UTF-8 bytes, in lowercase hex.
    public var md5OfBody: String { MD5Digest.hex(Array(body.utf8)) }

    /// `MD5OfMessageAttributes`, as SQS computes it, or `nil` without attributes.
    public var md5OfAttributes: String? { SQSMessageAttribute.md5(of: attributes) }
}

/// One message attribute: its data type (`String`, `Number`, `Binary`, optionally with a
/// `.custom` suffix) and its value.
public struct SQSMessageAttribute: Codable, Sendable, Hashable {
    /// `String`, `Number` or `Binary`, optionally followed by `.` and a custom label.
    public var dataType: String
    /// The value of a `String` or `Number` attribute.
    public var stringValue: String?
    /// The value of a `Binary` attribute.
    public var binaryValue: Data?

    /// An attribute; give `stringValue` for `String` and `Number` types, `binaryValue` for `Binary`.
    public init(dataType: String, stringValue: String? = nil, binaryValue: Data? = nil) {
        self.dataType = dataType
        self.stringValue = stringValue
        self.binaryValue = binaryValue
    }

    /// `MD5OfMessageAttributes` as SQS computes it (and the Java, Go and Ruby SDKs check): for
    /// each attribute in the order of its name's UTF-8 bytes, the name, the data type, a
    /// transport byte (1 for a string value, 2 for a binary one) and the value, each but the
    /// byte preceded by its length as a 4-byte big-endian integer. `nil` for no attributes.
    public static func md5(of attributes: [String: SQSMessageAttribute]) -> String? {
        guard !attributes.isEmpty else { return nil }
        var bytes: [UInt8] = []
        func append(_ field: [UInt8]) {
            let length = UInt32(field.count)
            bytes += [UInt8(length >> 24), UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length & 0xFF)]
            bytes += field
        }
        for name in attributes.keys.sorted(by: { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }) {
            let attribute = attributes[name]!
            append(Array(name.utf8))
            append(Array(attribute.dataType.utf8))
            if let binary = attribute.binaryValue {
                bytes.append(2)
                append(Array(binary))
            } else {
                bytes.append(1)
                append(Array((attribute.stringValue ?? "").utf8))
            }
        }
        return MD5Digest.hex(bytes)
    }
}

enum MD5Digest {
    static func hex(_ bytes: [UInt8]) -> String {
        Hex.lowercase(Insecure.MD5.hash(data: bytes))
    }
}

/// Lowercase hex without Foundation's `String(format:)` (which goes through ICU: measured as a
/// large share of a request's CPU).
enum Hex {
    private static let digits = Array("0123456789abcdef".utf8)

    static func lowercase<Bytes: Sequence>(_ bytes: Bytes) -> String where Bytes.Element == UInt8 {
        var characters: [UInt8] = []
        characters.reserveCapacity(bytes.underestimatedCount * 2)
        for byte in bytes {
            characters.append(digits[Int(byte >> 4)])
            characters.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: characters, as: UTF8.self)
    }
}
