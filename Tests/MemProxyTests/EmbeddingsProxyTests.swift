import FakeUpstream
import Foundation
import MemProxy
import MemProxyStore
import MemProxyUpstream
import Prometheus
import Testing

/// Recall by meaning through the running proxy, against the fake upstream's deterministic embedder (issue 12).
@Suite("Recall by meaning", .timeLimit(.minutes(2)))
struct EmbeddingsProxyTests {
    static let model = "fake-embedding"
    static let fact = "My cat is called Miso and she is 7"
    /// Shares no word with the fact; the fake embedder puts "kitty" and "cat" on one concept.
    static let paraphrase = "Tell me about the kitty"

    func vectorStore(path: String? = nil, model: String = model) throws -> SQLiteMemoryStore {
        var configuration = SQLiteMemoryStore.Configuration(
            path: path ?? FileManager.default.temporaryDirectory
                .appendingPathComponent("memproxy-test-\(UUID().uuidString).db").path)
        configuration.embeddingModel = model
        return try SQLiteMemoryStore(configuration: configuration, logger: quietLogger)
    }

    func withEmbeddings(
        _ store: SQLiteMemoryStore,
        dimensions: Int? = nil,
        timeoutMs: Int = 10_000,
        _ body: (ProxyHarness) async throws -> Void
    ) async throws {
        try await withProxy(memoryStore: store, configure: { configuration, fakePort in
            configuration.embeddings.url = "http://127.0.0.1:\(fakePort)"
            configuration.embeddings.model = Self.model
            configuration.embeddings.dimensions = dimensions
            configuration.embeddings.queryTimeoutMs = timeoutMs
        }, body)
    }

    /// Waits until every memory has a vector of `model` (and `model` is the database's).
    func allEmbedded(_ store: SQLiteMemoryStore, count: Int, model: String = model) async throws {
        try await eventually("every memory embedded") {
            let status = try await store.embeddingStatus()
            return status.model == model && status.memories == count && status.embedded == count
                && status.queued == 0
        }
    }

