import Foundation
import HTTPTypes
public import Hummingbird
public import Logging
import NIOCore
import Synchronization

/// A small OpenAI- and Anthropic-like upstream for tests and `memproxy demo`: no network, no key, deterministic
/// answers.
///
/// OpenAI-shaped endpoints:
/// - `POST /v1/chat/completions`: answers `"echo: <newest user text>"`, streamed as SSE when `"stream": true`
///   (with a usage chunk when `stream_options.include_usage` is true). With `tools` and a last message from the
///   `user`, it answers with one `tool_calls` entry for the first tool (arguments `{"query": <user text>}`,
///   streamed in fragments); when the last message is a `tool` result it answers `"tool result: <content>"`.
///   Scripted by request headers:
///   - `X-Fake-Gate: 1`: a stream pauses after its first content chunk until `openGate()`.
///   - `X-Fake-Delay-Ms: D`: stream chunks D ms apart.
///   - `X-Fake-Status: C`: answer status C with an OpenAI error body and `x-request-id: req_fake_C`.
///   - `X-Fake-Fail-Once: C`: the first request with a given body gets status C (with `retry-after-ms: 10`);
///     identical bodies after it are answered normally (a client's retry succeeds).
///   - `X-Fake-Byte-Delay-Ms: D`: the response body is written one byte at a time, D ms apart.
///   - `X-Fake-Reply-Bytes: N`: the reply text is N bytes of filler (huge responses).
///   - `X-Fake-Drop-After: K`: a stream's connection is cut after K events (no `[DONE]`).
/// - `POST /v1/responses` (OpenAI Responses API): one output item, `message` with one `output_text` part
///   `"echo: <newest user text>"` (`input` when a string, else the last `message` item of role `user`: string content
///   or its `input_text` parts joined with newlines). With a `function` tool and a last item (trailing `developer` and
///   `system` messages aside) from the `user`, one `function_call` for the first function tool instead (arguments
///   `{"query": <user text>}`); when the last item is a `function_call_output`, `"tool result: <output>"`. Answer N
///   (a counter shared with `/v1/messages`, from 1) has ids `resp_fake_N`, `msg_fake_N`, `fc_fake_N`, `call_fake_N`.
///   `"stream": true` gives the official event sequence (`response.created`, `response.in_progress`,
///   `response.output_item.added`, [`response.content_part.added`, `response.output_text.delta`×n,
///   `response.output_text.done`, `response.content_part.done` | `response.function_call_arguments.delta`×n,
///   `response.function_call_arguments.done`], `response.output_item.done`, `response.completed`), numbered by
///   `sequence_number`, without `[DONE]`. The chat headers above apply (errors in OpenAI's shape; a gated stream
///   pauses after its first delta), and `X-Fake-Final: failed|incomplete` ends the stream with `response.failed`
///   (`error` `server_error`) or `response.incomplete` (`max_output_tokens`); a plain answer gets that status.
/// - `POST /v1/messages` (Anthropic Messages API): one `text` block `"echo: <newest user text>"` (the last `user`
///   message: string content or its `text` blocks joined with newlines), `stop_reason` `end_turn`. With `tools` and
///   a last message (trailing `system` messages aside) from the `user` with text, one `tool_use` block for the first
///   tool (input `{"query": <user text>}`, `stop_reason` `tool_use`); when that message has `tool_result` blocks,
///   `"tool result: <their contents>"`. Answer N has ids `msg_fake_N`, `toolu_fake_N`. `"stream": true` gives
///   `message_start`, `content_block_start`, `ping`, `content_block_delta`×n, `content_block_stop`, `message_delta`,
///   `message_stop`. The chat headers above apply, with errors in Anthropic's shape (`request-id: req_fake_C`), and
///   `X-Fake-Final: error` ends the stream after its first delta with an `overloaded_error` `error` event. A body
///   that is not an object, or has no non-empty `messages`, gets 400 `invalid_request_error`.
/// - `GET /v1/models`.
/// - `POST /v1/embeddings`: a deterministic embedder with a little meaning (``fakeEmbedding(_:dimensions:)``: hashed
///   words and a synonym table, so "pet" is near "cat"), 64 dimensions unless `dimensions` is given, `float` or
///   `base64` (little-endian float32) vectors, `model` echoed, `usage` counted in words. `input` is a string or an
///   array of strings; token arrays, a missing `model` or a bad `dimensions`/`encoding_format` get 400
///   `invalid_request_error`. `X-Fake-Status`, `X-Fake-Fail-Once` and `X-Fake-Delay-Ms` (wait before answering)
///   apply, and so do the in-process knobs `setEmbeddingsDelay(milliseconds:)` and
///   `setEmbeddingsFailure(status:times:)` (memproxy's own embedder sends no `X-Fake-*` headers);
///   `embeddingRequests` and `embeddedTexts` count the calls.
/// Scripted endpoints for fault tests (all under `/v1/test/`):
/// - `echo`: returns what it received (method, target, headers, body) as JSON, plus a few response headers.
/// - `status/<code>`: answers `<code>` with an OpenAI error body, `x-request-id` and `retry-after`.
/// - `sse?events=N&delay_ms=D&drop_after=K`: N events D ms apart; with `drop_after`, the connection is cut.
/// - `slow?delay_ms=D`: waits D ms, then answers 200.
/// - `gate`: sends one event, waits for `openGate()`, then sends two more and `[DONE]`.
/// - `GET requests?target=P&last=K`: how many requests with target prefix P were received, and the last K of
///   them (method, target, headers, body), for tests that run the fake as a separate process.
/// Every request is recorded (`requests`); aborted streams are counted (`abortedStreams`).
public final class FakeUpstream: Sendable {
    public struct RecordedRequest: Sendable {
        public var method: String
        public var target: String
        public var headers: [(name: String, value: String)]
        public var body: [UInt8]

