/// The order in which memories are offered to ``MemoryBlockRenderer``: the rule every injected block follows.
///
/// 1. The session's procedural memories (standing instructions) come first, newest first, whether or not they
///    match the query: they apply to every request. They are still subject to the token budget.
/// 2. Then the recalled memories, in recall's order (best first). Recall already weighs a semantic memory (a
///    fact) above an episodic one (a message); wherever scores are exactly equal, facts go first here, so the
///    rule holds whatever recall's weights are. Otherwise recall's order is kept as it is.
/// 3. A memory in both lists is offered once, as procedural (with its recall score).
public enum InjectionOrder {
    /// The candidates in injection order.
    ///
    /// - Parameters:
    ///   - procedural: The session's procedural memories, newest first.
    ///   - recalled: Recalled memories, best first, with their relevance scores.
    /// - Returns: Procedural memories, then the others, facts first within each run of equal scores.
    public static func candidates(procedural: [InjectableMemory], recalled: [InjectableMemory]) -> [InjectableMemory] {
        // Usual case (no procedural memories, no facts among the recalled ones): the recalled order as it is.
        if procedural.isEmpty, !recalled.contains(where: { $0.type == "semantic" }) { return recalled }
        let recalledScores = Dictionary(recalled.map { ($0.id, $0.score) }, uniquingKeysWith: { first, _ in first })
        let proceduralIDs = Set(procedural.map(\.id))
        var ordered = procedural.map { memory in
            var memory = memory
            memory.score = recalledScores[memory.id] ?? memory.score
            return memory
        }
        let rest = recalled.filter { !proceduralIDs.contains($0.id) }
        var start = rest.startIndex
        while start < rest.endIndex {
            var end = start + 1
            while end < rest.endIndex, rest[end].score == rest[start].score { end += 1 }
            let run = rest[start..<end]
            ordered += run.filter { $0.type == "semantic" } + run.filter { $0.type != "semantic" }
            start = end
        }
        return ordered
    }
}
