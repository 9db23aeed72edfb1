// AWS Signature Version 4 verification: canonical request, signing key, constant-time compare.

import Crypto
import Foundation

/// AWS Signature Version 4, verified as AWS verifies it: the canonical request is rebuilt from
/// what arrived (method, path, query, the signed headers, and the SHA-256 of the body as
/// received), signed with the caller's secret, and the result compared in constant time. The
/// request's time must be within five minutes of the server's, and its credential scoped to this
/// server's region and service. Session tokens (temporary credentials) are refused.
struct SigV4Verifier: Sendable {
    /// How far a request's `X-Amz-Date` may be from the server's clock.
    static let allowedSkew: TimeInterval = 5 * 60

    let service: String
    /// The region a credential must be scoped to (the server's).
    let region: String
    /// The secret of an access key id, or `nil` for an unknown key.
    let secret: @Sendable (String) -> String?
    let now: @Sendable () -> Date

    init(
        service: String = "sqs", region: String = "us-east-1", now: @escaping @Sendable () -> Date = Date.init,
        secret: @escaping @Sendable (String) -> String?
    ) {
        self.service = service
        self.region = region
        self.now = now
        self.secret = secret
    }

    /// What arrived, as the verifier needs it.
    struct Request: Sendable {
        var method: String
        /// The path as sent (percent-encoded), without the query.
        var path: String
        /// The query string as sent, without `?`.
        var query: String
        /// Header names in any case; repeated headers joined with `,`.
        var headers: [String: String]
        var body: [UInt8]
    }

    /// Checks a request's signature.
    /// - Returns: the access key id that signed it.
    /// - Throws: `MissingAuthenticationToken`, `IncompleteSignature`, `InvalidClientTokenId`
    ///   (unknown key) or `SignatureDoesNotMatch` (wrong signature, changed body, a time out of
    ///   the window), each 403.
    func verify(_ request: Request) throws(SQSError) -> String {
        var headers: [String: String] = [:]
        for (name, value) in request.headers { headers[name.lowercased()] = value }
        guard let authorization = headers["authorization"] else {
            throw Self.denied("MissingAuthenticationToken", "Request is missing Authentication Token")
        }
        if headers["x-amz-security-token"] != nil {
            throw Self.denied(
                "InvalidClientTokenId",
                "Session tokens (X-Amz-Security-Token, temporary credentials) are not supported by this server: sign "
                    + "with a long-term access key of its credentials file.")
        }
        let parsed = try Self.parse(authorization)
        let scope = parsed.credential.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard scope.count == 5, scope[4] == "aws4_request" else {
            throw Self.denied("IncompleteSignature", "The credential scope of the Authorization header is malformed.")
        }
        let (accessKey, day, region, service) = (scope[0], scope[1], scope[2], scope[3])
        guard let secret = secret(accessKey) else {
            throw Self.denied("InvalidClientTokenId", "The security token included in the request is invalid.")
        }
        guard service == self.service else {
            throw Self.denied(
                "SignatureDoesNotMatch", "Credential should be scoped to correct service: '\(self.service)'.")
        }
        guard region == self.region else {
            throw Self.denied(
                "SignatureDoesNotMatch",
                "Credential should be scoped to a valid region: this server's region is '\(self.region)', the "
                    + "request was signed for '\(region)'.")
        }
        guard let amzDate = headers["x-amz-date"], let date = Self.parseDate(amzDate), amzDate.hasPrefix(day) else {
            throw Self.denied(
                "SignatureDoesNotMatch", "The request has no valid X-Amz-Date matching its credential scope.")
        }
        let skew = abs(date.timeIntervalSince(now()))
        guard skew <= Self.allowedSkew else {
            throw Self.denied(
                "SignatureDoesNotMatch",
                "Signature expired: \(amzDate) is more than 5 minutes from the server's time.")
        }
        let signedHeaders = parsed.signedHeaders.split(separator: ";").map(String.init)
        guard signedHeaders.contains("host"), signedHeaders == signedHeaders.sorted() else {
            throw Self.denied("SignatureDoesNotMatch", "The signed headers must include host, in order.")
        }
        let payloadHash = Self.hex(SHA256.hash(data: request.body))
        if let declared = headers["x-amz-content-sha256"], declared != "UNSIGNED-PAYLOAD", declared != payloadHash {
            throw Self.denied("SignatureDoesNotMatch", "The provided x-amz-content-sha256 does not match the body.")
        }
        var canonicalHeaders = ""
        for name in signedHeaders {
            guard let value = headers[name] else {
                throw Self.denied("SignatureDoesNotMatch", "The signed header \(name) is missing.")
            }
            canonicalHeaders += "\(name):\(Self.trimmed(value))\n"
        }
        let canonicalRequest = [
            request.method, Self.canonicalPath(request.path), Self.canonicalQuery(request.query), canonicalHeaders,
            parsed.signedHeaders, payloadHash,
        ].joined(separator: "\n")
        let credentialScope = "\(day)/\(region)/\(service)/aws4_request"
        let stringToSign = [
            "AWS4-HMAC-SHA256", amzDate, credentialScope, Self.hex(SHA256.hash(data: Array(canonicalRequest.utf8))),
        ].joined(separator: "\n")
        let expected = Self.signature(
            secret: secret, day: day, region: region, service: service, stringToSign: stringToSign)
        guard Self.constantTimeEqual(expected, parsed.signature) else {
            throw Self.denied(
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided. Check your AWS "
                    + "Secret Access Key and signing method.")
        }
        return accessKey
    }

