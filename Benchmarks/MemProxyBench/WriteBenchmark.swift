import Foundation
import Logging
import MemProxyStore

/// The writer's cost per stored exchange (user message + reply, two memories) through `submit` and the
/// batching writer, the proxy's own path, into a session that already holds memories.
///
/// ```
/// MemProxyBench write [--exchanges 5000] [--existing 20000] [--reply-words 80]
/// ```
struct WriteBenchmark {
    let exchanges: Int
    let existing: Int
    let replyWords: Int

    init(options: Options) throws {
        exchanges = try options.int("exchanges", default: 5000)
        existing = try options.int("existing", default: 20000)
        replyWords = try options.int("reply-words", default: 80)
    }

    func run() async throws {
        var logger = Logger(label: "memproxy.bench")
        logger.logLevel = .warning
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try SQLiteMemoryStore(
            configuration: .init(path: directory.appendingPathComponent("write.sqlite").path),
            logger: logger
        )
        let text = SyntheticText(seed: 3)
        var random = SplitMix64(seed: 11)
        let base = Date(timeIntervalSince1970: 1_700_000_000)
        var loaded = 0
        while loaded < existing {
            let count = min(10_000, existing - loaded)
            try store.insert((0..<count).map { index in
                Memory(
                    sessionID: "bench-write", type: .episodic, content: text.sentence(words: 6 + Int(random.next() % 60), random: &random),
                    createdAt: base.addingTimeInterval(Double(loaded + index)), source: "import"
                )
            })
            loaded += count
        }
        let records = (0..<exchanges).map { index in
            ExchangeRecord(
                sessionID: "bench-write", exchangeID: "ex-\(index)", requestID: "req-\(index)", requestHash: "h-\(index)",
                userText: text.sentence(words: 8 + Int(random.next() % 20), random: &random),
                assistantText: text.sentence(words: replyWords / 2 + Int(random.next() % UInt64(max(1, replyWords))), random: &random),
                createdAt: base.addingTimeInterval(Double(existing + index))
            )
        }
        let cpuStart = processCPUMilliseconds()
        let start = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await store.run() }
            for record in records { store.submit(record) }
            await store.flush()
            group.cancelAll()
            try await group.waitForAll()
        }
        let seconds = milliseconds(ContinuousClock.now - start) / 1000
        let cpu = processCPUMilliseconds() - cpuStart
        let stored = try store.memories(session: "bench-write").count - existing
        print("")
        print("writer: \(exchanges) exchanges (user 8–27 words, reply \(replyWords / 2)–\(replyWords * 3 / 2) words) into a session of \(existing) memories")
        print("| exchanges/s | ms per exchange (wall) | CPU ms per exchange | memories stored |")
        print("|---:|---:|---:|---:|")
        print("| \(format(Double(exchanges) / seconds, 0)) | \(format(seconds * 1000 / Double(exchanges))) | \(format(cpu / Double(exchanges))) | \(stored) |")
    }
}
