import HTTPTypes
import Hummingbird
import Logging
import MemProxyCore
import MemProxyStore
import NIOCore

/// The memory flow of the APIs that carry a conversation, written once: scope → recall → inject → forward → relay
/// and capture → store. What differs per API is its ``WireDialect`` (`Sources/MemProxyCore/Dialects/`).
extension Forwarder {
    /// A request of one of the APIs memory serves, with a session: recall and inject before forwarding, capture
    /// and store after. The flow is the same for every API; `dialect` reads and edits its wire format.
    func forward<Dialect: WireDialect>(
        _ dialect: Dialect.Type,
        _ request: Request,
        body: ByteBuffer,
        memory: MemoryFlow,
        context: ProxyRequestContext
    ) async throws -> Response {
        let scope = try memory.scope(of: request)
        guard let session = scope.session, scope.mode != .off else {
            return try await self.relay(
                self.upstreamRequest(request, body: body), context: context, errors: Self.errorShape(for: request))
        }
        let parsed: Dialect.Request
        do {
            parsed = try Dialect.parse(body.readableBytesView)
        } catch {
            throw OpenAIError(status: .badRequest, message: error.message, param: error.param, code: error.code)
        }
        var logger = context.logger
        logger[metadataKey: "memory.session"] = .string(session)
        // Bounded write queue: when the writer is far behind, wait a little for room; past that, store nothing
        // for this request (and say so) rather than let the queue, and the process's memory, grow without end.
        let backlogged = try await memory.isBacklogged(logger: logger)
        var injection: MemoryFlow.Injection?
        if scope.mode.reads {
            injection = try await memory.inject(
                into: parsed,
                api: Dialect.api,
                originalBody: body,
                session: session,
                requestID: context.requestID,
                logger: logger
            )
        }
        // The injection record: submitted now, or, when the API's responses can be continued by id, once that id
        // is known (the capture submits it).
        var deferredRecord: InjectionRecord?
        if let record = injection?.record, !backlogged {
            if Dialect.continuesResponses { deferredRecord = record } else { memory.store.submit(record) }
        }
        // A new user turn stores its user message and the reply; a tool loop's next round trip only the reply.
        var turn: ExchangeCapture<Dialect.Reply>.Turn?
        if scope.mode.writes, !backlogged, memory.configuration.storeExchanges {
            if parsed.isNewUserTurn, let userText = parsed.newestUserText {
                turn = .init(userText: userText)
            } else if parsed.isContinuation {
                turn = .init(userText: nil)
            }
        }
        var capture: ExchangeCapture<Dialect.Reply>?
        var extraHeaders: [(name: String, value: String)] = []
        var dropping: Set<String> = []
        if turn != nil || deferredRecord != nil {
            // The reply is read, so ask for it uncompressed.
            dropping.insert("accept-encoding")
            extraHeaders.append((name: "Accept-Encoding", value: "identity"))
            var hashInput = Array(session.utf8)
            hashInput.append(0)
            hashInput.append(contentsOf: body.readableBytesView)
            capture = ExchangeCapture(
                store: memory.store,
                session: session,
                requestID: context.requestID,
                requestHash: StableHash.fnv1a64Hex(hashInput),
                turn: turn,
                injection: deferredRecord,
                responses: memory.responses,
                logger: logger
            )
        }
        let upstreamRequest = self.upstreamRequest(
            request,
            body: injection?.body ?? body,
            extraHeaders: extraHeaders,
            dropping: dropping
        )
        var response: Response
        do {
            response = try await self.relay(
                upstreamRequest, context: context, observer: capture, errors: Dialect.errors)
        } catch {
            capture?.requestFailed()
            throw error
        }
        for (name, value) in MemoryFlow.responseHeaders(session: session, injection: injection, backlogged: backlogged)
        {
            response.headers[HTTPField.Name(name)!] = value
        }
        return response
    }
}
