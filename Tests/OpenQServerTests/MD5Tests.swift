import Foundation
import Testing

@testable import OpenQServer

/// `MD5OfMessageBody` and `MD5OfMessageAttributes` as SQS computes them: the Java, Go and Ruby SDKs
/// check both. The vectors were computed independently (Python's hashlib and struct, in
/// Tests/SQSCompatibility/test_sqs.py), which checks them against the running server too.
@Suite("SQS checksums")
struct MD5Tests {
    @Test func theBodyMD5_isTheMD5OfItsUTF8() {
        #expect(SQSMessage(body: "hello").md5OfBody == "5d41402abc4b2a76b9719d911017c592")
        #expect(SQSMessage(body: "hello wörld").md5OfBody == "8c6e15df743a0380aaa26e5741794d7b")
    }

    @Test func theAttributesMD5_followsSQSsEncoding() {
        #expect(SQSMessageAttribute.md5(of: [:]) == nil)
        #expect(
            SQSMessageAttribute.md5(of: ["a": SQSMessageAttribute(dataType: "String", stringValue: "b")])
                == "bef8bf215374a0a228d67533b1a488be")
        let mixed: [String: SQSMessageAttribute] = [
            "kind": SQSMessageAttribute(dataType: "String", stringValue: "greeting"),
            "count": SQSMessageAttribute(dataType: "Number", stringValue: "42"),
            "blob": SQSMessageAttribute(dataType: "Binary", binaryValue: Data([0x00, 0x01, 0xFF])),
            "custom": SQSMessageAttribute(dataType: "String.custom", stringValue: "x"),
        ]
        #expect(SQSMessageAttribute.md5(of: mixed) == "684746d6d8257087d932fb31374a1970")
    }
}
