// A subscription's configuration: acknowledgement mode, start position, its own backlog limit.

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// When a subscription's deliveries count as done.
///
/// | mode | guarantee | a delivery is done when |
/// | --- | --- | --- |
/// | ``automatic`` | at most once | it is handed to a consumer |
/// | ``afterHandling`` | at least once | the handler returns (a throw is a nack) |
/// | ``manual(visibilityTimeout:)`` | at least once | the consumer calls ``Delivery/ack()`` |
public struct AcknowledgementMode: Hashable, Sendable, Codable, CustomStringConvertible {
    enum Kind: Hashable, Sendable, Codable {
        case automatic
        case afterHandling
        case manual
    }

    let kind: Kind
    /// How long a delivery stays invisible to other consumers before it is redelivered; unused in
    /// automatic mode.
    public let visibilityTimeout: Duration

    /// At-most-once: a message is done when handed over (the fire-and-forget model).
    public static let automatic = Self(kind: .automatic, visibilityTimeout: .seconds(30))

    /// At-least-once for ``MessageHandler`` consumers: ack when `handle` returns, nack when it
    /// throws. The consumer extends the lease while the handler runs. Default timeout 30 s.
    public static let afterHandling = afterHandling(visibilityTimeout: .seconds(30))

    /// At-least-once for ``MessageHandler`` consumers, with the given visibility timeout.
    public static func afterHandling(visibilityTimeout: Duration) -> Self {
        Self(kind: .afterHandling, visibilityTimeout: visibilityTimeout)
    }

    /// At-least-once with explicit ``Delivery/ack()``; an unacknowledged delivery becomes visible
    /// again after 30 s.
    public static let manual = manual(visibilityTimeout: .seconds(30))

    /// At-least-once with explicit ``Delivery/ack()``; an unacknowledged delivery becomes visible
    /// again after `visibilityTimeout`, with its attempt count raised.
    public static func manual(visibilityTimeout: Duration) -> Self {
        Self(kind: .manual, visibilityTimeout: visibilityTimeout)
    }

    var tracksDeliveries: Bool { kind != .automatic }

    /// A readable description.
    public var description: String {
        switch kind {
        case .automatic: "automatic"
        case .afterHandling: "afterHandling(visibilityTimeout: \(visibilityTimeout))"
        case .manual: "manual(visibilityTimeout: \(visibilityTimeout))"
        }
    }
}

/// Where a new subscription starts reading, or where ``Subscription/seek(to:)`` moves it.
///
/// Positions other than ``latest`` read from the topic's ``Retention``.
public enum StartPosition: Hashable, Sendable, Codable {
    /// Only messages published from now on. The default.
    case latest
    /// Every message the topic still retains, then new ones.
    case earliest
    /// Retained messages with this sequence number or a later one, then new ones.
    case sequenceNumber(UInt64)
    /// Retained messages published at or after this time, then new ones.
    case time(Date)
}

/// A subscription's own bound on its backlog, overriding the topic's capacity and overflow policy.
///
/// A slow subscriber with `.init(capacity: 1_000, overflow: .dropOldest)` sheds its own oldest
/// messages instead of making publishers wait for it; the topic's other subscriptions are untouched.
public struct BacklogLimit: Hashable, Sendable, Codable {
    /// The most messages the subscription holds (waiting, delayed and in flight).
    public var capacity: Int
    /// What happens to this subscription's copy of a message when it is full.
    public var overflow: OverflowPolicy

    /// Creates a backlog limit.
    public init(capacity: Int, overflow: OverflowPolicy) {
        self.capacity = capacity
        self.overflow = overflow
    }
}

/// A named subscription's settings.
public struct SubscriptionConfiguration: Hashable, Sendable, Codable {
    /// When deliveries count as done. Default ``AcknowledgementMode/manual``.
    public var acknowledgement: AcknowledgementMode
    /// Where the subscription starts when it is created. Default ``StartPosition/latest``.
    public var start: StartPosition
    /// The subscription's own backlog bound, or `nil` to use the topic's capacity and policy.
    public var backlog: BacklogLimit?

    /// Creates a configuration.
    public init(
        acknowledgement: AcknowledgementMode = .manual,
        start: StartPosition = .latest,
        backlog: BacklogLimit? = nil
    ) {
        self.acknowledgement = acknowledgement
        self.start = start
        self.backlog = backlog
    }

    func validate() throws(OpenQError) {
        if acknowledgement.kind != .automatic, acknowledgement.visibilityTimeout <= .zero {
            throw .invalidConfiguration(
                "A visibility timeout must be positive; it was \(acknowledgement.visibilityTimeout).")
        }
        if let backlog, backlog.capacity < 1 {
            throw .invalidConfiguration(
                "A subscription's backlog capacity must be at least 1; it was \(backlog.capacity).")
        }
    }
}
