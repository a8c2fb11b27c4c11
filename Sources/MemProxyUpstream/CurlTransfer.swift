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
        /// The head has been decided (it arrived, or the transfer ended without one): set on the curl thread.
        var headDecided = false
        /// A head that arrived and is held back until the body's first bytes (see `deliverHead()`).
        var head: Head?
        var chunks: [ByteBuffer] = []
        var chunkStart = 0
        var bufferedBytes = 0
        var waiter: CheckedContinuation<ByteBuffer?, any Error>?
        var finished: UpstreamError??
        var cancelled = false
        var pausedForBackpressure = false
        var connectionsOpened = 0

        /// Takes the oldest buffered chunk; `unpause` says the transfer fell below the low-water mark.
        mutating func takeChunk() -> (chunk: ByteBuffer, unpause: Bool)? {
            guard self.chunkStart < self.chunks.count else { return nil }
            let chunk = self.chunks[self.chunkStart]
            self.chunkStart += 1
            if self.chunkStart == self.chunks.count {
                self.chunks.removeAll(keepingCapacity: true)
                self.chunkStart = 0
            }
            self.bufferedBytes -= chunk.readableBytes
            var unpause = false
            if self.pausedForBackpressure && self.bufferedBytes <= CurlTransfer.lowWaterBytes {
                self.pausedForBackpressure = false
                unpause = true
            }
            return (chunk, unpause)
        }

        /// Takes what the suspended reader can be resumed with: the head, then the next chunk or the end (resumed by
        /// the caller after the lock is released: see ``Resumptions``). Returns true when the transfer should be
        /// unpaused.
        mutating func resumeReader(_ resumptions: inout Resumptions) -> Bool {
            if let head = self.head, let continuation = self.headContinuation {
                self.head = nil
                self.headContinuation = nil
                resumptions.head = (continuation, .success(head))
            }
            guard let waiter = self.waiter else { return false }
            if let (chunk, unpause) = self.takeChunk() {
                self.waiter = nil
                resumptions.reader = (waiter, .success(chunk))
                return unpause
            }
            if let finished = self.finished {
                self.waiter = nil
                if let error = finished {
                    resumptions.reader = (waiter, .failure(error))
                } else {
                    resumptions.reader = (waiter, .success(nil))
                }
            }
            return false
        }
    }

    /// Continuations to resume once the state lock is released. Never resume one while holding the lock: resuming
    /// takes the task's status lock, which a cancellation handler on another thread holds while it calls
    /// ``cancel(reason:)`` and waits for this lock — a deadlock (seen under load: every upstream call stopped).
    struct Resumptions {
        var head: (CheckedContinuation<Head, any Error>, Result<Head, any Error>)?
        var reader: (CheckedContinuation<ByteBuffer?, any Error>, Result<ByteBuffer?, any Error>)?

        func run() {
            if let (continuation, result) = self.head { continuation.resume(with: result) }
            if let (continuation, result) = self.reader { continuation.resume(with: result) }
        }
    }

    /// Pause the curl transfer when this many bytes wait for a slow reader; resume below the low mark.
    static let highWaterBytes = 512 * 1024
    static let lowWaterBytes = 128 * 1024
    /// Body bytes that arrive while earlier ones still wait for the reader are appended to the last waiting chunk
    /// up to this size, so a reader that falls behind takes (and writes) fewer, larger chunks.
    static let coalesceBytes = 64 * 1024

    private let state = Mutex(State())
    private weak var engine: CurlEngine?
    private let allocator = ByteBufferAllocator()

    // curl thread
    let easy: UnsafeMutableRawPointer
    var headerList: UnsafeMutablePointer<curl_slist>?
    /// Set (before the hand-off) once the transfer was queued for the curl thread; from then on the thread owns `easy`.
    var submitted = false
    /// False for a HEAD request: no body follows whatever the head says.
    var expectsBody = true
    /// The response's Content-Length and whether it has a Transfer-Encoding (which then overrides the length),
    /// once their header lines were seen; and the body bytes received so far.
    private var contentLength: Int?
    private var transferEncoded = false
    private var receivedLength = 0
    /// The body's length as announced, if the head announced one that holds.
    private var expectedLength: Int? { self.transferEncoded ? nil : self.contentLength }
    /// The final head was recorded (curl thread's copy of `State.headDecided`, read without the lock).
    private var headRecorded = false
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
            if let (chunk, unpause) = state.takeChunk() { return .chunk(chunk, unpause: unpause) }
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
                var resumptions = Resumptions()
                let unpause = self.state.withLock { state -> Bool in
                    // Data may have arrived between the check above and now.
                    state.waiter = continuation
                    return state.resumeReader(&resumptions)
                }
                resumptions.run()
                if unpause { self.engine?.unpause(self) }
            }
        } onCancel: {
            self.cancel(reason: "reader task cancelled")
        }
    }

    /// Aborts the transfer from any thread. Idempotent.
    func cancel(reason: String) {
        var resumptions = Resumptions()
        let shouldTellEngine = self.state.withLock { state -> Bool in
            guard !state.cancelled, state.finished == nil else { return false }
            state.cancelled = true
            let error = UpstreamError.cancelled(reason)
            state.finished = .some(error)
            if let continuation = state.headContinuation { resumptions.head = (continuation, .failure(error)) }
            state.headContinuation = nil
            state.head = nil
            if let waiter = state.waiter { resumptions.reader = (waiter, .failure(error)) }
            state.waiter = nil
            state.chunks.removeAll()
            state.chunkStart = 0
            state.bufferedBytes = 0
            return true
        }
        resumptions.run()
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
            self.contentLength = nil
            self.transferEncoded = false
            return
        }
        guard let colon = bytes[0..<end].firstIndex(of: 0x3A) else { return }
        if colon == 14, Self.name(bytes, is: "content-length") {
            self.contentLength = Int(Self.trimmed(bytes, from: colon + 1, to: end))
        } else if colon == 17, Self.name(bytes, is: "transfer-encoding") {
            self.transferEncoded = true
        }
        let name = Self.trimmed(bytes, from: 0, to: colon)
        let value = Self.trimmed(bytes, from: colon + 1, to: end)
        self.pendingHeaders.append((name: name, value: value))
    }

    /// Whether the line starts with `lowercased` in any case (the caller has checked the length).
    private static func name(_ bytes: UnsafeRawBufferPointer, is lowercased: StaticString) -> Bool {
        lowercased.withUTF8Buffer { expected in
            for index in 0..<expected.count {
                let byte = bytes[index]
                let lower = byte >= 0x41 && byte <= 0x5A ? byte | 0x20 : byte
                if lower != expected[index] { return false }
            }
            return true
        }
    }

    private static func trimmed(_ bytes: UnsafeRawBufferPointer, from start: Int, to end: Int) -> String {
        var start = start
        var end = end
        while start < end, bytes[start] == 0x20 || bytes[start] == 0x09 { start += 1 }
        while end > start, bytes[end - 1] == 0x20 || bytes[end - 1] == 0x09 { end -= 1 }
        return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<end]), as: UTF8.self)
    }

    /// Records the final head and decides when the reader gets it:
    /// - no body (HEAD, 204, 304, `Content-Length: 0`): now, with the end, in one wake-up;
    /// - a `Content-Length` body: held back until the body's first bytes (normally in the same read), so the reader
    ///   wakes once for head and body, and for a small response the end too (see `receivedBody`);
    /// - a body of unknown length (chunked, event streams): now, so a stream's head is not delayed.
    private func deliverHead() {
        self.headRecorded = true
        let head = Head(status: self.pendingStatus, headers: self.pendingHeaders)
        let status = self.pendingStatus
        let noBody = !self.expectsBody || status == 204 || status == 304 || self.expectedLength == 0
        let holdForBody = !noBody && self.expectedLength != nil
        var resumptions = Resumptions()
        self.state.withLock { state in
            guard !state.headDecided else { return }
            state.headDecided = true
            state.head = head
            if noBody && state.finished == nil {
                state.finished = .some(nil)
            }
            if !holdForBody {
                _ = state.resumeReader(&resumptions)
            }
        }
        resumptions.run()
    }

    /// Write callback. Returns false when curl should pause (too much buffered) — the data is then redelivered.
    enum WriteResult { case accepted, pause, abort }

    func receivedBody(_ bytes: UnsafeRawBufferPointer) -> WriteResult {
        if self.pendingStatus >= 200 && !self.headRecorded {
            self.deliverHead()
        }
        // All the announced bytes are here: the body is complete, whatever curl says later (a failure can only come
        // before the last byte). The reader gets the end now, with the head and the body, instead of after the pass.
        // (Counted only if accepted below: paused bytes are delivered again.)
        let complete = self.expectedLength.map { self.receivedLength + bytes.count >= $0 } ?? false
        var unpause = false
        var resumptions = Resumptions()
        let result = self.state.withLock { state -> WriteResult in
            if state.cancelled { return .abort }
            if state.bufferedBytes >= Self.highWaterBytes {
                state.pausedForBackpressure = true
                return .pause
            }
            let last = state.chunks.count - 1
            if last >= state.chunkStart, state.chunks[last].readableBytes + bytes.count <= Self.coalesceBytes {
                // Not handed out yet, so this array holds the only reference: the append is in place.
                state.chunks[last].writeBytes(bytes)
            } else {
                state.chunks.append(self.allocator.buffer(bytes: bytes))
            }
            state.bufferedBytes += bytes.count
            if complete && state.finished == nil {
                state.finished = .some(nil)
            }
            unpause = state.resumeReader(&resumptions)
            return .accepted
        }
        resumptions.run()
        if unpause { self.engine?.unpause(self) }
        if result == .accepted {
            self.receivedLength += bytes.count
        }
        return result
    }

    /// Called once when curl reports the transfer done (or when the engine drops it).
    func complete(error: UpstreamError?, status: Int, connectionsOpened: Int) {
        if error == nil && self.pendingStatus == 0 {
            self.pendingStatus = status
        }
        var resumptions = Resumptions()
        self.state.withLock { state in
            state.connectionsOpened = connectionsOpened
            if !state.headDecided {
                state.headDecided = true
                if let error {
                    if let continuation = state.headContinuation { resumptions.head = (continuation, .failure(error)) }
                    state.headContinuation = nil
                } else {
                    state.head = Head(status: self.pendingStatus, headers: self.pendingHeaders)
                }
            }
            if state.finished == nil {
                state.finished = .some(error)
            }
            // Head, remaining body and end go to the reader together; nothing is paused any more.
            _ = state.resumeReader(&resumptions)
        }
        resumptions.run()
    }
}
