// The credentials file: keys, secrets, and permissions per action group and queue prefix.

import Foundation

/// The keys the server accepts, and what each may do.
///
/// The credentials file is JSON, exactly:
///
/// ```json
/// {"credentials": [{"accessKeyId": "AKIDEXAMPLE", "secretAccessKey": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
///   "permissions": [{"queuePrefix": "", "actions": ["send", "consume", "admin"]}]}]}
/// ```
///
/// A permission grants groups of actions on the queues whose names start with `queuePrefix` (`""`
/// for every queue):
///
/// | group | actions |
/// | --- | --- |
/// | `send` | SendMessage, SendMessageBatch |
/// | `consume` | ReceiveMessage, DeleteMessage, DeleteMessageBatch, ChangeMessageVisibility, ChangeMessageVisibilityBatch |
/// | any group | GetQueueUrl, GetQueueAttributes (a worker looks its queue up) |
/// | `admin` | CreateQueue, DeleteQueue, SetQueueAttributes, PurgeQueue, ListDeadLetterSourceQueues, ListQueues (it lists the queues the key administers), `GET /metrics` (with prefix `""`) |
public struct SQSCredentials: Sendable, Codable, Equatable {
    /// One access key.
    public struct Credential: Sendable, Codable, Equatable {
        /// The access key id clients sign with.
        public var accessKeyId: String
        /// Its secret.
        public var secretAccessKey: String
        /// What the key may do.
        public var permissions: [Permission]

        /// A key with its permissions.
        public init(accessKeyId: String, secretAccessKey: String, permissions: [Permission]) {
            self.accessKeyId = accessKeyId
            self.secretAccessKey = secretAccessKey
            self.permissions = permissions
        }
    }

    /// Groups of actions on the queues whose names start with a prefix.
    public struct Permission: Sendable, Codable, Equatable {
        /// The queue-name prefix; `""` for every queue.
        public var queuePrefix: String
        /// The groups granted.
        public var actions: [ActionGroup]

        /// A permission.
        public init(queuePrefix: String, actions: [ActionGroup]) {
            self.queuePrefix = queuePrefix
            self.actions = actions
        }
    }

    /// The three groups of SQS actions a permission grants.
    public enum ActionGroup: String, Sendable, Codable, CaseIterable {
        /// SendMessage, SendMessageBatch.
        case send
        /// ReceiveMessage, DeleteMessage(Batch), ChangeMessageVisibility(Batch).
        case consume
        /// Every other action.
        case admin

        /// The group an SQS action belongs to: `send`, `consume`, or `admin` for every other action
        /// (`GetQueueUrl` and `GetQueueAttributes`, which a key with any group on the queue may
        /// call, are in `admin` here).
        public init(action: String) {
            switch SQSAction(rawValue: action)?.permission {
            case .group(let group): self = group
            case .anyGroup, nil: self = .admin
            }
        }
    }

    /// The keys.
    public var credentials: [Credential]

    /// Keys as given.
    public init(credentials: [Credential]) {
        self.credentials = credentials
    }

    /// Reads a credentials file.
    /// - Throws: ``SQSServerError`` naming the file and what is wrong with it (unreadable,
    ///   not the documented JSON, an empty or repeated access key id, an empty secret).
    public init(contentsOf path: String) throws {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw SQSServerError("Cannot read the credentials file \(path): \(error.localizedDescription)")
        }
        do {
            self = try JSONDecoder().decode(SQSCredentials.self, from: data)
        } catch {
            throw SQSServerError(
                "The credentials file \(path) is not {\"credentials\": [{\"accessKeyId\", \"secretAccessKey\", "
                    + "\"permissions\": [{\"queuePrefix\", \"actions\": [\"send\"|\"consume\"|\"admin\"]}]}]}: \(error)"
            )
        }
        try validate(path)
    }

    func validate(_ source: String) throws {
        var seen: Set<String> = []
        for credential in credentials {
            guard !credential.accessKeyId.isEmpty, !credential.secretAccessKey.isEmpty else {
                throw SQSServerError("The credentials in \(source) need a non-empty accessKeyId and secretAccessKey.")
            }
            guard seen.insert(credential.accessKeyId).inserted else {
                throw SQSServerError("The access key id \(credential.accessKeyId) appears twice in \(source).")
            }
        }
    }

    func secret(of accessKeyId: String) -> String? {
        credentials.first { $0.accessKeyId == accessKeyId }?.secretAccessKey
    }

    /// Whether `accessKeyId` may run `action` on the queue `queue` (`nil` for actions on no queue).
    func allows(_ accessKeyId: String, _ action: String, queue: String?) -> Bool {
        allows(accessKeyId, SQSAction(rawValue: action)?.permission ?? .group(.admin), queue: queue)
    }

    /// Whether `accessKeyId` has the permission `needed` on the queue `queue`; `nil` for an action
    /// on no queue, which a permission with any prefix grants (pass `""` to require a permission on
    /// every queue, as `GET /metrics` does).
    func allows(_ accessKeyId: String, _ needed: SQSAction.Permission, queue: String?) -> Bool {
        guard let credential = credentials.first(where: { $0.accessKeyId == accessKeyId }) else { return false }
        return credential.permissions.contains { permission in
            let granted: Bool =
                switch needed {
                case .group(let group): permission.actions.contains(group)
                case .anyGroup: !permission.actions.isEmpty
                }
            return granted && (queue.map { $0.hasPrefix(permission.queuePrefix) } ?? true)
        }
    }

    /// The prefixes under which `accessKeyId` administers queues (what `ListQueues` shows it).
    func adminPrefixes(_ accessKeyId: String) -> [String] {
        credentials.first { $0.accessKeyId == accessKeyId }?.permissions
            .filter { $0.actions.contains(.admin) }.map(\.queuePrefix) ?? []
    }
}
