/// Collects the assistant's reply from a chat completion, streamed or not, so it can be stored as memory.
///
/// Only choice `index == 0` is read (with `n > 1`, the other choices are ignored). Malformed input never
/// fails: lines that are not JSON, or JSON of an unexpected shape, are skipped. The collected text is capped
/// at 1 MiB of UTF-8, and at most 128 distinct tool calls are tracked.
public struct ChatReplyAccumulator: ReplyAccumulator {
    static let maxTextBytes = 1 << 20
    static let maxToolCalls = 128

    private struct ToolCall: Sendable {
        var id: String?
        var name = ""
        var arguments = ""
    }

    private var parser = SSEParser()
    private var content = ""
    private var refusal = ""
    private var toolCalls: [Int: ToolCall] = [:]
    private var usedBytes = 0

    /// Whether the stream carried `data: [DONE]`.
    public private(set) var sawDone = false
    /// Whether an error was reported: a `data:` (or completion body) object with a non-null `error` member, or
    /// an SSE event of type `error`.
    public private(set) var sawError = false
    /// The last `finish_reason` seen for choice 0 (for example `stop`, `length`, `tool_calls`).
    public private(set) var finishReason: String?

    /// Whether the reply came as a stream (`consumeStream` was called).
    private var streamed = false

    /// Creates an empty accumulator.
    public init() {}

    /// No error, and a stream ended with `[DONE]` or a `finish_reason` (a body is whole once parsed).
    public var isComplete: Bool {
        !sawError && (!streamed || sawDone || finishReason != nil)
    }

    /// The reply: the content (then the refusal, if any), followed by one line per tool call in index order,
    /// formatted `tool_call <name>(<arguments>)` with the arguments as the raw concatenated string. Parts are
    /// joined with `"\n"`; the result is at most 1 MiB of UTF-8.
    public var text: String {
        var parts: [String] = []
        if !content.isEmpty { parts.append(content) }
        if !refusal.isEmpty { parts.append(refusal) }
        for index in toolCalls.keys.sorted() {
            if let call = toolCalls[index] {
                parts.append("tool_call \(call.name)(\(call.arguments))")
            }
        }
        return Self.truncated(parts.joined(separator: "\n"), toUTF8Count: Self.maxTextBytes)
    }

    // MARK: - Streams

    /// Consumes the next bytes of a `text/event-stream` response body (split anywhere).
    /// - Parameter bytes: Raw body bytes as they arrive.
    public mutating func consumeStream(_ bytes: some Collection<UInt8>) {
        streamed = true
        for event in parser.feed(bytes) {
            consume(event)
        }
    }

    /// Ends the stream, processing a final event that lacked its closing blank line.
    public mutating func finishStream() {
        for event in parser.finish() {
            consume(event)
        }
    }

    private mutating func consume(_ event: SSEEvent) {
        if event.event == "error" { sawError = true }
        if event.data == "[DONE]" {
            sawDone = true
            return
        }
        guard case .object(let chunk)? = try? JSON.parse(event.data.utf8) else { return }
        if let error = chunk["error"], error != .null {
            sawError = true
            return
        }
        // Some OpenAI-compatible servers omit `object`; accept those, reject other object types.
        if let object = chunk["object"], object != .string("chat.completion.chunk") { return }
        for case .object(let choice) in chunk["choices"]?.arrayValue ?? [] where (choice["index"]?.intValue ?? 0) == 0 {
            if let reason = choice["finish_reason"]?.stringValue { finishReason = reason }
            guard let delta = choice["delta"]?.objectValue else { continue }
            if let piece = delta["content"]?.stringValue { append(piece, to: \.content) }
            if let piece = delta["refusal"]?.stringValue { append(piece, to: \.refusal) }
            for (position, call) in (delta["tool_calls"]?.arrayValue ?? []).enumerated() {
                guard let call = call.objectValue else { continue }
                mergeToolCall(call, index: call["index"]?.intValue ?? position)
            }
        }
    }

    // MARK: - Complete responses

    /// ``consumeCompletion(_:)``.
    public mutating func consumeBody(_ body: some Collection<UInt8>) {
        consumeCompletion(body)
    }

    /// Consumes a complete (non-streamed) `chat.completion` response body.
    /// - Parameter body: The raw response body.
    public mutating func consumeCompletion(_ body: some Collection<UInt8>) {
        guard case .object(let completion)? = try? JSON.parse(body) else { return }
        if let error = completion["error"], error != .null {
            sawError = true
            return
        }
        let choices = (completion["choices"]?.arrayValue ?? []).compactMap(\.objectValue)
        guard let choice = choices.first(where: { $0["index"]?.intValue == 0 }) ?? choices.first else { return }
        if let reason = choice["finish_reason"]?.stringValue { finishReason = reason }
        guard let message = choice["message"]?.objectValue else { return }
        if let text = ChatRequest.text(of: message) { append(text, to: \.content) }
        if let text = message["refusal"]?.stringValue { append(text, to: \.refusal) }
        for (position, call) in (message["tool_calls"]?.arrayValue ?? []).enumerated() {
            guard let call = call.objectValue else { continue }
            mergeToolCall(call, index: call["index"]?.intValue ?? position)
        }
    }

    // MARK: - Helpers

    /// Merges one tool-call object (a full call or a streamed fragment): the first `id` and the first non-empty
    /// `function.name` win, and `function.arguments` fragments are concatenated.
    private mutating func mergeToolCall(_ fragment: JSONObject, index: Int) {
        guard toolCalls[index] != nil || toolCalls.count < Self.maxToolCalls else { return }
        var call = toolCalls[index] ?? ToolCall()
        if call.id == nil, let id = fragment["id"]?.stringValue {
            call.id = take(id)
        }
        let function = fragment["function"]?.objectValue
        if call.name.isEmpty, let name = function?["name"]?.stringValue {
            call.name = take(name)
        }
        if let arguments = function?["arguments"]?.stringValue {
            call.arguments += take(arguments)
        }
        toolCalls[index] = call
    }

    private mutating func append(_ piece: String, to keyPath: WritableKeyPath<ChatReplyAccumulator, String>) {
        let kept = take(piece)
        if !kept.isEmpty { self[keyPath: keyPath] += kept }
    }

    /// Returns as much of `piece` as the remaining byte budget allows, and charges it to the budget.
    private mutating func take(_ piece: String) -> String {
        let remaining = Self.maxTextBytes - usedBytes
        let kept = Self.truncated(piece, toUTF8Count: max(remaining, 0))
        usedBytes += kept.utf8.count
        if kept.utf8.count < piece.utf8.count { usedBytes = Self.maxTextBytes }
        return kept
    }

    /// `text` cut to at most `limit` UTF-8 bytes, at a Unicode scalar boundary.
    static func truncated(_ text: String, toUTF8Count limit: Int) -> String {
        guard text.utf8.count > limit else { return text }
        var kept = String.UnicodeScalarView()
        var used = 0
        for scalar in text.unicodeScalars {
            let width = UTF8.width(scalar)
            guard used + width <= limit else { break }
            used += width
            kept.append(scalar)
        }
        return String(kept)
    }
}
