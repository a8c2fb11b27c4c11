import Synchronization

/// The write queue's bound (`Configuration.maxQueuedWrites`): callers wait for room; `submit` itself never
/// blocks or drops.
extension SQLiteMemoryStore {
    /// Waits until the write queue holds fewer than `maxQueuedWrites` items; `false` when `timeout` passes (or
    /// the task is cancelled) first. Returns at once while there is room, which is always the case unless the
    /// writer falls behind for a long time. Callers that get `false` should enqueue nothing.
    ///
    /// - Parameter timeout: The longest wait.
    /// - Returns: Whether there is room in the queue.
    public func waitForWriteCapacity(timeout: Duration) async -> Bool {
        let limit = max(1, configuration.maxQueuedWrites)
        let id: UInt64? = queue.withLock { state in
            guard state.pending.count >= limit, !state.stopped else { return nil }
            state.nextWaiterID += 1
            return state.nextWaiterID
        }
        guard let id else { return true }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
                let roomNow = queue.withLock { state -> Bool in
                    if state.pending.count < limit || state.stopped { return true }
                    state.capacityWaiters.append((id, continuation))
                    return false
                }
                if roomNow {
                    continuation.resume(returning: true)
                    return
                }
                // Armed once registered, so it cannot fire before there is a waiter to time out.
                Task {
                    try? await Task.sleep(for: timeout)
                    self.resumeCapacityWaiter(id, with: false)
                }
            }
        } onCancel: {
            self.resumeCapacityWaiter(id, with: false)
        }
    }

    /// Resumes the waiter `id` if it is still waiting.
    private func resumeCapacityWaiter(_ id: UInt64, with result: Bool) {
        let continuation = queue.withLock { state -> CheckedContinuation<Bool, Never>? in
            guard let index = state.capacityWaiters.firstIndex(where: { $0.id == id }) else { return nil }
            return state.capacityWaiters.remove(at: index).continuation
        }
        continuation?.resume(returning: result)
    }

    /// After a commit: lets in as many waiters as there is room for, oldest first.
    func admitWaiters() {
        let limit = max(1, configuration.maxQueuedWrites)
        let admitted = queue.withLock { state -> [CheckedContinuation<Bool, Never>] in
            let room = state.stopped ? state.capacityWaiters.count : max(0, limit - state.pending.count)
            let count = min(room, state.capacityWaiters.count)
            guard count > 0 else { return [] }
            defer { state.capacityWaiters.removeFirst(count) }
            return state.capacityWaiters.prefix(count).map(\.continuation)
        }
        for continuation in admitted { continuation.resume(returning: true) }
    }
}
