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

    init(store: any MemoryStore, configuration: ProxyConfiguration.Memory, metrics: AppMetrics) {
        self.store = store
        self.configuration = configuration
        self.metrics = metrics
        self.contextBuilder = MemoryContextBuilder(store: store, maxInjectedTokens: configuration.maxInjectedTokens)
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
            return Injection(body: originalBody, recallMs: 0, storeFailed: true)
        }
        self.metrics.recordRecall(milliseconds: recallMs)
        guard let block else {
            return Injection(body: originalBody, recallMs: recallMs, storeFailed: false)
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
            record: record
        )
    }

    /// Recall for the request's newest user text, from the session's in-memory index when it is current, else
    /// from the store within `memory.recall_timeout_ms`.
    private func context(for request: some MemoryRequest, session: String) async throws -> MemoryContext {
        let builder = self.contextBuilder
        let (query, excluding, topK) = (request.newestUserText, request.messageTexts, self.configuration.topK)
        if let cached = builder.buildCached(session: session, query: query, excluding: excluding, topK: topK) {
            // The session's index in memory is current: no database read, nothing to wait for.
            return cached
        }
        // A locked or stalled database must not hold the request: past the deadline we fail open.
        return try await withDeadline(milliseconds: self.configuration.recallTimeoutMs) {
            try await builder.build(session: session, query: query, excluding: excluding, topK: topK)
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
        if injection?.storeFailed == true {
            headers.append(("X-Memory-Error", "store_unavailable"))
        } else if backlogged {
            headers.append(("X-Memory-Error", "store_backlog"))
        }
        return headers
    }
}

/// The injection records of the most recent responses that a later request can continue by id (Responses'
/// `previous_response_id`), per session, so that a continuation arriving before the writer has committed the
/// record still finds it. Bounded: the oldest are forgotten first (the injection log still has them).
final class ResponseBlocks: Sendable {
    static let capacity = 4096

    private struct State {
        var records: [String: InjectionRecord] = [:]
        var order: [String] = []
        var head = 0
    }

    private let state = Mutex(State())

    private static func key(_ session: String, _ responseID: String) -> String { session + "\u{0}" + responseID }

    func remember(_ record: InjectionRecord) {
        guard let responseID = record.responseID else { return }
        let key = Self.key(record.sessionID, responseID)
        self.state.withLock { state in
            if state.records.updateValue(record, forKey: key) != nil { return }
            if state.order.count < Self.capacity {
                state.order.append(key)
            } else {
                state.records[state.order[state.head]] = nil
                state.order[state.head] = key
                state.head = (state.head + 1) % Self.capacity
            }
        }
    }

    func record(session: String, responseID: String) -> InjectionRecord? {
        self.state.withLock { $0.records[Self.key(session, responseID)] }
    }
}

/// What the memory block for one request is built from, and the block itself.
struct MemoryContext: Sendable {
    /// The block to inject; `nil` when nothing is left to inject.
    var block: MemoryBlock?
    /// Every memory that was offered to the block: procedural, then recalled (at most a few dozen).
    var candidates: [Memory]
    /// Why each recalled memory scored as it did, by id, when asked (``MemoryContextBuilder/build``'s `explain`).
    var explanations: [String: RecallExplanation] = [:]
    /// Time spent reading the store.
    var recallMs: Double
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

    /// The most procedural memories a block carries.
    static let maxProcedural = 50

    init(store: any MemoryStore, maxInjectedTokens: Int) {
        self.store = store
        self.managed = store as? any ManagedMemoryStore
        self.maxInjectedTokens = maxInjectedTokens
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
        session: String, query: String?, excluding: [String], topK: Int, explain: Bool = false
    ) async throws -> MemoryContext {
        let start = ContinuousClock.now
        let procedural: [Memory]
        var recalled: [RecalledMemory] = []
        if let managed {
            // One read for both (recall also skips procedural memories, which lead the block anyway).
            if explain, let query, topK > 0 {
                (procedural, recalled) = try await managed.explainedContext(
                    session: session, query: query, limit: topK * 2, proceduralLimit: Self.maxProcedural)
            } else {
                (procedural, recalled) = try await managed.context(
                    session: session,
                    query: topK > 0 ? query : nil,
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
        return assemble(procedural: procedural, recalled: recalled, excluding: excluding, topK: topK, start: start)
    }

    /// ``build(session:query:excluding:topK:)`` when the store can recall at once from memory
    /// (``ManagedMemoryStore/cachedContext(session:query:limit:proceduralLimit:)``); `nil` when it cannot.
    func buildCached(session: String, query: String?, excluding: [String], topK: Int) -> MemoryContext? {
        let start = ContinuousClock.now
        guard
            let managed,
            let (procedural, recalled) = managed.cachedContext(
                session: session,
                query: topK > 0 ? query : nil,
                limit: topK * 2,
                proceduralLimit: Self.maxProcedural
            )
        else { return nil }
        return assemble(procedural: procedural, recalled: recalled, excluding: excluding, topK: topK, start: start)
    }

    private func assemble(
        procedural: [Memory], recalled: [RecalledMemory], excluding: [String], topK: Int,
        start: ContinuousClock.Instant
    ) -> MemoryContext {
        let recallMs = AccessLogMiddleware.seconds(since: start) * 1000
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
        var context = MemoryContext(block: block, candidates: procedural + recalled.map(\.memory), recallMs: recallMs)
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
