public import Foundation

/// A store that keeps an embedding vector beside each memory, for recall by meaning (issue 12).
///
/// The store keeps a queue of the memories waiting for a vector of the current model (new ones, edited ones, and
/// every one when the model changes); an embedder outside the store (it calls an embeddings API) takes them in
/// batches (``pendingEmbeddings(limit:session:)``), embeds them and hands the vectors back
/// (``storeEmbeddings(_:model:)``). Recall reads them into the session indexes; a memory whose vector is not there
/// yet is ranked lexically only.
public protocol EmbeddingStore: Sendable {
    /// Makes `model` (an embedding model's name, with its dimensions when set, e.g. `text-embedding-3-small@256`) the
    /// one vectors are made with. When it is not the model recorded in the database (or none is), every memory
    /// without a vector of `model` is queued; vectors of other models stay stale (never ranked) until replaced.
    ///
    /// - Returns: How many memories were queued by this call (0 when the model did not change).
    @discardableResult
    func useEmbeddingModel(_ model: String) async throws -> Int

    /// The oldest queued memories (at most `limit`), optionally of one session only. Replies that did not complete
    /// are left out (and dropped from the queue: completing one queues it again).
    func pendingEmbeddings(limit: Int, session: String?) async throws -> [PendingEmbedding]

    /// Stores `embeddings` as vectors of `model` (compacted to int8 with a scale) and takes their memories off the
    /// queue, in one transaction. A memory deleted, or whose text changed, since it was handed out is skipped.
    ///
    /// - Returns: How many vectors were stored.
    @discardableResult
    func storeEmbeddings(_ embeddings: [(memory: PendingEmbedding, vector: [Float])], model: String) async throws
        -> Int

    /// Counts for `memproxy embeddings status` and the metrics.
    func embeddingStatus() async throws -> EmbeddingStatus

    /// How many memories are queued, of one session or of all.
    func queuedEmbeddings(session: String?) async throws -> Int
}

/// A memory waiting for its vector.
public struct PendingEmbedding: Sendable, Equatable {
    /// The memory's row (`seq`).
    public var seq: Int64
    public var memoryID: String
    public var sessionID: String
    /// The text to embed.
    public var content: String
    /// The text's hash when it was handed out: a vector is stored only if the text is still the same.
    public var contentHash: String
    /// When it was queued.
    public var queuedAt: Date

    public init(
        seq: Int64, memoryID: String, sessionID: String, content: String, contentHash: String, queuedAt: Date
    ) {
        self.seq = seq
        self.memoryID = memoryID
        self.sessionID = sessionID
        self.content = content
        self.contentHash = contentHash
        self.queuedAt = queuedAt
    }
}

/// Where the vectors stand.
public struct EmbeddingStatus: Sendable, Equatable {
    /// The model vectors are made with (``EmbeddingStore/useEmbeddingModel(_:)``); `nil` when embeddings were never
    /// configured for this database.
    public var model: String?
    /// Memories in the database.
    public var memories: Int
    /// Memories with a vector of the current model.
    public var embedded: Int
    /// Memories waiting in the queue.
    public var queued: Int
    /// Vectors of another model (stale: never ranked; replaced as the queue is worked off).
    public var stale: Int
    /// When the oldest queued memory was queued.
    public var oldestQueuedAt: Date?

    public init(model: String?, memories: Int, embedded: Int, queued: Int, stale: Int, oldestQueuedAt: Date?) {
        self.model = model
        self.memories = memories
        self.embedded = embedded
        self.queued = queued
        self.stale = stale
        self.oldestQueuedAt = oldestQueuedAt
    }
}
