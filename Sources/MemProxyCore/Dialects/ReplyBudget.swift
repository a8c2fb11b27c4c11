/// The byte budget of one reply's stored text (1 MiB of UTF-8, shared by every part of the reply), so that a
/// hostile or runaway upstream cannot make a capture grow without bound.
struct ReplyBudget: Sendable {
    static let maxBytes = ChatReplyAccumulator.maxTextBytes

    private var used = 0

    /// As much of `piece` as the remaining budget allows (cut at a Unicode scalar boundary), charged to it.
    mutating func take(_ piece: String) -> String {
        let remaining = Self.maxBytes - used
        let kept = ChatReplyAccumulator.truncated(piece, toUTF8Count: max(remaining, 0))
        used += kept.utf8.count
        if kept.utf8.count < piece.utf8.count { used = Self.maxBytes }
        return kept
    }

    /// `parts` (empty ones dropped) joined with `"\n"`, capped at the budget.
    static func join(_ parts: [String]) -> String {
        ChatReplyAccumulator.truncated(parts.filter { !$0.isEmpty }.joined(separator: "\n"), toUTF8Count: maxBytes)
    }
}