        public func header(_ name: String) -> String? {
            self.headers.first { $0.name.lowercased() == name.lowercased() }?.value
        }
    }

    private struct State {
        var requests: [RecordedRequest] = []
        var abortedStreams = 0
        var gateOpen = false
        var gateWaiters: [CheckedContinuation<Void, Never>] = []
        var abortWaiters: [CheckedContinuation<Void, Never>] = []
        var failedOnce: Set<[UInt8]> = []
        var answers = 0
    }

    private let state = Mutex(State())
    /// The embeddings knobs and counters (`FakeUpstream+Embeddings.swift`).
    let embeddingsSettings = Mutex(EmbeddingsSettings())

    public init() {}

    /// Every request received so far, oldest first.
    public var requests: [RecordedRequest] { self.state.withLock { $0.requests } }

    /// Streams whose client went away before the stream ended.
    public var abortedStreams: Int { self.state.withLock { $0.abortedStreams } }

    /// Suspends until at least one stream has been aborted by its client.
    public func waitForAbortedStream() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            self.state.withLock { state in
                if state.abortedStreams > 0 {
                    continuation.resume()
                } else {
                    state.abortWaiters.append(continuation)
                }
            }
        }
    }

    /// Lets every `gate` stream continue.
    public func openGate() {
        let waiters = self.state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.gateOpen = true
            defer { state.gateWaiters.removeAll() }
            return state.gateWaiters
        }
        waiters.forEach { $0.resume() }
    }

    func waitForGate() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            self.state.withLock { state in
                if state.gateOpen {
                    continuation.resume()
                } else {
                    state.gateWaiters.append(continuation)
                }
            }
        }
    }

    func recordAbort() {
        let waiters = self.state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.abortedStreams += 1
            defer { state.abortWaiters.removeAll() }
            return state.abortWaiters
        }
        waiters.forEach { $0.resume() }
    }

    /// Builds the fake server on `host:port` (port 0 picks a free one, reported through `onServerRunning`).
    public func makeApplication(
        host: String = "127.0.0.1",
        port: Int = 0,
        logger: Logger,
        onServerRunning: @escaping @Sendable (Int) async -> Void
    ) -> some ApplicationProtocol {
        let router = Router()
        router.add(middleware: RecordingMiddleware(upstream: self))
        router.post("/v1/chat/completions") { request, _ in
            let body = try await request.body.collect(upTo: 64 * 1024 * 1024)
            let script = ChatScript(request.headers)
            if let failure = self.scriptedFailure(script, body: body, render: Self.errorResponse(code:)) {
                return failure
            }
            return try self.chatCompletion(body: body, script: script)
        }
        router.post("/v1/responses") { request, _ in
            let body = try await request.body.collect(upTo: 64 * 1024 * 1024)
            let script = ChatScript(request.headers)
            if let failure = self.scriptedFailure(script, body: body, render: Self.errorResponse(code:)) {
                return failure
            }
            return self.responses(body: body, script: script)
        }
        router.post("/v1/messages") { request, _ in
            let body = try await request.body.collect(upTo: 64 * 1024 * 1024)
            let script = ChatScript(request.headers)
            if let failure = self.scriptedFailure(script, body: body, render: { Self.anthropicError(code: $0) }) {
                return failure
            }
            return self.messages(body: body, script: script)
        }
        router.get("/v1/models") { _, _ in
            Self.json(
                #"{"object":"list","data":[{"id":"fake-model","object":"model","created":1700000000,"owned_by":"memproxy"}]}"#
            )
        }
        router.post("/v1/embeddings") { request, _ in try await self.embeddings(request) }
        router.on("/v1/test/echo", method: .post) { request, _ in try await self.echo(request) }
        router.on("/v1/test/echo", method: .get) { request, _ in try await self.echo(request) }
        router.on("/v1/test/echo", method: .put) { request, _ in try await self.echo(request) }
        router.on("/v1/test/echo", method: .delete) { request, _ in try await self.echo(request) }
        router.get("/v1/test/status/{code}") { _, context in
            let code = context.parameters.get("code", as: Int.self) ?? 500
            return Self.errorResponse(code: code)
        }
        router.post("/v1/test/status/{code}") { _, context in
            let code = context.parameters.get("code", as: Int.self) ?? 500
            return Self.errorResponse(code: code)
        }
        router.get("/v1/test/sse") { request, _ in self.sse(request) }
        router.get("/v1/test/requests") { request, _ in try self.recordedRequests(request) }
        router.get("/v1/test/slow") { request, _ in
            let delay = request.uri.queryParameters.get("delay_ms", as: Int.self) ?? 1000
            try? await Task.sleep(for: .milliseconds(delay))
            return Self.json(#"{"slow":true}"#)
        }
        router.get("/v1/test/gate") { _, _ in
            Response(
                status: .ok,
                headers: [.contentType: "text/event-stream"],
                body: ResponseBody { writer in
                    try await writer.write(ByteBuffer(string: "data: {\"n\":1}\n\n"))
                    await self.waitForGate()
                    try await writer.write(ByteBuffer(string: "data: {\"n\":2}\n\n"))
                    try await writer.write(ByteBuffer(string: "data: {\"n\":3}\n\ndata: [DONE]\n\n"))
                    try await writer.finish(nil)
                }
            )
        }
        return Application(
            router: router,
            configuration: .init(address: .hostname(host, port: port), serverName: nil),
            onServerRunning: { channel in
                await onServerRunning(channel.localAddress?.port ?? port)
            },
            logger: logger
        )
    }

    fileprivate func record(_ request: RecordedRequest) {
        self.state.withLock { $0.requests.append(request) }
    }

    // MARK: handlers

    private func echo(_ request: Request) async throws -> Response {
        let body = try await request.body.collect(upTo: 64 * 1024 * 1024)
        var headers: [[String: String]] = []
        for field in request.headers {
            headers.append(["name": field.name.rawName, "value": field.value])
        }
        let object: [String: Any] = [
            "method": request.method.rawValue,
            "target": request.head.path ?? "",
            "headers": headers,
            "body_base64": Data(body.readableBytesView).base64EncodedString(),
        ]
        let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        return Response(
            status: .ok,
            headers: [
                .contentType: "application/json",
                HTTPField.Name("x-request-id")!: "req_fake_echo",
                HTTPField.Name("X-Fake-Header")!: "fake-value",
            ],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: data))
        )
    }

    private static func errorResponse(code: Int) -> Response {
        let body =
            #"{"error":{"message":"fake upstream error \#(code)","type":"fake_error","param":null,"code":"fake_\#(code)"}}"#
        return Self.errorResponse(code: code, body: body, requestIDHeader: "x-request-id")
    }

    /// Status `code` with the JSON error `body`, request id `req_fake_<code>` in `requestIDHeader`, `retry-after: 0`.
    static func errorResponse(code: Int, body: String, requestIDHeader: String) -> Response {
        Response(
            status: HTTPResponse.Status(code: code),
            headers: [
                .contentType: "application/json",
                HTTPField.Name(requestIDHeader)!: "req_fake_\(code)",
                HTTPField.Name("retry-after")!: "0",
            ],
            body: ResponseBody(byteBuffer: ByteBuffer(string: body))
        )
    }

    private func sse(_ request: Request) -> Response {
        let count = request.uri.queryParameters.get("events", as: Int.self) ?? 3
        let delay = request.uri.queryParameters.get("delay_ms", as: Int.self) ?? 0
        let dropAfter = request.uri.queryParameters.get("drop_after", as: Int.self)
        return Response(
            status: .ok,
            headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"],
            body: ResponseBody { writer in
                do {
                    for index in 0..<count {
                        if index > 0, delay > 0 { try await Task.sleep(for: .milliseconds(delay)) }
                        if let dropAfter, index == dropAfter { throw FakeUpstreamError.droppedOnPurpose }
                        try await writer.write(ByteBuffer(string: "data: {\"n\":\(index)}\n\n"))
                    }
                    try await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
                    try await writer.finish(nil)
                } catch FakeUpstreamError.droppedOnPurpose {
                    throw FakeUpstreamError.droppedOnPurpose
                } catch {
                    self.recordAbort()
                    throw error
                }
            }
        )
    }

    /// Whether this is the first request with `body` (which a `X-Fake-Fail-Once` request then fails).
    func failsFirstAttempt(of body: ByteBuffer) -> Bool {
        let key = Array(body.readableBytesView)
        return self.state.withLock { state in state.failedOnce.insert(key).inserted }
    }

    /// The number of the next Responses or Messages answer (1, 2, ...), which makes its ids unique in this process.
    func nextAnswerNumber() -> Int {
        self.state.withLock { state in
            state.answers += 1
            return state.answers
        }
    }

    private func recordedRequests(_ request: Request) throws -> Response {
        let prefix = request.uri.queryParameters.get("target") ?? ""
        let last = request.uri.queryParameters.get("last", as: Int.self) ?? 0
        let matching = self.requests.filter { $0.target.hasPrefix(prefix) && !$0.target.hasPrefix("/v1/test/requests") }
        let shown = matching.suffix(max(0, last)).map { recorded -> [String: Any] in
            [
                "method": recorded.method,
                "target": recorded.target,
                "headers": recorded.headers.map { ["name": $0.name, "value": $0.value] },
                "body_base64": Data(recorded.body).base64EncodedString(),
            ]
        }
        let object: [String: Any] = ["count": matching.count, "requests": Array(shown)]
        let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        return Response(
            status: .ok,
            headers: [.contentType: "application/json"],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: data))
        )
    }

}

enum FakeUpstreamError: Error {
    case droppedOnPurpose
}

/// Records each request's method, target, headers and body before it is handled.
struct RecordingMiddleware: RouterMiddleware {
    typealias Context = BasicRequestContext
    let upstream: FakeUpstream

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        var request = request
        let body = try await request.collectBody(upTo: 64 * 1024 * 1024)
        var headers: [(name: String, value: String)] = []
        if let authority = request.head.authority {
            headers.append((name: "Host", value: authority))
        }
        for field in request.headers {
            headers.append((name: field.name.rawName, value: field.value))
        }
        self.upstream.record(
            .init(
                method: request.method.rawValue, target: request.head.path ?? "", headers: headers,
                body: Array(body.readableBytesView))
        )
        return try await next(request, context)
    }
}
