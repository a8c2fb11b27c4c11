import Foundation
import Logging
@testable import MemProxyStore
import Metrics

/// A fresh database path in its own temporary directory.
func temporaryDatabasePath() throws -> String {
    let directory = FileManager.default.temporaryDirectory
        .appendingPathComponent("memproxy-store-tests-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    return directory.appendingPathComponent("memories.sqlite").path
}

let quietLogger = Logger(label: "memproxy.store.tests", factory: { _ in SwiftLogNoOpLogHandler() })

func makeStore(path: String? = nil, configure: (inout SQLiteMemoryStore.Configuration) -> Void = { _ in }) throws
    -> SQLiteMemoryStore
{
    var configuration = SQLiteMemoryStore.Configuration(path: try path ?? temporaryDatabasePath())
    // Fixtures are dated 2023: with the default 30-day retention the idle writer would prune their injection
    // records as soon as it has nothing else to do. The retention tests set it themselves.
    configuration.injectionRetentionDays = 0
    configure(&configuration)
    return try SQLiteMemoryStore(configuration: configuration, logger: quietLogger, metricsFactory: NOOPMetricsHandler.instance)
}

/// Runs `body` while the store's writer runs, then stops the writer (cancellation, which flushes).
func withWriter<T>(_ store: SQLiteMemoryStore, _ body: () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await store.run() }
        do {
            let result = try await body()
            group.cancelAll()
            try await group.waitForAll()
            return result
        } catch {
            group.cancelAll()
            throw error
        }
    }
}

let baseDate = Date(timeIntervalSince1970: 1_700_000_000)

func memory(_ content: String, session: String = "s1", at offset: Double = 0, type: MemoryType = .episodic) -> Memory {
    Memory(sessionID: session, type: type, role: "user", content: content, createdAt: baseDate + offset, source: "import")
}

func exchange(
    session: String = "s1",
    hash: String = UUID().uuidString,
    user: String,
    assistant: String?,
    incomplete: Bool = false,
    at offset: Double = 0
) -> ExchangeRecord {
    ExchangeRecord(
        sessionID: session,
        exchangeID: "ex_" + UUID().uuidString,
        requestID: "req_" + UUID().uuidString,
        requestHash: hash,
        userText: user,
        assistantText: assistant,
        assistantIncomplete: incomplete,
        createdAt: baseDate + offset
    )
}

/// A small deterministic generator (SplitMix64) for randomized tests that must reproduce.
struct SeededRandom: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
