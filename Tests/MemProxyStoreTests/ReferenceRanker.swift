import Foundation
import GRDB
import MemProxyCore
@testable import MemProxyStore

// The SQL recall of schemas v2–v5, kept as the reference that `RecallEngine` must rank identically to (see
// `RecallEngineTests`): it ranked FTS5's neighbourhood index (`memories_context_fts`, built here by the v2
// migration's own SQL) with `memproxy_bm25` (`ReferenceBM25`). This is the ranking the LoCoMo figures of
// README's "Retrieval quality" were measured and tuned with.

extension ReferenceRecall {
    /// Builds the neighbourhood index of every memory in `db`, as migration v2 did (the table is dropped by v6).
    static func buildNeighbourIndex(_ db: Database) throws {
        try db.execute(sql: NeighbourIndex.createTable)
        try db.execute(sql: NeighbourIndex.createContextView)
        try db.execute(sql: NeighbourIndex.populate)
        try ReferenceBM25.register(in: db)
    }
}

/// Session-scoped recall over the neighbourhood index, bounded in time.
///
/// 0. Procedural memories of the session come first, newest first, whatever the query (they count toward
///    the limit).
/// 1. Scope: the session's memories occupy the rowid range `key << 32 …`; every FTS5 query here carries
///    `rowid BETWEEN lower AND upper`, which FTS5 applies while scanning its postings, so other sessions'
///    rows are never read. The joined rows are checked again with `memories.session_id = ?`.
/// 2. Pruning: each term's document frequency in the session (rows of the ranked table, in the columns in
///    use) is counted up to `probeLimit` rows and extrapolated beyond (a plain scan, no ranking). Terms are taken rarest
///    first while their summed frequency fits the budget (at least one term), skipping common terms (see
///    `commonTermFraction`).
/// 3. Bound: if even that can match more rows than the budget, only the newest `candidateBudget` matching
///    rows are ranked (a higher rowid lower bound).
/// 4. Rank: bm25 with per-column weights (own text, neighbours, date) inside FTS5 with a small LIMIT, then
///    join the few winners to `memories`. The inverse document frequencies are the session's own (from step 2,
///    extrapolated when capped), passed to `memproxy_bm25` (see ``SessionBM25``): FTS5's built-in `bm25()`
///    would walk each term's postings across every session to count them, so recall cost would grow with the
///    whole table rather than the session.
/// 5. Re-score the winners: type weight, temporal boost, optional pseudo-relevance feedback.
enum ReferenceRecall {
    static func run(
        _ db: Database,
        session: String,
        query: RecallQuery,
        limit: Int,
        settings: RecallSettings
    ) throws -> [RecalledMemory] {
        guard limit > 0 else { return [] }
        let procedural = try Self.procedural(db, session: session, limit: limit)
        let ranked = try Self.ranked(db, session: session, query: query, limit: limit - procedural.count, settings: settings)
        // Procedural memories lead the list: they carry the best score of the result (at least 1), so scores
        // never increase down the list.
        let lead = max(1, ranked.first?.score ?? 1)
        return procedural.map { RecalledMemory(memory: $0, score: lead) } + ranked
    }

    /// The session's procedural memories, newest first.
    static func procedural(_ db: Database, session: String, limit: Int) throws -> [Memory] {
        guard limit > 0 else { return [] }
        return try Row.fetchAll(
            db.cachedStatement(
                sql: """
                    SELECT \(Writer.memoryColumns) FROM memories m
                    WHERE m.session_id = ? AND m.type = 'procedural'
                    ORDER BY m.created_at DESC, m.seq DESC LIMIT ?
                    """
            ),
            arguments: [session, limit]
        ).map(Writer.memory(from:))
    }

