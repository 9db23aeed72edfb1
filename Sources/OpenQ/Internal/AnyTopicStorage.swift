/// What the broker actor needs of a topic without knowing its payload type.
protocol AnyTopicStorage: AnyObject, Sendable {
    var name: String { get }
    var payloadType: Any.Type { get }
    var configuration: TopicConfiguration { get }
    var deadLetterTopicName: String? { get }
    func statistics() -> TopicStatistics
    func ensureSubscription(_ name: String, configuration: SubscriptionConfiguration) throws
    func beginShutdown()
    func finish()
    func waitUntilIdle() async
    /// Moves up to `max` messages of the dead-letter subscription back to their source
    /// subscriptions; returns how many moved.
    func redrive(max: Int, resolve: (String) -> (any AnyTopicStorage)?) -> Int
}

extension TopicStorage: AnyTopicStorage {
    var payloadType: Any.Type { Payload.self }
    var deadLetterTopicName: String? { deadLetterTarget?.name }

    func ensureSubscription(_ name: String, configuration: SubscriptionConfiguration) throws {
        _ = try withState { state, now in
            (state.addSubscription(name: name, configuration: configuration, isAnonymous: false, now: now), Effects())
        }.get()
    }

    func beginShutdown() {
        withState { state, _ in ((), state.beginShutdown()) }
    }

    func finish() {
        withState { state, _ in ((), state.finish()) }
        cancelTimer()
    }

    func waitUntilIdle() async {
        let waiter = MessageID.allocate()
        await withTaskCancellationHandler {
            await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
                let resumeNow = state.withLock { $0.addIdleWaiter(waiter, continuation) }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            state.withLock { $0.removeIdleWaiter(waiter) }?.resume()
        }
    }

    func redrive(max: Int, resolve: (String) -> (any AnyTopicStorage)?) -> Int {
        guard let id = state.withLock({ $0.subscriptionID(named: DeadLetterPolicy.subscriptionName) }) else { return 0 }
        let messages = withState { state, now in state.drain(id, max: max, now: now) }
        var bySource: [String: [String: [Message<Payload>]]] = [:]
        var unroutable: [Message<Payload>] = []
        for message in messages {
            guard let topic = message.headers[MessageHeader.sourceTopic],
                let subscription = message.headers[MessageHeader.sourceSubscription]
            else {
                unroutable.append(message)
                continue
            }
            bySource[topic, default: [:]][subscription, default: []].append(message)
        }
        var moved = 0
        for (topic, groups) in bySource {
            for (subscription, group) in groups {
                guard let source = resolve(topic) as? TopicStorage<Payload>,
                    let sourceID = source.state.withLock({ $0.subscriptionID(named: subscription) }),
                    (try? source.withState({ state, now in state.enqueue(group, into: sourceID, now: now) }).get())
                        != nil
                else {
                    unroutable += group
                    continue
                }
                moved += group.count
            }
        }
        if !unroutable.isEmpty {
            logger.warning(
                "Kept dead letters whose source topic or subscription no longer exists",
                metadata: ["deadLetterTopic": "\(name)", "count": "\(unroutable.count)"]
            )
            withState { state, now in state.restore(unroutable, into: id, now: now) }
        }
        return moved
    }
}
