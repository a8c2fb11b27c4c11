import Foundation
import Logging
import MemProxyStore
import Metrics
import ServiceLifecycle

/// Vectors off the request path: works off the store's embedding queue (``EmbeddingStore``) in batches of
/// `embeddings.batch_size` — every new or edited memory, whoever wrote it — through `POST {url}/v1/embeddings`,
/// retrying with backoff (0.5 s doubling to 30 s) while the API fails. A memory is ranked lexically until its
/// vector is stored. Runs as a `Service`; stops at graceful shutdown (the queue is in the database: nothing is lost).
///
/// Metrics: `memory_embeddings_backlog` (memories queued), `memory_embeddings_backlog_age_seconds` (age of the
/// oldest), `memory_embeddings_stored_total`, `memory_embeddings_errors_total`.
final class Embedder: Service, Sendable {
    let store: any EmbeddingStore
    let embedder: any TextEmbedder
    /// What names the vectors (``ProxyConfiguration/Embeddings/fingerprint``).
    let model: String
    let batchSize: Int
    let logger: Logger
    /// How long an idle embedder waits before looking at the queue again (whoever wrote the memories: this
    /// process's writer, the memory API, the CLI, another process).
    let idlePoll: Duration
    private let backlog: Gauge
    private let backlogAge: Gauge
    private let stored: Counter
    private let errors: Counter

    /// The time one call to the embeddings API may take.
    static let callTimeout = Duration.seconds(60)

    init(
        store: any EmbeddingStore, embedder: any TextEmbedder, model: String, batchSize: Int, logger: Logger,
        metricsFactory: any MetricsFactory, idlePoll: Duration = .milliseconds(250)
    ) {
        self.store = store
        self.embedder = embedder
        self.model = model
        self.batchSize = max(1, batchSize)
        self.logger = logger
        self.idlePoll = idlePoll
        backlog = Gauge(label: "memory_embeddings_backlog", dimensions: [], factory: metricsFactory)
        backlogAge = Gauge(label: "memory_embeddings_backlog_age_seconds", dimensions: [], factory: metricsFactory)
        stored = Counter(label: "memory_embeddings_stored_total", dimensions: [], factory: metricsFactory)
        errors = Counter(label: "memory_embeddings_errors_total", dimensions: [], factory: metricsFactory)
    }

    func run() async throws {
        await cancelWhenGracefulShutdown {
            await self.loop()
        }
    }

    private func loop() async {
        var delay = Self.firstRetry
        // The model first: a new one queues every memory that has no vector of it.
        while !Task.isCancelled {
            do {
                let queued = try await store.useEmbeddingModel(model)
                if queued > 0 {
                    logger.info(
                        "memory.embeddings_model_changed",
                        metadata: ["embeddings.model": "\(model)", "embeddings.queued": "\(queued)"])
                }
                break
            } catch {
                logger.error("memory.embeddings_store_failed", metadata: ["error": "\(error)"])
                await pause(&delay)
            }
        }
        var lastStatus = ContinuousClock.now - .seconds(10)
        while !Task.isCancelled {
            if ContinuousClock.now - lastStatus >= .seconds(1) {
                lastStatus = ContinuousClock.now
                await recordStatus()
            }
            do {
                let done = try await embedBatch()
                delay = Self.firstRetry
                if done == 0 { await idle() }
            } catch {
                errors.increment()
                logger.warning(
                    "memory.embeddings_failed",
                    metadata: ["error": "\(error)", "embeddings.retry_in_ms": "\(delay.components.seconds * 1000 + delay.components.attoseconds / 1_000_000_000_000_000)"])
                await pause(&delay)
            }
        }
    }

    /// Embeds and stores one batch of the queue; how many memories it took (0: the queue is empty).
    func embedBatch(session: String? = nil) async throws -> Int {
        let pending = try await store.pendingEmbeddings(limit: batchSize, session: session)
        guard !pending.isEmpty else { return 0 }
        let vectors = try await embedder.embed(pending.map(\.content), timeout: Self.callTimeout)
        guard vectors.count == pending.count else {
            throw EmbedderError(description: "the embeddings API answered \(vectors.count) vectors for \(pending.count) texts")
        }
        let count = try await store.storeEmbeddings(Array(zip(pending, vectors)), model: model)
        stored.increment(by: count)
        return pending.count
    }

    private func recordStatus() async {
        guard let status = try? await store.embeddingStatus() else { return }
        backlog.record(status.queued)
        backlogAge.record(status.oldestQueuedAt.map { max(0, Date().timeIntervalSince($0)) } ?? 0)
    }

    /// Waits `idlePoll` before looking at an empty queue again (a few microseconds of SQL each time).
    private func idle() async {
        try? await Task.sleep(for: idlePoll)
    }

    static let firstRetry = Duration.milliseconds(500)
    static let maxRetry = Duration.seconds(30)

    private func pause(_ delay: inout Duration) async {
        try? await Task.sleep(for: delay)
        delay = min(delay * 2, Self.maxRetry)
    }
}

struct EmbedderError: Error, CustomStringConvertible {
    let description: String
}