    /// The `limit` best non-procedural memories of the session for `query`, best first (steps 1–5).
    static func ranked(
        _ db: Database,
        session: String,
        query: RecallQuery,
        limit: Int,
        settings: RecallSettings
    ) throws -> [RecalledMemory] {
        guard limit > 0, !query.terms.isEmpty,
            let sessionRow = try Row.fetchOne(
                db.cachedStatement(sql: "SELECT key, memory_count, next_seq FROM sessions WHERE session_id = ?"),
                arguments: [session]
            )
        else { return [] }
        let sessionRows: Int = sessionRow[1]
        guard sessionRows > 0 else { return [] }
        let ranker = ReferenceRanker(
            db: db,
            session: session,
            range: Schema.rowRange(sessionKey: sessionRow[0]),
            sessionRows: sessionRows,
            sequenceSpan: sessionRow[2],
            settings: settings
        )
        return try ranker.rank(query, limit: limit)
    }
}

/// Ranks one session's non-procedural memories for one query.
///
/// It ranks `memories_context_fts`, restricted to the columns whose weight is above 0 (with neighbour and date
/// weights at 0: each memory's own text, ranked as v1's `memories_fts` ranked it; v4 dropped that index).
struct ReferenceRanker {
    let db: Database
    let session: String
    let range: (lower: Int64, upper: Int64)
    let sessionRows: Int
    /// `next_seq` of the session: the low 32 bits of its rowids run from 0 to this (minus deleted rows).
    let sequenceSpan: Int64
    let settings: RecallSettings
    /// The FTS5 table ranked.
    let table: String
    /// Its columns in use, for a column filter (empty: all).
    let columns: [String]
    /// The column weights (empty: every column weighs 1).
    let weights: [Double]
    let budget: Int
    /// Where a frequency probe stops counting.
    let probeLimit: Int
    /// Rows of the ranked table a term may match before it counts as common.
    let commonDF: Int

    init(
        db: Database,
        session: String,
        range: (lower: Int64, upper: Int64),
        sessionRows: Int,
        sequenceSpan: Int64,
        settings: RecallSettings
    ) {
        self.db = db
        self.session = session
        self.range = range
        self.sessionRows = sessionRows
        self.sequenceSpan = sequenceSpan
        self.settings = settings
        let all: [(NeighbourIndex.Column, Double)] = [
            (.content, 1), (.near, settings.nearWeight), (.far, settings.farWeight), (.date, settings.dateWeight),
        ]
        table = NeighbourIndex.table
        // No column filter when every column is in use (the filter would change nothing).
        columns = all.allSatisfy { $0.1 > 0 } ? [] : all.filter { $0.1 > 0 }.map(\.0.rawValue)
        weights = all.map(\.1)
        budget = max(1, settings.candidateBudget)
        probeLimit = max(1, settings.probeLimit)
        // Each neighbour slot in use repeats a memory's text in another row of the ranked table, so a term in a
        // given share of the memories' own text matches up to (1 + slots) times as many rows.
        let slots = (settings.nearWeight > 0 ? 2 : 0) + (settings.farWeight > 0 ? 2 * (NeighbourIndex.farRadius - 1) : 0)
        commonDF = (1 + slots) * max(settings.minCommonDF, Int(Double(sessionRows) * settings.commonTermFraction))
    }

    typealias Candidate = RecallCandidate

    func rank(_ query: RecallQuery, limit: Int) throws -> [RecalledMemory] {
        let depth = limit + max(0, settings.rerankDepth)
        guard let first = try search(terms: query.terms, depth: depth) else { return [] }
        var candidates = first.candidates
        if settings.feedbackDocuments > 0, settings.feedbackTerms > 0, settings.feedbackWeight > 0 {
            candidates = try addFeedback(to: candidates, queryTerms: first.terms, depth: depth)
        }
        return RecallScoring.rescore(candidates, query: query, limit: limit, settings: settings)
    }

    // MARK: - Search

