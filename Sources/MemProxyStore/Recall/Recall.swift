// Recall/ is the in-memory recall that every store backend shares; SQLite/ is one backend.
//
// Ranking never runs in the database. Each recently used session has an index in memory (`SessionIndex`: its
// memories as FTS5 `porter unicode61` tokens, in neighbourhood rows, `NeighbourIndex`), ranked by `RecallEngine`
// under `RecallSettings`; `Recall` below is what a store calls. `RecallIndexCache` keeps those indexes, bounded, in
// step with the database, and holds no SQL: a backend gives it two things (RecallBackend.swift).
// - `SessionRows`: inside one of the backend's read transactions, a session's row (`key`, `next_seq`, `revision`)
//   and its memories, all of them or those numbered from n on: to build an index, or to append what was inserted.
// - `CommitSignal`: a counter every commit raises by one, whoever commits. Read before a read transaction, it vouches
//   for that read's snapshot; while it stays there (or is moved only by this process's writer, which reports its
//   commits to the cache: `beginCommit`, `prepareCommit`, `finishCommit`), a fresh index is current and is ranked
//   without reading the database. SQLite: the WAL index header (SQLite/WALHeaderProbe.swift); PostgreSQL (issue 13):
//   notifications.
// `TextTokenizer` runs SQLite's FTS5 tokenizer in-process, whatever the backend.

import Foundation
import MemProxyCore

/// What recall searches for: the query's terms and whether it asks about time.
struct RecallQuery: Sendable {
    var terms: [String]
    var temporal: Bool
    /// Whether each recalled memory carries a ``RecallExplanation`` (the recall API's `"explain": true`).
    var explain: Bool
    /// The query text's embedding, when recall ranks by meaning too (``HybridRanking``).
    var vector: CompactVector?

    init(text: String, explain: Bool = false, vector: [Float]? = nil) {
        terms = FTSQueryBuilder.terms(from: text)
        temporal = TemporalCues.isTemporalQuestion(text)
        self.explain = explain
        self.vector = vector.flatMap(CompactVector.init(quantizing:))
    }
}

/// Session-scoped recall: see ``RecallEngine`` for the ranking, ``RecallIndexCache`` for how each session's
/// in-memory index follows the database.
enum Recall {
    /// In one pass over the session's in-memory index (``RecallIndexCache``): its procedural memories (newest
    /// first, at most `proceduralLimit`) and, with a query, its best other memories for it (at most `limit`, or
    /// `limit` minus the procedural ones with `proceduralCountsTowardLimit`).
    static func context(
        _ rows: some SessionRows,
        cache: RecallIndexCache,
        session: String,
        query: RecallQuery?,
        limit: Int,
        proceduralLimit: Int,
        proceduralCountsTowardLimit: Bool = false,
        settings: RecallSettings,
        commitsBefore: UInt32? = nil
    ) throws -> (procedural: [Memory], recalled: [RecalledMemory]) {
        try cache.withIndex(rows, session: session, commitsBefore: commitsBefore) { index in
            rank(
                index, tokenizer: cache.tokenizer, query: query, limit: limit, proceduralLimit: proceduralLimit,
                proceduralCountsTowardLimit: proceduralCountsTowardLimit, settings: settings)
        } ?? ([], [])
    }

    /// ``context(_:cache:session:query:limit:proceduralLimit:proceduralCountsTowardLimit:settings:)`` without a
    /// database read, when the session's cached index is known to be current
    /// (``RecallIndexCache/withCurrentIndex(session:_:)``); `nil` otherwise.
    static func cachedContext(
        cache: RecallIndexCache,
        session: String,
        query: RecallQuery?,
        limit: Int,
        proceduralLimit: Int,
        proceduralCountsTowardLimit: Bool = false,
        settings: RecallSettings
    ) -> (procedural: [Memory], recalled: [RecalledMemory])? {
        cache.withCurrentIndex(session: session) { index in
            rank(
                index, tokenizer: cache.tokenizer, query: query, limit: limit, proceduralLimit: proceduralLimit,
                proceduralCountsTowardLimit: proceduralCountsTowardLimit, settings: settings)
        }
    }

