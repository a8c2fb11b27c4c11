import CCurl
import NIOCore
import Synchronization

/// One libcurl easy handle and the hand-off between the curl thread and the task reading the response.
///
/// Fields marked "curl thread" are touched only by the engine thread; everything shared lives in `state`.
/// The transfer never references the `UpstreamResponse` that reads it, so dropping the response can cancel it.
final class CurlTransfer: @unchecked Sendable {
    struct Head: Sendable {
        var status: Int
        var headers: [(name: String, value: String)]
    }

    private struct State {
        var headContinuation: CheckedContinuation<Head, any Error>?
        var headDelivered = false
        var chunks: [ByteBuffer] = []
        var chunkStart = 0
        var bufferedBytes = 0
        var waiter: CheckedContinuation<ByteBuffer?, any Error>?
        var finished: UpstreamError??
        var cancelled = false
        var pausedForBackpressure = false
        var connectionsOpened = 0
    }

    /// Pause the curl transfer when this many bytes wait for a slow reader; resume below the low mark.
    static let highWaterBytes = 512 * 1024
    static let lowWaterBytes = 128 * 1024

    private let state = Mutex(State())
    private weak var engine: CurlEngine?
    private let allocator = ByteBufferAllocator()

    // curl thread
    let easy: UnsafeMutableRawPointer
    var headerList: UnsafeMutablePointer<curl_slist>?
    /// Set (before the hand-off) once the transfer was queued for the curl thread; from then on the thread owns `easy`.
    var submitted = false
    let errorBuffer: UnsafeMutablePointer<CChar>
    private var pendingStatus = 0
    private var pendingHeaders: [(name: String, value: String)] = []

    init(easy: UnsafeMutableRawPointer, engine: CurlEngine) {
        self.easy = easy
        self.engine = engine
        let size = Int(memproxy_curl_error_size()) + 1
        self.errorBuffer = .allocate(capacity: size)
        self.errorBuffer.initialize(repeating: 0, count: size)
    }

    deinit {
        self.errorBuffer.deallocate()
    }

    var connectionsOpened: Int { self.state.withLock { $0.connectionsOpened } }

    // MARK: reader side

