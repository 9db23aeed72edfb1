// The AWS JSON 1.0 side: a request's action run on the queues, its reply or SQS error; no HTTP.

import Foundation
import OpenQ

/// The AWS JSON 1.0 side of the server: `X-Amz-Target: AmazonSQS.<Action>` and a JSON body in,
/// a JSON body (or an SQS error) out. Independent of HTTP, so that tests drive it directly.
struct SQSActions: Sendable {
    let queues: SQSQueues

    /// The outcome of one request.
    struct Reply: Sendable {
        var status: Int
        var body: [UInt8]
        /// The `x-amzn-query-error` header of an error reply.
        var queryError: String?
    }

    /// Who is calling, once the signature checked out: the key and what it may do.
    struct Caller: Sendable {
        let accessKeyId: String
        let credentials: SQSCredentials
    }

    /// Runs one request. `baseURL` is `http://host:port`, for the queue URLs in replies; `caller`
    /// is `nil` for an anonymous server, where every action is allowed.
    func handle(target: String?, body: [UInt8], baseURL: String, caller: Caller? = nil) async -> Reply {
        do {
            guard let target, target.hasPrefix("AmazonSQS.") else {
                throw SQSError(
                    "com.amazon.coral.service#UnknownOperationException", query: "InvalidAction",
                    "The request has no X-Amz-Target header of the form AmazonSQS.<Action>.")
            }
            let name = String(target.dropFirst("AmazonSQS.".count))
            guard let action = SQSAction(rawValue: name) else {
                throw SQSError(
                    "com.amazon.coral.service#UnknownOperationException", query: "InvalidAction",
                    "The action \(name) is not valid for this endpoint.")
            }
            let request = try SQSRequest(body: body)
            if let caller {
                // Refused before anything runs: the queue is the one the request names.
                let queue =
                    try (request.string("QueueUrl").map(SQSQueues.queueName(fromURL:)) ?? request.string("QueueName"))
                guard caller.credentials.allows(caller.accessKeyId, action.permission, queue: queue) else {
                    throw SQSError.accessDenied(name, queue: queue)
                }
            }
            var result = try await action.run(request, on: self, baseURL: baseURL)
            if let caller, action == .listQueues, let urls = result["QueueUrls"] as? [String] {
                // A key lists the queues it administers.
                let prefixes = caller.credentials.adminPrefixes(caller.accessKeyId)
                let visible = urls.filter { url in prefixes.contains { SQSQueues.queueName(fromURL: url).hasPrefix($0) }
                }
                result["QueueUrls"] = visible.isEmpty ? nil : visible
            }
            return Reply(status: 200, body: SQSResponse.encode(result))
        } catch let error as SQSError {
            return Self.reply(error)
        } catch {
            return Self.reply(SQSQueues.mapped(error))
        }
    }

    static func reply(_ error: SQSError) -> Reply {
        Reply(
            status: error.status, body: SQSResponse.error(error),
            queryError: error.queryCode.map { "\($0);\(error.senderFault ? "Sender" : "Receiver")" })
    }

    private func url(_ name: String, _ baseURL: String) -> String { "\(baseURL)/\(SQSQueues.accountID)/\(name)" }

    // MARK: The actions (see ``SQSAction``)

    func createQueue(_ request: SQSRequest, baseURL: String) async throws -> [String: Any] {
        let name = try request.requiredString("QueueName")
        let created = try await queues.createQueue(name: name, attributes: try request.stringMap("Attributes") ?? [:])
        return ["QueueUrl": url(created, baseURL)]
    }

    func getQueueURL(_ request: SQSRequest, baseURL: String) async throws -> [String: Any] {
        let name = try await queues.getQueueURL(name: try request.requiredString("QueueName"))
        return ["QueueUrl": url(name, baseURL)]
    }

    func deleteQueue(_ request: SQSRequest) async throws -> [String: Any] {
        try await queues.deleteQueue(url: try request.requiredString("QueueUrl"))
        return [:]
    }

    func purgeQueue(_ request: SQSRequest) async throws -> [String: Any] {
        try await queues.purgeQueue(url: try request.requiredString("QueueUrl"))
        return [:]
    }

    func getQueueAttributes(_ request: SQSRequest) async throws -> [String: Any] {
        let attributes = try await queues.getQueueAttributes(
            url: try request.requiredString("QueueUrl"), names: try request.stringList("AttributeNames") ?? [])
        return attributes.isEmpty ? [:] : ["Attributes": attributes]
    }

    func setQueueAttributes(_ request: SQSRequest) async throws -> [String: Any] {
        try await queues.setQueueAttributes(
            url: try request.requiredString("QueueUrl"), attributes: try request.stringMap("Attributes") ?? [:])
        return [:]
    }

