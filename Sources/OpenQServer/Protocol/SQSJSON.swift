// Request fields read and replies written in SQS's JSON.

import Foundation

/// The body of an AWS JSON 1.0 request, read field by field: a field of the wrong type is a
/// `SerializationException`, a missing required one `MissingParameter`, so every action reports
/// bad input the way SQS does, and nothing is executed.
struct SQSRequest {
    let fields: [String: Any]

    /// Parses a body; an empty body is an empty object (actions without parameters).
    init(body: [UInt8]) throws(SQSError) {
        if body.allSatisfy({ $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }) {
            fields = [:]
            return
        }
        let object: Any
        do {
            object = try JSONReader.parse(body)
        } catch {
            throw .serialization("The request body is not valid JSON.")
        }
        guard let fields = object as? [String: Any] else {
            throw .serialization("The request body must be a JSON object.")
        }
        self.fields = fields
    }

    init(fields: [String: Any]) {
        self.fields = fields
    }

    private func typeError(_ name: String, _ expected: String) -> SQSError {
        .serialization("Parameter \(name) must be \(expected).")
    }

    func string(_ name: String) throws(SQSError) -> String? {
        guard let value = fields[name], !(value is JSONReader.JSONNull) else { return nil }
        guard let string = value as? String else { throw typeError(name, "a string") }
        return string
    }

    func requiredString(_ name: String) throws(SQSError) -> String {
        guard let value = try string(name) else { throw .missingParameter(name) }
        return value
    }

    func int(_ name: String) throws(SQSError) -> Int? {
        guard let value = fields[name], !(value is JSONReader.JSONNull) else { return nil }
        // The reader gives integers as Int and other numbers as Double; booleans and fractions are
        // refused.
        switch value {
        case let int as Int:
            return int
        case let double as Double:
            guard let int = Int(exactly: double) else { throw typeError(name, "an integer") }
            return int
        default:
            throw typeError(name, "an integer")
        }
    }

    func stringList(_ name: String) throws(SQSError) -> [String]? {
        guard let value = fields[name], !(value is JSONReader.JSONNull) else { return nil }
        guard let list = value as? [Any], let strings = list as? [String] else {
            throw typeError(name, "a list of strings")
        }
        return strings
    }

    func stringMap(_ name: String) throws(SQSError) -> [String: String]? {
        guard let value = fields[name], !(value is JSONReader.JSONNull) else { return nil }
        guard let map = value as? [String: Any] else { throw typeError(name, "a map of strings") }
        var result: [String: String] = [:]
        for (key, entry) in map {
            guard let string = entry as? String else { throw typeError("\(name).\(key)", "a string") }
            result[key] = string
        }
        return result
    }

    func objectList(_ name: String) throws(SQSError) -> [SQSRequest]? {
        guard let value = fields[name], !(value is JSONReader.JSONNull) else { return nil }
        guard let list = value as? [Any] else { throw typeError(name, "a list of objects") }
        var result: [SQSRequest] = []
        for entry in list {
            guard let object = entry as? [String: Any] else { throw typeError(name, "a list of objects") }
            result.append(SQSRequest(fields: object))
        }
        return result
    }

    /// `MessageAttributes`: name → `{DataType, StringValue | BinaryValue (base64)}`.
    func messageAttributes(_ name: String) throws(SQSError) -> [String: SQSMessageAttribute] {
        guard let value = fields[name], !(value is JSONReader.JSONNull) else { return [:] }
        guard let map = value as? [String: Any] else { throw typeError(name, "a map of message attributes") }
        var result: [String: SQSMessageAttribute] = [:]
        for (key, entry) in map {
            guard let object = entry as? [String: Any] else { throw typeError("\(name).\(key)", "an object") }
            let attribute = SQSRequest(fields: object)
            let dataType = try attribute.string("DataType")
            let stringValue = try attribute.string("StringValue")
            var binaryValue: Data?
            if let encoded = try attribute.string("BinaryValue") {
                guard let decoded = Data(base64Encoded: encoded) else {
                    throw typeError("\(name).\(key).BinaryValue", "base64")
                }
                binaryValue = decoded
            }
            guard let dataType else {
                throw .invalidParameterValue("The message attribute '\(key)' must contain a non-empty attribute type.")
            }
            result[key] = SQSMessageAttribute(dataType: dataType, stringValue: stringValue, binaryValue: binaryValue)
        }
        return result
    }
}

