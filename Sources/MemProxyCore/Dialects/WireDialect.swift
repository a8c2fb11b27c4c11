/// What memory needs of one API that carries a conversation ("a wire dialect"): chat completions, the Responses
/// API, Anthropic Messages. The memory flow (scope → recall → inject → forward → relay and capture → store) is
/// written once in the app; everything that differs per API is behind these three protocols:
///
/// - ``MemoryRequest``: read the newest user turn and whether the request *is* a new user turn; inject a block.
/// - ``ReplyAccumulator``: collect the reply from a JSON body or from the API's server-sent events.
/// - ``WireDialect``: parse a request body, name the API, shape an error.
///
/// Implementations: ``ChatCompletionsDialect``, ``ResponsesDialect``, ``AnthropicMessagesDialect``.
public protocol WireDialect: Sendable {
    /// The parsed request body.
    associatedtype Request: MemoryRequest
    /// Collects the upstream's reply.
    associatedtype Reply: ReplyAccumulator

    /// The API's name in injection records and logs: `chat.completions`, `responses` or `messages`.
    static var api: String { get }

    /// How memproxy's own errors look on this API's route.
    static var errors: ErrorShape { get }

    /// Whether a later request can continue this API's responses by id (Responses' `previous_response_id`):
    /// then the injection record waits for the response's id, so that the continuation gets the same block.
    static var continuesResponses: Bool { get }

    /// Parses and minimally validates a request body (only what memory needs; the upstream judges the rest).
    /// - Parameter body: The raw request body (UTF-8 JSON).
    /// - Throws: ``RequestValidationError`` for a body memory cannot work with.
    static func parse(_ body: some Collection<UInt8>) throws(RequestValidationError) -> Request
}

extension WireDialect {
    /// Most APIs' responses cannot be continued by id.
    public static var continuesResponses: Bool { false }
}

/// Where the memory block goes in a request. An extensible option type.
public struct MemoryPlacement: Sendable, Hashable, CustomStringConvertible {
    private enum Base: String, Sendable, Hashable { case system, lastUser = "last_user" }
    private let base: Base
    private init(_ base: Base) { self.base = base }

    /// With the system prompt (chat: the first system/developer message; Responses: `instructions`; Anthropic:
    /// `system`). The block has the system prompt's authority, but it changes the prompt's first tokens on every
    /// turn, so a prefix cache misses the whole conversation.
    public static let system = MemoryPlacement(.system)
    /// Appended to the newest user message: every earlier byte of the request stays as the client sent it, so a
    /// prefix cache keeps hitting; the block reads as part of the user's turn.
    public static let lastUser = MemoryPlacement(.lastUser)

    /// Parses the configuration value `system` or `last_user`.
    /// - Parameter text: The value.
    public init?(_ text: String) {
        guard let base = Base(rawValue: text) else { return nil }
        self.base = base
    }

    /// The configuration value.
    public var description: String { base.rawValue }
}

/// A request of one API, kept as generic JSON, as the memory flow sees it.
public protocol MemoryRequest: Sendable {
    /// The requested model, if any.
    var model: String? { get }

    /// The text recall searches with: the newest user message's text, also when a tool loop follows it (a
    /// continuation turn then recalls what the turn that started the loop recalled). `nil` when there is none.
    var newestUserText: String? { get }

    /// Whether the request carries a new user turn (whose text is then stored), as opposed to a continuation:
    /// a tool loop's next round trip, which resends the same newest user message with tool results after it.
    var isNewUserTurn: Bool { get }

    /// Whether the request is a tool loop's next round trip: tool results (or, on an API that keeps
    /// conversations, no new user message at all) follow the user turn that started the loop. Its reply is stored;
    /// the user message, stored with the loop's first round, is not stored again. A request that is neither a new
    /// user turn nor a continuation (no user message at all) stores nothing.
    var isContinuation: Bool { get }

    /// For a continuation of a response kept by the upstream (Responses' `previous_response_id`): that
    /// response's id; it should get the same memories as the request that produced it. `nil` otherwise.
    var continuedResponseID: String? { get }

    /// The text the request already holds (memories already in it are not injected again).
    var messageTexts: [String] { get }

    /// Adds the memory block where `placement` asks, unless the API's own rules (caching, server-side state)
    /// require another place. Earlier conversation items are never edited.
    /// - Parameters:
    ///   - block: The block; an empty one leaves the request untouched.
    ///   - placement: The configured placement.
    mutating func inject(_ block: String, placement: MemoryPlacement)

    /// The request body as compact JSON, every field the client sent in its original order.
    func serialized() -> [UInt8]
}

extension MemoryRequest {
    /// Most requests continue no upstream-kept response.
    public var continuedResponseID: String? { nil }
}

