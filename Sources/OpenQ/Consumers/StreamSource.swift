// Where a stream's iterations get their anonymous subscription.

/// Where a ``MessageStream``'s iterations get their anonymous subscription: the one created by
/// `subscribe()` while it lives, a fresh one (at the latest message) once an iteration ended it.
@usableFromInline
final class StreamSource: Sendable {
    private let handle: LockedValueBox<SubscriptionHandle>
    /// The configuration of the stream's subscriptions; later ones start at the latest message.
    private let configuration: SubscriptionConfiguration

    init(_ handle: SubscriptionHandle, configuration: SubscriptionConfiguration) {
        self.handle = LockedValueBox(handle)
        var configuration = configuration
        configuration.start = .latest
        self.configuration = configuration
    }

    /// The subscription of the latest iteration (or of `subscribe()`).
    var current: SubscriptionHandle { handle.withLock { $0 } }

    /// The subscription a new iteration reads: the current one while it exists, otherwise a new
    /// one with the same configuration starting at the latest message. When the topic no longer
    /// accepts subscriptions, the ended one (the iteration then ends at once).
    ///
    /// Runs under this source's lock, so that iterations started together share one subscription.
    /// Lock order: this lock, then the topic's (nothing takes them the other way round).
    @usableFromInline
    func handleForIteration() -> SubscriptionHandle {
        handle.withLock { handle in
            let runtime = handle.runtime
            let id = handle.id
            guard runtime.subscription(id) == nil else { return handle }
            guard let fresh = try? SubscriptionHandle.anonymous(on: runtime, configuration: configuration) else {
                return handle
            }
            handle = fresh
            return fresh
        }
    }
}
