import Foundation
import MemProxyCore
import MemProxyStore

/// What the memory block for one request is built from, and the block itself.
struct MemoryContext: Sendable {
    /// The block to inject; `nil` when nothing is left to inject.
    var block: MemoryBlock?
    /// Every memory that was offered to the block: procedural, then recalled (at most a few dozen).
    var candidates: [Memory]
    /// Why each recalled memory scored as it did, by id, when asked (``MemoryContextBuilder/build``'s `explain`).
    var explanations: [String: RecallExplanation] = [:]
    /// Time spent recalling: the query's embedding (when on) and reading the store.
    var recallMs: Double
    /// With `[embeddings]` on: whether recall ranked by meaning too (the query's embedding arrived in time).
    var recallMode: RecallMode?
}

/// The ONE function that builds the memory block, used by the proxy for every chat request and by
/// `POST /memory/v1/sessions/{session}/recall` (so a preview is exactly what a request would get).
///
/// The order rule lives in ``InjectionOrder``: the session's procedural memories first (newest first, at most
/// ``maxProcedural``, relevant or not), then the recalled ones with semantic memories boosted; everything within
/// the token budget. `topK` limits the recalled memories; procedural ones come on top of it.
struct MemoryContextBuilder: Sendable {
    let store: any MemoryStore
    /// Procedural memories are read only from stores that can list memories.
    let managed: (any ManagedMemoryStore)?
    let maxInjectedTokens: Int
    /// Embeds queries when `[embeddings]` is on; `nil`: recall is lexical.
    let queryEmbedder: QueryEmbedder?

    /// The most procedural memories a block carries.
    static let maxProcedural = 50

    init(store: any MemoryStore, maxInjectedTokens: Int, queryEmbedder: QueryEmbedder? = nil) {
        self.store = store
        self.managed = store as? any ManagedMemoryStore
        self.maxInjectedTokens = maxInjectedTokens
        self.queryEmbedder = queryEmbedder
    }

    /// The query's embedding for recall by meaning, within `embeddings.query_timeout_ms`: `(nil, nil)` when
    /// embeddings are off (or there is no query), `(nil, .lexical)` when it was late or failed.
    func embedding(for query: String?) async -> QueryEmbedding {
        guard let queryEmbedder, let query, !query.isEmpty else { return QueryEmbedding() }
        let start = ContinuousClock.now
        let vector = await queryEmbedder.vector(for: query)
        return QueryEmbedding(
            vector: vector, mode: vector == nil ? .lexical : .hybrid,
            milliseconds: AccessLogMiddleware.seconds(since: start) * 1000)
    }

    /// What ``embedding(for:)`` found.
    struct QueryEmbedding: Sendable {
        var vector: [Float]?
        var mode: RecallMode?
        var milliseconds = 0.0
    }

    /// Builds the block for a request whose newest user message is `query`.
    ///
    /// - Parameters:
    ///   - session: The session.
    ///   - query: The newest user message; `nil` injects procedural memories only.
    ///   - excluding: Texts the request already contains (those memories are not injected again).
    ///   - topK: The most recalled memories.
    /// - Throws: When the store fails.
    ///   - explain: Whether the recalled memories' scores are explained (``MemoryContext/explanations``).
    func build(
        session: String, query: String?, excluding: [String], topK: Int, explain: Bool = false,
        embedding: QueryEmbedding = QueryEmbedding()
    ) async throws -> MemoryContext {
        let vector = embedding.vector
        let start = ContinuousClock.now
        let procedural: [Memory]
        var recalled: [RecalledMemory] = []
        if let managed {
            // One read for both (recall also skips procedural memories, which lead the block anyway).
            if explain, let query, topK > 0 {
                (procedural, recalled) = try await managed.explainedContext(
                    session: session, query: query, vector: vector, limit: topK * 2,
                    proceduralLimit: Self.maxProcedural)
            } else {
                (procedural, recalled) = try await managed.context(
                    session: session,
                    query: topK > 0 ? query : nil,
                    vector: vector,
                    limit: topK * 2,
                    proceduralLimit: Self.maxProcedural
                )
            }
        } else {
            procedural = []
            if let query, topK > 0 {
                recalled = try await self.store.recall(session: session, query: query, limit: topK * 2)
            }
        }
        return assemble(
            procedural: procedural, recalled: recalled, excluding: excluding, topK: topK, start: start,
            embedding: embedding)
    }

    /// ``build(session:query:excluding:topK:)`` when the store can recall at once from memory
    /// (``ManagedMemoryStore/cachedContext(session:query:limit:proceduralLimit:)``); `nil` when it cannot.
    func buildCached(
        session: String, query: String?, excluding: [String], topK: Int, embedding: QueryEmbedding = QueryEmbedding()
    ) -> MemoryContext? {
        let start = ContinuousClock.now
        guard
            let managed,
            let (procedural, recalled) = managed.cachedContext(
                session: session,
                query: topK > 0 ? query : nil,
                vector: embedding.vector,
                limit: topK * 2,
                proceduralLimit: Self.maxProcedural
            )
        else { return nil }
        return assemble(
            procedural: procedural, recalled: recalled, excluding: excluding, topK: topK, start: start,
            embedding: embedding)
    }

    private func assemble(
        procedural: [Memory], recalled: [RecalledMemory], excluding: [String], topK: Int,
        start: ContinuousClock.Instant, embedding: QueryEmbedding
    ) -> MemoryContext {
        let recallMs = AccessLogMiddleware.seconds(since: start) * 1000 + embedding.milliseconds
        let ordered = InjectionOrder.candidates(
            procedural: procedural.map { Self.injectable($0, score: 0) },
            recalled: recalled.map { Self.injectable($0.memory, score: $0.score) }
        )
        let block = MemoryBlockRenderer.render(
            ordered,
            excluding: excluding,
            topK: topK + procedural.count,
            maxTokens: self.maxInjectedTokens
        )
        var context = MemoryContext(
            block: block, candidates: procedural + recalled.map(\.memory), recallMs: recallMs,
            recallMode: embedding.mode)
        for memory in recalled {
            if let explanation = memory.explanation { context.explanations[memory.memory.id] = explanation }
        }
        return context
    }

    private static func injectable(_ memory: Memory, score: Double) -> InjectableMemory {
        InjectableMemory(
            id: memory.id,
            type: memory.type.rawValue,
            role: memory.role,
            content: memory.content,
            createdAt: Int64(memory.createdAt.timeIntervalSince1970.rounded(.down)),
            score: score
        )
    }
}
