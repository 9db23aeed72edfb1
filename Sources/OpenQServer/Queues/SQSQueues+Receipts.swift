// Receipt handles a client holds: DeleteMessage, ChangeMessageVisibility, and forgetting stale ones.

import Foundation
import Logging
import OpenQ

extension SQSQueues {
    /// Forgets receipts whose visibility ended more than a minute ago (their messages are
    /// visible again, or were received again), once the table doubled since the last pass.
    func pruneIfNeeded() {
        guard receipts.count > Swift.max(1_024, receiptsAtLastPrune * 2) else { return }
        let cutoff = clock.now - .seconds(60)
        for (handle, receipt) in receipts where receipt.visibleAt < cutoff {
            receipts[handle] = nil
            let sequence = receipt.delivery.message.sequenceNumber
            if latestReceipt[receipt.queue]?[sequence] == handle { latestReceipt[receipt.queue]?[sequence] = nil }
        }
        receiptsAtLastPrune = receipts.count
    }

    func forget(_ handle: String) {
        guard let receipt = receipts.removeValue(forKey: handle) else { return }
        let sequence = receipt.delivery.message.sequenceNumber
        if latestReceipt[receipt.queue]?[sequence] == handle { latestReceipt[receipt.queue]?[sequence] = nil }
    }

    /// `DeleteMessage`: a stale handle (the message was deleted, or its visibility ended) succeeds
    /// without deleting anything, as SQS answers; a handle this server did not make for this
    /// queue is `ReceiptHandleIsInvalid`.
    func delete(url: String, handle: String) async throws(SQSError) {
        let (name, _) = try queue(fromURL: url)
        guard signer.isValid(handle, queue: name) else { throw .receiptHandleIsInvalid(handle) }
        guard let receipt = receipts[handle] else { return }
        forget(handle)
        do {
            try await receipt.delivery.ack()
        } catch let error as OpenQError
            where error.code == .receiptExpired || error.code == .receiptAlreadySettled
            || error.code == .subscriptionNotFound
        {
            return
        } catch {
            throw Self.mapped(error)
        }
    }

    /// `ChangeMessageVisibility`: 0 makes the message visible at once (its next receive counts),
    /// more sets its visibility to that many seconds from now. A stale handle is
    /// `MessageNotInflight`.
    func changeVisibility(url: String, handle: String, timeout: Int) async throws(SQSError) {
        let (name, _) = try queue(fromURL: url)
        guard signer.isValid(handle, queue: name) else { throw .receiptHandleIsInvalid(handle) }
        guard (0...43_200).contains(timeout) else {
            throw .invalidParameterValue(
                "Value \(timeout) for parameter VisibilityTimeout is invalid. Reason: Must be between 0 and 43200.")
        }
        guard let receipt = receipts[handle] else { throw .messageNotInflight() }
        do {
            if timeout == 0 {
                forget(handle)
                try await receipt.delivery.release()
            } else {
                try await receipt.delivery.extendVisibility(by: .seconds(timeout))
                receipts[handle]?.visibleAt = clock.now + .seconds(timeout)
            }
        } catch let error as OpenQError
            where error.code == .receiptExpired || error.code == .receiptAlreadySettled
            || error.code == .subscriptionNotFound
        {
            forget(handle)
            throw .messageNotInflight()
        } catch {
            throw Self.mapped(error)
        }
    }
}