    /// Prunes `terms`, bounds the candidate rows and ranks them; the `depth` best non-procedural memories with
    /// their bm25 relevance (higher is better), and the terms kept. `nil` when no term occurs in the session.
    func search(terms: [String], depth: Int) throws -> (candidates: [Candidate], terms: [String])? {
        // 2. Document frequency of each term in the session, capped.
        var frequencies: [(term: String, df: Frequency)] = []
        for term in terms.prefix(settings.maxProbedTerms) {
            let df = try documentFrequency(term)
            if df.counted > 0 { frequencies.append((term, df)) }
        }
        guard !frequencies.isEmpty else { return nil }
        frequencies.sort { $0.df.estimated < $1.df.estimated }
        var kept: [(term: String, idf: Double)] = []
        var estimatedRows = 0
        for (term, df) in frequencies {
            let rows = Int(df.estimated.rounded(.up))
            if !kept.isEmpty && (estimatedRows + rows > budget || rows > commonDF) { break }
            kept.append((term, idf(df)))
            estimatedRows += rows
            if kept.count >= settings.maxQueryTerms { break }
        }
        let candidates = try rankRows(terms: kept, estimatedRows: estimatedRows, depth: depth)
        return candidates.map { ($0, kept.map(\.term)) }
    }

    /// A term's document frequency in the session (rows of the ranked table, in the columns in use).
    struct Frequency {
        /// Rows matched, counted up to `probeLimit + 1`.
        var counted: Int
        /// The full count: `counted` when below the cap, otherwise extrapolated from the share of the session's
        /// rowid span that the capped scan covered (rowids grow with insertion within a session).
        var estimated: Double
    }

    /// Counts the rows of the session that match `term` (in the columns in use), up to `probeLimit + 1`, in
    /// rowid order, and estimates the full count when the cap is reached.
    func documentFrequency(_ term: String) throws -> Frequency {
        guard let match = FTSQueryBuilder.matchExpression(terms: [term], columns: columns),
            let row = try Row.fetchOne(
                db.cachedStatement(
                    sql: """
                        SELECT count(*), max(r) FROM (
                            SELECT rowid AS r FROM \(table) WHERE \(table) MATCH ? AND rowid BETWEEN ? AND ? LIMIT ?
                        )
                        """
                ),
                arguments: [match, range.lower, range.upper, probeLimit + 1]
            )
        else { return Frequency(counted: 0, estimated: 0) }
        let counted: Int = row[0]
        guard counted > probeLimit, let last: Int64 = row[1] else {
            return Frequency(counted: counted, estimated: Double(counted))
        }
        let covered = Double(last - range.lower + 1)
        let extrapolated = Double(counted) * Double(max(sequenceSpan, 1)) / covered
        return Frequency(counted: counted, estimated: min(Double(sessionRows), max(Double(counted), extrapolated)))
    }

    /// The session-level inverse document frequency of a term.
    func idf(_ frequency: Frequency) -> Double {
        RecallScoring.idf(documentFrequency: frequency.estimated, rows: Double(max(sessionRows, 1)))
    }

