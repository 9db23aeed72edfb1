import Foundation
import Testing

@testable import OpenQServer

/// AWS Signature Version 4 verification against a request signed by botocore's own signer
/// (`SigV4Auth`, at a fixed time; the vector was generated once and pasted here), and the ways a
/// request must fail: unknown key, wrong secret, changed body or header, expired time, missing or
/// malformed authorization.
@Suite("SigV4 verification")
struct SigV4Tests {
    static let secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
    static let signedAt = Date(timeIntervalSince1970: 1_795_953_600)  // 2026-11-29T12:00:00Z

    let request = SigV4Verifier.Request(
        method: "POST", path: "/", query: "",
        headers: [
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": "AmazonSQS.CreateQueue",
            "X-Amz-Date": "20261129T120000Z",
            "Host": "localhost:9324",
            "Authorization":
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261129/us-east-1/sqs/aws4_request, "
                + "SignedHeaders=content-type;host;x-amz-date;x-amz-target, "
                + "Signature=2cb4f0e02fa1b5f5d3df6c04461252495cbe796fc5e22a614db4c08c6a5d6144",
        ],
        body: Array(#"{"QueueName":"jobs"}"#.utf8))

    func verifier(at now: Date = signedAt, secret: String = secret) -> SigV4Verifier {
        SigV4Verifier(now: { now }, secret: { $0 == "AKIDEXAMPLE" ? secret : nil })
    }

    func failure(_ verifier: SigV4Verifier, _ request: SigV4Verifier.Request) -> String? {
        do {
            _ = try verifier.verify(request)
            return nil
        } catch {
            return error.queryCode
        }
    }

    @Test func botocoresSignature_verifies_andNamesItsKey() throws {
        #expect(try verifier().verify(request) == "AKIDEXAMPLE")
        #expect(try verifier(at: Self.signedAt.addingTimeInterval(299)).verify(request) == "AKIDEXAMPLE")
    }

    @Test func everyChange_isSignatureDoesNotMatch() {
        var body = request
        body.body = Array(#"{"QueueName":"jobz"}"#.utf8)
        #expect(failure(verifier(), body) == "SignatureDoesNotMatch")
        var header = request
        header.headers["X-Amz-Target"] = "AmazonSQS.DeleteQueue"
        #expect(failure(verifier(), header) == "SignatureDoesNotMatch")
        var declared = request
        declared.headers["x-amz-content-sha256"] = String(repeating: "0", count: 64)
        #expect(failure(verifier(), declared) == "SignatureDoesNotMatch")
        #expect(failure(verifier(secret: "other"), request) == "SignatureDoesNotMatch")
        #expect(failure(verifier(at: Self.signedAt.addingTimeInterval(301)), request) == "SignatureDoesNotMatch")
        #expect(failure(verifier(at: Self.signedAt.addingTimeInterval(-301)), request) == "SignatureDoesNotMatch")
    }

    @Test func anUnknownKey_isInvalidClientTokenId_andAMissingHeader_MissingAuthenticationToken() {
        let unknown = SigV4Verifier(now: { Self.signedAt }, secret: { _ in nil })
        #expect(failure(unknown, request) == "InvalidClientTokenId")
        var unsigned = request
        unsigned.headers["Authorization"] = nil
        #expect(failure(verifier(), unsigned) == "MissingAuthenticationToken")
        var malformed = request
        malformed.headers["Authorization"] = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE"
        #expect(failure(verifier(), malformed) == "IncompleteSignature")
        var basic = request
        basic.headers["Authorization"] = "Basic dXNlcjpwYXNz"
        #expect(failure(verifier(), basic) == "IncompleteSignature")
    }

    @Test func errors_are403_withAWSsShapes() throws {
        let error = SigV4Verifier.denied("SignatureDoesNotMatch", "no")
        #expect(error.status == 403)
        #expect(error.qualifiedType == "com.amazon.coral.service#InvalidSignatureException")
    }

    @Test func signaturesCompare_inConstantTime_forEveryLength() {
        #expect(SigV4Verifier.constantTimeEqual("abc", "abc"))
        #expect(!SigV4Verifier.constantTimeEqual("abc", "abd"))
        #expect(!SigV4Verifier.constantTimeEqual("abc", "abcd"))
        #expect(!SigV4Verifier.constantTimeEqual("", "a"))
    }

    @Test func permissions_byGroupAndPrefix() throws {
        let credentials = SQSCredentials(credentials: [
            .init(
                accessKeyId: "team", secretAccessKey: "s",
                permissions: [.init(queuePrefix: "team-", actions: [.send, .consume])]),
            .init(accessKeyId: "admin", secretAccessKey: "s", permissions: [.init(queuePrefix: "", actions: [.admin])]),
        ])
        #expect(credentials.allows("team", "SendMessage", queue: "team-jobs"))
        #expect(credentials.allows("team", "DeleteMessageBatch", queue: "team-jobs"))
        #expect(!credentials.allows("team", "SendMessage", queue: "other"))
        #expect(!credentials.allows("team", "PurgeQueue", queue: "team-jobs"))
        #expect(!credentials.allows("team", "ListQueues", queue: nil))
        #expect(credentials.allows("admin", "CreateQueue", queue: "anything"))
        #expect(!credentials.allows("admin", "ReceiveMessage", queue: "anything"))
        #expect(!credentials.allows("nobody", "SendMessage", queue: "team-jobs"))
    }

    @Test func theCredentialsFile_isTheDocumentedJSON() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("openq-credentials-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let good = directory.appendingPathComponent("good.json")
        try Data(
            #"{"credentials": [{"accessKeyId": "AKID1", "secretAccessKey": "s1", "permissions": [{"queuePrefix": "", "actions": ["send", "consume", "admin"]}]}]}"#
                .utf8
        ).write(to: good)
        let credentials = try SQSCredentials(contentsOf: good.path)
        #expect(credentials.secret(of: "AKID1") == "s1")
        #expect(credentials.allows("AKID1", "CreateQueue", queue: "x"))
        for bad in [
            #"{"credentials": [{"accessKeyId": "A", "secretAccessKey": "s", "permissions": [{"queuePrefix": "", "actions": ["everything"]}]}]}"#,
            #"{"credentials": [{"accessKeyId": "", "secretAccessKey": "s", "permissions": []}]}"#,
            #"{"credentials": [{"accessKeyId": "A", "secretAccessKey": "s", "permissions": []}, {"accessKeyId": "A", "secretAccessKey": "t", "permissions": []}]}"#,
            "not json",
        ] {
            let file = directory.appendingPathComponent("bad.json")
            try Data(bad.utf8).write(to: file)
            #expect(throws: SQSServerError.self) { try SQSCredentials(contentsOf: file.path) }
        }
        #expect(throws: SQSServerError.self) {
            try SQSCredentials(contentsOf: directory.appendingPathComponent("missing").path)
        }
    }
}

@Suite("SigV4 dates and hex")
struct SigV4DateTests {
    @Test func amzDates_parseAsUTC_andBadOnesDoNot() {
        #expect(SigV4Verifier.parseDate("20261129T120000Z") == Date(timeIntervalSince1970: 1_795_953_600))
        #expect(SigV4Verifier.parseDate("20000229T235959Z") == Date(timeIntervalSince1970: 951_868_799))
        #expect(SigV4Verifier.parseDate("19700101T000000Z") == Date(timeIntervalSince1970: 0))
        for bad in [
            "", "20261129T120000", "20261329T120000Z", "2026112xT120000Z", "20261129 120000Z", "20261129T250000Z",
        ] {
            #expect(SigV4Verifier.parseDate(bad) == nil, "\(bad)")
        }
    }

    @Test func hex_isLowercase_andURIEncodingUppercase() {
        #expect(Hex.lowercase([0x00, 0x0F, 0xA0, 0xFF]) == "000fa0ff")
        #expect(SigV4Verifier.encode("a b/é~") == "a%20b%2F%C3%A9~")
    }
}
