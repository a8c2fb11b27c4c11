import GRDB
import MemProxyCore

/// Knobs of lexical recall. Internal: tuned with `MemProxyBench`, not configured by operators.
struct RecallTuning: Sendable {
    /// The most rows bm25 scores per recall. bm25 costs ~1 µs per matching row, so this bounds recall time
    /// however many rows match.
    var candidateBudget = 500
    /// A term in more than this share of the session's memories is dropped while rarer terms remain.
    var commonTermFraction = 0.2
    /// …but in small sessions a term is never "common" below this many rows.
    var minCommonDF = 50
    /// The most query terms whose frequency is probed (the first ones in the text).
    var maxProbedTerms = 16
    /// The most terms (the rarest ones) the final query ORs.
    var maxQueryTerms = 8
    /// Multipliers of the bm25 score per memory type (hook: semantic may get a small boost).
    var episodicWeight = 1.0
    var semanticWeight = 1.0
    var proceduralWeight = 1.0

    var hasTypeWeights: Bool { episodicWeight != 1 || semanticWeight != 1 || proceduralWeight != 1 }
}

/// Session-scoped BM25 recall over the FTS5 index, bounded in time.
///
/// 1. Scope: the session's memories occupy the rowid range `key << 32 …`; every FTS5 query here carries
///    `rowid BETWEEN lower AND upper`, which FTS5 applies while scanning its postings, so other sessions'
///    rows are never read. The joined rows are checked again with `memories.session_id = ?`.
/// 2. Pruning: each term's document frequency in the session is counted, capped at the candidate budget
///    (a plain scan, no ranking). Terms are taken rarest first while their summed frequency fits the
///    budget (at least one term), skipping terms in more than `commonTermFraction` of the session.
/// 3. Bound: if even that can match more rows than the budget, only the newest `candidateBudget` matching
///    rows are ranked (a higher rowid lower bound).
/// 4. Rank: bm25 (× type weight) inside FTS5 with a small LIMIT, then join the few winners to `memories`.
enum Recall {
    static func run(
        _ db: Database,
        session: String,
        terms: [String],
        limit: Int,
        tuning: RecallTuning
    ) throws -> [RecalledMemory] {
        guard limit > 0, !terms.isEmpty,
            let sessionRow = try Row.fetchOne(
                db.cachedStatement(sql: "SELECT key, memory_count FROM sessions WHERE session_id = ?"),
                arguments: [session]
            )
        else { return [] }
        let range = Schema.rowRange(sessionKey: sessionRow[0])
        let sessionRows: Int = sessionRow[1]
        guard sessionRows > 0 else { return [] }
        let budget = max(1, tuning.candidateBudget)

        // 2. Document frequency of each term in the session, capped.
        let probe = try db.cachedStatement(
            sql: """
                SELECT count(*) FROM (
                    SELECT 1 FROM memories_fts WHERE memories_fts MATCH ? AND rowid BETWEEN ? AND ? LIMIT ?
                )
                """
        )
        var frequencies: [(term: String, df: Int)] = []
        for term in terms.prefix(tuning.maxProbedTerms) {
            let df =
                try Int.fetchOne(
                    probe,
                    arguments: [FTSQueryBuilder.quoted(term), range.lower, range.upper, budget + 1]
                ) ?? 0
            if df > 0 { frequencies.append((term, df)) }
        }
        guard !frequencies.isEmpty else { return [] }
        frequencies.sort { $0.df < $1.df }
        let commonDF = max(tuning.minCommonDF, Int(Double(sessionRows) * tuning.commonTermFraction))
        var kept: [String] = []
        var estimatedRows = 0
        for (term, df) in frequencies {
            if !kept.isEmpty && (estimatedRows + df > budget || df > commonDF) { break }
            kept.append(term)
            estimatedRows += df
            if kept.count >= tuning.maxQueryTerms { break }
        }
        guard let match = FTSQueryBuilder.matchExpression(terms: kept) else { return [] }

        // 3. Bound the rows bm25 has to score.
        var lower = range.lower
        if estimatedRows > budget {
            if let newest = try Int64.fetchOne(
                db.cachedStatement(
                    sql: """
                        SELECT rowid FROM memories_fts WHERE memories_fts MATCH ? AND rowid BETWEEN ? AND ?
                        ORDER BY rowid DESC LIMIT 1 OFFSET ?
                        """
                ),
                arguments: [match, range.lower, range.upper, budget - 1]
            ) {
                lower = newest
            }
        }

        // 4. Rank inside FTS5, then join only the winners. Ties: newer first (rowid order within a session is
        // insertion order; the outer ORDER BY settles it by created_at).
        let rows: [Row]
        if tuning.hasTypeWeights {
            rows = try Row.fetchAll(
                db.cachedStatement(sql: rankSQL(weighted: true)),
                arguments: [
                    tuning.semanticWeight, tuning.proceduralWeight, tuning.episodicWeight,
                    match, lower, range.upper, limit + 16, session, limit,
                ]
            )
        } else {
            rows = try Row.fetchAll(
                db.cachedStatement(sql: rankSQL(weighted: false)),
                arguments: [match, lower, range.upper, limit + 16, session, limit]
            )
        }
        return rows.map { row in
            RecalledMemory(memory: Writer.memory(from: row), score: -(row[10] as Double))
        }
    }

    /// The ranking query. Unweighted, bm25 runs on the FTS5 table alone: joining `memories` for every
    /// candidate (to read its type) roughly doubled the cost, so that join happens only when type weights
    /// are set.
    private static func rankSQL(weighted: Bool) -> String {
        let inner =
            weighted
            ? """
            SELECT memories_fts.rowid AS seq,
                   bm25(memories_fts)
                     * (CASE t.type WHEN 'semantic' THEN ? WHEN 'procedural' THEN ? ELSE ? END) AS rank
            FROM memories_fts JOIN memories AS t ON t.seq = memories_fts.rowid
            """
            : """
            SELECT memories_fts.rowid AS seq, bm25(memories_fts) AS rank
            FROM memories_fts
            """
        return """
            SELECT \(Writer.memoryColumns), f.rank
            FROM (
                \(inner)
                WHERE memories_fts MATCH ? AND memories_fts.rowid BETWEEN ? AND ?
                ORDER BY rank, memories_fts.rowid DESC
                LIMIT ?
            ) AS f
            JOIN memories AS m ON m.seq = f.seq
            WHERE m.session_id = ?
            ORDER BY f.rank, m.created_at DESC, m.seq DESC
            LIMIT ?
            """
    }
}
