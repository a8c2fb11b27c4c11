import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// Chat completions (plain, streamed, tool calls, scripted faults).
extension FakeUpstream {
    func chatCompletion(body: ByteBuffer, script: ChatScript) throws -> Response {
        let object = (try? JSONSerialization.jsonObject(with: Data(body.readableBytesView))) as? [String: Any] ?? [:]
        let messages = object["messages"] as? [[String: Any]] ?? []
        let model = object["model"] as? String ?? "fake-model"
        let lastUser = messages.last { ($0["role"] as? String) == "user" }
        let userText = Self.text(of: lastUser)
        let last = messages.last
        var reply = "echo: \(userText)"
        var toolCall: (name: String, arguments: String)?
        if let tools = object["tools"] as? [[String: Any]], let tool = tools.first, last?["role"] as? String == "user" {
            let name = (tool["function"] as? [String: Any])?["name"] as? String ?? "tool"
            let arguments =
                (try? JSONSerialization.data(withJSONObject: ["query": userText], options: [.sortedKeys]))
                .map { String(decoding: $0, as: UTF8.self) } ?? "{}"
            toolCall = (name, arguments)
            reply = ""
        } else if last?["role"] as? String == "tool" {
            reply = "tool result: \(Self.text(of: last))"
        }
        if let size = script.replyBytes {
            reply = Self.filler(bytes: size)
        }
        let stream = object["stream"] as? Bool ?? false
        let includeUsage = (object["stream_options"] as? [String: Any])?["include_usage"] as? Bool ?? false
        let usage =
            #"{"prompt_tokens":\#(userText.count / 4 + 1),"completion_tokens":\#(reply.count / 4 + 1),"total_tokens":\#(userText.count / 4 + reply.count / 4 + 2)}"#
        let id = "chatcmpl-fake"
        let finishReason = toolCall == nil ? "stop" : "tool_calls"
        guard stream else {
            let message: String
            if let toolCall {
                message =
                    #"{"role":"assistant","content":null,"refusal":null,"tool_calls":[{"id":"call_fake_0","type":"function","function":{"name":"\#(Self.escape(toolCall.name))","arguments":"\#(Self.escape(toolCall.arguments))"}}]}"#
            } else {
                message = #"{"role":"assistant","content":"\#(Self.escape(reply))","refusal":null}"#
            }
            let body =
                #"{"id":"\#(id)","object":"chat.completion","created":1700000000,"model":"\#(Self.escape(model))","choices":[{"index":0,"message":\#(message),"logprobs":null,"finish_reason":"\#(finishReason)"}],"usage":\#(usage)}"#
            guard let byteDelay = script.byteDelayMs else { return Self.json(body) }
            return self.trickle([body], byteDelayMs: byteDelay, contentType: "application/json")
        }
        var events: [String] = []
        let prefix =
            #"{"id":"\#(id)","object":"chat.completion.chunk","created":1700000000,"model":"\#(Self.escape(model))","choices":"#
        if let toolCall {
            events.append(
                prefix
                    + #"[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_fake_0","type":"function","function":{"name":"\#(Self.escape(toolCall.name))","arguments":""}}]},"finish_reason":null}]}"#
            )
            for piece in Self.fragments(of: toolCall.arguments, size: 7) {
                events.append(
                    prefix
                        + #"[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\#(Self.escape(piece))"}}]},"finish_reason":null}]}"#
                )
            }
        } else {
            events.append(prefix + #"[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#)
            let pieces = script.replyBytes == nil ? Self.pieces(of: reply) : Self.fragments(of: reply, size: 4096)
            for piece in pieces {
                events.append(
                    prefix + #"[{"index":0,"delta":{"content":"\#(Self.escape(piece))"},"finish_reason":null}]}"#)
            }
        }
        events.append(prefix + #"[{"index":0,"delta":{},"finish_reason":"\#(finishReason)"}]}"#)
        if includeUsage {
            events.append(prefix + #"[],"usage":\#(usage)}"#)
        }
        events.append("[DONE]")
        return self.eventStream(events.map { "data: \($0)\n\n" }, script: script, gateBefore: 2)
    }

    /// A response whose body is written one byte at a time, `byteDelayMs` apart.
    func trickle(_ parts: [String], byteDelayMs: Int, contentType: String) -> Response {
        let bytes = Array(parts.joined().utf8)
        return Response(
            status: .ok,
            headers: [.contentType: contentType],
            body: ResponseBody { writer in
                do {
                    for (index, byte) in bytes.enumerated() {
                        if index > 0, byteDelayMs > 0 { try await Task.sleep(for: .milliseconds(byteDelayMs)) }
                        try await writer.write(ByteBuffer(bytes: [byte]))
                    }
                    try await writer.finish(nil)
                } catch {
                    self.recordAbort()
                    throw error
                }
            }
        )
    }

    /// The text of a message: a string content, or its text parts joined with newlines.
    static func text(of message: [String: Any]?) -> String {
        if let text = message?["content"] as? String { return text }
        if let parts = message?["content"] as? [[String: Any]] {
            return parts.compactMap { $0["text"] as? String }.joined(separator: "\n")
        }
        return ""
    }

    /// `bytes` bytes of ASCII filler text: numbered words, so that a lost or repeated piece shows.
    public static func filler(bytes: Int) -> String {
        var text = ""
        text.reserveCapacity(bytes + 16)
        var word = 0
        while text.utf8.count < bytes {
            text += "w\(word) "
            word += 1
        }
        return String(decoding: text.utf8.prefix(bytes), as: UTF8.self)
    }

    /// `text` cut into pieces of at most `size` characters.
    static func fragments(of text: String, size: Int) -> [String] {
        var pieces: [String] = []
        var rest = Substring(text)
        while !rest.isEmpty {
            pieces.append(String(rest.prefix(size)))
            rest = rest.dropFirst(size)
        }
        return pieces
    }

    static func pieces(of text: String) -> [String] {
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
        let data =
            (try? JSONSerialization.data(withJSONObject: [text], options: [.fragmentsAllowed])) ?? Data("[\"\"]".utf8)
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
