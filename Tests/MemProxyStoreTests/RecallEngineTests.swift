import Foundation
import GRDB
import MemProxyCore
import Testing

@testable import MemProxyStore

/// Recall's in-memory engine (``RecallEngine`` over ``SessionIndex``, kept by ``RecallIndexCache``).
@Suite struct RecallEngineTests {
    static let words = [
        "apple", "banana", "cherry", "dog", "park", "river", "piano", "garden", "tea", "rain", "running", "runs",
        "café", "Zürich", "May", "2023", "walked", "walking", "naïve", "東京",
    ]

    /// Random text; some texts are longer than the 512 characters a neighbour contributes, cut inside a word.
    static func text(_ random: inout SeededRandom) -> String {
        let count =
            Int.random(in: 0...10, using: &random) == 0
            ? Int.random(in: 60...120, using: &random)
            : Int.random(in: 1...12, using: &random)
        return (0..<count).map { _ in words[Int.random(in: 0..<words.count, using: &random)] }.joined(separator: " ")
    }

    /// Session s1's best 8 for `query` by the SQL reference ranker and by the in-memory engine, in one read.
    static func rankedBoth(_ store: SQLiteMemoryStore, _ query: RecallQuery) async throws
        -> (sql: [RecalledMemory], memory: [RecalledMemory])
    {
        let settings = store.recallSettings
        return try await store.dbPool.read { db in
            try ReferenceBM25.register(in: db)
            let sql = try ReferenceRecall.ranked(db, session: "s1", query: query, limit: 8, settings: settings)
            let memory = try Recall.context(
                db, cache: store.recallCache, session: "s1", query: query, limit: 8, proceduralLimit: 0,
                settings: settings
            ).recalled
            return (sql, memory)
        }
    }

    /// On a single-session store (so FTS5's table-wide statistics are the session's), with every frequency
    /// below the SQL ranker's probe cap, the in-memory engine ranks exactly as the SQL ranker of schemas v2–v5
    /// over the neighbourhood FTS5 index did (`ReferenceRecall`, the ranking LoCoMo was measured with): same memories, same order, same scores, for the default and the baseline
    /// settings. This pins tokenization (porter, diacritics, CJK), neighbour capping, dates, lengths and BM25.
    @Test(arguments: [false, true]) func ranksLikeTheSQLRanker(baseline: Bool) async throws {
        let store = try makeStore { if baseline { $0.recall = .baseline } }
        var random = SeededRandom(seed: baseline ? 7 : 11)
        var memories: [Memory] = []
        for index in 0..<60 {
            // Several days, with ties in created_at (exchanges store both halves at one time).
            memories.append(memory(Self.text(&random), at: Double(index / 2) * 40_000))
        }
        try store.insert(memories)
        try await store.dbPool.write { db in try ReferenceRecall.buildNeighbourIndex(db) }
        for round in 0..<40 {
            let count = Int.random(in: 1...4, using: &random)
            var query = (0..<count).map { _ in Self.words[Int.random(in: 0..<Self.words.count, using: &random)] }
                .joined(separator: " ")
            if round % 5 == 0 { query += " when did we go?" }
            let recallQuery = RecallQuery(text: query)
            let (expected, actual) = try await Self.rankedBoth(store, recallQuery)
            #expect(actual.map(\.memory.id) == expected.map(\.memory.id), "query: \(query)")
            for (a, e) in zip(actual, expected) {
                #expect(abs(a.score - e.score) <= 1e-9 * max(1, abs(e.score)), "query: \(query)")
            }
        }
    }

    /// When more rows match than `candidate_budget`, only the newest (by insertion) are ranked, exactly as the
    /// SQL ranker bounded them, whether the timeline is in insertion order or not (memories added with earlier
    /// dates).
    @Test(arguments: [false, true]) func boundsCandidatesLikeTheSQLRanker(shuffledDates: Bool) async throws {
        let store = try makeStore { $0.recall.candidateBudget = 10 }
        var random = SeededRandom(seed: shuffledDates ? 3 : 4)
        var memories: [Memory] = []
        for index in 0..<80 {
            let at = shuffledDates ? Double(Int.random(in: 0..<80, using: &random)) * 40_000 : Double(index) * 40_000
            memories.append(memory(Self.text(&random), at: at))
        }
        try store.insert(memories)
        try await store.dbPool.write { db in try ReferenceRecall.buildNeighbourIndex(db) }
        // One word per query: the SQL ranker sorted terms by frequency without a tie-break, so with several
        // words of equal frequency the two could keep different ones at the budget's edge.
        for word in Self.words {
            let recallQuery = RecallQuery(text: word)
            let (expected, actual) = try await Self.rankedBoth(store, recallQuery)
            #expect(actual.map(\.memory.id) == expected.map(\.memory.id), "query: \(word)")
        }
    }

