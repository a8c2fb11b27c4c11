import Foundation
import MemProxyCore

/// Ranks one session's non-procedural memories for one query over its in-memory ``SessionIndex``.
///
/// The rules are those the SQL ranker of schemas v2–v5 (over the neighbourhood FTS5 index) applied, with exact
/// counts where it estimated:
/// 1. Each query term's document frequency in the session: rows holding it in a column in use (weight above 0).
/// 2. Pruning: terms taken rarest first while their summed frequency fits `candidateBudget` (at least one term),
///    skipping common ones (`commonTermFraction`), at most `maxQueryTerms`.
/// 3. Bound: when more rows match than the budget, only the newest `candidateBudget` are ranked.
/// 4. BM25 (k1 = 1.2, b = 0.75) with column weights over own text, neighbours and date, each term's idf from
///    the session's own statistics (``RecallScoring/idf(documentFrequency:rows:)``), lengths over the ranked
///    columns against the session's average.
/// 5. Re-score: semantic weight, temporal boost, optional pseudo-relevance feedback; ties: newer first.
struct RecallEngine {
    let index: SessionIndex
    let settings: RecallSettings
    let tokenizer: TextTokenizer
    let weights: (content: Double, near: Double, far: Double, date: Double)
    let mask: UInt64
    private let budget: Int
    private let commonDF: Int

    init(index: SessionIndex, settings: RecallSettings, tokenizer: TextTokenizer) {
        self.index = index
        self.settings = settings
        self.tokenizer = tokenizer
        weights = (1, settings.nearWeight, settings.farWeight, settings.dateWeight)
        mask = SessionIndex.columnMask(near: weights.near > 0, far: weights.far > 0, date: weights.date > 0)
        budget = max(1, settings.candidateBudget)
        let slots =
            (settings.nearWeight > 0 ? 2 : 0)
            + (settings.farWeight > 0 ? 2 * (NeighbourIndex.farRadius - 1) : 0)
        commonDF = (1 + slots) * max(settings.minCommonDF, Int(Double(index.count) * settings.commonTermFraction))
    }

    /// The `limit` best non-procedural memories for `query`, best first, and the document frequencies computed
    /// (for the index's cache).
    func rank(_ query: RecallQuery, limit: Int) -> (memories: [RecalledMemory], frequencies: [UInt64: Int]) {
        let (candidates, frequencies) = rankCandidates(query, limit: limit)
        let memories = candidates.map {
            RecalledMemory(memory: $0.memory, score: $0.score, explanation: $0.explanation)
        }
        return (memories, frequencies)
    }

    /// ``rank(_:limit:)``, keeping each candidate's row.
    func rankCandidates(_ query: RecallQuery, limit: Int) -> (candidates: [RecallCandidate], frequencies: [UInt64: Int]) {
        var computed: [UInt64: Int] = [:]
        guard limit > 0, index.count > 0 else { return ([], computed) }
        let depth = limit + max(0, settings.rerankDepth)
        var frequencies: [(term: UInt32, df: Int)] = []
        // Two words with one stem ("runs", "running") stay two terms, as they were two phrases in FTS5.
        for word in query.terms.prefix(settings.maxProbedTerms) {
            for token in tokenizer.queryTokens(of: word) {
                guard let term = index.termID(token) else { continue }
                let df = frequency(term, computed: &computed)
                if df > 0 { frequencies.append((term, df)) }
            }
        }
        guard !frequencies.isEmpty else { return ([], computed) }
        frequencies.sort { $0.df != $1.df ? $0.df < $1.df : $0.term < $1.term }
        var kept: [(term: UInt32, idf: Double)] = []
        var estimatedRows = 0
        for (term, df) in frequencies {
            if !kept.isEmpty && (estimatedRows + df > budget || df > commonDF) { break }
            kept.append((term, idf(df)))
            estimatedRows += df
            if kept.count >= settings.maxQueryTerms { break }
        }
        var candidates = rankRows(kept, depth: depth)
        if settings.feedbackDocuments > 0, settings.feedbackTerms > 0, settings.feedbackWeight > 0 {
            candidates = addFeedback(
                to: candidates, queryTerms: Set(kept.map(\.term)), depth: depth, computed: &computed)
        }
        if query.explain {
            for position in candidates.indices where candidates[position].row >= 0 {
                candidates[position].explanation = explanation(of: candidates[position].row, terms: kept)
            }
        }
        return (RecallScoring.rescoredCandidates(candidates, query: query, limit: limit, settings: settings), computed)
    }

