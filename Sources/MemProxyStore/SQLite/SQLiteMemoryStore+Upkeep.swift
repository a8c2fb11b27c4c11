import Foundation
import GRDB
import Logging
import Synchronization

/// The writer's idle-time upkeep: deleting old injection records. It runs only while the write queue is empty and
/// stops as soon as a write is queued or shutdown begins.
extension SQLiteMemoryStore {
    /// Nothing is queued, no shutdown has begun, and the writer task is not cancelled.
    var isIdle: Bool {
        !Task.isCancelled && queue.withLock { $0.pending.isEmpty && !$0.shuttingDown }
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

// MARK: - Recall index warm-up

extension SQLiteMemoryStore {
    /// Builds recall's in-memory indexes (``RecallIndexCache``) of the most recently active sessions, newest first,
    /// until the next session would exceed ``Configuration/maxCachedMemories``; stops early when cancelled. The
    /// writer runs it once at start. Requests meanwhile are served as usual: a session not indexed yet is indexed by
    /// its first recall.
    ///
    /// - Returns: The sessions and memories indexed.
    @discardableResult
    public func warmRecallIndex() async -> (sessions: Int, memories: Int) {
        let limit = configuration.maxCachedMemories
        guard limit > 0 else { return (0, 0) }
        let start = ContinuousClock.now
        let cache = recallCache
        var (sessions, memories) = (0, 0)
        do {
            let candidates = try await dbPool.read { db in
                try Row.fetchAll(
                    db,
                    sql: """
                        SELECT s.session_id, s.memory_count FROM sessions s
                        ORDER BY (SELECT max(m.created_at) FROM memories m WHERE m.session_id = s.session_id) DESC
                        """
                ).map { ($0[0] as String, $0[1] as Int) }
            }
            for (session, count) in candidates {
                guard !Task.isCancelled, memories + count <= limit else { break }
                let commitsBefore = cache.commitCounter()
                try await dbPool.read { db in
                    _ = try cache.withIndex(db, session: session, commitsBefore: commitsBefore) { _ in ((), [:]) }
                }
                sessions += 1
                memories += count
            }
        } catch {
            logger.warning("memory.recall_index_warm_up_failed", metadata: ["error": "\(error)"])
        }
        if sessions > 0 {
            logger.info(
                "memory.recall_index_warmed",
                metadata: [
                    "memory.sessions": "\(sessions)", "memory.memories": "\(memories)",
                    "memory.seconds": "\((ContinuousClock.now - start).components.seconds)",
                ]
            )
        }
        return (sessions, memories)
    }
}