/// Collects the assistant's reply from a response, streamed or not, so it can be stored as memory. Malformed
/// input never fails: what cannot be read is skipped. The text is capped at 1 MiB of UTF-8.
public protocol ReplyAccumulator: Sendable {
    /// An empty accumulator.
    init()

    /// Consumes the next bytes of a `text/event-stream` body (split anywhere).
    mutating func consumeStream(_ bytes: some Collection<UInt8>)

    /// Ends a stream (a final event without its closing blank line is processed).
    mutating func finishStream()

    /// Consumes a complete (non-streamed) JSON response body.
    mutating func consumeBody(_ body: some Collection<UInt8>)

    /// The reply: its text, then one `tool_call <name>(<arguments>)` line per tool call.
    var text: String { get }

    /// Whether the reply is whole: a stream that ended with the API's success event, or a body whose status says
    /// completed, and no error reported. An incomplete reply is stored marked so, and never injected.
    var isComplete: Bool { get }

    /// The upstream's id of this response when the API lets a later request continue it (Responses); else `nil`.
    var responseID: String? { get }
}

extension ReplyAccumulator {
    /// Most APIs' responses cannot be continued by id.
    public var responseID: String? { nil }
}

/// An error memproxy answers by itself, independent of the route's wire shape.
public struct WireError: Sendable, Equatable {
    /// The HTTP status.
    public var status: Int
    /// What happened and what to do about it.
    public var message: String
    /// OpenAI's error type, such as `invalid_request_error` or `server_error`.
    public var type: String
    /// The offending field or header, if any.
    public var param: String?
    /// A machine-readable code, such as `invalid_json` or `upstream_disconnected`.
    public var code: String

    /// Creates an error.
    /// - Parameters:
    ///   - status: The HTTP status.
    ///   - message: What happened and what to do about it.
    ///   - type: OpenAI's error type.
    ///   - param: The offending field or header.
    ///   - code: A machine-readable code.
    public init(status: Int, message: String, type: String, param: String? = nil, code: String) {
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
    }
}

/// How a route renders memproxy's own errors, as a response body and as a server-sent event that ends a stream.
/// An extensible option type.
public struct ErrorShape: Sendable, Hashable {
    private enum Base: Sendable, Hashable { case openAI, openAIResponses, anthropic }
    private let base: Base
    private init(_ base: Base) { self.base = base }

    /// OpenAI's `{"error":{"message","type","param","code"}}`; in a stream, `data: <that>`.
    public static let openAI = ErrorShape(.openAI)
    /// OpenAI's body; in a Responses stream, an `error` event (`{"type":"error","code","message","param"}`).
    public static let openAIResponses = ErrorShape(.openAIResponses)
    /// Anthropic's `{"type":"error","error":{"type","message"}}`; in a stream, an `error` event with that body.
    public static let anthropic = ErrorShape(.anthropic)

    /// The JSON body of `error`.
    public func body(_ error: WireError) -> String {
        switch base {
        case .openAI, .openAIResponses: Self.openAIBody(error)
        case .anthropic: Self.anthropicBody(error)
        }
    }

    /// The server-sent event (with its closing blank line) that tells a streaming client the stream failed.
    public func streamEvent(_ error: WireError) -> String {
        switch base {
        case .openAI:
            "data: \(Self.openAIBody(error))\n\n"
        case .openAIResponses:
            "event: error\ndata: {\"type\":\"error\",\"code\":\(Self.quoted(error.code)),\"message\":"
                + "\(Self.quoted(error.message)),\"param\":\(error.param.map(Self.quoted) ?? "null")}\n\n"
        case .anthropic:
            "event: error\ndata: \(Self.anthropicBody(error))\n\n"
        }
    }

    /// Anthropic's error type for an HTTP status (platform.claude.com/docs/en/api/errors).
    public static func anthropicType(status: Int) -> String {
        switch status {
        case 401: "authentication_error"
        case 402: "billing_error"
        case 403: "permission_error"
        case 404: "not_found_error"
        case 413: "request_too_large"
        case 429: "rate_limit_error"
        case 504: "timeout_error"
        case 529: "overloaded_error"
        case 400..<500: "invalid_request_error"
        default: "api_error"
        }
    }

    private static func openAIBody(_ error: WireError) -> String {
        "{\"error\":{\"message\":\(quoted(error.message)),\"type\":\(quoted(error.type)),"
            + "\"param\":\(error.param.map(quoted) ?? "null"),\"code\":\(quoted(error.code))}}"
    }

    private static func anthropicBody(_ error: WireError) -> String {
        "{\"type\":\"error\",\"error\":{\"type\":\(quoted(anthropicType(status: error.status))),"
            + "\"message\":\(quoted(error.message))}}"
    }

    private static func quoted(_ text: String) -> String {
        var out: [UInt8] = []
        JSONValue.writeString(text, into: &out)
        return String(decoding: out, as: UTF8.self)
    }
}
