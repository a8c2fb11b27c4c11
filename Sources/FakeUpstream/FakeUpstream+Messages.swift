import Foundation
import Hummingbird
import NIOCore

/// The Anthropic Messages API (`POST /v1/messages`): one `text` or `tool_use` block, plain or streamed with the
/// official event sequence (`message_start` … `message_stop`, no `[DONE]`), errors in Anthropic's shape.
extension FakeUpstream {
    func messages(body: ByteBuffer, script: ChatScript) -> Response {
        guard let object = Self.jsonValue(body) as? [String: Any] else {
            return Self.anthropicError(code: 400, message: "The request body is not a JSON object.")
        }
        guard let messages = object["messages"] as? [[String: Any]], !messages.isEmpty else {
            return Self.anthropicError(code: 400, message: "messages: a non-empty list of messages is required")
        }
        let number = self.nextAnswerNumber()
        let model = object["model"] as? String ?? "fake-model"
        let userText = Self.text(ofBlocks: messages.last { $0["role"] as? String == "user" }?["content"])
        // A trailing system message (a mid-conversation system message) does not change the answer.
        let last = messages.last { $0["role"] as? String != "system" }
        let lastFromUser = last?["role"] as? String == "user"
        let blocks = last?["content"] as? [[String: Any]] ?? []
        let toolResults = lastFromUser ? blocks.filter { $0["type"] as? String == "tool_result" } : []
        let hasText = last?["content"] is String || blocks.contains { $0["type"] as? String == "text" }
        let tools = object["tools"] as? [[String: Any]] ?? []

        var text: String?
        var toolName = ""
        let toolID = "toolu_fake_\(number)"
        if !toolResults.isEmpty {
            text = "tool result: " + toolResults.map { Self.text(ofBlocks: $0["content"]) }.joined(separator: "\n")
        } else if let tool = tools.first, lastFromUser, hasText {
            toolName = tool["name"] as? String ?? "tool"
        } else {
            text = script.replyBytes.map { Self.filler(bytes: $0) } ?? "echo: \(userText)"
        }
        let input = Self.queryArguments(userText)
        let stopReason = text == nil ? "tool_use" : "end_turn"
        let inputTokens = userText.count / 4 + 1
        let outputTokens = (text ?? input).count / 4 + 1
        let tool = #""id":"\#(toolID)","name":"\#(Self.escape(toolName))""#

        func message(content: String, stopReason: String, outputTokens: Int) -> String {
            #"{"id":"msg_fake_\#(number)","type":"message","role":"assistant","model":"\#(Self.escape(model))","content":[\#(content)],"stop_reason":\#(stopReason),"stop_sequence":null,"usage":{"input_tokens":\#(inputTokens),"output_tokens":\#(outputTokens),"cache_creation_input_tokens":0,"cache_read_input_tokens":0}}"#
        }
        guard object["stream"] as? Bool ?? false else {
            let block =
                text.map { #"{"type":"text","text":"\#(Self.escape($0))"}"# }
                ?? #"{"type":"tool_use",\#(tool),"input":\#(input)}"#
            let body = message(content: block, stopReason: "\"\(stopReason)\"", outputTokens: outputTokens)
            guard let byteDelay = script.byteDelayMs else { return Self.json(body) }
            return self.trickle([body], byteDelayMs: byteDelay, contentType: "application/json")
        }

        var events: [(name: String, fields: String)] = []
        events.append(("message_start", #","message":\#(message(content: "", stopReason: "null", outputTokens: 1))"#))
        let start = text == nil ? #"{"type":"tool_use",\#(tool),"input":{}}"# : #"{"type":"text","text":""}"#
        events.append(("content_block_start", #","index":0,"content_block":\#(start)"#))
        events.append(("ping", ""))
        let firstDelta = events.count
        if let text {
            let pieces = script.replyBytes == nil ? Self.pieces(of: text) : Self.fragments(of: text, size: 4096)
            for piece in pieces {
                events.append(
                    (
                        "content_block_delta",
                        #","index":0,"delta":{"type":"text_delta","text":"\#(Self.escape(piece))"}"#
                    ))
            }
        } else {
            for piece in Self.fragments(of: input, size: 7) {
                events.append(
                    (
                        "content_block_delta",
                        #","index":0,"delta":{"type":"input_json_delta","partial_json":"\#(Self.escape(piece))"}"#
                    ))
            }
        }
        if script.final == "error" {
            // The stream breaks off after its first delta, as an overloaded API does mid-stream.
            events.removeSubrange(min(firstDelta + 1, events.count)...)
            events.append(("error", #","error":{"type":"overloaded_error","message":"Overloaded"}"#))
        } else {
            events.append(("content_block_stop", #","index":0"#))
            events.append(
                (
                    "message_delta",
                    #","delta":{"stop_reason":"\#(stopReason)","stop_sequence":null},"usage":{"output_tokens":\#(outputTokens)}"#
                ))
            events.append(("message_stop", ""))
        }
        let frames = events.map { Self.namedFrame($0.name, #"{"type":"\#($0.name)"\#($0.fields)}"#) }
        return self.eventStream(frames, script: script, gateBefore: firstDelta + 1)
    }

    /// An error answer in Anthropic's shape, `{"type":"error","error":{"type","message"}}`, with `request-id`.
    static func anthropicError(code: Int, message: String? = nil) -> Response {
        let type =
            switch code {
            case 400: "invalid_request_error"
            case 401: "authentication_error"
            case 402: "billing_error"
            case 403: "permission_error"
            case 404: "not_found_error"
            case 413: "request_too_large"
            case 429: "rate_limit_error"
            case 504: "timeout_error"
            case 529: "overloaded_error"
            default: "api_error"
            }
        let text = Self.escape(message ?? "fake upstream error \(code)")
        let body = #"{"type":"error","error":{"type":"\#(type)","message":"\#(text)"}}"#
        return Self.errorResponse(code: code, body: body, requestIDHeader: "request-id")
    }

    /// The text of a message's or a tool result's `content`: a string, or its `text` blocks joined with newlines.
    private static func text(ofBlocks content: Any?) -> String {
        if let text = content as? String { return text }
        let blocks = content as? [[String: Any]] ?? []
        return blocks.filter { $0["type"] as? String == "text" }.compactMap { $0["text"] as? String }
            .joined(separator: "\n")
    }
}
