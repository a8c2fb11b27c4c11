import Foundation
import HTTPTypes
import Hummingbird
import Logging
import MemProxyCore
import MemProxyUpstream
import NIOCore

/// Forwards every request under `/v1/` to the upstream and relays the answer as it arrives.
struct ProxyMiddleware: RouterMiddleware {
    typealias Context = ProxyRequestContext

    let forwarder: Forwarder

    func handle(
        _ request: Request,
        context: Context,
        next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        let path = request.uri.path
        guard path.hasPrefix("/v1/") || path == "/v1" else {
            return try await next(request, context)
        }
        return try await self.forwarder.forward(request, context: context)
    }
}

/// Headers that describe one connection, not the message: never forwarded in either direction.
let hopByHopHeaders: Set<String> = [
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection", "te", "trailer",
    "transfer-encoding", "upgrade",
]

struct Forwarder: Sendable {
    /// Request headers that never go upstream as the client sent them.
    static let neverForwarded = hopByHopHeaders.union(["host", "content-length", "expect"])
    /// Non-streamed responses up to this size are read whole and sent in one write.
    static let maxBufferedResponse = 1024 * 1024

    let upstream: any Upstream
    let configuration: ProxyConfiguration
    let metrics: AppMetrics
    /// nil when memory is disabled (then chat completions are proxied like everything else).
    let memory: ChatMemory?

    /// The upstream base without a trailing slash; the request target (path + query) is appended verbatim.
    var baseURL: String {
        var url = self.configuration.upstream.url
        while url.hasSuffix("/") { url.removeLast() }
        return url
    }

    func forward(_ request: Request, context: ProxyRequestContext) async throws -> Response {
        let body = try await self.readBody(request)
        if let memory = self.memory, request.method == .post, request.uri.path == "/v1/chat/completions" {
            return try await self.forwardChat(request, body: body, memory: memory, context: context)
        }
        return try await self.relay(self.upstreamRequest(request, body: body), context: context)
    }

    private func upstreamRequest(
        _ request: Request,
        body: ByteBuffer,
        extraHeaders: [(name: String, value: String)] = [],
        dropping: Set<String> = []
    ) -> UpstreamRequest {
        UpstreamRequest(
            method: request.method.rawValue,
            url: self.baseURL + (request.head.path ?? request.uri.path),
            headers: self.upstreamHeaders(for: request, dropping: dropping) + extraHeaders,
            body: body.readableBytes > 0 || request.method != .get ? body : nil
        )
    }

    /// Chat completions with a session: recall and inject before forwarding, capture and store after.
    private func forwardChat(
        _ request: Request,
        body: ByteBuffer,
        memory: ChatMemory,
        context: ProxyRequestContext
    ) async throws -> Response {
        let scope = try memory.scope(of: request)
        guard let session = scope.session, scope.mode != .off else {
            return try await self.relay(self.upstreamRequest(request, body: body), context: context)
        }
        let chat: ChatRequest
        do {
            chat = try ChatRequest(body: body.readableBytesView)
        } catch {
            throw OpenAIError(status: .badRequest, message: error.message, param: error.param, code: error.code)
        }
        var logger = context.logger
        logger[metadataKey: "memory.session"] = .string(session)
        // Bounded write queue: when the writer is far behind, wait a little for room; past that, store nothing
        // for this request (and say so) rather than let the queue, and the process's memory, grow without end.
        let backlogged = try await memory.isBacklogged(logger: logger)
        var injection: ChatMemory.Injection?
        if scope.mode.reads {
            injection = try await memory.inject(
                into: chat,
                originalBody: body,
                session: session,
                requestID: context.requestID,
                record: !backlogged,
                logger: logger
            )
        }
        var observer: ExchangeCapture?
        var extraHeaders: [(name: String, value: String)] = []
        var dropping: Set<String> = []
        if scope.mode.writes, !backlogged, memory.configuration.storeExchanges, let userText = chat.newestUserText {
            // The reply is read for storage, so ask for it uncompressed.
            dropping.insert("accept-encoding")
            extraHeaders.append((name: "Accept-Encoding", value: "identity"))
            var hashInput = Array(session.utf8)
            hashInput.append(0)
            hashInput.append(contentsOf: body.readableBytesView)
            observer = ExchangeCapture(
                store: memory.store,
                session: session,
                requestID: context.requestID,
                requestHash: StableHash.fnv1a64Hex(hashInput),
                userText: userText,
                logger: logger
            )
        }
        let upstreamRequest = self.upstreamRequest(
            request,
            body: injection?.body ?? body,
            extraHeaders: extraHeaders,
            dropping: dropping
        )
        var response = try await self.relay(upstreamRequest, context: context, observer: observer)
        for (name, value) in ChatMemory.responseHeaders(session: session, injection: injection, backlogged: backlogged) {
            response.headers[HTTPField.Name(name)!] = value
        }
        return response
    }