    /// Document frequencies cached by one recall are brought up to date as later recalls append new rows (not
    /// recomputed): after many appends interleaved with recalls, every query ranks exactly as on an index built
    /// from scratch, for the default settings and for neighbours without dates. Episodic, semantic and procedural
    /// memories are mixed (only episodic ones share their text with their neighbours).
    @Test(arguments: [false, true]) func cachedFrequenciesStayExactAsRowsAreAppended(withoutDates: Bool) async throws {
        let store = try makeStore { if withoutDates { $0.recall.dateWeight = 0 } }
        var random = SeededRandom(seed: withoutDates ? 17 : 19)
        let queries = (0..<12).map { _ in
            (0..<Int.random(in: 1...3, using: &random)).map { _ in
                Self.words[Int.random(in: 0..<Self.words.count, using: &random)]
            }
            .joined(separator: " ")
        }
        for chunk in 0..<20 {
            try store.insert(
                (0..<Int.random(in: 1...4, using: &random)).map { _ in
                    let type: MemoryType = [.episodic, .episodic, .episodic, .semantic, .procedural].randomElement(
                        using: &random)!
                    return memory(Self.text(&random), at: Double(chunk) * 30_000, type: type)
                })
            for query in queries { _ = try await store.recall(session: "s1", query: query, limit: 8) }
        }
        let fresh = try RecallIndexCache(maxMemories: 1_000)
        let settings = store.recallSettings
        for query in queries {
            let recallQuery = RecallQuery(text: query)
            let (incremental, rebuilt) = try await store.dbPool.read { db in
                (
                    try Recall.context(
                        db, cache: store.recallCache, session: "s1", query: recallQuery, limit: 8, proceduralLimit: 0,
                        settings: settings
                    ).recalled,
                    try Recall.context(
                        db, cache: fresh, session: "s1", query: recallQuery, limit: 8, proceduralLimit: 0,
                        settings: settings
                    ).recalled
                )
            }
            #expect(incremental.map(\.memory.id) == rebuilt.map(\.memory.id), "query: \(query)")
            #expect(incremental.map(\.score) == rebuilt.map(\.score), "query: \(query)")
        }
    }

    /// What the date column holds: the same words SQLite's strftime gives, across leap years and eras.
    @Test func datesInWordsMatchSQLite() async throws {
        let store = try makeStore()
        try await store.dbPool.read { db in
            let samples: [Double] = [
                0, 86_399.9, 951_782_400, 1_700_000_000, -1, -34_560_000, 4_102_444_800, 1_709_164_800,
            ]
            for seconds in samples {
                let sql = try String.fetchOne(db, sql: "SELECT \(NeighbourIndex.dateText("?1"))", arguments: [seconds])
                #expect(SessionIndex.dateText(seconds) == sql, "seconds: \(seconds)")
            }
        }
    }

    /// The cache follows the database whoever writes it: rows appended since the last recall are found, an
    /// edit or a delete (another process's, too: plain SQL here) rebuilds the session, and a forgotten session
    /// recalls nothing.
    @Test func cacheFollowsEveryChange() async throws {
        // Own text only, so that a memory matches only by its own words.
        let store = try makeStore { $0.recall = .baseline }
        try store.insert([memory("the dog likes the park", at: 1), memory("tea in the garden", at: 2)])
        func recall(_ query: String) async throws -> [String] {
            try await store.recall(session: "s1", query: query, limit: 5).map(\.memory.content)
        }
        #expect(try await recall("dog") == ["the dog likes the park"])
        try store.insert([memory("the dog swims in the river", at: 3)])
        #expect(Set(try await recall("dog")) == ["the dog likes the park", "the dog swims in the river"])
        // Inserted earlier in the timeline than what is cached: rebuilt, and found.
        try store.insert([memory("a dog barked at dawn", at: 0)])
        #expect(try await recall("barked") == ["a dog barked at dawn"])
        try await store.dbPool.write { db in
            try db.execute(
                sql: "UPDATE memories SET content = 'the cat likes the park' WHERE content = 'the dog likes the park'")
            try db.execute(sql: "DELETE FROM memories WHERE content = 'the dog swims in the river'")
        }
        #expect(try await recall("dog") == ["a dog barked at dawn"])
        #expect(try await recall("cat") == ["the cat likes the park"])
        _ = try await store.forget(session: "s1")
        #expect(try await recall("cat").isEmpty)
        #expect(store.recallCache.cachedMemories == 0)
        try store.insert([memory("a new cat", at: 9)])
        #expect(try await recall("cat") == ["a new cat"])
    }

