// PostgreSQL's and postgres-nio's errors as OpenQError codes, with what the caller can rely on.

import OpenQ
import PostgresNIO

/// Maps what postgres-nio throws to ``OpenQError`` codes. The message names what was being done
/// and PostgreSQL's SQLSTATE, never a bind (a payload) or a password.
enum PostgresErrors {
    static func openQError(_ error: any Error, doing what: String) -> OpenQError {
        if let error = error as? OpenQError { return error }
        if let error = error as? PostgresTransactionError {
            // What failed inside the transaction is what the caller needs to see; a failed BEGIN
            // or COMMIT is the database's failure. (A failed COMMIT leaves the outcome in doubt.)
            if let inner = error.closureError { return openQError(inner, doing: what) }
            if let inner = error.beginError { return openQError(inner, doing: what) }
            if let inner = error.commitError { return openQError(inner, doing: what + " (committing)") }
            return OpenQError(.storageFailed, "PostgreSQL failed \(what)")
        }
        guard let error = error as? PSQLError else {
            return OpenQError(.storageFailed, "PostgreSQL failed \(what): \(error)")
        }
        if error.code == .server, let info = error.serverInfo {
            let state = info[.sqlState] ?? "?"
            let message = info[.message] ?? ""
            let text = "PostgreSQL failed \(what): \(message) (SQLSTATE \(state))"
            switch state {
            case "53100": return OpenQError(.storeFull, text)  // disk_full
            case "25006": return OpenQError(.storeReadOnly, text)  // read_only_sql_transaction
            case "XX001", "XX002": return OpenQError(.storeCorrupted, text)  // data or index corrupted
            default: return OpenQError(.storageFailed, text)
            }
        }
        return OpenQError(.storageFailed, "PostgreSQL failed \(what): \(error.code)")
    }
}
