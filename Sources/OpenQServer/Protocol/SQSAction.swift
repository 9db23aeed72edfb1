// The SQS actions the server answers: each with who may call it and what runs it, in one place.

/// One SQS action of the AWS JSON 1.0 protocol (`X-Amz-Target: AmazonSQS.<rawValue>`), with the
/// permission it needs and the handler that runs it. Adding an action is one edit here: a case,
/// its ``permission`` and its branch of ``run(_:on:baseURL:)`` (the compiler asks for both).
///
/// | permission | actions |
/// | --- | --- |
/// | `send` | SendMessage, SendMessageBatch |
/// | `consume` | ReceiveMessage, DeleteMessage, DeleteMessageBatch, ChangeMessageVisibility, ChangeMessageVisibilityBatch |
/// | any of the three on the queue | GetQueueUrl, GetQueueAttributes |
/// | `admin` | CreateQueue, DeleteQueue, SetQueueAttributes, PurgeQueue, ListQueues, ListDeadLetterSourceQueues |
enum SQSAction: String, CaseIterable, Sendable {
    case createQueue = "CreateQueue"
    case getQueueUrl = "GetQueueUrl"
    case listQueues = "ListQueues"
    case deleteQueue = "DeleteQueue"
    case getQueueAttributes = "GetQueueAttributes"
    case setQueueAttributes = "SetQueueAttributes"
    case sendMessage = "SendMessage"
    case sendMessageBatch = "SendMessageBatch"
    case receiveMessage = "ReceiveMessage"
    case deleteMessage = "DeleteMessage"
    case deleteMessageBatch = "DeleteMessageBatch"
    case changeMessageVisibility = "ChangeMessageVisibility"
    case changeMessageVisibilityBatch = "ChangeMessageVisibilityBatch"
    case purgeQueue = "PurgeQueue"
    case listDeadLetterSourceQueues = "ListDeadLetterSourceQueues"

    /// Who may call an action.
    enum Permission: Equatable, Sendable {
        /// A key with this group on the queue; for an action on no queue (`ListQueues`), with the
        /// group on any prefix (`ListQueues` then lists the queues under the key's admin prefixes).
        case group(SQSCredentials.ActionGroup)
        /// A key with any group on the queue: a worker that may only consume still looks its
        /// queue up and reads its attributes.
        case anyGroup
    }

    /// What the action needs of the caller's key.
    var permission: Permission {
        switch self {
        case .sendMessage, .sendMessageBatch: .group(.send)
        case .receiveMessage, .deleteMessage, .deleteMessageBatch, .changeMessageVisibility,
            .changeMessageVisibilityBatch:
            .group(.consume)
        case .getQueueUrl, .getQueueAttributes: .anyGroup
        case .createQueue, .listQueues, .deleteQueue, .setQueueAttributes, .purgeQueue, .listDeadLetterSourceQueues:
            .group(.admin)
        }
    }

    /// Runs the action on the server's queues; `baseURL` is the server's, for queue URLs.
    func run(_ request: SQSRequest, on actions: SQSActions, baseURL: String) async throws -> [String: Any] {
        switch self {
        case .createQueue: try await actions.createQueue(request, baseURL: baseURL)
        case .getQueueUrl: try await actions.getQueueURL(request, baseURL: baseURL)
        case .listQueues: try await actions.listQueues(request, baseURL: baseURL)
        case .deleteQueue: try await actions.deleteQueue(request)
        case .getQueueAttributes: try await actions.getQueueAttributes(request)
        case .setQueueAttributes: try await actions.setQueueAttributes(request)
        case .sendMessage: try await actions.sendMessage(request)
        case .sendMessageBatch: try await actions.sendBatch(request)
        case .receiveMessage: try await actions.receive(request)
        case .deleteMessage: try await actions.deleteMessage(request)
        case .deleteMessageBatch: try await actions.deleteMessageBatch(request)
        case .changeMessageVisibility: try await actions.changeMessageVisibility(request)
        case .changeMessageVisibilityBatch: try await actions.changeMessageVisibilityBatch(request)
        case .purgeQueue: try await actions.purgeQueue(request)
        case .listDeadLetterSourceQueues: try await actions.listDeadLetterSourceQueues(request, baseURL: baseURL)
        }
    }
}
