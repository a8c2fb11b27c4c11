import Foundation
import Metrics
import Synchronization

/// The writer's side of ``RecallIndexCache``: what a commit inserted goes into the fresh session indexes, and the
/// commit counter the fresh indexes reflect (the view) moves with the writer's own commits.
extension RecallIndexCache {
    /// One memory the writer inserted: its session's key, its number in the session (`next_seq` before it) and
    /// `seq`, and the memory as the table holds it.
    struct InsertedMemory: Sendable {
        var memory: Memory
        var key: Int64
        var number: Int64
        var seq: Int64
    }

    /// What one writer transaction did, for ``finishCommit(_:)``.
    struct Commit: Sendable {
        /// The commit counter read inside the transaction, after its last statement (the write lock held if it
        /// wrote).
        var changeBefore: UInt32?
        /// Whether the transaction committed changes.
        var wrote = false
        /// The memories it inserted, in insertion order.
        var inserted: [InsertedMemory] = []
        /// The exchanges it stored (not skipped as retries).
        var stored: [ExchangeRecord] = []
        /// Sessions whose existing memories it changed (not only appended to): their indexes are rebuilt.
        var changed: Set<String> = []
    }

    /// Called by the writer before its transaction begins: until ``finishCommit(_:)``, a commit seen in the header
    /// may be the writer's, so a recall does not adopt it as the view.
    func beginCommit() {
        state.withLock { $0.committing = true }
    }

    /// Called by the writer inside its transaction, just before `COMMIT`, holding the write lock: the commit
    /// counter now, and whether the transaction changed anything (then its commit adds exactly one).
    func prepareCommit(changeBefore: UInt32?, wrote: Bool) {
        guard let changeBefore, wrote else { return }
        state.withLock { state in
            if state.view == changeBefore { state.pending = changeBefore &+ 1 }
        }
    }

    /// Called by the writer after its transaction: when that commit was the only one since the view, moves the view
    /// to it and appends the inserted memories to the fresh indexes of their sessions (every other fresh entry is
    /// still current); otherwise every entry becomes stale (the next recall of each reads the database).
    func finishCommit(_ commit: Commit) {
        let after = commitCounter()
        var bySession: [String: [InsertedMemory]] = [:]
        for inserted in commit.inserted { bySession[inserted.memory.sessionID, default: []].append(inserted) }
        let (generation, targets) = state.withLock { state -> (UInt64, [(Entry, [InsertedMemory])]) in
            defer {
                state.view = after
                state.pending = nil
            }
            guard let before = commit.changeBefore, let after, state.view == before,
                after == (commit.wrote ? before &+ 1 : before)
            else {
                state.generation += 1
                return (state.generation, [])
            }
            var targets: [(Entry, [InsertedMemory])] = []
            for (session, memories) in bySession where !commit.changed.contains(session) {
                guard let entry = state.entries[session], entry.generation == state.generation else { continue }
                targets.append((entry, memories))
            }
            return (state.generation, targets)
        }
        var stale: [Entry] = []
        var appended: [(Entry, Int)] = []
        for (entry, memories) in targets {
            guard !entry.building, entry.lock.try() else {
                stale.append(entry)
                continue
            }
            defer { entry.lock.unlock() }
            guard var index = entry.index else {
                stale.append(entry)
                continue
            }
            entry.index = nil  // unique owner while it is extended
            var current = true
            for inserted in memories where index.nextSeq <= inserted.number {
                guard index.key == inserted.key, index.nextSeq == inserted.number,
                    index.sortsLast(createdAt: inserted.memory.createdAt.timeIntervalSince1970, seq: inserted.seq)
                else {
                    current = false
                    break
                }
                index.append(inserted.memory, seq: inserted.seq, tokenizer: tokenizer)
                index.nextSeq = inserted.number + 1
            }
            entry.index = index
            if current { appended.append((entry, index.count)) } else { stale.append(entry) }
        }
        let total = state.withLock { state -> Int in
            state.committing = false
            for entry in stale where entry.generation == generation { entry.generation = 0 }
            for session in commit.changed { state.entries[session]?.generation = 0 }
            for (entry, size) in appended { resizeLocked(&state, entry, to: size) }
            return state.total
        }
        if !appended.isEmpty { indexedMemories.record(total) }
    }
}
