// Who is calling: the AWS Signature Version 4 of a request checked before any action runs.

import HTTPTypes
import Hummingbird

/// Checks a request's AWS Signature Version 4 (``SQSAuthenticator``) and puts the caller into the
/// context; a request that fails is answered with SQS's 403 and runs nothing. On a server that
/// checks no signatures (``SQSServer/Configuration/allowAnonymous``) every request passes as
/// anonymous.
struct SigV4AuthenticationMiddleware: RouterMiddleware {
    typealias Context = SQSRequestContext

    /// `nil`: the server checks no signatures.
    let authenticator: SQSAuthenticator?

    func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        guard let authenticator else { return try await next(request, context) }
        var context = context
        do {
            let accessKey = try authenticator.authenticate(request, body: context.body)
            context.caller = SQSActions.Caller(accessKeyId: accessKey, credentials: authenticator.credentials)
            context.record.accessKey = accessKey
        } catch {
            return SQSReply.response(SQSActions.reply(error))
        }
        return try await next(request, context)
    }
}

/// Checks who signed a request: one `Authorization` header, a signature for this server's host
/// (``SQSEndpoint``) and region, by a key of the credentials file.
struct SQSAuthenticator: Sendable {
    let verifier: SigV4Verifier
    let credentials: SQSCredentials
    /// The server's names; read per request (the bound port is known once it listens).
    let endpoint: @Sendable () -> SQSEndpoint

    /// - Returns: the access key id that signed the request.
    /// - Throws: SQS's 403 errors (`MissingAuthenticationToken`, `IncompleteSignature`,
    ///   `InvalidClientTokenId`, `SignatureDoesNotMatch`).
    func authenticate(_ request: Request, body: [UInt8]) throws(SQSError) -> String {
        guard request.headers[values: .authorization].count <= 1 else {
            throw SigV4Verifier.denied(
                "IncompleteSignature", "The request has more than one Authorization header; send exactly one.")
        }
        let signed = Self.signed(request, body: body)
        if signed.headers["authorization"] != nil { try endpoint().checkSigned(forHost: request.head.authority) }
        return try verifier.verify(signed)
    }

    /// What SigV4 verification needs of a request (the `Host` header is HTTP's authority).
    static func signed(_ request: Request, body: [UInt8]) -> SigV4Verifier.Request {
        var headers: [String: String] = [:]
        for field in request.headers {
            let name = field.name.canonicalName
            headers[name] = headers[name].map { "\($0),\(field.value)" } ?? field.value
        }
        if let authority = request.head.authority { headers["host"] = authority }
        return SigV4Verifier.Request(
            method: request.method.rawValue, path: request.uri.path, query: request.uri.query ?? "", headers: headers,
            body: body)
    }
}
