import Foundation
import HTTPTypes
public import Logging
import MemProxyCore
import MemProxyStore
import MemProxyUpstream
import Metrics

/// Memory management: what `/memory/v1` serves and what the `memproxy memories …` commands run, in one place.
///
/// Every operation validates its input (400 with `param`), is scoped by one session (a memory of another
/// session is "not found"), and throws ``OpenAIError``. Store failures become 503 `memory_unavailable`.
public struct MemoryAPI: Sendable {
    let store: any ManagedMemoryStore
    let contextBuilder: MemoryContextBuilder
    /// `top_k` when a recall preview names none: `memory.top_k`, what the proxy injects with.
    let defaultTopK: Int

    init(store: any ManagedMemoryStore, contextBuilder: MemoryContextBuilder, defaultTopK: Int) {
        self.store = store
        self.contextBuilder = contextBuilder
        self.defaultTopK = defaultTopK
    }

    /// Opens the configured memory database directly (the CLI; safe while the server runs, thanks to WAL).
    ///
    /// - Parameters:
    ///   - configuration: Where the database is (`memory.database`) and the token budget of recall previews.
    ///   - logger: For store errors.
    ///   - create: Whether a missing database file may be created.
    /// - Throws: ``OpenAIError`` (`not_found` when the file is missing and `create` is false,
    ///   `memory_unavailable` when it cannot be opened).
    public static func open(configuration: ProxyConfiguration, logger: Logger, create: Bool) throws -> MemoryAPI {
        let path = configuration.memory.database
        guard create || FileManager.default.fileExists(atPath: path) else {
            throw OpenAIError(
                status: .notFound,
                message:
                    "There is no memory database at \(path). Pass --database PATH, or run memproxy once to create it.",
                code: "not_found"
            )
        }
        let store: SQLiteMemoryStore
        do {
            store = try makeSQLiteStore(configuration: configuration, logger: logger)
        } catch {
            throw Self.unavailable(error)
        }
        // A recall preview ranks as the proxy does: with `[embeddings]` on, the query is embedded too (an engine for
        // this process's few calls; it ends with the process).
        var queryEmbedder: QueryEmbedder?
        if configuration.embeddings.enabled {
            let engine = CurlEngine(logger: logger)
            Task.detached { try? await engine.run() }
            if let client = configuration.embeddings.client(upstream: engine) {
                queryEmbedder = QueryEmbedder(
                    embedder: client, timeoutMs: configuration.embeddings.queryTimeoutMs, logger: logger,
                    metricsFactory: NOOPMetricsHandler.instance)
            }
        }
        let builder = MemoryContextBuilder(
            store: store, maxInjectedTokens: configuration.memory.maxInjectedTokens, queryEmbedder: queryEmbedder)
        return MemoryAPI(store: store, contextBuilder: builder, defaultTopK: configuration.memory.topK)
    }

    // MARK: - Memories

    /// Adds a memory by hand (`source` = `api`); it is recallable when this returns.
    ///
    /// - Parameters:
    ///   - session: The session.
    ///   - content: The text (at most 32 KiB).
    ///   - type: `episodic`, `semantic` (default) or `procedural`.
    ///   - metadata: A JSON object as text (at most 16 KiB); `{}` by default.
    public func add(session: String, content: String, type: String?, metadata: String?) async throws -> MemoryObject {
        try await self.add(
            session: session, content: content, type: type, metadataJSON: MemoryInput.metadata(text: metadata))
    }

    func add(session: String, content: String, type: String?, metadataJSON: String?) async throws -> MemoryObject {
        let memory = Memory(
            sessionID: try MemoryInput.session(session),
            type: try MemoryInput.type(type) ?? .semantic,
            content: try MemoryInput.content(content),
            createdAt: Date(),
            source: "api",
            metadata: metadataJSON ?? "{}"
        )
        try await self.storeCall { try await self.store.add(memory) }
        return MemoryObject(memory)
    }

