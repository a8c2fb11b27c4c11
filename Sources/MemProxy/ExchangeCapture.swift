import Foundation
import Logging
import MemProxyCore
import MemProxyStore
import NIOCore
import Synchronization

/// Watches a relayed chat completion and, once it has ended, hands the exchange to the store.
final class ExchangeCapture: ResponseObserver {
    private struct State {
        var status = 0
        var isEventStream = false
        var accumulator = ChatReplyAccumulator()
        var buffered: [UInt8] = []
        var overflow = false
    }

    /// Largest non-streamed reply body kept for storage.
    static let maxBufferedBody = 8 * 1024 * 1024

    private let state = Mutex(State())
    private let store: any MemoryStore
    private let session: String
    private let requestID: String
    private let requestHash: String
    private let userText: String
    private let logger: Logger

    init(store: any MemoryStore, session: String, requestID: String, requestHash: String, userText: String, logger: Logger) {
        self.store = store
        self.session = session
        self.requestID = requestID
        self.requestHash = requestHash
        self.userText = userText
        self.logger = logger
    }

    func responseStarted(status: Int, isEventStream: Bool) {
        self.state.withLock { state in
            state.status = status
            state.isEventStream = isEventStream
        }
    }

    func responseChunk(_ chunk: ByteBuffer) {
        self.state.withLock { state in
            guard (200..<300).contains(state.status) else { return }
            if state.isEventStream {
                state.accumulator.consumeStream(chunk.readableBytesView)
            } else if !state.overflow {
                if state.buffered.count + chunk.readableBytes > Self.maxBufferedBody {
                    state.overflow = true
                    state.buffered = []
                } else {
                    state.buffered.append(contentsOf: chunk.readableBytesView)
                }
            }
        }
    }

    func responseEnded(_ outcome: RelayOutcome) {
        let reply: (status: Int, text: String?, complete: Bool, omitted: Bool) = self.state.withLock { state in
            if state.isEventStream {
                state.accumulator.finishStream()
            } else if !state.overflow {
                state.accumulator.consumeCompletion(state.buffered)
            }
            let text = state.accumulator.text
            let complete =
                outcome == .completed && !state.accumulator.sawError
                && (!state.isEventStream || state.accumulator.sawDone || state.accumulator.finishReason != nil)
            return (state.status, text.isEmpty ? nil : text, complete && !state.overflow, state.overflow)
        }
        // Only successful exchanges are remembered; a cut-short reply is kept but marked incomplete.
        guard (200..<300).contains(reply.status) else { return }
        self.store.submit(
            ExchangeRecord(
                sessionID: self.session,
                exchangeID: Memory.makeID(prefix: "exc_"),
                requestID: self.requestID,
                requestHash: self.requestHash,
                userText: self.userText,
                assistantText: reply.text,
                assistantIncomplete: !reply.complete,
                createdAt: Date(),
                // A reply too large to keep is not stored; the user half says so.
                metadata: reply.omitted ? #"{"reply_omitted":"larger than \#(Self.maxBufferedBody) bytes"}"# : "{}"
            )
        )
        self.logger.debug(
            "memory.exchange_queued",
            metadata: ["memory.session": .string(self.session), "memory.complete": .stringConvertible(reply.complete)]
        )
    }
}
