// OpenQ's errors as the SQS errors a client should see.

import Foundation
import Logging
import OpenQ

extension SQSQueues {
    /// An OpenQ error as the SQS error a client should see.
    static func mapped(_ error: any Error) -> SQSError {
        if let error = error as? SQSError { return error }
        guard let error = error as? OpenQError else { return .internalFailure("\(error)") }
        switch error.code {
        case .topicNotFound: return .queueDoesNotExist(error.message)
        case .topicFull:
            return SQSError("OverLimit", "The queue holds its maximum number of messages: \(error.message)")
        case .invalidConfiguration, .invalidName: return .invalidParameterValue(error.message)
        case .shutDown: return SQSError("ServiceUnavailable", error.message, status: 503, senderFault: false)
        case .storeFull, .storeReadOnly, .storageFailed:
            // The store cannot commit for now (and the broker goes on when it can): SDKs retry a 503.
            return SQSError("ServiceUnavailable", error.message, status: 503, senderFault: false)
        default: return .internalFailure(error.message)
        }
    }
}
