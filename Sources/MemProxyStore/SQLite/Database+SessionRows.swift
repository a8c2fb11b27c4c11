import GRDB

/// Recall's reads of a session (``SessionRows``) on SQLite: `db` inside a `DatabasePool.read`, whose snapshot every
/// call shares. A memory's `seq` is its session's key in the high bits and its number in the low ones
/// (``Schema/rowRange(sessionKey:)``), so the rows numbered from `n` on are one range of the primary key.
extension Database: SessionRows {
    func sessionState(_ session: String) throws -> SessionState? {
        guard
            let row = try Row.fetchOne(
                cachedStatement(sql: "SELECT key, next_seq, revision, memory_count FROM sessions WHERE session_id = ?"),
                arguments: [session]
            )
        else { return nil }
        return SessionState(key: row[0], nextSeq: row[1], revision: row[2], memoryCount: row[3])
    }

    func forEachMemory(ofSession session: String, _ body: (Memory, Int64) throws -> Void) throws {
        let cursor = try Row.fetchCursor(
            cachedStatement(
                sql: "SELECT \(sessionRowColumns) FROM memories m WHERE m.session_id = ? ORDER BY m.created_at, m.seq"
            ),
            arguments: [session]
        )
        while let row = try cursor.next() {
            try body(Writer.memory(from: row), row[10])
        }
    }

    func memories(sessionKey key: Int64, fromNumber number: Int64) throws -> [(memory: Memory, seq: Int64)] {
        let range = Schema.rowRange(sessionKey: key)
        let rows = try Row.fetchAll(
            cachedStatement(
                sql: "SELECT \(sessionRowColumns) FROM memories m WHERE m.seq BETWEEN ? AND ? ORDER BY m.seq"),
            arguments: [range.lower | number, range.upper]
        )
        return rows.map { row in (Writer.memory(from: row), row[10]) }
    }
}

/// ``Writer/memoryColumns`` and `seq` (column 10).
private let sessionRowColumns = "\(Writer.memoryColumns), m.seq"
