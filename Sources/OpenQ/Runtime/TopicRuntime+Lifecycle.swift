// A topic's life as the broker drives it: its subscriptions for the broker, shutdown, finish.

/// The broker's control-plane operations on a topic: the subscriptions it creates (a dead-letter
/// topic's), shutdown and finish.
extension TopicRuntime {
    /// True when the topic carries `type`.
    func carries(_ type: Any.Type) -> Bool { ObjectIdentifier(payloadType) == ObjectIdentifier(type) }

    var deadLetterTopicName: String? { deadLetterTarget?.name }

    /// Creates the named subscription, or finds it when it exists with the same configuration.
    @discardableResult
    func ensureSubscription(_ name: String, configuration: SubscriptionConfiguration) throws(OpenQError)
        -> SubscriptionID
    {
        try withState { state, now in
            (state.addSubscription(name: name, configuration: configuration, isAnonymous: false, now: now), Effects())
        }.get()
    }

    /// Stops publishing; consumers go on until the topic is idle or `deadline` passes.
    func beginShutdown(deadline: Duration) {
        withState { state, _ in ((), state.beginShutdown(deadline: deadline)) }
    }

    func finish() {
        withState { state, _ in ((), state.finish()) }
        cancelTimer()
        shared?.wakeAll()
    }

    func waitUntilIdle() async {
        let waiter = MessageID.allocate()
        await withTaskCancellationHandler {
            await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
                let resumeNow = state.withLock { $0.addIdleWaiter(waiter, continuation) }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            state.withLock { $0.cancelIdleWaiter(waiter) }?.resume()
        }
    }
}
