import Foundation
import GRDB

/// The dashboard's reads on SQLite. Each is one read transaction of bounded work:
///
/// - sessions: a range of the `sessions.session_id` UNIQUE index (a prefix is a half-open range of ids, see
///   ``prefixUpperBound(_:)``), then per listed session a few index probes: its semantic and procedural counts
///   from the partial indexes (`memories_semantic`, v10; `memories_procedural`, v2), episodic as the rest of the
///   session's `memory_count`, and the newest memory and injection times from the `(session_id, created_at)`
///   indexes. Nothing reads a session's episodic memories, which are most of them.
/// - injections: `seq` is the rowid, so newest first is a backward walk of the table; a filter walks the index of
///   that column backwards instead (`injections_request`, v8; `injections_session`, `injections_api`, v10 — an
///   index on one column ends with the rowid, so it is ordered by `seq` within each value).
extension SQLiteMemoryStore: DashboardStore {
    /// One page of sessions whose id starts with `prefix`; see ``DashboardStore/sessionSummaries(prefix:limit:after:)``.
    ///
    /// - Parameters:
    ///   - prefix: The id prefix (exact characters); all sessions when `nil` or empty.
    ///   - limit: The most sessions on the page.
    ///   - cursor: Where the previous page ended.
    /// - Returns: The page.
    public func sessionSummaries(prefix: String?, limit: Int, after cursor: SessionCursor?) async throws
        -> DashboardSessionPage
    {
        let limit = max(1, limit)
        guard let (sql, arguments) = Self.sessionSummariesSQL(prefix: prefix ?? "", limit: limit, after: cursor) else {
            return DashboardSessionPage(sessions: [], nextCursor: nil)
        }
        return try await dbPool.read { db in
            let rows = try Row.fetchAll(db, sql: sql, arguments: arguments)
            let sessions = rows.prefix(limit).map { row in
                let total: Int = row[1]
                let semantic: Int = row[2]
                let procedural: Int = row[3]
                let times = [row[4] as Double?, row[5] as Double?].compactMap { $0 }
                return DashboardSessionSummary(
                    sessionID: row[0],
                    memoryCounts: MemoryTypeCounts(
                        episodic: max(0, total - semantic - procedural), semantic: semantic, procedural: procedural),
                    lastActivity: times.max().map(Date.init(timeIntervalSince1970:))
                )
            }
            let next = rows.count > limit ? sessions.last.map { SessionCursor(sessionID: $0.sessionID) } : nil
            return DashboardSessionPage(sessions: Array(sessions), nextCursor: next)
        }
    }

    /// One page of injection records, newest first; see
    /// ``DashboardStore/recentInjections(filter:limit:before:)``.
    ///
    /// - Parameters:
    ///   - filter: Exact filters.
    ///   - limit: The most records on the page.
    ///   - cursor: Only records older than this sequence.
    /// - Returns: The page.
    public func recentInjections(filter: DashboardInjectionFilter, limit: Int, before cursor: Int64?) async throws
        -> DashboardInjectionPage
    {
        let limit = max(1, limit)
        let (sql, arguments) = Self.recentInjectionsSQL(filter: filter, limit: limit, before: cursor)
        return try await dbPool.read { db in
            let rows = try Row.fetchAll(db, sql: sql, arguments: arguments)
            let page = try rows.prefix(limit).map(Self.dashboardInjection(from:))
            return DashboardInjectionPage(
                injections: page, nextCursor: rows.count > limit ? page.last?.sequence : nil)
        }
    }

    /// Injection records after `afterSequence`, oldest first; see ``DashboardStore/injections(afterSequence:limit:)``.
    ///
    /// - Parameters:
    ///   - afterSequence: The last sequence already seen.
    ///   - limit: The most records.
    /// - Returns: The records, oldest first.
    public func injections(afterSequence: Int64, limit: Int) async throws -> [StoredInjection] {
        let limit = max(0, limit)
        return try await dbPool.read { db in
            try Row.fetchAll(
                db.cachedStatement(
                    sql: "SELECT \(Self.injectionColumns) FROM injections WHERE seq > ? ORDER BY seq LIMIT ?"),
                arguments: [afterSequence, limit]
            ).map(Self.dashboardInjection(from:))
        }
    }

    /// The newest injection record's sequence; 0 when there is none.
    public func latestInjectionSequence() async throws -> Int64 {
        try await dbPool.read { db in
            try Int64.fetchOne(db, sql: "SELECT coalesce(max(seq), 0) FROM injections") ?? 0
        }
    }

