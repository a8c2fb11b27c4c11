/// A `POST /v1/messages` request body (Anthropic's Messages API), kept as generic JSON so that memproxy can add
/// memory to it and re-emit every other field unchanged.
///
/// Only what memory needs is validated: the body is an object and `messages` is an array of objects that each have
/// a string `role`.
public struct MessagesRequest: MemoryRequest {
    private var root: JSONObject

    /// Parses and minimally validates a request body.
    /// - Parameters:
    ///   - body: The raw request body (UTF-8 JSON).
    ///   - maxDepth: The maximum JSON nesting depth accepted.
    /// - Throws: ``RequestValidationError`` with code `invalid_json`, `invalid_request_body` or
    ///   `invalid_messages`.
    public init(body: some Collection<UInt8>, maxDepth: Int = 128) throws(RequestValidationError) {
        let root = try RequestValidationError.object(
            from: body, maxDepth: maxDepth,
            example: #"{"model": "...", "max_tokens": 1024, "messages": [{"role": "user", "content": "..."}]}"#)
        try ChatRequest.validateMessages(root["messages"])
        self.root = root
    }

    private var messages: [JSONValue] { root["messages"]?.arrayValue ?? [] }

    /// The requested model, if `model` is a string.
    public var model: String? { root["model"]?.stringValue }

    /// Whether `cache_control` appears anywhere in the request (top level, `system`, `tools` or any message block):
    /// the client uses prompt caching, so `system` and `tools` must stay byte-identical.
    public var usesPromptCaching: Bool { JSONValue.object(root).containsKey("cache_control") }

    /// The text of the newest user message that has text: its string content, or its `text` blocks joined with
    /// `"\n"`. A user message holding only `tool_result` blocks (a tool loop's round trip) is skipped, so a
    /// continuation recalls with the text that started the loop.
    public var newestUserText: String? {
        for message in messages.reversed() {
            guard let object = message.objectValue, object["role"]?.stringValue == "user" else { continue }
            if let text = Self.text(of: object), !text.isEmpty { return text }
            guard Self.holdsToolResults(object) else { return nil }
        }
        return nil
    }

    /// The last user message has text (not only `tool_result` blocks); only an assistant prefill may follow it.
    public var isNewUserTurn: Bool {
        guard let index = lastUserIndex, let object = messages[index].objectValue,
            let text = Self.text(of: object), !text.isEmpty
        else { return false }
        return messages[(index + 1)...].allSatisfy { $0.objectValue?["role"]?.stringValue == "assistant" }
    }

    /// The last user message holds `tool_result` blocks and no text (a tool loop's round trip).
    public var isContinuation: Bool {
        guard let index = lastUserIndex, let object = messages[index].objectValue else { return false }
        return Self.holdsToolResults(object) && (Self.text(of: object) ?? "").isEmpty
    }

    /// `system`'s text and the text of every message, in order.
    public var messageTexts: [String] {
        var texts: [String] = []
        switch root["system"] {
        case .string(let text)? where !text.isEmpty:
            texts.append(text)
        case .array(let blocks)?:
            if let text = Self.joinedText(of: blocks), !text.isEmpty { texts.append(text) }
        default:
            break
        }
        for message in messages {
            if let object = message.objectValue, let text = Self.text(of: object), !text.isEmpty { texts.append(text) }
        }
        return texts
    }

    /// Adds the memory block.
    ///
    /// When the request uses prompt caching (``usesPromptCaching``), or with ``MemoryPlacement/lastUser``:
    /// `system` and `tools` stay byte-identical and the block is appended as the **last** `text` block of the last
    /// user message (after any `tool_result` blocks; string content becomes
    /// `[{"type":"text","text":<original>}, <block>]`), with no `cache_control` of its own. A top-level
    /// `cache_control` (which marks the last cacheable block, now the block) is moved onto the client's own last
    /// block, so cache writes never end in per-turn memory.
    ///
    /// Otherwise: a string `system` gets the block after a blank line, an array `system` one more `text` block,
    /// and a request without `system` gets the block as its `system`.
    /// - Parameters:
    ///   - block: The text to add; an empty one leaves the request untouched.
    ///   - placement: The configured placement.
    public mutating func inject(_ block: String, placement: MemoryPlacement) {
        guard !block.isEmpty else { return }
        if usesPromptCaching || placement == .lastUser, appendToLastUserMessage(block) { return }
        switch root["system"] {
        case .string(let system)?:
            root["system"] = .string(system.isEmpty ? block : system + "\n\n" + block)
        case .array(var blocks)?:
            root["system"] = .null
            blocks.append(Self.textBlock(block))
            root["system"] = .array(blocks)
        default:
            root["system"] = .string(block)
        }
    }

    private mutating func appendToLastUserMessage(_ block: String) -> Bool {
        guard let index = lastUserIndex, case .object(var message) = messages[index] else { return false }
        var content: [JSONValue]
        switch message["content"] {
        case .string(let text)?:
            content = [Self.textBlock(text)]
        case .array(let blocks)?:
            content = blocks
        default:
            return false
        }
        // The automatic top-level marker would land on the memory block: mark the client's last block instead.
        let isLastMessage = index == messages.count - 1
        if isLastMessage, let marker = root["cache_control"], case .object(var last)? = content.last {
            if last["cache_control"] == nil { last["cache_control"] = marker }
            content[content.count - 1] = .object(last)
            root["cache_control"] = nil
        }
        content.append(Self.textBlock(block))
        root.modifyValue(forKey: "messages") { value in
            guard case .array(var all) = value else { return }
            value = .null
            message["content"] = .array(content)
            all[index] = .object(message)
            value = .array(all)
        }
        return true
    }

    /// The request body as compact JSON, with every field the client sent in its original order.
    public func serialized() -> [UInt8] {
        JSONValue.object(root).serialized()
    }

    private var lastUserIndex: Int? {
        messages.lastIndex { $0.objectValue?["role"]?.stringValue == "user" }
    }

    private static func textBlock(_ text: String) -> JSONValue {
        .object(JSONObject([("type", .string("text")), ("text", .string(text))]))
    }

    /// A message's text: a string content, or its `text` blocks joined with `"\n"`.
    static func text(of message: JSONObject) -> String? {
        switch message["content"] {
        case .string(let text)?: text
        case .array(let blocks)?: joinedText(of: blocks)
        default: nil
        }
    }

    private static func joinedText(of blocks: [JSONValue]) -> String? {
        let texts = blocks.compactMap { block -> String? in
            guard let block = block.objectValue, block["type"]?.stringValue == "text" else { return nil }
            return block["text"]?.stringValue
        }
        return texts.isEmpty ? nil : texts.joined(separator: "\n")
    }

    private static func holdsToolResults(_ message: JSONObject) -> Bool {
        message["content"]?.arrayValue?.contains { $0.objectValue?["type"]?.stringValue == "tool_result" } ?? false
    }
}

/// `POST /v1/messages` (Anthropic).
public enum AnthropicMessagesDialect: WireDialect {
    public static let api = "messages"
    public static let errors = ErrorShape.anthropic

    public static func parse(_ body: some Collection<UInt8>) throws(RequestValidationError) -> MessagesRequest {
        try MessagesRequest(body: body)
    }

    public typealias Reply = MessagesReplyAccumulator
}

extension JSONValue {
    /// Whether an object anywhere in this value has a member named `key`.
    func containsKey(_ key: String) -> Bool {
        switch self {
        case .object(let object):
            object.contains { $0.key == key || $0.value.containsKey(key) }
        case .array(let elements):
            elements.contains { $0.containsKey(key) }
        default:
            false
        }
    }
}
