import Foundation
import Hummingbird
import NIOCore

/// The OpenAI Responses API (`POST /v1/responses`): one `message` or `function_call` output item, plain or streamed
/// with the official event sequence (`response.created` … `response.completed`, no `[DONE]`).
extension FakeUpstream {
    /// The one output item of an answer, with the ids of answer `number`.
    private struct ResponsesItem {
        var number: Int
        /// The reply text of a `message`, or nil for a `function_call`.
        var text: String?
        var toolName = ""
        var arguments = ""

        var id: String { self.text == nil ? "fc_fake_\(self.number)" : "msg_fake_\(self.number)" }

        /// The item as `response.output_item.added` (in progress, empty) or `.done` and the final output show it.
        func json(done: Bool) -> String {
            let status = done ? "completed" : "in_progress"
            guard let text = self.text else {
                return
                    #"{"id":"\#(self.id)","type":"function_call","status":"\#(status)","arguments":"\#(FakeUpstream.escape(done ? self.arguments : ""))","call_id":"call_fake_\#(self.number)","name":"\#(FakeUpstream.escape(self.toolName))"}"#
            }
            let content = done ? Self.part(text) : ""
            return
                #"{"id":"\#(self.id)","type":"message","status":"\#(status)","content":[\#(content)],"role":"assistant"}"#
        }

        /// An `output_text` content part.
        static func part(_ text: String) -> String {
            #"{"type":"output_text","annotations":[],"logprobs":[],"text":"\#(FakeUpstream.escape(text))"}"#
        }
    }

    /// The fields of a `Response` object that do not change while it is streamed.
    private struct ResponsesEnvelope {
        var number: Int
        var model: String
        var instructions: String
        var previousResponseID: String
        var tools: String
        var store: Bool
        var inputTokens: Int
        var outputTokens: Int

        /// The `Response` object with `status` and `output` (`usage` only once it is no longer in progress).
        func json(status: String, output: [String]) -> String {
            let error =
                status == "failed" ? #"{"code":"server_error","message":"fake failure"}"# : "null"
            let incomplete = status == "incomplete" ? #"{"reason":"max_output_tokens"}"# : "null"
            let usage =
                status == "in_progress"
                ? "null"
                : #"{"input_tokens":\#(self.inputTokens),"input_tokens_details":{"cache_write_tokens":0,"cached_tokens":0},"output_tokens":\#(self.outputTokens),"output_tokens_details":{"reasoning_tokens":0},"total_tokens":\#(self.inputTokens + self.outputTokens)}"#
            let completedAt = status == "completed" ? "1700000000" : "null"
            return
                #"{"id":"resp_fake_\#(self.number)","object":"response","created_at":1700000000,"status":"\#(status)","background":false,"completed_at":\#(completedAt),"error":\#(error),"incomplete_details":\#(incomplete),"instructions":\#(self.instructions),"max_output_tokens":null,"max_tool_calls":null,"model":"\#(FakeUpstream.escape(self.model))","output":[\#(output.joined(separator: ","))],"parallel_tool_calls":true,"previous_response_id":\#(self.previousResponseID),"conversation":null,"prompt_cache_key":null,"reasoning":{"effort":null,"summary":null},"safety_identifier":null,"service_tier":"default","store":\#(self.store),"temperature":1.0,"text":{"format":{"type":"text"},"verbosity":"medium"},"tool_choice":"auto","tools":\#(self.tools),"top_logprobs":0,"top_p":1.0,"truncation":"disabled","usage":\#(usage),"user":null,"metadata":{}}"#
        }
    }

