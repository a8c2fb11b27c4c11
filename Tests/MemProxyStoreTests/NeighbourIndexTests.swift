import Foundation
import GRDB
import Logging
import MemProxyCore
@testable import MemProxyStore
import Testing

/// The neighbourhood index (`memories_context_fts`): each memory's neighbours' text and date, kept exact by
/// triggers whatever writes `memories`.
@Suite struct NeighbourIndexTests {
    @Test func indexesNeighboursInTimelineOrderWithTiesBySeq() async throws {
        let store = try makeStore()
        // Inserted out of time order; three share one timestamp (their order is insertion order).
        try store.insert([
            memory("alpha", at: 50),
            memory("bravo", at: 10),
            memory("charlie", at: 30),
            memory("delta", at: 30),
            memory("echo", at: 30),
            memory("foxtrot", at: 0),
            memory("golf", at: 99),
        ])
        try await expectIndexIsExact(store)
        let rows = try await indexRows(store, session: "s1")
        // Timeline: foxtrot(0) bravo(10) charlie(30) delta(30) echo(30) alpha(50) golf(99).
        #expect(words(rows["delta"]?.near) == ["charlie", "echo"])
        #expect(words(rows["delta"]?.far) == ["alpha", "bravo", "foxtrot", "golf"])
        #expect(words(rows["foxtrot"]?.near) == ["bravo"])
        #expect(words(rows["foxtrot"]?.far) == ["charlie", "delta"])
        #expect(rows["golf"]?.date == "14 November 2023")
    }

    @Test func plainSQLWritesKeepEveryNeighbourExact() async throws {
        let store = try makeStore()
        var random = SeededRandom(seed: 6)
        var inserted: [Memory] = []
        for index in 0..<40 {
            // Coarse timestamps make many ties; sessions interleave.
            let item = memory(
                "word\(index) shared", session: index % 3 == 0 ? "other" : "s1",
                at: Double(Int.random(in: 0..<12, using: &random) * 10)
            )
            inserted.append(item)
            try store.insert([item])
        }
        try await expectIndexIsExact(store)

        let s1 = inserted.filter { $0.sessionID == "s1" }
        try await store.dbPool.write { db in
            // Edit a text (the memory API's update is this statement).
            try db.execute(sql: "UPDATE memories SET content = 'edited text' WHERE id = ?", arguments: [s1[3].id])
            // Same text again: nothing to re-index.
            try db.execute(sql: "UPDATE memories SET content = 'edited text' WHERE id = ?", arguments: [s1[3].id])
            // Metadata only.
            try db.execute(sql: "UPDATE memories SET metadata = '{\"a\":1}' WHERE id = ?", arguments: [s1[4].id])
        }
        try await expectIndexIsExact(store)
        try await store.dbPool.write { db in
            // Move in the timeline, with and without a new text.
            try db.execute(sql: "UPDATE memories SET created_at = created_at + 1000 WHERE id = ?", arguments: [s1[5].id])
            try db.execute(
                sql: "UPDATE memories SET created_at = ?, content = 'moved and edited' WHERE id = ?",
                arguments: [baseDate.timeIntervalSince1970 - 5, s1[6].id]
            )
            // Into the middle of a tie group.
            try db.execute(
                sql: "UPDATE memories SET created_at = (SELECT created_at FROM memories WHERE id = ?) WHERE id = ?",
                arguments: [s1[8].id, s1[7].id]
            )
        }
        try await expectIndexIsExact(store)
        try await store.dbPool.write { db in
            for victim in [s1[0], s1[9], s1[10]] {
                try db.execute(sql: "DELETE FROM memories WHERE id = ?", arguments: [victim.id])
            }
        }
        try await expectIndexIsExact(store)
        // An import into the past lands between existing memories.
        try store.insert([memory("imported from the past", at: 25), memory("imported too", at: 25)])
        try await expectIndexIsExact(store)
        try await store.dbPool.write { db in
            try db.execute(sql: "DELETE FROM memories WHERE session_id = 'other'")
        }
        try await expectIndexIsExact(store)
        #expect(try await indexRows(store, session: "other").isEmpty)
        // A whole session at once, the fast way.
        try store.insert((0..<20).map { memory("gone \($0)", session: "wipe", at: Double($0)) })
        try await store.dbPool.write { db in
            try NeighbourIndex.dropSessionIndex(session: "wipe", in: db)
            try db.execute(sql: "DELETE FROM memories WHERE session_id = 'wipe'")
        }
        try await expectIndexIsExact(store)
    }

