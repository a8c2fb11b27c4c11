/// One session's vectors, kept as float32, float16 and int8-with-a-scale (one scale per vector, max |x| / 127),
/// ranked by exact cosine (the vectors are L2-normalised on the way in). Benchmark code: the store's own version
/// belongs in Sources/.
struct DenseIndex {
    enum Encoding: String, CaseIterable {
        case f32, f16, int8
    }

    let dimensions: Int
    private(set) var ids: [String] = []
    private(set) var rows: [String: Int] = [:]
    private var f32: [Float] = []
    private var f16: [Float16] = []
    private var i8: [Int8] = []
    private var scales: [Float] = []

    init(dimensions: Int) {
        self.dimensions = dimensions
    }

    var count: Int { ids.count }

    mutating func append(id: String, vector: [Float]) {
        precondition(vector.count == dimensions, "vector of \(vector.count) dimensions, expected \(dimensions)")
        let unit = Self.normalised(vector)
        rows[id] = ids.count
        ids.append(id)
        f32 += unit
        f16 += unit.map { Float16($0) }
        let (quantized, scale) = Self.quantize(unit)
        i8 += quantized
        scales.append(scale)
    }

    static func normalised(_ vector: [Float]) -> [Float] {
        let norm = vector.reduce(Float(0)) { $0 + $1 * $1 }.squareRoot()
        return norm > 0 ? vector.map { $0 / norm } : vector
    }

    static func quantize(_ vector: [Float]) -> ([Int8], Float) {
        let largest = vector.reduce(Float(0)) { max($0, abs($1)) }
        guard largest > 0 else { return (Array(repeating: 0, count: vector.count), 0) }
        let scale = largest / 127
        return (vector.map { Int8(max(-127, min(127, ($0 / scale).rounded()))) }, scale)
    }

    /// Cosine of `query` with every row, in row order. For int8 the query is quantized too (an integer dot product).
    func scores(_ query: [Float], _ encoding: Encoding) -> [Float] {
        let d = dimensions
        let unit = Self.normalised(query)
        var out = [Float](repeating: 0, count: count)
        switch encoding {
        case .f32:
            f32.withUnsafeBufferPointer { matrix in
                for row in 0..<count {
                    var sum: Float = 0
                    let base = row * d
                    for j in 0..<d { sum += matrix[base + j] * unit[j] }
                    out[row] = sum
                }
            }
        case .f16:
            f16.withUnsafeBufferPointer { matrix in
                for row in 0..<count {
                    var sum: Float = 0
                    let base = row * d
                    for j in 0..<d { sum += Float(matrix[base + j]) * unit[j] }
                    out[row] = sum
                }
            }
        case .int8:
            let (quantized, queryScale) = Self.quantize(unit)
            let wide = quantized.map { Int32($0) }
            i8.withUnsafeBufferPointer { matrix in
                for row in 0..<count {
                    var sum: Int32 = 0
                    let base = row * d
                    for j in 0..<d { sum &+= Int32(matrix[base + j]) &* wide[j] }
                    out[row] = Float(sum) * scales[row] * queryScale
                }
            }
        }
        return out
    }

    /// Rows of the `n` highest scores, best first (ties: lower row first).
    static func top(_ scores: [Float], _ n: Int) -> [Int] {
        Array(scores.indices.sorted { scores[$0] != scores[$1] ? scores[$0] > scores[$1] : $0 < $1 }.prefix(n))
    }
}

/// Fusions of a lexical candidate list with dense scores.
enum Fusion {
    case reciprocalRank(k: Double)
    /// `weight` × min-max-normalised cosine + (1 − `weight`) × min-max-normalised lexical score, over the union of
    /// the lexical candidates and the `depth` best dense rows. A dense-only candidate's lexical part is 0; every
    /// candidate's dense part is its exact cosine, normalised over the union.
    case weighted(weight: Double)
    /// `weight` × z-score of the cosine among all the session's rows + (1 − `weight`) × z-score of the lexical score
    /// among the lexical candidates (a dense-only candidate gets the lowest candidate's), over the same union: a
    /// vector that stands far above the session's usual similarity keeps its strength instead of being rescaled to
    /// the same 0…1 as a weak lexical match.
    case zScore(weight: Double)
    /// As `weighted`, but the lexical part is score / max(best lexical score, `floor`) (0 for a dense-only
    /// candidate): a weak lexical match (only common words) is not stretched to 1, so a strong vector match can win.
    /// `floor` is in the store's score units (LoCoMo questions' best score: p10 ~4, p50 ~8, p90 ~14).
    case floored(weight: Double, floor: Double)
    /// `weight` × cosine + (1 − `weight`) × score / max(best lexical score, `floor`): as `floored`, but the dense part
    /// is the raw cosine, not rescaled over the candidates, so neither side is stretched by the other's candidate
    /// set. A candidate without a lexical score gets 0 for that part; one without a vector (none here) gets cosine 0.
    /// No lexical candidate: dense order; no query vector: lexical order.
    case cosineFloored(weight: Double, floor: Double)

    var name: String {
        switch self {
        case .reciprocalRank(let k): "rrf k=\(Int(k))"
        case .weighted(let weight): "weighted w=\(format(weight, 1))"
        case .zScore(let weight): "z-score w=\(format(weight, 1))"
        case .floored(let weight, let floor): "floored(\(Int(floor))) w=\(format(weight, 1))"
        case .cosineFloored(let weight, let floor): "cosine-floored(\(Int(floor))) w=\(format(weight, 1))"
        }
    }

