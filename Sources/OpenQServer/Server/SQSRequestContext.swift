// The request context of the server's routes: what its middleware learned of a request on the way in.

import Hummingbird

/// The context every route of the server runs with: hummingbird's core context, the body as the
/// ``RequestBodyMiddleware`` read it, and who signed it (``SigV4AuthenticationMiddleware``).
///
/// A context is a value passed inward through the middleware; what an inner one learns that an
/// outer one reports (the access key, for the access log) goes through ``record``, an object all
/// of them share.
struct SQSRequestContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    /// The request body, read whole within the size limit.
    var body: [UInt8] = []
    /// Who signed the request; `nil` on a server that checks no signatures.
    var caller: SQSActions.Caller?
    /// What the access log and the metrics report of this request.
    let record = RequestRecord()

    init(source: Source) {
        self.coreContext = .init(source: source)
    }
}

/// What an inner middleware tells the outer ones of a request (one task uses it at a time: the
/// request's own).
final class RequestRecord: @unchecked Sendable {
    /// The access key that signed the request, once its signature checked out.
    var accessKey: String?
}