/// Encodes a response body.
enum SQSResponse {
    /// Writes a reply by hand: `JSONSerialization` (its validity check, its sort of keys and its
    /// bridging) took over a quarter of the server's CPU under load. Replies hold strings,
    /// integers, booleans, arrays and string-keyed objects only.
    static func encode(_ object: [String: Any]) -> [UInt8] {
        var output: [UInt8] = []
        output.reserveCapacity(256)
        write(object, into: &output)
        return output
    }

    static func write(_ value: Any, into output: inout [UInt8]) {
        switch value {
        case let string as String:
            writeString(string, into: &output)
        case let bool as Bool:
            output += bool ? Array("true".utf8) : Array("false".utf8)
        case let int as Int:
            output += Array(String(int).utf8)
        case let strings as [String: String]:
            writeObject(strings.map { ($0.key, $0.value as Any) }, into: &output)
        case let object as [String: Any]:
            writeObject(object.map { ($0.key, $0.value) }, into: &output)
        case let array as [Any]:
            output.append(UInt8(ascii: "["))
            for (index, element) in array.enumerated() {
                if index > 0 { output.append(UInt8(ascii: ",")) }
                write(element, into: &output)
            }
            output.append(UInt8(ascii: "]"))
        default:
            output += Array("null".utf8)
        }
    }

    private static func writeObject(_ pairs: [(String, Any)], into output: inout [UInt8]) {
        output.append(UInt8(ascii: "{"))
        for (index, (key, value)) in pairs.enumerated() {
            if index > 0 { output.append(UInt8(ascii: ",")) }
            writeString(key, into: &output)
            output.append(UInt8(ascii: ":"))
            write(value, into: &output)
        }
        output.append(UInt8(ascii: "}"))
    }

    private static let hexDigits = Array("0123456789abcdef".utf8)

    /// A JSON string: `"` and `\` escaped, control characters as `\u00XX`, the rest as UTF-8.
    static func writeString(_ string: String, into output: inout [UInt8]) {
        output.append(UInt8(ascii: "\""))
        for byte in string.utf8 {
            switch byte {
            case UInt8(ascii: "\""): output += [UInt8(ascii: "\\"), UInt8(ascii: "\"")]
            case UInt8(ascii: "\\"): output += [UInt8(ascii: "\\"), UInt8(ascii: "\\")]
            case UInt8(ascii: "\n"): output += [UInt8(ascii: "\\"), UInt8(ascii: "n")]
            case UInt8(ascii: "\r"): output += [UInt8(ascii: "\\"), UInt8(ascii: "r")]
            case UInt8(ascii: "\t"): output += [UInt8(ascii: "\\"), UInt8(ascii: "t")]
            case 0..<0x20:
                output += Array("\\u00".utf8)
                output.append(hexDigits[Int(byte >> 4)])
                output.append(hexDigits[Int(byte & 0x0F)])
            default: output.append(byte)
            }
        }
        output.append(UInt8(ascii: "\""))
    }

    static func error(_ error: SQSError) -> [UInt8] {
        encode(["__type": error.qualifiedType, "message": error.message])
    }

    static func attributes(_ attributes: [String: SQSMessageAttribute]) -> [String: Any] {
        attributes.mapValues { attribute in
            var object: [String: Any] = ["DataType": attribute.dataType]
            if let string = attribute.stringValue { object["StringValue"] = string }
            if let binary = attribute.binaryValue { object["BinaryValue"] = binary.base64EncodedString() }
            return object
        }
    }
}
