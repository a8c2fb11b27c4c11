/// Collects the reply of a Responses API call, streamed or not (wire-apis.md A4, A5).
///
/// The text is every `message` output item's `output_text` (and `refusal`) parts, and one
/// `tool_call <name>(<arguments>)` line per `function_call` item, in output order, joined with `"\n"`. Streamed,
/// it comes from `response.output_text.delta` (per `output_index`), `response.function_call_arguments.delta` /
/// `.done` and `response.output_item.added` / `.done`; a stream that carried none of those (a server that only
/// sends the final response) is read from `response.completed`'s `output`. The reply is complete only when the
/// stream ended with `response.completed`, or the body's `status` is `completed`.
public struct ResponsesReplyAccumulator: ReplyAccumulator {
    private struct Item: Sendable {
        var text = ""
        var isCall = false
        var name = ""
        var arguments = ""
    }

    private var events = TypedEventStream()
    private var items = ReplyParts(empty: Item())
    /// The final status: `completed`, `incomplete`, `failed`, … (`nil` until a terminal event or a body).
    public private(set) var status: String?
    /// Whether an `error` event, or an error body, was seen.
    public private(set) var sawError = false
    /// The response's `id` (`resp_…`), from `response.created` or the body.
    public private(set) var responseID: String?

    /// Creates an empty accumulator.
    public init() {}

    public var isComplete: Bool { !sawError && status == "completed" }

    public var text: String {
        ReplyBudget.join(items.ordered.map { $0.isCall ? "tool_call \($0.name)(\($0.arguments))" : $0.text })
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
        let index = object["output_index"]?.intValue ?? 0
        switch event.type {
        case "response.created", "response.in_progress", "response.queued":
            if let id = object["response"]?.objectValue?["id"]?.stringValue { responseID = id }
        case "response.output_text.delta", "response.refusal.delta":
            if let delta = object["delta"]?.stringValue { items.update(index) { $0.text += $1.take(delta) } }
        case "response.output_item.added":
            if let item = object["item"]?.objectValue, item["type"]?.stringValue == "function_call" {
                items.update(index) { call, budget in
                    call.isCall = true
                    if call.name.isEmpty, let name = item["name"]?.stringValue { call.name = budget.take(name) }
                }
            }
        case "response.function_call_arguments.delta":
            if let delta = object["delta"]?.stringValue {
                items.update(index) { call, budget in
                    call.isCall = true
                    call.arguments += budget.take(delta)
                }
            }
        case "response.function_call_arguments.done":
            items.update(index) { call, budget in
                call.isCall = true
                if call.name.isEmpty, let name = object["name"]?.stringValue { call.name = budget.take(name) }
                if call.arguments.isEmpty, let arguments = object["arguments"]?.stringValue {
                    call.arguments = budget.take(arguments)
                }
            }
        case "response.output_item.done":
            if let item = object["item"] { consumeItem(item, index: index, onlyIfMissing: true) }
        case "response.completed", "response.incomplete", "response.failed":
            guard let response = object["response"]?.objectValue else { break }
            status = response["status"]?.stringValue ?? String(object["type"]?.stringValue?.dropFirst(9) ?? "")
            if let id = response["id"]?.stringValue { responseID = id }
            if items.isEmpty { consumeOutput(of: response) }
        case "error":
            sawError = true
        default:
            break
        }
    }

    // MARK: - Complete responses

    public mutating func consumeBody(_ body: some Collection<UInt8>) {
        guard case .object(let response)? = try? JSON.parse(body) else { return }
        if let error = response["error"], error != .null, response["output"] == nil {
            sawError = true
            return
        }
        responseID = response["id"]?.stringValue
        // OpenAI always sends `status`; a compatible server that omits it answered in full.
        status = response["status"]?.stringValue ?? "completed"
        consumeOutput(of: response)
    }

    private mutating func consumeOutput(of response: JSONObject) {
        for (index, item) in (response["output"]?.arrayValue ?? []).enumerated() {
            consumeItem(item, index: index, onlyIfMissing: false)
        }
    }

    /// Reads one output item: a `message`'s text parts, or a `function_call`. With `onlyIfMissing`, an item whose
    /// deltas were already collected is left as they built it.
    private mutating func consumeItem(_ value: JSONValue, index: Int, onlyIfMissing: Bool) {
        guard let item = value.objectValue else { return }
        if onlyIfMissing, let existing = items[index], !existing.text.isEmpty || !existing.arguments.isEmpty {
            return
        }
        switch item["type"]?.stringValue {
        case "message":
            let texts = (item["content"]?.arrayValue ?? []).compactMap { part -> String? in
                guard let part = part.objectValue else { return nil }
                switch part["type"]?.stringValue {
                case "output_text": return part["text"]?.stringValue
                case "refusal": return part["refusal"]?.stringValue
                default: return nil
                }
            }
            guard !texts.isEmpty else { return }
            items.update(index) { $0.text = $1.take(texts.joined()) }
        case "function_call":
            items.update(index) { call, budget in
                call.isCall = true
                call.name = budget.take(item["name"]?.stringValue ?? "")
                call.arguments = budget.take(item["arguments"]?.stringValue ?? "")
            }
        default:
            break
        }
    }
}