    /// Reads the whole request body, refusing anything above `server.max_body_bytes` with 413.
    func readBody(_ request: Request) async throws -> ByteBuffer {
        let limit = self.configuration.server.maxBodyBytes
        if let declared = request.headers[.contentLength].flatMap({ Int($0) }), declared > limit {
            throw OpenAIError.requestTooLarge(limit: limit)
        }
        do {
            return try await request.body.collect(upTo: limit)
        } catch let error as HTTPError where error.status == .contentTooLarge {
            throw OpenAIError.requestTooLarge(limit: limit)
        } catch is NIOTooManyBytesError {
            // A chunked body (no Content-Length) that grows past the limit.
            throw OpenAIError.requestTooLarge(limit: limit)
        }
    }

    /// The client's headers minus hop-by-hop ones, `Host`, `Content-Length` and `Expect`; the configured API key
    /// replaces the client's `Authorization`.
    func upstreamHeaders(for request: Request, dropping extra: Set<String> = []) -> [(name: String, value: String)] {
        var dropped = extra.isEmpty ? Self.neverForwarded : Self.neverForwarded.union(extra)
        // Headers named in `Connection` are hop-by-hop too.
        for value in request.headers[values: .connection] {
            for token in value.split(separator: ",") {
                dropped.insert(token.trimmingCharacters(in: .whitespaces).lowercased())
            }
        }
        let apiKey = self.configuration.upstream.apiKey
        if apiKey != nil { dropped.insert("authorization") }
        var headers: [(name: String, value: String)] = []
        headers.reserveCapacity(request.headers.count + 1)
        if let memory = self.memory {
            dropped.formUnion(memory.consumedHeaders)
        }
        for field in request.headers where !dropped.contains(field.name.canonicalName) {
            // memproxy's own control headers (X-Memory-*) are never forwarded.
            if field.name.canonicalName.hasPrefix("x-memory-") { continue }
            headers.append((name: field.name.rawName, value: field.value))
        }
        if let apiKey {
            headers.append((name: "Authorization", value: "Bearer \(apiKey)"))
        }
        return headers
    }