    /// One page of the session's memories, newest first.
    ///
    /// - Parameters:
    ///   - session: The session.
    ///   - type: Only this type.
    ///   - limit: 1–500, default 50.
    ///   - cursor: `next_cursor` of the previous page.
    public func list(session: String, type: String?, limit: Int?, cursor: String?) async throws -> ListPage<
        MemoryObject
    > {
        let session = try MemoryInput.session(session)
        let type = try MemoryInput.type(type)
        let limit = try MemoryInput.limit(limit, bounds: MemoryInput.listLimit)
        let cursor = try MemoryInput.cursor(cursor, MemoryCursor.init(token:))
        let page = try await self.storeCall {
            try await self.store.memories(
                session: session, type: type, order: .newestFirst, limit: limit, after: cursor)
        }
        return ListPage(data: page.memories.map { MemoryObject($0) }, nextCursor: page.nextCursor?.token)
    }

    /// The memory `id` of `session`; 404 when it does not exist in that session.
    public func get(session: String, id: String) async throws -> MemoryObject {
        let session = try MemoryInput.session(session)
        guard let memory = try await self.storeCall({ try await self.store.memory(session: session, id: id) }) else {
            throw Self.notFound(id: id, session: session)
        }
        return MemoryObject(memory)
    }

    /// Changes content, type and/or metadata (metadata is replaced, not merged); the search index follows.
    public func edit(session: String, id: String, content: String?, type: String?, metadata: String?) async throws
        -> MemoryObject
    {
        try await self.edit(
            session: session, id: id, content: content, type: type, metadataJSON: MemoryInput.metadata(text: metadata))
    }

    func edit(session: String, id: String, content: String?, type: String?, metadataJSON: String?) async throws
        -> MemoryObject
    {
        let session = try MemoryInput.session(session)
        guard content != nil || type != nil || metadataJSON != nil else {
            throw MemoryInput.invalid("Nothing to change: give content, type and/or metadata.", param: nil)
        }
        let changes = MemoryChanges(
            content: try content.map { try MemoryInput.content($0) },
            type: try MemoryInput.type(type),
            metadata: metadataJSON,
            updatedAt: Date()
        )
        guard
            let memory = try await self.storeCall({
                try await self.store.update(session: session, id: id, changes: changes)
            })
        else { throw Self.notFound(id: id, session: session) }
        return MemoryObject(memory)
    }

    /// Deletes one memory; it is never recalled or injected again. 404 when it is not in that session.
    public func delete(session: String, id: String) async throws {
        let session = try MemoryInput.session(session)
        guard try await self.storeCall({ try await self.store.delete(session: session, id: id) }) else {
            throw Self.notFound(id: id, session: session)
        }
    }

    /// Forgets a whole session: its memories, injection records and exchange records. Returns the memories
    /// deleted (0 for an unknown session). Exchanges still queued for the writer are committed first, so they
    /// are forgotten too.
    public func forget(session: String) async throws -> Int {
        let session = try MemoryInput.session(session)
        await self.store.flush()
        return try await self.storeCall { try await self.store.forget(session: session) }
    }

    // MARK: - Recall, injections, sessions

    /// Previews injection: the block the proxy would inject into a chat request whose only message is the user
    /// message `query`, with `top_k` recalled memories (1–50; default `memory.top_k`, as the proxy) and the
    /// configured token budget. With `explain`, each recalled memory carries the parts of its score
    /// (``RecallExplanation``); procedural memories, which lead every block whatever the query, carry none.
    public func recall(session: String, query: String, topK: Int?, explain: Bool = false) async throws -> RecallResult {
        let session = try MemoryInput.session(session)
        let query = try MemoryInput.content(query, param: "query")
        let topK = try MemoryInput.limit(topK, name: "top_k", bounds: (self.defaultTopK, MemoryInput.topKRange))
        // As the proxy ranks: with the query's embedding when `[embeddings]` is on (late → lexical).
        let embedding = await self.contextBuilder.embedding(for: topK > 0 ? query : nil)
        let context = try await self.storeCall {
            try await self.contextBuilder.build(
                session: session, query: query, excluding: [query], topK: topK, explain: explain, embedding: embedding)
        }
        let memories = (context.block?.memories ?? []).compactMap { item in
            context.candidates.first { $0.id == item.id }.map {
                MemoryObject($0, score: item.score, explanation: context.explanations[item.id])
            }
        }
        return RecallResult(
            memories: memories, context: context.block?.text ?? "", recall: context.recallMode?.rawValue)
    }

