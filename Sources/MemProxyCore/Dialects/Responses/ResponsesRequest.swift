/// A `POST /v1/responses` request body (OpenAI's Responses API), kept as generic JSON so that memproxy can add
/// memory to it and re-emit every other field unchanged.
///
/// Only what memory needs is validated: the body is an object, `input` (when present) is a string or an array of
/// objects, and `instructions` (when present) is a string or `null`. Unknown input item types pass through.
public struct ResponsesRequest: MemoryRequest {
    private var root: JSONObject

    /// Parses and minimally validates a request body.
    /// - Parameters:
    ///   - body: The raw request body (UTF-8 JSON).
    ///   - maxDepth: The maximum JSON nesting depth accepted.
    /// - Throws: ``RequestValidationError`` with code `invalid_json` or `invalid_request_body`.
    public init(body: some Collection<UInt8>, maxDepth: Int = 128) throws(RequestValidationError) {
        let root = try RequestValidationError.object(
            from: body, maxDepth: maxDepth, example: #"{"model": "...", "input": "..."}"#)
        switch root["input"] {
        case nil, .string?, .null?:
            break
        case .array(let items)?:
            for (index, item) in items.enumerated() where item.objectValue == nil {
                throw RequestValidationError(
                    message: "\"input[\(index)]\" must be an input item object, but it is \(item.kindDescription).",
                    param: "input[\(index)]",
                    code: "invalid_request_body"
                )
            }
        case let other?:
            throw RequestValidationError(
                message: "\"input\" must be a string or an array of input items, but it is \(other.kindDescription).",
                param: "input",
                code: "invalid_request_body"
            )
        }
        switch root["instructions"] {
        case nil, .string?, .null?:
            break
        case let other?:
            throw RequestValidationError(
                message: "\"instructions\" must be a string, but it is \(other.kindDescription).",
                param: "instructions",
                code: "invalid_request_body"
            )
        }
        self.root = root
    }

    private var items: [JSONValue] { root["input"]?.arrayValue ?? [] }

    /// The requested model, if `model` is a string.
    public var model: String? { root["model"]?.stringValue }

    /// Whether the upstream keeps this conversation's state: `previous_response_id` or `conversation` is set.
    /// Memory then always goes into `instructions`, which is not carried over to later responses (an input item
    /// would be stored server-side and resent with every later turn).
    public var isStateful: Bool {
        if let previous = root["previous_response_id"], previous != .null { return true }
        if let conversation = root["conversation"], conversation != .null { return true }
        return false
    }

    /// `previous_response_id` of a request that carries no new user message (a tool loop's next round trip on a
    /// stored response): it should get the memories the previous response's request got.
    public var continuedResponseID: String? {
        guard newestUserText == nil else { return nil }
        return root["previous_response_id"]?.stringValue
    }

    /// `input` when it is a string; else the text of the last user message item (a string `content`, or its
    /// `input_text` parts joined with `"\n"`). `nil` when there is none or it has no text.
    public var newestUserText: String? {
        if case .string(let text)? = root["input"] { return text.isEmpty ? nil : text }
        guard let index = newestUserIndex, let text = Self.text(of: items[index]), !text.isEmpty else { return nil }
        return text
    }

    /// `input` is a non-empty string, or its last user message has text and only system/developer messages follow
    /// it. A request whose input holds no user message (only `function_call_output` items, say), or whose user
    /// message is followed by tool calls, their outputs or assistant messages, is a continuation turn.
    public var isNewUserTurn: Bool {
        if case .string(let text)? = root["input"] { return !text.isEmpty }
        guard newestUserText != nil, let index = newestUserIndex else { return false }
        return items[(index + 1)...].allSatisfy { item in
            guard let object = item.objectValue, Self.isMessage(object) else { return false }
            let role = object["role"]?.stringValue
            return role == "system" || role == "developer"
        }
    }

    /// Not a new user turn, and either the input carries items other than messages after its last user message
    /// (tool calls and their outputs) or the request continues a kept response or conversation.
    public var isContinuation: Bool {
        guard !isNewUserTurn else { return false }
        if isStateful { return true }
        let start = newestUserIndex.map { $0 + 1 } ?? 0
        return items[start...].contains { item in
            guard let object = item.objectValue else { return false }
            return !Self.isMessage(object) || object["role"]?.stringValue == "assistant"
        }
    }

    /// `instructions` and the text of every message item, in order.
    public var messageTexts: [String] {
        var texts: [String] = []
        if let instructions = root["instructions"]?.stringValue, !instructions.isEmpty { texts.append(instructions) }
        if case .string(let text)? = root["input"], !text.isEmpty { texts.append(text) }
        for item in items {
            if let text = Self.text(of: item), !text.isEmpty { texts.append(text) }
        }
        return texts
    }

    /// Adds the memory block.
    ///
    /// A stateful request (``isStateful``), or ``MemoryPlacement/system``: appended to `instructions` after a blank
    /// line, or set as `instructions` when there are none. A stateless request with ``MemoryPlacement/lastUser``:
    /// appended to the newest user input as one more `input_text` part (a message's string content becomes
    /// `[{"type":"input_text","text":<original>}, <block>]`; a string `input` stays a string, the block after a blank
    /// line); with no user message, in `instructions`. No other item changes.
    /// - Parameters:
    ///   - block: The text to add; an empty one leaves the request untouched.
    ///   - placement: The configured placement.
    public mutating func inject(_ block: String, placement: MemoryPlacement) {
        guard !block.isEmpty else { return }
        if placement == .lastUser, !isStateful, appendToNewestUserInput(block) { return }
        switch root["instructions"] {
        case .string(let instructions)? where !instructions.isEmpty:
            root["instructions"] = .string(instructions + "\n\n" + block)
        default:
            root["instructions"] = .string(block)
        }
    }

    private mutating func appendToNewestUserInput(_ block: String) -> Bool {
        if case .string(let text)? = root["input"] {
            root["input"] = .string(text.isEmpty ? block : text + "\n\n" + block)
            return true
        }
        guard let index = newestUserIndex else { return false }
        var appended = false
        root.modifyValue(forKey: "input") { value in
            guard case .array(var items) = value, case .object(var item) = items[index] else { return }
            let content: JSONValue
            switch item["content"] {
            case .string(let text)?:
                content = .array([Self.inputText(text), Self.inputText(block)])
            case .array(var parts)?:
                parts.append(Self.inputText(block))
                content = .array(parts)
            default:
                return
            }
            value = .null
            item["content"] = content
            items[index] = .object(item)
            value = .array(items)
            appended = true
        }
        return appended
    }

    private static func inputText(_ text: String) -> JSONValue {
        .object(JSONObject([("type", .string("input_text")), ("text", .string(text))]))
    }

    /// The request body as compact JSON, with every field the client sent in its original order.
    public func serialized() -> [UInt8] {
        JSONValue.object(root).serialized()
    }

    private var newestUserIndex: Int? {
        items.lastIndex { item in
            guard let object = item.objectValue else { return false }
            return Self.isMessage(object) && object["role"]?.stringValue == "user"
        }
    }

    /// A message item: `type` is `message`, or absent (the "easy" input message form).
    private static func isMessage(_ item: JSONObject) -> Bool {
        guard let type = item["type"] else { return item["role"] != nil }
        return type == .string("message")
    }

    /// A message item's text: string content, or its `input_text` / `output_text` parts joined with `"\n"`.
    static func text(of item: JSONValue) -> String? {
        guard let object = item.objectValue, isMessage(object) else { return nil }
        switch object["content"] {
        case .string(let text)?:
            return text
        case .array(let parts)?:
            let texts = parts.compactMap { part -> String? in
                guard let part = part.objectValue,
                    let type = part["type"]?.stringValue, type == "input_text" || type == "output_text"
                else { return nil }
                return part["text"]?.stringValue
            }
            return texts.isEmpty ? nil : texts.joined(separator: "\n")
        default:
            return nil
        }
    }
}

/// `POST /v1/responses`.
public enum ResponsesDialect: WireDialect {
    public static let api = "responses"
    public static let errors = ErrorShape.openAIResponses
    public static let continuesResponses = true

    public static func parse(_ body: some Collection<UInt8>) throws(RequestValidationError) -> ResponsesRequest {
        try ResponsesRequest(body: body)
    }

    public typealias Reply = ResponsesReplyAccumulator
}

extension RequestValidationError {
    /// Parses `body` as a JSON object, or throws `invalid_json` / `invalid_request_body` naming `example`.
    static func object(
        from body: some Collection<UInt8>, maxDepth: Int, example: String
    ) throws(RequestValidationError) -> JSONObject {
        let value: JSONValue
        do {
            value = try JSON.parse(body, maxDepth: maxDepth)
        } catch {
            throw RequestValidationError(
                message: "The request body is not valid JSON: \(error.message). Send a JSON object such as \(example).",
                param: nil,
                code: "invalid_json"
            )
        }
        guard case .object(let root) = value else {
            throw RequestValidationError(
                message: "The request body must be a JSON object, but it is \(value.kindDescription). Send an object "
                    + "such as \(example).",
                param: nil,
                code: "invalid_request_body"
            )
        }
        return root
    }
}
