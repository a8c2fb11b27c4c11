import Foundation
import MemProxyStore

/// Gives a store's memories their vectors the way memproxy's embedder does, through the store's ``EmbeddingStore``
/// API: take the queue in batches (`pendingEmbeddings`), hand the vectors back (`storeEmbeddings`). The vectors come
/// from `vector` (a cache, or a generator) instead of an embeddings API.
enum StoreVectors {
    struct Fed {
        /// Vectors stored.
        var stored = 0
        /// Batches taken from the queue.
        var batches = 0
        /// Wall time of the whole feed (queue reads, stores and `vector` calls).
        var seconds = 0.0
        /// Wall time of the store's calls alone (`pendingEmbeddings` + `storeEmbeddings`), without making the
        /// vectors.
        var storeSeconds = 0.0
    }

    struct MissingVector: Error, CustomStringConvertible {
        let content: String
        var description: String { "no vector for a queued memory: '\(content.prefix(80))'" }
    }

    /// Works off the whole queue (optionally one session's) in batches of `batch`. Throws when `vector` has none for a
    /// queued memory (it would stay queued and come back first forever).
    static func feed(
        _ store: some EmbeddingStore,
        model: String,
        batch: Int,
        session: String? = nil,
        progress: Bool = false,
        vector: (PendingEmbedding) throws -> [Float]?
    ) async throws -> Fed {
        var fed = Fed()
        let start = ContinuousClock.now
        var storeTime = Duration.zero
        while true {
            let readStart = ContinuousClock.now
            let pending = try await store.pendingEmbeddings(limit: batch, session: session)
            storeTime += ContinuousClock.now - readStart
            guard !pending.isEmpty else { break }
            var embeddings: [(memory: PendingEmbedding, vector: [Float])] = []
            embeddings.reserveCapacity(pending.count)
            for memory in pending {
                guard let made = try vector(memory) else { throw MissingVector(content: memory.content) }
                embeddings.append((memory, made))
            }
            let writeStart = ContinuousClock.now
            let stored = try await store.storeEmbeddings(embeddings, model: model)
            storeTime += ContinuousClock.now - writeStart
            // A memory skipped by the store (deleted or edited meanwhile: never here) would be handed out again.
            guard stored > 0 else { break }
            fed.stored += stored
            fed.batches += 1
            if progress {
                let elapsed = milliseconds(ContinuousClock.now - start) / 1000
                FileHandle.standardError.write(Data("  storing vectors: \(fed.stored) (\(format(elapsed, 1)) s)\r".utf8))
            }
        }
        if progress { FileHandle.standardError.write(Data("\n".utf8)) }
        fed.seconds = milliseconds(ContinuousClock.now - start) / 1000
        fed.storeSeconds = milliseconds(storeTime) / 1000
        return fed
    }

    /// A deterministic pseudo-random unit vector of `dimensions` components (Gaussian components, normalised: uniform
    /// on the sphere), the same for the same `seed`.
    static func randomUnitVector(seed: UInt64, dimensions: Int) -> [Float] {
        var random = SplitMix64(seed: seed &* 0x2545_F491_4F6C_DD1D &+ 1)
        var vector = [Float](repeating: 0, count: dimensions)
        var index = 0
        while index < dimensions {
            // Box–Muller: two Gaussians from two uniforms in (0, 1].
            let u1 = (Double(random.next() >> 11) + 1) / Double(1 << 53)
            let u2 = Double(random.next() >> 11) / Double(1 << 53)
            let radius = (-2 * log(u1)).squareRoot()
            vector[index] = Float(radius * cos(2 * .pi * u2))
            if index + 1 < dimensions { vector[index + 1] = Float(radius * sin(2 * .pi * u2)) }
            index += 2
        }
        let norm = vector.reduce(Float(0)) { $0 + $1 * $1 }.squareRoot()
        return norm > 0 ? vector.map { $0 / norm } : vector
    }
}
