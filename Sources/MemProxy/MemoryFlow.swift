import Foundation
import HTTPTypes
import Hummingbird
import Logging
import MemProxyCore
import MemProxyStore
import MemProxyUpstream
import NIOCore
import Synchronization

/// The memory half of every API that carries a conversation (chat completions, Responses, Anthropic Messages):
/// scope → recall → inject → forward → capture → store. What differs per API is its ``WireDialect``.
///
/// Everything here is best effort around the request: a store that fails never breaks the proxy
/// (unless `memory.fail_open = false`), and storing never delays the response.
struct MemoryFlow: Sendable {
    let store: any MemoryStore
    let configuration: ProxyConfiguration.Memory
    let metrics: AppMetrics
    /// Builds the injected block; shared with the memory API's recall endpoint.
    let contextBuilder: MemoryContextBuilder
    /// Headers memproxy consumes itself and never forwards (lowercased session header names).
    let consumedHeaders: Set<String>
    /// The blocks of recent responses that can be continued by id, for their continuations.
    let responses = ResponseBlocks()

    init(
        store: any MemoryStore, configuration: ProxyConfiguration.Memory, metrics: AppMetrics,
        queryEmbedder: QueryEmbedder? = nil
    ) {
        self.store = store
        self.configuration = configuration
        self.metrics = metrics
        self.contextBuilder = MemoryContextBuilder(
            store: store, maxInjectedTokens: configuration.maxInjectedTokens, queryEmbedder: queryEmbedder)
        self.consumedHeaders = Set(configuration.sessionHeaders.map { $0.lowercased() })
    }

    static let modeHeader = "X-Memory-Mode"

    /// The session and mode a request asked for; nil session means "proxy without memory".
    struct Scope {
        var session: String?
        var mode: MemoryMode
    }

    /// Reads and validates the memory headers. Throws a 400 for invalid ones.
    func scope(of request: Request) throws -> Scope {
        var session: String?
        for name in self.configuration.sessionHeaders {
            guard let field = HTTPField.Name(name), let value = request.headers[field], !value.isEmpty else { continue }
            guard SessionIDValidator.isValid(value) else {
                throw OpenAIError(
                    status: .badRequest,
                    message:
                        "The \(name) header is not a valid session id: use 1 to 200 characters without control characters.",
                    param: name,
                    code: "invalid_session_id",
                    shouldRetry: false
                )
            }
            session = value
            break
        }
        var mode = MemoryMode.on
        if let raw = request.headers[HTTPField.Name(Self.modeHeader)!] {
            guard let parsed = MemoryMode(header: raw) else {
                throw OpenAIError(
                    status: .badRequest,
                    message: "X-Memory-Mode must be one of on, off, read, write (got \"\(raw.prefix(40))\").",
                    param: Self.modeHeader,
                    code: "invalid_memory_mode",
                    shouldRetry: false
                )
            }
            mode = parsed
        }
        if session == nil, self.configuration.requireSession, mode != .off {
            let names = self.configuration.sessionHeaders.joined(separator: " or ")
            throw OpenAIError(
                status: .badRequest,
                message: "This memproxy requires a session: send a \(names) header naming the conversation's session.",
                param: self.configuration.sessionHeaders.first,
                code: "session_required",
                shouldRetry: false
            )
        }
        return Scope(session: session, mode: mode)
    }

    /// The outcome of recall + injection for one request.
    struct Injection {
        var body: ByteBuffer
        /// The injected block, or nil when nothing was injected.
        var block: String?
        var memoryIDs: [String] = []
        var tokens = 0
        var recallMs: Double
        var storeFailed: Bool
        /// With `[embeddings]` on: how recall ranked (`X-Memory-Recall`).
        var recallMode: RecallMode?
        /// The injection record, not yet submitted (the caller submits it, or hands it to the capture to submit
        /// with the upstream's response id).
        var record: InjectionRecord?
    }

    /// 503 `memory_unavailable` (with `memory.fail_open = false`), starting with `reason`.
    static func memoryUnavailable(_ reason: String) -> OpenAIError {
        OpenAIError(
            status: .serviceUnavailable,
            message: reason
                + ", and memory.fail_open is false. Retry later, or send X-Memory-Mode: off to proxy without memory.",
            type: "server_error",
            code: "memory_unavailable"
        )
    }

    /// Whether the store's write queue is full (`memory.max_queued_writes`) even after waiting up to
    /// `memory.recall_timeout_ms`: the request must then submit nothing. Throws 503 `memory_unavailable` instead
    /// with `memory.fail_open = false`.
    func isBacklogged(logger: Logger) async throws -> Bool {
        let timeout = Duration.milliseconds(self.configuration.recallTimeoutMs)
        guard await !self.store.waitForWriteCapacity(timeout: timeout) else { return false }
        self.metrics.recordBacklogSkipped()
        logger.warning(
            "memory.backlog_skipped",
            metadata: ["memory.max_queued_writes": .stringConvertible(self.configuration.maxQueuedWrites)]
        )
        guard self.configuration.failOpen else {
            throw Self.memoryUnavailable("The memory writer is behind (memory.max_queued_writes is reached)")
        }
        return true
    }

