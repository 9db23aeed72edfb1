// The server's request metrics: requests by action and status, and their durations.

import Hummingbird

/// Records every SQS request in ``ServerMetrics`` (`openq_server_requests_total{action,status}`,
/// `openq_server_request_duration_seconds{action}`). SQS is one `POST /` with the action in a
/// header, so the action, not the route, labels the metrics (hummingbird's own metrics middleware
/// would label them all `/`).
struct RequestMetricsMiddleware: RouterMiddleware {
    typealias Context = SQSRequestContext

    let metrics: ServerMetrics

    func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        let started = ContinuousClock.now
        let response = try await next(request, context)
        let target = request.headers[SQSReply.target]
        metrics.record(
            action: target.map { $0.hasPrefix("AmazonSQS.") ? String($0.dropFirst(10)) : "unknown" } ?? "none",
            status: Int(response.status.code), duration: ContinuousClock.now - started)
        return response
    }
}
