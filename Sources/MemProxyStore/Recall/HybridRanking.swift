import Foundation

/// Recall by meaning and by words together: the session's lexical candidates (``RecallEngine``) fused with its
/// nearest memories by cosine (``SessionVectors``), when the query has an embedding and the session has vectors.
///
/// 1. Lexical: the best `max(limit, hybridDepth)` non-procedural memories, re-scored as usual (type weight,
///    temporal boost).
/// 2. Dense: the `hybridDepth` non-procedural, complete memories with the highest exact cosine to the query.
/// 3. Fusion over the union (``fuse(lexical:dense:cosines:vectors:settings:)``); the `limit` best, ties broken by the
///    lexical rank, then the dense rank.
/// A memory without a vector yet is ranked on its words alone (its dense part is its lexical part).
enum HybridRanking {
    /// `nil` when the query's vector does not fit the session's (another length): recall is lexical then.
    static func rank(
        _ engine: RecallEngine,
        query: RecallQuery,
        vector: CompactVector,
        limit: Int
    ) -> ([RecalledMemory], [UInt64: Int])? {
        let index = engine.index
        let settings = engine.settings
        guard let cosines = index.vectors.cosines(vector) else { return nil }
        let depth = max(1, settings.hybridDepth)
        var (lexical, frequencies): ([RecallCandidate], [UInt64: Int]) = ([], [:])
        if !query.terms.isEmpty {
            (lexical, frequencies) = engine.rankCandidates(query, limit: max(limit, depth))
        }
        let dense = nearest(cosines, index: index, depth: depth)
        let fused = fuse(lexical: lexical, dense: dense, cosines: cosines, vectors: index.vectors, settings: settings)
        let ranked = fused.prefix(limit).map { candidate in
            var explanation: RecallExplanation? = nil
            if query.explain {
                explanation = candidate.lexical?.explanation ?? RecallExplanation(
                    content: 0, near: 0, far: 0, date: 0, relevance: 0, score: 0)
                explanation?.lexical = candidate.lexical?.score ?? 0
                explanation?.dense = index.vectors.has(candidate.row) ? Double(cosines[candidate.row]) : nil
                explanation?.score = candidate.score
            }
            return RecalledMemory(memory: index.memories[candidate.row], score: candidate.score, explanation: explanation)
        }
        return (ranked, frequencies)
    }

    /// The rows of the `depth` highest cosines among the memories that can be recalled (not procedural, complete)
    /// and have a vector, best first (ties: newer row first).
    static func nearest(_ cosines: [Float], index: SessionIndex, depth: Int) -> [Int] {
        var best: [(row: Int, cosine: Float)] = []
        best.reserveCapacity(depth + 1)
        let documents = index.documents
        for row in cosines.indices where index.vectors.has(row) {
            let cosine = cosines[row]
            if best.count == depth, let last = best.last, cosine <= last.cosine { continue }
            let document = documents[row]
            guard !document.isProcedural, !document.isIncomplete else { continue }
            var low = 0
            var high = best.count
            while low < high {
                let middle = (low + high) / 2
                if best[middle].cosine >= cosine { low = middle + 1 } else { high = middle }
            }
            best.insert((row, cosine), at: low)
            if best.count > depth { best.removeLast() }
        }
        return best.map(\.row)
    }

    struct Fused {
        var row: Int
        var score: Double
        var lexical: RecallCandidate?
        var lexicalRank: Int
        var denseRank: Int
    }

    /// The union of both lists, best first, each memory scored
    /// `weight × cosine + (1 − weight) × lexical part` ("cosine-floored", chosen on LoCoMo dev: BENCHMARKS.md):
    /// - the cosine is the memory's exact cosine to the query, as it is (not rescaled over the candidates, so what
    ///   the vectors found keeps its strength whatever the words found);
    /// - the lexical part is its lexical score over `max(best lexical score, lexicalFloor)` (0 when only the vectors
    ///   found it): a weak best match (only common words) is not stretched to 1;
    /// - a memory without a vector yet is ranked on its words: its cosine is taken as its lexical part times the
    ///   best cosine among the candidates.
    static func fuse(
        lexical: [RecallCandidate],
        dense: [Int],
        cosines: [Float],
        vectors: SessionVectors,
        settings: RecallSettings
    ) -> [Fused] {
        let weight = min(max(settings.hybridWeight, 0), 1)
        let ceiling = max(lexical.map(\.score).max() ?? 0, settings.lexicalFloor)
        var fused: [Fused] = []
        var position: [Int: Int] = [:]
        let large = Int.max / 4
        for (rank, candidate) in lexical.enumerated() where candidate.row >= 0 && position[candidate.row] == nil {
            position[candidate.row] = fused.count
            fused.append(Fused(row: candidate.row, score: 0, lexical: candidate, lexicalRank: rank, denseRank: large))
        }
        for (rank, row) in dense.enumerated() {
            if let at = position[row] {
                fused[at].denseRank = rank
            } else {
                position[row] = fused.count
                fused.append(Fused(row: row, score: 0, lexical: nil, lexicalRank: large, denseRank: rank))
            }
        }
        let bestCosine = fused.filter { vectors.has($0.row) }.map { Double(cosines[$0.row]) }.max() ?? 0
        for at in fused.indices {
            let lexicalPart = ceiling > 0 ? max(0, fused[at].lexical?.score ?? 0) / ceiling : 0
            let cosine = vectors.has(fused[at].row) ? Double(cosines[fused[at].row]) : lexicalPart * bestCosine
            fused[at].score = weight * cosine + (1 - weight) * lexicalPart
        }
        fused.sort { a, b in
            if a.score != b.score { return a.score > b.score }
            if a.lexicalRank != b.lexicalRank { return a.lexicalRank < b.lexicalRank }
            if a.denseRank != b.denseRank { return a.denseRank < b.denseRank }
            return a.row > b.row
        }
        return fused
    }
}
