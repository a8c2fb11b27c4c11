import Foundation
import GRDB
import MemProxyCore

/// Memory management on SQLite: direct reads and writes (not through the writer queue), each in its own
/// transaction on GRDB's queues, never on the caller's thread.
///
/// Every statement is scoped by `session_id`. Updates and deletes are plain SQL on `memories`: the schema's
/// triggers keep the FTS5 index and the session counts in step, so nothing here touches the index itself.
extension SQLiteMemoryStore: ManagedMemoryStore {
    /// The memory `id` of `session`; `nil` when it does not exist in that session.
    ///
    /// - Parameters:
    ///   - session: The session.
    ///   - id: The memory id.
    /// - Returns: The memory, or `nil`.
    public func memory(session: String, id: String) async throws -> Memory? {
        try await dbPool.read { db in try Self.fetchMemory(db, session: session, id: id) }
    }

    /// One page of `session`'s memories. See ``ManagedMemoryStore/memories(session:type:order:limit:after:)``.
    ///
    /// - Parameters:
    ///   - session: The session.
    ///   - type: Only this type, or all.
    ///   - order: Newest or oldest first.
    ///   - limit: The most memories on the page.
    ///   - cursor: Where the previous page ended.
    /// - Returns: The page.
    public func memories(
        session: String,
        type: MemoryType?,
        order: MemoryOrder,
        limit: Int,
        after cursor: MemoryCursor?
    ) async throws -> MemoryPage {
        let limit = max(1, limit)
        let comparison = order.descending ? "<" : ">"
        let direction = order.descending ? "DESC" : "ASC"
        var sql = "SELECT \(Writer.memoryColumns), m.seq FROM memories m WHERE m.session_id = ?"
        var arguments: StatementArguments = [session]
        if let type {
            // A literal, not a parameter, so that SQLite can use a partial index on the type (the procedural
            // memories every injection reads). The raw value is one of MemoryType's fixed names.
            sql += " AND m.type = '\(type.rawValue)'"
        }
        if let cursor {
            sql += " AND (m.created_at \(comparison) ? OR (m.created_at = ? AND m.seq \(comparison) ?))"
            arguments += [cursor.createdAt, cursor.createdAt, cursor.seq]
        }
        sql += " ORDER BY m.created_at \(direction), m.seq \(direction) LIMIT ?"
        arguments += [limit + 1]
        let statement = sql
        let finalArguments = arguments
        return try await dbPool.read { db in
            let rows = try Row.fetchAll(db, sql: statement, arguments: finalArguments)
            let page = rows.prefix(limit)
            let next = rows.count > limit ? page.last.map { MemoryCursor(createdAt: $0[5], seq: $0[10]) } : nil
            return MemoryPage(memories: page.map(Writer.memory(from:)), nextCursor: next)
        }
    }

    /// Inserts one new memory now (it is recallable as soon as this returns).
    ///
    /// - Parameter memory: The memory; its id must be new.
    public func add(_ memory: Memory) async throws {
        try await dbPool.write { db in _ = try Writer.insert(memory, in: db) }
    }

    /// Inserts memories in one transaction; see ``ManagedMemoryStore/importMemories(_:)``.
    ///
    /// - Parameter memories: The memories.
    /// - Returns: How many were inserted and skipped.
    public func importMemories(_ memories: [Memory]) async throws -> ImportSummary {
        try await dbPool.write { db in
            var summary = ImportSummary(imported: 0, skipped: 0)
            for var memory in memories {
                if let owner = try String.fetchOne(
                    db.cachedStatement(sql: "SELECT session_id FROM memories WHERE id = ?"),
                    arguments: [memory.id]
                ) {
                    if owner == memory.sessionID {
                        summary.skipped += 1
                        continue
                    }
                    memory.id = Memory.makeID()
                }
                try Writer.insert(memory, in: db)
                summary.imported += 1
            }
            return summary
        }
    }

    /// Applies `changes` to the memory `id` of `session`.
    ///
    /// - Parameters:
    ///   - session: The session.
    ///   - id: The memory id.
    ///   - changes: What to change.
    /// - Returns: The updated memory, or `nil` when it does not exist in that session.
    public func update(session: String, id: String, changes: MemoryChanges) async throws -> Memory? {
        try await dbPool.write { db in
            var assignments = ["updated_at = ?"]
            var arguments: StatementArguments = [changes.updatedAt.timeIntervalSince1970]
            if let content = changes.content {
                // The text and its hash change together.
                assignments += ["content = ?", "content_hash = ?"]
                arguments += [content.storableText, StableHash.fnv1a64Hex(content.utf8)]
            }
            if let type = changes.type {
                assignments.append("type = ?")
                arguments += [type.rawValue]
            }
            if let metadata = changes.metadata {
                assignments.append("metadata = ?")
                arguments += [metadata]
            }
            arguments += [id, session]
            try db.execute(
                sql: "UPDATE memories SET \(assignments.joined(separator: ", ")) WHERE id = ? AND session_id = ?",
                arguments: arguments
            )
            guard db.changesCount > 0 else { return nil }
            return try Self.fetchMemory(db, session: session, id: id)
        }
    }

