// What a committed write survives on a SQLite store: the durability levels.

/// What a committed write survives, for a broker on a SQLite store.
///
/// | level | `PRAGMA synchronous` | a commit survives |
/// | --- | --- | --- |
/// | ``powerLoss`` (default) | `FULL` | a process crash (kill -9), an OS crash, power loss |
/// | ``processCrash`` | `NORMAL` | a process crash (kill -9); the last commits may be lost to an OS crash or power loss |
public enum SQLiteDurability: Sendable, Hashable {
    /// `PRAGMA synchronous = FULL`: the WAL is fsync'd at every commit, before the call returns.
    case powerLoss
    /// `PRAGMA synchronous = NORMAL`: a commit is in the WAL (in the OS's cache), synced only at
    /// checkpoints. Survives a process crash, not power loss. Faster.
    case processCrash

    /// The value of `PRAGMA synchronous` for this level.
    var synchronous: Int {
        switch self {
        case .powerLoss: 2
        case .processCrash: 1
        }
    }
}
