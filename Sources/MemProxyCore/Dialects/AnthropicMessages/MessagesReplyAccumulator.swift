/// Collects the reply of an Anthropic Messages call, streamed or not (wire-apis.md B3, B4).
///
/// The text is the content blocks in order: consecutive `text` blocks concatenated, each `tool_use` block as a
/// line `tool_call <name>(<input as compact JSON>)`, parts joined with `"\n"`. Streamed, text comes from
/// `content_block_delta` `text_delta`s and tool input from `input_json_delta`s (per `index`), re-serialized once
/// whole so that a streamed and a non-streamed call store the same line. The reply is complete only after
/// `message_stop` (streamed) or for a body of `type` `message`; an `error` event or body makes it incomplete.
public struct MessagesReplyAccumulator: ReplyAccumulator {
    private struct Block: Sendable {
        var isToolUse = false
        var text = ""
        var name = ""
        /// The tool input's JSON text (streamed: the concatenated `partial_json`).
        var input = ""
    }

    private var events = TypedEventStream()
    private var blocks = ReplyParts(empty: Block())
    private var finished = false
    /// Whether an `error` event, or an error body, was seen.
    public private(set) var sawError = false
    /// The message's `stop_reason` (`end_turn`, `tool_use`, `max_tokens`, …), once known.
    public private(set) var stopReason: String?

    /// Creates an empty accumulator.
    public init() {}

    public var isComplete: Bool { finished && !sawError }

    public var text: String {
        var parts: [String] = []
        var text = ""
        for block in blocks.ordered {
            if block.isToolUse {
                parts.append(text)
                text = ""
                parts.append("tool_call \(block.name)(\(Self.compact(block.input)))")
            } else {
                text += block.text
            }
        }
        parts.append(text)
        return ReplyBudget.join(parts)
    }

    // MARK: - Streams

    public mutating func consumeStream(_ bytes: some Collection<UInt8>) {
        for event in events.feed(bytes) { consume(event) }
    }

    public mutating func finishStream() {
        for event in events.finish() { consume(event) }
    }

    private mutating func consume(_ event: TypedEvent) {
        guard let object = event.object else {
            if event.type == "error" { sawError = true }
            return
        }
        let index = object["index"]?.intValue ?? 0
        switch event.type {
        case "content_block_start":
            guard let start = object["content_block"]?.objectValue else { break }
            consumeBlock(start, index: index)
        case "content_block_delta":
            guard let delta = object["delta"]?.objectValue else { break }
            switch delta["type"]?.stringValue {
            case "text_delta":
                if let text = delta["text"]?.stringValue { blocks.update(index) { $0.text += $1.take(text) } }
            case "input_json_delta":
                if let json = delta["partial_json"]?.stringValue {
                    blocks.update(index) { block, budget in
                        block.isToolUse = true
                        // `content_block_start` carries an empty `input: {}` placeholder; the deltas replace it.
                        if block.input == "{}" { block.input = "" }
                        block.input += budget.take(json)
                    }
                }
            default:
                break
            }
        case "message_delta":
            if let reason = object["delta"]?.objectValue?["stop_reason"]?.stringValue { stopReason = reason }
        case "message_stop":
            finished = true
        case "error":
            sawError = true
        default:
            break
        }
    }

    // MARK: - Complete responses

    public mutating func consumeBody(_ body: some Collection<UInt8>) {
        guard case .object(let message)? = try? JSON.parse(body) else { return }
        guard message["type"]?.stringValue == "message" else {
            if message["type"]?.stringValue == "error" || message["error"] != nil { sawError = true }
            return
        }
        finished = true
        stopReason = message["stop_reason"]?.stringValue
        for (index, block) in (message["content"]?.arrayValue ?? []).enumerated() {
            if let block = block.objectValue { consumeBlock(block, index: index) }
        }
    }

    /// A whole content block (a body's, or a stream's `content_block_start`).
    private mutating func consumeBlock(_ block: JSONObject, index: Int) {
        switch block["type"]?.stringValue {
        case "text":
            let text = block["text"]?.stringValue ?? ""
            blocks.update(index) { $0.text += $1.take(text) }
        case "tool_use":
            blocks.update(index) { tool, budget in
                tool.isToolUse = true
                tool.name = budget.take(block["name"]?.stringValue ?? "")
                let input = block["input"] ?? .object(JSONObject())
                tool.input = budget.take(String(decoding: input.serialized(), as: UTF8.self))
            }
        default:
            break
        }
    }

    /// `json` re-serialized compactly (key order kept) when it parses; as it is otherwise; `{}` when empty.
    private static func compact(_ json: String) -> String {
        guard !json.isEmpty else { return "{}" }
        guard let value = try? JSON.parse(json.utf8) else { return json }
        return String(decoding: value.serialized(), as: UTF8.self)
    }
}