    /// Suspends until the response head arrives. Must be called exactly once.
    func waitForHead(start: @Sendable () -> Void) async throws -> Head {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Head, any Error>) in
                let alreadyCancelled = self.state.withLock { state -> Bool in
                    if state.cancelled { return true }
                    state.headContinuation = continuation
                    return false
                }
                if alreadyCancelled {
                    continuation.resume(throwing: UpstreamError.cancelled("request cancelled before it was sent"))
                } else {
                    start()
                }
            }
        } onCancel: {
            self.cancel(reason: "request task cancelled")
        }
    }

    /// The next chunk of the body, nil at its end.
    func nextChunk() async throws -> ByteBuffer? {
        enum Step {
            case chunk(ByteBuffer, unpause: Bool)
            case end(UpstreamError?)
            case wait
        }
        let step = self.state.withLock { state -> Step in
            if state.chunkStart < state.chunks.count {
                let chunk = state.chunks[state.chunkStart]
                state.chunkStart += 1
                if state.chunkStart == state.chunks.count {
                    state.chunks.removeAll(keepingCapacity: true)
                    state.chunkStart = 0
                }
                state.bufferedBytes -= chunk.readableBytes
                var unpause = false
                if state.pausedForBackpressure && state.bufferedBytes <= Self.lowWaterBytes {
                    state.pausedForBackpressure = false
                    unpause = true
                }
                return .chunk(chunk, unpause: unpause)
            }
            if let finished = state.finished { return .end(finished) }
            return .wait
        }
        switch step {
        case .chunk(let chunk, let unpause):
            if unpause { self.engine?.unpause(self) }
            return chunk
        case .end(let error):
            if let error { throw error }
            return nil
        case .wait:
            break
        }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<ByteBuffer?, any Error>) in
                self.state.withLock { state in
                    if state.chunkStart < state.chunks.count {
                        // Data arrived between the check above and now.
                        let chunk = state.chunks[state.chunkStart]
                        state.chunkStart += 1
                        state.bufferedBytes -= chunk.readableBytes
                        continuation.resume(returning: chunk)
                    } else if let finished = state.finished {
                        if let error = finished {
                            continuation.resume(throwing: error)
                        } else {
                            continuation.resume(returning: nil)
                        }
                    } else {
                        state.waiter = continuation
                    }
                }
            }
        } onCancel: {
            self.cancel(reason: "reader task cancelled")
        }
    }

    /// Aborts the transfer from any thread. Idempotent.
    func cancel(reason: String) {
        let shouldTellEngine = self.state.withLock { state -> Bool in
            guard !state.cancelled, state.finished == nil else { return false }
            state.cancelled = true
            let error = UpstreamError.cancelled(reason)
            state.finished = .some(error)
            state.headContinuation?.resume(throwing: error)
            state.headContinuation = nil
            state.waiter?.resume(throwing: error)
            state.waiter = nil
            state.chunks.removeAll()
            state.chunkStart = 0
            state.bufferedBytes = 0
            return true
        }
        if shouldTellEngine {
            self.engine?.cancel(self)
        }
    }

    // MARK: curl thread side

    /// Header callback: one header line at a time, status lines included.
    func receivedHeaderLine(_ bytes: UnsafeRawBufferPointer) {
        // Work on bytes: this runs for every header line of every response on the curl thread.
        var end = bytes.count
        while end > 0, bytes[end - 1] == 0x0A || bytes[end - 1] == 0x0D { end -= 1 }
        if end == 0 {
            // End of a header block. 1xx blocks are interim: wait for the final one.
            if self.pendingStatus >= 200 {
                self.deliverHead()
            }
            return
        }
        if end > 5, bytes[0] == 0x48, bytes[1] == 0x54, bytes[2] == 0x54, bytes[3] == 0x50, bytes[4] == 0x2F {
            // "HTTP/x.y CODE reason": the code is the first run of digits after the first space.
            var index = 5
            while index < end, bytes[index] != 0x20 { index += 1 }
            while index < end, bytes[index] == 0x20 { index += 1 }
            var status = 0
            while index < end, bytes[index] >= 0x30, bytes[index] <= 0x39, status < 1000 {
                status = status * 10 + Int(bytes[index] - 0x30)
                index += 1
            }
            self.pendingStatus = status
            self.pendingHeaders.removeAll(keepingCapacity: true)
            return
        }
        guard let colon = bytes[0..<end].firstIndex(of: 0x3A) else { return }
        let name = Self.trimmed(bytes, from: 0, to: colon)
        let value = Self.trimmed(bytes, from: colon + 1, to: end)
        self.pendingHeaders.append((name: name, value: value))
    }

    private static func trimmed(_ bytes: UnsafeRawBufferPointer, from start: Int, to end: Int) -> String {
        var start = start
        var end = end
        while start < end, bytes[start] == 0x20 || bytes[start] == 0x09 { start += 1 }
        while end > start, bytes[end - 1] == 0x20 || bytes[end - 1] == 0x09 { end -= 1 }
        return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<end]), as: UTF8.self)
    }

    private func deliverHead() {
        let head = Head(status: self.pendingStatus, headers: self.pendingHeaders)
        self.state.withLock { state in
            guard !state.headDelivered else { return }
            state.headDelivered = true
            state.headContinuation?.resume(returning: head)
            state.headContinuation = nil
        }
    }

    /// Write callback. Returns false when curl should pause (too much buffered) — the data is then redelivered.
    enum WriteResult { case accepted, pause, abort }

    func receivedBody(_ bytes: UnsafeRawBufferPointer) -> WriteResult {
        if self.pendingStatus >= 200 {
            self.deliverHeadIfNeeded()
        }
        return self.state.withLock { state -> WriteResult in
            if state.cancelled { return .abort }
            if let waiter = state.waiter {
                state.waiter = nil
                waiter.resume(returning: self.allocator.buffer(bytes: bytes))
                return .accepted
            }
            if state.bufferedBytes >= Self.highWaterBytes {
                state.pausedForBackpressure = true
                return .pause
            }
            state.chunks.append(self.allocator.buffer(bytes: bytes))
            state.bufferedBytes += bytes.count
            return .accepted
        }
    }

    private func deliverHeadIfNeeded() {
        let delivered = self.state.withLock { $0.headDelivered }
        if !delivered { self.deliverHead() }
    }

    /// Called once when curl reports the transfer done (or when the engine drops it).
    func complete(error: UpstreamError?, status: Int, connectionsOpened: Int) {
        if error == nil && self.pendingStatus == 0 {
            self.pendingStatus = status
        }
        self.state.withLock { state in
            state.connectionsOpened = connectionsOpened
            if !state.headDelivered {
                state.headDelivered = true
                if let error {
                    state.headContinuation?.resume(throwing: error)
                } else {
                    state.headContinuation?.resume(
                        returning: Head(status: self.pendingStatus, headers: self.pendingHeaders)
                    )
                }
                state.headContinuation = nil
            }
            guard state.finished == nil else { return }
            state.finished = .some(error)
            if let waiter = state.waiter {
                state.waiter = nil
                if let error {
                    waiter.resume(throwing: error)
                } else {
                    waiter.resume(returning: nil)
                }
            }
        }
    }
}
