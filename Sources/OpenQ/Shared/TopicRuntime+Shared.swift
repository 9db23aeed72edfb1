// A shared topic's operations: each one a call to its engine, the database deciding; waits poll it.

import Logging

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// The operations of a topic on a shared backend (``SharedBackend``). The public shells reach them
/// through the same entry points as an in-process topic's (``TopicRuntime+Operations``): a shared
/// topic counts as durable there (`isDurable`), so that the in-memory hot path tests one flag and
/// never this.
///
/// The local ``TopicStateMachine`` of a shared topic holds its topology only (the subscriptions this
/// process declared, its consumers, whether the topic is open); messages never enter it.
extension TopicRuntime {
    /// The error of an operation a shared backend cannot do (yet).
    func unsupportedOnShared(_ operation: String, _ why: String) -> OpenQError {
        OpenQError(
            .unsupportedOperation,
            "\(operation) is not available on topic '\(name)', which a shared backend (PostgreSQL) keeps: \(why)")
    }

    // MARK: Publishing

    /// Publishes on a shared topic: the payloads are encoded, the capacity is checked against the
    /// counts at most ``SharedTopic/countsMaxAge`` old, and the call returns once the database
    /// committed the messages with a copy for every subscription.
    nonisolated(nonsending) func publishShared(_ request: PublishRequest, _ shared: SharedTopic) async throws
        -> PublishReceipt
    {
        try refuseUnlessOpen()
        let record = request.record
        var messages: [SharedMessage] = []
        messages.reserveCapacity(record.count)
        do {
            for index in 0..<record.count {
                messages.append(
                    SharedMessage(
                        payload: try shared.encode(record, index), headers: record.headers, priority: record.priority,
                        delay: request.delay))
            }
        } catch {
            throw OpenQError(
                .encodingFailed,
                "A payload of topic '\(name)' could not be encoded, so nothing was published: \(error)")
        }
        try await waitForRoom(record.count, shared)
        let published = try await shared.engine.publish(messages)
        shared.published(record.count)
        return PublishReceipt(
            firstID: published.firstID, firstSequenceNumber: published.firstSequence, count: published.count)
    }

    /// Throws ``OpenQError/Code/shutDown`` once the topic stopped taking publishes.
    private func refuseUnlessOpen() throws(OpenQError) {
        guard state.withLock({ $0.isOpen }) else { throw OpenQError.shutDown("Topic '\(name)'") }
    }

    /// The capacity on a shared topic: judged by the counts of at most ``SharedTopic/countsMaxAge``
    /// ago (an exact count across processes would need one hot row every publish writes). Under
    /// `reject` a full subscription fails the publish; under `suspend` the publish waits, looking
    /// again every poll interval; the drop policies are not enforced (nothing is dropped).
    private nonisolated(nonsending) func waitForRoom(_ count: Int, _ shared: SharedTopic) async throws {
        let configuration = self.configuration
        guard configuration.overflow == .reject || configuration.overflow == .suspend else { return }
        while true {
            var (counts, isStale, _) = shared.snapshot()
            if isStale { counts = try await shared.refreshCounts() }
            let full = counts.first { $0.value.total + count > configuration.capacity && $0.value.total > 0 }
            guard let full else { return }
            if configuration.overflow == .reject {
                throw OpenQError(
                    .topicFull,
                    "Topic '\(name)' is full: subscription '\(full.key)' holds \(full.value.total) of "
                        + "\(configuration.capacity) messages (counted at most \(SharedTopic.countsMaxAge) ago)")
            }
            try await Task.sleep(for: shared.pollInterval)
            try refuseUnlessOpen()
            _ = try await shared.refreshCounts()
        }
    }

    // MARK: Receiving

