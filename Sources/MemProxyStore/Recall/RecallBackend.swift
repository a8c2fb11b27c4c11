/// A session's row as one read of the database sees it: what ``RecallIndexCache`` compares a cached index with.
struct SessionState: Sendable, Equatable {
    /// The session's key (`sessions.key`); its memories' `seq` carry it in their high bits.
    var key: Int64
    /// The number the session's next memory gets (`sessions.next_seq`).
    var nextSeq: Int64
    /// Raised by every update or delete of the session's memories (`sessions.revision`).
    var revision: Int64
    /// How many memories the session holds (`sessions.memory_count`).
    var memoryCount: Int
    /// Raised by every commit that stores vectors of the session's memories (`sessions.vector_revision`); a vector
    /// dropped (its memory edited or deleted) raises ``revision`` instead.
    var vectorRevision: Int64 = 0
}

/// The reads that bring a session's in-memory index up to date with the database. A backend implements it over one
/// of its read transactions: every call on one value sees the same snapshot. SQLite: a GRDB `Database` inside a
/// read (`SQLite/Database+SessionRows.swift`).
protocol SessionRows {
    /// The session's row; `nil` when it has none (no memory was ever stored, or it was forgotten).
    func sessionState(_ session: String) throws -> SessionState?

    /// Every memory of `session` with its `seq`, in timeline order (`created_at`, ties by `seq`), handed to `body`
    /// one at a time.
    func forEachMemory(ofSession session: String, _ body: (Memory, Int64) throws -> Void) throws

    /// The memories of the session whose key is `key` numbered `number` or later (`seq` from `key`'s range with
    /// that number on), with their `seq`, in `seq` order.
    func memories(sessionKey key: Int64, fromNumber number: Int64) throws -> [(memory: Memory, seq: Int64)]

    /// The vectors of `model` stored for the session whose key is `key` by commits that raised its
    /// `vector_revision` above `revision` (all of them for 0), with their memory's `seq`.
    func vectors(sessionKey key: Int64, afterRevision revision: Int64, model: String) throws
        -> [(seq: Int64, vector: CompactVector)]
}

/// How a replica learns that someone else committed: a counter that every commit to the database raises by exactly
/// one (wrapping), whoever made it, this process or another, read without a transaction. SQLite: the WAL index
/// header's `iChange` (``WALHeaderProbe``).
protocol CommitSignal: Sendable {
    /// The counter now; `nil` when it cannot be read (then every recall reads the database).
    func commitCounter() -> UInt32?
}
