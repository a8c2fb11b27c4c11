import CVectorKernels
import Foundation

/// An embedding as recall keeps it: the unit vector (L2-normalised) quantized to int8 with one scale, each value
/// ≈ `scale × q` with `q` in -127…127. A quarter of float32's size; on LoCoMo it ranks within 0.002 R@10 of float32
/// (BENCHMARKS.md, issue 12).
public struct CompactVector: Sendable, Equatable {
    /// The quantized components.
    public private(set) var values: [Int8]
    /// What one step of `values` is worth; 0 for a zero vector.
    public private(set) var scale: Float

    /// Normalises `vector` to unit length and quantizes it; `nil` when it is empty or holds a non-finite value.
    ///
    /// - Parameter vector: An embedding, as an embeddings API returns it.
    public init?(quantizing vector: [Float]) {
        guard !vector.isEmpty, vector.allSatisfy(\.isFinite) else { return nil }
        let norm = vector.reduce(Float(0)) { $0 + $1 * $1 }.squareRoot()
        guard norm > 0, norm.isFinite else {
            values = [Int8](repeating: 0, count: vector.count)
            scale = 0
            return
        }
        let largest = vector.reduce(Float(0)) { max($0, abs($1)) } / norm
        let step = largest / 127
        values = vector.map { Int8(max(-127, min(127, ($0 / norm / step).rounded()))) }
        scale = step
    }

    /// A vector as stored: its components and scale.
    init?(values: [Int8], scale: Float) {
        guard !values.isEmpty, scale.isFinite, scale >= 0 else { return nil }
        self.values = values
        self.scale = scale
    }

    /// The stored form of the components (one byte each, two's complement).
    var data: Data { values.withUnsafeBufferPointer { Data(buffer: $0) } }

    /// Decodes the stored form.
    init?(data: Data, scale: Double) {
        let values = data.withUnsafeBytes { raw in Array(raw.bindMemory(to: Int8.self)) }
        self.init(values: values, scale: Float(scale))
    }

    var dimensions: Int { values.count }
}

/// One session's memory vectors, beside its lexical index (``SessionIndex/vectors``), in the same row order: the
/// int8 components of every row in one array (zeros for a row without a vector) and each row's scale (0: no vector
/// yet — that memory is ranked lexically only).
struct SessionVectors {
    /// Components per vector; 0 until the first vector arrives.
    private(set) var dimensions = 0
    private(set) var values: [Int8] = []
    private(set) var scales: [Float] = []
    /// Rows that have a vector.
    private(set) var present = 0
    /// The session's `vector_revision` these vectors reflect.
    var revision: Int64 = 0

    /// Makes room for one more row (without a vector).
    mutating func appendRow() {
        scales.append(0)
        if dimensions > 0 { values.append(contentsOf: repeatElement(0, count: dimensions)) }
    }

    /// Sets `row`'s vector; `false` (and nothing changes) when its length is not the session's.
    @discardableResult
    mutating func set(row: Int, _ vector: CompactVector) -> Bool {
        if dimensions == 0 {
            dimensions = vector.dimensions
            values = [Int8](repeating: 0, count: scales.count * dimensions)
        }
        guard vector.dimensions == dimensions, scales.indices.contains(row) else { return false }
        if scales[row] == 0, vector.scale > 0 { present += 1 }
        if scales[row] > 0, vector.scale == 0 { present -= 1 }
        scales[row] = vector.scale
        values.withUnsafeMutableBufferPointer { target in
            vector.values.withUnsafeBufferPointer { source in
                for offset in 0..<dimensions { target[row * dimensions + offset] = source[offset] }
            }
        }
        return true
    }

    /// Whether `row` has a vector.
    func has(_ row: Int) -> Bool { scales[row] > 0 }

    /// The cosine of `query` with every row's vector, in row order (0 for a row without one); `nil` when the query's
    /// length is not the session's. Exact: one pass of integer dot products (``mp_int8_cosines``, AVX2 when the CPU
    /// has it; `simd: false` forces the plain C loop, for tests).
    func cosines(_ query: CompactVector, simd: Bool = true) -> [Float]? {
        guard dimensions > 0, query.dimensions == dimensions else { return nil }
        let count = scales.count
        return [Float](unsafeUninitializedCapacity: count) { out, initialized in
            values.withUnsafeBufferPointer { matrix in
                scales.withUnsafeBufferPointer { scales in
                    query.values.withUnsafeBufferPointer { vector in
                        mp_int8_cosines(
                            matrix.baseAddress, scales.baseAddress, vector.baseAddress, query.scale, Int64(dimensions),
                            Int64(count), simd ? 1 : 0, out.baseAddress)
                    }
                }
            }
            initialized = count
        }
    }
}
