import Foundation

extension RecallEngine {
    /// `row`'s BM25 relevance for `terms`, split by where each term was found (its own text, the near and far
    /// neighbours' text, its date): each term's contribution `idf · tf·(k1+1) / (tf + norm)` is shared among the
    /// columns in proportion to the weighted frequency each gave `tf`. The parts add up to what ``rank(_:limit:)``
    /// computed (up to rounding); the re-scoring multipliers are filled in by ``RecallScoring/rescore``.
    func explanation(of row: Int, terms: [(term: UInt32, idf: Double)]) -> RecallExplanation {
        let documents = index.documents
        let document = documents[row]
        let radius = SessionIndex.radius(mask)
        let neighbours = radius > 0
            ? Array(max(0, row - radius)...min(documents.count - 1, row + radius)).filter { other in
                other != row && document.links(documents[other])
                    && (abs(other - row) == 1 ? weights.near : weights.far) > 0
            }
            : []
        var length = Double(document.contentLength)
        if weights.date > 0 { length += Double(document.dateLength) }
        for other in neighbours { length += Double(documents[other].cappedLength) }
        let (k1, b) = (RecallScoring.k1, RecallScoring.b)
        let norm = k1 * (1 - b + b * length / averageLength)
        var parts = (content: 0.0, near: 0.0, far: 0.0, date: 0.0)
        index.counts.withUnsafeBufferPointer { counts in
            for (term, idf) in terms {
                let own = Double(SessionIndex.frequency(of: term, in: document.content, of: counts))
                let day =
                    weights.date > 0
                    ? weights.date * Double(SessionIndex.frequency(of: term, in: document.date, of: counts)) : 0
                var (near, far) = (0.0, 0.0)
                for other in neighbours {
                    let found = Double(SessionIndex.frequency(of: term, in: documents[other].capped, of: counts))
                    if abs(other - row) == 1 { near += weights.near * found } else { far += weights.far * found }
                }
                let frequency = own + day + near + far
                guard frequency > 0 else { continue }
                let contribution = idf * (frequency * (k1 + 1)) / (frequency + norm)
                parts.content += contribution * own / frequency
                parts.date += contribution * day / frequency
                parts.near += contribution * near / frequency
                parts.far += contribution * far / frequency
            }
        }
        let relevance = parts.content + parts.near + parts.far + parts.date
        return RecallExplanation(
            content: parts.content, near: parts.near, far: parts.far, date: parts.date, relevance: relevance,
            score: relevance)
    }
}
