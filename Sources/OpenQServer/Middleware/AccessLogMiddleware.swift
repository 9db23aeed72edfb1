// The access log: one structured line per SQS request.

import Hummingbird
import Logging

/// Logs every SQS request at `info` once it is answered: its action, status, access key and
/// duration in microseconds (field names `action`, `status`, `key`, `duration_us`).
struct AccessLogMiddleware: RouterMiddleware {
    typealias Context = SQSRequestContext

    let logger: Logger

    func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        let started = ContinuousClock.now
        let response = try await next(request, context)
        logger.info(
            "request",
            metadata: [
                "action": "\(SQSReply.action(of: request) ?? "-")",
                "status": "\(response.status.code)", "key": "\(context.record.accessKey ?? "-")",
                "duration_us": "\(Int((ContinuousClock.now - started) / .microseconds(1)))",
            ])
        return response
    }
}