    /// An authentication failure as AWS's JSON services answer it: the coral exception as
    /// `__type`, the query-protocol code (which the SDKs report) in `x-amzn-query-error`, 403.
    static func denied(_ code: String, _ message: String) -> SQSError {
        let type =
            switch code {
            case "InvalidClientTokenId": "UnrecognizedClientException"
            case "SignatureDoesNotMatch": "InvalidSignatureException"
            default: "\(code)Exception"
            }
        return SQSError("com.amazon.coral.service#\(type)", query: code, message, status: 403)
    }

    /// `AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`
    static func parse(_ authorization: String) throws(SQSError) -> (
        credential: String, signedHeaders: String, signature: String
    ) {
        guard authorization.hasPrefix("AWS4-HMAC-SHA256 ") else {
            throw denied("IncompleteSignature", "Only AWS4-HMAC-SHA256 signatures are accepted.")
        }
        var fields: [String: String] = [:]
        for part in authorization.dropFirst("AWS4-HMAC-SHA256 ".count).split(separator: ",") {
            let pair = part.trimmingCharacters(in: .whitespaces).split(separator: "=", maxSplits: 1).map(String.init)
            if pair.count == 2 { fields[pair[0]] = pair[1] }
        }
        guard let credential = fields["Credential"], let signedHeaders = fields["SignedHeaders"],
            let signature = fields["Signature"]
        else {
            throw denied(
                "IncompleteSignature", "Authorization header requires Credential, SignedHeaders and Signature.")
        }
        return (credential, signedHeaders, signature)
    }

    /// `yyyyMMdd'T'HHmmss'Z'`, parsed by hand: a `DateFormatter` per request cost more than the
    /// signature's hashing (ICU).
    static func parseDate(_ value: String) -> Date? {
        let bytes = Array(value.utf8)
        guard bytes.count == 16, bytes[8] == UInt8(ascii: "T"), bytes[15] == UInt8(ascii: "Z") else { return nil }
        func number(_ range: Range<Int>) -> Int? {
            var result = 0
            for byte in bytes[range] {
                guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) else { return nil }
                result = result * 10 + Int(byte - UInt8(ascii: "0"))
            }
            return result
        }
        guard let year = number(0..<4), let month = number(4..<6), let day = number(6..<8),
            let hour = number(9..<11), let minute = number(11..<13), let second = number(13..<15),
            (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 61
        else { return nil }
        // Days from the civil date (Howard Hinnant's algorithm), in UTC.
        let shiftedYear = month <= 2 ? year - 1 : year
        let era = (shiftedYear >= 0 ? shiftedYear : shiftedYear - 399) / 400
        let yearOfEra = shiftedYear - era * 400
        let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        let days = era * 146_097 + dayOfEra - 719_468
        return Date(timeIntervalSince1970: TimeInterval(days * 86_400 + hour * 3_600 + minute * 60 + second))
    }

    static func signature(secret: String, day: String, region: String, service: String, stringToSign: String) -> String
    {
        func hmac(_ key: [UInt8], _ data: String) -> [UInt8] {
            Array(HMAC<SHA256>.authenticationCode(for: Array(data.utf8), using: SymmetricKey(data: key)))
        }
        let dateKey = hmac(Array("AWS4\(secret)".utf8), day)
        let signingKey = hmac(hmac(hmac(dateKey, region), service), "aws4_request")
        return hex(hmac(signingKey, stringToSign))
    }

    /// Header values: leading and trailing spaces removed, runs of spaces made one.
    static func trimmed(_ value: String) -> String {
        value.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ")
            .trimmingCharacters(in: .whitespaces)
    }

    /// The path, each segment URI-encoded (AWS's unreserved set), as sent by the SDKs.
    static func canonicalPath(_ path: String) -> String {
        guard !path.isEmpty else { return "/" }
        return path.split(separator: "/", omittingEmptySubsequences: false)
            .map { encode(String($0).removingPercentEncoding ?? String($0)) }
            .joined(separator: "/")
    }

    /// Query parameters sorted by name, then value, each URI-encoded.
    static func canonicalQuery(_ query: String) -> String {
        guard !query.isEmpty else { return "" }
        let pairs = query.split(separator: "&").map { pair -> (String, String) in
            let parts = pair.split(separator: "=", maxSplits: 1).map {
                String($0).removingPercentEncoding ?? String($0)
            }
            return (encode(parts[0]), encode(parts.count > 1 ? parts[1] : ""))
        }
        return pairs.sorted { $0.0 == $1.0 ? $0.1 < $1.1 : $0.0 < $1.0 }.map { "\($0.0)=\($0.1)" }
            .joined(separator: "&")
    }

    static func encode(_ value: String) -> String {
        var encoded = ""
        for byte in value.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."),
                UInt8(ascii: "~"):
                encoded.append(Character(UnicodeScalar(byte)))
            default:
                encoded += "%" + Hex.lowercase([byte]).uppercased()
            }
        }
        return encoded
    }

    static func hex<Bytes: Sequence>(_ bytes: Bytes) -> String where Bytes.Element == UInt8 {
        Hex.lowercase(bytes)
    }

    /// Compares every byte whatever the first difference, so the time taken tells nothing.
    static func constantTimeEqual(_ left: String, _ right: String) -> Bool {
        let left = Array(left.utf8)
        let right = Array(right.utf8)
        var difference = UInt8(left.count == right.count ? 0 : 1)
        for index in 0..<max(left.count, right.count) {
            difference |= (index < left.count ? left[index] : 0) ^ (index < right.count ? right[index] : 0)
        }
        return difference == 0
    }
}
