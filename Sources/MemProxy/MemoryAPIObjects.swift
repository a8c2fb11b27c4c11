public import Foundation
import MemProxyCore
public import MemProxyStore

/// A memory as the memory API and the CLI show it:
/// `{"id","session_id","type","role","content","created_at","updated_at","source","metadata"}` (+ `"score"` in
/// recall results). Times are RFC 3339 UTC; `metadata` is a JSON object.
public struct MemoryObject: Sendable, Equatable {
    public var id: String
    public var sessionID: String
    public var type: String
    public var role: String?
    public var content: String
    public var createdAt: Date
    public var updatedAt: Date
    public var source: String
    /// The metadata object as compact JSON text.
    public var metadata: String
    /// The ranking score (recall results only).
    public var score: Double?
    /// The parts of the score (recall results with `"explain": true`).
    public var explanation: RecallExplanation?

    init(_ memory: Memory, score: Double? = nil, explanation: RecallExplanation? = nil) {
        self.id = memory.id
        self.sessionID = memory.sessionID
        self.type = memory.type.rawValue
        self.role = memory.role
        self.content = memory.content
        self.createdAt = memory.createdAt
        self.updatedAt = memory.updatedAt
        self.source = memory.source
        self.metadata = memory.metadata
        self.score = score
        self.explanation = explanation
    }

    var jsonValue: JSONValue {
        var object = JSONObject([
            ("id", .string(self.id)),
            ("session_id", .string(self.sessionID)),
            ("type", .string(self.type)),
            ("role", self.role.map(JSONValue.string) ?? .null),
            ("content", .string(self.content)),
            ("created_at", .time(self.createdAt)),
            ("updated_at", .time(self.updatedAt)),
            ("source", .string(self.source)),
            ("metadata", (try? JSON.parse(Array(self.metadata.utf8))) ?? .object(JSONObject())),
        ])
        if let score = self.score { object["score"] = .real(score) }
        if let explanation = self.explanation {
            var parts = JSONObject([
                ("content", .real(explanation.content)),
                ("near", .real(explanation.near)),
                ("far", .real(explanation.far)),
                ("date", .real(explanation.date)),
                ("feedback", .real(explanation.feedback)),
                ("relevance", .real(explanation.relevance)),
                ("type_weight", .real(explanation.typeWeight)),
                ("temporal", .real(explanation.temporal)),
            ])
            // Recall by meaning: the lexical score and the cosine (`dense`) the final score fused.
            if let lexical = explanation.lexical { parts["lexical"] = .real(lexical) }
            if explanation.lexical != nil { parts["dense"] = explanation.dense.map(JSONValue.real) ?? .null }
            parts["score"] = .real(explanation.score)
            object["explain"] = .object(parts)
        }
        return .object(object)
    }

    /// One line of compact JSON (also one line of an export).
    public var json: String { self.jsonValue.text }
}

/// A session in `GET /memory/v1/sessions`: `{"session_id","memory_count","last_activity_at"}`.
public struct SessionObject: Sendable, Equatable {
    public var sessionID: String
    public var memoryCount: Int
    /// The newest memory's creation or the newest injection, whichever is later.
    public var lastActivity: Date?

    init(_ summary: SessionSummary) {
        self.sessionID = summary.sessionID
        self.memoryCount = summary.memoryCount
        self.lastActivity = summary.lastActivity
    }

    var jsonValue: JSONValue {
        .object(
            JSONObject([
                ("session_id", .string(self.sessionID)),
                ("memory_count", .integer(self.memoryCount)),
                ("last_activity_at", self.lastActivity.map(JSONValue.time) ?? .null),
            ])
        )
    }

    /// Compact JSON.
    public var json: String { self.jsonValue.text }
}

/// What was injected into one request: `{"request_id","session_id","created_at","api","model","memory_ids","scores",
/// "tokens","recall_ms","block","response_id"}`.
public struct InjectionObject: Sendable, Equatable {
    /// Increases with every record (for `--follow`); not part of the JSON.
    public var sequence: Int64
    public var requestID: String
    public var sessionID: String
    public var createdAt: Date
    /// `chat.completions`, `responses` or `messages`.
    public var api: String
    public var model: String?
    /// The upstream's response id (Responses API), or nil.
    public var responseID: String?
    /// The text recall searched with, or nil (none, or recorded before schema v8).
    public var query: String?
    public var memoryIDs: [String]
    public var scores: [Double]
    public var tokens: Int
    public var recallMs: Double
    /// The injected block, exactly as the model saw it.
    public var block: String