    /// Recalls the session's memories for the request's newest user text and injects them where
    /// `memory.placement` (and the API's rules) say. A continuation of a kept response (Responses'
    /// `previous_response_id` without a new user message) gets the block that response's request got.
    func inject<R: MemoryRequest>(
        into request: R,
        api: String,
        originalBody: ByteBuffer,
        session: String,
        requestID: String,
        logger: Logger
    ) async throws -> Injection {
        guard self.configuration.topK > 0 else {
            return Injection(body: originalBody, recallMs: 0, storeFailed: false)
        }
        let start = ContinuousClock.now
        var block: (text: String, ids: [String], scores: [Double], tokens: Int)?
        var recallMs: Double
        var recallMode: RecallMode?
        /// What recall searched with (a reused block: what the earlier request searched with).
        var query = request.newestUserText
        do {
            if let previous = request.continuedResponseID,
                let earlier = try await self.responseBlock(session: session, responseID: previous)
            {
                recallMs = AccessLogMiddleware.seconds(since: start) * 1000
                block = (earlier.block, earlier.memoryIDs, earlier.scores, earlier.tokens)
                query = earlier.query ?? query
            } else {
                let context = try await self.context(for: request, session: session)
                recallMs = context.recallMs
                recallMode = context.recallMode
                if let rendered = context.block {
                    block = (
                        rendered.text, rendered.memories.map(\.id), rendered.memories.map(\.score), rendered.tokens
                    )
                }
            }
        } catch {
            logger.error(
                "memory.recall_failed",
                metadata: ["memory.session": .string(session), "error": .string("\(error)")]
            )
            guard self.configuration.failOpen else {
                throw Self.memoryUnavailable("The memory store is unavailable")
            }
            self.metrics.recordFailOpen()
            return Injection(body: originalBody, recallMs: 0, storeFailed: true)
        }
        self.metrics.recordRecall(milliseconds: recallMs)
        self.metrics.recordMemory(recallMs: recallMs, memories: block?.ids.count ?? 0, tokens: block?.tokens ?? 0)
        guard let block else {
            return Injection(body: originalBody, recallMs: recallMs, storeFailed: false, recallMode: recallMode)
        }
        var edited = request
        edited.inject(block.text, placement: self.configuration.placement)
        self.metrics.recordInjected(count: block.ids.count)
        logger.info(
            "memory.injected",
            metadata: [
                "memory.session": .string(session),
                "memory.api": .string(api),
                "memory.ids": .array(block.ids.map { .string($0) }),
                "memory.scores": .array(block.scores.map { .stringConvertible(($0 * 1000).rounded() / 1000) }),
                "memory.tokens": .stringConvertible(block.tokens),
                "memory.recall_ms": .stringConvertible((recallMs * 1000).rounded() / 1000),
                "memory.recall": .string(recallMode?.rawValue ?? "lexical"),
            ]
        )
        logger.debug("memory.injected_text", metadata: ["memory.block": .string(block.text)])
        let record = InjectionRecord(
            requestID: requestID,
            sessionID: session,
            createdAt: Date(),
            model: request.model,
            memoryIDs: block.ids,
            scores: block.scores,
            tokens: block.tokens,
            recallMs: recallMs,
            block: block.text,
            api: api,
            query: query
        )
        return Injection(
            body: ByteBuffer(bytes: edited.serialized()),
            block: block.text,
            memoryIDs: block.ids,
            tokens: block.tokens,
            recallMs: recallMs,
            storeFailed: false,
            recallMode: recallMode,
            record: record
        )
    }

    /// Recall for the request's newest user text, from the session's in-memory index when it is current, else
    /// from the store within `memory.recall_timeout_ms`.
    private func context(for request: some MemoryRequest, session: String) async throws -> MemoryContext {
        let builder = self.contextBuilder
        let (query, excluding, topK) = (request.newestUserText, request.messageTexts, self.configuration.topK)
        // Recall by meaning (`[embeddings]`): the query's embedding first, within its own deadline; late → lexical.
        let embedding = await builder.embedding(for: topK > 0 ? query : nil)
        if let cached = builder.buildCached(
            session: session, query: query, excluding: excluding, topK: topK, embedding: embedding)
        {
            // The session's index in memory is current: no database read, nothing to wait for.
            return cached
        }
        // A locked or stalled database must not hold the request: past the deadline we fail open.
        return try await withDeadline(milliseconds: self.configuration.recallTimeoutMs) {
            try await builder.build(
                session: session, query: query, excluding: excluding, topK: topK, embedding: embedding)
        }
    }

    /// The injection of the request that produced `responseID` in `session`: from this process's recent
    /// responses, else from the injection log (another replica's, or from before a restart).
    private func responseBlock(session: String, responseID: String) async throws -> InjectionRecord? {
        if let recent = self.responses.record(session: session, responseID: responseID) { return recent }
        guard let managed = self.store as? any ManagedMemoryStore else { return nil }
        let filter = InjectionFilter(limit: 1, responseID: responseID)
        return try await withDeadline(milliseconds: self.configuration.recallTimeoutMs) {
            try await managed.injections(session: session, filter: filter).first?.record
        }
    }

    /// The memory response headers for a request that had a session.
    static func responseHeaders(session: String, injection: Injection?, backlogged: Bool = false) -> [(String, String)]
    {
        var headers = [
            ("X-Memory-Session", session),
            ("X-Memory-Injected", String(injection?.memoryIDs.count ?? 0)),
            ("X-Memory-Tokens", String(injection?.tokens ?? 0)),
            ("X-Memory-Recall-Ms", String(format: "%.2f", injection?.recallMs ?? 0)),
        ]
        if let mode = injection?.recallMode { headers.append(("X-Memory-Recall", mode.rawValue)) }
        if injection?.storeFailed == true {
            headers.append(("X-Memory-Error", "store_unavailable"))
        } else if backlogged {
            headers.append(("X-Memory-Error", "store_backlog"))
        }
        return headers
    }
}
