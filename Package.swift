// swift-tools-version: 6.2
import PackageDescription

let package = Package(
    name: "OpenQ",
    platforms: [.macOS(.v15), .iOS(.v18), .tvOS(.v18), .watchOS(.v11)],
    products: [
        .library(name: "OpenQ", targets: ["OpenQ"]),
        // A manual clock for tests of code built on OpenQ.
        .library(name: "OpenQTesting", targets: ["OpenQTesting"]),
        // Distributed tracing of messages from publish to handling (swift-distributed-tracing).
        .library(name: "OpenQTracing", targets: ["OpenQTracing"]),
        // Durable topics on an embedded SQLite file (GRDB); links the system SQLite.
        .library(name: "OpenQSQLite", targets: ["OpenQSQLite"]),
        // Durable topics in PostgreSQL, shared by every broker on the database (postgres-nio).
        .library(name: "OpenQPostgres", targets: ["OpenQPostgres"]),
        .executable(name: "openq-demo", targets: ["openq-demo"]),
        // OpenQ over HTTP with the Amazon SQS API (hummingbird); the OpenQ library does not depend on it.
        .library(name: "OpenQServer", targets: ["OpenQServer"]),
        .executable(name: "openq-server", targets: ["openq-server"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        // For the OpenQTracing product only; the OpenQ library does not depend on it.
        .package(url: "https://github.com/apple/swift-distributed-tracing", from: "1.7.3"),
        // For the OpenQSQLite product only (durable topics); the OpenQ library does not depend on
        // it. Links the system SQLite: Debian's libsqlite3-dev.
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        // For the demo's command line only; the OpenQ library does not depend on it.
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        // For the OpenQServer product only (the SQS server); the OpenQ library does not depend on
        // them. No default traits: the server needs neither swift-configuration nor full Foundation.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1", traits: []),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        // For the OpenQPostgres product only (topics shared through PostgreSQL); the OpenQ library
        // does not depend on it.
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
    ],
    targets: [
        .target(
            name: "OpenQ",
            dependencies: [
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "HeapModule", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .target(
            name: "OpenQTesting",
            dependencies: ["OpenQ"]
        ),
        .target(
            name: "OpenQTracing",
            dependencies: [
                "OpenQ",
                .product(name: "Tracing", package: "swift-distributed-tracing"),
            ]
        ),
        // Durable topics: the SQLite store, its journal (group commit) and recovery.
        .target(
            name: "OpenQSQLite",
            dependencies: [
                "OpenQ",
                .product(name: "GRDB", package: "GRDB.swift"),
            ]
        ),
        // Topics shared by many processes: the PostgreSQL engine (schema, migrations, claims). Not a
        // product yet: the broker reaches it once the topic's operations have their seam.
        .target(
            name: "OpenQPostgres",
            dependencies: [
                "OpenQ",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "OpenQPostgresTests",
            dependencies: [
                "OpenQPostgres",
                "OpenQ",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The child process the crash tests kill with SIGKILL (not a product).
        .executableTarget(
            name: "openq-crash-child",
            dependencies: ["OpenQ", "OpenQSQLite"],
            path: "Tests/CrashChild"
        ),
        .testTarget(
            name: "OpenQSQLiteTests",
            dependencies: [
                "OpenQSQLite",
                "OpenQ",
                "OpenQTesting",
                .product(name: "GRDB", package: "GRDB.swift"),
            ]
        ),
        .testTarget(
            name: "OpenQTracingTests",
            dependencies: [
                "OpenQTracing",
                "OpenQ",
                "OpenQTesting",
                .product(name: "InMemoryTracing", package: "swift-distributed-tracing"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
            ]
        ),
        .target(
            name: "OpenQDemoKit",
            dependencies: [
                "OpenQ",
                "OpenQSQLite",
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Demo/Scenarios"
        ),
        .executableTarget(
            name: "openq-demo",
            dependencies: [
                "OpenQDemoKit",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Demo/CLI"
        ),
        .testTarget(
            name: "OpenQDemoTests",
            dependencies: ["OpenQDemoKit", "OpenQ"]
        ),
        .testTarget(
            name: "OpenQTests",
            dependencies: [
                "OpenQ",
                "OpenQSQLite",
                "OpenQTesting",
                "OpenQTracing",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "ServiceLifecycleTestKit", package: "swift-service-lifecycle"),
            ]
        ),
        // The SQS server: the protocol, its actions on the broker, and the HTTP side.
        .target(
            name: "OpenQServer",
            dependencies: [
                "OpenQ",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .executableTarget(
            name: "openq-server",
            dependencies: [
                "OpenQServer",
                "OpenQ",
                "OpenQSQLite",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .testTarget(
            name: "OpenQServerTests",
            dependencies: [
                "OpenQServer",
                "OpenQ",
                "OpenQSQLite",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)

// CI's release and ThreadSanitizer passes test the core only (`OPENQ_CORE_ONLY=1`): the server,
// its HTTP stack and the PostgreSQL engine build and test in the debug pass, which keeps CI's time
// in check.
if Context.environment["OPENQ_CORE_ONLY"] != nil {
    let server: Set<String> = [
        "OpenQServer", "openq-server", "OpenQServerTests", "OpenQPostgres", "OpenQPostgresTests",
    ]
    package.targets.removeAll { server.contains($0.name) }
    package.products.removeAll { server.contains($0.name) }
    package.dependencies.removeAll { dependency in
        guard case .sourceControl(_, let location, _) = dependency.kind else { return false }
        let serverOnly = ["hummingbird", "swift-crypto", "swift-http-types", "swift-prometheus", "postgres-nio"]
        return serverOnly.contains { location.contains($0) }
    }
}