    @Test func longRunsOfEqualTimestampsStayCheap() async throws {
        let store = try makeStore()
        let count = 3000
        let start = ContinuousClock.now
        try store.insert((0..<count).map { memory("same time \($0)", at: 0) })
        // Linear in the number of rows: each insert probes a bounded number of index entries. (A quadratic
        // scan of the tie group would take minutes here.)
        #expect(ContinuousClock.now - start < .seconds(30))
        try await expectIndexIsExact(store)
    }

    @Test func exchangesAreIndexedWithTheirOtherHalf() async throws {
        let store = try makeStore()
        try await withWriter(store) {
            store.submit(exchange(user: "Which city should I visit in spring?", assistant: "Lisbon, for the light.", at: 0))
            store.submit(exchange(user: "Thanks!", assistant: "Enjoy the trip.", at: 1))
            await store.flush()
        }
        try await expectIndexIsExact(store)
        // The answer shares no word with the question; its other half does.
        let found = try await store.recall(session: "s1", query: "city to visit", limit: 5)
        #expect(found.map(\.memory.content).prefix(2) == ["Which city should I visit in spring?", "Lisbon, for the light."])
        let plain = try makeStore(path: store.configuration.path) { $0.recall = .baseline }
        #expect(try await plain.recall(session: "s1", query: "city to visit", limit: 5).map(\.memory.content) == [
            "Which city should I visit in spring?"
        ])
    }

    @Test func datesInWordsAreSearchable() async throws {
        let store = try makeStore()
        let may = try #require(ISO8601DateFormatter().date(from: "2023-05-08T13:56:00Z"))
        try store.insert([
            Memory(sessionID: "s1", type: .episodic, content: "painted a sunrise", createdAt: may),
            Memory(sessionID: "s1", type: .episodic, content: "painted a lake", createdAt: may + 86400 * 60),
        ])
        let rows = try await indexRows(store, session: "s1")
        #expect(rows["painted a sunrise"]?.date == "8 May 2023")
        #expect(rows["painted a lake"]?.date == "7 July 2023")
        let found = try await store.recall(session: "s1", query: "What was painted in May?", limit: 1)
        #expect(found.map(\.memory.content) == ["painted a sunrise"])
    }

    @Test func aVersion1DatabaseMigratesAndIndexesItsMemories() async throws {
        let path = try temporaryDatabasePath()
        do {
            let pool = try DatabasePool(path: path)
            try Schema.migrator.migrate(pool, upTo: "v1")
            try await pool.write { db in
                for (index, text) in ["first words", "second words", "third words", "fourth words", "fifth"].enumerated() {
                    try Writer.insert(memory(text, at: Double(index)), in: db)
                }
                try Writer.insert(memory("procedural rule", at: 9, type: .procedural), in: db)
            }
        }
        let store = try makeStore(path: path)
        let applied = try await store.dbPool.read { db in try Schema.migrator.appliedMigrations(db) }
        #expect(applied == ["v1", "v2", "v3", "v4", "v5"])
        try await expectIndexIsExact(store)
        #expect(words(try await indexRows(store, session: "s1")["third words"]?.near) == ["fourth", "second", "words", "words"])
        // v4 dropped v1's index; the neighbourhood index follows writes.
        try store.insert([memory("sixth words", at: 10)])
        let (sixth, v1Index) = try await store.dbPool.read { db in
            (
                try Int.fetchOne(db, sql: "SELECT count(*) FROM memories_context_fts WHERE memories_context_fts MATCH 'content: sixth'"),
                try db.tableExists("memories_fts")
            )
        }
        #expect(sixth == 1)
        #expect(!v1Index)
        let found = try await store.recall(session: "s1", query: "fifth", limit: 3)
        #expect(found.first?.memory.content == "procedural rule")
        #expect(found.dropFirst().first?.memory.content == "fifth")
    }

    @Test func aWriterBatchAcrossSessionsIndexesEveryNeighbourOnce() async throws {
        let store = try makeStore()
        var random = SeededRandom(seed: 21)
        // Existing timelines, with ties, so that the batch lands next to, between and before old memories.
        let sessions = ["a", "b", "c", "d", "e"]
        try store.insert(sessions.flatMap { session in
            (0..<12).map { memory("old \(session)\($0)", session: session, at: Double(($0 / 2) * 10)) }
        })
        try await expectIndexIsExact(store)
        // One batch (all queued before the writer starts): appends to every session, interleaved, plus exchanges
        // at tied and earlier times, one without a reply, and a retried duplicate (skipped).
        var records: [ExchangeRecord] = []
        for index in 0..<120 {
            let session = sessions[Int.random(in: 0..<sessions.count, using: &random)]
            let time: Double =
                switch index % 4 {
                case 0: 1000 + Double(index)  // appended in order
                case 1: Double(Int.random(in: 0..<7, using: &random) * 10)  // tied with old memories
                case 2: 2000 - Double(index)  // out of order among the batch
                default: -Double(index)  // before everything
                }
            records.append(
                exchange(
                    session: session, hash: "h\(index)", user: "question \(index)",
                    assistant: index % 9 == 0 ? nil : "answer \(index)", at: time
                )
            )
        }
        records.append(exchange(session: "a", hash: "h0", user: "question 0 again", assistant: "again", at: 1000))
        for record in records { store.submit(record) }
        try await withWriter(store) { await store.flush() }
        #expect(try store.memories(session: "a").contains { $0.content == "question 0 again" } == false)
        try await expectIndexIsExact(store)
        // The flag never outlives a transaction: plain SQL inserts are indexed by the trigger again.
        let deferred = try await store.dbPool.read { db in
            try Int.fetchOne(db, sql: "SELECT deferred FROM memories_context_deferral")
        }
        #expect(deferred == 0)
        try await store.dbPool.write { db in
            try Writer.insert(memory("plain insert", session: "b", at: 15), in: db)
            try Writer.insert(memory("plain insert too", session: "b", at: 15), in: db)
        }
        try await expectIndexIsExact(store)
    }

    @Test func aLoaderBatchMixingSessionsTiesAndDisorderIsExact() async throws {
        let store = try makeStore()
        var random = SeededRandom(seed: 5)
        for round in 0..<4 {
            let batch = (0..<150).map { index in
                memory(
                    "round\(round) item\(index)", session: ["x", "y", "z"][Int.random(in: 0..<3, using: &random)],
                    at: Double(Int.random(in: 0..<25, using: &random) * 10)
                )
            }
            try store.insert(batch)
            try await expectIndexIsExact(store)
        }
        // A single memory, and an empty batch.
        try store.insert([memory("alone", session: "solo", at: 0)])
        try store.insert([])
        try await expectIndexIsExact(store)
    }

    @Test func insertsOutsideABatchAreIndexedByTheTrigger() async throws {
        let store = try makeStore()
        var random = SeededRandom(seed: 9)
        // One transaction per insert, as the memory API's create does: ties, disorder, two sessions.
        for index in 0..<40 {
            let item = memory(
                "single\(index)", session: index % 3 == 0 ? "other" : "s1",
                at: Double(Int.random(in: 0..<8, using: &random) * 10)
            )
            try await store.dbPool.write { db in try Writer.insert(item, in: db) }
        }
        try await expectIndexIsExact(store)
    }

    @Test func aBatchSurvivesRolledBackInsertsAndInterleavedEdits() async throws {
        let store = try makeStore()
        try store.insert((0..<10).map { memory("base\($0)", at: Double($0 * 10)) })
        try await store.dbPool.write { db in
            var index = try NeighbourIndex.Batch.begin(in: db)
            try Writer.insert(memory("kept one", at: 35), in: db, batch: &index)
            try db.inSavepoint {
                try Writer.insert(memory("rolled back", at: 45), in: db, batch: &index)
                try Writer.insert(memory("rolled back too", at: 0), in: db, batch: &index)
                return .rollback
            }
            // Edits and deletes made meanwhile go through their triggers.
            try db.execute(sql: "UPDATE memories SET content = 'edited base' WHERE content = 'base5'")
            try db.execute(sql: "DELETE FROM memories WHERE content = 'base2'")
            try db.execute(sql: "UPDATE memories SET created_at = created_at + 33 WHERE content = 'base7'")
            try Writer.insert(memory("kept two", at: 35), in: db, batch: &index)
            try Writer.insert(memory("kept three", at: 95), in: db, batch: &index)
            try index.finish(in: db)
        }
        try await expectIndexIsExact(store)
        #expect(try store.memories(session: "s1").count == 12)
    }
}

