// JSON for what the store keeps as text: configurations and headers.

import Foundation

/// JSON for the configurations and headers the store keeps: sorted keys, so equal values are
/// equal text.
enum JSON {
    static func encode(_ value: some Encodable) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    static func decode<Value: Decodable>(_ type: Value.Type, _ text: String) throws -> Value {
        try JSONDecoder().decode(type, from: Data(text.utf8))
    }

    static func decodeHeaders(_ text: String) -> [String: String] {
        guard text != "{}" else { return [:] }
        return (try? decode([String: String].self, text)) ?? [:]
    }

    static func headers(_ headers: [String: String]) -> String {
        guard !headers.isEmpty else { return "{}" }
        return (try? encode(headers)) ?? "{}"
    }
}
