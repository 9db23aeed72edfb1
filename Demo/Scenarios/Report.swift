// How the demo prints its statistics tables and checks.

import Foundation
import OpenQ

/// Renders scenario outcomes for people (aligned tables) and for scripts (JSON).
public enum Report {
    /// The statistics table and the checks of one scenario.
    public static func text(_ outcome: ScenarioOutcome) -> String {
        var lines = [statisticsTable(outcome.statistics)]
        for check in outcome.checks {
            lines.append("\(check.held ? "✔" : "✘") \(check.description)")
        }
        lines.append(
            outcome.passed
                ? "✔ \(outcome.scenario.rawValue): every guarantee held"
                : "✘ \(outcome.scenario.rawValue): A GUARANTEE WAS BROKEN")
        return lines.joined(separator: "\n")
    }

    /// One row per subscription, columns aligned.
    public static func statisticsTable(_ statistics: BrokerStatistics) -> String {
        var rows = [
            [
                "topic", "subscription", "routed", "delivered", "acked", "nacked", "redelivered", "dead-lettered",
                "dropped", "purged", "waiting", "in flight",
            ]
        ]
        for topic in statistics.topics {
            for subscription in topic.subscriptions {
                let c = subscription.counters
                rows.append([
                    topic.name, subscription.isAnonymous ? "(stream)" : subscription.name, "\(c.routed)",
                    "\(c.delivered)",
                    "\(c.acked)", "\(c.nacked)", "\(c.redelivered)", "\(c.deadLettered)", "\(c.dropped)", "\(c.purged)",
                    "\(subscription.depth + subscription.scheduled)", "\(subscription.inFlight)",
                ])
            }
            var ended = topic.totals
            for subscription in topic.subscriptions {
                let c = subscription.counters
                ended.routed -= c.routed
                ended.delivered -= c.delivered
                ended.acked -= c.acked
                ended.nacked -= c.nacked
                ended.redelivered -= c.redelivered
                ended.deadLettered -= c.deadLettered
                ended.dropped -= c.dropped
                ended.purged -= c.purged
            }
            if ended.routed > 0 {
                rows.append([
                    topic.name, "(ended streams)", "\(ended.routed)", "\(ended.delivered)", "\(ended.acked)",
                    "\(ended.nacked)",
                    "\(ended.redelivered)", "\(ended.deadLettered)", "\(ended.dropped)", "\(ended.purged)", "0", "0",
                ])
            }
        }
        let widths = rows[0].indices.map { column in rows.map { $0[column].count }.max()! }
        return rows.enumerated().map { index, row in
            let line = row.indices.map { column in
                let cell = row[column]
                let padding = String(repeating: " ", count: widths[column] - cell.count)
                return column < 2 ? cell + padding : padding + cell
            }.joined(separator: "  ")
            return index == 0 ? line + "\n" + String(repeating: "─", count: line.count) : line
        }.map { "  " + $0 }.joined(separator: "\n")
    }

    struct JSONOutcome: Encodable {
        struct Check: Encodable {
            var description: String
            var held: Bool
        }
        struct SubscriptionJSON: Encodable {
            var name: String
            var routed, delivered, acked, nacked, redelivered, expired, deadLettered, dropped, purged: Int
            var waiting, scheduled, inFlight: Int
        }
        struct TopicJSON: Encodable {
            var name: String
            var published, rejected: Int
            var subscriptions: [SubscriptionJSON]
        }
        var scenario: String
        var passed: Bool
        var checks: [Check]
        var figures: [String: Int]
        var topics: [TopicJSON]
    }

    /// The final statistics of every scenario, as JSON.
    public static func json(_ outcomes: [ScenarioOutcome]) throws -> String {
        let value = outcomes.map { outcome in
            JSONOutcome(
                scenario: outcome.scenario.rawValue,
                passed: outcome.passed,
                checks: outcome.checks.map { .init(description: $0.description, held: $0.held) },
                figures: outcome.figures,
                topics: outcome.statistics.topics.map { topic in
                    .init(
                        name: topic.name, published: topic.published, rejected: topic.rejected,
                        subscriptions: topic.subscriptions.map { s in
                            let c = s.counters
                            return .init(
                                name: s.name, routed: c.routed, delivered: c.delivered, acked: c.acked,
                                nacked: c.nacked,
                                redelivered: c.redelivered, expired: c.expired, deadLettered: c.deadLettered,
                                dropped: c.dropped, purged: c.purged, waiting: s.depth, scheduled: s.scheduled,
                                inFlight: s.inFlight)
                        })
                }
            )
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }
}
