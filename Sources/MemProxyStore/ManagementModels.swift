public import Foundation

/// A store whose memories can also be listed, edited and deleted one by one (the memory API and the CLI).
///
/// Like recall, every call is scoped by a session id: an id of another session is treated as absent.
public protocol ManagedMemoryStore: MemoryStore {
    /// In one read: the session's procedural memories (newest first, at most `proceduralLimit`) and, when
    /// `query` is given, its `limit` best other memories for it (best first). What a memory block is built from.
    /// With `vector` (the query's embedding), memories are ranked by meaning and words together where the session
    /// has vectors (recall by meaning, ``EmbeddingStore``); without, by words.
    func context(session: String, query: String?, vector: [Float]?, limit: Int, proceduralLimit: Int) async throws
        -> (procedural: [Memory], recalled: [RecalledMemory])

    /// ``context(session:query:vector:limit:proceduralLimit:)`` with each recalled memory's score explained
    /// (``RecalledMemory/explanation``): the same memories in the same order, for the recall API's `"explain"`.
    func explainedContext(session: String, query: String, vector: [Float]?, limit: Int, proceduralLimit: Int)
        async throws -> (procedural: [Memory], recalled: [RecalledMemory])

    /// ``context(session:query:vector:limit:proceduralLimit:)`` when the store can answer at once, from memory,
    /// without blocking; `nil` when it cannot (call the async form).
    func cachedContext(session: String, query: String?, vector: [Float]?, limit: Int, proceduralLimit: Int)
        -> (procedural: [Memory], recalled: [RecalledMemory])?

    /// The memory `id` of `session`; `nil` when it does not exist in that session.
    func memory(session: String, id: String) async throws -> Memory?

    /// One page of `session`'s memories.
    ///
    /// - Parameters:
    ///   - session: The session.
    ///   - type: Only memories of this type; all types when `nil`.
    ///   - order: ``MemoryOrder/newestFirst`` or ``MemoryOrder/oldestFirst`` (by creation time).
    ///   - limit: The most memories on the page.
    ///   - cursor: Where the previous page ended; `nil` for the first page.
    /// - Returns: The page. Keyset pagination: memories written meanwhile never shift or repeat a page.
    func memories(
        session: String,
        type: MemoryType?,
        order: MemoryOrder,
        limit: Int,
        after cursor: MemoryCursor?
    ) async throws -> MemoryPage

    /// Inserts one new memory now (not through the writer queue).
    func add(_ memory: Memory) async throws

    /// Inserts memories in one transaction. A memory whose id already exists in its session is skipped; one
    /// whose id belongs to another session gets a new id.
    func importMemories(_ memories: [Memory]) async throws -> ImportSummary

    /// Applies `changes` to the memory `id` of `session`; returns the updated memory, `nil` when absent.
    func update(session: String, id: String, changes: MemoryChanges) async throws -> Memory?

    /// Deletes the memory `id` of `session`; `false` when absent.
    func delete(session: String, id: String) async throws -> Bool

    /// Deletes every memory, injection record and exchange record of `session`; returns the memories deleted.
    func forget(session: String) async throws -> Int

    /// One page of sessions, ordered by session id.
    func sessions(limit: Int, after cursor: SessionCursor?) async throws -> SessionPage

    /// Injection records of `session` (see ``InjectionFilter``).
    func injections(session: String, filter: InjectionFilter) async throws -> [StoredInjection]

    /// The injection record of request `requestID`, whatever its session; `nil` when there is none.
    func injection(requestID: String) async throws -> StoredInjection?
}

extension ManagedMemoryStore {
    /// Lexical ``context(session:query:vector:limit:proceduralLimit:)``.
    public func context(session: String, query: String?, limit: Int, proceduralLimit: Int) async throws
        -> (procedural: [Memory], recalled: [RecalledMemory])
    {
        try await context(session: session, query: query, vector: nil, limit: limit, proceduralLimit: proceduralLimit)
    }

    /// Lexical ``explainedContext(session:query:vector:limit:proceduralLimit:)``.
    public func explainedContext(session: String, query: String, limit: Int, proceduralLimit: Int) async throws
        -> (procedural: [Memory], recalled: [RecalledMemory])
    {
        try await explainedContext(
            session: session, query: query, vector: nil, limit: limit, proceduralLimit: proceduralLimit)
    }

    /// Lexical ``cachedContext(session:query:vector:limit:proceduralLimit:)``.
    public func cachedContext(session: String, query: String?, limit: Int, proceduralLimit: Int)
        -> (procedural: [Memory], recalled: [RecalledMemory])?
    {
        cachedContext(session: session, query: query, vector: nil, limit: limit, proceduralLimit: proceduralLimit)
    }
}

/// The order of a memory listing. An extensible option type.
public struct MemoryOrder: Sendable, Hashable {
    private enum Base: Sendable, Hashable { case newestFirst, oldestFirst }
    private let base: Base
    private init(_ base: Base) { self.base = base }

