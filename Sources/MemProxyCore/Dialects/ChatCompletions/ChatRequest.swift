/// A problem with a client's request body, rendered to the client as an OpenAI `invalid_request_error`.
public struct RequestValidationError: Error, Sendable, Equatable {
    /// What is wrong and what to do about it.
    public var message: String
    /// The offending field, such as `messages` or `messages[3].role`; `nil` for the body as a whole.
    public var param: String?
    /// A machine-readable code: `invalid_json`, `invalid_request_body` or `invalid_messages`.
    public var code: String

    /// Creates an error.
    /// - Parameters:
    ///   - message: What is wrong and what to do about it.
    ///   - param: The offending field, if any.
    ///   - code: A machine-readable code.
    public init(message: String, param: String?, code: String) {
        self.message = message
        self.param = param
        self.code = code
    }
}

/// A `POST /v1/chat/completions` request body, kept as generic JSON so that memproxy can add memory to it and
/// re-emit every other field (order, unknown fields, number literals) unchanged.
///
/// Only what memory needs is validated: the body is an object and `messages` is an array of objects that each
/// have a string `role`. Everything else is left for the upstream to judge.
public struct ChatRequest: MemoryRequest {
    private var root: JSONObject

    /// Parses and minimally validates a request body.
    /// - Parameters:
    ///   - body: The raw request body (UTF-8 JSON).
    ///   - maxDepth: The maximum JSON nesting depth accepted.
    /// - Throws: ``RequestValidationError`` with code `invalid_json`, `invalid_request_body` or
    ///   `invalid_messages`.
    public init(body: some Collection<UInt8>, maxDepth: Int = 128) throws(RequestValidationError) {
        let value: JSONValue
        do {
            value = try JSON.parse(body, maxDepth: maxDepth)
        } catch {
            throw RequestValidationError(
                message: "The request body is not valid JSON: \(error.message). Send a JSON object such as "
                    + #"{"model": "...", "messages": [{"role": "user", "content": "..."}]}."#,
                param: nil,
                code: "invalid_json"
            )
        }
        guard case .object(let root) = value else {
            throw RequestValidationError(
                message: "The request body must be a JSON object, but it is \(value.kindDescription). Send an object "
                    + "with \"model\" and \"messages\".",
                param: nil,
                code: "invalid_request_body"
            )
        }
        try Self.validateMessages(root["messages"])
        self.root = root
    }

    static func validateMessages(_ value: JSONValue?) throws(RequestValidationError) {
        guard let value else {
            throw RequestValidationError(
                message: "The request has no \"messages\". Send \"messages\" as an array of message objects, each "
                    + "with a \"role\" and \"content\".",
                param: "messages",
                code: "invalid_messages"
            )
        }
        guard case .array(let messages) = value else {
            throw RequestValidationError(
                message: "\"messages\" must be an array of message objects, but it is \(value.kindDescription).",
                param: "messages",
                code: "invalid_messages"
            )
        }
        for (index, message) in messages.enumerated() {
            guard case .object(let object) = message else {
                throw RequestValidationError(
                    message: "\"messages[\(index)]\" must be an object with a \"role\" and \"content\", but it is "
                        + "\(message.kindDescription).",
                    param: "messages[\(index)]",
                    code: "invalid_messages"
                )
            }
            guard let role = object["role"] else {
                throw RequestValidationError(
                    message: "\"messages[\(index)].role\" is missing. Give every message a role such as \"system\", "
                        + "\"user\" or \"assistant\".",
                    param: "messages[\(index)].role",
                    code: "invalid_messages"
                )
            }
            guard case .string = role else {
                throw RequestValidationError(
                    message: "\"messages[\(index)].role\" must be a string such as \"user\", but it is "
                        + "\(role.kindDescription).",
                    param: "messages[\(index)].role",
                    code: "invalid_messages"
                )
            }
        }
    }

    private var messages: [JSONValue] { root["messages"]?.arrayValue ?? [] }

    /// Whether the client asked for a streamed reply (`"stream": true`).
    public var isStream: Bool { root["stream"]?.boolValue == true }

    /// The requested model, if `model` is a string.
    public var model: String? { root["model"]?.stringValue }

    /// The text of the last message whose role is `user`, or `nil` if there is none or its text is empty.
    ///
    /// The text is the string `content`, or the `text` of every `{"type":"text"}` part joined with `"\n"`.
    /// Earlier user messages are not consulted when the last one has no text (for example, an image only).
    public var newestUserText: String? {
        for message in messages.reversed() {
            guard let object = message.objectValue, object["role"]?.stringValue == "user" else { continue }
            guard let text = Self.text(of: object), !text.isEmpty else { return nil }
            return text
        }
        return nil
    }

    /// The non-empty text of every message, in order and for all roles, for de-duplicating recalled memories
    /// against what the client already sent.
    public var messageTexts: [String] {
        messages.compactMap { message in
            guard let object = message.objectValue, let text = Self.text(of: object), !text.isEmpty else { return nil }
            return text
        }
    }

    /// The text of a message: a string `content`, or its text parts joined with `"\n"`.
    static func text(of message: JSONObject) -> String? {
        switch message["content"] {
        case .string(let text)?:
            return text
        case .array(let parts)?:
            let texts = parts.compactMap { part -> String? in
                guard let part = part.objectValue, part["type"]?.stringValue == "text" else { return nil }
                return part["text"]?.stringValue
            }
            return texts.isEmpty ? nil : texts.joined(separator: "\n")
        default:
            return nil
        }
    }

