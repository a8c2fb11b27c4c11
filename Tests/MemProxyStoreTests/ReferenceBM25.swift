import Foundation
import GRDB
import GRDBSQLite
@testable import MemProxyStore

// The FTS5 auxiliary function the SQL recall of schemas v2–v5 ranked with; test reference only (see ReferenceRanker.swift).

/// `memproxy_bm25(table, k, w1 … wk, idf1 … idfp)`: an FTS5 auxiliary function that scores the current row
/// with FTS5's own bm25 formula (k1 = 1.2, b = 0.75, column weights, the row's length against the table's
/// average), but with the inverse document frequency of each of the query's `p` phrases supplied by the caller.
/// Lengths count the ranked columns only: a column whose weight is 0 is left out of both the row's length and
/// the average (with every weight above 0 this is exactly `bm25()`; with only `content` ranked it is `bm25()`
/// on an index of the memories' own text).
///
/// Why: the built-in `bm25()` computes each phrase's document frequency by walking that phrase's whole doclist
/// (`xQueryPhrase`) once per query, across every session in the table, even when the query itself is
/// restricted to one session's rowid range. Recall cost then grew with the number of rows in *all* sessions
/// that share a term (about 1–3 ms per recall at only 15k memories when the vocabulary is shared). With the
/// frequencies counted inside the session (see `Ranker`), the cost of a recall depends only on the session's
/// own rows, and each tenant's memories are ranked by the statistics of that tenant's memories.
///
/// Arguments after the table: `k` column weights (columns beyond `k` weigh 1, as in `bm25()`), then one idf per
/// phrase, in the order the phrases appear in the MATCH expression. Returns minus the score (lower is better),
/// like `bm25()`, so `ORDER BY` ascending puts the best rows first.
enum ReferenceBM25 {
    static let name = "memproxy_bm25"

    /// BM25 term-frequency saturation and length normalisation, as FTS5 uses them.
    static let k1 = 1.2
    static let b = 0.75

    /// The inverse document frequency recall uses for a term found in `df` of a session's `rows` rows:
    /// `log(1 + (rows − df + 0.5) / (df + 0.5))`, the smooth form (Lucene's), which stays positive. FTS5's own
    /// form (``fts5IDF(documentFrequency:rows:)``) drops to a floor of 1e-6 for any term in more than half the
    /// rows; in one session's neighbourhood index, where each memory's text also appears in six neighbours' rows,
    /// that zeroed many useful terms (LoCoMo dev, default settings: R@5 0.647 with it, 0.654 with this one).
    static func idf(documentFrequency df: Double, rows: Double) -> Double {
        log(1 + (rows - df + 0.5) / (df + 0.5))
    }

    /// FTS5's `bm25()` inverse document frequency (with a floor of 1e-6), for comparison with the built-in.
    static func fts5IDF(documentFrequency df: Double, rows: Double) -> Double {
        let value = log((rows - df + 0.5) / (df + 0.5))
        return value > 0 ? value : 1e-6
    }

    /// Registers the function on one connection (each connection of the pool needs it).
    static func register(in db: Database) throws {
        let api = FTS5.api(db)
        guard let create = api.pointee.xCreateFunction else {
            throw DatabaseError(resultCode: .SQLITE_ERROR, message: "FTS5 cannot register auxiliary functions")
        }
        let code = name.withCString { create(UnsafeMutablePointer(mutating: api), $0, nil, function, nil) }
        guard code == SQLITE_OK else {
            throw DatabaseError(resultCode: ResultCode(rawValue: code), message: "cannot register \(name)")
        }
    }

    private static let function: fts5_extension_function = { api, fts, context, argc, argv in
        guard let api = api?.pointee, let argv, argc >= 1,
            let phraseCountOf = api.xPhraseCount, let instCountOf = api.xInstCount, let inst = api.xInst,
            let columnSize = api.xColumnSize, let rowCountOf = api.xRowCount, let totalSize = api.xColumnTotalSize
        else {
            sqlite3_result_error(context, "memproxy_bm25: bad call", -1)
            return
        }
        let weightCount = Int(sqlite3_value_int(argv[0]))
        let phraseCount = Int(phraseCountOf(fts))
        guard weightCount >= 0, Int(argc) == 1 + weightCount + phraseCount else {
            sqlite3_result_error(context, "memproxy_bm25: expects (table, k, k weights, one idf per phrase)", -1)
            return
        }
        var rows: sqlite3_int64 = 0
        var tokens: sqlite3_int64 = 0
        var instances: Int32 = 0
        var length: Int32 = 0
        var statisticsRead = rowCountOf(fts, &rows) == SQLITE_OK && instCountOf(fts, &instances) == SQLITE_OK
        let ranksEveryColumn = (0..<weightCount).allSatisfy { sqlite3_value_double(argv[1 + $0]) > 0 }
        if ranksEveryColumn {
            statisticsRead = statisticsRead && totalSize(fts, -1, &tokens) == SQLITE_OK
                && columnSize(fts, -1, &length) == SQLITE_OK
        } else if let columnCountOf = api.xColumnCount {
            // Only the ranked columns: weight above 0, or beyond the weights given (which weigh 1).
            for column in 0..<columnCountOf(fts) where Int(column) >= weightCount
                || sqlite3_value_double(argv[1 + Int(column)]) > 0
            {
                var columnTokens: sqlite3_int64 = 0
                var columnLength: Int32 = 0
                statisticsRead = statisticsRead && totalSize(fts, column, &columnTokens) == SQLITE_OK
                    && columnSize(fts, column, &columnLength) == SQLITE_OK
                tokens += columnTokens
                length += columnLength
            }
        } else {
            statisticsRead = false
        }
        guard statisticsRead else {
            sqlite3_result_error(context, "memproxy_bm25: cannot read the row's statistics", -1)
            return
        }
        let averageLength = rows > 0 && tokens > 0 ? Double(tokens) / Double(rows) : 1
        let score = withUnsafeTemporaryAllocation(of: Double.self, capacity: max(1, phraseCount)) { frequency in
            frequency.initialize(repeating: 0)
            for index in 0..<instances {
                var phrase: Int32 = 0
                var column: Int32 = 0
                var offset: Int32 = 0
                guard inst(fts, index, &phrase, &column, &offset) == SQLITE_OK, phrase >= 0, Int(phrase) < phraseCount
                else { continue }
                let weight = Int(column) < weightCount ? sqlite3_value_double(argv[1 + Int(column)]) : 1
                frequency[Int(phrase)] += weight
            }
            let norm = k1 * (1 - b + b * Double(length) / averageLength)
            var score = 0.0
            for phrase in 0..<phraseCount where frequency[phrase] > 0 {
                let idf = sqlite3_value_double(argv[1 + weightCount + phrase])
                score += idf * (frequency[phrase] * (k1 + 1)) / (frequency[phrase] + norm)
            }
            return score
        }
        sqlite3_result_double(context, -score)
    }
}