    /// Sends the request and streams the response back; `observer` sees every body chunk (for reply capture).
    func relay(
        _ upstreamRequest: UpstreamRequest,
        context: ProxyRequestContext,
        observer: (any ResponseObserver)? = nil
    ) async throws -> Response {
        let start = ContinuousClock.now
        let timeouts = UpstreamTimeouts(
            connectSeconds: self.configuration.upstream.connectTimeoutSeconds,
            totalSeconds: self.configuration.upstream.timeoutSeconds
        )
        let upstreamResponse: UpstreamResponse
        do {
            upstreamResponse = try await self.upstream.execute(upstreamRequest, timeouts: timeouts)
        } catch {
            context.timing.recordUpstream(seconds: AccessLogMiddleware.seconds(since: start))
            context.logger.warning(
                "upstream request failed",
                metadata: ["upstream.error": .string(error.description)]
            )
            if error.isTimeout { throw OpenAIError.upstreamTimeout(error.message) }
            if error.isUnreachable { throw OpenAIError.upstreamUnreachable(error.message) }
            if error.isDisconnected { throw OpenAIError.upstreamDisconnected(error.message) }
            throw OpenAIError.upstreamFailed(error.message)
        }

        var headers = HTTPFields()
        var contentLength: Int?
        var isEventStream = false
        for (name, value) in upstreamResponse.headers {
            let lower = name.lowercased()
            if hopByHopHeaders.contains(lower) { continue }
            if lower == "content-length" {
                contentLength = Int(value)
                if upstreamRequest.method == "HEAD", let fieldName = HTTPField.Name(name) {
                    headers.append(HTTPField(name: fieldName, value: value))
                }
                continue
            }
            if lower == "content-type", value.lowercased().hasPrefix("text/event-stream") {
                isEventStream = true
            }
            guard let fieldName = HTTPField.Name(name) else { continue }
            headers.append(HTTPField(name: fieldName, value: value))
        }
        if upstreamRequest.method == "HEAD" { contentLength = nil }
        let status = upstreamResponse.status
        let streamed = isEventStream
        observer?.responseStarted(status: status, isEventStream: streamed)
        let timing = context.timing
        let metrics = self.metrics
        let logger = context.logger
        if !streamed, let contentLength, contentLength <= Self.maxBufferedResponse {
            // A small, complete answer: read it whole and answer with head and body in one write, as
            // nginx does, instead of relaying chunk by chunk.
            var collected = ByteBuffer()
            collected.reserveCapacity(contentLength)
            do {
                for try await chunk in upstreamResponse.body {
                    observer?.responseChunk(chunk)
                    collected.writeImmutableBuffer(chunk)
                }
            } catch let error as UpstreamError {
                observer?.responseEnded(.upstreamFailed)
                logger.warning("upstream failed mid-response", metadata: ["upstream.error": .string(error.description)])
                throw error.isTimeout ? OpenAIError.upstreamTimeout(error.message) : .upstreamDisconnected(error.message)
            }
            let seconds = AccessLogMiddleware.seconds(since: start)
            timing.recordUpstream(seconds: seconds)
            metrics.recordUpstream(seconds: seconds, status: status)
            observer?.responseEnded(.completed)
            return Response(status: HTTPResponse.Status(code: status), headers: headers, body: .init(byteBuffer: collected))
        }
        timing.markStreamed()
        let body = ResponseBody(contentLength: contentLength) { writer in
            var outcome = RelayOutcome.completed
            defer {
                let seconds = AccessLogMiddleware.seconds(since: start)
                timing.recordUpstream(seconds: seconds)
                metrics.recordUpstream(seconds: seconds, status: status)
                observer?.responseEnded(outcome)
            }
            do {
                for try await chunk in upstreamResponse.body {
                    observer?.responseChunk(chunk)
                    try await writer.write(chunk)
                }
                try await writer.finish(nil)
            } catch let error as UpstreamError where !error.isCancelled {
                outcome = .upstreamFailed
                logger.warning("upstream failed mid-response", metadata: ["upstream.error": .string(error.description)])
                guard streamed else { throw error }
                // Tell a streaming client what happened instead of leaving it hanging (openai-contract.md).
                let event = OpenAIError(
                    status: .badGateway,
                    message: "The upstream API closed the stream before it finished (\(error.message)). Retry the request.",
                    type: "server_error",
                    code: error.isTimeout ? "upstream_timeout" : "upstream_disconnected"
                )
                try await writer.write(ByteBuffer(string: "data: \(event.json)\n\n"))
                try await writer.finish(nil)
            } catch {
                // The client went away (or shutdown cancelled us): abort the upstream transfer promptly.
                outcome = .clientDisconnected
                upstreamResponse.cancel()
                throw error
            }
        }
        return Response(status: HTTPResponse.Status(code: status), headers: headers, body: body)
    }
}

/// How a relayed response ended.
enum RelayOutcome: Sendable {
    case completed
    case upstreamFailed
    case clientDisconnected
}

/// Sees a relayed response as it passes (memory uses this to capture the assistant's reply).
protocol ResponseObserver: Sendable {
    func responseStarted(status: Int, isEventStream: Bool)
    func responseChunk(_ chunk: ByteBuffer)
    func responseEnded(_ outcome: RelayOutcome)
}
