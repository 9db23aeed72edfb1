// What the server reports of each SQS request: one access-log line, and its request metrics.

import Hummingbird
import Logging

/// Reports every SQS request once it is answered:
///
/// - an access-log line at `info`: its action, status, access key and duration in microseconds
///   (fields `action`, `status`, `key`, `duration_us`);
/// - with ``ServerMetrics``, `openq_server_requests_total{action,status}` and
///   `openq_server_request_duration_seconds{action}`. SQS is one `POST /` with the action in a
///   header, so the action, not the route, labels them (hummingbird's own metrics middleware
///   would label them all `/`).
struct AccessLogMiddleware: RouterMiddleware {
    typealias Context = SQSRequestContext

    let logger: Logger
    let metrics: ServerMetrics?

    func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        let started = ContinuousClock.now
        let response = try await next(request, context)
        let duration = ContinuousClock.now - started
        if let metrics {
            let target = request.headers[SQSReply.target]
            metrics.record(
                action: target.map { $0.hasPrefix("AmazonSQS.") ? String($0.dropFirst(10)) : "unknown" } ?? "none",
                status: Int(response.status.code), duration: duration)
        }
        logger.info(
            "request",
            metadata: [
                "action": "\(SQSReply.action(of: request) ?? "-")",
                "status": "\(response.status.code)", "key": "\(context.record.accessKey ?? "-")",
                "duration_us": "\(Int(duration / .microseconds(1)))",
            ])
        return response
    }
}
