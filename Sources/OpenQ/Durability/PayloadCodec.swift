// How a durable topic's payloads become bytes and back: PayloadCodec, JSON by default.

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// How a durable topic turns its payloads into the bytes its store keeps, and back.
///
/// A durable topic uses JSON (``JSONPayloadCodec``) unless told otherwise; `Data` and `[UInt8]`
/// payloads are stored as they are (``DataPayloadCodec``, ``BytesPayloadCodec``). A faster codec
/// plugs in by conforming and being passed to
/// ``MessageQueue/createTopic(_:of:configuration:codec:)``:
///
/// ```swift
/// struct Utf8Codec: PayloadCodec {
///     func encode(_ payload: String) throws -> [UInt8] { Array(payload.utf8) }
///     func decode(_ bytes: [UInt8]) throws -> String { String(decoding: bytes, as: UTF8.self) }
/// }
/// ```
///
/// A stored payload that no longer decodes (its type changed) is not a crash and not a silent
/// loss: on recovery the store moves it, as raw bytes with the reason, to its quarantine, and
/// ``TopicStatistics/quarantined`` counts it.
public protocol PayloadCodec<Payload>: Sendable {
    /// The payload type the codec reads and writes.
    associatedtype Payload: Sendable
    /// The bytes to store for `payload`.
    /// - Throws: any error; the publish fails with ``OpenQError/Code/encodingFailed`` and nothing is
    ///   stored.
    func encode(_ payload: Payload) throws -> [UInt8]
    /// The payload stored as `bytes`.
    /// - Throws: any error; the message is quarantined.
    func decode(_ bytes: [UInt8]) throws -> Payload
}

/// JSON through Foundation's coders: readable in the `sqlite3` shell, tolerant of added optional
/// fields. The default codec of durable topics.
public struct JSONPayloadCodec<Payload: Codable & Sendable>: PayloadCodec {
    /// Creates the codec.
    public init() {}

    /// The payload as JSON.
    public func encode(_ payload: Payload) throws -> [UInt8] {
        Array(try JSONEncoder().encode(payload))
    }

    /// The payload from JSON.
    public func decode(_ bytes: [UInt8]) throws -> Payload {
        try JSONDecoder().decode(Payload.self, from: Data(bytes))
    }
}

/// `[UInt8]` payloads, stored as they are.
public struct BytesPayloadCodec: PayloadCodec {
    /// Creates the codec.
    public init() {}
    /// The bytes themselves.
    public func encode(_ payload: [UInt8]) throws -> [UInt8] { payload }
    /// The bytes themselves.
    public func decode(_ bytes: [UInt8]) throws -> [UInt8] { bytes }
}

/// `Data` payloads, stored as they are.
public struct DataPayloadCodec: PayloadCodec {
    /// Creates the codec.
    public init() {}
    /// The bytes of `payload`.
    public func encode(_ payload: Data) throws -> [UInt8] { Array(payload) }
    /// The bytes as `Data`.
    public func decode(_ bytes: [UInt8]) throws -> Data { Data(bytes) }
}

/// The codec a durable topic of `Payload` uses unless told otherwise: bytes stay bytes, anything
/// else is JSON.
func defaultCodec<Payload: Codable & Sendable>(for type: Payload.Type) -> any PayloadCodec<Payload> {
    if let codec = DataPayloadCodec() as? any PayloadCodec<Payload> { return codec }
    if let codec = BytesPayloadCodec() as? any PayloadCodec<Payload> { return codec }
    return JSONPayloadCodec<Payload>()
}
