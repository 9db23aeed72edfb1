import Foundation
import Testing

/// The documentation is the contract: every ```swift block of README.md and of a DocC article
/// (`Sources/<Product>/<Product>.docc/*.md`) appears verbatim in a compiled test, so an example
/// that stops compiling or stops doing what it says fails the suite. Lines compare without their
/// indentation; `import` lines and blank lines are left out (a test file has its imports at the
/// top and its blocks inside functions).
@Suite("Documentation: every Swift example is a compiled test")
struct DocumentationTests {
    /// The repository's root, from this file's path (`Tests/OpenQTests/DocumentationTests.swift`).
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    /// README.md and every DocC article, relative to the root.
    static func documents() throws -> [String] {
        var documents = ["README.md"]
        let sources = root.appendingPathComponent("Sources")
        for module in try FileManager.default.contentsOfDirectory(atPath: sources.path).sorted() {
            let catalog = sources.appendingPathComponent(module).appendingPathComponent("\(module).docc")
            guard let articles = try? FileManager.default.contentsOfDirectory(atPath: catalog.path) else { continue }
            documents += articles.filter { $0.hasSuffix(".md") }.sorted().map {
                "Sources/\(module)/\(module).docc/\($0)"
            }
        }
        return documents
    }

    /// The ```swift blocks of a Markdown text, each with the line it starts on.
    static func swiftBlocks(in text: String) -> [(line: Int, code: [String])] {
        var blocks: [(line: Int, code: [String])] = []
        var current: (line: Int, code: [String])?
        for (number, line) in text.components(separatedBy: "\n").enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if current == nil, trimmed == "```swift" {
                current = (number + 1, [])
            } else if current != nil, trimmed == "```" {
                blocks.append(current!)
                current = nil
            } else if current != nil {
                current!.code.append(line)
            }
        }
        return blocks
    }

    /// Lines as they are compared: trimmed, without blank and `import` lines.
    static func normalized(_ lines: [String]) -> [String] {
        lines.map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty && !$0.hasPrefix("import ") }
    }

    /// Every test source of the repository, normalized.
    static func testSources() throws -> [(path: String, lines: [String])] {
        let tests = root.appendingPathComponent("Tests")
        guard let files = FileManager.default.enumerator(atPath: tests.path) else { return [] }
        return try files.compactMap { $0 as? String }.filter { $0.hasSuffix(".swift") }.map { path in
            let text = try String(contentsOf: tests.appendingPathComponent(path), encoding: .utf8)
            return ("Tests/\(path)", normalized(text.components(separatedBy: "\n")))
        }
    }

    static func contains(_ haystack: [String], _ needle: [String]) -> Bool {
        guard !needle.isEmpty else { return true }
        guard needle.count <= haystack.count else { return false }
        for start in 0...(haystack.count - needle.count) where haystack[start] == needle[0] {
            if Array(haystack[start..<start + needle.count]) == needle { return true }
        }
        return false
    }

    @Test func everySwiftBlock_appearsVerbatimInACompiledTest() throws {
        let sources = try Self.testSources()
        #expect(!sources.isEmpty)
        var checked = 0
        for document in try Self.documents() {
            let text = try String(contentsOf: Self.root.appendingPathComponent(document), encoding: .utf8)
            for block in Self.swiftBlocks(in: text) {
                checked += 1
                let code = Self.normalized(block.code)
                let found = sources.contains { Self.contains($0.lines, code) }
                #expect(
                    found,
                    "\(document):\(block.line): this swift block is in no test, verbatim:\n\(code.joined(separator: "\n"))"
                )
            }
        }
        #expect(checked >= 5, "README.md and the DocC articles hold Swift examples")
    }

    /// Every source file names its one concern in a header comment and has a row in
    /// ARCHITECTURE.md, so that a reader finds each concern by file name.
    @Test func everySourceFile_hasAHeader_andARowInTheArchitectureTable() throws {
        let architecture = try String(contentsOf: Self.root.appendingPathComponent("ARCHITECTURE.md"), encoding: .utf8)
        var files: [String] = ["Tests/CrashChild/main.swift"]
        for folder in ["Sources", "Demo", "Benchmarks/Sources", "Benchmarks/Benchmarks"] {
            let base = Self.root.appendingPathComponent(folder)
            guard let paths = FileManager.default.enumerator(atPath: base.path) else { continue }
            files += paths.compactMap { $0 as? String }.filter { $0.hasSuffix(".swift") }.map { "\(folder)/\($0)" }
        }
        #expect(files.count > 50)
        for file in files {
            #expect(architecture.contains("| `\(file)` |"), "\(file) has no row in ARCHITECTURE.md")
            let text = try String(contentsOf: Self.root.appendingPathComponent(file), encoding: .utf8)
            #expect(
                text.hasPrefix("// ") && !text.hasPrefix("/// "), "\(file) has no header comment naming its concern")
        }
    }

    @Test func theCheck_findsABlock_andMissesAChangedOne() {
        let blocks = Self.swiftBlocks(
            in: "text\n```swift\nimport OpenQ\n\nlet a = 1\n  let b = 2\n```\n```sh\nls\n```\n")
        #expect(blocks.count == 1 && blocks[0].line == 2)
        let code = Self.normalized(blocks[0].code)
        #expect(code == ["let a = 1", "let b = 2"])
        #expect(Self.contains(["x", "let a = 1", "let b = 2", "y"], code))
        #expect(!Self.contains(["let a = 1", "let b = 3"], code))
    }
}
