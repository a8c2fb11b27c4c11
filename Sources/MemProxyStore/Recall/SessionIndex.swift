import Foundation
import MemProxyCore

/// One session's memories in timeline order (`created_at`, ties by `seq`), with the term counts recall ranks
/// them by, in memory.
///
/// It holds what the neighbourhood index (`NeighbourIndex`, schema v2) holds, computed instead of stored: a
/// memory's row is its own text (`content`), the first ``NeighbourIndex/maxNeighbourCharacters`` characters of the
/// memories just before and after it (`near`), of the second and third before and after (`far`), and its date
/// in words (`date`). Terms are FTS5's own `porter unicode61` tokens (``TextTokenizer``), so a row matches a term
/// exactly when the FTS5 row would. ``RecallEngine`` ranks these rows; the in-memory form lets a recall read
/// only its session, whatever else the database holds.
struct SessionIndex {
    /// Where one memory's term counts are in ``counts``, and what ranking needs of it (plain values only, so that
    /// reading one in a hot loop costs no reference counting; the memory itself is in ``memories``).
    struct Document {
        var seq: Int64
        var createdAt: Double
        var isProcedural: Bool
        /// Only episodic memories (the turns of a conversation) take their timeline neighbours' text as context; a
        /// semantic or procedural memory (a standalone fact or instruction) is ranked on its own text, and lends
        /// none of it to its neighbours.
        var isEpisodic: Bool
        /// A reply that did not complete: kept, never recalled.
        var isIncomplete: Bool
        var content: Range<Int32>
        /// The first `maxNeighbourCharacters` characters' counts (the same range when the text is that short).
        var capped: Range<Int32>
        /// Shared by every memory of the same day.
        var date: Range<Int32>
        var contentLength: Int32
        var cappedLength: Int32
        var dateLength: Int32

        /// Whether `other`'s text counts in this memory's neighbour columns when it is within reach (and so, both
        /// being episodic, this one's in `other`'s).
        @inline(__always)
        func links(_ other: Document) -> Bool { isEpisodic && other.isEpisodic }
    }

    /// The session's key (`sessions.key`), change counter (`sessions.revision`) and `next_seq` this index
    /// reflects.
    var key: Int64
    var revision: Int64
    var nextSeq: Int64

    private(set) var documents: [Document] = []
    /// The memories, at the same positions as their ``documents``.
    private(set) var memories: [Memory] = []
    /// Every document's term counts, packed `term << 32 | count`, each document's runs sorted by term; one array
    /// so that ranking reads them without reference counting.
    private(set) var counts: [UInt64] = []
    /// Where each day's date counts are in ``counts`` (days since 1970).
    private var dateRanges: [Int64: (range: Range<Int32>, length: Int32)] = [:]
    /// Rows of the procedural memories, in timeline order.
    private(set) var proceduralRows: [Int32] = []
    private var termIDs: [String: UInt32] = [:]
    /// Per term: the documents whose own text, capped text or date holds it, ascending.
    private var postings: [[Int32]] = []
    /// Column totals over all rows (what FTS5's `xColumnTotalSize` returns for a table of this session only).
    private(set) var contentTotal = 0
    private(set) var nearTotal = 0
    private(set) var farTotal = 0
    private(set) var dateTotal = 0
    /// The memories' embedding vectors, row by row (recall by meaning; empty when embeddings are off).
    private(set) var vectors = SessionVectors()
    /// Document frequencies by term and column mask, kept exact as rows are appended.
    private var frequencyCache: [UInt64: Int] = [:]
    /// The column masks in ``frequencyCache``'s keys (one per recall configuration; normally one).
    private var cachedMasks: Set<UInt64> = []

    init(key: Int64, revision: Int64, nextSeq: Int64) {
        self.key = key
        self.revision = revision
        self.nextSeq = nextSeq
    }

    var count: Int { documents.count }

    /// Whether timeline order is also `seq` order (no memory was added with an earlier date than one before it).
    private(set) var isInSeqOrder = true

    /// Whether a memory at (`createdAt`, `seq`) sorts after every indexed memory (it can be appended).
    func sortsLast(createdAt: Double, seq: Int64) -> Bool {
        guard let last = documents.last else { return true }
        return createdAt > last.createdAt || (createdAt == last.createdAt && seq > last.seq)
    }

