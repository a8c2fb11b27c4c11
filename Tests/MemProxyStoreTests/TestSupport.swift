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