    /// The warm-up indexes the most recently active sessions first and stops before the bound; recalls then
    /// find those sessions indexed, and the others are indexed on demand.
    @Test func warmUpIndexesRecentSessionsWithinTheBound() async throws {
        let path = try temporaryDatabasePath()
        let writer = try makeStore(path: path)
        for session in 0..<4 {
            // s3 is the most recently active, s0 the least.
            try writer.insert(
                (0..<10).map {
                    memory("note \($0) about topic\(session)", session: "s\(session)", at: Double(session * 100 + $0))
                })
        }
        let store = try makeStore(path: path) { $0.maxCachedMemories = 25 }
        let warmed = await store.warmRecallIndex()
        #expect(warmed.sessions == 2 && warmed.memories == 20)
        #expect(store.recallCache.cachedMemories == 20)
        #expect(store.recallCache.contains("s3") && store.recallCache.contains("s2"))
        #expect(!store.recallCache.contains("s1") && !store.recallCache.contains("s0"))
        #expect(try await store.recall(session: "s0", query: "topic0", limit: 3).count == 3)
    }

    /// A database written by schema v4 (neighbourhood index and all) opens at v6: the index's objects are gone,
    /// every memory is kept, and recall finds them.
    @Test func aVersion4DatabaseMigrates() async throws {
        let path = try temporaryDatabasePath()
        do {
            let pool = try DatabasePool(path: path)
            try Schema.migrator.migrate(pool, upTo: "v4")
            try await pool.write { db in
                try db.execute(sql: "INSERT INTO sessions(session_id, next_seq) VALUES ('s1', 2)")
                let key = try Int64.fetchOne(db, sql: "SELECT key FROM sessions WHERE session_id = 's1'")!
                for (number, content) in ["the dog likes the park", "tea in the garden"].enumerated() {
                    try db.execute(
                        sql: """
                            INSERT INTO memories(seq, id, session_id, type, role, content, created_at, updated_at, source,
                                                 metadata, content_hash)
                            VALUES (?, ?, 's1', 'episodic', 'user', ?, ?, ?, 'import', '{}', 'x')
                            """,
                        arguments: [
                            key << 32 | Int64(number), "mem_v4_\(number)", content, 1_700_000_000 + number,
                            1_700_000_000,
                        ]
                    )
                }
            }
        }
        let store = try makeStore(path: path) { $0.recall = .baseline }
        let objects = try await store.dbPool.read { db in
            try String.fetchAll(
                db,
                sql:
                    "SELECT name FROM sqlite_master WHERE name LIKE 'memories_context%' OR name LIKE 'memories_neighbour%'"
            )
        }
        #expect(objects.isEmpty)
        #expect(try await store.recall(session: "s1", query: "dog", limit: 5).map(\.memory.id) == ["mem_v4_0"])
        #expect(try store.memories(session: "s1").count == 2)
    }

    /// While a large session's index is being built, other recalls of that session fail at once instead of
    /// queueing for it (each would hold one of the pool's few readers); small sessions just wait their turn.
    @Test func largeSessionsBeingBuiltFailFast() async throws {
        let store = try makeStore()
        let count = RecallIndexCache.largeSession
        try store.insert((0..<count).map { memory("note \($0) about the garden", session: "big", at: Double($0)) })
        try store.insert([memory("a note about the garden", session: "small")])
        store.recallCache.markBuilding("big", true)
        store.recallCache.markBuilding("small", true)
        await #expect(throws: RecallIndexBuilding.self) {
            try await store.recall(session: "big", query: "garden", limit: 3)
        }
        #expect(try await store.recall(session: "small", query: "garden", limit: 3).count == 1)
        store.recallCache.markBuilding("big", false)
        #expect(try await store.recall(session: "big", query: "garden", limit: 3).count == 3)
    }

    /// The cache stays within its bound by dropping the least recently used sessions, and a dropped session
    /// is rebuilt on its next recall with the same result.
    @Test func cacheIsBounded() async throws {
        let store = try makeStore { $0.maxCachedMemories = 25 }
        for session in 0..<4 {
            try store.insert(
                (0..<10).map { memory("note \($0) about topic\(session)", session: "s\(session)", at: Double($0)) })
        }
        var first: [String: [String]] = [:]
        for session in 0..<4 {
            first["s\(session)"] = try await store.recall(session: "s\(session)", query: "topic\(session)", limit: 3)
                .map(\.memory.id)
            #expect(store.recallCache.cachedMemories <= 25)
        }
        for session in 0..<4 {
            let again = try await store.recall(session: "s\(session)", query: "topic\(session)", limit: 3).map(
                \.memory.id)
            #expect(again == first["s\(session)"])
            #expect(again.count == 3)
        }
    }
}
