public import Foundation
import MemProxyCore

/// The kind of a memory. An extensible option type: new kinds can be added without breaking clients.
public struct MemoryType: Sendable, Hashable, Codable, CustomStringConvertible {
    private enum Base: String, Sendable, Hashable {
        case episodic, semantic, procedural
    }

    private let base: Base

    private init(_ base: Base) { self.base = base }

    /// What was said: stored automatically from exchanges, one memory per message.
    public static let episodic = MemoryType(.episodic)
    /// A durable fact ("the user's dog is called Rex").
    public static let semantic = MemoryType(.semantic)
    /// A standing instruction or preference ("answer in French").
    public static let procedural = MemoryType(.procedural)

    /// Creates a type from its stored name (`episodic`, `semantic`, `procedural`); `nil` for anything else.
    ///
    /// - Parameter rawValue: The stored name.
    public init?(rawValue: String) {
        guard let base = Base(rawValue: rawValue) else { return nil }
        self.base = base
    }

    /// The stored name.
    public var rawValue: String { base.rawValue }

    /// The stored name.
    public var description: String { base.rawValue }

    /// Decodes from the stored name.
    ///
    /// - Parameter decoder: The decoder.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let raw = try container.decode(String.self)
        guard let value = MemoryType(rawValue: raw) else {
            throw DecodingError.dataCorruptedError(
                in: container,
                debugDescription: "unknown memory type '\(raw)': expected episodic, semantic or procedural"
            )
        }
        self = value
    }

    /// Encodes as the stored name.
    ///
    /// - Parameter encoder: The encoder.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
}

/// One stored memory of a session.
public struct Memory: Sendable, Equatable, Codable {
    /// Opaque identifier, `mem_` followed by 24 lowercase hex characters.
    public var id: String
    /// The session the memory belongs to; every read and write is scoped by it.
    public var sessionID: String
    /// The kind of memory.
    public var type: MemoryType
    /// `user`, `assistant`, or `nil` for memories not said by either.
    public var role: String?
    /// The text.
    public var content: String
    /// When the memory was created.
    public var createdAt: Date
    /// When the memory was last changed.
    public var updatedAt: Date
    /// Where it came from: `exchange`, `api` or `import`.
    public var source: String
    /// A JSON object as text; `{}` by default.
    public var metadata: String
    /// Links the two halves (user, assistant) of one stored exchange.
    public var exchangeID: String?

    /// Creates a memory.
    ///
    /// - Parameters:
    ///   - id: The identifier; a new random one by default.
    ///   - sessionID: The owning session.
    ///   - type: The kind of memory.
    ///   - role: `user`, `assistant` or `nil`.
    ///   - content: The text.
    ///   - createdAt: Creation time.
    ///   - updatedAt: Last change; `createdAt` when `nil`.
    ///   - source: `exchange`, `api` or `import`.
    ///   - metadata: A JSON object as text.
    ///   - exchangeID: The exchange this memory is half of, if any.
    public init(
        id: String = Memory.makeID(),
        sessionID: String,
        type: MemoryType,
        role: String? = nil,
        content: String,
        createdAt: Date,
        updatedAt: Date? = nil,
        source: String = "api",
        metadata: String = "{}",
        exchangeID: String? = nil
    ) {
        self.id = id
        self.sessionID = sessionID
        self.type = type
        self.role = role
        self.content = content
        self.createdAt = createdAt
        self.updatedAt = updatedAt ?? createdAt
        self.source = source
        self.metadata = metadata
        self.exchangeID = exchangeID
    }

    /// A new memory identifier: `mem_` + 24 lowercase hex characters.
    public static func makeID() -> String {
        makeID(prefix: "mem_")
    }