    /// By creation time, newest first (ties: the later stored first).
    public static let newestFirst = MemoryOrder(.newestFirst)
    /// By creation time, oldest first (ties: the earlier stored first).
    public static let oldestFirst = MemoryOrder(.oldestFirst)

    var descending: Bool { base == .newestFirst }
}

/// Where a page of memories ended: an opaque token for clients.
public struct MemoryCursor: Sendable, Hashable {
    let createdAt: Double
    let seq: Int64

    init(createdAt: Double, seq: Int64) {
        self.createdAt = createdAt
        self.seq = seq
    }

    /// Reads a token made by ``token``; `nil` for anything else.
    ///
    /// - Parameter token: The token.
    public init?(token: String) {
        let parts = token.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2, parts.allSatisfy({ (1...16).contains($0.count) }),
            let bits = UInt64(parts[0], radix: 16), let seq = Int64(parts[1], radix: 16), seq >= 0
        else { return nil }
        let createdAt = Double(bitPattern: bits)
        guard createdAt.isFinite else { return nil }
        self.init(createdAt: createdAt, seq: seq)
    }

    /// The opaque token (the exact creation time and row of the last memory of the page).
    public var token: String {
        String(createdAt.bitPattern, radix: 16) + "-" + String(seq, radix: 16)
    }
}

/// A page of memories.
public struct MemoryPage: Sendable {
    /// The memories, in the requested order.
    public var memories: [Memory]
    /// Where the next page starts; `nil` on the last page.
    public var nextCursor: MemoryCursor?
}

/// Changes to a memory; `nil` fields are left as they are.
public struct MemoryChanges: Sendable {
    /// The new text (the search index follows it).
    public var content: String?
    /// The new type.
    public var type: MemoryType?
    /// The new metadata, a JSON object as text (replaces the old one).
    public var metadata: String?
    /// The new `updated_at`.
    public var updatedAt: Date

    /// Creates a change set.
    ///
    /// - Parameters:
    ///   - content: The new text.
    ///   - type: The new type.
    ///   - metadata: The new metadata (JSON object text).
    ///   - updatedAt: When the change happens.
    public init(content: String? = nil, type: MemoryType? = nil, metadata: String? = nil, updatedAt: Date) {
        self.content = content
        self.type = type
        self.metadata = metadata
        self.updatedAt = updatedAt
    }
}

/// What an import did.
public struct ImportSummary: Sendable, Equatable {
    /// Memories inserted.
    public var imported: Int
    /// Memories skipped because their id already exists in the session.
    public var skipped: Int
}

/// A session and what it holds.
public struct SessionSummary: Sendable, Equatable {
    /// The session id.
    public var sessionID: String
    /// How many memories it has.
    public var memoryCount: Int
    /// The newest memory's creation time or the newest injection's time, whichever is later.
    public var lastActivity: Date?
}

/// Where a page of sessions ended: an opaque token for clients.
public struct SessionCursor: Sendable, Hashable {
    let sessionID: String

    init(sessionID: String) { self.sessionID = sessionID }

    /// Reads a token made by ``token``; `nil` for anything else.
    ///
    /// - Parameter token: The token.
    public init?(token: String) {
        guard token.hasPrefix("s"), token.count % 2 == 1 else { return nil }
        var bytes: [UInt8] = []
        var index = token.index(after: token.startIndex)
        while index < token.endIndex {
            let next = token.index(index, offsetBy: 2)
            guard let byte = UInt8(token[index..<next], radix: 16) else { return nil }
            bytes.append(byte)
            index = next
        }
        guard let sessionID = String(validating: bytes, as: UTF8.self) else { return nil }
        self.sessionID = sessionID
    }

    /// The opaque token.
    public var token: String {
        "s" + sessionID.utf8.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }
}

/// A page of sessions.
public struct SessionPage: Sendable {
    /// The sessions, by session id.
    public var sessions: [SessionSummary]
    /// Where the next page starts; `nil` on the last page.
    public var nextCursor: SessionCursor?
}

/// Which injection records to read.
public struct InjectionFilter: Sendable {
    /// Only the records of this request.
    public var requestID: String?
    /// Only the record of the request that produced this upstream response (Responses API `resp_…` ids).
    public var responseID: String?
    /// The most records to return.
    public var limit: Int
    /// When set: records stored after this sequence number, oldest first (for following the log). When `nil`:
    /// the newest records, newest first.
    public var afterSequence: Int64?

    /// Creates a filter.
    ///
    /// - Parameters:
    ///   - requestID: Only this request's records.
    ///   - limit: The most records.
    ///   - afterSequence: Records after this sequence number, oldest first.
    ///   - responseID: Only the record of the request that produced this upstream response.
    public init(requestID: String? = nil, limit: Int, afterSequence: Int64? = nil, responseID: String? = nil) {
        self.requestID = requestID
        self.responseID = responseID
        self.limit = limit
        self.afterSequence = afterSequence
    }
}

/// An injection record with its place in the log.
public struct StoredInjection: Sendable {
    /// Increases with every record stored (for `--follow`).
    public var sequence: Int64
    /// The record.
    public var record: InjectionRecord
}
