import Foundation
import Logging
import OpenQ
import Testing

@testable import OpenQServer

/// Generated input for the request parser, the actions and the signature code: a few thousand
/// requests each, from a fixed seed (a failure names its seed and input). Every one must end in a
/// reply or a typed error, never a crash, a hang or an internal failure, and leave the broker
/// consistent (its statistics add up).
@Suite("Fuzzing the SQS request path")
struct FuzzTests {
    /// OpenQ's SplitMix64: small, fast and reproducible.
    typealias Random = SplitMix64

    static let fields = [
        "QueueName", "QueueUrl", "MessageBody", "ReceiptHandle", "Attributes", "AttributeNames",
        "MessageAttributes", "MessageAttributeNames", "MessageSystemAttributeNames", "MaxNumberOfMessages",
        "WaitTimeSeconds", "VisibilityTimeout", "DelaySeconds", "Entries", "Id", "QueueNamePrefix", "MaxResults",
        "NextToken", "DataType", "StringValue", "BinaryValue",
    ]

    /// A JSON value of a random shape: what a confused or hostile client sends.
    static func value(_ random: inout Random, depth: Int = 0) -> Any {
        switch random.below(depth > 2 ? 6 : 9) {
        case 0: return random.pick(["q", "fuzz", "", "http://h/000000000000/fuzz", String(repeating: "x", count: 300)])
        case 1: return random.pick([0, 1, -1, 10, 11, 20, 21, 43_201, Int.max, Int.min])
        case 2: return random.pick([0.5, -0.0, 1e300])
        case 3: return random.pick([true, false])
        case 4: return NSNull()
        case 5: return String(decoding: random.bytes(random.below(12)), as: UTF8.self)
        case 6: return (0..<random.below(4)).map { _ in value(&random, depth: depth + 1) }
        case 7:
            var object: [String: Any] = [:]
            for _ in 0..<random.below(5) { object[random.pick(fields)] = value(&random, depth: depth + 1) }
            return object
        default:
            return ["DataType": random.pick(["String", "Number", "Binary", "Bogus", ""]), "StringValue": "1"]
        }
    }

    @Test func generatedRequests_endInARepliesOrTypedErrors_andTheBrokerStaysConsistent() async throws {
        let broker = MessageQueue(configuration: .init(metricsInterval: nil))
        let actions = SQSActions(queues: SQSQueues(broker: broker, logger: Logger(label: "fuzz")))
        _ = await actions.handle(
            target: "AmazonSQS.CreateQueue", body: Array(#"{"QueueName":"fuzz"}"#.utf8), baseURL: "http://h")
        var random = Random(seed: 0x0_DDBA11)
        let targets =
            SQSAction.allCases.map(\.rawValue).sorted().map { "AmazonSQS.\($0)" } + [
                "AmazonSQS.", "Nope", "AmazonSQS.Bogus",
            ]
        for iteration in 0..<3_000 {
            let body: [UInt8]
            switch random.below(4) {
            case 0:
                body = random.bytes(random.below(64))  // not JSON at all
            case 1:
                var valid = Array(
                    #"{"QueueUrl":"fuzz","MessageBody":"x","Entries":[{"Id":"a","MessageBody":"b"}]}"#.utf8)
                for _ in 0..<random.below(4) {
                    valid[random.below(valid.count)] = UInt8(truncatingIfNeeded: random.next())
                }
                body = valid
            default:
                var object: [String: Any] = ["QueueUrl": "http://h/000000000000/fuzz"]
                for _ in 0..<random.below(6) { object[random.pick(Self.fields)] = Self.value(&random) }
                body = Array((try? JSONSerialization.data(withJSONObject: object)) ?? Data("{}".utf8))
            }
            let target = random.pick(targets)
            // Long polls would make the run slow, not wrong: the generator caps the wait.
            let reply = await actions.handle(
                target: target, body: body.count > 0 && target.hasSuffix("ReceiveMessage") ? Self.capWait(body) : body,
                baseURL: "http://h")
            #expect(
                [200, 400].contains(reply.status),
                "seed iteration \(iteration): \(target) \(String(decoding: body, as: UTF8.self)) → \(reply.status) \(String(decoding: reply.body, as: UTF8.self))"
            )
            #expect(
                (try? JSONSerialization.jsonObject(with: Data(reply.body))) != nil,
                "iteration \(iteration): reply is JSON")
        }
        for topic in await broker.statistics().topics {
            for subscription in topic.subscriptions {
                let counters = subscription.counters
                #expect(
                    counters.routed
                        == counters.acked + counters.deadLettered + counters.dropped + counters.purged
                        + subscription.depth
                        + subscription.scheduled + subscription.inFlight,
                    "the statistics of \(topic.name)/\(subscription.name) add up")
            }
        }
        _ = await broker.shutdown(gracePeriod: .zero)
    }

    /// The same body with `WaitTimeSeconds` at most 0 when it is a JSON object.
    static func capWait(_ body: [UInt8]) -> [UInt8] {
        guard var object = (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] else { return body }
        object["WaitTimeSeconds"] = 0
        return Array((try? JSONSerialization.data(withJSONObject: object)) ?? Data(body))
    }

    @Test func generatedSignatures_areRefusedWithTypedErrors() {
        let verifier = SigV4Verifier(
            now: { Date(timeIntervalSince1970: 1_795_953_600) }, secret: { $0 == "AKID" ? "s" : nil })
        var random = Random(seed: 0x51_6E)
        let pieces = [
            "AWS4-HMAC-SHA256 ", "Credential=", "AKID", "/20261129/us-east-1/sqs/aws4_request", ", ", "SignedHeaders=",
            "host;x-amz-date", "Signature=", "00ff", "=", "/", ";", " ", "\u{0}", "é",
        ]
        for iteration in 0..<3_000 {
            let authorization = (0..<random.below(12)).map { _ in random.pick(pieces) }.joined()
            let request = SigV4Verifier.Request(
                method: random.pick(["POST", "GET", ""]), path: random.pick(["/", "", "/a%2Fb", "//"]),
                query: random.pick(["", "a=b&c", "%zz=1"]),
                headers: [
                    "Authorization": authorization, "Host": "h",
                    "X-Amz-Date": random.pick(["20261129T120000Z", "2026", "", "20261129T1200000Z"]),
                ],
                body: random.bytes(random.below(32)))
            do {
                _ = try verifier.verify(request)
                Issue.record("iteration \(iteration): a generated signature was accepted: \(authorization)")
            } catch {
                #expect(error.status == 403, "iteration \(iteration)")
            }
        }
    }

    @Test func generatedReceiptHandles_areNeverValid() {
        let signer = ReceiptSigner()
        var random = Random(seed: 0xACE)
        for iteration in 0..<5_000 {
            let handle: String
            if random.below(2) == 0 {
                handle = ReceiptSigner.base64url(random.bytes(random.below(48)))
            } else {
                handle = String(decoding: random.bytes(random.below(80)), as: UTF8.self)
            }
            #expect(!signer.isValid(handle, queue: "q"), "iteration \(iteration): \(handle)")
        }
    }
}

extension SplitMix64 {
    mutating func pick<T>(_ values: [T]) -> T { values[below(values.count)] }
    mutating func bytes(_ count: Int) -> [UInt8] { (0..<count).map { _ in UInt8(truncatingIfNeeded: next()) } }
}
