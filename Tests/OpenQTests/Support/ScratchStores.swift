import Foundation

/// Where the durable semantic tests keep their store files: one directory per test process,
/// removed when the process exits (and left by no earlier run that exited normally).
enum ScratchStores {
    static let directory: String = {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("openq-tests-\(getpid())").path
        try? FileManager.default.removeItem(atPath: directory)
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        atexit { try? FileManager.default.removeItem(atPath: ScratchStores.directory) }
        return directory
    }()

    /// A path for a new store file, unique within the run.
    static func path(_ prefix: String) -> String {
        directory + "/\(prefix)-\(UUID().uuidString).sqlite"
    }
}
