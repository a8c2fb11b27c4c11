import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// What the `X-Fake-*` headers script, and the stream writer and JSON helpers every API's answers share.
extension FakeUpstream {
    /// The error `X-Fake-Status` or `X-Fake-Fail-Once` asks for, rendered by `render` (the API's error shape), or nil
    /// when the request is to be answered.
    func scriptedFailure(_ script: ChatScript, body: ByteBuffer, render: (Int) -> Response) -> Response? {
        if let status = script.status {
            return render(status)
        }
        if let status = script.failOnce, self.failsFirstAttempt(of: body) {
            var response = render(status)
            response.headers[HTTPField.Name("retry-after-ms")!] = "10"
            return response
        }
        return nil
    }

    /// `frames` (whole SSE frames) as a `text/event-stream` answer, paced and cut as `script` asks: `X-Fake-Delay-Ms`
    /// between frames, `X-Fake-Byte-Delay-Ms` between bytes, a gated stream waits for `openGate()` before frame
    /// `gateBefore`, and `X-Fake-Drop-After: K` cuts the connection after K frames.
    func eventStream(_ frames: [String], script: ChatScript, gateBefore: Int) -> Response {
        if let byteDelay = script.byteDelayMs {
            return self.trickle(frames, byteDelayMs: byteDelay, contentType: "text/event-stream")
        }
        return Response(
            status: .ok,
            headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"],
            body: ResponseBody { writer in
                do {
                    var pending = ByteBuffer()
                    for (index, frame) in frames.enumerated() {
                        if let dropAfter = script.dropAfter, index == dropAfter {
                            if pending.readableBytes > 0 { try await writer.write(pending) }
                            throw FakeUpstreamError.droppedOnPurpose
                        }
                        if script.gated, index == gateBefore { await self.waitForGate() }
                        if script.delayMs > 0, index > 0 { try await Task.sleep(for: .milliseconds(script.delayMs)) }
                        pending.writeString(frame)
                        // Unpaced streams are written in batches (a huge reply has thousands of events).
                        if script.delayMs > 0 || script.gated || pending.readableBytes >= 64 * 1024 {
                            try await writer.write(pending)
                            pending.clear()
                        }
                    }
                    if pending.readableBytes > 0 { try await writer.write(pending) }
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

    /// One named SSE frame: `event: <name>`, then `data: <json>`.
    static func namedFrame(_ name: String, _ json: String) -> String {
        "event: \(name)\ndata: \(json)\n\n"
    }

    /// The request body as a JSON value, or nil when it is not JSON.
    static func jsonValue(_ body: ByteBuffer) -> Any? {
        try? JSONSerialization.jsonObject(with: Data(body.readableBytesView), options: [.fragmentsAllowed])
    }

    /// `value` written back as JSON (`null` when it is absent or cannot be written).
    static func jsonText(_ value: Any?) -> String {
        guard let value, !(value is NSNull) else { return "null" }
        if let text = value as? String { return "\"\(Self.escape(text))\"" }
        guard JSONSerialization.isValidJSONObject(value),
            let data = try? JSONSerialization.data(withJSONObject: value, options: [.sortedKeys])
        else { return "null" }
        return String(decoding: data, as: UTF8.self)
    }

    /// The tool arguments the fake model asks for: `{"query": <text>}`.
    static func queryArguments(_ text: String) -> String {
        (try? JSONSerialization.data(withJSONObject: ["query": text], options: [.sortedKeys]))
            .map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }
}

/// What the `X-Fake-*` headers of a chat completion, a response or a message ask the fake upstream to do.
struct ChatScript {
    var gated = false
    var delayMs = 0
    var status: Int?
    var failOnce: Int?
    var byteDelayMs: Int?
    var replyBytes: Int?
    var dropAfter: Int?
    /// `X-Fake-Final`: how a Responses stream ends (`failed`, `incomplete`) or a Messages stream breaks (`error`).
    var final: String?

    init(_ headers: HTTPFields) {
        func int(_ name: String) -> Int? {
            HTTPField.Name(name).flatMap { headers[$0] }.flatMap { Int($0) }
        }
        self.gated = HTTPField.Name("X-Fake-Gate").flatMap { headers[$0] } == "1"
        self.delayMs = int("X-Fake-Delay-Ms") ?? 0
        self.status = int("X-Fake-Status")
        self.failOnce = int("X-Fake-Fail-Once")
        self.byteDelayMs = int("X-Fake-Byte-Delay-Ms")
        self.replyBytes = int("X-Fake-Reply-Bytes")
        self.dropAfter = int("X-Fake-Drop-After")
        self.final = HTTPField.Name("X-Fake-Final").flatMap { headers[$0] }
    }
}
