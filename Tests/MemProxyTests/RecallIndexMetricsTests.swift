import Foundation
import Logging
import MemProxyStore
import Prometheus
import Testing

@Suite("Recall index metrics")
struct RecallIndexMetricsTests {
    /// Ops can see how much recall keeps in memory and how often it rebuilds a session's index.
    @Test("memory.recall_index.memories and memory.recall_index.builds are exported")
    func exported() async throws {
        let registry = PrometheusCollectorRegistry()
        let path = FileManager.default.temporaryDirectory.appendingPathComponent(
            "memproxy-test-\(UUID().uuidString).db"
        ).path
        let store = try SQLiteMemoryStore(
            configuration: .init(path: path),
            logger: quietLogger,
            metricsFactory: PrometheusMetricsFactory(registry: registry)
        )
        let at = Date(timeIntervalSince1970: 1_700_000_000)
        try store.insert([
            Memory(sessionID: "s1", type: .episodic, role: "user", content: "the dog likes the park", createdAt: at),
            Memory(sessionID: "s1", type: .episodic, role: "user", content: "tea in the garden", createdAt: at + 1),
        ])
        _ = try await store.recall(session: "s1", query: "dog", limit: 3)
        _ = try await store.recall(session: "s1", query: "tea", limit: 3)
        let exposition = registry.emitToString()
        #expect(exposition.contains("memory_recall_index_memories 2.0\n"), "\(exposition)")
        #expect(exposition.contains("memory_recall_index_builds 1\n"), "\(exposition)")
    }
}
