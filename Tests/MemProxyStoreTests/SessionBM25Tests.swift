import Foundation
import GRDB
import MemProxyCore
@testable import MemProxyStore
import Testing

/// `memproxy_bm25`: FTS5's bm25 with caller-supplied statistics, and recall ranking by each session's own.
@Suite struct SessionBM25Tests {
    /// With the table-wide document frequencies it gives exactly what the built-in `bm25()` gives, row for row:
    /// on the neighbourhood index with every column ranked, and with only `content` ranked (the baseline), where
    /// it must equal `bm25()` on an index of the memories' own text alone (what v1's `memories_fts` was).
    @Test func equalsBuiltInBM25GivenTheSameStatistics() async throws {
        let store = try makeStore()
        var random = SeededRandom(seed: 42)
        let words = ["apple", "banana", "cherry", "dog", "park", "river", "piano", "garden", "tea", "rain"]
        var memories: [Memory] = []
        for index in 0..<120 {
            let count = Int.random(in: 1...9, using: &random)
            let text = (0..<count).map { _ in words[Int.random(in: 0..<words.count, using: &random)] }
            memories.append(memory(text.joined(separator: " "), session: index % 2 == 0 ? "s1" : "s2", at: Double(index)))
        }
        try store.insert(memories)
        let terms = ["apple", "river", "tea"]
        try await store.dbPool.write { db in
            try db.execute(sql: "CREATE VIRTUAL TABLE own_text USING fts5(content, tokenize = 'porter unicode61')")
            try db.execute(sql: "INSERT INTO own_text(rowid, content) SELECT seq, content FROM memories")
        }
        try await store.dbPool.read { db in
            let table = NeighbourIndex.table
            let rows = try Double.fetchOne(db, sql: "SELECT count(*) FROM \(table)")!
            // (reference table, its bm25 call, weights for memproxy_bm25, column filter)
            let cases: [(String, String, [Double], [String])] = [
                (table, "bm25(\(table), 1, 0.5, 0.4, 1)", [1, 0.5, 0.4, 1], []),
                ("own_text", "bm25(own_text)", [1, 0, 0, 0], ["content"]),
            ]
            for (reference, builtIn, weights, columns) in cases {
                var idfs: [Double] = []
                for term in terms {
                    let df = try Double.fetchOne(
                        db, sql: "SELECT count(*) FROM \(reference) WHERE \(reference) MATCH ?",
                        arguments: [FTSQueryBuilder.quoted(term)]
                    )!
                    idfs.append(SessionBM25.fts5IDF(documentFrequency: df, rows: rows))
                }
                let expected = try Dictionary(
                    uniqueKeysWithValues: Row.fetchAll(
                        db, sql: "SELECT rowid, \(builtIn) FROM \(reference) WHERE \(reference) MATCH ?",
                        arguments: [FTSQueryBuilder.matchExpression(terms: terms)!]
                    ).map { ($0[0] as Int64, $0[1] as Double) }
                )
                var arguments: StatementArguments = [weights.count]
                arguments += StatementArguments(weights)
                arguments += StatementArguments(idfs)
                arguments += [FTSQueryBuilder.matchExpression(terms: terms, columns: columns)!]
                let actual = try Row.fetchAll(
                    db,
                    sql: """
                        SELECT rowid, memproxy_bm25(\(table), ?\(String(repeating: ", ?", count: weights.count + idfs.count)))
                        FROM \(table) WHERE \(table) MATCH ?
                        """,
                    arguments: arguments
                )
                #expect(expected.count > 20)
                #expect(actual.count == expected.count, "\(reference): same rows")
                for row in actual {
                    let (rowid, score): (Int64, Double) = (row[0], row[1])
                    let reference = try #require(expected[rowid])
                    #expect(abs(reference - score) <= 1e-9 * max(1, abs(reference)), "\(builtIn): \(reference) vs \(score)")
                }
            }
        }
    }

    /// A wrong number of arguments is an SQL error, not a crash or a silent score.
    @Test func rejectsAnIDFCountThatDoesNotMatchThePhrases() async throws {
        let store = try makeStore()
        try store.insert([memory("apple pie")])
        await #expect(throws: DatabaseError.self) {
            try await store.dbPool.read { db in
                try Double.fetchAll(
                    db,
                    sql: """
                        SELECT memproxy_bm25(memories_context_fts, 0, 1.0) FROM memories_context_fts
                        WHERE memories_context_fts MATCH ?
                        """,
                    arguments: ["\"apple\" OR \"pie\""]
                )
            }
        }
    }

    /// A session's ranking depends on its own memories' term statistics: another tenant writing the same word a
    /// thousand times does not change the order (with table-wide statistics, "apple" would become common and
    /// the banana memories would win). Scores may move a little: lengths are still normalised by the table's
    /// average memory length.
    @Test func otherSessionsDoNotChangeASessionsRanking() async throws {
        let store = try makeStore { $0.recall = .baseline }
        try store.insert([
            memory("apple pie recipe from grandma", at: 0),
            memory("banana bread with walnuts", at: 1),
            memory("banana smoothie every morning", at: 2),
            memory("the weather was cold", at: 3),
        ])
        let query = "apple banana"
        let before = try await store.recall(session: "s1", query: query, limit: 3)
        #expect(before.first?.memory.content == "apple pie recipe from grandma")
        try store.insert((0..<1000).map { memory("apple apple orchard \($0)", session: "tenant-\($0 % 7)", at: Double(10 + $0)) })
        let after = try await store.recall(session: "s1", query: query, limit: 3)
        #expect(after.map(\.memory.content) == before.map(\.memory.content))
    }

    /// In a large session the frequency count stops at the probe limit and is extrapolated over the session's rowid span, so scores stay comparable to an uncapped count.
    @Test func cappedCountsAreExtrapolated() async throws {
        let store = try makeStore {
            $0.recall = .baseline
            $0.recall.probeLimit = 20
        }
        var memories = (0..<200).map { memory("daily note \($0) about coffee", at: Double($0)) }
        memories.append(memory("one note about a zebra", at: 300))
        try store.insert(memories)
        try await store.dbPool.read { db in
            let session = try Row.fetchOne(db, sql: "SELECT key, memory_count, next_seq FROM sessions WHERE session_id = 's1'")!
            let ranker = Ranker(
                db: db, session: "s1", range: Schema.rowRange(sessionKey: session[0]), sessionRows: session[1],
                sequenceSpan: session[2], settings: store.recallSettings
            )
            let coffee = try ranker.documentFrequency("coffee")
            #expect(coffee.counted == 21)
            #expect(abs(coffee.estimated - 201) < 1e-9)
            let note = try ranker.documentFrequency("note")
            #expect(note.counted == 21 && abs(note.estimated - 201) < 1e-9)
            let zebra = try ranker.documentFrequency("zebra")
            #expect(zebra.counted == 1 && zebra.estimated == 1)
            #expect(try ranker.documentFrequency("absent").counted == 0)
        }
    }
}
