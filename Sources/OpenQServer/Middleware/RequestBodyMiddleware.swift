// Reads a request's body within the server's size limit, before anything else looks at it.

import HTTPTypes
import Hummingbird

/// Reads the body whole into the context, up to ``SQSServer/Configuration/maximumRequestBytes``: a
/// larger body (by its `Content-Length`, or as it arrives) is refused with 413 before it is read
/// whole, and the connection closed. The signature is checked over exactly these bytes.
struct RequestBodyMiddleware: RouterMiddleware {
    typealias Context = SQSRequestContext

    let maximumBytes: Int

    func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        if let length = request.headers[.contentLength].flatMap(Int.init), length > maximumBytes {
            return tooLarge()
        }
        var context = context
        do {
            // In this task: the body's sequence allows one reader, and the server drains what is
            // left after the reply.
            context.body = Array(buffer: try await request.body.collect(upTo: maximumBytes))
        } catch {
            return tooLarge()
        }
        return try await next(request, context)
    }

    /// 413, and the connection closed: the rest of the body is not read.
    private func tooLarge() -> Response {
        var response = SQSReply.response(
            SQSActions.reply(
                SQSError(
                    "RequestEntityTooLarge", query: "RequestEntityTooLarge",
                    "The request body is larger than \(maximumBytes) bytes.", status: 413)))
        response.headers[.connection] = "close"
        return response
    }
}