    // MARK: - Rows

    private func idf(_ df: Int) -> Double {
        RecallScoring.idf(documentFrequency: Double(df), rows: Double(max(index.count, 1)))
    }

    /// Rows holding `term` in a column in use, as a bitmap over the documents.
    private func rows(_ term: UInt32, into bits: inout [UInt64]) {
        let count = index.count
        let radius = SessionIndex.radius(mask)
        let (near, far, date) = (weights.near > 0, weights.far > 0, weights.date > 0)
        index.counts.withUnsafeBufferPointer { counts in
            index.documents.withUnsafeBufferPointer { documents in
                bits.withUnsafeMutableBufferPointer { bits in
                    for position in index.postings(of: term) {
                        let row = Int(position)
                        if SessionIndex.frequency(of: term, in: documents[row].content, of: counts) > 0
                            || (date && SessionIndex.frequency(of: term, in: documents[row].date, of: counts) > 0)
                        {
                            bits[row >> 6] |= 1 << UInt64(row & 63)
                        }
                        guard radius > 0, SessionIndex.frequency(of: term, in: documents[row].capped, of: counts) > 0
                        else { continue }
                        for other in max(0, row - radius)...min(count - 1, row + radius)
                        where other != row && documents[row].links(documents[other]) {
                            let distance = abs(other - row)
                            if distance == 1 ? near : far { bits[other >> 6] |= 1 << UInt64(other & 63) }
                        }
                    }
                }
            }
        }
    }

    private func frequency(_ term: UInt32, computed: inout [UInt64: Int]) -> Int {
        let key = UInt64(term) << 8 | mask
        if let known = index.cachedFrequency(key) ?? computed[key] { return known }
        var bits = [UInt64](repeating: 0, count: (index.count + 63) / 64)
        rows(term, into: &bits)
        let df = bits.reduce(0) { $0 + $1.nonzeroBitCount }
        computed[key] = df
        return df
    }

    /// The query terms' occurrences, term after term: for each row of a term's postings (ascending), its count in
    /// the row's own text, in its date and in its capped text (what its neighbours' rows hold of it).
    private struct Occurrences {
        var rows: [Int32] = []
        var content: [Int32] = []
        var date: [Int32] = []
        var capped: [Int32] = []
        /// Where each term's occurrences start (one more entry for the end).
        var starts: [Int] = [0]
    }

