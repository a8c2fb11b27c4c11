import Foundation
import Logging
import MemProxyUpstream
import Metrics
import Synchronization

/// Something that turns texts into embedding vectors (``EmbeddingsClient`` in production; tests may pass their own).
protocol TextEmbedder: Sendable {
    func embed(_ texts: [String], timeout: Duration) async throws -> [[Float]]
}

extension EmbeddingsClient: TextEmbedder {}

/// How one request's recall ranked: by meaning and words (`hybrid`), or by words alone (`lexical`: embeddings are
/// on, but the query's embedding was late or failed). The `X-Memory-Recall` response header.
enum RecallMode: String, Sendable {
    case hybrid, lexical
}

/// Embeds the newest user text on the request path, within `embeddings.query_timeout_ms`: late or failed → `nil`
/// (recall is lexical for that request, never an error). A small cache answers a repeated text without a call.
final class QueryEmbedder: Sendable {
    let embedder: any TextEmbedder
    let timeoutMs: Int
    private let cache = Mutex(Cache())
    private let logger: Logger
    private let outcomes: [String: Counter]

    /// Two generations of at most `capacity / 2` texts each: a hit in the older one moves it to the newer; when the
    /// newer fills, the older is dropped. O(1), and a text used in the last `capacity / 2` lookups is always kept.
    struct Cache {
        static let capacity = 2048
        var current: [String: [Float]] = [:]
        var previous: [String: [Float]] = [:]

        mutating func get(_ text: String) -> [Float]? {
            if let vector = current[text] { return vector }
            guard let vector = previous.removeValue(forKey: text) else { return nil }
            put(text, vector)
            return vector
        }

        mutating func put(_ text: String, _ vector: [Float]) {
            if current.count >= Self.capacity / 2 {
                previous = current
                current = [:]
            }
            current[text] = vector
        }
    }

    init(embedder: any TextEmbedder, timeoutMs: Int, logger: Logger, metricsFactory: any MetricsFactory) {
        self.embedder = embedder
        self.timeoutMs = timeoutMs
        self.logger = logger
        var outcomes: [String: Counter] = [:]
        for outcome in ["embedded", "cached", "late", "failed"] {
            outcomes[outcome] = Counter(
                label: "memory_query_embeddings_total", dimensions: [("outcome", outcome)], factory: metricsFactory)
        }
        self.outcomes = outcomes
    }

    /// The embedding of `text`, or `nil` when it did not arrive within the deadline (or failed).
    func vector(for text: String) async -> [Float]? {
        let key = String(text.prefix(8192))
        if let hit = cache.withLock({ $0.get(key) }) {
            outcomes["cached"]?.increment()
            return hit
        }
        let embedder = self.embedder
        // The deadline below decides; the call's own limit only stops the transfer soon after.
        let timeout = Duration.milliseconds(timeoutMs + 1000)
        do {
            let vectors = try await withDeadline(milliseconds: timeoutMs) {
                try await embedder.embed([key], timeout: timeout)
            }
            guard let vector = vectors.first, !vector.isEmpty else { throw EmptyEmbedding() }
            cache.withLock { $0.put(key, vector) }
            outcomes["embedded"]?.increment()
            return vector
        } catch let error where error is RecallTimeout || (error as? EmbeddingsError)?.code == .timeout {
            outcomes["late"]?.increment()
            logger.debug("memory.query_embedding_late", metadata: ["embeddings.timeout_ms": "\(timeoutMs)"])
            return nil
        } catch {
            outcomes["failed"]?.increment()
            logger.warning("memory.query_embedding_failed", metadata: ["error": "\(error)"])
            return nil
        }
    }

    private struct EmptyEmbedding: Error, CustomStringConvertible {
        var description: String { "the embeddings API answered no vector" }
    }
}
