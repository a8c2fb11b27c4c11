/// The parts of one reply keyed by their index in the response (Responses' `output_index`, Anthropic's content
/// block `index`), sharing one ``ReplyBudget``; at most 128 parts are kept.
struct ReplyParts<Part: Sendable>: Sendable {
    static var maxParts: Int { 128 }

    private var parts: [Int: Part] = [:]
    private var budget = ReplyBudget()
    private let empty: Part

    /// - Parameter empty: A new part's value before its first update.
    init(empty: Part) {
        self.empty = empty
    }

    /// Whether no part has been seen.
    var isEmpty: Bool { parts.isEmpty }

    /// The part at `index`, if seen.
    subscript(index: Int) -> Part? { parts[index] }

    /// The parts in index order.
    var ordered: [Part] { parts.keys.sorted().compactMap { parts[$0] } }

    /// Edits the part at `index` (created when new, unless 128 parts are kept already); text taken through the
    /// budget is charged to the whole reply.
    mutating func update(_ index: Int, _ body: (inout Part, inout ReplyBudget) -> Void) {
        guard parts[index] != nil || parts.count < Self.maxParts else { return }
        var part = parts[index] ?? empty
        body(&part, &budget)
        parts[index] = part
    }
}

/// A server-sent event whose data is one JSON object with a `type` (the Responses and Anthropic streams).
struct TypedEvent: Sendable {
    /// The JSON `type`, else the SSE `event:` name.
    var type: String?
    /// The data as a JSON object; `nil` when it is not one.
    var object: JSONObject?
}

/// Frames a `text/event-stream` body into ``TypedEvent``s.
struct TypedEventStream: Sendable {
    private var parser = SSEParser()

    /// The events completed by the next bytes of the body (split anywhere).
    mutating func feed(_ bytes: some Collection<UInt8>) -> [TypedEvent] {
        parser.feed(bytes).map(Self.typed)
    }

    /// Ends the body: a final event without its closing blank line.
    mutating func finish() -> [TypedEvent] {
        parser.finish().map(Self.typed)
    }

    private static func typed(_ event: SSEEvent) -> TypedEvent {
        guard case .object(let object)? = try? JSON.parse(event.data.utf8) else {
            return TypedEvent(type: event.event, object: nil)
        }
        return TypedEvent(type: object["type"]?.stringValue ?? event.event, object: object)
    }
}
