// swift-tools-version: 6.2
import PackageDescription

// OpenQ's benchmarks: a package of their own, so the root package never builds benchmark code.
let package = Package(
    name: "OpenQBenchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        // Without `name:` the package identity would follow the checkout's folder name.
        .package(name: "OpenQ", path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
        .package(url: "https://github.com/apple/swift-async-algorithms", from: "1.1.4"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
        // The raw-SQLite peer of the durable rows.
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        // The SQS load client signs with SigV4.
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
    ],
    targets: [
        .executableTarget(
            name: "OpenQAllocations",
            dependencies: [
                .product(name: "OpenQ", package: "OpenQ"),
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/OpenQAllocations",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        .executableTarget(
            name: "openq-compare",
            dependencies: [
                .product(name: "OpenQ", package: "OpenQ"),
                .product(name: "OpenQSQLite", package: "OpenQ"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "AsyncAlgorithms", package: "swift-async-algorithms"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "DequeModule", package: "swift-collections"),
            ],
            path: "Sources/openq-compare"
        ),
        // The SQS load client: openq-server and moto_server under the same load (sqs-load.sh).
        .executableTarget(
            name: "openq-sqs-load",
            dependencies: [
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            path: "Sources/openq-sqs-load"
        ),
    ],
    swiftLanguageModes: [.v6]
)
