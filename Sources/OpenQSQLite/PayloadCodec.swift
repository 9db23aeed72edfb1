#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// How a durable topic turns its payloads into the bytes the store keeps, and back.
///
/// JSON by default (``JSONPayloadCodec``); `Data` and `[UInt8]` payloads are stored as they are
/// (``RawBytesCodec``, ``DataCodec``); a faster codec plugs in by conforming. A payload that no
/// longer decodes (its type changed) is not a crash: the store moves it, as raw bytes with the
/// reason, to its quarantine (``SQLiteStore/quarantine(topic:sequence:payload:reason:)``).
package protocol PayloadCodec<Payload>: Sendable {
    associatedtype Payload: Sendable
    func encode(_ payload: Payload) throws -> Data
    func decode(_ bytes: Data) throws -> Payload
}

/// JSON through Foundation's coders: readable in the `sqlite3` shell, tolerant of added optional
/// fields.
package struct JSONPayloadCodec<Payload: Codable & Sendable>: PayloadCodec {
    package init() {}

    package func encode(_ payload: Payload) throws -> Data {
        try JSONEncoder().encode(payload)
    }

    package func decode(_ bytes: Data) throws -> Payload {
        try JSONDecoder().decode(Payload.self, from: bytes)
    }
}

/// `[UInt8]` payloads, stored as they are.
package struct RawBytesCodec: PayloadCodec {
    package init() {}
    package func encode(_ payload: [UInt8]) throws -> Data { Data(payload) }
    package func decode(_ bytes: Data) throws -> [UInt8] { [UInt8](bytes) }
}

/// `Data` payloads, stored as they are.
package struct DataCodec: PayloadCodec {
    package init() {}
    package func encode(_ payload: Data) throws -> Data { payload }
    package func decode(_ bytes: Data) throws -> Data { bytes }
}

/// The codec a durable topic of `Payload` uses unless told otherwise: bytes stay bytes, anything
/// else is JSON.
package func defaultCodec<Payload: Codable & Sendable>(for type: Payload.Type) -> any PayloadCodec<Payload> {
    if Payload.self == Data.self { return DataCodec() as! any PayloadCodec<Payload> }
    if Payload.self == [UInt8].self { return RawBytesCodec() as! any PayloadCodec<Payload> }
    return JSONPayloadCodec<Payload>()
}