    private static func meanAndDeviation(_ values: [Double]) -> (mean: Double, deviation: Double) {
        guard !values.isEmpty else { return (0, 0) }
        let mean = values.reduce(0, +) / Double(values.count)
        let variance = values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(values.count)
        return (mean, variance.squareRoot())
    }

    /// Memory ids, best first.
    func rank(lexical: [(id: String, score: Double)], dense: [Float], index: DenseIndex, depth: Int) -> [String] {
        let denseRows = DenseIndex.top(dense, depth)
        var lexicalRank: [String: Int] = [:]
        for (rank, candidate) in lexical.enumerated() where lexicalRank[candidate.id] == nil {
            lexicalRank[candidate.id] = rank
        }
        var denseRank: [String: Int] = [:]
        for (rank, row) in denseRows.enumerated() { denseRank[index.ids[row]] = rank }
        var union: [String] = []
        var seen: Set<String> = []
        for id in lexical.map(\.id) + denseRows.map({ index.ids[$0] }) where seen.insert(id).inserted { union.append(id) }

        var fused: [String: Double] = [:]
        switch self {
        case .reciprocalRank(let k):
            for id in union {
                var value = 0.0
                if let rank = lexicalRank[id] { value += 1 / (k + Double(rank + 1)) }
                if let rank = denseRank[id] { value += 1 / (k + Double(rank + 1)) }
                fused[id] = value
            }
        case .weighted, .floored:
            let weight: Double
            var lexicalCeiling: Double? = nil
            if case .floored(let value, let floor) = self {
                weight = value
                lexicalCeiling = max(lexical.map(\.score).max() ?? 0, floor)
            } else if case .weighted(let value) = self {
                weight = value
            } else {
                weight = 0
            }
            let lexicalScores = Dictionary(lexical.map { ($0.id, $0.score) }, uniquingKeysWith: { first, _ in first })
            let lexicalValues = lexical.map(\.score)
            let lexicalLow = lexicalValues.min() ?? 0
            let lexicalHigh = lexicalValues.max() ?? 0
            let cosines = Dictionary(
                union.map { id in (id, Double(index.rows[id].map { dense[$0] } ?? 0)) },
                uniquingKeysWith: { first, _ in first }
            )
            let denseLow = cosines.values.min() ?? 0
            let denseHigh = cosines.values.max() ?? 0
            for id in union {
                var lexicalPart = 0.0
                if let score = lexicalScores[id], let ceiling = lexicalCeiling {
                    lexicalPart = ceiling > 0 ? max(0, score) / ceiling : 0
                } else if let score = lexicalScores[id] {
                    lexicalPart = lexicalHigh > lexicalLow ? (score - lexicalLow) / (lexicalHigh - lexicalLow) : 1
                }
                let cosine = cosines[id] ?? denseLow
                let densePart = denseHigh > denseLow ? (cosine - denseLow) / (denseHigh - denseLow) : 1
                fused[id] = weight * densePart + (1 - weight) * lexicalPart
            }
        case .cosineFloored(let weight, let floor):
            let ceiling = max(lexical.map(\.score).max() ?? 0, floor)
            let lexicalScores = Dictionary(lexical.map { ($0.id, $0.score) }, uniquingKeysWith: { first, _ in first })
            for id in union {
                let cosine = index.rows[id].map { Double(dense[$0]) } ?? 0
                let lexicalPart = lexicalScores[id].map { ceiling > 0 ? max(0, $0) / ceiling : 0 } ?? 0
                fused[id] = weight * cosine + (1 - weight) * lexicalPart
            }
        case .zScore(let weight):
            let (denseMean, denseDeviation) = Self.meanAndDeviation(dense.map(Double.init))
            let (lexicalMean, lexicalDeviation) = Self.meanAndDeviation(lexical.map(\.score))
            func z(_ value: Double, _ mean: Double, _ deviation: Double) -> Double {
                deviation > 0 ? (value - mean) / deviation : 0
            }
            let lexicalZ = Dictionary(
                lexical.map { ($0.id, z($0.score, lexicalMean, lexicalDeviation)) }, uniquingKeysWith: { first, _ in first }
            )
            let floor = lexicalZ.values.min() ?? 0
            for id in union {
                let cosine = index.rows[id].map { Double(dense[$0]) } ?? denseMean
                fused[id] = weight * z(cosine, denseMean, denseDeviation) + (1 - weight) * (lexicalZ[id] ?? floor)
            }
        }
        let large = Int.max / 4
        return union.sorted { a, b in
            let fa = fused[a] ?? 0
            let fb = fused[b] ?? 0
            if fa != fb { return fa > fb }
            let la = lexicalRank[a] ?? large
            let lb = lexicalRank[b] ?? large
            if la != lb { return la < lb }
            return (denseRank[a] ?? large) < (denseRank[b] ?? large)
        }
    }

    static let grid: [Fusion] =
        [.reciprocalRank(k: 60)] + (1...9).map { .weighted(weight: Double($0) / 10) } + (1...9).map { .zScore(weight: Double($0) / 10) }

    static let floorGrid: [Fusion] = [8.0, 12, 16, 20].flatMap { floor in (3...6).map { .floored(weight: Double($0) / 10, floor: floor) } }

    static let cosineFloorGrid: [Fusion] = [16.0, 20, 24, 32].flatMap { floor in (3...5).map { .cosineFloored(weight: Double($0) / 10, floor: floor) } }
}

/// The fusions evaluated for one encoding of the vectors.
func fusions(_ encoding: DenseIndex.Encoding) -> [Fusion] {
    Fusion.grid + Fusion.floorGrid + Fusion.cosineFloorGrid
}