    /// Claims up to `max` messages of a subscription, waiting up to `timeout` (`nil`: until some
    /// come) for the first: it claims, and when nothing was visible waits for a local publish or
    /// the poll interval, then claims again. An automatic subscription's claims are acknowledged
    /// before they are handed over (at most once).
    nonisolated(nonsending) func receiveShared(
        _ id: SubscriptionID, consumer: ConsumerID?, max: Int, waitingUpTo timeout: Duration?,
        visibilityTimeout: Duration?, subscriptionName: String, _ shared: SharedTopic
    ) async throws -> [HandedMessage] {
        let deadline = timeout.map { ContinuousClock.now + $0 }
        while true {
            try Task.checkCancellation()
            guard let row = shared.row(of: id), let configuration = subscription(id)?.configuration else {
                throw state.withLock { $0.isFinished }
                    ? OpenQError.shutDown("Topic '\(name)'")
                    : OpenQError.subscriptionNotFound(subscriptionName, topic: name)
            }
            guard !state.withLock({ $0.isFinished }) else { throw OpenQError.shutDown("Topic '\(name)'") }
            let generation = shared.wakeGeneration
            let mode = configuration.acknowledgement
            let visibility = mode.tracksDeliveries ? visibilityTimeout ?? mode.visibilityTimeout : .seconds(30)
            let claims = try await shared.engine.claim(subscription: row, max: max, visibilityTimeout: visibility)
            if !claims.isEmpty {
                let handed = try await hand(
                    claims, row: row, consumer: consumer, tracked: mode.tracksDeliveries, visibility: visibility, shared
                )
                if !handed.isEmpty { return handed }
                continue
            }
            let now = ContinuousClock.now
            if let deadline, now >= deadline { return [] }
            let wait = deadline.map { Swift.min(shared.pollInterval, $0 - now) } ?? shared.pollInterval
            await shared.wait(after: generation, upTo: wait)
        }
    }

    /// Claims as deliveries: each payload decoded, each tracked claim remembered under a tag; an
    /// automatic subscription's claims acknowledged first. A payload that no longer decodes is
    /// given back with a minute's delay and the reason as its error (its `maxDeliveries` takes it
    /// to the dead-letter topic, which keeps the bytes), and logged.
    private nonisolated(nonsending) func hand(
        _ claims: [SharedClaim], row: Int64, consumer: ConsumerID?, tracked: Bool, visibility: Duration,
        _ shared: SharedTopic
    ) async throws -> [HandedMessage] {
        var decoded: [(SharedClaim, MessageRecord)] = []
        decoded.reserveCapacity(claims.count)
        for claim in claims {
            do {
                decoded.append((claim, try shared.decode(Self.row(of: claim), name)))
            } catch {
                logger.error(
                    "A message's payload did not decode; it is given back and goes to the dead letters after its deliveries",
                    metadata: ["topic": "\(name)", "sequence": "\(claim.sequence)", "error": "\(error)"])
                _ = try? await shared.engine.fail(
                    claim.receipt, delay: .seconds(60), error: "payload did not decode: \(error)", reject: false)
            }
        }
        if !tracked {
            let acked = try await shared.engine.ack(subscription: row, decoded.map(\.0.receipt))
            return decoded.filter { acked.contains($0.0.receipt.sequence) }.map { claim, record in
                HandedMessage(stored: PublishedMessage(record), tag: 0, attempt: claim.attempts)
            }
        }
        let now = ContinuousClock.now
        return decoded.map { claim, record in
            let tag = shared.remember(
                SharedTopic.Claim(
                    receipt: claim.receipt, consumer: consumer, visibilityTimeout: visibility,
                    attempt: claim.attempts, claimedAt: now))
            return HandedMessage(
                stored: PublishedMessage(record), tag: tag, attempt: claim.attempts,
                firstDeliveredAt: claim.firstDeliveredAt)
        }
    }

    /// A claimed message as the stored row a codec's decoder reads; a dead letter's origin comes
    /// from its headers.
    static func row(of claim: SharedClaim) -> StoredMessageRow {
        let headers = claim.headers
        let originSequence = headers[MessageHeader.sourceSequenceNumber].flatMap(UInt64.init)
        let originPublishedAt = headers[MessageHeader.firstPublishedAt].flatMap(Double.init).map {
            Date(timeIntervalSince1970: $0)
        }
        return StoredMessageRow(
            sequence: claim.sequence, id: claim.id.rawValue, payload: claim.payload, headers: headers,
            priority: claim.priority, publishedAt: claim.publishedAt, originTopic: headers[MessageHeader.sourceTopic],
            originSequence: originSequence, originPublishedAt: originPublishedAt)
    }

