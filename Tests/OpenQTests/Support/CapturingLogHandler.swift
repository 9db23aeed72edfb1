import Logging
import OpenQTesting

@testable import OpenQ

/// A log handler that keeps every record, for tests of what OpenQ logs.
struct CapturingLogHandler: LogHandler {
    struct Record: Sendable {
        var level: Logger.Level
        var message: String
        var metadata: Logger.Metadata
    }

    let records: LockedValueBox<[Record]>
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace
    var metadataProvider: Logger.MetadataProvider?

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let record = Record(
            level: event.level, message: "\(event.message)", metadata: metadata.merging(event.metadata ?? [:]) { $1 })
        records.withLock { $0.append(record) }
    }

    /// A logger writing into a new record list, and the list.
    static func logger() -> (Logger, LockedValueBox<[Record]>) {
        let records = LockedValueBox<[Record]>([])
        return (Logger(label: "openq-test") { _ in CapturingLogHandler(records: records) }, records)
    }
}
