// Where a broker keeps its durable topics: the store a backend library opens.

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

extension MessageQueue {
    /// Where a broker keeps its durable topics.
    ///
    /// The `OpenQ` library has no database driver: a storage comes from a storage library, such as
    /// `OpenQSQLite`'s `.sqlite(path:durability:)`.
    ///
    /// ```swift
    /// import OpenQSQLite
    ///
    /// let queue = try await MessageQueue(storage: .sqlite(path: "data/openq.sqlite"))
    /// ```
    public struct Storage: Sendable {
        /// What a storage opens: a store this broker owns and journals to (SQLite), or a backend
        /// whose database decides and that many brokers share (PostgreSQL).
        package enum Opened: Sendable {
            case journal(any DurableStore)
            case shared(any SharedBackend)
        }

        package let open: @Sendable () async throws(OpenQError) -> Opened

        /// A storage that opens the store `open` returns. For storage libraries.
        package init(open: @escaping @Sendable () async throws(OpenQError) -> any DurableStore) {
            self.open = { () async throws(OpenQError) in .journal(try await open()) }
        }

        /// A storage whose topics a database shares between brokers. For storage libraries.
        package init(shared open: @escaping @Sendable () async throws(OpenQError) -> any SharedBackend) {
            self.open = { () async throws(OpenQError) in .shared(try await open()) }
        }
    }
}