    /// The consumer loop's take on a shared topic: waits for messages as long as it takes, through
    /// faults of the database (logged, then tried again after the poll interval).
    func waitShared(
        consumer: ConsumerID, max: Int, subscriptionName: String, _ id: SubscriptionID, _ shared: SharedTopic,
        isolation: isolated (any Actor)? = #isolation
    ) async -> WakeResult {
        while true {
            do {
                let handed = try await receiveShared(
                    id, consumer: consumer, max: max, waitingUpTo: nil, visibilityTimeout: nil,
                    subscriptionName: subscriptionName, shared)
                return .messages(DeliveryBatch(handed: handed))
            } catch is CancellationError {
                return .cancelled
            } catch let error as OpenQError where error.code == .shutDown || error.code == .subscriptionNotFound {
                return .finished
            } catch {
                logger.warning(
                    "A consumer could not claim messages; it tries again",
                    metadata: ["topic": "\(name)", "error": "\(error)"])
                do { try await Task.sleep(for: shared.pollInterval) } catch { return .cancelled }
            }
        }
    }

    // MARK: Settling

    /// The claim behind a delivery's tag, or the error a settlement of it gets.
    private func claim(_ tag: UInt64, _ shared: SharedTopic) throws(OpenQError) -> SharedTopic.Claim {
        guard let claim = shared.claim(tag) else {
            throw OpenQError(.receiptAlreadySettled, "The delivery of topic '\(name)' was settled already.")
        }
        if claim.expired { throw expired() }
        return claim
    }

    private func expired() -> OpenQError {
        OpenQError(
            .receiptExpired,
            "The delivery of topic '\(name)' no longer holds its claim: its visibility timeout passed (by the "
                + "database's clock), and the message may be with another consumer now.")
    }

    @usableFromInline
    func ackShared(_ tags: [UInt64], _ shared: SharedTopic) async throws(OpenQError) -> [OpenQError?] {
        var results = [OpenQError?](repeating: nil, count: tags.count)
        var pending: [(index: Int, tag: UInt64, claim: SharedTopic.Claim)] = []
        for (index, tag) in tags.enumerated() where tag != 0 {
            do throws(OpenQError) {
                pending.append((index, tag, try claim(tag, shared)))
            } catch {
                results[index] = error
            }
        }
        for (row, group) in Dictionary(grouping: pending, by: \.claim.receipt.subscription) {
            let acked = try await shared.engine.ack(subscription: row, group.map(\.claim.receipt))
            for (index, tag, claim) in group {
                let held = acked.contains(claim.receipt.sequence)
                shared.settled(tag, held: held)
                if !held { results[index] = expired() }
            }
        }
        return results
    }

    @usableFromInline
    func failShared(
        _ tag: UInt64, retryAfter: Duration?, error: String?, reject: Bool, _ shared: SharedTopic
    ) async throws(OpenQError) {
        guard tag != 0 else { return }
        let claim = try claim(tag, shared)
        let delay =
            retryAfter
            ?? configuration.retryBackoff.delay(afterAttempts: claim.attempt, random: Double.random(in: 0..<1))
        let held = try await shared.engine.fail(claim.receipt, delay: delay, error: error, reject: reject)
        shared.settled(tag, held: held)
        if !held { throw expired() }
    }

    @usableFromInline
    func extendShared(_ tag: UInt64, by duration: Duration, _ shared: SharedTopic) async throws(OpenQError) {
        guard tag != 0 else { return }
        guard duration > .zero else {
            throw OpenQError.invalidConfiguration(
                "extendVisibility(by:) needs a positive duration; it was \(duration).")
        }
        let claim = try claim(tag, shared)
        guard try await shared.engine.extend(claim.receipt, by: duration) else {
            shared.settled(tag, held: false)
            throw expired()
        }
    }

    // MARK: Consumers

