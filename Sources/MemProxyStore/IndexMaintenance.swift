import GRDB
import Logging

/// Keeps the full-text index that recall reads compact, in the writer's idle time.
///
/// FTS5 writes each transaction's postings as a new segment and merges segments in the background of later
/// writes ("automerge", four at a time per level), so a store written one small batch at a time settles at
/// 15–25 segments. Every query term is looked up in every segment: on a 1M-memory store with 18 segments,
/// recall took p50 1.45 / p99 3.31 ms, and 0.81 / 1.60 ms once the segments were merged into one
/// (BENCHMARKS.md). So, when the write queue is empty and the index has grown by at least ``growthRatio``
/// since its last full merge (and has ``minSegments`` segments or more), the writer merges all segments into
/// one, a few hundred pages per step, each step its own short transaction; it stops at once when writes
/// arrive and resumes at the next idle moment. The growth rule bounds the extra writing: each memory is
/// rewritten about once per 10% of growth, never for every burst of writes.
struct IndexMaintenance {
    /// Items committed by the writer since the index was last checked.
    var itemsSinceCheck = 0
    /// Memories in the store when the last full merge finished (`nil`: none finished in this process).
    var rowsAtLastMerge: Int?
    /// A full merge has started and is not finished.
    var merging = false
    /// Committed items between two checks of the segment count.
    var checkEvery = 500

    init(checkEvery: Int = 500) {
        self.checkEvery = max(1, checkEvery)
    }

    /// Fewer segments than this are left to FTS5's own merging.
    static let minSegments = 8
    /// Growth (memories added / memories at the last full merge) that makes a new full merge worth it.
    static let growthRatio = 0.1
    /// Pages of merged data written per step (a few milliseconds).
    static let pagesPerStep = 200

    /// The FTS5 table recall reads.
    static let table = NeighbourIndex.table

    /// Memories in the store (from the per-session counters).
    static func memoryCount(in db: Database) throws -> Int {
        try Int.fetchOne(db, sql: "SELECT coalesce(sum(memory_count), 0) FROM sessions") ?? 0
    }

    /// The number of segments of `table`.
    static func segments(of table: String, in db: Database) throws -> Int {
        try Int.fetchOne(db, sql: "SELECT count(DISTINCT segid) FROM \(table)_idx") ?? 0
    }

    /// Whether the writer should look at the index now (first idle moment, then every `checkEvery` items).
    var needsCheck: Bool { rowsAtLastMerge == nil || itemsSinceCheck >= checkEvery }

    /// Records a check of a store holding `rows` memories in `segments` segments; starts a merge when one is
    /// due.
    mutating func checked(rows: Int, segments: Int) {
        itemsSinceCheck = 0
        guard let before = rowsAtLastMerge else {
            // Nothing is known about the index's history in a new process: count growth from here, so that a
            // restart never rewrites a large index.
            rowsAtLastMerge = rows
            return
        }
        if Double(rows - before) >= Self.growthRatio * Double(max(before, 1)), segments >= Self.minSegments {
            merging = true
        }
    }

    /// One merge step; `true` when the merge is finished (FTS5 found less than one unit of work).
    static func step(table: String, in db: Database) throws -> Bool {
        let before = db.totalChangesCount
        try db.execute(sql: "INSERT INTO \(table)(\(table), rank) VALUES('merge', ?)", arguments: [-pagesPerStep])
        return db.totalChangesCount - before < 2
    }
}