    /// Adds a block of text (the memory block) to the request's system prompt.
    ///
    /// If the first message has role `system` or `developer`:
    /// - string content becomes `content + "\n\n" + block` (just `block` when the content is empty);
    /// - array content gets a part `{"type":"text","text":block}` appended;
    /// - `null` or missing content is set to `block`.
    ///
    /// Otherwise (including an empty `messages` array, or a first system message whose content has some other
    /// type) a message `{"role":"system","content":block}` is inserted at index 0. Nothing else in the body
    /// changes. An empty `block` leaves the request untouched.
    /// - Parameter block: The text to add.
    public mutating func inject(_ block: String) {
        guard !block.isEmpty else { return }
        root.modifyValue(forKey: "messages") { value in
            guard case .array(var messages) = value else { return }
            value = .null
            if !Self.appendToLeadingSystemMessage(&messages, block) {
                let system = JSONObject([("role", .string("system")), ("content", .string(block))])
                messages.insert(.object(system), at: 0)
            }
            value = .array(messages)
        }
    }

    private static func appendToLeadingSystemMessage(_ messages: inout [JSONValue], _ block: String) -> Bool {
        guard case .object(var first)? = messages.first,
            let role = first["role"]?.stringValue, role == "system" || role == "developer"
        else { return false }
        switch first["content"] {
        case .string(let content)?:
            first["content"] = .string(content.isEmpty ? block : content + "\n\n" + block)
        case .array(var parts)?:
            first["content"] = .null
            parts.append(.object(JSONObject([("type", .string("text")), ("text", .string(block))])))
            first["content"] = .array(parts)
        case .null?, nil:
            first["content"] = .string(block)
        default:
            return false
        }
        messages[0] = .object(first)
        return true
    }

    /// Whether the newest user message is the new input of this request: it has text and no assistant or tool
    /// message follows it. In a tool loop the client resends the same user message with the tool results after
    /// it: such a continuation turn is not a new user turn.
    public var isNewUserTurn: Bool {
        guard newestUserText != nil,
            let last = messages.lastIndex(where: { $0.objectValue?["role"]?.stringValue == "user" })
        else { return false }
        return !messages[(last + 1)...].contains { message in
            let role = message.objectValue?["role"]?.stringValue
            return role == "assistant" || role == "tool" || role == "function"
        }
    }

    /// The newest user message is followed by assistant or tool messages (a tool loop's round trip).
    public var isContinuation: Bool {
        guard let last = messages.lastIndex(where: { $0.objectValue?["role"]?.stringValue == "user" }) else {
            return false
        }
        return messages[(last + 1)...].contains { message in
            let role = message.objectValue?["role"]?.stringValue
            return role == "assistant" || role == "tool" || role == "function"
        }
    }

    /// Adds the memory block: with ``MemoryPlacement/lastUser``, appended to the newest user message (string
    /// content: after a blank line; array content: one more `{"type":"text"}` part), every other message left
    /// byte-identical; otherwise (or when there is no user message with string or array content) as
    /// ``inject(_:)`` does, in the system prompt.
    /// - Parameters:
    ///   - block: The text to add; an empty one leaves the request untouched.
    ///   - placement: Where to add it.
    public mutating func inject(_ block: String, placement: MemoryPlacement) {
        guard !block.isEmpty else { return }
        if placement == .lastUser, appendToNewestUserMessage(block) { return }
        inject(block)
    }

    private mutating func appendToNewestUserMessage(_ block: String) -> Bool {
        var appended = false
        root.modifyValue(forKey: "messages") { value in
            guard case .array(var messages) = value,
                let index = messages.lastIndex(where: { $0.objectValue?["role"]?.stringValue == "user" }),
                case .object(var message) = messages[index],
                let content = message["content"].flatMap({ Self.appending(block, to: $0, partType: "text") })
            else { return }
            value = .null
            message["content"] = content
            messages[index] = .object(message)
            value = .array(messages)
            appended = true
        }
        return appended
    }

    /// `content` (a string, or an array of parts) with `block` appended: a string after a blank line, an array
    /// as one more `{"type": partType, "text": block}` part; `nil` for content of another type.
    static func appending(_ block: String, to content: JSONValue, partType: String) -> JSONValue? {
        switch content {
        case .string(let text):
            return .string(text.isEmpty ? block : text + "\n\n" + block)
        case .array(var parts):
            parts.append(.object(JSONObject([("type", .string(partType)), ("text", .string(block))])))
            return .array(parts)
        default:
            return nil
        }
    }

    /// The request body as compact JSON, with every field the client sent in its original order.
    /// - Returns: The UTF-8 encoded body.
    public func serialized() -> [UInt8] {
        JSONValue.object(root).serialized()
    }
}

extension JSONValue {
    /// A short description of the value's type for error messages ("a string", "an array", ...).
    var kindDescription: String {
        switch self {
        case .null: "null"
        case .bool: "a boolean"
        case .number: "a number"
        case .string: "a string"
        case .array: "an array"
        case .object: "an object"
        }
    }
}

/// `POST /v1/chat/completions`.
public enum ChatCompletionsDialect: WireDialect {
    public static let api = "chat.completions"
    public static let errors = ErrorShape.openAI

    public static func parse(_ body: some Collection<UInt8>) throws(RequestValidationError) -> ChatRequest {
        try ChatRequest(body: body)
    }

    public typealias Reply = ChatReplyAccumulator
}
