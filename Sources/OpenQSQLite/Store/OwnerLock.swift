// One owner per store file: an exclusive lock on the file itself, held while a broker owns it.

// Foundation brings the C library too (open, flock, stat).
import Foundation
import OpenQ

/// An exclusive `flock` on the store's database file, held while a broker owns it.
///
/// The lock is on the file the path resolves to, not on a name made from the path: a symbolic
/// link to the file or to its directory, `..` in the path and a hard link all reach the same
/// file, and so the same lock. `flock` locks belong to an open file description, and the kernel
/// releases them when the owning process dies (kill -9 included). SQLite's own locks on the file
/// are POSIX (`fcntl`) locks, which are independent of `flock` on Linux and macOS.
///
/// POSIX locks have a trap that SQLite documents: closing *any* descriptor of a file drops every
/// POSIX lock the process holds on it, those of the SQLite connections included. So a second
/// broker of the same process never closes the descriptor it opened to find the file in use:
/// within a process, owners are known by the file's device and inode, and a refused descriptor is
/// kept with the owner and closed when the owner releases the file, after its connections closed.
final class OwnerLock: Sendable {
    /// A file, by what it is rather than by a name of it.
    private struct FileID: Hashable {
        var device: UInt64
        var inode: UInt64
    }

    /// The files owned in this process, with the descriptors that found them in use (closed with
    /// the owner's).
    private static let owned = LockedValueBox<[FileID: [Int32]]>([:])

    private let file: FileID
    private let descriptor: LockedValueBox<Int32>
    /// Whether opening the lock created the file (it did not exist).
    let createdFile: Bool

    /// Opens the store file (creating an empty one when missing) and takes its lock.
    /// - Throws: ``OpenQError/Code/storeInUse`` when another broker, in this process or another,
    ///   owns the file; ``OpenQError/Code/invalidConfiguration`` when the file has more than one
    ///   hard link; ``OpenQError/Code/storeReadOnly`` or ``OpenQError/Code/storeFull`` when
    ///   it cannot be created; ``OpenQError/Code/storageFailed`` otherwise.
    init(path: String) throws(OpenQError) {
        var status = stat()
        let existed = stat(path, &status) == 0
        let result = Self.owned.withLock { owned -> Result<(FileID, Int32), OpenQError> in
            let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
            guard descriptor >= 0 else { return .failure(Self.openFailure(path, errno)) }
            guard fstat(descriptor, &status) == 0 else {
                let code = errno
                close(descriptor)
                return .failure(OpenQError(.storageFailed, "Cannot stat '\(path)': \(String(cString: strerror(code)))"))
            }
            let file = FileID(device: UInt64(status.st_dev), inode: UInt64(status.st_ino))
            if owned[file] != nil {
                // Owned in this process: closing this descriptor now would drop the owner's
                // SQLite locks, so the owner closes it when it releases the file.
                owned[file]!.append(descriptor)
                return .failure(Self.inUse(path))
            }
            guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
                let code = errno
                // Owned by another process: this process has no connection to the file.
                close(descriptor)
                return .failure(
                    code == EWOULDBLOCK
                        ? Self.inUse(path) : OpenQError(.storageFailed, "Cannot lock '\(path)': errno \(code)"))
            }
            // SQLite keeps the WAL beside the name a file was opened by, so a broker opening
            // another hard link of the store would miss the writes committed in the other name's
            // WAL (SQLite warns of the same).
            guard status.st_nlink <= 1 else {
                flock(descriptor, LOCK_UN)
                close(descriptor)
                return .failure(
                    OpenQError(
                        .invalidConfiguration,
                        "The store '\(path)' has \(status.st_nlink) hard links. SQLite keeps a store's write-ahead "
                            + "log beside the name it was opened by, so through another name committed writes "
                            + "would be missed: remove the other links (a symbolic link is fine)."))
            }
            owned[file] = []
            return .success((file, descriptor))
        }
        let (file, descriptor) = try result.get()
        self.file = file
        self.descriptor = LockedValueBox(descriptor)
        self.createdFile = !existed
    }

    /// Gives up ownership; a second call does nothing. Call it after every connection to the file
    /// is closed (see the type's note on POSIX locks).
    func release() {
        Self.owned.withLock { owned in
            descriptor.withLock { descriptor in
                guard descriptor >= 0 else { return }
                flock(descriptor, LOCK_UN)
                close(descriptor)
                descriptor = -1
                for refused in owned.removeValue(forKey: file) ?? [] { close(refused) }
            }
        }
    }

    private static func inUse(_ path: String) -> OpenQError {
        OpenQError(
            .storeInUse,
            "The store '\(path)' is open by another broker (in this process or another, by this path or another "
                + "name of the same file); one broker owns a store at a time. Shut the other down first, or use "
                + "another file.")
    }

    private static func openFailure(_ path: String, _ code: Int32) -> OpenQError {
        let reason = String(cString: strerror(code))
        switch code {
        case EROFS, EACCES, EPERM:
            return OpenQError(
                .storeReadOnly,
                "Cannot open '\(path)' for writing: \(reason). The store (or its directory, or its mount) can only "
                    + "be read; a broker must write its store.")
        case ENOSPC:
            return OpenQError(.storeFull, "Cannot create the store '\(path)': \(reason).")
        default:
            return OpenQError(.storageFailed, "Cannot open the store '\(path)': \(reason).")
        }
    }
}
