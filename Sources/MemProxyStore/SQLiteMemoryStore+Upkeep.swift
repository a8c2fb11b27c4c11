import Foundation
import GRDB
import Logging
import Synchronization

/// The writer's idle-time upkeep: keeping recall's full-text index compact, and deleting old injection records.
/// Both run only while the write queue is empty and stop as soon as a write is queued or shutdown begins.
extension SQLiteMemoryStore {
    /// Nothing is queued, no shutdown has begun, and the writer task is not cancelled.
    var isIdle: Bool {
        !Task.isCancelled && queue.withLock { $0.pending.isEmpty && !$0.shuttingDown }
    }

    // MARK: - Index maintenance

    /// While the queue is empty: checks the full-text index recall reads and, when ``IndexMaintenance`` says a
    /// full merge is due, merges it step by step, returning as soon as a write is queued.
    func maintainIndex() async {
        // Only the writer task changes it once running: work on a copy, store it back at the end.
        var state = indexMaintenance.withLock { $0 }
        defer { indexMaintenance.withLock { $0 = state } }
        let table = IndexMaintenance.table
        do {
            if !state.merging, state.needsCheck, isIdle {
                let (rows, segments) = try await dbPool.read { db in
                    (
                        try IndexMaintenance.memoryCount(in: db),
                        try IndexMaintenance.segments(of: table, in: db)
                    )
                }
                state.checked(rows: rows, segments: segments)
                if state.merging {
                    logger.info(
                        "memory.index_merge_started",
                        metadata: ["memory.index": "\(table)", "memory.segments": "\(segments)", "memory.rows": "\(rows)"]
                    )
                }
            }
            while state.merging, isIdle {
                let finished = try await dbPool.write { db in try IndexMaintenance.step(table: table, in: db) }
                if finished {
                    state.merging = false
                    let rows = try await dbPool.read { db in
                        try IndexMaintenance.memoryCount(in: db)
                    }
                    state.rowsAtLastMerge = rows
                    logger.info("memory.index_merged", metadata: ["memory.index": "\(table)", "memory.rows": "\(rows)"])
                }
            }
        } catch is CancellationError {
            // Shutting down: the merge resumes in the next process, once it is due again.
            state.merging = false
        } catch {
            // Only recall speed depends on it: log, and try again after the next checkEvery items.
            state.merging = false
            logger.warning("memory.index_merge_failed", metadata: ["memory.index": "\(table)", "error": "\(error)"])
        }
    }

    /// Merges the full-text index recall reads into one segment now, whatever its history (what the writer does
    /// in its idle time when ``IndexMaintenance`` says so). For benchmarks and offline maintenance.
    ///
    /// - Returns: The number of merge steps taken.
    @discardableResult
    public func compactIndex() async throws -> Int {
        let table = IndexMaintenance.table
        var steps = 0
        while true {
            steps += 1
            if try await dbPool.write({ db in try IndexMaintenance.step(table: table, in: db) }) { return steps }
        }
    }

    // MARK: - Injection retention

    /// At the first idle moment, then at most hourly: ``pruneInjections(now:)``, logging what it deleted.
    func pruneInjectionsIfDue() async {
        guard configuration.injectionRetentionDays > 0 else { return }
        let now = ContinuousClock.now
        let due = lastInjectionPrune.withLock { last in
            guard last.map({ now - $0 >= .seconds(3600) }) ?? true else { return false }
            last = now
            return true
        }
        guard due else { return }
        do {
            let deleted = try await pruneInjections(now: Date())
            if deleted > 0 {
                logger.info(
                    "memory.injections_pruned",
                    metadata: [
                        "memory.deleted": "\(deleted)",
                        "memory.injection_retention_days": "\(configuration.injectionRetentionDays)",
                    ]
                )
            }
        } catch is CancellationError {
            // Shutting down: the next process prunes.
        } catch {
            logger.warning("memory.injections_prune_failed", metadata: ["error": "\(error)"])
        }
    }

    /// Deletes injection records created more than `injectionRetentionDays` before `now`, oldest first, 1,000
    /// per short transaction, stopping early when writes are queued (the next pass continues). Records are
    /// appended in time order, so the oldest by `seq` are the oldest by time (no index on `created_at` needed).
    ///
    /// - Parameter now: The current time.
    /// - Returns: How many records were deleted.
    @discardableResult
    func pruneInjections(now: Date) async throws -> Int {
        let days = configuration.injectionRetentionDays
        guard days > 0 else { return 0 }
        let cutoff = now.timeIntervalSince1970 - Double(days) * 86_400
        let chunk = 1_000
        var total = 0
        while true {
            let deleted = try await dbPool.write { db in
                try db.execute(
                    sql: """
                        DELETE FROM injections
                        WHERE seq IN (SELECT seq FROM injections ORDER BY seq LIMIT ?) AND created_at < ?
                        """,
                    arguments: [chunk, cutoff]
                )
                return db.changesCount
            }
            total += deleted
            if deleted < chunk || !isIdle { return total }
        }
    }
}
