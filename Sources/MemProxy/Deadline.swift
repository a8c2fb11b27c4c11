import Synchronization

/// The recall did not finish within `memory.recall_timeout_ms`.
struct RecallTimeout: Error, CustomStringConvertible {
    let milliseconds: Int
    var description: String { "recall took longer than \(self.milliseconds) ms (memory.recall_timeout_ms)" }
}

/// Runs `operation` but gives up after `milliseconds`, leaving it to finish (or fail) in the background.
///
/// A task group would wait for a non-cancellable SQLite call to return, so the race uses unstructured tasks.
func withDeadline<T: Sendable>(
    milliseconds: Int,
    _ operation: @escaping @Sendable () async throws -> T
) async throws -> T {
    let race = DeadlineRace<T>()
    return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
        race.start(continuation)
        let work = Task {
            let result: Result<T, any Error>
            do {
                result = .success(try await operation())
            } catch {
                result = .failure(error)
            }
            race.finish(with: result)
        }
        race.arm(
            Task {
                try? await Task.sleep(for: .milliseconds(milliseconds))
                guard !Task.isCancelled else { return }
                if race.finish(with: .failure(RecallTimeout(milliseconds: milliseconds))) {
                    work.cancel()
                }
            }
        )
    }
}

/// Whoever finishes first (the operation or the deadline) resumes the continuation; the other is ignored.
private final class DeadlineRace<T: Sendable>: Sendable {
    private struct State {
        var continuation: CheckedContinuation<T, any Error>?
        var timer: Task<Void, Never>?
    }

    private let state = Mutex(State())

    func start(_ continuation: CheckedContinuation<T, any Error>) {
        self.state.withLock { $0.continuation = continuation }
    }

    func arm(_ timer: Task<Void, Never>) {
        let alreadyDone = self.state.withLock { state -> Bool in
            guard state.continuation != nil else { return true }
            state.timer = timer
            return false
        }
        if alreadyDone { timer.cancel() }
    }

    /// Returns true if this call won the race.
    @discardableResult
    func finish(with result: Result<T, any Error>) -> Bool {
        let (continuation, timer) = self.state.withLock { state in
            defer {
                state.continuation = nil
                state.timer = nil
            }
            return (state.continuation, state.timer)
        }
        guard let continuation else { return false }
        timer?.cancel()
        continuation.resume(with: result)
        return true
    }
}