    func listDeadLetterSourceQueues(_ request: SQSRequest, baseURL: String) async throws -> [String: Any] {
        let sources = try await queues.listDeadLetterSourceQueues(url: try request.requiredString("QueueUrl"))
        return ["queueUrls": sources.map { url($0, baseURL) }]
    }

    func sendMessage(_ request: SQSRequest) async throws -> [String: Any] {
        let prepared = try await queues.prepare(
            url: try request.requiredString("QueueUrl"), input: try SQSQueues.SendInput(request))
        try await queues.send(prepared.message, to: prepared.queue, delay: prepared.delay)
        return sent(prepared.message)
    }

    func deleteMessage(_ request: SQSRequest) async throws -> [String: Any] {
        try await queues.delete(
            url: try request.requiredString("QueueUrl"), handle: try request.requiredString("ReceiptHandle"))
        return [:]
    }

    func deleteMessageBatch(_ request: SQSRequest) async throws -> [String: Any] {
        let url = try request.requiredString("QueueUrl")
        return try await batch(request, action: "Delete") { entry in
            try await queues.delete(url: url, handle: try entry.requiredString("ReceiptHandle"))
            return [:]
        }
    }

    func changeMessageVisibility(_ request: SQSRequest) async throws -> [String: Any] {
        try await queues.changeVisibility(
            url: try request.requiredString("QueueUrl"), handle: try request.requiredString("ReceiptHandle"),
            timeout: try requiredInt(request, "VisibilityTimeout"))
        return [:]
    }

    func changeMessageVisibilityBatch(_ request: SQSRequest) async throws -> [String: Any] {
        let url = try request.requiredString("QueueUrl")
        return try await batch(request, action: "ChangeMessageVisibility") { entry in
            try await queues.changeVisibility(
                url: url, handle: try entry.requiredString("ReceiptHandle"),
                timeout: try requiredInt(entry, "VisibilityTimeout"))
            return [:]
        }
    }

    private func requiredInt(_ request: SQSRequest, _ name: String) throws(SQSError) -> Int {
        guard let value = try request.int(name) else { throw .missingParameter(name) }
        return value
    }

    private func sent(_ message: SQSMessage) -> [String: Any] {
        var result: [String: Any] = ["MessageId": message.messageID, "MD5OfMessageBody": message.md5OfBody]
        if let md5 = message.md5OfAttributes { result["MD5OfMessageAttributes"] = md5 }
        return result
    }

    func listQueues(_ request: SQSRequest, baseURL: String) async throws -> [String: Any] {
        let names = await queues.listQueues(prefix: try request.string("QueueNamePrefix"))
        let maxResults = try request.int("MaxResults")
        if let maxResults, !(1...1_000).contains(maxResults) {
            throw SQSError.invalidParameterValue(
                "Value \(maxResults) for parameter MaxResults is invalid. Reason: Must be between 1 and 1000.")
        }
        var start = 0
        if let token = try request.string("NextToken") {
            guard let decoded = Int(token), decoded >= 0 else {
                throw SQSError.invalidParameterValue("Invalid NextToken value.")
            }
            start = min(decoded, names.count)
        }
        let limit = maxResults ?? 1_000
        let page = names[start..<min(names.count, start + limit)]
        var result: [String: Any] = [:]
        if !page.isEmpty { result["QueueUrls"] = page.map { url($0, baseURL) } }
        if maxResults != nil, start + limit < names.count { result["NextToken"] = String(start + limit) }
        return result
    }

    /// The checks every batch action makes before it runs any entry: 1 to 10 entries, distinct
    /// ids of at most 80 alphanumeric characters, hyphens and underscores.
    private func entries(_ request: SQSRequest, action: String) throws(SQSError) -> [(id: String, entry: SQSRequest)] {
        let entries = try request.objectList("Entries") ?? []
        guard !entries.isEmpty else {
            throw SQSError(
                "EmptyBatchRequest", query: "AWS.SimpleQueueService.EmptyBatchRequest",
                "There should be at least one \(action)MessageBatchRequestEntry in the request.")
        }
        guard entries.count <= 10 else {
            throw SQSError(
                "TooManyEntriesInBatchRequest", query: "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
                "Maximum number of entries per request are 10. You have sent \(entries.count).")
        }
        var seen: Set<String> = []
        var result: [(id: String, entry: SQSRequest)] = []
        for entry in entries {
            let id = try entry.requiredString("Id")
            guard (1...80).contains(id.count),
                id.unicodeScalars.allSatisfy({
                    $0.isASCII && (CharacterSet.alphanumerics.contains($0) || $0 == "-" || $0 == "_")
                })
            else {
                throw SQSError(
                    "InvalidBatchEntryId", query: "AWS.SimpleQueueService.InvalidBatchEntryId",
                    "A batch entry id can only contain alphanumeric characters, hyphens and underscores. "
                        + "It can be at most 80 letters long.")
            }
            guard seen.insert(id).inserted else {
                throw SQSError(
                    "BatchEntryIdsNotDistinct", query: "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
                    "Id \(id) repeated.")
            }
            result.append((id, entry))
        }
        return result
    }