    /// Appends a memory that sorts after every indexed one (check ``sortsLast(createdAt:seq:)``).
    mutating func append(_ memory: Memory, seq: Int64, tokenizer: TextTokenizer) {
        let text = memory.content
        let tokens = tokenizer.tokens(of: text)
        let content = pack(tokens.tokens)
        var capped = content
        var cappedLength = Int32(tokens.tokens.count)
        let limit = NeighbourIndex.maxNeighbourCharacters
        if text.utf8.count > limit, text.unicodeScalars.count > limit {
            // SQLite's substr() counts characters (code points): the byte where the 513th one starts.
            let cut = text.unicodeScalars.index(text.unicodeScalars.startIndex, offsetBy: limit)
            let byteLimit = Int32(text.utf8.distance(from: text.utf8.startIndex, to: cut))
            var kept: [String] = []
            for index in tokens.tokens.indices {
                if tokens.ends[index] <= byteLimit {
                    kept.append(tokens.tokens[index])
                } else {
                    if tokens.starts[index] < byteLimit {
                        // The token the cut goes through: what is left of it, tokenized alone.
                        kept += tokenizer.tokens(of: text, bytes: Int(tokens.starts[index])..<Int(byteLimit))
                    }
                    break
                }
            }
            capped = pack(kept)
            cappedLength = Int32(kept.count)
        }
        let createdAt = memory.createdAt.timeIntervalSince1970
        let day = Int64((createdAt / 86_400).rounded(.down))
        let date: (range: Range<Int32>, length: Int32)
        if let known = dateRanges[day] {
            date = known
        } else {
            let dateTokens = tokenizer.tokens(of: Self.dateText(createdAt)).tokens
            date = (pack(dateTokens), Int32(dateTokens.count))
            dateRanges[day] = date
        }
        let document = Document(
            seq: seq,
            createdAt: createdAt,
            isProcedural: memory.type == .procedural,
            isEpisodic: memory.type == .episodic,
            isIncomplete: memory.isIncompleteReply,
            content: content,
            capped: capped,
            date: date.range,
            contentLength: Int32(tokens.tokens.count),
            cappedLength: cappedLength,
            dateLength: date.length
        )
        let index = documents.count
        if let last = documents.last, last.seq > seq { isInSeqOrder = false }
        documents.append(document)
        memories.append(memory)
        vectors.appendRow()
        if document.isProcedural { proceduralRows.append(Int32(index)) }
        // Each range's terms are ascending: a term of the capped text or the date is new unless the ranges before
        // hold it (the capped text is usually the content's own range, or a prefix of its words).
        for position in content { postings[Int(counts[Int(position)] >> 32)].append(Int32(index)) }
        if capped != content {
            for position in capped {
                let term = UInt32(counts[Int(position)] >> 32)
                if frequency(of: term, in: content) == 0 { postings[Int(term)].append(Int32(index)) }
            }
        }
        for position in date.range {
            let term = UInt32(counts[Int(position)] >> 32)
            if frequency(of: term, in: content) == 0, capped == content || frequency(of: term, in: capped) == 0 {
                postings[Int(term)].append(Int32(index))
            }
        }
        contentTotal += Int(document.contentLength)
        dateTotal += Int(document.dateLength)
        if index >= 1, document.links(documents[index - 1]) {
            nearTotal += Int(cappedLength) + Int(documents[index - 1].cappedLength)
        }
        for distance in 2...NeighbourIndex.farRadius where index - distance >= 0 {
            guard document.links(documents[index - distance]) else { continue }
            farTotal += Int(cappedLength) + Int(documents[index - distance].cappedLength)
        }
        updateFrequencies(afterAppending: index)
    }

    /// Brings the cached document frequencies up to date with the row just appended: the new row, and the rows
    /// within reach of it whose neighbour columns now hold its text, are the only rows that changed.
    private mutating func updateFrequencies(afterAppending row: Int) {
        guard !frequencyCache.isEmpty else { return }
        guard frequencyCache.count <= Self.maxCachedFrequencies else {
            frequencyCache.removeAll(keepingCapacity: true)
            return
        }
        var ranges = [documents[row].content, documents[row].capped, documents[row].date]
        for distance in 1...NeighbourIndex.farRadius where row - distance >= 0 {
            ranges.append(documents[row - distance].capped)
        }
        var affected = Set<UInt32>()
        for range in ranges {
            for position in range { affected.insert(UInt32(counts[Int(position)] >> 32)) }
        }
        for term in affected {
            for mask in cachedMasks {
                let key = UInt64(term) << 8 | mask
                guard let frequency = frequencyCache[key] else { continue }
                var added = rowContains(term, row: row, mask: mask, lastRow: row) ? 1 : 0
                let radius = Self.radius(mask)
                if radius > 0 {
                    for other in max(0, row - radius)..<row
                    where !rowContains(term, row: other, mask: mask, lastRow: row - 1)
                        && rowContains(term, row: other, mask: mask, lastRow: row)
                    {
                        added += 1
                    }
                }
                frequencyCache[key] = frequency + added
            }
        }
    }

    /// The most document frequencies kept between changes (the cache is dropped beyond).
    static let maxCachedFrequencies = 20_000

    /// The columns a row matches in besides its own text, as the mask in frequency cache keys.
    static func columnMask(near: Bool, far: Bool, date: Bool) -> UInt64 {
        (near ? 1 : 0) | (far ? 2 : 0) | (date ? 4 : 0)
    }