    private static func rank(
        _ index: SessionIndex,
        tokenizer: TextTokenizer,
        query: RecallQuery?,
        limit: Int,
        proceduralLimit: Int,
        proceduralCountsTowardLimit: Bool,
        settings: RecallSettings
    ) -> ((procedural: [Memory], recalled: [RecalledMemory]), [UInt64: Int]) {
        let procedural = index.proceduralRows.reversed().prefix(max(0, proceduralLimit))
            .map { index.memories[Int($0)] }
        let rankedLimit = proceduralCountsTowardLimit ? limit - procedural.count : limit
        guard let query, rankedLimit > 0 else { return ((procedural, []), [:]) }
        let engine = RecallEngine(index: index, settings: settings, tokenizer: tokenizer)
        if let vector = query.vector, index.vectors.present > 0,
            let (ranked, frequencies) = HybridRanking.rank(engine, query: query, vector: vector, limit: rankedLimit)
        {
            return ((procedural, ranked), frequencies)
        }
        guard !query.terms.isEmpty else { return ((procedural, []), [:]) }
        let (ranked, frequencies) = engine.rank(query, limit: rankedLimit)
        return ((procedural, ranked), frequencies)
    }
}

/// A ranked memory before re-scoring: its memory, `seq`, BM25 relevance and final score.
struct RecallCandidate {
    var memory: Memory
    var seq: Int64
    var relevance: Double
    var score: Double
    /// Its row in the session index (`-1`: unknown).
    var row = -1
    /// Set when the query asks to explain.
    var explanation: RecallExplanation?
}

/// BM25's parameters and the re-scoring rules of recall.
enum RecallScoring {
    /// BM25 term-frequency saturation and length normalisation, as FTS5 uses them.
    static let k1 = 1.2
    static let b = 0.75

    /// The inverse document frequency recall uses for a term found in `df` of a session's `rows` rows:
    /// `log(1 + (rows − df + 0.5) / (df + 0.5))`, the smooth form (Lucene's), which stays positive. FTS5's own
    /// form drops to a floor of 1e-6 for any term in more than half the rows; in one session's neighbourhood
    /// rows, where each memory's text also appears in six neighbours' rows, that zeroed many useful terms
    /// (LoCoMo dev, default settings: R@5 0.647 with it, 0.654 with this one).
    static func idf(documentFrequency df: Double, rows: Double) -> Double {
        log(1 + (rows - df + 0.5) / (df + 0.5))
    }

    /// Step 5: type weight and temporal boost on each candidate's relevance, then the `limit` best (ties: newer
    /// first).
    static func rescore(
        _ candidates: [RecallCandidate],
        query: RecallQuery,
        limit: Int,
        settings: RecallSettings
    ) -> [RecalledMemory] {
        rescoredCandidates(candidates, query: query, limit: limit, settings: settings).map {
            RecalledMemory(memory: $0.memory, score: $0.score, explanation: $0.explanation)
        }
    }

    /// ``rescore(_:query:limit:settings:)``, keeping each candidate's row (for fusion with the vectors).
    static func rescoredCandidates(
        _ candidates: [RecallCandidate],
        query: RecallQuery,
        limit: Int,
        settings: RecallSettings
    ) -> [RecallCandidate] {
        var candidates = candidates
        for index in candidates.indices {
            let relevance = candidates[index].relevance
            var (typeWeight, temporal) = (1.0, 1.0)
            if candidates[index].memory.type == .semantic { typeWeight = settings.semanticWeight }
            if query.temporal, settings.temporalBoost != 1,
                TemporalCues.containsTimeExpression(candidates[index].memory.content)
            {
                temporal = settings.temporalBoost
            }
            var score = relevance
            if typeWeight != 1 { score *= typeWeight }
            if temporal != 1 { score *= temporal }
            candidates[index].score = score
            if var explanation = candidates[index].explanation {
                explanation.feedback = relevance - explanation.relevance
                (explanation.relevance, explanation.typeWeight, explanation.temporal) = (relevance, typeWeight, temporal)
                explanation.score = score
                candidates[index].explanation = explanation
            }
        }
        candidates.sort { a, b in
            if a.score != b.score { return a.score > b.score }
            if a.memory.createdAt != b.memory.createdAt { return a.memory.createdAt > b.memory.createdAt }
            return a.seq > b.seq
        }
        return Array(candidates.prefix(limit))
    }
}