    @Test("hybrid recall injects the paraphrase lexical recall misses; the memory API's recall ranks the same")
    func hybridInjectsTheParaphrase() async throws {
        let store = try vectorStore()
        try await withEmbeddings(store) { proxy in
            #expect(try await proxy.chat(Self.fact, session: "pets").response.status == 200)
            #expect(try await proxy.chat("The weather was grey all week", session: "pets").response.status == 200)
            try await allEmbedded(store, count: 4)

            // `read`: recall and inject, store nothing (so the preview below sees the same session).
            let (response, _) = try await proxy.chat(
                Self.paraphrase, session: "pets", extraHeaders: [("X-Memory-Mode", "read")])
            #expect(response.status == 200)
            #expect(response.header("X-Memory-Recall") == "hybrid")
            #expect(proxy.lastUpstreamBody.contains("Miso"))

            await store.flush()
            let injections = try jsonObject(try await proxy.api("GET", "/sessions/pets/injections").body)
            let record = try #require((injections["data"] as? [[String: Any]])?.first)
            let injected = try #require(record["memory_ids"] as? [String])
            let recall = try jsonObject(
                try await proxy.api("POST", "/sessions/pets/recall", #"{"query":"\#(Self.paraphrase)"}"#).body)
            #expect(recall["recall"] as? String == "hybrid")
            let previewed = (recall["data"] as? [[String: Any]] ?? []).compactMap { $0["id"] as? String }
            #expect(previewed == injected)
            let explained = try jsonObject(
                try await proxy.api(
                    "POST", "/sessions/pets/recall", #"{"query":"\#(Self.paraphrase)","explain":true}"#
                ).body)
            let first = try #require((explained["data"] as? [[String: Any]])?.first)
            let parts = try #require(first["explain"] as? [String: Any])
            #expect((parts["dense"] as? Double ?? 0) > 0.3)
            #expect(parts["lexical"] as? Double != nil && parts["score"] as? Double == first["score"] as? Double)
        }
    }

    @Test("memproxy explain replays a request's recall by meaning: the DENSE and LEXICAL parts in the terminal")
    func explainShowsTheDenseParts() async throws {
        let cli = try CLI()
        let store = try vectorStore(path: cli.database)
        try await withEmbeddings(store) { proxy in
            #expect(try await proxy.chat(Self.fact, session: "pets").response.status == 200)
            try await allEmbedded(store, count: 2)
            let (response, _) = try await proxy.chat(
                Self.paraphrase, session: "pets", extraHeaders: [("X-Memory-Mode", "read")])
            #expect(response.header("X-Memory-Recall") == "hybrid")
            let requestID = try #require(response.header("X-Memproxy-Request-Id"))
            await store.flush()

            // The CLI embeds the replayed query as the proxy does, with the configuration's [embeddings].
            let config = cli.directory.appendingPathComponent("proxy.conf")
            try """
            [embeddings]
            url = "http://127.0.0.1:\(proxy.fakePort)"
            model = "\(Self.model)"
            query_timeout_ms = 10000
            """.write(to: config, atomically: true, encoding: .utf8)
            let explained = try await cli.run(["explain", requestID, "--config", config.path])
            #expect(explained.status == 0, "\(explained.stderr)")
            #expect(explained.stdout.contains("Replayed now (recall: hybrid)"))
            let header = try #require(explained.stdout.split(separator: "\n").last { $0.hasPrefix("ID ") })
            #expect(header.contains("DENSE") && header.contains("LEXICAL"))
            let miso = try #require(explained.stdout.split(separator: "\n").last { $0.hasSuffix(Self.fact) })
            // The paraphrase shares no word with the fact: its lexical part is 0, its cosine is not.
            let cells = miso.split(separator: " ", omittingEmptySubsequences: true)
            let dense = try #require(Double(cells[3]))
            #expect(dense > 0.3 && Double(cells[4]) == 0)
        }
    }

    @Test("without [embeddings] no embedder runs, no query is embedded, and the paraphrase is not found")
    func offChangesNothing() async throws {
        let store = try makeStore()
        try await withProxy(memoryStore: store) { proxy in
            #expect(try await proxy.chat(Self.fact, session: "pets").response.status == 200)
            await store.flush()
            let (response, _) = try await proxy.chat(Self.paraphrase, session: "pets")
            #expect(response.status == 200)
            #expect(response.header("X-Memory-Recall") == nil)
            #expect(response.header("X-Memory-Injected") == "0")
            #expect(proxy.fake.embeddingRequests == 0)
            #expect(try await store.embeddingStatus().queued == 0)
            let metrics = String(decoding: proxy.metrics.emitToBuffer(), as: UTF8.self)
            #expect(!metrics.contains("memory_embeddings_"))
        }
    }

    @Test("a late or failing embedder: recall is lexical within the deadline, the request never fails")
    func lateOrFailingEmbedderFallsBackToLexical() async throws {
        let store = try vectorStore()
        // 2 s: far below the fake's 20 s delay, far above what a loaded CI machine needs for a prompt answer.
        try await withEmbeddings(store, timeoutMs: 2_000) { proxy in
            proxy.fake.setEmbeddingsDelay(milliseconds: 20_000)
            let (late, _) = try await proxy.chat("Remember the locker code 4417", session: "late")
            #expect(late.status == 200)
            #expect(late.header("X-Memory-Recall") == "lexical")
            // The wait is bounded by embeddings.query_timeout_ms, not by the embedder.
            #expect(try #require(Double(late.header("X-Memory-Recall-Ms") ?? "")) < 15_000)
            proxy.fake.setEmbeddingsDelay(milliseconds: 0)

            proxy.fake.setEmbeddingsFailure(status: 500)
            let (failed, _) = try await proxy.chat("What is the locker code?", session: "late")
            #expect(failed.status == 200)
            #expect(failed.header("X-Memory-Recall") == "lexical")
            #expect(try await proxy.chat("Is it still raining?", session: "late").response.status == 200)
            proxy.fake.setEmbeddingsFailure(status: nil)

            // The exchanges were stored all the same; their vectors follow once the embedder answers again.
            try await allEmbedded(store, count: 6)
            let (recovered, _) = try await proxy.chat("What is the locker code?", session: "late")
            #expect(recovered.header("X-Memory-Recall") == "hybrid")
            #expect(proxy.lastUpstreamBody.contains("4417"))
            let metrics = String(decoding: proxy.metrics.emitToBuffer(), as: UTF8.self)
            #expect(metrics.contains(#"memory_query_embeddings_total{outcome="late"} 1"#))
            #expect(!metrics.contains(#"memory_query_embeddings_total{outcome="failed"} 0"#))
        }
    }

    @Test("a change of model or dimensions makes every vector stale and the embedder backfills")
    func modelChangeBackfills() async throws {
        let path = FileManager.default.temporaryDirectory
            .appendingPathComponent("memproxy-test-\(UUID().uuidString).db").path
        let first = try vectorStore(path: path)
        try await withEmbeddings(first) { proxy in
            #expect(try await proxy.chat(Self.fact, session: "pets").response.status == 200)
            try await allEmbedded(first, count: 2)
        }
        let second = try vectorStore(path: path, model: "\(Self.model)@32")
        try await withEmbeddings(second, dimensions: 32) { proxy in
            try await allEmbedded(second, count: 2, model: "\(Self.model)@32")
            let status = try await second.embeddingStatus()
            #expect(status.model == "\(Self.model)@32" && status.stale == 0)
            let (response, _) = try await proxy.chat(Self.paraphrase, session: "pets")
            #expect(response.header("X-Memory-Recall") == "hybrid")
            #expect(proxy.lastUpstreamBody.contains("Miso"))
        }
    }
}