    /// Why request `requestID` got the memories it got: its injection record, and recall replayed now, with
    /// explanations, for the text it recalled with (``ExplainResult``). 404 `not_found` when no injection was
    /// recorded for that request.
    public func explain(requestID: String) async throws -> ExplainResult {
        guard let stored = try await self.storeCall({ try await self.store.injection(requestID: requestID) }) else {
            throw OpenAIError(
                status: .notFound,
                message: "No injection is recorded for request \(requestID). Take the id from the response's "
                    + "X-Memproxy-Request-Id header of a request that had memories injected; records older than "
                    + "memory.injection_retention_days are deleted.",
                param: "request_id",
                code: "not_found"
            )
        }
        var replay: RecallResult?
        if let query = stored.record.query, !query.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
            replay = try await self.recall(session: stored.record.sessionID, query: query, topK: nil, explain: true)
        }
        return ExplainResult(injection: InjectionObject(stored), replayedNow: replay)
    }

    /// Injection records of the session, newest first (or, with `after`, the ones stored after that sequence
    /// number, oldest first).
    ///
    /// - Parameters:
    ///   - session: The session.
    ///   - requestID: Only this request's record.
    ///   - limit: 1–500, default 50.
    ///   - after: A ``InjectionObject/sequence`` already seen.
    public func injections(session: String, requestID: String?, limit: Int?, after: Int64? = nil) async throws
        -> [InjectionObject]
    {
        let session = try MemoryInput.session(session)
        let limit = try MemoryInput.limit(limit, bounds: MemoryInput.listLimit)
        let filter = InjectionFilter(requestID: requestID, limit: limit, afterSequence: after)
        return try await self.storeCall { try await self.store.injections(session: session, filter: filter) }
            .map(InjectionObject.init)
    }

    /// One page of sessions, by session id, with memory counts and last activity.
    public func sessions(limit: Int?, cursor: String?) async throws -> ListPage<SessionObject> {
        let limit = try MemoryInput.limit(limit, bounds: MemoryInput.listLimit)
        let cursor = try MemoryInput.cursor(cursor, SessionCursor.init(token:))
        let page = try await self.storeCall { try await self.store.sessions(limit: limit, after: cursor) }
        return ListPage(data: page.sessions.map(SessionObject.init), nextCursor: page.nextCursor?.token)
    }

    // MARK: - Export, import

    /// Writes the session's memories as JSON Lines (one memory object per line, oldest first), page by page.
    ///
    /// - Parameters:
    ///   - session: The session.
    ///   - write: Receives each page's lines (each ending in `"\n"`).
    /// - Returns: How many memories were written.
    @discardableResult
    public func export(session: String, write: (String) async throws -> Void) async throws -> Int {
        let session = try MemoryInput.session(session)
        var cursor: MemoryCursor?
        var count = 0
        repeat {
            let after = cursor
            let page = try await self.storeCall {
                try await self.store.memories(
                    session: session, type: nil, order: .oldestFirst, limit: 500, after: after)
            }
            guard !page.memories.isEmpty else { break }
            try await write(page.memories.map { MemoryObject($0).json + "\n" }.joined())
            count += page.memories.count
            cursor = page.nextCursor
        } while cursor != nil
        return count
    }

    /// Imports JSON Lines (as written by ``export(session:write:)``) into `session`, all or nothing.
    ///
    /// Content, type, role, metadata, source and both timestamps are kept, and so is the id unless another
    /// session uses it (then the copy gets a new id). A line whose id already exists in the session is skipped.
    /// - Returns: `(imported, skipped)`.
    public func importLines(session: String, _ bytes: [UInt8]) async throws -> (imported: Int, skipped: Int) {
        let session = try MemoryInput.session(session)
        let memories = try MemoryInput.importLines(bytes, session: session, now: Date())
        let summary = try await self.storeCall { try await self.store.importMemories(memories) }
        return (summary.imported, summary.skipped)
    }

    // MARK: - Errors

    static func notFound(id: String, session: String) -> OpenAIError {
        OpenAIError(
            status: .notFound,
            message: "No memory \(id.prefix(100)) in session \(session.prefix(200)).",
            param: "id",
            code: "not_found",
            shouldRetry: false
        )
    }

    static func unavailable(_ error: any Error) -> OpenAIError {
        OpenAIError(
            status: .serviceUnavailable,
            message: "The memory store failed (\(error)). Retry later.",
            type: "server_error",
            code: "memory_unavailable"
        )
    }

    /// Runs a store call, turning its failures into 503 `memory_unavailable`.
    private func storeCall<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as OpenAIError {
            throw error
        } catch {
            throw Self.unavailable(error)
        }
    }
}
