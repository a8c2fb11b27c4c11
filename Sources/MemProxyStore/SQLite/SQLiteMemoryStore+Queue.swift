import GRDB
import Logging
import Metrics
import Synchronization

/// The write queue: `submit` appends, the single writer (``SQLiteMemoryStore/run()``) drains it in batched
/// transactions and resumes whoever waits for a flush.
extension SQLiteMemoryStore {
    func enqueue(_ item: WriteItem, session: String) {
        let (accepted, depth) = queue.withLock { state -> (Bool, Int) in
            guard !state.stopped else { return (false, state.pending.count) }
            state.pending.append(item)
            state.submitted += 1
            return (true, state.pending.count)
        }
        guard accepted else {
            metrics.errors.increment()
            logger.error(
                "memory writer has stopped; dropping a write",
                metadata: ["memory.session": "\(session)", "memory.item": "\(item.kind)"]
            )
            return
        }
        metrics.queueDepth.record(depth)
        if depth % 10_000 == 0 {
            // Writes arrive faster than the writer commits them (see BENCHMARKS.md, "Writer cost"): say so while
            // it happens, not only in a metric.
            logger.warning(
                "memory.write_backlog",
                metadata: ["memory.queue_depth": "\(depth)", "memory.db": "\(configuration.path)"]
            )
        }
        wake.yield()
    }

    /// Commits batches until the queue is empty; the number of items committed.
    @discardableResult
    func drain() async -> Int {
        let maxBatch = max(1, configuration.maxBatch)
        var committed = 0
        while true {
            let batch = queue.withLock { state -> [WriteItem] in
                let count = min(maxBatch, state.pending.count)
                guard count > 0 else { return [] }
                let batch = Array(state.pending.prefix(count))
                state.pending.removeFirst(count)
                return batch
            }
            if batch.isEmpty { return committed }
            committed += batch.count
            metrics.batchSize.record(batch.count)
            await commit(batch)
            let (ready, depth) = queue.withLock { state -> ([CheckedContinuation<Void, Never>], Int) in
                state.completed += UInt64(batch.count)
                var ready: [CheckedContinuation<Void, Never>] = []
                state.waiters.removeAll { waiter in
                    guard waiter.target <= state.completed else { return false }
                    ready.append(waiter.continuation)
                    return true
                }
                return (ready, state.pending.count)
            }
            metrics.queueDepth.record(depth)
            for continuation in ready { continuation.resume() }
            admitWaiters()
        }
    }

    /// Commits one batch on GRDB's writer queue. Not cancellable on purpose: shutdown must still commit.
    func commit(_ batch: [WriteItem]) async {
        let writer = Writer(
            retryWindowSeconds: configuration.retryWindowSeconds,
            logger: logger,
            errors: metrics.errors
        )
        let cache = recallCache
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            dbPool.asyncWriteWithoutTransaction { db in
                // The cache learns what was committed before anyone else can write (this is GRDB's writer queue).
                cache.beginCommit()
                let commit = writer.commit(batch, in: db, cache: cache)
                cache.finishCommit(commit)
                writer.acknowledge(commit)
                continuation.resume()
            }
        }
    }
}

/// The writer's in-memory queue and flush bookkeeping (guarded by a mutex).
struct WriteQueue {
    var pending: [WriteItem] = []
    var submitted: UInt64 = 0
    var completed: UInt64 = 0
    var waiters: [(target: UInt64, continuation: CheckedContinuation<Void, Never>)] = []
    /// Callers of `waitForWriteCapacity`, first come first served; `true` = room was made.
    var capacityWaiters: [(id: UInt64, continuation: CheckedContinuation<Bool, Never>)] = []
    var nextWaiterID: UInt64 = 0
    var started = false
    var stopped = false
    /// Graceful shutdown has begun: no more idle-time upkeep.
    var shuttingDown = false
}

enum WriteItem: Sendable {
    case exchange(ExchangeRecord)
    case injection(InjectionRecord)

    var kind: String {
        switch self {
        case .exchange: "exchange"
        case .injection: "injection"
        }
    }
}