    /// 3 + 4: bounds the rows bm25 scores, ranks them inside FTS5 and joins the `depth` best to `memories`;
    /// `nil` when there is no term.
    func rankRows(terms: [(term: String, idf: Double)], estimatedRows: Int, depth: Int) throws -> [Candidate]? {
        guard let match = FTSQueryBuilder.matchExpression(terms: terms.map(\.term), columns: columns) else {
            return nil
        }
        var lower = range.lower
        if estimatedRows > budget {
            if let newest = try Int64.fetchOne(
                db.cachedStatement(
                    sql: """
                        SELECT rowid FROM \(table) WHERE \(table) MATCH ? AND rowid BETWEEN ? AND ?
                        ORDER BY rowid DESC LIMIT 1 OFFSET ?
                        """
                ),
                arguments: [match, range.lower, range.upper, budget - 1]
            ) {
                lower = newest
            }
        }
        // memproxy_bm25(table, k, k weights, one idf per phrase): the phrases are the terms, in order.
        let call = "\(ReferenceBM25.name)(\(table), ?" + String(repeating: ", ?", count: weights.count + terms.count) + ")"
        var arguments: StatementArguments = [weights.count]
        arguments += StatementArguments(weights)
        arguments += StatementArguments(terms.map(\.idf))
        arguments += [match, lower, range.upper, depth, session]
        // Ties: newer first (rowid order within a session is insertion order; the final sort settles it by
        // created_at).
        let rows = try Row.fetchAll(
            db.cachedStatement(
                sql: """
                    SELECT \(Writer.memoryColumns), f.seq, f.rank
                    FROM (
                        SELECT rowid AS seq, \(call) AS rank
                        FROM \(table)
                        WHERE \(table) MATCH ? AND rowid BETWEEN ? AND ?
                        ORDER BY rank, rowid DESC
                        LIMIT ?
                    ) AS f
                    JOIN memories AS m ON m.seq = f.seq
                    WHERE m.session_id = ? AND m.type <> 'procedural'
                    """
            ),
            arguments: arguments
        )
        return rows.map { row in
            let relevance = -(row[11] as Double)
            return Candidate(memory: Writer.memory(from: row), seq: row[10], relevance: relevance, score: relevance)
        }
    }

    // MARK: - Pseudo-relevance feedback

    /// Expands the query with the most characteristic words of the best `feedbackDocuments` candidates and adds
    /// `feedbackWeight` × the expansion query's relevance to every candidate's.
    func addFeedback(to candidates: [Candidate], queryTerms: [String], depth: Int) throws -> [Candidate] {
        let best = candidates.sorted { $0.relevance > $1.relevance }.prefix(settings.feedbackDocuments)
        guard !best.isEmpty else { return candidates }
        let known = Set(queryTerms)
        var documentCount: [String: Int] = [:]
        var order: [String] = []
        for candidate in best {
            // `terms(from:)` lists each term once, in order of appearance: the result is deterministic.
            for term in FTSQueryBuilder.terms(from: candidate.memory.content) where term.count >= 3 && !known.contains(term) {
                if documentCount[term] == nil { order.append(term) }
                documentCount[term, default: 0] += 1
            }
        }
        // Probe the terms found in most feedback documents first; weight each by that count × idf.
        let probed = order.enumerated()
            .sorted { a, b in
                let (ca, cb) = (documentCount[a.element] ?? 0, documentCount[b.element] ?? 0)
                return ca != cb ? ca > cb : a.offset < b.offset
            }
            .prefix(settings.feedbackTerms * 2)
            .map(\.element)
        var weighted: [(term: String, weight: Double, df: Frequency, rank: Int)] = []
        for (rank, term) in probed.enumerated() {
            let df = try documentFrequency(term)
            guard df.counted > 0, df.estimated <= Double(commonDF) else { continue }
            let idf = self.idf(df)
            weighted.append((term, Double(documentCount[term] ?? 0) * idf, df, rank))
        }
        weighted.sort { $0.weight != $1.weight ? $0.weight > $1.weight : $0.rank < $1.rank }
        var expansion: [(term: String, idf: Double)] = []
        var estimatedRows = 0
        for entry in weighted {
            let rows = Int(entry.df.estimated.rounded(.up))
            if !expansion.isEmpty && estimatedRows + rows > budget { break }
            expansion.append((entry.term, idf(entry.df)))
            estimatedRows += rows
            if expansion.count >= settings.feedbackTerms { break }
        }
        guard let expanded = try rankRows(terms: expansion, estimatedRows: estimatedRows, depth: depth) else {
            return candidates
        }
        var merged = candidates
        var position: [Int64: Int] = [:]
        for (index, candidate) in merged.enumerated() { position[candidate.seq] = index }
        for candidate in expanded {
            let added = settings.feedbackWeight * candidate.relevance
            if let index = position[candidate.seq] {
                merged[index].relevance += added
            } else {
                var extra = candidate
                extra.relevance = added
                position[extra.seq] = merged.count
                merged.append(extra)
            }
        }
        return merged
    }
}
