// SQS's rules for queue names and messages, checked before anything runs.

import Foundation
import Logging
import OpenQ

extension SQSQueues {
    static func validateQueueName(_ name: String) throws(SQSError) {
        if name.hasSuffix(".fifo") {
            throw .unsupported("FIFO queues are not supported by openq-server yet; create a standard queue.")
        }
        guard (1...80).contains(name.count),
            name.unicodeScalars.allSatisfy({
                $0.isASCII && (CharacterSet.alphanumerics.contains($0) || $0 == "-" || $0 == "_")
            })
        else {
            throw .invalidParameterValue(
                "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length")
        }
    }

    /// Checks a message against SQS's rules and the queue's `MaximumMessageSize`.
    /// - Returns: its size in bytes as SQS counts it.
    static func validate(_ message: SQSMessage, maximumSize: Int) throws(SQSError) -> Int {
        guard !message.body.isEmpty else {
            throw .invalidParameterValue("The request must contain the parameter MessageBody.")
        }
        let allowed = message.body.unicodeScalars.allSatisfy { scalar in
            switch scalar.value {
            case 0x9, 0xA, 0xD, 0x20...0xD7FF, 0xE000...0xFFFD, 0x10000...0x10FFFF: true
            default: false
            }
        }
        guard allowed else {
            throw SQSError(
                "InvalidMessageContents",
                "Invalid characters found. Valid unicode characters are #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF"
            )
        }
        guard message.attributes.count <= 10 else {
            throw .invalidParameterValue(
                "Number of message attributes [\(message.attributes.count)] exceeds the allowed maximum [10].")
        }
        var size = message.body.utf8.count
        for (name, attribute) in message.attributes {
            try validateAttributeName(name)
            let base = attribute.dataType.split(separator: ".", maxSplits: 1).first.map(String.init) ?? ""
            guard ["String", "Number", "Binary"].contains(base), attribute.dataType.utf8.count <= 256 else {
                throw .invalidParameterValue(
                    "The type of message (user) attribute '\(name)' is invalid. You must use only the following "
                        + "supported type prefixes: Binary, Number, String.")
            }
            if base == "Binary" {
                guard let binary = attribute.binaryValue, !binary.isEmpty, attribute.stringValue == nil else {
                    throw .invalidParameterValue(
                        "Message (user) attribute '\(name)' must contain a non-empty value of type 'Binary'.")
                }
                size += binary.count
            } else {
                guard let string = attribute.stringValue, !string.isEmpty, attribute.binaryValue == nil else {
                    throw .invalidParameterValue(
                        "Message (user) attribute '\(name)' must contain a non-empty value of type '\(base)'.")
                }
                if base == "Number", Decimal(string: string) == nil || Double(string) == nil {
                    throw .invalidParameterValue(
                        "Can't cast the value of message (user) attribute '\(name)' to a number.")
                }
                size += string.utf8.count
            }
            size += name.utf8.count + attribute.dataType.utf8.count
        }
        guard size <= maximumSize else {
            throw .invalidParameterValue(
                "One or more parameters are invalid. Reason: Message must be shorter than \(maximumSize) bytes.")
        }
        return size
    }

    static func validateAttributeName(_ name: String) throws(SQSError) {
        let lowered = name.lowercased()
        let valid =
            (1...256).contains(name.utf8.count)
            && name.unicodeScalars.allSatisfy {
                $0.isASCII && (CharacterSet.alphanumerics.contains($0) || $0 == "_" || $0 == "-" || $0 == ".")
            }
            && !name.hasPrefix(".") && !name.hasSuffix(".") && !name.contains("..")
            && !lowered.hasPrefix("aws.") && !lowered.hasPrefix("amazon.")
        guard valid else {
            throw .invalidParameterValue("Message (user) attribute name '\(name)' is invalid.")
        }
    }

    /// What a `SendMessage` (or one batch entry) asks for, read from its request.
    struct SendInput: Sendable {
        var body: String
        var attributes: [String: SQSMessageAttribute]
        var delay: Int?

        init(_ request: SQSRequest) throws(SQSError) {
            body = try request.requiredString("MessageBody")
            attributes = try request.messageAttributes("MessageAttributes")
            delay = try request.int("DelaySeconds")
        }
    }
}