    /// Scores the rows matching any of `terms` (the newest `candidateBudget` of them) and returns the `depth`
    /// best non-procedural ones.
    ///
    /// Each term's counts are read once per row of its postings; a row's term frequency is then summed from its
    /// own and its neighbours' counts in the order the SQL ranker summed them (own text, date, neighbours in
    /// timeline order), so that scores are the same to the last bit.
    private func rankRows(_ terms: [(term: UInt32, idf: Double)], depth: Int) -> [RecallCandidate] {
        guard !terms.isEmpty else { return [] }
        let documents = index.documents
        let count = documents.count
        let radius = SessionIndex.radius(mask)
        let (near, far, date) = (weights.near > 0, weights.far > 0, weights.date > 0)
        var bits = [UInt64](repeating: 0, count: (count + 63) / 64)
        var found = Occurrences()
        let total = terms.reduce(0) { $0 + index.postings(of: $1.term).count }
        found.rows.reserveCapacity(total)
        found.content.reserveCapacity(total)
        found.date.reserveCapacity(total)
        found.capped.reserveCapacity(total)
        index.counts.withUnsafeBufferPointer { counts in
            documents.withUnsafeBufferPointer { documents in
                bits.withUnsafeMutableBufferPointer { bits in
                    for (term, _) in terms {
                        for position in index.postings(of: term) {
                            let row = Int(position)
                            let own = SessionIndex.frequency(of: term, in: documents[row].content, of: counts)
                            let day = date ? SessionIndex.frequency(of: term, in: documents[row].date, of: counts) : 0
                            let capped =
                                radius > 0 ? SessionIndex.frequency(of: term, in: documents[row].capped, of: counts) : 0
                            found.rows.append(position)
                            found.content.append(Int32(own))
                            found.date.append(Int32(day))
                            found.capped.append(Int32(capped))
                            if own > 0 || day > 0 { bits[row >> 6] |= 1 << UInt64(row & 63) }
                            guard capped > 0 else { continue }
                            for other in max(0, row - radius)...min(count - 1, row + radius)
                            where other != row && documents[row].links(documents[other]) {
                                let distance = abs(other - row)
                                if distance == 1 ? near : far { bits[other >> 6] |= 1 << UInt64(other & 63) }
                            }
                        }
                        found.starts.append(found.rows.count)
                    }
                }
            }
        }
        var rows: [Int] = []
        for (word, value) in bits.enumerated() where value != 0 {
            var remaining = value
            while remaining != 0 {
                rows.append(word << 6 | remaining.trailingZeroBitCount)
                remaining &= remaining - 1
            }
        }
        if rows.count > budget {
            // The newest `budget` by `seq`. Rows come in timeline order, which is `seq` order unless memories were
            // added with earlier dates: then the suffix is the answer, without sorting a large session's matches.
            if index.isInSeqOrder {
                rows.removeFirst(rows.count - budget)
            } else {
                rows.sort { documents[$0].seq > documents[$1].seq }
                rows.removeLast(rows.count - budget)
                rows.sort()
            }
        }
        let averageLength = self.averageLength
        let (k1, b) = (RecallScoring.k1, RecallScoring.b)
        // Where each term's walk over its postings is: rows are scored in ascending order.
        var cursors = Array(found.starts.dropLast())
        let idfs = terms.map(\.idf)
        var scored: [(row: Int, score: Double)] = []
        scored.reserveCapacity(rows.count)
        documents.withUnsafeBufferPointer { documents in
            found.rows.withUnsafeBufferPointer { positions in
                found.content.withUnsafeBufferPointer { contents in
                    found.date.withUnsafeBufferPointer { dates in
                        found.capped.withUnsafeBufferPointer { cappeds in
                            for row in rows where !documents[row].isProcedural && !documents[row].isIncomplete {
                                let (lower, upper) = (max(0, row - radius), min(count - 1, row + radius))
                                var length = Double(documents[row].contentLength)
                                if weights.date > 0 { length += Double(documents[row].dateLength) }
                                if radius > 0 {
                                    for other in lower...upper
                                    where other != row && neighbourWeight(row, other) > 0
                                        && documents[row].links(documents[other])
                                    {
                                        length += Double(documents[other].cappedLength)
                                    }
                                }
                                let norm = k1 * (1 - b + b * length / averageLength)
                                var score = 0.0
                                for term in idfs.indices {
                                    let end = found.starts[term + 1]
                                    var first = cursors[term]
                                    while first < end, Int(positions[first]) < lower { first += 1 }
                                    cursors[term] = first
                                    var last = first
                                    var own: Int32 = 0
                                    var day: Int32 = 0
                                    while last < end, Int(positions[last]) <= upper {
                                        if Int(positions[last]) == row { (own, day) = (contents[last], dates[last]) }
                                        last += 1
                                    }
                                    guard last > first else { continue }
                                    var frequency = Double(own)
                                    if weights.date > 0 { frequency += weights.date * Double(day) }
                                    if radius > 0 {
                                        for at in first..<last where Int(positions[at]) != row && cappeds[at] > 0 {
                                            let other = Int(positions[at])
                                            let weight = neighbourWeight(row, other)
                                            guard weight > 0, documents[row].links(documents[other]) else { continue }
                                            frequency += weight * Double(cappeds[at])
                                        }
                                    }
                                    if frequency > 0 {
                                        score += idfs[term] * (frequency * (k1 + 1)) / (frequency + norm)
                                    }
                                }
                                scored.append((row, score))
                            }
                        }
                    }
                }
            }
        }
        // The `depth` best, best first (ties: higher `seq` first), kept sorted as rows are offered.
        var best: [(row: Int, score: Double, seq: Int64)] = []
        best.reserveCapacity(min(depth, scored.count) + 1)
        documents.withUnsafeBufferPointer { documents in
            for (row, score) in scored where depth > 0 {
                let seq = documents[row].seq
                func before(_ other: (row: Int, score: Double, seq: Int64)) -> Bool {
                    score != other.score ? score > other.score : seq > other.seq
                }
                if best.count == depth, let last = best.last, !before(last) { continue }
                var low = 0
                var high = best.count
                while low < high {
                    let middle = (low + high) / 2
                    if before(best[middle]) { high = middle } else { low = middle + 1 }
                }
                best.insert((row, score, seq), at: low)
                if best.count > depth { best.removeLast() }
            }
        }
        return best.map { entry in
            RecallCandidate(
                memory: index.memories[entry.row], seq: entry.seq, relevance: entry.score, score: entry.score,
                row: entry.row)
        }
    }

