import Foundation
import HTTPTypes
import Hummingbird
import Logging
import MemProxyCore
import MemProxyStore
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
        do {
            return try await self.forwarder.forward(request, context: context)
        } catch var error as OpenAIError {
            // memproxy's own errors take the shape of the route's API (Anthropic's on /v1/messages).
            error.shape = Forwarder.errorShape(for: request)
            throw error
        }
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
    /// nil when memory is disabled (then every request is proxied as it is).
    let memory: MemoryFlow?

    /// The upstream base without a trailing slash; the request target (path + query) is appended verbatim.
    var baseURL: String { Self.trimmed(self.configuration.upstream.url) }

    /// The Anthropic upstream's base (`upstream.anthropic_url`, default `upstream.url`), likewise.
    var anthropicBaseURL: String {
        Self.trimmed(self.configuration.upstream.anthropicURL ?? self.configuration.upstream.url)
    }

    private static func trimmed(_ url: String) -> String {
        var url = url
        while url.hasSuffix("/") { url.removeLast() }
        return url
    }

    func forward(_ request: Request, context: ProxyRequestContext) async throws -> Response {
        let body = try await self.readBody(request)
        if let memory = self.memory, request.method == .post {
            // The APIs memory serves: one flow, one dialect each.
            switch request.uri.path {
            case "/v1/chat/completions":
                return try await self.forward(
                    ChatCompletionsDialect.self, request, body: body, memory: memory, context: context)
            case "/v1/responses":
                return try await self.forward(
                    ResponsesDialect.self, request, body: body, memory: memory, context: context)
            case "/v1/messages":
                return try await self.forward(
                    AnthropicMessagesDialect.self, request, body: body, memory: memory, context: context)
            default:
                break
            }
        }
        return try await self.relay(
            self.upstreamRequest(request, body: body), context: context, errors: Self.errorShape(for: request))
    }

    /// Whether a request goes to the Anthropic upstream: `/v1/messages` and below, or, outside OpenAI's own chat
    /// completions and Responses paths, any request of an Anthropic client (it always sends `anthropic-version`).
    static func isAnthropic(_ request: Request) -> Bool {
        let path = request.uri.path
        if path == "/v1/messages" || path.hasPrefix("/v1/messages/") { return true }
        if Self.isResponses(path) || path == "/v1/chat/completions" { return false }
        return request.headers[HTTPField.Name("anthropic-version")!] != nil
    }

    private static func isResponses(_ path: String) -> Bool {
        path == "/v1/responses" || path.hasPrefix("/v1/responses/")
    }

    /// The shape of memproxy's own errors on the route of `request`.
    static func errorShape(for request: Request) -> ErrorShape {
        if Self.isResponses(request.uri.path) { return .openAIResponses }
        return Self.isAnthropic(request) ? .anthropic : .openAI
    }

    func upstreamRequest(
        _ request: Request,
        body: ByteBuffer,
        extraHeaders: [(name: String, value: String)] = [],
        dropping: Set<String> = []
    ) -> UpstreamRequest {
        let anthropic = Self.isAnthropic(request)
        return UpstreamRequest(
            method: request.method.rawValue,
            url: (anthropic ? self.anthropicBaseURL : self.baseURL) + (request.head.path ?? request.uri.path),
            headers: self.upstreamHeaders(for: request, anthropic: anthropic, dropping: dropping) + extraHeaders,
            body: body.readableBytes > 0 || request.method != .get ? body : nil
        )
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
    /// replaces the client's `Authorization` (`upstream.api_key`), or, for the Anthropic upstream, its `x-api-key`
    /// and `Authorization` (`upstream.anthropic_api_key`, sent as `x-api-key`).
    func upstreamHeaders(
        for request: Request,
        anthropic: Bool = false,
        dropping extra: Set<String> = []
    ) -> [(name: String, value: String)] {
        var dropped = extra.isEmpty ? Self.neverForwarded : Self.neverForwarded.union(extra)
        // Headers named in `Connection` are hop-by-hop too.
        for value in request.headers[values: .connection] {
            for token in value.split(separator: ",") {
                dropped.insert(token.trimmingCharacters(in: .whitespaces).lowercased())
            }
        }
        let credential: (name: String, value: String)? =
            anthropic
            ? self.configuration.upstream.anthropicAPIKey.map { (name: "x-api-key", value: $0) }
            : self.configuration.upstream.apiKey.map { (name: "Authorization", value: "Bearer \($0)") }
        if let credential {
            dropped.insert(credential.name.lowercased())
            // Anthropic SDKs may send the key as `Authorization: Bearer` instead: the configured key replaces both.
            if anthropic { dropped.insert("authorization") }
        }
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
        if let credential {
            headers.append(credential)
        }
        return headers
    }

    /// Sends the request and streams the response back; `observer` sees every body chunk (for reply capture).
    /// A stream the upstream breaks off ends with an error event in `errors`' shape.
    func relay(
        _ upstreamRequest: UpstreamRequest,
        context: ProxyRequestContext,
        observer: (any ResponseObserver)? = nil,
        errors: ErrorShape = .openAI
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
                throw error.isTimeout
                    ? OpenAIError.upstreamTimeout(error.message) : .upstreamDisconnected(error.message)
            }
            let seconds = AccessLogMiddleware.seconds(since: start)
            timing.recordUpstream(seconds: seconds)
            metrics.recordUpstream(seconds: seconds, status: status)
            observer?.responseEnded(.completed)
            return Response(
                status: HTTPResponse.Status(code: status), headers: headers, body: .init(byteBuffer: collected))
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
                    message:
                        "The upstream API closed the stream before it finished (\(error.message)). Retry the request.",
                    type: "server_error",
                    code: error.isTimeout ? "upstream_timeout" : "upstream_disconnected"
                )
                try await writer.write(ByteBuffer(string: errors.streamEvent(event.wireError)))
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