    /// `prefix` + 24 lowercase hex characters: the creation time in milliseconds (11 digits, so ids made later
    /// sort later, and the database's unique index on them grows at its end instead of rewriting a random page
    /// per insert), then 52 random bits (one read of the system generator). Clients must still treat ids as
    /// opaque.
    public static func makeID(prefix: String) -> String {
        var generator = SystemRandomNumberGenerator()
        let digits = Array("0123456789abcdef".utf8)
        let milliseconds = UInt64(max(0, Date().timeIntervalSince1970 * 1000)) & 0xFFF_FFFF_FFFF
        let random: UInt64 = generator.next() & 0xF_FFFF_FFFF_FFFF
        var bytes: [UInt8] = Array(prefix.utf8)
        bytes.reserveCapacity(prefix.utf8.count + 24)
        for shift in stride(from: 40, through: 0, by: -4) {
            bytes.append(digits[Int((milliseconds >> UInt64(shift)) & 0xF)])
        }
        for shift in stride(from: 48, through: 0, by: -4) {
            bytes.append(digits[Int((random >> UInt64(shift)) & 0xF)])
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

extension Memory {
    /// Whether this memory is a reply that did not complete (`"incomplete": true` in its metadata: the upstream
    /// failed, or the client went away, mid-reply). It is kept, but never recalled or injected.
    public var isIncompleteReply: Bool { Self.marksIncompleteReply(metadata: metadata) }

    /// Whether a memory with this metadata is a reply that did not complete (``isIncompleteReply``).
    static func marksIncompleteReply(metadata: String) -> Bool {
        guard metadata.contains("\"incomplete\"") else { return false }
        guard case .object(let object)? = try? JSON.parse(metadata.utf8) else { return false }
        return object["incomplete"] == .bool(true)
    }
}

/// Why recall scored a memory as it did: `score = relevance × type_weight × temporal`, where `relevance` is the
/// BM25 score split by where its terms were found — `content + near + far + date + feedback`. Each term's BM25
/// contribution is shared among the columns in proportion to the (weighted) term frequency each gave it.
public struct RecallExplanation: Sendable, Equatable {
    /// Terms found in the memory's own text.
    public var content: Double
    /// Terms found in the text of the memories just before and after it (episodic memories only).
    public var near: Double
    /// Terms found in the 2nd and 3rd memories before and after it.
    public var far: Double
    /// Terms found in its date in words ("8 May 2023").
    public var date: Double
    /// Pseudo-relevance feedback's expansion terms (0 when feedback is off).
    public var feedback: Double
    /// The sum of the parts above.
    public var relevance: Double
    /// The multiplier for its type (`recall.semantic_weight` for a semantic memory, else 1).
    public var typeWeight: Double
    /// The multiplier for a question about time and a memory that says when (`recall.temporal_boost`, else 1).
    public var temporal: Double
    /// The final score.
    public var score: Double
    /// Recall by meaning: the memory's cosine similarity to the query's embedding (`nil`: lexical recall, or the
    /// memory has no vector yet).
    public var dense: Double?
    /// Recall by meaning: its lexical score (the score recall by words alone gives it; 0 when only the vectors found
    /// it), fused with the cosine into ``score``. `nil` for lexical recall.
    public var lexical: Double?

    /// Creates an explanation.
    public init(
        content: Double, near: Double, far: Double, date: Double, feedback: Double = 0, relevance: Double,
        typeWeight: Double = 1, temporal: Double = 1, score: Double
    ) {
        self.content = content
        self.near = near
        self.far = far
        self.date = date
        self.feedback = feedback
        self.relevance = relevance
        self.typeWeight = typeWeight
        self.temporal = temporal
        self.score = score
    }
}

/// A memory returned by recall, with its relevance.
public struct RecalledMemory: Sendable, Equatable {
    /// The memory.
    public var memory: Memory
    /// Relevance; higher is better (the negated, type-weighted BM25 of SQLite FTS5).
    public var score: Double
    /// The parts of ``score``, when recall was asked to explain (the recall API's `"explain": true`).
    public var explanation: RecallExplanation?

    /// Creates a recalled memory.
    ///
    /// - Parameters:
    ///   - memory: The memory.
    ///   - score: Relevance, higher is better.
    public init(memory: Memory, score: Double, explanation: RecallExplanation? = nil) {
        self.memory = memory
        self.score = score
        self.explanation = explanation
    }
}

/// One finished chat exchange to store: the newest user message and the assistant's reply.
public struct ExchangeRecord: Sendable {
    /// The session the exchange belongs to.
    public var sessionID: String
    /// Unique id of the exchange; links its two memories.
    public var exchangeID: String
    /// The proxy's request id (for logs).
    public var requestID: String
    /// A hash of the request that identifies client retries (same session + hash within the retry window
    /// are stored once).
    public var requestHash: String
    /// The newest user message; `nil` for a continuation turn (a tool loop's round trip resends the user message
    /// that started it, which is stored once), which stores only the reply.
    public var userText: String?
    /// The assistant's reply; `nil` stores only the user half.
    public var assistantText: String?
    /// The reply was cut short (client disconnect, upstream error mid-stream).
    public var assistantIncomplete: Bool
    /// When the exchange ended.
    public var createdAt: Date
    /// A JSON object as text, copied into both memories.
    public var metadata: String

    /// Creates an exchange record.
    ///
    /// - Parameters:
    ///   - sessionID: The session.
    ///   - exchangeID: Unique id of the exchange.
    ///   - requestID: The proxy's request id.
    ///   - requestHash: Identifies client retries.
    ///   - userText: The newest user message, or `nil` for a continuation turn.
    ///   - assistantText: The reply, or `nil`.
    ///   - assistantIncomplete: Whether the reply was cut short.
    ///   - createdAt: When the exchange ended.
    ///   - metadata: A JSON object as text.
    public init(
        sessionID: String,
        exchangeID: String,
        requestID: String,
        requestHash: String,
        userText: String?,
        assistantText: String?,
        assistantIncomplete: Bool = false,
        createdAt: Date,
        metadata: String = "{}"
    ) {
        self.sessionID = sessionID
        self.exchangeID = exchangeID
        self.requestID = requestID
        self.requestHash = requestHash
        self.userText = userText
        self.assistantText = assistantText
        self.assistantIncomplete = assistantIncomplete
        self.createdAt = createdAt
        self.metadata = metadata
    }
}

/// What was injected into one request (the injection log).
public struct InjectionRecord: Sendable, Codable {
    /// The proxy's request id.
    public var requestID: String
    /// The session.
    public var sessionID: String
    /// When the injection happened.
    public var createdAt: Date
    /// The requested model, if known.
    public var model: String?
    /// Injected memory ids, in block order.
    public var memoryIDs: [String]
    /// Their recall scores, parallel to `memoryIDs`.
    public var scores: [Double]
    /// Estimated tokens of the block.
    public var tokens: Int
    /// Time spent in recall.
    public var recallMs: Double
    /// The injected block text.
    public var block: String
    /// The API the request used: `chat.completions`, `responses` or `messages`.
    public var api: String
    /// The upstream's id of the response (Responses API), so that a request continuing it
    /// (`previous_response_id`) gets the same block.
    public var responseID: String?
    /// The text recall searched with (the request's newest user text); `nil` when there was none (or before schema
    /// v8). What `memproxy explain` replays.
    public var query: String?

    /// Creates an injection record.
    ///
    /// - Parameters:
    ///   - requestID: The proxy's request id.
    ///   - sessionID: The session.
    ///   - createdAt: When the injection happened.
    ///   - model: The requested model, if known.
    ///   - memoryIDs: Injected memory ids.
    ///   - scores: Their scores.
    ///   - tokens: Estimated tokens of the block.
    ///   - recallMs: Time spent in recall.
    ///   - block: The injected block text.
    ///   - api: The API the request used.
    ///   - responseID: The upstream's id of the response, when it can be continued.
    ///   - query: The text recall searched with.
    public init(
        requestID: String,
        sessionID: String,
        createdAt: Date,
        model: String?,
        memoryIDs: [String],
        scores: [Double],
        tokens: Int,
        recallMs: Double,
        block: String,
        api: String = "chat.completions",
        responseID: String? = nil,
        query: String? = nil
    ) {
        self.requestID = requestID
        self.sessionID = sessionID
        self.createdAt = createdAt
        self.model = model
        self.memoryIDs = memoryIDs
        self.scores = scores
        self.tokens = tokens
        self.recallMs = recallMs
        self.block = block
        self.api = api
        self.responseID = responseID
        self.query = query
    }
}