    /// A consumer of a shared topic ended: the claims it handed out go back at once (visible now),
    /// those it never handed out without their attempt. Done in the background: the claims run out
    /// by themselves if it never gets there.
    func sharedConsumerEnded(_ consumer: ConsumerID, unhanded: [HandedMessage], _ shared: SharedTopic) {
        let claims = shared.takeClaims(of: consumer)
        guard !claims.isEmpty else { return }
        let unhandedTags = Set(unhanded.map(\.tag))
        Task { [logger, name] in
            do {
                try await shared.engine.unclaim(claims.filter { unhandedTags.contains($0.key) }.map(\.value.receipt))
                for (tag, claim) in claims where !unhandedTags.contains(tag) {
                    _ = try await shared.engine.fail(claim.receipt, delay: .zero, error: nil, reject: false)
                }
            } catch {
                logger.debug(
                    "An ended consumer's claims could not be given back; they come back after their timeout",
                    metadata: ["topic": "\(name)", "error": "\(error)"])
            }
        }
    }

    /// Extends a consumer's claims by their visibility timeout, until `maximum` after each claim.
    func extendSharedLeases(_ consumer: ConsumerID, maximum: Duration, _ shared: SharedTopic) {
        let now = ContinuousClock.now
        let claims = shared.claims(of: consumer).filter { $0.claimedAt + maximum > now }
        guard !claims.isEmpty else { return }
        Task {
            for claim in claims {
                _ = try? await shared.engine.extend(claim.receipt, by: claim.visibilityTimeout)
            }
        }
    }

    // MARK: Subscriptions

    func subscribeShared(
        named name: String, configuration: SubscriptionConfiguration, _ shared: SharedTopic
    ) async throws(OpenQError) -> SubscriptionID {
        guard configuration.start == .latest else {
            throw unsupportedOnShared(
                "A subscription starting at \(configuration.start)",
                "a shared topic keeps no history yet; start at .latest")
        }
        guard configuration.backlog == nil else {
            throw unsupportedOnShared("A subscription's own backlog limit", "the topic's capacity bounds it")
        }
        try refuseUnlessOpen()
        let row = try await shared.engine.subscribe(name: name, configuration: configuration)
        let id = try ensureSubscription(name, configuration: configuration)
        shared.setRow(row, of: id)
        return id
    }

    func unsubscribeShared(_ id: SubscriptionID, _ shared: SharedTopic) async throws(OpenQError) {
        guard let name = subscription(id)?.name else { return }
        _ = try await shared.engine.unsubscribe(name: name)
        removeSubscription(id)
        shared.setRow(nil, of: id)
        shared.wakeAll()
    }

    // MARK: Statistics and drains

    /// The topic's statistics with each subscription's depth, scheduled and in-flight counts from
    /// the database: `counts`, or the last ones read (at most ``SharedTopic/countsMaxAge`` old
    /// when something read them since; a stale snapshot is refreshed in the background).
    func sharedStatistics(_ shared: SharedTopic, counts exact: [String: SharedCounts]? = nil) -> TopicStatistics {
        var statistics = state.withLock { $0.statistics(now: clock.now()) }
        let (snapshot, isStale, published) = shared.snapshot()
        if exact == nil, isStale {
            Task { [weak shared] in _ = try? await shared?.refreshCounts() }
        }
        let counts = exact ?? snapshot
        statistics.published = published
        for index in statistics.subscriptions.indices {
            let found = counts[statistics.subscriptions[index].name] ?? SharedCounts()
            statistics.subscriptions[index].depth = found.waiting
            statistics.subscriptions[index].scheduled = found.scheduled
            statistics.subscriptions[index].inFlight = found.inFlight
            statistics.subscriptions[index].oldestMessageAge = nil
        }
        return statistics
    }

    /// Waits until the database holds nothing for the subscription, looking every poll interval.
    func waitUntilDrainedShared(_ id: SubscriptionID, _ shared: SharedTopic) async throws {
        while true {
            guard let name = subscription(id)?.name else {
                throw OpenQError.subscriptionNotFound("#\(id)", topic: self.name)
            }
            guard state.withLock({ $0.isOpen }) else { throw OpenQError.shutDown("Topic '\(self.name)'") }
            let counts = try await shared.refreshCounts()
            if (counts[name]?.total ?? 0) == 0 { return }
            try await Task.sleep(for: shared.pollInterval)
        }
    }
}
