import Foundation
public import Logging
public import MemProxyStore
import MemProxyUpstream
import Metrics

/// What `memproxy embeddings status` and `memproxy embeddings backfill` run, on the database directly (also while
/// the server runs: the queue is in the database, and both work it off without doing anything twice).
public struct EmbeddingsTool: Sendable {
    let store: SQLiteMemoryStore
    let configuration: ProxyConfiguration.Embeddings
    let logger: Logger

    /// Opens `memory.database` (which must exist).
    public static func open(configuration: ProxyConfiguration, logger: Logger) throws -> EmbeddingsTool {
        let api = try MemoryAPI.open(configuration: configuration, logger: logger, create: false)
        guard let store = api.store as? SQLiteMemoryStore else {
            throw EmbedderError(description: "this memory store keeps no vectors")
        }
        return EmbeddingsTool(store: store, configuration: configuration.embeddings, logger: logger)
    }

    /// The configured model (with its dimensions), or `nil` when `[embeddings]` is off.
    public var configuredModel: String? { configuration.enabled ? configuration.fingerprint : nil }

    public func status() async throws -> EmbeddingStatus {
        try await store.embeddingStatus()
    }

    /// Embeds every queued memory (of `session`, or all), in batches of `embeddings.batch_size`, calling `progress`
    /// after each batch with (memories done, memories queued when it started). Making the configured model current
    /// first queues every memory that has no vector of it. Resumable: an interrupted backfill leaves the rest
    /// queued. A failing API is retried with backoff (0.5 s doubling, 5 tries) before the error is thrown.
    ///
    /// - Returns: How many memories were embedded.
    public func backfill(session: String?, progress: (Int, Int) -> Void) async throws -> Int {
        guard configuration.enabled else {
            throw EmbedderError(
                description: "embeddings are off: set embeddings.url and embeddings.model ([embeddings] in proxy.conf, "
                    + "or MEMPROXY_EMBEDDINGS_URL and MEMPROXY_EMBEDDINGS_MODEL)")
        }
        let engine = CurlEngine(logger: logger)
        let running = Task.detached { try? await engine.run() }
        defer { running.cancel() }
        guard let client = configuration.client(upstream: engine) else { return 0 }
        let embedder = Embedder(
            store: store, embedder: client, model: configuration.fingerprint, batchSize: configuration.batchSize,
            logger: logger, metricsFactory: NOOPMetricsHandler.instance)
        try await store.useEmbeddingModel(configuration.fingerprint)
        let total = try await store.queuedEmbeddings(session: session)
        var done = 0
        var failures = 0
        var delay = Embedder.firstRetry
        progress(0, total)
        while true {
            do {
                let count = try await embedder.embedBatch(session: session)
                guard count > 0 else { break }
                done += count
                failures = 0
                delay = Embedder.firstRetry
                progress(done, total)
            } catch {
                failures += 1
                guard failures < 5 else { throw error }
                logger.warning("memory.embeddings_failed", metadata: ["error": "\(error)"])
                try await Task.sleep(for: delay)
                delay = min(delay * 2, Embedder.maxRetry)
            }
        }
        return done
    }
}
