// SQS's error shapes: __type, message, the query-protocol code, status.

import Foundation

/// An error as Amazon SQS answers it over the AWS JSON 1.0 protocol: an HTTP status, a JSON body
/// with `__type` and `message`, and the `x-amzn-query-error` header that carries the code of the
/// older query protocol, which the SDKs report (`AWS.SimpleQueueService.NonExistentQueue`).
struct SQSError: Error, Sendable, Equatable {
    /// The error shape's name (`QueueDoesNotExist`), sent as `__type`.
    var type: String
    /// The query-protocol code (`AWS.SimpleQueueService.NonExistentQueue`); `nil` to send no
    /// `x-amzn-query-error` header.
    var queryCode: String?
    var message: String
    var status: Int = 400
    var senderFault = true

    /// The `__type` value: SQS's namespace and the shape name.
    var qualifiedType: String { type.contains("#") ? type : "com.amazonaws.sqs#\(type)" }

    /// The code a batch entry's failure carries (`Code`), as SQS reports it there.
    var batchCode: String { queryCode ?? type }

    init(_ type: String, query queryCode: String? = nil, _ message: String, status: Int = 400, senderFault: Bool = true)
    {
        self.type = type
        self.queryCode = queryCode ?? type
        self.message = message
        self.status = status
        self.senderFault = senderFault
    }

    static func queueDoesNotExist(_ name: String) -> SQSError {
        SQSError(
            "QueueDoesNotExist", query: "AWS.SimpleQueueService.NonExistentQueue",
            "The specified queue \(name) does not exist.")
    }

    static func invalidParameterValue(_ message: String) -> SQSError {
        SQSError("InvalidParameterValue", message)
    }

    static func missingParameter(_ name: String) -> SQSError {
        SQSError("MissingParameter", "The request must contain the parameter \(name).")
    }

    static func invalidAttributeName(_ name: String) -> SQSError {
        SQSError("InvalidAttributeName", "Unknown Attribute \(name).")
    }

    static func invalidAttributeValue(_ name: String, _ reason: String) -> SQSError {
        SQSError("InvalidAttributeValue", "Invalid value for the parameter \(name). Reason: \(reason)")
    }

    static func receiptHandleIsInvalid(_ handle: String) -> SQSError {
        SQSError("ReceiptHandleIsInvalid", "The input receipt handle \"\(handle)\" is not a valid receipt handle.")
    }

    static func messageNotInflight() -> SQSError {
        SQSError(
            "MessageNotInflight", query: "AWS.SimpleQueueService.MessageNotInflight",
            "The message referred to is not in flight.")
    }

    static func unsupported(_ message: String) -> SQSError {
        SQSError("UnsupportedOperation", query: "AWS.SimpleQueueService.UnsupportedOperation", message)
    }

    /// A request body that is not the JSON the action needs (malformed, or a value of the wrong
    /// type): what AWS's JSON services answer, without a query-protocol code.
    static func serialization(_ message: String) -> SQSError {
        var error = SQSError("com.amazon.coral.service#SerializationException", message)
        error.queryCode = nil
        return error
    }

    static func accessDenied(_ action: String, queue: String?) -> SQSError {
        SQSError(
            "com.amazon.coral.service#AccessDeniedException", query: "AccessDenied",
            "Access to the resource \(queue.map { "queue \($0)" } ?? "of this account") is denied for \(action).",
            status: 403)
    }

    static func internalFailure(_ message: String) -> SQSError {
        SQSError("InternalFailure", message, status: 500, senderFault: false)
    }
}