// MARK: - Helpers

struct IndexRow: Equatable {
    var near: String
    var far: String
    var date: String
}

/// The neighbourhood index rows of `session`, by memory content.
func indexRows(_ store: SQLiteMemoryStore, session: String) async throws -> [String: IndexRow] {
    try await store.dbPool.read { db in
        let rows = try Row.fetchAll(
            db,
            sql: """
                SELECT f.content, f.near, f.far, f.date FROM memories_context_fts AS f
                JOIN memories AS m ON m.seq = f.rowid WHERE m.session_id = ?
                """,
            arguments: [session]
        )
        var result: [String: IndexRow] = [:]
        for row in rows { result[row[0]] = IndexRow(near: row[1], far: row[2], date: row[3]) }
        return result
    }
}

/// The words of `text`, sorted (the index is a bag of words; order and spacing do not matter).
func words(_ text: String?) -> [String] {
    (text ?? "").split(whereSeparator: { $0 == " " }).map(String.init).sorted()
}

/// Checks every row of the neighbourhood index against its definition, recomputed here from `memories`:
/// one row per memory, its own text, the memories at distance 1 (`near`) and 2…3 (`far`) in its session's
/// `created_at, seq` order, its UTC date in words. Then runs FTS5's own integrity checks.
func expectIndexIsExact(_ store: SQLiteMemoryStore, sourceLocation: SourceLocation = #_sourceLocation) async throws {
    try await store.dbPool.read { db in
        let memories = try Row.fetchAll(
            db, sql: "SELECT seq, session_id, content, created_at FROM memories ORDER BY session_id, created_at, seq"
        )
        let indexed = try Row.fetchAll(db, sql: "SELECT rowid, content, near, far, date FROM memories_context_fts")
        var byRow: [Int64: Row] = [:]
        for row in indexed { byRow[row[0]] = row }
        #expect(indexed.count == memories.count, "one index row per memory", sourceLocation: sourceLocation)

        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "d MMMM yyyy"
        let sessions = Dictionary(grouping: memories, by: { $0["session_id"] as String })
        for (_, timeline) in sessions {
            for (position, memory) in timeline.enumerated() {
                func text(_ offset: Int) -> [String] {
                    let index = position + offset
                    guard timeline.indices.contains(index) else { return [] }
                    return [String((timeline[index]["content"] as String).prefix(NeighbourIndex.maxNeighbourCharacters))]
                }
                let near = (text(-1) + text(1)).joined(separator: " ")
                let far = (text(-2) + text(-3) + text(2) + text(3)).joined(separator: " ")
                let seq: Int64 = memory["seq"]
                guard let row = byRow[seq] else {
                    Issue.record("memory \(seq) is not indexed", sourceLocation: sourceLocation)
                    continue
                }
                let content: String = memory["content"]
                let date = formatter.string(from: Date(timeIntervalSince1970: memory["created_at"]))
                #expect(row[1] as String == content, sourceLocation: sourceLocation)
                #expect(words(row[2]) == words(near), "near of '\(content)'", sourceLocation: sourceLocation)
                #expect(words(row[3]) == words(far), "far of '\(content)'", sourceLocation: sourceLocation)
                #expect(row[4] as String == date, sourceLocation: sourceLocation)
            }
        }
    }
    try await store.dbPool.write { db in
        try db.execute(sql: "INSERT INTO memories_context_fts(memories_context_fts, rank) VALUES ('integrity-check', 1)")
    }
}

/// A deterministic generator (SplitMix64), so that a failing sequence of writes can be replayed.
struct SeededRandom: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