    /// The average length of a row over the ranked columns (BM25's `avgdl`), from the session's column totals.
    var averageLength: Double {
        let rowCount = Double(max(index.count, 1))
        var tokens = Double(index.contentTotal)
        if weights.near > 0 { tokens += Double(index.nearTotal) }
        if weights.far > 0 { tokens += Double(index.farTotal) }
        if weights.date > 0 { tokens += Double(index.dateTotal) }
        return tokens > 0 ? tokens / rowCount : 1
    }

    /// The weight of `other`'s text in `row`'s neighbour columns.
    @inline(__always)
    private func neighbourWeight(_ row: Int, _ other: Int) -> Double {
        abs(other - row) == 1 ? weights.near : weights.far
    }

    // MARK: - Pseudo-relevance feedback

    /// Expands the query with the most characteristic words of the best `feedbackDocuments` candidates and adds
    /// `feedbackWeight` × the expansion query's relevance to every candidate's (as the SQL ranker did).
    private func addFeedback(
        to candidates: [RecallCandidate],
        queryTerms: Set<UInt32>,
        depth: Int,
        computed: inout [UInt64: Int]
    ) -> [RecallCandidate] {
        let best = candidates.sorted { $0.relevance > $1.relevance }.prefix(settings.feedbackDocuments)
        guard !best.isEmpty else { return candidates }
        var documentCount: [UInt32: Int] = [:]
        var order: [UInt32] = []
        for candidate in best {
            var inThis = Set<UInt32>()
            for word in FTSQueryBuilder.terms(from: candidate.memory.content) where word.count >= 3 {
                for token in tokenizer.queryTokens(of: word) {
                    guard let term = index.termID(token), !queryTerms.contains(term), inThis.insert(term).inserted
                    else { continue }
                    if documentCount[term] == nil { order.append(term) }
                    documentCount[term, default: 0] += 1
                }
            }
        }
        let probed = order.enumerated()
            .sorted { a, b in
                let (ca, cb) = (documentCount[a.element] ?? 0, documentCount[b.element] ?? 0)
                return ca != cb ? ca > cb : a.offset < b.offset
            }
            .prefix(settings.feedbackTerms * 2)
            .map(\.element)
        var weighted: [(term: UInt32, weight: Double, df: Int, rank: Int)] = []
        for (rank, term) in probed.enumerated() {
            let df = frequency(term, computed: &computed)
            guard df > 0, df <= commonDF else { continue }
            weighted.append((term, Double(documentCount[term] ?? 0) * idf(df), df, rank))
        }
        weighted.sort { $0.weight != $1.weight ? $0.weight > $1.weight : $0.rank < $1.rank }
        var expansion: [(term: UInt32, idf: Double)] = []
        var estimatedRows = 0
        for entry in weighted {
            if !expansion.isEmpty && estimatedRows + entry.df > budget { break }
            expansion.append((entry.term, idf(entry.df)))
            estimatedRows += entry.df
            if expansion.count >= settings.feedbackTerms { break }
        }
        let expanded = rankRows(expansion, depth: depth)
        guard !expanded.isEmpty else { return candidates }
        var merged = candidates
        var position: [Int64: Int] = [:]
        for (offset, candidate) in merged.enumerated() { position[candidate.seq] = offset }
        for candidate in expanded {
            let added = settings.feedbackWeight * candidate.relevance
            if let offset = position[candidate.seq] {
                merged[offset].relevance += added
            } else {
                var extra = candidate
                extra.relevance = added
                position[extra.seq] = merged.count
                merged.append(extra)
            }
        }
        return merged
    }
}
