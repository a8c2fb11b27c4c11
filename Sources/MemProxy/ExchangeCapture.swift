import Foundation
import Logging
import MemProxyCore
import MemProxyStore
import NIOCore
import Synchronization

/// Watches a relayed response of one API (its ``ReplyAccumulator``) and, once it has ended, hands the exchange
/// to the store, and the injection record when it waited for the upstream's response id.
final class ExchangeCapture<Reply: ReplyAccumulator>: ResponseObserver {
    /// What of the exchange is stored.
    struct Turn: Sendable {
        /// The new user message; `nil` for a continuation turn (only the reply is stored).
        var userText: String?
    }

    private struct State {
        var status = 0
        var isEventStream = false
        var accumulator = Reply()
        var buffered: [UInt8] = []
        var overflow = false
        /// The injection record still to submit (it waits for the response's id).
        var injection: InjectionRecord?
    }

    /// Largest non-streamed reply body kept for storage.
    static var maxBufferedBody: Int { 8 * 1024 * 1024 }

    private let state: Mutex<State>
    private let store: any MemoryStore
    private let session: String
    private let requestID: String
    private let requestHash: String
    private let turn: Turn?
    private let responses: ResponseBlocks
    private let logger: Logger

    /// - Parameters:
    ///   - turn: What to store once the response has ended; `nil` stores no exchange.
    ///   - injection: An injection record to submit once the response's id is known.
    init(
        store: any MemoryStore,
        session: String,
        requestID: String,
        requestHash: String,
        turn: Turn?,
        injection: InjectionRecord?,
        responses: ResponseBlocks,
        logger: Logger
    ) {
        self.store = store
        self.session = session
        self.requestID = requestID
        self.requestHash = requestHash
        self.turn = turn
        self.responses = responses
        self.logger = logger
        self.state = Mutex(State(injection: injection))
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

    /// The upstream could not be asked at all: the injection record is still kept (without a response id).
    func requestFailed() {
        if let injection = self.state.withLock({ state in state.injection.take() }) {
            self.store.submit(injection)
        }
    }

    func responseEnded(_ outcome: RelayOutcome) {
        let (reply, injection) = self.state.withLock {
            state -> ((status: Int, text: String?, complete: Bool, omitted: Bool), InjectionRecord?) in
            if state.isEventStream {
                state.accumulator.finishStream()
            } else if !state.overflow, (200..<300).contains(state.status) {
                state.accumulator.consumeBody(state.buffered)
            }
            let text = state.accumulator.text
            let complete = outcome == .completed && state.accumulator.isComplete && !state.overflow
            var injection = state.injection.take()
            injection?.responseID = state.accumulator.responseID
            return ((state.status, text.isEmpty ? nil : text, complete, state.overflow), injection)
        }
        if let injection {
            self.responses.remember(injection)
            self.store.submit(injection)
        }
        // Only successful exchanges are remembered; a cut-short reply is kept but marked incomplete (and never
        // injected).
        guard let turn = self.turn, (200..<300).contains(reply.status), turn.userText != nil || reply.text != nil
        else { return }
        self.store.submit(
            ExchangeRecord(
                sessionID: self.session,
                exchangeID: Memory.makeID(prefix: "exc_"),
                requestID: self.requestID,
                requestHash: self.requestHash,
                userText: turn.userText,
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
