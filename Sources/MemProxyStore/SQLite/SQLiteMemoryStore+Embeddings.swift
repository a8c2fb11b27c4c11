import Foundation
import GRDB

/// ``EmbeddingStore`` on SQLite (schema v9): vectors in `memory_vectors`, the queue in `embedding_queue`, the
/// model in `embedding_settings`.
extension SQLiteMemoryStore: EmbeddingStore {
    /// Seconds since 1970, as SQL computes them for the queue.
    private static let nowSQL = "(julianday('now') - 2440587.5) * 86400.0"

    @discardableResult
    public func useEmbeddingModel(_ model: String) async throws -> Int {
        try await dbPool.write { db in
            let current = try String.fetchOne(db, sql: "SELECT model FROM embedding_settings WHERE id = 1")
            guard current != model else { return 0 }
            try db.execute(
                sql: """
                    INSERT INTO embedding_settings(id, model, changed_at) VALUES (1, ?, \(Self.nowSQL))
                    ON CONFLICT(id) DO UPDATE SET model = excluded.model, changed_at = excluded.changed_at
                    """,
                arguments: [model])
            try db.execute(
                sql: """
                    INSERT OR IGNORE INTO embedding_queue(seq, queued_at)
                    SELECT m.seq, \(Self.nowSQL) FROM memories m
                    WHERE NOT EXISTS (SELECT 1 FROM memory_vectors v WHERE v.seq = m.seq AND v.model = ?)
                    """,
                arguments: [model])
            return db.changesCount
        }
    }

    public func pendingEmbeddings(limit: Int, session: String?) async throws -> [PendingEmbedding] {
        guard limit > 0 else { return [] }
        let (pending, incomplete) = try await dbPool.read { db -> ([PendingEmbedding], [(Int64, String)]) in
            var sql = """
                SELECT q.seq, q.queued_at, m.id, m.session_id, m.content, m.content_hash, m.metadata
                FROM embedding_queue q JOIN memories m ON m.seq = q.seq
                """
            var arguments: StatementArguments = []
            if let session {
                guard let key = try Int64.fetchOne(db, sql: "SELECT key FROM sessions WHERE session_id = ?", arguments: [session])
                else { return ([], []) }
                let range = Schema.rowRange(sessionKey: key)
                sql += " WHERE q.seq BETWEEN ? AND ?"
                arguments += [range.lower, range.upper]
            }
            sql += " ORDER BY q.queued_at, q.seq LIMIT ?"
            arguments += [limit]
            var pending: [PendingEmbedding] = []
            var incomplete: [(Int64, String)] = []
            for row in try Row.fetchAll(db, sql: sql, arguments: arguments) {
                if Memory.marksIncompleteReply(metadata: row[6]) {
                    incomplete.append((row[0], row[5]))
                    continue
                }
                pending.append(
                    PendingEmbedding(
                        seq: row[0], memoryID: row[2], sessionID: row[3], content: row[4], contentHash: row[5],
                        queuedAt: Date(timeIntervalSince1970: row[1])))
            }
            return (pending, incomplete)
        }
        // A reply cut short is never recalled; completing it changes its text, which queues it again.
        if !incomplete.isEmpty {
            try await dbPool.write { db in
                // Unless it was completed meanwhile (its text changed and it was queued again).
                for (seq, hash) in incomplete {
                    try db.execute(
                        sql: """
                            DELETE FROM embedding_queue WHERE seq = ?
                            AND EXISTS (SELECT 1 FROM memories WHERE seq = ? AND content_hash = ?)
                            """,
                        arguments: [seq, seq, hash])
                }
            }
        }
        return pending
    }

    @discardableResult
    public func storeEmbeddings(_ embeddings: [(memory: PendingEmbedding, vector: [Float])], model: String)
        async throws -> Int
    {
        guard !embeddings.isEmpty else { return 0 }
        return try await dbPool.write { db in
            var revisions: [Int64: Int64] = [:]
            var stored = 0
            for (memory, vector) in embeddings {
                guard
                    let hash = try String.fetchOne(
                        db.cachedStatement(sql: "SELECT content_hash FROM memories WHERE seq = ?"),
                        arguments: [memory.seq]),
                    hash == memory.contentHash,
                    let compact = CompactVector(quantizing: vector)
                else { continue }
                let key = memory.seq >> Schema.sessionShift
                let revision: Int64
                if let known = revisions[key] {
                    revision = known
                } else {
                    // One new revision per session per commit: an index reads the vectors above its revision.
                    guard
                        let raised = try Int64.fetchOne(
                            db,
                            sql: "UPDATE sessions SET vector_revision = vector_revision + 1 WHERE key = ? RETURNING vector_revision",
                            arguments: [key])
                    else { continue }
                    revisions[key] = raised
                    revision = raised
                }
                try db.cachedStatement(
                    sql: """
                        INSERT OR REPLACE INTO memory_vectors(seq, session_key, revision, model, scale, vector)
                        VALUES (?, ?, ?, ?, ?, ?)
                        """
                ).execute(arguments: [memory.seq, key, revision, model, Double(compact.scale), compact.data])
                try db.cachedStatement(sql: "DELETE FROM embedding_queue WHERE seq = ?").execute(arguments: [memory.seq])
                stored += 1
            }
            return stored
        }
    }

    public func queuedEmbeddings(session: String?) async throws -> Int {
        try await dbPool.read { db in
            guard let session else { return try Int.fetchOne(db, sql: "SELECT count(*) FROM embedding_queue") ?? 0 }
            guard
                let key = try Int64.fetchOne(db, sql: "SELECT key FROM sessions WHERE session_id = ?", arguments: [session])
            else { return 0 }
            let range = Schema.rowRange(sessionKey: key)
            return try Int.fetchOne(
                db, sql: "SELECT count(*) FROM embedding_queue WHERE seq BETWEEN ? AND ?",
                arguments: [range.lower, range.upper]) ?? 0
        }
    }

    public func embeddingStatus() async throws -> EmbeddingStatus {
        try await dbPool.read { db in
            let model = try String.fetchOne(db, sql: "SELECT model FROM embedding_settings WHERE id = 1")
            let memories = try Int.fetchOne(db, sql: "SELECT count(*) FROM memories") ?? 0
            var embedded = 0
            if let model {
                embedded =
                    try Int.fetchOne(db, sql: "SELECT count(*) FROM memory_vectors WHERE model = ?", arguments: [model])
                    ?? 0
            }
            let vectors = try Int.fetchOne(db, sql: "SELECT count(*) FROM memory_vectors") ?? 0
            let queued = try Int.fetchOne(db, sql: "SELECT count(*) FROM embedding_queue") ?? 0
            let oldest = try Double.fetchOne(db, sql: "SELECT min(queued_at) FROM embedding_queue")
            return EmbeddingStatus(
                model: model, memories: memories, embedded: embedded, queued: queued, stale: vectors - embedded,
                oldestQueuedAt: oldest.map(Date.init(timeIntervalSince1970:)))
        }
    }
}