    /// Totals for the overview; see ``DashboardCounts``.
    ///
    /// Sessions and memories are summed from the `sessions` rows (one per session, kept by triggers); semantic and
    /// procedural memories are counted in their partial indexes; the injection records' bound reads the two ends
    /// of the rowid.
    public func dashboardCounts() async throws -> DashboardCounts {
        try await dbPool.read { db in
            guard
                let row = try Row.fetchOne(
                    db,
                    sql: """
                        SELECT (SELECT count(*) FROM sessions),
                               (SELECT coalesce(sum(memory_count), 0) FROM sessions),
                               (SELECT count(*) FROM memories WHERE type = 'semantic'),
                               (SELECT count(*) FROM memories WHERE type = 'procedural'),
                               (SELECT coalesce(max(seq), 0) FROM injections),
                               (SELECT coalesce(min(seq), 1) FROM injections)
                        """
                )
            else {
                return DashboardCounts(
                    sessions: 0, memories: .init(episodic: 0, semantic: 0, procedural: 0), injectionRecordsAtMost: 0,
                    latestInjectionSequence: 0)
            }
            let total: Int = row[1]
            let semantic: Int = row[2]
            let procedural: Int = row[3]
            let newest: Int64 = row[4]
            let oldest: Int64 = row[5]
            return DashboardCounts(
                sessions: row[0],
                memories: MemoryTypeCounts(
                    episodic: max(0, total - semantic - procedural), semantic: semantic, procedural: procedural),
                injectionRecordsAtMost: Int(max(0, newest - oldest + 1)),
                latestInjectionSequence: newest
            )
        }
    }

    /// The statement of ``sessionSummaries(prefix:limit:after:)`` (internal for the query-plan tests); `nil` when
    /// nothing can match.
    static func sessionSummariesSQL(prefix: String, limit: Int, after cursor: SessionCursor?)
        -> (sql: String, arguments: StatementArguments)?
    {
        // GRDB binds text up to its first NUL, and no stored id holds one: such a prefix matches nothing.
        guard !prefix.utf8.contains(0) else { return nil }
        // One lower bound, so that SQLite starts the index range there: the cursor, or the prefix if it is later.
        var conditions: [String] = []
        var arguments: StatementArguments = []
        if let cursor, !cursor.sessionID.utf8.lexicographicallyPrecedes(prefix.utf8) {
            conditions.append("s.session_id > ?")
            arguments += [cursor.sessionID]
        } else {
            conditions.append("s.session_id >= ?")
            arguments += [prefix]
        }
        if !prefix.isEmpty, let upper = prefixUpperBound(prefix) {
            conditions.append("s.session_id < ?")
            arguments += [upper]
        }
        arguments += [limit + 1]
        let sql = """
            SELECT s.session_id, s.memory_count,
                   (SELECT count(*) FROM memories WHERE session_id = s.session_id AND type = 'semantic'),
                   (SELECT count(*) FROM memories WHERE session_id = s.session_id AND type = 'procedural'),
                   (SELECT max(created_at) FROM memories WHERE session_id = s.session_id),
                   (SELECT max(created_at) FROM injections WHERE session_id = s.session_id)
            FROM sessions s WHERE \(conditions.joined(separator: " AND ")) ORDER BY s.session_id LIMIT ?
            """
        return (sql, arguments)
    }

    /// The statement of ``recentInjections(filter:limit:before:)`` (internal for the query-plan tests).
    ///
    /// Exactly one filter drives the walk, the most selective: request id, else session, else API. The others
    /// are written `+column` so that SQLite cannot pick their index instead and sort.
    static func recentInjectionsSQL(filter: DashboardInjectionFilter, limit: Int, before cursor: Int64?)
        -> (sql: String, arguments: StatementArguments)
    {
        var conditions: [String] = []
        var arguments: StatementArguments = []
        var driven = false
        for (column, value) in [("request_id", filter.requestID), ("session_id", filter.session), ("api", filter.api)] {
            guard let value else { continue }
            conditions.append(driven ? "+\(column) = ?" : "\(column) = ?")
            arguments += [value]
            driven = true
        }
        if let cursor {
            conditions.append("seq < ?")
            arguments += [cursor]
        }
        arguments += [limit + 1]
        let whereClause = conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND ")
        return (
            "SELECT \(injectionColumns) FROM injections\(whereClause) ORDER BY seq DESC LIMIT ?", arguments
        )
    }

    /// The smallest string greater than every string that starts with `prefix`, in SQLite's byte order (UTF-8 byte
    /// order is code point order): `prefix` with its last scalar raised by one, carrying past U+10FFFF; `nil` when
    /// there is none (every scalar is U+10FFFF). So `id >= prefix AND id < bound` holds exactly for the ids that
    /// start with `prefix`, as an index range, with no wildcard to escape (LIKE would also ignore case).
    static func prefixUpperBound(_ prefix: String) -> String? {
        var scalars = Array(prefix.unicodeScalars)
        while let last = scalars.popLast() {
            // No string holds a surrogate: after U+D7FF comes U+E000.
            let next = last.value == 0xD7FF ? 0xE000 : last.value + 1
            if let scalar = Unicode.Scalar(next) {
                scalars.append(scalar)
                var view = String.UnicodeScalarView()
                view.append(contentsOf: scalars)
                return String(view)
            }
        }
        return nil
    }

    /// A row of ``injectionColumns`` as a stored injection.
    private static func dashboardInjection(from row: Row) throws -> StoredInjection {
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
}
