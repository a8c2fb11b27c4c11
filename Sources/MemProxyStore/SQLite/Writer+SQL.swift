import Foundation
import GRDB
import MemProxyCore

/// The SQL the writer shares with the rest of the SQLite store: inserting memories with their session's row ids,
/// reading memories and injection records back, and the JSON of injection arrays.
extension Writer {
    /// Inserts `memory` with the next row id of its session (creating the session's key when new) and returns
    /// where it went, with the memory exactly as the table returns it. Recall finds it at its next read of the
    /// session (``RecallIndexCache``), or sooner when the writer hands it to the cache.
    @discardableResult
    static func insert(_ memory: Memory, in db: Database) throws -> RecallIndexCache.InsertedMemory {
        try insert([memory], in: db)[0]
    }

    /// Inserts memories of one session in order, numbered with one update of the session's row.
    static func insert(_ memories: [Memory], in db: Database) throws -> [RecallIndexCache.InsertedMemory] {
        guard let session = memories.first?.sessionID else { return [] }
        precondition(memories.allSatisfy { $0.sessionID == session }, "memories of one session only")
        let count = Int64(memories.count)
        guard
            let row = try Row.fetchOne(
                db.cachedStatement(
                    sql: """
                        INSERT INTO sessions(session_id, next_seq) VALUES (?, ?)
                        ON CONFLICT(session_id) DO UPDATE SET next_seq = next_seq + excluded.next_seq
                        RETURNING key, next_seq - ?
                        """
                ),
                arguments: [session, count, count]
            )
        else {
            throw DatabaseError(resultCode: .SQLITE_INTERNAL, message: "session row missing after insert")
        }
        let key: Int64 = row[0]
        let first: Int64 = row[1]
        guard key < (1 << 31), first + count - 1 <= 0xFFFF_FFFF else {
            throw DatabaseError(resultCode: .SQLITE_FULL, message: "memory row ids exhausted for this session")
        }
        let statement = try db.cachedStatement(
            sql: """
                INSERT INTO memories(seq, id, session_id, type, role, content, created_at, updated_at, source, metadata,
                                     exchange_id, content_hash)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """
        )
        var inserted: [RecallIndexCache.InsertedMemory] = []
        inserted.reserveCapacity(memories.count)
        for (offset, memory) in memories.enumerated() {
            let number = first + Int64(offset)
            let seq = Schema.rowRange(sessionKey: key).lower | number
            var stored = memory
            stored.content = memory.content.storableText
            stored.createdAt = Date(timeIntervalSince1970: memory.createdAt.timeIntervalSince1970)
            stored.updatedAt = Date(timeIntervalSince1970: memory.updatedAt.timeIntervalSince1970)
            try statement.execute(arguments: [
                seq,
                stored.id, stored.sessionID, stored.type.rawValue, stored.role, stored.content,
                stored.createdAt.timeIntervalSince1970, stored.updatedAt.timeIntervalSince1970, stored.source,
                stored.metadata, stored.exchangeID, StableHash.fnv1a64Hex(memory.content.utf8),
            ])
            inserted.append(RecallIndexCache.InsertedMemory(memory: stored, key: key, number: number, seq: seq))
        }
        return inserted
    }

    /// Columns read by ``memory(from:)``, for a `memories` table aliased `m`.
    static let memoryColumns =
        "m.id, m.session_id, m.type, m.role, m.content, m.created_at, m.updated_at, m.source, m.metadata, m.exchange_id"

    static func memory(from row: Row) -> Memory {
        Memory(
            id: row[0],
            sessionID: row[1],
            type: MemoryType(rawValue: row[2] as String) ?? .episodic,
            role: row[3],
            content: row[4],
            createdAt: Date(timeIntervalSince1970: row[5]),
            updatedAt: Date(timeIntervalSince1970: row[6]),
            source: row[7],
            metadata: row[8],
            exchangeID: row[9]
        )
    }

    static func injections(session: String, limit: Int, in db: Database) throws -> [InjectionRecord] {
        let rows = try Row.fetchAll(
            db,
            sql: """
                SELECT request_id, session_id, created_at, model, memory_ids, scores, tokens, recall_ms, block, api,
                       response_id, query
                FROM injections WHERE session_id = ? ORDER BY created_at DESC, seq DESC LIMIT ?
                """,
            arguments: [session, max(0, limit)]
        )
        let decoder = JSONDecoder()
        return try rows.map { row in
            InjectionRecord(
                requestID: row[0],
                sessionID: row[1],
                createdAt: Date(timeIntervalSince1970: row[2]),
                model: row[3],
                memoryIDs: try decoder.decode([String].self, from: Data((row[4] as String).utf8)),
                scores: try decoder.decode([Double].self, from: Data((row[5] as String).utf8)),
                tokens: row[6],
                recallMs: row[7],
                block: row[8],
                api: row[9],
                responseID: row[10],
                query: row[11]
            )
        }
    }

    private static func json(_ value: some Encodable) throws -> String {
        String(decoding: try JSONEncoder().encode(value), as: UTF8.self)
    }

    /// `ids` as a JSON array; memproxy's own ids (letters, digits, `_`) without a JSONEncoder, which cost more than
    /// the row's insert.
    static func json(ids: [String]) throws -> String {
        let plain = ids.allSatisfy { id in
            id.utf8.allSatisfy {
                ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x41 && $0 <= 0x5A) || $0 == 0x5F
            }
        }
        guard plain else { return try json(ids) }
        return "[" + ids.map { "\"" + $0 + "\"" }.joined(separator: ",") + "]"
    }

    /// Finite `scores` as a JSON array (Swift's shortest round-tripping form is valid JSON).
    static func json(scores: [Double]) throws -> String {
        guard scores.allSatisfy(\.isFinite) else { return try json(scores) }
        return "[" + scores.map { "\($0)" }.joined(separator: ",") + "]"
    }

    /// `metadata` (a JSON object as text) with `extra`'s keys set; a non-object `metadata` is replaced.
    static func merging(_ extra: [String: Bool], into metadata: String) -> String {
        var object = (try? JSONSerialization.jsonObject(with: Data(metadata.utf8))) as? [String: Any] ?? [:]
        for (key, value) in extra { object[key] = value }
        guard
            let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        else { return metadata }
        return String(decoding: data, as: UTF8.self)
    }}
