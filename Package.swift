// swift-tools-version:6.2
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "memproxy",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "memproxy", targets: ["memproxy"])
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/LebJe/TOMLKit.git", from: "0.6.0"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/hummingbird-project/swift-mustache.git", from: "2.1.1"),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3"..<"5.0.0"),
    ],
    targets: [
        .systemLibrary(
            name: "CCurl",
            pkgConfig: "libcurl",
            providers: [.apt(["libcurl4-openssl-dev"])]
        ),
        // No I/O: JSON edits, SSE framing, reply accumulation, injection block, query building, validation.
        .target(
            name: "MemProxyCore",
            swiftSettings: swiftSettings
        ),
        // MemoryStore protocols and models; Recall/: the in-memory recall every backend shares; SQLite/: the SQLite
        // (GRDB) implementation with its batching writer.
        // Exact int8 dot products for recall by meaning: AVX2 when the CPU has it, plain C otherwise.
        .target(name: "CVectorKernels"),
        .target(
            name: "MemProxyStore",
            dependencies: [
                "MemProxyCore",
                "CVectorKernels",
                .product(name: "GRDB", package: "GRDB.swift"),
                // The C API, for the FTS5 auxiliary function recall ranks with (`SessionBM25`).
                .product(name: "GRDBSQLite", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // Upstream protocol + libcurl multi engine on one dedicated thread.
        .target(
            name: "MemProxyUpstream",
            dependencies: [
                "CCurl",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // A scriptable OpenAI-like upstream used by the tests and by `memproxy demo`.
        .target(
            name: "FakeUpstream",
            dependencies: [
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // Configuration, routes, metrics, logging, buildApplication.
        .target(
            name: "MemProxy",
            dependencies: [
                "MemProxyCore",
                "MemProxyStore",
                "MemProxyUpstream",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "TOMLKit", package: "TOMLKit"),
                .product(name: "Mustache", package: "swift-mustache"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "memproxy",
            dependencies: [
                "MemProxy",
                "MemProxyStore",
                "FakeUpstream",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "MemProxyCoreTests",
            dependencies: ["MemProxyCore"],
            swiftSettings: swiftSettings
        ),
        // Recall latency and LoCoMo retrieval-quality benchmarks (prints tables; not a test).
        .executableTarget(
            name: "MemProxyBench",
            dependencies: [
                "MemProxyCore",
                "MemProxyStore",
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Benchmarks/MemProxyBench",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "MemProxyStoreTests",
            dependencies: ["MemProxyStore", "MemProxyCore"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "MemProxyTests",
            dependencies: [
                "MemProxy",
                "MemProxyCore",
                "MemProxyStore",
                "MemProxyUpstream",
                "FakeUpstream",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "InMemoryLogging", package: "swift-log"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
    ]
)
