// An SQS reply as an HTTP response: AWS JSON 1.0's content type, the error header, a request id.

import Foundation
import HTTPTypes
import Hummingbird

/// How the server's replies go over HTTP.
enum SQSReply {
    /// `X-Amz-Target: AmazonSQS.<Action>`.
    static let target = HTTPField.Name("X-Amz-Target")!

    /// The action a request names, for logs: its target without `AmazonSQS.`; `nil` without one.
    static func action(of request: Request) -> String? {
        request.headers[target].map { $0.hasPrefix("AmazonSQS.") ? String($0.dropFirst(10)) : $0 }
    }

    /// The headers every SQS reply carries: its content type, and an error's query-protocol code.
    static func headers(of reply: SQSActions.Reply) -> HTTPFields {
        var headers: HTTPFields = [.contentType: "application/x-amz-json-1.0"]
        if let queryError = reply.queryError { headers[HTTPField.Name("x-amzn-query-error")!] = queryError }
        return headers
    }

    /// A reply as a response, with a fresh `x-amzn-RequestId`.
    static func response(_ reply: SQSActions.Reply) -> Response {
        var headers = headers(of: reply)
        headers[HTTPField.Name("x-amzn-RequestId")!] = UUID().uuidString
        return Response(
            status: .init(code: reply.status), headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: reply.body)))
    }
}
