import Foundation

/// A small tmpfs, for a disk that really fills up and a mount that really is read-only. Needs
/// root with CAP_SYS_ADMIN (as on CI); `nil` where mounting is not allowed.
final class Tmpfs {
    let path: String

    init?(megabytes: Int) {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("openq-tmpfs-\(UUID().uuidString)").path
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        guard Self.run("/bin/mount", ["-t", "tmpfs", "-o", "size=\(megabytes)m", "tmpfs", path]) else {
            try? FileManager.default.removeItem(atPath: path)
            return nil
        }
    }

    static let isAvailable: Bool = {
        guard let probe = Tmpfs(megabytes: 1) else { return false }
        probe.unmount()
        return true
    }()

    func remount(readOnly: Bool) -> Bool {
        Self.run("/bin/mount", ["-o", "remount,\(readOnly ? "ro" : "rw")", path])
    }

    func unmount() {
        _ = Self.run("/bin/umount", ["-l", path])
        try? FileManager.default.removeItem(atPath: path)
    }

    @discardableResult
    static func run(_ tool: String, _ arguments: [String]) -> Bool {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        do {
            try process.run()
            process.waitUntilExit()
            return process.terminationStatus == 0
        } catch {
            return false
        }
    }
}
