import Foundation
import GRDB
import MemProxyCore
import Testing

@testable import MemProxyStore

/// The management SQL against the real schema: recall's index follows edits and deletes, forgetting is exact.
@Suite struct ManagementTests {
    /// How many memories of sessions s1 and s2 hold `term` in their own text, in recall's index (brought up to
    /// date with the database first, as every recall does).
    func indexed(_ store: SQLiteMemoryStore, _ term: String) throws -> Int {
        let cache = store.recallCache
        let token = try #require(cache.tokenizer.queryTokens(of: term).first)
        return try store.dbPool.read { db in
            var count = 0
            for session in ["s1", "s2"] {
                count += try cache.withIndex(db, session: session) { index in
                    let matching = index.termID(token).map { id in
                        index.documents.filter { index.frequency(of: id, in: $0.content) > 0 }.count
                    }
                    return (matching ?? 0, [:])
                } ?? 0
            }
            return count
        }
    }

    func integrityCheck(_ store: SQLiteMemoryStore) throws {
        let result = try store.dbPool.read { db in try String.fetchOne(db, sql: "PRAGMA integrity_check") }
        #expect(result == "ok")
    }

    @Test func deleteAndEditKeepTheSearchIndexInStep() async throws {
        let store = try makeStore()
        let zebra = memory("the zebra sleeps standing", type: .semantic)
        try await store.add(zebra)
        try await store.add(memory("a zebra crossing", session: "s2"))
        #expect(try indexed(store, "zebra") == 2)

        #expect(try await store.delete(session: "s2", id: zebra.id) == false)
        #expect(try await store.delete(session: "s1", id: zebra.id))
        #expect(try indexed(store, "zebra") == 1)
        #expect(try await store.recall(session: "s1", query: "zebra", limit: 5).isEmpty)
        try integrityCheck(store)

        let owl = memory("the owl hunts at night")
        try await store.add(owl)
        let changes = MemoryChanges(
            content: "the heron fishes at dawn", type: .procedural, metadata: #"{"x":1}"#, updatedAt: baseDate + 60)
        #expect(try await store.update(session: "s2", id: owl.id, changes: changes) == nil)
        let updated = try #require(try await store.update(session: "s1", id: owl.id, changes: changes))
        #expect(updated.content == "the heron fishes at dawn" && updated.type == .procedural)
        #expect(
            updated.metadata == #"{"x":1}"# && updated.createdAt == owl.createdAt && updated.updatedAt == baseDate + 60)
        #expect(try indexed(store, "owl") == 0)
        #expect(try indexed(store, "heron") == 1)
        let hash = try await store.dbPool.read { db in
            try String.fetchOne(db, sql: "SELECT content_hash FROM memories WHERE id = ?", arguments: [owl.id])
        }
        #expect(hash == StableHash.fnv1a64Hex("the heron fishes at dawn".utf8))
        try integrityCheck(store)
    }

    @Test func forgetLeavesOtherSessionsByteIdentical() async throws {
        let store = try makeStore()
        try await withWriter(store) {
            for session in ["s1", "s2", "s3"] {
                store.submit(exchange(session: session, user: "\(session) likes jazz", assistant: "noted"))
                store.submit(
                    InjectionRecord(
                        requestID: "req_\(session)", sessionID: session, createdAt: baseDate, model: "m",
                        memoryIDs: ["x"], scores: [1], tokens: 3, recallMs: 0.5, block: "<memory>\(session)</memory>"))
                try await store.add(memory("\(session) fact", session: session, type: .semantic))
            }
            await store.flush()
        }
        func dump(excluding session: String) throws -> [String] {
            try store.dbPool.read { db in
                var rows: [String] = []
                for table in ["memories", "injections", "exchanges", "sessions"] {
                    rows += try Row.fetchAll(
                        db, sql: "SELECT * FROM \(table) WHERE session_id != ? ORDER BY 1", arguments: [session]
                    )
                    .map { "\(table): \($0)" }
                }
                return rows
            }
        }
        let before = try dump(excluding: "s2")
        #expect(try await store.recall(session: "s2", query: "jazz", limit: 5).isEmpty == false)
        #expect(try await store.forget(session: "s2") == 3)
        #expect(try dump(excluding: "s2") == before)
        let leftovers = try await store.dbPool.read { db in
            try ["memories", "injections", "exchanges", "sessions"].map { table in
                try Int.fetchOne(db, sql: "SELECT count(*) FROM \(table) WHERE session_id = 's2'") ?? -1
            }
        }
        #expect(leftovers == [0, 0, 0, 0])
        #expect(try await store.recall(session: "s2", query: "jazz", limit: 5).isEmpty)
        try integrityCheck(store)

        // The session can start again afterwards.
        try await store.add(memory("s2 is back", session: "s2"))
        #expect(try await store.recall(session: "s2", query: "back", limit: 5).count == 1)
    }

    @Test func keysetPagesInBothOrders() async throws {
        let store = try makeStore()
        // Equal creation times are ordered by insertion.
        let memories = (0..<7).map { memory("m\($0)", at: Double($0 / 2)) }
        try store.insert(memories)
        for (order, expected) in [(MemoryOrder.newestFirst, memories.reversed()), (.oldestFirst, memories)] {
            var cursor: MemoryCursor?
            var seen: [String] = []
            repeat {
                let page = try await store.memories(session: "s1", type: nil, order: order, limit: 3, after: cursor)
                seen += page.memories.map(\.id)
                cursor = page.nextCursor.flatMap { MemoryCursor(token: $0.token) }
            } while cursor != nil
            #expect(seen == expected.map(\.id))
        }
        #expect(MemoryCursor(token: "zz-1") == nil && MemoryCursor(token: "1") == nil)
        let sessionCursor = SessionCursor(sessionID: "ä/b c")
        #expect(SessionCursor(token: sessionCursor.token) == sessionCursor)
        #expect(SessionCursor(token: "s0") == nil)
    }

    @Test func importSkipsIdsOfTheSessionAndRenamesIdsOfOthers() async throws {
        let store = try makeStore()
        let original = memory("kept id")
        #expect(try await store.importMemories([original]) == ImportSummary(imported: 1, skipped: 0))
        #expect(try await store.importMemories([original]) == ImportSummary(imported: 0, skipped: 1))
        var copy = original
        copy.sessionID = "s2"
        #expect(try await store.importMemories([copy]) == ImportSummary(imported: 1, skipped: 0))
        let copied = try store.memories(session: "s2")
        #expect(copied.count == 1 && copied[0].id != original.id && copied[0].content == "kept id")
    }

    @Test func injectionsFilterAndFollow() async throws {
        let store = try makeStore()
        try await withWriter(store) {
            for n in 0..<4 {
                store.submit(
                    InjectionRecord(
                        requestID: "req_\(n)", sessionID: n == 3 ? "other" : "s1", createdAt: baseDate + Double(n),
                        model: nil, memoryIDs: [], scores: [], tokens: 1, recallMs: 0, block: "b\(n)"))
            }
            await store.flush()
        }
        let newest = try await store.injections(session: "s1", filter: InjectionFilter(limit: 10))
        #expect(newest.map(\.record.requestID) == ["req_2", "req_1", "req_0"])
        let one = try await store.injections(session: "s1", filter: InjectionFilter(requestID: "req_1", limit: 10))
        #expect(one.map(\.record.block) == ["b1"])
        let after = try await store.injections(
            session: "s1", filter: InjectionFilter(limit: 10, afterSequence: newest[2].sequence))
        #expect(after.map(\.record.requestID) == ["req_1", "req_2"])
    }
}