    /// How far a row's neighbour columns reach under a column mask (bits: 1 `near`, 2 `far`, 4 `date`).
    static func radius(_ mask: UInt64) -> Int {
        mask & 2 != 0 ? NeighbourIndex.farRadius : (mask & 1 != 0 ? 1 : 0)
    }

    /// Whether row `row`, as it stands when the session's last row is `lastRow`, holds `term` in a column of
    /// `mask` (its own text always counts).
    func rowContains(_ term: UInt32, row: Int, mask: UInt64, lastRow: Int) -> Bool {
        counts.withUnsafeBufferPointer { counts in
            if Self.frequency(of: term, in: documents[row].content, of: counts) > 0 { return true }
            if mask & 4 != 0, Self.frequency(of: term, in: documents[row].date, of: counts) > 0 { return true }
            let radius = Self.radius(mask)
            guard radius > 0, lastRow > 0 else { return false }
            for other in max(0, row - radius)...min(lastRow, row + radius) where other != row {
                guard abs(other - row) == 1 ? mask & 1 != 0 : mask & 2 != 0 else { continue }
                guard documents[row].links(documents[other]) else { continue }
                if Self.frequency(of: term, in: documents[other].capped, of: counts) > 0 { return true }
            }
            return false
        }
    }

    /// Sets the vectors of the memories numbered `seq` (those not indexed are skipped) and records the session's
    /// `vector_revision` they bring the index to.
    mutating func setVectors(_ list: [(seq: Int64, vector: CompactVector)], revision: Int64) {
        defer { vectors.revision = max(vectors.revision, revision) }
        guard !list.isEmpty else { return }
        // Rows are in timeline order: that is `seq` order unless memories were added with earlier dates.
        var rowOfSeq: [Int64: Int] = [:]
        if !isInSeqOrder {
            for (row, document) in documents.enumerated() { rowOfSeq[document.seq] = row }
        }
        for (seq, vector) in list {
            let row: Int?
            if isInSeqOrder {
                var (low, high) = (0, documents.count)
                while low < high {
                    let middle = (low + high) / 2
                    if documents[middle].seq < seq { low = middle + 1 } else { high = middle }
                }
                row = low < documents.count && documents[low].seq == seq ? low : nil
            } else {
                row = rowOfSeq[seq]
            }
            if let row { vectors.set(row: row, vector) }
        }
    }

    /// The term's id, if any indexed text holds it.
    func termID(_ term: String) -> UInt32? { termIDs[term] }

    func postings(of term: UInt32) -> [Int32] { postings[Int(term)] }

    func cachedFrequency(_ key: UInt64) -> Int? { frequencyCache[key] }

    /// Remembers a document frequency, keyed `term << 8 | mask` (see ``radius(_:)`` for the mask's bits).
    mutating func cacheFrequency(_ key: UInt64, _ value: Int) {
        frequencyCache[key] = value
        cachedMasks.insert(key & 0xFF)
    }

    /// How many times `term` occurs in the counts at `range` (not for hot loops: see the static form).
    func frequency(of term: UInt32, in range: Range<Int32>) -> Int {
        counts.withUnsafeBufferPointer { Self.frequency(of: term, in: range, of: $0) }
    }

    /// How many times `term` occurs in the counts at `range` of `counts` (binary search).
    @inline(__always)
    static func frequency(of term: UInt32, in range: Range<Int32>, of counts: UnsafeBufferPointer<UInt64>) -> Int {
        var low = Int(range.lowerBound)
        var high = Int(range.upperBound)
        while low < high {
            let middle = (low + high) / 2
            let found = UInt32(counts[middle] >> 32)
            if found == term { return Int(counts[middle] & 0xFFFF_FFFF) }
            if found < term { low = middle + 1 } else { high = middle }
        }
        return 0
    }

    /// Appends the term counts of `tokens` to ``counts``; their range.
    private mutating func pack(_ tokens: [String]) -> Range<Int32> {
        let start = Int32(counts.count)
        guard !tokens.isEmpty else { return start..<start }
        var ids: [UInt32] = []
        ids.reserveCapacity(tokens.count)
        for token in tokens {
            if let id = termIDs[token] {
                ids.append(id)
            } else {
                let id = UInt32(postings.count)
                termIDs[token] = id
                postings.append([])
                ids.append(id)
            }
        }
        ids.sort()
        var run = 0
        for (offset, id) in ids.enumerated() {
            run += 1
            if offset + 1 == ids.count || ids[offset + 1] != id {
                counts.append(UInt64(id) << 32 | UInt64(run))
                run = 0
            }
        }
        return start..<Int32(counts.count)
    }

    private static let months = [
        "January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
        "November", "December",
    ]

    /// The date in words, e.g. `8 May 2023`, in UTC: what `NeighbourIndex.dateText` computes in SQL.
    static func dateText(_ seconds: Double) -> String {
        let (year, month, day) = CivilDate.components(fromUnixSeconds: Int64(seconds.rounded(.down)))
        return "\(day) \(months[Int(month) - 1]) \(year)"
    }
}
