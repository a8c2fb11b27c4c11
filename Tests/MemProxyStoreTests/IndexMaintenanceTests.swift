import Foundation
import GRDB
@testable import MemProxyStore
import Synchronization
import Testing

@Suite struct IndexMaintenanceTests {
    /// The decision: a baseline at the first look, then a full merge only after 10% growth with ≥ 8 segments.
    @Test func mergesOnlyAfterGrowthAndFragmentation() {
        var state = IndexMaintenance(checkEvery: 100)
        #expect(state.needsCheck)
        state.checked(rows: 10_000, segments: 30)
        #expect(!state.merging, "the first look only records a baseline (a restart never rewrites the index)")
        #expect(!state.needsCheck)
        state.itemsSinceCheck = 100
        #expect(state.needsCheck)
        state.checked(rows: 10_900, segments: 30)
        #expect(!state.merging, "9% growth")
        state.checked(rows: 11_000, segments: 7)
        #expect(!state.merging, "7 segments are left to FTS5")
        state.checked(rows: 11_000, segments: 8)
        #expect(state.merging)
    }

    /// A fragmented index (one segment per write: FTS5's own merging is turned off here) is merged into one
    /// segment by the writer once it is idle and a merge is due; the index stays consistent and searchable.
    @Test func theWriterMergesAFragmentedIndexWhenIdle() async throws {
        let store = try makeStore { $0.indexCheckEvery = 1 }
        try await store.dbPool.write { db in
            try db.execute(sql: "INSERT INTO memories_context_fts(memories_context_fts, rank) VALUES('automerge', 0)")
            try db.execute(sql: "INSERT INTO memories_context_fts(memories_context_fts, rank) VALUES('crisismerge', 100)")
        }
        for index in 0..<40 {
            try store.insert([memory("note \(index) about topic\(index)", at: Double(index))])
        }
        func segments() async throws -> Int {
            try await store.dbPool.read { db in try IndexMaintenance.segments(of: NeighbourIndex.table, in: db) }
        }
        #expect(try await segments() >= 40)
        // As if the last full merge had been at 1 memory: 40 is far more than 10% growth.
        store.indexMaintenance.withLock { $0.rowsAtLastMerge = 1 }
        let merged = try await withWriter(store) { () async throws -> Int in
            store.submit(exchange(user: "one more note", assistant: "noted", at: 100))
            await store.flush()
            // Poll (bounded) for the idle writer to finish merging and record it.
            let deadline = ContinuousClock.now + .seconds(60)
            func done() -> Bool { store.indexMaintenance.withLock { !$0.merging && $0.rowsAtLastMerge == 42 } }
            var count = try await segments()
            while count > 1 || !done(), ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(10))
                count = try await segments()
            }
            #expect(done())
            return count
        }
        #expect(merged == 1)
        try await store.dbPool.write { db in
            try db.execute(sql: "INSERT INTO memories_context_fts(memories_context_fts, rank) VALUES('integrity-check', 1)")
        }
        let found = try await store.recall(session: "s1", query: "topic17", limit: 1)
        #expect(found.first?.memory.content == "note 17 about topic17")
    }

    /// `compactIndex()` merges the index into one segment on demand.
    @Test func compactIndexLeavesOneSegment() async throws {
        let store = try makeStore()
        try await store.dbPool.write { db in
            try db.execute(sql: "INSERT INTO memories_context_fts(memories_context_fts, rank) VALUES('automerge', 0)")
        }
        for index in 0..<12 {
            try store.insert([memory("entry \(index)", at: Double(index))])
        }
        let before = try await store.dbPool.read { db in try IndexMaintenance.segments(of: NeighbourIndex.table, in: db) }
        #expect(before >= 4)
        #expect(try await store.compactIndex() > 1)
        let after = try await store.dbPool.read { db in try IndexMaintenance.segments(of: NeighbourIndex.table, in: db) }
        #expect(after == 1)
        #expect(try await store.recall(session: "s1", query: "entry", limit: 20).count == 12)
    }
}
