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
        package let open: @Sendable () async throws(OpenQError) -> any DurableStore

        /// A storage that opens the store `open` returns. For storage libraries.
        package init(open: @escaping @Sendable () async throws(OpenQError) -> any DurableStore) {
            self.open = open
        }
    }
}