    init(_ stored: StoredInjection) {
        let record = stored.record
        self.sequence = stored.sequence
        self.requestID = record.requestID
        self.sessionID = record.sessionID
        self.createdAt = record.createdAt
        self.api = record.api
        self.model = record.model
        self.responseID = record.responseID
        self.query = record.query
        self.memoryIDs = record.memoryIDs
        self.scores = record.scores
        self.tokens = record.tokens
        self.recallMs = record.recallMs
        self.block = record.block
    }

    var jsonValue: JSONValue {
        .object(
            JSONObject([
                ("request_id", .string(self.requestID)),
                ("session_id", .string(self.sessionID)),
                ("created_at", .time(self.createdAt)),
                ("api", .string(self.api)),
                ("model", self.model.map(JSONValue.string) ?? .null),
                ("memory_ids", .array(self.memoryIDs.map(JSONValue.string))),
                ("scores", .array(self.scores.map(JSONValue.real))),
                ("tokens", .integer(self.tokens)),
                ("recall_ms", .real(self.recallMs)),
                ("block", .string(self.block)),
                ("response_id", self.responseID.map(JSONValue.string) ?? .null),
                ("query", self.query.map(JSONValue.string) ?? .null),
            ])
        )
    }

    /// Compact JSON.
    public var json: String { self.jsonValue.text }
}

/// The answer of a recall preview: the memories of the block, in block order, with their scores, and the block.
public struct RecallResult: Sendable, Equatable {
    public var memories: [MemoryObject]
    /// Exactly the block the proxy would inject (empty when nothing would be injected).
    public var context: String
    /// With `[embeddings]` on: `hybrid` (ranked by meaning and words) or `lexical` (the query's embedding was late
    /// or failed), as the proxy's `X-Memory-Recall`; `nil` (no `"recall"` key) when embeddings are off.
    public var recall: String?

    var jsonValue: JSONValue {
        var object = JSONObject([("data", .array(self.memories.map(\.jsonValue))), ("context", .string(self.context))])
        if let recall { object["recall"] = .string(recall) }
        return .object(object)
    }

    /// Compact JSON.
    public var json: String { self.jsonValue.text }
}

/// Why a past request got what it got: `{"injection": <as recorded>, "replayed_now": <recall result with
/// "explain", or null>}`. The replay runs recall for the recorded query against the session **as it is now**
/// (memories added, edited or deleted since change it); the recorded block and scores are what the model saw.
public struct ExplainResult: Sendable, Equatable {
    public var injection: InjectionObject
    public var replayedNow: RecallResult?

    var jsonValue: JSONValue {
        .object(
            JSONObject([
                ("injection", self.injection.jsonValue),
                ("replayed_now", self.replayedNow?.jsonValue ?? .null),
            ]))
    }

    /// Compact JSON.
    public var json: String { self.jsonValue.text }
}

/// A page of a listing: `{"data":[...],"next_cursor":...}`.
public struct ListPage<Item: Sendable & Equatable>: Sendable, Equatable {
    public var data: [Item]
    /// Pass as `cursor` to get the next page; `nil` on the last page.
    public var nextCursor: String?

    func jsonValue(_ item: (Item) -> JSONValue) -> JSONValue {
        .object(
            JSONObject([
                ("data", .array(self.data.map(item))),
                ("next_cursor", self.nextCursor.map(JSONValue.string) ?? .null),
            ])
        )
    }
}

extension ListPage<MemoryObject> {
    /// Compact JSON.
    public var json: String { self.jsonValue(\.jsonValue).text }
}

extension ListPage<SessionObject> {
    /// Compact JSON.
    public var json: String { self.jsonValue(\.jsonValue).text }
}

extension JSONValue {
    static func time(_ date: Date) -> JSONValue {
        .string(RFC3339.string(fromUnixSeconds: date.timeIntervalSince1970))
    }

    static func integer(_ value: Int) -> JSONValue { .number(String(value)) }

    /// A finite number as its shortest round-tripping literal; `null` for NaN and infinities.
    static func real(_ value: Double) -> JSONValue {
        guard value.isFinite else { return .null }
        if value == value.rounded(), abs(value) < 1e15 { return .number(String(Int64(value))) }
        return .number("\(value)")
    }

    var text: String { String(decoding: self.serialized(), as: UTF8.self) }
}