    /// Runs each entry on its own: one entry's failure is reported in `Failed` and does not stop
    /// the others.
    private func batch(
        _ request: SQSRequest, action: String, _ body: (SQSRequest) async throws -> [String: Any]
    ) async throws -> [String: Any] {
        var successful: [[String: Any]] = []
        var failed: [[String: Any]] = []
        for (id, entry) in try entries(request, action: action) {
            do {
                var result = try await body(entry)
                result["Id"] = id
                successful.append(result)
            } catch {
                failed.append(Self.failure(id, error))
            }
        }
        return ["Successful": successful, "Failed": failed]
    }

    /// A batch entry's `Failed` element.
    private static func failure(_ id: String, _ error: any Error) -> [String: Any] {
        let error = SQSQueues.mapped(error)
        return ["Id": id, "SenderFault": error.senderFault, "Code": error.batchCode, "Message": error.message]
    }

    func sendBatch(_ request: SQSRequest) async throws -> [String: Any] {
        let url = try request.requiredString("QueueUrl")
        let entries = try entries(request, action: "Send")
        // The whole batch counts against the size limit, as in SQS.
        var total = 0
        var prepared:
            [(
                id: String,
                result: Result<(queue: SQSQueues.Queue, message: SQSMessage, delay: Int, size: Int), SQSError>
            )] = []
        for (id, entry) in entries {
            do {
                let one = try await queues.prepare(url: url, input: try SQSQueues.SendInput(entry))
                total += one.size
                prepared.append((id, .success(one)))
            } catch {
                // A missing queue fails the whole request; a bad entry only itself.
                if error.type == "QueueDoesNotExist" { throw error }
                prepared.append((id, .failure(error)))
            }
        }
        let limit = 1_048_576
        guard total <= limit else {
            throw SQSError(
                "BatchRequestTooLong", query: "AWS.SimpleQueueService.BatchRequestTooLong",
                "Batch requests cannot be longer than \(limit) bytes. You have sent \(total) bytes.")
        }
        var successful: [[String: Any]] = []
        var failed: [[String: Any]] = []
        for (id, result) in prepared {
            do {
                let one = try result.get()
                try await queues.send(one.message, to: one.queue, delay: one.delay)
                var reply = sent(one.message)
                reply["Id"] = id
                successful.append(reply)
            } catch {
                failed.append(Self.failure(id, error))
            }
        }
        return ["Successful": successful, "Failed": failed]
    }

    func receive(_ request: SQSRequest) async throws -> [String: Any] {
        let url = try request.requiredString("QueueUrl")
        let systemNames = Set(
            (try request.stringList("AttributeNames") ?? [])
                + (try request.stringList("MessageSystemAttributeNames") ?? []))
        let attributeNames = try request.stringList("MessageAttributeNames") ?? []
        let wait = try request.int("WaitTimeSeconds")
        let max = try request.int("MaxNumberOfMessages") ?? 1
        let visibilityTimeout = try request.int("VisibilityTimeout")
        let received = try await queues.receive(
            url: url, max: max, wait: wait, visibilityTimeout: visibilityTimeout)
        let all = systemNames.contains("All")
        let messages = received.map { one -> [String: Any] in
            var message: [String: Any] = [
                "MessageId": one.message.messageID, "ReceiptHandle": one.handle, "MD5OfBody": one.message.md5OfBody,
                "Body": one.message.body,
            ]
            var system: [String: String] = [:]
            func milliseconds(_ date: Date) -> String {
                String(Int64((date.timeIntervalSince1970 * 1000).rounded(.down)))
            }
            if all || systemNames.contains("ApproximateReceiveCount") {
                system["ApproximateReceiveCount"] = String(one.attempt)
            }
            if all || systemNames.contains("SentTimestamp") { system["SentTimestamp"] = milliseconds(one.sentAt) }
            if all || systemNames.contains("SenderId") { system["SenderId"] = SQSQueues.accountID }
            if all || systemNames.contains("ApproximateFirstReceiveTimestamp") {
                system["ApproximateFirstReceiveTimestamp"] = milliseconds(one.firstReceivedAt ?? Date())
            }
            if !system.isEmpty { message["Attributes"] = system }
            let selected = one.message.attributes.filter { name, _ in
                attributeNames.contains { wanted in
                    wanted == "All" || wanted == ".*" || wanted == name
                        || (wanted.hasSuffix(".*") && name.hasPrefix(String(wanted.dropLast(1))))
                }
            }
            if !selected.isEmpty {
                message["MessageAttributes"] = SQSResponse.attributes(selected)
                message["MD5OfMessageAttributes"] = SQSMessageAttribute.md5(of: selected)
            }
            return message
        }
        return messages.isEmpty ? [:] : ["Messages": messages]
    }
}
