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

@Suite("The JSON reader")
struct JSONReaderTests {
    @Test func itReadsWhatFoundationReads() throws {
        let text = #"""
            {"a": "x\"y\\z\/\b\f\n\r\t\u00e9\ud83d\ude00", "n": 42, "neg": -7, "f": 1.5, "e": 1e3, "t": true,
             "nul": null, "arr": [1, "two", [3], {"k": false}], "obj": {"inner": {"deep": []}}, "empty": {}}
            """#
        let ours = try #require(try JSONReader.parse(Array(text.utf8)) as? [String: Any])
        #expect(ours["a"] as? String == "x\"y\\z/\u{8}\u{c}\n\r\té😀")
        #expect(ours["n"] as? Int == 42)
        #expect(ours["neg"] as? Int == -7)
        #expect(ours["f"] as? Double == 1.5)
        #expect(ours["e"] as? Double == 1000)
        #expect(ours["t"] as? Bool == true)
        #expect(ours["nul"] is JSONReader.JSONNull)
        let array = try #require(ours["arr"] as? [Any])
        #expect(array.count == 4)
        #expect(array[1] as? String == "two")
        #expect(((array[3] as? [String: Any])?["k"]) as? Bool == false)
        #expect((((ours["obj"] as? [String: Any])?["inner"] as? [String: Any])?["deep"] as? [Any])?.isEmpty == true)
        #expect((ours["empty"] as? [String: Any])?.isEmpty == true)
    }

    @Test func malformedInput_isAnError_neverACrash() {
        let bad = [
            "", "{", "}", "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "[1,]", "01", "-", "1.", "1e", "tru", "nul", "\"abc",
            "\"\\x\"", "\"\\u12\"", "\"\\ud800\"", "\"\\ud800\\u0041\"", "{} {}", "\"a\u{1}b\"",
            "[" + String(repeating: "[", count: 100) + "]",
        ]
        for text in bad {
            #expect(throws: JSONReader.Malformed.self, "\(text)") { try JSONReader.parse(Array(text.utf8)) }
        }
        #expect(throws: JSONReader.Malformed.self) { try JSONReader.parse([0x22, 0xFF, 0xFE, 0x22]) }  // invalid UTF-8
    }
}