    /// Deletes the memory `id` of `session` (and, through the triggers, its search index entry).
    ///
    /// - Parameters:
    ///   - session: The session.
    ///   - id: The memory id.
    /// - Returns: `false` when it does not exist in that session.
    public func delete(session: String, id: String) async throws -> Bool {
        try await dbPool.write { db in
            try db.execute(sql: "DELETE FROM memories WHERE id = ? AND session_id = ?", arguments: [id, session])
            return db.changesCount > 0
        }
    }

    /// Deletes everything stored for `session`: memories, injection records, exchange records, its session row.
    ///
    /// - Parameter session: The session.
    /// - Returns: How many memories were deleted.
    public func forget(session: String) async throws -> Int {
        try await dbPool.write { db in
            try db.execute(sql: "DELETE FROM memories WHERE session_id = ?", arguments: [session])
            let deleted = db.changesCount
            try db.execute(sql: "DELETE FROM injections WHERE session_id = ?", arguments: [session])
            try db.execute(sql: "DELETE FROM exchanges WHERE session_id = ?", arguments: [session])
            try db.execute(sql: "DELETE FROM sessions WHERE session_id = ?", arguments: [session])
            return deleted
        }
    }

    /// One page of sessions, by session id, with their memory counts and last activity.
    ///
    /// - Parameters:
    ///   - limit: The most sessions on the page.
    ///   - cursor: Where the previous page ended.
    /// - Returns: The page.
    public func sessions(limit: Int, after cursor: SessionCursor?) async throws -> SessionPage {
        let limit = max(1, limit)
        return try await dbPool.read { db in
            let rows = try Row.fetchAll(
                db,
                sql: """
                    SELECT s.session_id, s.memory_count,
                           (SELECT max(created_at) FROM memories WHERE session_id = s.session_id),
                           (SELECT max(created_at) FROM injections WHERE session_id = s.session_id)
                    FROM sessions s WHERE s.session_id > ? ORDER BY s.session_id LIMIT ?
                    """,
                arguments: [cursor?.sessionID ?? "", limit + 1]
            )
            let sessions = rows.prefix(limit).map { row in
                let times = [row[2] as Double?, row[3] as Double?].compactMap { $0 }
                return SessionSummary(
                    sessionID: row[0],
                    memoryCount: row[1],
                    lastActivity: times.max().map(Date.init(timeIntervalSince1970:))
                )
            }
            let next = rows.count > limit ? sessions.last.map { SessionCursor(sessionID: $0.sessionID) } : nil
            return SessionPage(sessions: Array(sessions), nextCursor: next)
        }
    }

    /// Injection records of `session`; see ``InjectionFilter``.
    ///
    /// - Parameters:
    ///   - session: The session.
    ///   - filter: Which records.
    /// - Returns: The records, newest first (or oldest first after `filter.afterSequence`).
    public func injections(session: String, filter: InjectionFilter) async throws -> [StoredInjection] {
        var sql = """
            SELECT \(Self.injectionColumns)
            FROM injections WHERE session_id = ?
            """
        var arguments: StatementArguments = [session]
        if let requestID = filter.requestID {
            sql += " AND request_id = ?"
            arguments += [requestID]
        }
        if let responseID = filter.responseID {
            sql += " AND response_id = ?"
            arguments += [responseID]
        }
        if let after = filter.afterSequence {
            sql += " AND seq > ? ORDER BY seq LIMIT ?"
            arguments += [after, max(0, filter.limit)]
        } else {
            sql += " ORDER BY created_at DESC, seq DESC LIMIT ?"
            arguments += [max(0, filter.limit)]
        }
        let statement = sql
        let finalArguments = arguments
        return try await dbPool.read { db in
            try Row.fetchAll(db, sql: statement, arguments: finalArguments).map(Self.storedInjection(from:))
        }
    }

    static let injectionColumns =
        "seq, request_id, session_id, created_at, model, memory_ids, scores, tokens, recall_ms, block, api, response_id, query"

    /// The injection record of request `requestID`, whatever its session (request ids are unique per process run;
    /// the newest wins if one repeats).
    public func injection(requestID: String) async throws -> StoredInjection? {
        try await dbPool.read { db in
            try Row.fetchOne(
                db,
                sql: "SELECT \(Self.injectionColumns) FROM injections WHERE request_id = ? ORDER BY seq DESC LIMIT 1",
                arguments: [requestID]
            ).map(Self.storedInjection(from:))
        }
    }

    private static func storedInjection(from row: Row) throws -> StoredInjection {
        let decoder = JSONDecoder()
        return StoredInjection(
            sequence: row[0],
            record: InjectionRecord(
                requestID: row[1],
                sessionID: row[2],
                createdAt: Date(timeIntervalSince1970: row[3]),
                model: row[4],
                memoryIDs: try decoder.decode([String].self, from: Data((row[5] as String).utf8)),
                scores: try decoder.decode([Double].self, from: Data((row[6] as String).utf8)),
                tokens: row[7],
                recallMs: row[8],
                block: row[9],
                api: row[10],
                responseID: row[11],
                query: row[12]
            )
        )
    }

    private static func fetchMemory(_ db: Database, session: String, id: String) throws -> Memory? {
        try Row.fetchOne(
            db.cachedStatement(
                sql: "SELECT \(Writer.memoryColumns) FROM memories m WHERE m.id = ? AND m.session_id = ?"),
            arguments: [id, session]
        ).map(Writer.memory(from:))
    }
}
