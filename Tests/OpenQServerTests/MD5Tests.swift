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

@Suite("Hand-written encoders")
struct EncoderTests {
    @Test func replies_areJSONThatFoundationReadsBack() throws {
        let object: [String: Any] = [
            "QueueUrl": "http://h/000000000000/q", "quote\"back\\slash": "line\nbreak\ttab\u{1}ctl é 😀",
            "Count": 42, "Negative": -7, "Flag": true, "Off": false, "List": ["a", "b"],
            "Nested": [["Id": "1", "SenderFault": true]], "Map": ["k": "v"], "Empty": [String](),
        ]
        let bytes = SQSResponse.encode(object)
        let decoded = try #require(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
        #expect(decoded["QueueUrl"] as? String == "http://h/000000000000/q")
        #expect(decoded["quote\"back\\slash"] as? String == "line\nbreak\ttab\u{1}ctl é 😀")
        #expect(decoded["Count"] as? Int == 42)
        #expect(decoded["Negative"] as? Int == -7)
        #expect(decoded["Flag"] as? Bool == true)
        #expect(decoded["Off"] as? Bool == false)
        #expect(decoded["List"] as? [String] == ["a", "b"])
        #expect((decoded["Nested"] as? [[String: Any]])?.first?["Id"] as? String == "1")
        #expect(decoded["Map"] as? [String: String] == ["k": "v"])
        #expect((decoded["Empty"] as? [Any])?.isEmpty == true)
    }

    @Test func base64url_matchesFoundation_withoutPadding() {
        var random = SystemRandomNumberGenerator()
        for length in 0..<40 {
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &random) }
            let expected = Data(bytes).base64EncodedString()
                .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
                .replacingOccurrences(of: "=", with: "")
            #expect(ReceiptSigner.base64url(bytes) == expected, "\(bytes)")
            #expect(ReceiptSigner.decode(ReceiptSigner.base64url(bytes)) == (length == 0 ? [] : bytes))
        }
    }
}
