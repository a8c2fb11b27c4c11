import Foundation
import GRDB

/// Recall's reads of a session (``SessionRows``) on SQLite: `db` inside a `DatabasePool.read`, whose snapshot every
/// call shares. A memory's `seq` is its session's key in the high bits and its number in the low ones
/// (``Schema/rowRange(sessionKey:)``), so the rows numbered from `n` on are one range of the primary key.
extension Database: SessionRows {
    func sessionState(_ session: String) throws -> SessionState? {
        guard
            let row = try Row.fetchOne(
                cachedStatement(sql: """
                        SELECT key, next_seq, revision, memory_count, vector_revision FROM sessions WHERE session_id = ?
                        """),
                arguments: [session]
            )
        else { return nil }
        return SessionState(
            key: row[0], nextSeq: row[1], revision: row[2], memoryCount: row[3], vectorRevision: row[4])
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

    func vectors(sessionKey key: Int64, afterRevision revision: Int64, model: String) throws
        -> [(seq: Int64, vector: CompactVector)]
    {
        let rows = try Row.fetchCursor(
            cachedStatement(
                sql: """
                    SELECT seq, scale, vector FROM memory_vectors
                    WHERE session_key = ? AND revision > ? AND model = ? ORDER BY seq
                    """),
            arguments: [key, revision, model]
        )
        var vectors: [(seq: Int64, vector: CompactVector)] = []
        while let row = try rows.next() {
            guard let data = row[2] as Data?, let vector = CompactVector(data: data, scale: row[1]) else { continue }
            vectors.append((row[0], vector))
        }
        return vectors
    }
}

/// ``Writer/memoryColumns`` and `seq` (column 10).
private let sessionRowColumns = "\(Writer.memoryColumns), m.seq"