    func responses(body: ByteBuffer, script: ChatScript) -> Response {
        let object = Self.jsonValue(body) as? [String: Any] ?? [:]
        let items: [[String: Any]]
        if let text = object["input"] as? String {
            items = [["role": "user", "content": text]]
        } else {
            items = object["input"] as? [[String: Any]] ?? []
        }
        let userText = Self.text(ofInput: items.last { Self.isMessage($0, roles: ["user"]) }?["content"])
        // A trailing developer or system message (where a memory proxy puts its block) does not change the answer.
        let last = items.last { !Self.isMessage($0, roles: ["developer", "system"]) }
        let functionTool = (object["tools"] as? [[String: Any]])?.first { $0["type"] as? String == "function" }
        var item = ResponsesItem(number: self.nextAnswerNumber())
        if let functionTool, let last, Self.isMessage(last, roles: ["user"]) {
            item.toolName = functionTool["name"] as? String ?? "tool"
            item.arguments = Self.queryArguments(userText)
        } else if let last, last["type"] as? String == "function_call_output" {
            item.text = "tool result: \(Self.text(ofInput: last["output"]))"
        } else {
            item.text = script.replyBytes.map { Self.filler(bytes: $0) } ?? "echo: \(userText)"
        }
        let envelope = ResponsesEnvelope(
            number: item.number,
            model: object["model"] as? String ?? "fake-model",
            instructions: Self.jsonText(object["instructions"]),
            previousResponseID: Self.jsonText(object["previous_response_id"]),
            tools: object["tools"] is [Any] ? Self.jsonText(object["tools"]) : "[]",
            store: object["store"] as? Bool ?? true,
            inputTokens: userText.count / 4 + 1,
            outputTokens: (item.text ?? item.arguments).count / 4 + 1
        )
        let status =
            switch script.final ?? "" {
            case "failed": "failed"
            case "incomplete": "incomplete"
            default: "completed"
            }
        guard object["stream"] as? Bool ?? false else {
            let body = envelope.json(status: status, output: [item.json(done: true)])
            guard let byteDelay = script.byteDelayMs else { return Self.json(body) }
            return self.trickle([body], byteDelayMs: byteDelay, contentType: "application/json")
        }

        var events: [(type: String, fields: String)] = []
        let started = #""response":\#(envelope.json(status: "in_progress", output: []))"#
        events.append(("response.created", started))
        events.append(("response.in_progress", started))
        events.append(("response.output_item.added", #""output_index":0,"item":\#(item.json(done: false))"#))
        let at = #""item_id":"\#(item.id)","output_index":0"#
        var firstDelta = events.count
        if let text = item.text {
            events.append(
                ("response.content_part.added", #"\#(at),"content_index":0,"part":\#(ResponsesItem.part(""))"#))
            firstDelta = events.count
            let pieces = script.replyBytes == nil ? Self.pieces(of: text) : Self.fragments(of: text, size: 4096)
            for piece in pieces {
                events.append(
                    (
                        "response.output_text.delta",
                        #"\#(at),"content_index":0,"delta":"\#(Self.escape(piece))","logprobs":[]"#
                    ))
            }
            events.append(
                ("response.output_text.done", #"\#(at),"content_index":0,"text":"\#(Self.escape(text))","logprobs":[]"#)
            )
            events.append(
                ("response.content_part.done", #"\#(at),"content_index":0,"part":\#(ResponsesItem.part(text))"#))
        } else {
            for piece in Self.fragments(of: item.arguments, size: 7) {
                events.append(("response.function_call_arguments.delta", #"\#(at),"delta":"\#(Self.escape(piece))""#))
            }
            events.append(
                (
                    "response.function_call_arguments.done",
                    #"\#(at),"name":"\#(Self.escape(item.toolName))","arguments":"\#(Self.escape(item.arguments))""#
                ))
        }
        events.append(("response.output_item.done", #""output_index":0,"item":\#(item.json(done: true))"#))
        events.append(
            ("response.\(status)", #""response":\#(envelope.json(status: status, output: [item.json(done: true)]))"#))
        let frames = events.enumerated().map { number, event in
            Self.namedFrame(event.type, #"{"type":"\#(event.type)","sequence_number":\#(number),\#(event.fields)}"#)
        }
        return self.eventStream(frames, script: script, gateBefore: firstDelta + 1)
    }

    /// Whether `item` is a message (`type` "message" or absent) with one of `roles`.
    private static func isMessage(_ item: [String: Any], roles: Set<String>) -> Bool {
        (item["type"] as? String ?? "message") == "message" && roles.contains(item["role"] as? String ?? "")
    }

    /// The text of a message's `content` or a tool output: a string, or its `input_text` parts joined with newlines.
    private static func text(ofInput content: Any?) -> String {
        if let text = content as? String { return text }
        let parts = content as? [[String: Any]] ?? []
        return parts.filter { $0["type"] as? String == "input_text" }.compactMap { $0["text"] as? String }
            .joined(separator: "\n")
    }
}
