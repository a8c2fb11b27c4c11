import Foundation
import HTTPTypes
public import Hummingbird
public import Logging
import NIOCore
import Synchronization

/// A small OpenAI-like upstream for tests and `memproxy demo`: no network, no key, deterministic answers.
///
/// OpenAI-shaped endpoints:
/// - `POST /v1/chat/completions`: answers `"echo: <newest user text>"`, streamed as SSE when `"stream": true`
///   (with a usage chunk when `stream_options.include_usage` is true). With header `X-Fake-Gate: 1` a stream
///   pauses after its first content chunk until `openGate()`; `X-Fake-Delay-Ms: D` spaces chunks D ms apart.
/// - `GET /v1/models`, `POST /v1/embeddings` (float or base64).
/// Scripted endpoints for fault tests (all under `/v1/test/`):
/// - `echo`: returns what it received (method, target, headers, body) as JSON, plus a few response headers.
/// - `status/<code>`: answers `<code>` with an OpenAI error body, `x-request-id` and `retry-after`.
/// - `sse?events=N&delay_ms=D&drop_after=K`: N events D ms apart; with `drop_after`, the connection is cut.
/// - `slow?delay_ms=D`: waits D ms, then answers 200.
/// - `gate`: sends one event, waits for `openGate()`, then sends two more and `[DONE]`.
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
    }

    private let state = Mutex(State())

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

    private func waitForGate() async {
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

    private func recordAbort() {
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
            let gated = request.headers[HTTPField.Name("X-Fake-Gate")!] == "1"
            let delay = request.headers[HTTPField.Name("X-Fake-Delay-Ms")!].flatMap { Int($0) } ?? 0
            return try self.chatCompletion(body: body, gated: gated, delayMs: delay)
        }
        router.get("/v1/models") { _, _ in
            Self.json(#"{"object":"list","data":[{"id":"fake-model","object":"model","created":1700000000,"owned_by":"memproxy"}]}"#)
        }
        router.post("/v1/embeddings") { request, _ in
            let body = try await request.body.collect(upTo: 16 * 1024 * 1024)
            return try Self.embeddings(body: body)
        }
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
        let body = #"{"error":{"message":"fake upstream error \#(code)","type":"fake_error","param":null,"code":"fake_\#(code)"}}"#
        return Response(
            status: HTTPResponse.Status(code: code),
            headers: [
                .contentType: "application/json",
                HTTPField.Name("x-request-id")!: "req_fake_\(code)",
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

    private func chatCompletion(body: ByteBuffer, gated: Bool, delayMs: Int) throws -> Response {
        let object = (try? JSONSerialization.jsonObject(with: Data(body.readableBytesView))) as? [String: Any] ?? [:]
        let messages = object["messages"] as? [[String: Any]] ?? []
        let model = object["model"] as? String ?? "fake-model"
        let lastUser = messages.last { ($0["role"] as? String) == "user" }
        let userText: String
        if let text = lastUser?["content"] as? String {
            userText = text
        } else if let parts = lastUser?["content"] as? [[String: Any]] {
            userText = parts.compactMap { $0["text"] as? String }.joined(separator: "\n")
        } else {
            userText = ""
        }
        let reply = "echo: \(userText)"
        let stream = object["stream"] as? Bool ?? false
        let includeUsage = (object["stream_options"] as? [String: Any])?["include_usage"] as? Bool ?? false
        let usage = #"{"prompt_tokens":\#(userText.count / 4 + 1),"completion_tokens":\#(reply.count / 4 + 1),"total_tokens":\#(userText.count / 4 + reply.count / 4 + 2)}"#
        let id = "chatcmpl-fake"
        guard stream else {
            let body = #"{"id":"\#(id)","object":"chat.completion","created":1700000000,"model":"\#(Self.escape(model))","choices":[{"index":0,"message":{"role":"assistant","content":"\#(Self.escape(reply))","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":\#(usage)}"#
            return Self.json(body)
        }
        var events: [String] = []
        let prefix = #"{"id":"\#(id)","object":"chat.completion.chunk","created":1700000000,"model":"\#(Self.escape(model))","choices":"#
        events.append(prefix + #"[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#)
        for piece in Self.pieces(of: reply) {
            events.append(prefix + #"[{"index":0,"delta":{"content":"\#(Self.escape(piece))"},"finish_reason":null}]}"#)
        }
        events.append(prefix + #"[{"index":0,"delta":{},"finish_reason":"stop"}]}"#)
        if includeUsage {
            events.append(prefix + #"[],"usage":\#(usage)}"#)
        }
        events.append("[DONE]")
        let finalEvents = events
        return Response(
            status: .ok,
            headers: [.contentType: "text/event-stream"],
            body: ResponseBody { writer in
                do {
                    for (index, event) in finalEvents.enumerated() {
                        if gated, index == 2 { await self.waitForGate() }
                        if delayMs > 0, index > 0 { try await Task.sleep(for: .milliseconds(delayMs)) }
                        try await writer.write(ByteBuffer(string: "data: \(event)\n\n"))
                    }
                    try await writer.finish(nil)
                } catch {
                    self.recordAbort()
                    throw error
                }
            }
        )
    }

    private static func embeddings(body: ByteBuffer) throws -> Response {
        let object = (try? JSONSerialization.jsonObject(with: Data(body.readableBytesView))) as? [String: Any] ?? [:]
        let inputs: [String]
        if let single = object["input"] as? String {
            inputs = [single]
        } else {
            inputs = object["input"] as? [String] ?? []
        }
        let base64 = (object["encoding_format"] as? String) == "base64"
        var data: [String] = []
        for (index, input) in inputs.enumerated() {
            let vector: [Float] = (0..<8).map { Float((input.utf8.count + $0 * 7) % 13) / 13 }
            let embedding: String
            if base64 {
                let bytes = vector.withUnsafeBufferPointer { Data(buffer: $0) }
                embedding = "\"\(bytes.base64EncodedString())\""
            } else {
                embedding = "[" + vector.map { "\($0)" }.joined(separator: ",") + "]"
            }
            data.append(#"{"object":"embedding","index":\#(index),"embedding":\#(embedding)}"#)
        }
        return Self.json(
            #"{"object":"list","data":[\#(data.joined(separator: ","))],"model":"fake-embedding","usage":{"prompt_tokens":1,"total_tokens":1}}"#
        )
    }

    private static func pieces(of text: String) -> [String] {
        var pieces: [String] = []
        var current = ""
        for character in text {
            current.append(character)
            if character == " " {
                pieces.append(current)
                current = ""
            }
        }
        if !current.isEmpty { pieces.append(current) }
        return pieces
    }

    static func escape(_ text: String) -> String {
        let data = (try? JSONSerialization.data(withJSONObject: [text], options: [.fragmentsAllowed])) ?? Data("[\"\"]".utf8)
        let encoded = String(decoding: data, as: UTF8.self)
        return String(encoded.dropFirst(2).dropLast(2))
    }

    static func json(_ body: String) -> Response {
        Response(
            status: .ok,
            headers: [.contentType: "application/json"],
            body: ResponseBody(byteBuffer: ByteBuffer(string: body))
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

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
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
            .init(method: request.method.rawValue, target: request.head.path ?? "", headers: headers, body: Array(body.readableBytesView))
        )
        return try await next(request, context)
    }
}
